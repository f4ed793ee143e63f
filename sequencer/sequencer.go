// Package sequencer hands out contiguous sequence numbers per key: the seqs of
// a user's inbox and the conv_seqs of a conversation.
//
// There is no counter stored apart from the timelines: a key's next seq is the
// seq of the key's newest committed entry plus one, read from the store the
// first time the key is used and kept in memory afterwards. That only works if
// the sequencer is the one writer of its keys, so the duties of its user are:
//
//  1. Begin a Txn, take seqs with Next for every entry the batch will hold.
//  2. Commit the batch to the store (atomically).
//  3. On success call Txn.Commit: the seqs become the keys' new heads.
//     On failure call Txn.Abort: the keys are forgotten and reloaded from
//     the store on their next use, so a batch whose outcome is unknown can
//     never leave a hole or a reused seq behind.
//
// A writer that pipelines its batches calls Txn.Seal once the batch is
// handed to the store: the next Txn then continues from the sealed seqs
// while Committed still reports the durable ones. Sealed Txns are
// committed or aborted in the order they were sealed, and when one fails,
// the ones sealed after it, built on its seqs, are aborted too.
//
// A key belongs to one open Txn at a time; another Txn asking for it gets
// ErrBusy rather than a seq that could commit out of order.
//
// Reading a head from the store is the sequencer's recovery: it happens on a
// key's first use after a start, after an idle key was evicted, and after a
// failed batch. Config.Registerer gets the metrics that count them
// (inboxd_sequencer_*).
//
// This package is the server's own (README, "Layout"): it has no
// compatibility promise. Clients use packages client, wire and token.
package sequencer

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrBusy is returned by Txn.Next and Txn.Last when another open Txn holds the key.
var ErrBusy = errors.New("sequencer: key held by another transaction")

// Space separates the key spaces that share one Sequencer.
type Space uint8

const (
	Inbox Space = 1 // ID is a user id
	Conv  Space = 2 // ID is a conversation id
)

// Key names one sequence.
type Key struct {
	Space Space
	ID    uint64
}

func (k Key) String() string {
	switch k.Space {
	case Inbox:
		return fmt.Sprintf("inbox %d", k.ID)
	case Conv:
		return fmt.Sprintf("conv %d", k.ID)
	}
	return fmt.Sprintf("space %d id %d", k.Space, k.ID)
}

// Config configures a Sequencer.
type Config struct {
	// Last returns the seq of the key's newest committed entry, 0 if none.
	// It is called without locks held and may do I/O.
	Last func(ctx context.Context, key Key) (uint64, error)
	// MaxKeys bounds how many keys' heads stay in memory; idle keys beyond it
	// are forgotten and reloaded when next used. 0 means 1<<20.
	MaxKeys int
	// Registerer gets the sequencer's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Sequencer assigns seqs. It is safe for concurrent use.
type Sequencer struct {
	last    func(ctx context.Context, key Key) (uint64, error)
	maxKeys int

	mu   sync.Mutex
	keys map[Key]*head
	// loads counts heads read from the store, for tests and metrics.
	loads uint64
	// loadErrors counts failed reads of a head; aborts counts Txns aborted.
	loadErrors, aborts uint64
}

type head struct {
	last   uint64 // newest committed seq
	loaded bool   // last has been read from the store
	owner  *Txn   // the open Txn holding the key, if any
	// sealed is the newest sealed Txn that assigned the key, nil once it
	// finished; next continues from its seq, applied.
	sealed  *Txn
	applied uint64
}

// New returns a Sequencer reading heads through cfg.Last. It fails only when
// its metrics cannot be registered.
func New(cfg Config) (*Sequencer, error) {
	if cfg.Last == nil {
		panic("sequencer: Config.Last is nil")
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 1 << 20
	}
	s := &Sequencer{last: cfg.Last, maxKeys: cfg.MaxKeys, keys: make(map[Key]*head)}
	if cfg.Registerer != nil {
		for _, c := range s.collectors() {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("sequencer: register metrics: %w", err)
			}
		}
	}
	return s, nil
}

// collectors read the sequencer's counts at scrape time: the counting itself
// happens under the mutex that the counted operations hold anyway.
func (s *Sequencer) collectors() []prometheus.Collector {
	read := func(f func() float64) func() float64 {
		return func() float64 {
			s.mu.Lock()
			defer s.mu.Unlock()
			return f()
		}
	}
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "inboxd", Subsystem: "sequencer", Name: name, Help: help}
	}
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("recoveries_total",
			"Sequence heads recovered from the store: a key's first use after a start, after eviction, or after a failed batch.")),
			read(func() float64 { return float64(s.loads) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("recovery_errors_total",
			"Recoveries of a head that failed because the store did not answer.")),
			read(func() float64 { return float64(s.loadErrors) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("aborts_total",
			"Transactions aborted after a failed batch; their keys are recovered on next use.")),
			read(func() float64 { return float64(s.aborts) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("keys",
			"Sequence keys whose head is held in memory.")),
			read(func() float64 { return float64(len(s.keys)) })),
	}
}

// Loads returns how many heads have been read from the store so far.
func (s *Sequencer) Loads() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loads
}

