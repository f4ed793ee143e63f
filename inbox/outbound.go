package inbox

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/inboxd/inboxd/cluster"
	"github.com/inboxd/inboxd/internal/backoff"
	"github.com/inboxd/inboxd/timeline"
)

// Deliverer sends outbox records to the node serving their destination
// shards, which applies them (Service.Apply there) and answers how far it
// applied each stream. Each record holds only the parts for shards dest
// serves (as last known), in stream order.
type Deliverer interface {
	Deliver(ctx context.Context, dest cluster.NodeInfo, records []timeline.OutboxRecord) ([]timeline.AppliedMark, error)
}

// Bounds of the delivery loop's memory: records held per source shard (the
// rest wait in the store), records handed over by the committer and not yet
// taken, and records in one request. Tests make them small.
type outboxLimits struct {
	queued, incoming, perRequest int
}

var defaultOutboxLimits = outboxLimits{queued: 4096, incoming: 8192, perRequest: 512}

// deliveryBackoff spaces the retries of a failed or refused delivery.
var deliveryBackoff = backoff.Policy{Min: 10 * time.Millisecond, Max: time.Second}

// outbound delivers the outbox of the shards this node serves. The
// committer hands it each batch's records; one goroutine sends them, learns
// the applied marks, and advances each source's low-water mark, which the
// committer writes with its next batch. Records it holds no more (a full
// queue, a shard gained, a commit whose outcome is unknown) are read back
// from the store.
type outbound struct {
	s      *Service
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	wake   chan struct{}
	limits outboxLimits

	mu       sync.Mutex
	incoming []timeline.OutboxRecord
	reloads  map[int]bool
	lows     map[int]uint64 // for the committer to write

	// The loop's own state.
	queues map[int]*queue // by source shard served
	acked  map[pair]uint64
}

// queue is the undelivered outbox of one source shard: records low+1 …
// last, contiguous, and when truncated more after last in the store.
type queue struct {
	recs      []timeline.OutboxRecord
	low, last uint64
	truncated bool
	fresh     bool   // low not read yet
	epoch     uint64 // the shard's epoch when the queue was made
}

func newOutbound(s *Service) *outbound {
	o := &outbound{s: s, done: make(chan struct{}), wake: make(chan struct{}, 1), limits: defaultOutboxLimits,
		reloads: map[int]bool{}, lows: map[int]uint64{}, queues: map[int]*queue{}, acked: map[pair]uint64{}}
	if s.cfg.outboxLimits != (outboxLimits{}) {
		o.limits = s.cfg.outboxLimits
	}
	o.ctx, o.cancel = context.WithCancel(context.Background())
	go o.run()
	return o
}

func (o *outbound) stop() {
	o.cancel()
	<-o.done
}

func (o *outbound) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// push hands over a committed batch's records (committer).
func (o *outbound) push(recs []timeline.OutboxRecord) {
	if len(recs) == 0 {
		return
	}
	o.mu.Lock()
	if len(o.incoming)+len(recs) > o.limits.incoming {
		for _, r := range recs {
			o.reloads[r.Source] = true
		}
	} else {
		o.incoming = append(o.incoming, recs...)
	}
	o.mu.Unlock()
	o.signal()
}

// reload has the records of sources read from the store again (committer).
func (o *outbound) reload(sources ...int) {
	o.mu.Lock()
	for _, src := range sources {
		o.reloads[src] = true
	}
	o.mu.Unlock()
	o.signal()
}

// settle adds the low-water marks advanced since the last batch to tx
// (committer, at the start of a batch).
func (o *outbound) settle(tx *txn) {
	o.mu.Lock()
	var lows map[int]uint64
	if len(o.lows) > 0 {
		lows, o.lows = o.lows, map[int]uint64{}
	}
	o.mu.Unlock()
	for src, low := range lows {
		if tx.servesShard(src) {
			tx.b.OutboxLows = append(tx.b.OutboxLows, timeline.OutboxLow{Source: src, Seq: low})
		}
	}
}

