package sequencer

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// store is a committed-state model: what the timelines hold.
type store struct {
	mu   sync.Mutex
	last map[Key]uint64
	err  error
}

func newStore() *store { return &store{last: make(map[Key]uint64)} }

func (s *store) Last(_ context.Context, k Key) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last[k], s.err
}

func (s *store) commit(p map[Key]uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range p {
		s.last[k] = v
	}
}

func TestNextIsContiguousAcrossTxns(t *testing.T) {
	ctx := context.Background()
	st := newStore()
	st.last[Key{Inbox, 7}] = 41
	s := mustNew(t, Config{Last: st.Last})

	tests := []struct {
		key  Key
		want []uint64
	}{
		{Key{Inbox, 7}, []uint64{42, 43, 44}},
		{Key{Conv, 7}, []uint64{1, 2}}, // same id, other space: independent
		{Key{Inbox, 7}, []uint64{45}},
	}
	for _, tt := range tests {
		tx := s.Begin()
		for _, want := range tt.want {
			got, err := tx.Next(ctx, tt.key)
			if err != nil || got != want {
				t.Fatalf("Next(%v) = %d, %v; want %d", tt.key, got, err, want)
			}
		}
		tx.Commit()
	}
	if got := s.Loads(); got != 2 {
		t.Errorf("Loads = %d, want 2 (each key read once)", got)
	}
}

