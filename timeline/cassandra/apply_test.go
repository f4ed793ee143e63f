package cassandra_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/cassandra"
)

// holdFirst opens a store in the keyspace named suffix whose hook holds the
// first batch committed after Open once its messages have landed, before
// its inbox rows, until release is called (at the latest when the test ends,
// before the store is closed).
func holdFirst(t *testing.T, suffix string) (s *cassandra.Store, ks string, release func()) {
	held := make(chan struct{})
	release = sync.OnceFunc(func() { close(held) })
	var armed, first atomic.Bool
	cfg := cassandra.WithHook(config(t, suffix), func(step string) bool {
		if step == "phase 1" && armed.Load() && first.CompareAndSwap(false, true) {
			<-held
		}
		return false
	})
	s = open(t, cfg)
	t.Cleanup(release) // before the store's Close, which waits for the batch
	armed.Store(true)
	return s, cfg.Keyspace, release
}

// TestApplyInFlight applies a batch whose writes the hook holds: Apply
// returns, Dedup answers from the batch, another read waits for it, and once
// the writes land Wait reports so and every read shows all of the batch.
func TestApplyInFlight(t *testing.T) {
	s, _, release := holdFirst(t, "_inflight")
	ctx := t.Context()
	b := groupBatch(10)
	p, err := s.Apply(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	want := b.Dedups[len(b.Dedups)-1]
	got, err := s.Dedup(ctx, want.Sender, want.ClientMsgID)
	if err != nil || got.MsgID != want.MsgID || got.ConvSeq != want.ConvSeq || !got.Time.Equal(want.Time) {
		t.Fatalf("Dedup while in flight = %+v, %v; want %+v", got, err, want)
	}
	// The read cannot end before the batch lands, which the hook holds:
	// the deadline only bounds the test.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if rows, err := s.Inbox(short, b.Rows[0].User, timeline.Range{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Inbox while in flight = %v, %v; want it to wait for the batch", rows, err)
	}
	release()
	if err := p.Wait(); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	checkWhole(t, s, b, true)
}

// TestApplyAfterFailedBatch applies a second batch while the first, held by
// the hook, fails (its context canceled): the first's Wait reports the
// failure, and the second finishes the first before its own writes, so that
// both are in the tables when its Wait returns, before any other call.
func TestApplyAfterFailedBatch(t *testing.T) {
	s, ks, release := holdFirst(t, "_afterfailed")
	ctx := t.Context()
	first, cancel := context.WithCancel(ctx)
	b1, b2 := groupBatch(10), groupBatch(10)
	p1, err := s.Apply(first, b1)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := s.Apply(ctx, b2)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	release()
	if err := p1.Wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("first Wait = %v, want context.Canceled", err)
	}
	if err := p2.Wait(); err != nil {
		t.Fatalf("second Wait: %v", err)
	}
	// Straight from the table: a read of the store would finish the first
	// batch itself.
	for _, b := range []*timeline.Batch{b1, b2} {
		var n int
		err := session(t).Query("SELECT COUNT(*) FROM "+ks+".inbox WHERE user = ? AND bucket = 0", b.Rows[0].User).Scan(&n)
		if err != nil || n != len(b.Messages) {
			t.Fatalf("inbox of %d holds %d rows, %v; want %d", b.Rows[0].User, n, err, len(b.Messages))
		}
	}
	checkWhole(t, s, b1, true)
	checkWhole(t, s, b2, true)
}
