package inbox

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// TestPipelineGathersWhileSyncing queues one command behind a batch of two
// in flight: the committer must let the batch sync before it builds the
// next, so that the next gathers what arrives meanwhile instead of taking a
// sync of its own for one command. (A queue as long as the batch in flight
// is built during the sync: TestPipelinedFailureFailsSuccessor.)
func TestPipelineGathersWhileSyncing(t *testing.T) {
	e := newEnv(t, Config{})
	// The hook holds each batch before it is handed over while holding is
	// set, telling the test on at. The sync of the batch with y is held:
	// by the batch, not by the order of syncs, as x may become durable
	// while y and z are built or after they are handed over.
	var holding atomic.Bool
	at, proceed := make(chan struct{}), make(chan struct{})
	hook := func(step commitStep) bool {
		if step == stepBeforeCommit && holding.Load() {
			at <- struct{}{}
			<-proceed
		}
		return false
	}
	var slow *slowSync
	conv := e.reopenWrapped(Config{stepHook: hook}, func(st timeline.Store) timeline.Store {
		slow = &slowSync{Store: st, applied: make(chan struct{}), synced: make(chan struct{})}
		return holdSyncOf{slow, "y"}
	})
	st, svc := e.store, e.svc
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

// holdSyncOf is a store that a committer pipelines, which holds the sync of
// the batch with the message of client msg id cmid as slowSync does.
type holdSyncOf struct {
	*slowSync
	cmid string
}

func (h holdSyncOf) Apply(ctx context.Context, b *timeline.Batch) (timeline.Pending, error) {
	p, err := h.Store.(timeline.Applier).Apply(ctx, b)
	if err != nil || !slices.ContainsFunc(b.Messages, func(m timeline.Message) bool { return m.ClientMsgID == h.cmid }) {
		return p, err
	}
	h.hold.Store(true)
	return slowPending{p, h.slowSync}, nil
}
