package inbox

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/pebble"
	"github.com/inboxd/inboxd/wire"
)

// TestPipelineGathersWhileSyncing queues one command behind a batch of two
// in flight: the committer must let the batch sync before it builds the
// next, so that the next gathers what arrives meanwhile instead of taking a
// sync of its own for one command. (A queue as long as the batch in flight
// is built during the sync: TestPipelinedFailureFailsSuccessor.)
func TestPipelineGathersWhileSyncing(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.create(1, 2)
	e.send(1, conv, "a", "durable")
	e.close()
	st, err := pebble.Open(pebble.Options{Dir: "db", FS: e.fs})
	if err != nil {
		t.Fatal(err)
	}
	slow := &slowSync{Store: st, applied: make(chan struct{}), synced: make(chan struct{})}
	// The hook holds each batch before it is handed over while holding is
	// set, telling the test on at; once syncHeld is armed, the next batch
	// to become durable makes slow hold the sync of the batch after it.
	var holding, armSync atomic.Bool
	at, proceed := make(chan struct{}), make(chan struct{})
	hook := func(step commitStep) bool {
		switch {
		case step == stepBeforeCommit && holding.Load():
			at <- struct{}{}
			<-proceed
		case step == stepAfterCommit && armSync.CompareAndSwap(true, false):
			slow.hold.Store(true)
		}
		return false
	}
	svc, err := New(ctx, Config{Store: slowApply{slow}, stepHook: hook})
	if err != nil {
		t.Fatal(err)
	}
	e.store, e.svc = st, svc
	e.send(1, conv, "b", "loads the sequencer keys")
	head := len(e.inbox(2))

	var sends sync.WaitGroup
	send := func(cmid string) {
		sends.Go(func() {
			if _, err := svc.SendGroupMessage(ctx, 1, conv, cmid, wire.KindText, []byte(cmid)); err != nil {
				t.Errorf("send %q: %v", cmid, err)
			}
		})
	}
	release := sync.OnceFunc(func() { close(slow.synced) })
	defer sends.Wait()
	defer release() // a failed check must not leave the committer waiting

	holding.Store(true)
	send("x")
	<-at // x is built, alone
	send("y")
	send("z")
	waitFor(t, "y and z to queue", func() bool { return len(svc.cmds) == 2 })
	proceed <- struct{}{}
	<-at // x is handed over; y and z, two commands, are built during its sync
	send("c")
	waitFor(t, "c to queue", func() bool { return len(svc.cmds) == 1 })
	holding.Store(false)
	armSync.Store(true) // x becomes durable, then y and z's sync is held
	proceed <- struct{}{}
	<-slow.applied

	rows, err := st.Inbox(ctx, 2, timeline.Range{From: uint64(head) + 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("while y and z sync, the store holds %d new rows of the member; want x, y and z, not c", len(rows))
	}
	release()
	sends.Wait()
	if s := seqs(e.inbox(2)); !contiguous(s) || len(s) != head+4 {
		t.Fatalf("seqs %v, want %d contiguous", s, head+4)
	}
}
