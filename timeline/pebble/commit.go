package pebble

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"

	"github.com/inboxd/inboxd/timeline"
)

// Commit writes b as one Pebble batch and, unless the store was opened with
// NoSync, syncs the write-ahead log before it returns. A context that is done
// before the batch is handed to Pebble fails the call with nothing written;
// once handed over, the commit is not interrupted.
func (s *Store) Commit(ctx context.Context, b *timeline.Batch) error {
	p, err := s.Apply(ctx, b)
	if err != nil {
		return err
	}
	return p.Wait()
}

var _ timeline.Applier = (*Store)(nil)

// pending is a batch handed to Pebble whose write-ahead log sync may still
// be in flight.
type pending struct {
	s   *Store
	pb  *pebble.Batch // nil once waited for, or when nothing waits for a sync
	err error
}

// Apply writes b as one Pebble batch and returns without waiting for the
// write-ahead log sync, so that the caller can build and apply its next
// batch while this one syncs: Pebble syncs the batches queued meanwhile
// together. The batch is visible to every reader of the store when Apply
// returns, before it is durable (as it is during a Commit too): a caller
// that must not show what a crash could take back caps its reads at the
// batches whose Wait has returned nil. Wait must be called once.
//
// A failed sync fails the Wait of every batch applied after it as well:
// Pebble's log writer keeps its first error. The batches stay readable in
// Pebble's memtable, not durable, so the store then refuses every call
// until it is reopened.
func (s *Store) Apply(ctx context.Context, b *timeline.Batch) (timeline.Pending, error) {
	if err := s.enter("commit"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("timeline/pebble: commit: %w", err)
	}
	p := &pending{s: s}
	if b.Empty() {
		return p, nil
	}
	pb := s.db.NewBatchWithSize(batchSize(b))
	scratch, _ := s.orders.Get().(*[]sortKey)
	if scratch == nil {
		scratch = new([]sortKey)
	}
	err := fill(pb, b, s.storedLow, scratch)
	s.orders.Put(scratch)
	if err != nil {
		pb.Close()
		return nil, fmt.Errorf("timeline/pebble: commit: %w", err)
	}
	if !s.sync.Sync {
		defer pb.Close()
		if err := pb.Commit(s.sync); err != nil {
			return nil, fmt.Errorf("timeline/pebble: commit: %w", err)
		}
		return p, nil
	}
	if err := s.db.ApplyNoSyncWait(pb, s.sync); err != nil {
		pb.Close()
		return nil, fmt.Errorf("timeline/pebble: commit: %w", err)
	}
	// Close waits for the syncs in flight: Pebble must not be closed under
	// a batch whose sync it has not reported.
	s.syncs.Add(1)
	p.pb = pb
	return p, nil
}

// Wait waits for the batch's write-ahead log sync and reports its outcome:
// nil means the batch is durable.
func (p *pending) Wait() error {
	if p.pb == nil {
		return p.err
	}
	defer p.s.syncs.Done()
	if err := p.pb.SyncWait(); err != nil {
		p.err = fmt.Errorf("timeline/pebble: commit: sync: %w", err)
		p.s.failed.CompareAndSwap(nil, &p.err)
	}
	p.pb.Close()
	p.pb = nil
	return p.err
}

// batchSize estimates the bytes of the Pebble batch for b, so that a large
// fan-out batch is allocated once instead of growing by doubling. A row takes
// about 40 bytes: batch framing (kind, two lengths), a 17-byte key and a few
// uvarints; messages add their client id and body.
func batchSize(b *timeline.Batch) int {
	const perRecord = 48
	n := perRecord * (len(b.Rows) + len(b.Messages) + len(b.Members) + len(b.Conversations) + len(b.Markers) + 2*len(b.Activities) + len(b.Dedups) +
		len(b.Mentions) + len(b.Outbox) + len(b.OutboxLows) + len(b.Applied))
	for i := range b.Messages {
		n += len(b.Messages[i].Body) + len(b.Messages[i].ClientMsgID)
	}
	return n
}