func TestAbortReloadsFromStore(t *testing.T) {
	ctx := context.Background()
	st := newStore()
	s := mustNew(t, Config{Last: st.Last})
	k := Key{Inbox, 1}

	tx := s.Begin()
	for range 3 {
		if _, err := tx.Next(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	tx.Commit()
	st.commit(map[Key]uint64{k: 3})

	// A batch that failed after landing seq 4 only: the head must come
	// from the store, not from memory (5) or from before the batch (3).
	tx = s.Begin()
	tx.Next(ctx, k)
	tx.Next(ctx, k)
	st.commit(map[Key]uint64{k: 4})
	tx.Abort()

	tx = s.Begin()
	got, err := tx.Next(ctx, k)
	if err != nil || got != 5 {
		t.Fatalf("after abort Next = %d, %v; want 5", got, err)
	}
	tx.Commit()
}

func TestKeyHeldByOneTxn(t *testing.T) {
	ctx := context.Background()
	s := mustNew(t, Config{Last: newStore().Last})
	k := Key{Conv, 9}
	a, b := s.Begin(), s.Begin()
	if _, err := a.Next(ctx, k); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Next(ctx, k); !errors.Is(err, ErrBusy) {
		t.Fatalf("second Txn got %v, want ErrBusy", err)
	}
	if _, err := b.Last(ctx, k); !errors.Is(err, ErrBusy) {
		t.Fatalf("second Txn Last got %v, want ErrBusy", err)
	}
	a.Commit()
	if got, err := b.Next(ctx, k); err != nil || got != 2 {
		t.Fatalf("after release Next = %d, %v; want 2", got, err)
	}
	b.Commit()
}

func TestLoadError(t *testing.T) {
	ctx := context.Background()
	st := newStore()
	st.err = errors.New("disk on fire")
	s := mustNew(t, Config{Last: st.Last})
	k := Key{Inbox, 3}
	tx := s.Begin()
	if _, err := tx.Next(ctx, k); !errors.Is(err, st.err) {
		t.Fatalf("Next = %v, want the load error", err)
	}
	tx.Abort()
	st.err = nil
	st.commit(map[Key]uint64{k: 10})
	tx = s.Begin()
	if got, err := tx.Next(ctx, k); err != nil || got != 11 {
		t.Fatalf("Next = %d, %v; want 11", got, err)
	}
	tx.Commit()
}

func TestEvictionReloads(t *testing.T) {
	ctx := context.Background()
	st := newStore()
	s := mustNew(t, Config{Last: st.Last, MaxKeys: 4})
	for id := range uint64(50) {
		k := Key{Inbox, id % 10}
		tx := s.Begin()
		got, err := tx.Next(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if want := id/10 + 1; got != want {
			t.Fatalf("key %v: Next = %d, want %d", k, got, want)
		}
		st.commit(tx.pending)
		tx.Commit()
		if n := len(s.keys); n > 4 {
			t.Fatalf("%d keys in memory, MaxKeys 4", n)
		}
	}
	if s.Loads() <= 10 {
		t.Errorf("Loads = %d: eviction never forced a reload", s.Loads())
	}
}

// TestForget: a forgotten key is read from the store again, where another
// writer (the shard's next owner) moved it; the others and a held key stay.
func TestForget(t *testing.T) {
	ctx := context.Background()
	st := newStore()
	s := mustNew(t, Config{Last: st.Last})
	a, b, held := Key{Conv, 1}, Key{Inbox, 2}, Key{Conv, 3}
	tx := s.Begin()
	for _, k := range []Key{a, b} {
		if _, err := tx.Next(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	st.commit(tx.pending)
	tx.Commit()
	open := s.Begin()
	if _, err := open.Next(ctx, held); err != nil {
		t.Fatal(err)
	}
	st.commit(map[Key]uint64{a: 7, b: 9}) // written elsewhere meanwhile
	s.Forget(func(k Key) bool { return k.Space == Conv })
	if _, ok := s.Committed(held); !ok {
		t.Error("Forget dropped a key held by an open Txn")
	}
	open.Commit()
	tx = s.Begin()
	defer tx.Commit()
	for k, want := range map[Key]uint64{a: 8, b: 2} {
		if got, err := tx.Next(ctx, k); err != nil || got != want {
			t.Errorf("key %v after Forget: Next = %d, %v; want %d", k, got, err, want)
		}
	}
}

// TestConcurrentTxns runs writers that each own a disjoint set of keys and
// one shared key they contend for; every key must end contiguous.
func TestConcurrentTxns(t *testing.T) {
	ctx := context.Background()
	st := newStore()
	s := mustNew(t, Config{Last: st.Last, MaxKeys: 8})
	shared := Key{Conv, 0}
	var mu sync.Mutex
	seen := make(map[Key][]uint64)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				tx := s.Begin()
				keys := []Key{{Inbox, uint64(w)}, shared}
				var got []uint64
				busy := false
				for _, k := range keys {
					n, err := tx.Next(ctx, k)
					if errors.Is(err, ErrBusy) {
						busy = true
						break
					}
					if err != nil {
						t.Error(err)
						return
					}
					got = append(got, n)
				}
				if busy || i%7 == 0 {
					tx.Abort() // nothing was written: the store keeps its heads
					continue
				}
				st.commit(tx.pending)
				mu.Lock()
				for j, n := range got {
					seen[keys[j]] = append(seen[keys[j]], n)
				}
				mu.Unlock()
				tx.Commit()
			}
		})
	}
	wg.Wait()
	for k, seqs := range seen {
		for i, n := range seqs {
			if n != uint64(i+1) {
				t.Fatalf("%v: committed seqs %v are not 1..n", k, seqs[:i+1])
			}
		}
	}
	if len(seen[shared]) == 0 {
		t.Fatal("shared key never committed")
	}
}

func mustNew(t *testing.T, cfg Config) *Sequencer {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestMetrics follows a load error, an abort and the recoveries they cause
// in the registered metrics.
func TestMetrics(t *testing.T) {
	ctx := context.Background()
	st := newStore()
	reg := prometheus.NewPedanticRegistry()
	s := mustNew(t, Config{Last: st.Last, Registerer: reg})
	want := func(step string, recoveries, errs, aborts, keys float64) {
		t.Helper()
		for name, w := range map[string]float64{
			"inboxd_sequencer_recoveries_total":      recoveries,
			"inboxd_sequencer_recovery_errors_total": errs,
			"inboxd_sequencer_aborts_total":          aborts,
			"inboxd_sequencer_keys":                  keys,
		} {
			if got := gathered(t, reg, name); got != w {
				t.Errorf("%s: %s = %v, want %v", step, name, got, w)
			}
		}
	}
	want("new", 0, 0, 0, 0)
	st.err = errors.New("disk on fire")
	tx := s.Begin()
	tx.Next(ctx, Key{Inbox, 1})
	tx.Abort()
	want("load error", 1, 1, 1, 0)
	st.err = nil
	tx = s.Begin()
	tx.Next(ctx, Key{Inbox, 1})
	tx.Next(ctx, Key{Conv, 2})
	tx.Commit()
	want("two keys", 3, 1, 1, 2)
	tx = s.Begin()
	tx.Next(ctx, Key{Inbox, 1}) // in memory: no recovery
	tx.Commit()
	want("cached", 3, 1, 1, 2)
	if _, err := New(Config{Last: st.Last, Registerer: reg}); err == nil {
		t.Error("a second sequencer registered the same metrics")
	}
}

// gathered returns the value of the unlabelled metric name in reg.
func gathered(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not gathered", name)
	return 0
}

// TestSealedTxns pipelines two Txns over one key: the second continues from
// the first's seqs as soon as it is sealed, Committed reports only what was
// committed, and aborting the first and then the second reloads the key.
func TestSealedTxns(t *testing.T) {
	ctx := context.Background()
	st := newStore()
	s := mustNew(t, Config{Last: st.Last, MaxKeys: 1})
	k, other := Key{Inbox, 1}, Key{Conv, 2}
	next := func(tx *Txn, k Key, want uint64) {
		t.Helper()
		if got, err := tx.Next(ctx, k); err != nil || got != want {
			t.Fatalf("Next(%v) = %d, %v; want %d", k, got, err, want)
		}
	}
	committed := func(want uint64) {
		t.Helper()
		if got, ok := s.Committed(k); !ok || got != want {
			t.Fatalf("Committed = %d, %v; want %d, true", got, ok, want)
		}
	}

	t1 := s.Begin()
	next(t1, k, 1)
	t1.Seal()
	t2 := s.Begin()
	next(t2, k, 2)
	next(t2, other, 1) // past MaxKeys: the sealed key must not be evicted
	t2.Seal()
	committed(0)
	st.commit(map[Key]uint64{k: 1})
	t1.Commit()
	committed(1)
	st.commit(map[Key]uint64{k: 2, other: 1})
	t2.Commit()
	if got, ok := s.Committed(k); ok && got != 2 { // idle now: it may be evicted
		t.Fatalf("Committed = %d after the second commit", got)
	}

	t3 := s.Begin()
	next(t3, k, 3)
	t3.Seal()
	t4 := s.Begin()
	next(t4, k, 4)
	t4.Seal()
	st.commit(map[Key]uint64{k: 3}) // t3 landed before failing
	t3.Abort()
	t4.Abort()
	t5 := s.Begin()
	next(t5, k, 4)
	t5.Commit()
}
