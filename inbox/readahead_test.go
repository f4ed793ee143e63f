package inbox

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/pebble"
)

func TestQueuesAheadIsPopOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	q := newQueues()
	for round := range 200 {
		for range rng.IntN(6) {
			q.push(&command{user: uint64(1 + rng.IntN(4))})
		}
		n := rng.IntN(q.len() + 2)
		ahead := q.ahead(n)
		if want := min(n, q.len()); len(ahead) != want {
			t.Fatalf("round %d: ahead(%d) of %d = %d commands, want %d", round, n, q.len(), len(ahead), want)
		}
		for i, c := range ahead {
			if got := q.pop(); got != c {
				t.Fatalf("round %d: command %d ahead is not the one popped", round, i)
			}
		}
	}
}

// barrierDedups is the Pebble store (pipelining, as in production) whose
// Dedup reads wait until want of them are in flight together, or until one
// has waited long enough to tell that they come one after another.
type barrierDedups struct {
	*pebble.Store

	mu       sync.Mutex
	want     int
	inflight int
	most     int
	met      chan struct{}
}

func (b *barrierDedups) arm(want int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.want, b.met = want, make(chan struct{})
}

func (b *barrierDedups) Dedup(ctx context.Context, sender uint64, id string) (timeline.Dedup, error) {
	b.mu.Lock()
	b.inflight++
	b.most = max(b.most, b.inflight)
	met := b.met
	if met != nil && b.inflight >= b.want {
		close(met)
		b.met = nil
	}
	b.mu.Unlock()
	if met != nil {
		select {
		case <-met:
		case <-time.After(5 * time.Second):
			b.mu.Lock()
			if b.met == met {
				close(met)
				b.met = nil
			}
			b.mu.Unlock()
		}
	}
	defer func() {
		b.mu.Lock()
		b.inflight--
		b.mu.Unlock()
	}()
	return b.Store.Dedup(ctx, sender, id)
}

// TestDedupsReadTogether queues the sends of one batch behind a held
// commit: the committer reads their dedup records together, not one after
// another, and still answers a resend of a committed message, and a copy of
// a send earlier in the same batch, with the first result.
func TestDedupsReadTogether(t *testing.T) {
	bs := &barrierDedups{}
	gt := newGate()
	e := newWrappedEnv(t, Config{stepHook: gt.hook}, func(st timeline.Store) timeline.Store {
		bs.Store = st.(*pebble.Store)
		return bs
	})
	if e.svc.applier == nil {
		t.Fatal("the wrapped store does not pipeline")
	}
	const senders = 6
	conv := e.create(1, 2, 3, 4, 5, 6)
	first := e.send(1, conv, "m0", "first")
	gt.hold(t, e, 2, conv)

	var wg sync.WaitGroup
	var mu sync.Mutex
	results := map[string][]SendResult{}
	send := func(sender uint64, cmid string) {
		wg.Go(func() {
			r, err := e.svc.SendGroupMessage(ctx, sender, conv, cmid, 1, []byte(cmid))
			if err != nil {
				t.Errorf("send %q of %d: %v", cmid, sender, err)
			}
			mu.Lock()
			defer mu.Unlock()
			k := fmt.Sprintf("%d/%s", sender, cmid)
			results[k] = append(results[k], r)
		})
	}
	send(1, "m0")
	for u := uint64(1); u <= senders; u++ {
		send(u, fmt.Sprintf("x%d", u))
	}
	send(2, "x2")
	const queued = senders + 2
	waitFor(t, "the sends to queue", func() bool { return len(e.svc.cmds) == queued })
	bs.arm(senders + 1) // the distinct keys: m0 and each sender's x
	gt.open()
	wg.Wait()

	bs.mu.Lock()
	most := bs.most
	bs.mu.Unlock()
	if most < senders+1 {
		t.Errorf("at most %d dedup reads in flight, want the batch's %d together", most, senders+1)
	}
	if r := results["1/m0"][0]; !r.Duplicate || r.MsgID != first.MsgID || r.ConvSeq != first.ConvSeq {
		t.Errorf("resend of m0 = %+v, want the duplicate of %+v", r, first)
	}
	copies := results["2/x2"]
	if len(copies) != 2 || copies[0].MsgID != copies[1].MsgID || copies[0].Duplicate == copies[1].Duplicate {
		t.Errorf("two copies of x2 in one batch = %+v, want one stored and one its duplicate", copies)
	}
	got := e.bodies(3, conv)
	want := []string{"first", "holds the committer"}
	for u := 1; u <= senders; u++ {
		want = append(want, fmt.Sprintf("x%d", u))
	}
	slices.Sort(got[2:])
	if !slices.Equal(got, want) {
		t.Errorf("stored %q, want %q", got, want)
	}
}

// failingDedups fails the Dedup reads of one client msg id.
type failingDedups struct {
	timeline.Store
	id string
}

var errDedupRead = errors.New("injected dedup read failure")

func (f *failingDedups) Dedup(ctx context.Context, sender uint64, id string) (timeline.Dedup, error) {
	if id == f.id {
		return timeline.Dedup{}, errDedupRead
	}
	return f.Store.Dedup(ctx, sender, id)
}

// TestDedupReadFailureFailsItsBatch: a dedup record that cannot be read
// fails its send as unavailable, as the read in the command always did, and
// is read again on the retry.
func TestDedupReadFailureFailsItsBatch(t *testing.T) {
	fd := &failingDedups{id: "bad"}
	e := newWrappedEnv(t, Config{}, func(st timeline.Store) timeline.Store {
		fd.Store = st
		return fd
	})
	conv := e.create(1, 2)
	if _, err := e.svc.SendGroupMessage(ctx, 1, conv, "bad", 1, []byte("x")); !errors.Is(err, ErrUnavailable) || !errors.Is(err, errDedupRead) {
		t.Fatalf("send with an unreadable dedup record: %v, want ErrUnavailable", err)
	}
	fd.id = ""
	if r := e.send(1, conv, "bad", "x"); r.Duplicate {
		t.Fatalf("retry = %+v, want stored", r)
	}
}