// Begin opens a transaction.
func (s *Sequencer) Begin() *Txn {
	return &Txn{s: s, pending: make(map[Key]uint64)}
}

// Txn is a set of seq assignments that become permanent together. A Txn is
// used by one goroutine.
type Txn struct {
	s       *Sequencer
	pending map[Key]uint64 // key -> last seq assigned in this Txn
	sealed  bool
	done    bool
}

// Next assigns the key's next seq.
func (t *Txn) Next(ctx context.Context, key Key) (uint64, error) {
	last, err := t.Last(ctx, key)
	if err != nil {
		return 0, err
	}
	t.pending[key] = last + 1
	return last + 1, nil
}

// Last returns the key's newest seq, counting those assigned in this Txn,
// and holds the key for this Txn.
func (t *Txn) Last(ctx context.Context, key Key) (uint64, error) {
	if t.done || t.sealed {
		panic("sequencer: use of a sealed or finished Txn")
	}
	if last, ok := t.pending[key]; ok {
		return last, nil
	}
	s := t.s
	s.mu.Lock()
	h, ok := s.keys[key]
	if ok {
		if h.owner != nil {
			s.mu.Unlock()
			return 0, fmt.Errorf("%w: %v", ErrBusy, key)
		}
		h.owner = t
		last := h.last
		if h.sealed != nil {
			last = h.applied
		}
		s.mu.Unlock()
		t.pending[key] = last
		return last, nil
	}
	// Hold the key while loading so that nobody else loads or assigns it.
	h = &head{owner: t}
	s.keys[key] = h
	s.loads++
	s.mu.Unlock()

	last, err := s.last(ctx, key)
	if err != nil {
		s.mu.Lock()
		delete(s.keys, key)
		s.loadErrors++
		s.mu.Unlock()
		return 0, fmt.Errorf("sequencer: load %v: %w", key, err)
	}
	s.mu.Lock()
	h.last, h.loaded = last, true
	s.mu.Unlock()
	t.pending[key] = last
	return last, nil
}

// Committed returns the key's newest committed seq when the key is in
// memory. Readers use it to hide entries of a batch still being written
// (a store may show them before they are durable, or one by one). When ok
// is false no write of the key is in flight, and everything the store shows
// is committed.
func (s *Sequencer) Committed(key Key) (last uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.keys[key]
	if h == nil || !h.loaded {
		return 0, false
	}
	return h.last, true
}

// Seal releases the keys to the next Txn, which continues from this one's
// seqs, while Committed keeps reporting the heads before it. Call it once
// the batch is handed to the store, then Commit or Abort.
func (t *Txn) Seal() {
	if t.done || t.sealed {
		panic("sequencer: Txn sealed twice or after it finished")
	}
	t.sealed = true
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, last := range t.pending {
		h := s.keys[key]
		if h == nil || h.owner != t {
			panic(fmt.Sprintf("sequencer: %v not held by the sealing Txn", key))
		}
		h.owner, h.sealed, h.applied = nil, t, last
	}
}

// Commit makes the Txn's assignments the keys' heads and releases the keys.
// Call it only after the entries carrying the seqs are durable.
func (t *Txn) Commit() {
	t.finish(func(h *head, last uint64) bool {
		h.last, h.loaded = last, true
		return true
	})
}

// Abort releases the keys and forgets their heads, so that they are reloaded
// from the store: after a failed write nobody knows which seqs landed. A
// sealed Txn's successors must be aborted too.
func (t *Txn) Abort() {
	t.finish(func(*head, uint64) bool { return false })
	t.s.mu.Lock()
	t.s.aborts++
	t.s.mu.Unlock()
}

func (t *Txn) finish(keep func(h *head, last uint64) bool) {
	if t.done {
		panic("sequencer: Txn finished twice")
	}
	t.done = true
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, last := range t.pending {
		h := s.keys[key]
		if t.sealed {
			// A predecessor's abort may have dropped the key already.
			if h == nil {
				continue
			}
			if h.sealed == t {
				h.sealed = nil
			}
		} else if h == nil || h.owner != t {
			panic(fmt.Sprintf("sequencer: %v not held by the finishing Txn", key))
		} else {
			h.owner = nil
		}
		if !keep(h, last) {
			delete(s.keys, key)
		}
	}
	s.evictLocked()
}

// Forget forgets the idle keys drop names, so that they are reloaded from
// the store on next use: a node forgets the keys of a shard it stopped
// serving, whose heads another node may move meanwhile. Keys held by an
// open Txn are kept; call it between transactions.
func (s *Sequencer) Forget(drop func(Key) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, h := range s.keys {
		if h.owner == nil && h.sealed == nil && drop(key) {
			delete(s.keys, key)
		}
	}
}

// evictLocked forgets idle keys beyond maxKeys. Which ones does not matter
// for correctness: a forgotten key is reloaded from the store.
func (s *Sequencer) evictLocked() {
	excess := len(s.keys) - s.maxKeys
	for key, h := range s.keys {
		if excess <= 0 {
			return
		}
		if h.owner == nil && h.sealed == nil {
			delete(s.keys, key)
			excess--
		}
	}
}
