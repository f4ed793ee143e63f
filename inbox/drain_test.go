package inbox

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/inboxd/inboxd/cluster"
	"github.com/inboxd/inboxd/wire"
)

// TestDrain: a SEND whose batch is held in the committer when its shard
// stops being served here is committed before Drain returns; a SEND for
// the shard queued meanwhile is refused with ErrNotOwner, not committed,
// and succeeds at the new owner.
func TestDrain(t *testing.T) {
	var hold atomic.Bool
	held, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var events []string
	note := func(e string) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	}
	c := newNodes(t, 2, func(i int) Config {
		if i != 0 {
			return Config{}
		}
		return Config{stepHook: func(step commitStep) bool {
			switch {
			case step == stepBeforeCommit && hold.Load():
				close(held)
				<-release
			case step == stepAfterCommit && hold.CompareAndSwap(true, false):
				note("committed")
			}
			return false
		}}
	})
	us := c.users(2)
	a, b := us[0], us[1]
	g, err := c.of(a[0]).CreateGroup(ctx, a[0], NewGroup{Members: []uint64{b[0]}})
	if err != nil {
		t.Fatal(err)
	}
	shard := cluster.ShardOf(g.ID, testShards)
	svc := c.svcs[0]
	if svc != c.of(g.ID) {
		t.Fatal("the group is not on node 0")
	}

	// No apply of the group's records may be the batch held below.
	c.settle()
	hold.Store(true)
	first := make(chan error, 1)
	go func() {
		_, err := svc.SendGroupMessage(ctx, a[0], g.ID, "in flight", wire.KindText, nil)
		first <- err
	}()
	<-held
	c.ring.Move(shard, 1)
	drained := make(chan error, 1)
	go func() {
		err := svc.Drain(ctx, shard)
		note("drained")
		drained <- err
	}()
	late := make(chan error, 1)
	go func() {
		_, err := svc.SendGroupMessage(ctx, a[0], g.ID, "late", wire.KindText, nil)
		late <- err
	}()
	// Release the batch once Drain and the late SEND wait for the
	// committer (or Drain returned without waiting, which fails below).
	waitFor(t, "drain and the late send queued", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(events) > 0 || len(svc.cmds) == 2
	})
	close(release)
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if err := <-first; err != nil {
		t.Fatalf("the send in flight: %v", err)
	}
	if err := <-late; !errors.Is(err, ErrNotOwner) {
		t.Fatalf("the send queued during the drain: %v, want ErrNotOwner", err)
	}
	mu.Lock()
	if len(events) != 2 || events[0] != "committed" {
		t.Fatalf("events %v: Drain returned before the batch in flight committed", events)
	}
	mu.Unlock()
	if _, err := c.of(g.ID).SendGroupMessage(ctx, a[0], g.ID, "late", wire.KindText, nil); err != nil {
		t.Fatalf("the retry at the new owner: %v", err)
	}
	c.settle()
	c.checkInboxes(map[uint64]map[uint64][]uint64{a[0]: {g.ID: span(1, 3)}, b[0]: {g.ID: span(1, 3)}})
}

// TestDrainServed: Drain refuses a shard still served, which would make it
// wait for nothing while the shard keeps taking commands.
func TestDrainServed(t *testing.T) {
	c := newNodes(t, 2, nil)
	if err := c.svcs[0].Drain(ctx, c.svcs[0].own.Shards()[0]); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Drain of a served shard: %v, want ErrInvalid", err)
	}
}