// fill writes every record of b into pb. Keys and values are built in two
// scratch buffers that pb.Set copies from, so a row costs no allocation.
// Deleted members are written after the members, so that a batch that both
// writes and deletes a member deletes it, as a same-timestamp Cassandra
// tombstone would.
//
// The rows go in key order and the activity index moves by user, as they
// are the records a delivery costs: Pebble inserts a batch into its memtable's skiplist one record
// after the other, starting each search from where the previous insert
// left off when the key follows it, and otherwise from the top through the
// nodes the previous search left in the CPU's caches. A commit builds them
// send by send, each send's members in ascending order, so the same users
// come round again with every send.
func fill(pb *pebble.Batch, b *timeline.Batch, lowOf func(source int) (uint64, bool, error), scratch *[]sortKey) error {
	w := &batchWriter{pb: pb, key: make([]byte, 0, 64), val: make([]byte, 0, 256), order: *scratch}
	defer func() { *scratch = w.order }()
	set(w, b.Messages, func(k []byte, m *timeline.Message) []byte {
		return appendKey(k, prefixMessage, m.Conv, m.ConvSeq)
	}, appendMessageValue)
	w.order = w.order[:0]
	for i := range b.Rows {
		w.order = append(w.order, sortKey{b.Rows[i].User, b.Rows[i].Seq, i})
	}
	w.sort()
	for _, k := range w.order {
		if w.err != nil {
			break
		}
		r := &b.Rows[k.i]
		w.key = appendKey(w.key[:0], prefixInbox, r.User, r.Seq)
		w.val = appendRowValue(w.val[:0], r)
		w.err = pb.Set(w.key, w.val, nil)
	}
	set(w, b.Groups, func(k []byte, g *timeline.Group) []byte {
		return appendKey(k, prefixGroup, g.ID)
	}, appendGroupValue)
	set(w, b.Members, func(k []byte, m *timeline.Member) []byte {
		return appendKey(k, prefixMember, m.Conv, m.User)
	}, appendMemberValue)
	for _, k := range b.RemoveMembers {
		w.key = appendKey(w.key[:0], prefixMember, k.Conv, k.User)
		if w.err == nil {
			w.err = pb.Delete(w.key, nil)
		}
	}
	set(w, b.Conversations, func(k []byte, c *timeline.Conversation) []byte {
		return appendKey(k, prefixConversation, c.User, c.Conv)
	}, appendConversationValue)
	set(w, b.Markers, func(k []byte, m *timeline.Marker) []byte {
		return appendKey(k, prefixMarker, m.User, m.Conv)
	}, func(v []byte, m *timeline.Marker) []byte {
		return appendUint64Value(v, m.ReadSeq)
	})
	w.order = w.order[:0]
	for i := range b.Activities {
		w.order = append(w.order, sortKey{b.Activities[i].User, b.Activities[i].Conv, i})
	}
	w.sort()
	for _, k := range w.order {
		a := &b.Activities[k.i]
		window := windowOf(a.At)
		if prev := windowOf(a.Prev); w.err == nil && !a.Prev.IsZero() && !prev.Equal(window) {
			w.key = appendActivityKey(w.key[:0], a.User, prev, a.Conv)
			w.err = pb.Delete(w.key, nil)
		}
		if w.err == nil {
			w.key = appendActivityKey(w.key[:0], a.User, window, a.Conv)
			w.val = appendActivityValue(w.val[:0], a.At)
			w.err = pb.Set(w.key, w.val, nil)
		}
	}
	set(w, b.Dedups, func(k []byte, d *timeline.Dedup) []byte {
		return appendDedupKey(k, d.Sender, d.ClientMsgID)
	}, appendDedupValue)
	for _, m := range b.Mentions {
		if w.err == nil {
			w.key = appendKey(w.key[:0], prefixMention, m.Conv, m.User, m.ConvSeq)
			w.err = pb.Set(w.key, []byte{valueVersion}, nil)
		}
	}
	fillOutbox(w, b, lowOf)
	if b.Clock != 0 && w.err == nil {
		w.key = appendKey(w.key[:0], prefixClock, uint64(b.ClockNode))
		w.val = appendUint64Value(w.val[:0], b.Clock)
		w.err = pb.Set(w.key, w.val, nil)
	}
	return w.err
}

// set writes each record of recs under the key appendKey builds with the
// value appendValue encodes.
func set[T any](w *batchWriter, recs []T, appendKey, appendValue func([]byte, *T) []byte) {
	for i := range recs {
		if w.err != nil {
			return
		}
		w.key = appendKey(w.key[:0], &recs[i])
		w.val = appendValue(w.val[:0], &recs[i])
		w.err = w.pb.Set(w.key, w.val, nil)
	}
}

// batchWriter holds the scratch buffers of fill and its first error.
type batchWriter struct {
	pb       *pebble.Batch
	key, val []byte
	order    []sortKey // the records being written, in key order
	err      error
}

// sortKey is a record of b to write, at index i, by the two ids that
// lead its key. Sorting these rather than indexes into b keeps the
// comparisons off b's much larger records.
type sortKey struct {
	a, b uint64
	i    int
}

// sort orders w.order by its ids, equal ones by index, so that of two
// writes of one key the later still wins.
func (w *batchWriter) sort() {
	slices.SortFunc(w.order, func(x, y sortKey) int {
		switch {
		case x.a != y.a:
			return cmp.Compare(x.a, y.a)
		case x.b != y.b:
			return cmp.Compare(x.b, y.b)
		}
		return cmp.Compare(x.i, y.i)
	})
}
