package inbox

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/inboxd/inboxd/timeline"
)

// TestRandomizedPipelineFaults runs the model's random operations from many
// goroutines against a committer that pipelines on a store failing batches
// at random — at the hand-over, after it, or in the sync, the batch landed
// or lost — and checks the guarantees that the pipelining must keep:
//
//   - every acknowledged send is durable, and in every member's inbox once,
//     with contiguous per-user seqs (the model's verify, after a power cut);
//   - a send answered with an error is absent, or stored and then found by
//     a resend of its client msg id, never stored twice;
//   - readers (Sync, concurrently) never see an entry before the store
//     reported it durable.
//
// A lost batch breaks the store until it is reopened, as a failed WAL sync
// breaks Pebble: every batch handed over after it is lost too. The test
// then cuts the power and reopens, and the workers carry on.
//
// A failure names its seed; -seed replays its operations and faults:
//
//	go test ./inbox -run TestRandomizedPipelineFaults -seed 12345
func TestRandomizedPipelineFaults(t *testing.T) {
	seed := modelSeedFor(t)
	m := newModel(seed)
	faults := newFaultyStore(seed)
	e := newWrappedEnv(t, Config{MaxGroupSize: 8, GroupCacheBytes: 4 << 10}, faults.reset)
	if e.svc.applier == nil {
		t.Fatal("the committer does not pipeline on the faulty store")
	}

	const workers, ops, maxOps, minAcked, users = 5, 200, 2000, 150, 12
	var mu sync.RWMutex // write-held while the service is reopened
	var wg sync.WaitGroup
	var done atomic.Int32
	for w := range workers {
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		wg.Go(func() {
			defer done.Add(1)
			for i := 0; i < maxOps && (i < ops || m.ackedSends() < minAcked || !faults.allSeen()); i++ {
				mu.RLock()
				m.step(t, func(uint64) *Service { return e.svc }, rng, w, i, users)
				mu.RUnlock()
			}
		})
	}
	// A reader syncs random users all along: what it gets must be durable.
	stop := make(chan struct{})
	var reader sync.WaitGroup
	reader.Go(func() {
		rng := rand.New(rand.NewPCG(seed, workers))
		for {
			select {
			case <-stop:
				return
			default:
			}
			u := uint64(rng.IntN(users) + 1)
			mu.RLock()
			res, err := e.svc.Sync(ctx, u, uint64(rng.IntN(8)), 0)
			mu.RUnlock()
			if err != nil && !expectedErr(err) {
				t.Errorf("sync of %d: %v", u, err)
			}
			if err := faults.checkRead(res.Entries); err != nil {
				t.Error(err)
				return
			}
		}
	})
	restarts := 0
	for done.Load() < workers {
		select {
		case <-faults.broken:
			restarts++
		case <-waitAll(&wg):
		}
		mu.Lock()
		e.crash()
		m.verify(t, e.store, e.conversations, users)
		mu.Unlock()
	}
	wg.Wait()
	close(stop)
	reader.Wait()

	// With the store sound again, a resend of every send that got no ack
	// either finds it (it landed) or stores it now; verify finds each once.
	faults.disable()
	m.mu.Lock()
	unacked := slices.DeleteFunc(slices.Clone(m.sent), func(k dedupKey) bool { _, ok := m.acked[k]; return ok })
	m.mu.Unlock()
	for _, k := range unacked {
		m.mu.Lock()
		conv, peer := m.sentTo[k], m.directTo[k]
		m.mu.Unlock()
		var err error
		if peer != 0 {
			err = m.sendDirect(e.svc, k, peer)
		} else {
			err = m.send(e.svc, k, conv)
		}
		if err != nil && (!expectedErr(err) || errors.Is(err, ErrUnavailable) || errors.Is(err, errCrashed)) {
			t.Errorf("resend of %v with the store sound: %v", k, err)
		}
	}
	m.verify(t, e.store, e.conversations, users)
	m.verifyReceipts(t, e.store, func(uint64) *Service { return e.svc }, users)
	t.Logf("%d sends acknowledged, %d resent after an error, %d restarts, faults %v", m.ackedSends(), len(unacked), restarts, faults.seen())
	if m.ackedSends() < minAcked || !faults.allSeen() {
		t.Fatalf("the workload did too little to test anything")
	}
}

// fault is what faultyStore does to one batch.
type fault uint8

const (
	noFault    fault = iota
	applyFails       // Apply fails, nothing handed over
	applyLands       // Apply fails after the batch became durable
	syncFails        // Wait fails although the batch became durable
	syncLost         // Wait fails, the batch never lands, nor any after it
	numFaults
)