func (o *outbound) run() {
	defer close(o.done)
	// Subscribed before the first look at the shards served, so that no
	// change after it is missed.
	changes := o.s.own.Changes()
	o.served()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	waiting, attempt := false, 0
	for {
		o.take()
		if !waiting {
			ok := o.refill()
			more := false
			if o.pending() {
				var sent bool
				sent, more = o.round()
				ok = ok && sent
			}
			if ok {
				attempt = 0
				if more || o.truncated() {
					o.signal() // the rest at once: nothing failed
				}
			} else {
				retry.Reset(deliveryBackoff.Delay(attempt))
				attempt++
				waiting = true
			}
		}
		select {
		case <-o.ctx.Done():
			return
		case <-o.wake:
		case <-changes:
			changes = o.s.own.Changes()
			o.served()
		case <-retry.C:
			waiting = false
		}
	}
}

// served brings the queues in line with the shards served: a shard gained
// (or served again under a new epoch: another node may have written its
// outbox meanwhile) gets its outbox read from the store, a shard lost is
// dropped with what was learned of its streams.
func (o *outbound) served() {
	now := map[int]uint64{}
	for _, sh := range o.s.own.Shards() {
		if epoch, ok := o.s.own.Serving(sh); ok {
			now[sh] = epoch
		}
	}
	for sh, q := range o.queues {
		if epoch, ok := now[sh]; !ok || epoch != q.epoch {
			delete(o.queues, sh)
			for k := range o.acked {
				if k.src == sh {
					delete(o.acked, k)
				}
			}
		}
	}
	for sh, epoch := range now {
		if o.queues[sh] == nil {
			o.queues[sh] = &queue{epoch: epoch, fresh: true, truncated: true}
		}
	}
}

// take moves the records handed over into the queues.
func (o *outbound) take() {
	o.mu.Lock()
	in, reloads := o.incoming, o.reloads
	o.incoming, o.reloads = nil, map[int]bool{}
	o.mu.Unlock()
	for src := range reloads {
		if q := o.queues[src]; q != nil {
			q.truncated = true
		}
	}
	for _, r := range in {
		q := o.queues[r.Source]
		switch {
		case q == nil || q.fresh || r.Seq <= q.last:
		case r.Seq == q.last+1 && !q.truncated && len(q.recs) < o.limits.queued:
			q.recs = append(q.recs, r)
			q.last = r.Seq
		default:
			q.truncated = true
		}
	}
}

// refill reads from the store the records of the truncated queues, as many
// as they hold. It reports false when a read failed.
func (o *outbound) refill() bool {
	ok := true
	st := o.s.store
	for src, q := range o.queues {
		if q.fresh {
			low, err := st.OutboxLow(o.ctx, src)
			if err != nil {
				o.s.log.Warn("inbox: read outbox low-water mark", "shard", src, "err", err)
				ok = false
				continue
			}
			q.low, q.last, q.fresh = low, low, false
		}
		for q.truncated && len(q.recs) < o.limits.queued {
			want := min(o.limits.queued-len(q.recs), outboxPage)
			recs, err := st.Outbox(o.ctx, src, q.last, want)
			if err != nil {
				o.s.log.Warn("inbox: read outbox", "shard", src, "err", err)
				ok = false
				break
			}
			before := q.last
			for _, r := range recs {
				if r.Seq == q.last+1 {
					q.recs = append(q.recs, r)
					q.last = r.Seq
				}
			}
			if len(recs) > 0 && q.last == before {
				// Outbox seqs have no gap: this one is a bug, not to be
				// read again and again.
				o.s.log.Error("inbox: outbox seq gap", "shard", src, "after", before, "next", recs[0].Seq)
				ok = false
				break
			}
			if len(recs) < want {
				q.truncated = false
			}
		}
	}
	return ok
}

