package inbox

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestQueuesRoundRobin(t *testing.T) {
	q := newQueues()
	var got []string
	push := func(user uint64, n int) {
		for range n {
			q.push(&command{user: user})
		}
	}
	name := map[uint64]string{1: "H", 2: "L", 3: "M"}
	push(1, 4)
	push(2, 1)
	push(3, 2)
	got = append(got, name[q.pop().user], name[q.pop().user])
	push(2, 1) // L again, mid-round: last in the round
	for c := q.pop(); c != nil; c = q.pop() {
		got = append(got, name[c.user])
	}
	want := []string{"H", "L", "M", "H", "L", "M", "H", "H"}
	if !slices.Equal(got, want) {
		t.Fatalf("turns %v, want %v", got, want)
	}
	if q.len() != 0 || len(q.ring) != 0 || len(q.byUser) != 0 {
		t.Fatalf("drained queues hold %d commands, ring %v", q.len(), q.ring)
	}
}

// TestLightSenderNotBehindHeavyBacklog: a user with one command waiting
// is served in the first batch after the one in flight, however many
// commands another user has queued before it. Batches are told apart by
// their time: the clock moves one second at each batch.
func TestLightSenderNotBehindHeavyBacklog(t *testing.T) {
	const backlog = 40
	var clock atomic.Int64
	clock.Store(time.Now().UnixMilli())
	gt := newGate()
	e := newEnv(t, Config{
		MaxBatchCommands: 4,
		Now:              func() time.Time { return time.UnixMilli(clock.Add(1000)) },
		stepHook:         gt.hook,
	})
	heavyConv, lightConv := e.create(1, 2, 3), e.create(4, 5)

	blocker := gt.hold(t, e, 1, heavyConv)
	var wg sync.WaitGroup
	heavy := make([]SendResult, backlog)
	for i := range backlog {
		wg.Go(func() { heavy[i] = e.send(2, heavyConv, fmt.Sprint(i), "heavy") })
	}
	waitFor(t, "the backlog to queue", func() bool { return len(e.svc.cmds) == backlog })
	light := make(chan SendResult, 1)
	go func() { light <- e.send(5, lightConv, "light", "light") }()
	waitFor(t, "the light send to queue", func() bool { return len(e.svc.cmds) == backlog+1 })
	gt.open()
	wg.Wait()

	held0 := (<-blocker).Time
	// batch numbers the batches from the one that was in flight (0).
	batch := func(r SendResult) int64 { return (r.Time.UnixMilli() - held0.UnixMilli()) / 1000 }
	if n := batch(<-light); n != 1 {
		t.Fatalf("the light send was committed %d batches after the one in flight, want 1", n)
	}
	// The backlog took many batches: without turns the light send would
	// have waited for all of them.
	last := int64(0)
	for _, r := range heavy {
		last = max(last, batch(r))
	}
	if last < backlog/4 {
		t.Fatalf("the backlog took %d batches, want at least %d", last, backlog/4)
	}
}

// TestBatchEndsAtBodyBytes: a batch takes commands until their bodies reach
// MaxBatchBytes, so that a batch of large messages stays short to commit
// and a command behind it waits for few of them (docs/architecture.md,
// "Fairness").
func TestBatchEndsAtBodyBytes(t *testing.T) {
	const body, perBatch, sends = 1000, 3, 9
	var clock atomic.Int64
	clock.Store(time.Now().UnixMilli())
	gt := newGate()
	e := newEnv(t, Config{
		MaxBatchBytes: perBatch * body,
		Now:           func() time.Time { return time.UnixMilli(clock.Add(1000)) },
		stepHook:      gt.hook,
	})
	conv := e.create(1, 2)
	blocker := gt.hold(t, e, 1, conv)
	var wg sync.WaitGroup
	res := make([]SendResult, sends)
	for i := range sends {
		wg.Go(func() { res[i] = e.send(2, conv, fmt.Sprint(i), strings.Repeat("x", body)) })
	}
	waitFor(t, "the sends to queue", func() bool { return len(e.svc.cmds) == sends })
	gt.open()
	wg.Wait()
	held0 := (<-blocker).Time
	batches := map[int64]int{} // sends by batch, numbered from the one held (0)
	for _, r := range res {
		batches[(r.Time.UnixMilli()-held0.UnixMilli())/1000]++
	}
	for b, n := range batches {
		if n != perBatch {
			t.Errorf("batch %d took %d sends of %d bytes, want %d: %v", b, n, body, perBatch, batches)
		}
	}
}