var faultNames = [numFaults]string{"none", "apply-fails", "apply-lands", "sync-fails", "sync-lost"}

var errInjected = errors.New("injected store fault")

// faultyStore wraps the Pebble store with the failures that the
// timeline.Applier contract allows: a failed sync fails the batches handed
// over while it was pending (they land or not as it did), and a lost batch
// keeps its successors from landing. It records which inbox rows became
// durable, for checkRead.
type faultyStore struct {
	timeline.Store
	broken chan struct{} // gets a value when a batch is lost

	mu      sync.Mutex
	rng     *rand.Rand
	off     bool
	lost    bool           // a batch was lost since the last reset
	failing *faultyPending // a failed sync whose Wait has not returned
	counts  [numFaults]int
	durable map[userSeq]timeline.Row
}

type userSeq struct{ user, seq uint64 }

func newFaultyStore(seed uint64) *faultyStore {
	return &faultyStore{broken: make(chan struct{}, 1), rng: rand.New(rand.NewPCG(seed, seed>>3)), durable: map[userSeq]timeline.Row{}}
}

// reset wraps a reopened store: what broke the last one is gone.
func (f *faultyStore) reset(st timeline.Store) timeline.Store {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Store, f.lost, f.failing = st, false, nil
	return f
}

func (f *faultyStore) disable() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.off = true
}

func (f *faultyStore) seen() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for i, n := range f.counts {
		out[faultNames[i]] = n
	}
	return out
}

func (f *faultyStore) allSeen() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !slices.Contains(f.counts[:], 0)
}

// pick chooses the batch's fault; f.mu is held.
func (f *faultyStore) pick() fault {
	switch {
	case f.lost:
		return syncLost
	case f.failing != nil:
		return syncFails
	case f.off:
		return noFault
	}
	switch n := f.rng.IntN(100); {
	case n < 3:
		return applyFails
	case n < 6:
		return applyLands
	case n < 9:
		return syncFails
	case n < 11:
		return syncLost
	}
	return noFault
}

func (f *faultyStore) Apply(ctx context.Context, b *timeline.Batch) (timeline.Pending, error) {
	f.mu.Lock()
	kind := f.pick()
	f.counts[kind]++
	p := &faultyPending{f: f, rows: slices.Clone(b.Rows), fail: kind != noFault, yields: f.rng.IntN(20)}
	switch kind {
	case applyFails:
		f.mu.Unlock()
		return nil, fmt.Errorf("apply: %w", errInjected)
	case syncLost:
		if !f.lost {
			f.lost = true
			select {
			case f.broken <- struct{}{}:
			default: // a restart is due already
			}
		}
		f.mu.Unlock()
		return p, nil
	case syncFails:
		if f.failing == nil {
			f.failing = p
		}
	}
	f.mu.Unlock()
	next, err := f.Store.(timeline.Applier).Apply(ctx, b)
	if err != nil {
		return nil, err
	}
	p.next = next
	if kind == applyLands {
		return nil, fmt.Errorf("apply: %w", errors.Join(errInjected, p.Wait()))
	}
	return p, nil
}

// faultyPending is a batch handed to faultyStore.
type faultyPending struct {
	f      *faultyStore
	next   timeline.Pending // nil when the batch is lost
	rows   []timeline.Row
	fail   bool
	yields int // scheduler turns the sync seems to take after it is done
}

func (p *faultyPending) Wait() error {
	var err error
	if p.next != nil {
		err = p.next.Wait()
		// Readers get a chance to look before the batch is reported
		// durable: a reader that does not wait for that sees it now.
		for range p.yields {
			runtime.Gosched()
		}
	}
	f := p.f
	f.mu.Lock()
	if err == nil && p.next != nil {
		for _, r := range p.rows {
			f.durable[userSeq{r.User, r.Seq}] = r
		}
	}
	if f.failing == p {
		f.failing = nil
	}
	f.mu.Unlock()
	if p.fail {
		return fmt.Errorf("sync: %w", errors.Join(errInjected, err))
	}
	return err
}

// checkRead fails for an entry a reader got that the store has not
// reported durable.
func (f *faultyStore) checkRead(es []Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range es {
		if r, ok := f.durable[userSeq{e.Row.User, e.Row.Seq}]; !ok || r != e.Row {
			return fmt.Errorf("a reader got user %d's seq %d (%+v) before it was durable", e.Row.User, e.Row.Seq, e.Row)
		}
	}
	return nil
}