// truncated reports whether a queue has records left in the store and room
// for them.
func (o *outbound) truncated() bool {
	for _, q := range o.queues {
		if q.truncated && len(q.recs) < o.limits.queued {
			return true
		}
	}
	return false
}

func (o *outbound) pending() bool {
	for _, q := range o.queues {
		if len(q.recs) > 0 {
			return true
		}
	}
	return false
}

// round sends the queued records to the nodes of their destinations, the
// parts already applied left out, up to limits.perRequest a node, and advances
// the low-water marks. It reports whether every part sent was delivered and
// applied, and whether parts were left for the next round.
func (o *outbound) round() (ok, more bool) {
	type request struct {
		node cluster.NodeInfo
		recs []timeline.OutboxRecord
	}
	var local request
	remote := map[int]*request{}
	ok = true
	for _, src := range slices.Sorted(maps.Keys(o.queues)) {
		for _, r := range o.queues[src].recs {
			parts := map[*request][]timeline.OutboxDest{}
			var order []*request
			for _, d := range r.Dests {
				if d.Stream <= o.acked[pair{src, d.Shard}] {
					continue
				}
				req := &local
				if _, mine := o.s.own.Serving(d.Shard); !mine {
					node, known := o.s.own.Owner(d.Shard)
					if !known {
						ok = false
						continue
					}
					if req = remote[node.ID]; req == nil {
						req = &request{node: node}
						remote[node.ID] = req
					}
				}
				if _, seen := parts[req]; !seen {
					order = append(order, req)
				}
				parts[req] = append(parts[req], d)
			}
			for _, req := range order {
				if len(req.recs) < o.limits.perRequest {
					part := r
					part.Dests = parts[req]
					req.recs = append(req.recs, part)
				} else {
					more = true
				}
			}
		}
	}
	send := func(req *request, deliver func([]timeline.OutboxRecord) ([]timeline.AppliedMark, error)) {
		if len(req.recs) == 0 {
			return
		}
		marks, err := deliver(req.recs)
		if err != nil {
			o.s.log.Warn("inbox: deliver outbox records", "node", req.node.ID, "records", len(req.recs), "err", err)
			ok = false
			return
		}
		for _, m := range marks {
			k := pair{m.Source, m.Dest}
			o.acked[k] = max(o.acked[k], m.Stream)
		}
		for _, r := range req.recs {
			for _, d := range r.Dests {
				if d.Stream > o.acked[pair{r.Source, d.Shard}] {
					ok = false // refused: a gap, or a shard the node does not serve
				}
			}
		}
	}
	send(&local, func(recs []timeline.OutboxRecord) ([]timeline.AppliedMark, error) {
		return o.s.Apply(o.ctx, recs)
	})
	for _, id := range slices.Sorted(maps.Keys(remote)) {
		req := remote[id]
		send(req, func(recs []timeline.OutboxRecord) ([]timeline.AppliedMark, error) {
			return o.s.cfg.Deliverer.Deliver(o.ctx, req.node, recs)
		})
	}
	o.advance()
	return ok, more
}

// advance drops the records every destination applied and notes the new
// low-water marks for the committer.
func (o *outbound) advance() {
	lows := map[int]uint64{}
	for src, q := range o.queues {
		n := 0
		for n < len(q.recs) && o.applied(&q.recs[n]) {
			n++
		}
		if n == 0 {
			continue
		}
		q.low = q.recs[n-1].Seq
		q.recs = slices.Delete(q.recs, 0, n)
		lows[src] = q.low
	}
	if len(lows) == 0 {
		return
	}
	o.mu.Lock()
	maps.Copy(o.lows, lows)
	o.mu.Unlock()
}

func (o *outbound) applied(r *timeline.OutboxRecord) bool {
	for _, d := range r.Dests {
		if d.Stream > o.acked[pair{r.Source, d.Shard}] {
			return false
		}
	}
	return true
}
