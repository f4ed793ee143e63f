package bench

import (
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// stats are the run's counters, updated from every device goroutine.
type stats struct {
	sends           atomic.Int64 // SEND requests written, retries included
	directSends     atomic.Int64 // of which SEND_DIRECT
	acked           atomic.Int64 // sends acknowledged
	duplicateAcks   atomic.Int64 // acks with duplicate set: a resend found the first
	retries         atomic.Int64
	noSender        atomic.Int64 // sends skipped: no member of the group online
	amends          atomic.Int64 // recalls and edits made (first attempts)
	mentions        atomic.Int64 // mentioning messages made (first attempts)
	pushed          atomic.Int64 // entries received by PUSH, across all devices
	synced          atomic.Int64 // entries applied from SYNC pages
	gapSyncs        atomic.Int64 // SYNCs started by a push beyond last+1
	reconnects      atomic.Int64
	connectFailures atomic.Int64
	markReads       atomic.Int64
	kills           atomic.Int64
	errors          [32]atomic.Int64 // by code; 0 holds unknown codes
}

func (s *stats) countError(code uint32) {
	if code >= uint32(len(s.errors)) {
		code = 0
	}
	s.errors[code].Add(1)
}

// histShards spreads the recording of latencies over several locks: a
// hundred thousand deliveries a second from many goroutines would contend
// on one.
const histShards = 16

// hist is a latency histogram in nanoseconds, safe for concurrent use.
type hist struct {
	shards [histShards]struct {
		mu sync.Mutex
		h  *hdrhistogram.Histogram
		_  [48]byte // keep shards on separate cache lines
	}
}

func newHist() *hist {
	h := &hist{}
	for i := range h.shards {
		// 1µs to 5 minutes, 3 significant digits.
		h.shards[i].h = hdrhistogram.New(1_000, int64(5*time.Minute), 3)
	}
	return h
}

func (h *hist) record(shard int, ns int64) {
	s := &h.shards[shard%histShards]
	s.mu.Lock()
	s.h.RecordValue(max(ns, 1_000)) // values above the top count as the top
	s.mu.Unlock()
}

// reset forgets everything recorded: the load phase starts after setup.
func (h *hist) reset() {
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.Lock()
		s.h.Reset()
		s.mu.Unlock()
	}
}

// Latency is a latency distribution, in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

func (h *hist) summary() Latency {
	all := hdrhistogram.New(1_000, int64(5*time.Minute), 3)
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.Lock()
		all.Merge(s.h)
		s.mu.Unlock()
	}
	ms := func(ns int64) float64 { return float64(ns) / 1e6 }
	return Latency{
		Count: all.TotalCount(),
		P50:   ms(all.ValueAtQuantile(50)), P90: ms(all.ValueAtQuantile(90)),
		P99: ms(all.ValueAtQuantile(99)), P999: ms(all.ValueAtQuantile(99.9)),
		Max: ms(all.Max()),
	}
}

type hists struct {
	ack, delivery *hist
}
