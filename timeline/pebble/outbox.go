package pebble

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"

	"github.com/inboxd/inboxd/timeline"
)

// maxPointDrops bounds the records a low-water mark drops one by one; a
// larger step is one range deletion.
const maxPointDrops = 1024

// fillOutbox writes b's outbox records, low-water marks and applied marks
// into the batch. A low-water mark drops its shard's records above the
// previous mark (lowOf, the stored one) up to it, one point deletion each:
// a range deletion per mark, each from 0, piled up in the memtable, and
// every read iterator fragmented them all again, so reads slowed with every
// message sent (relay's BenchmarkSend: from 0.7 ms a SEND over 200 to
// 6 ms over 2000). A step past maxPointDrops, or the drop of a shard's
// whole outbox (Seq = MaxUint64), is one range deletion of that step.
func fillOutbox(w *batchWriter, b *timeline.Batch, lowOf func(source int) (uint64, bool, error)) {
	set(w, b.Outbox, func(k []byte, r *timeline.OutboxRecord) []byte {
		return appendKey(k, prefixOutbox, uint64(r.Source), r.Seq)
	}, func(v []byte, r *timeline.OutboxRecord) []byte {
		v, _ = r.AppendBinary(v) // never fails
		return v
	})
	from := map[int]uint64{} // the first seq not dropped yet, by source
	for _, l := range b.OutboxLows {
		if w.err != nil {
			return
		}
		first, ok := from[l.Source]
		if !ok {
			prev, found, err := lowOf(l.Source)
			if w.err = err; err != nil {
				return
			}
			if found {
				first = prev + 1
			}
		}
		switch {
		case l.Seq == ^uint64(0):
			prefix := appendKey(nil, prefixOutbox, uint64(l.Source))
			w.err = w.pb.DeleteRange(prefix, prefixEnd(slices.Clone(prefix)), nil)
		case l.Seq >= first && l.Seq-first >= maxPointDrops:
			w.err = w.pb.DeleteRange(appendKey(nil, prefixOutbox, uint64(l.Source), first),
				appendKey(nil, prefixOutbox, uint64(l.Source), l.Seq+1), nil)
		default:
			for seq := first; seq <= l.Seq && w.err == nil; seq++ {
				w.key = appendKey(w.key[:0], prefixOutbox, uint64(l.Source), seq)
				w.err = w.pb.Delete(w.key, nil)
			}
		}
		if l.Seq == ^uint64(0) {
			from[l.Source] = l.Seq // nothing is left to drop
		} else {
			from[l.Source] = max(first, l.Seq+1)
		}
		if w.err == nil {
			w.key = appendKey(w.key[:0], prefixOutboxLow, uint64(l.Source))
			w.val = appendUint64Value(w.val[:0], l.Seq)
			w.err = w.pb.Set(w.key, w.val, nil)
		}
	}
	set(w, b.Applied, func(k []byte, m *timeline.AppliedMark) []byte {
		return appendKey(k, prefixApplied, uint64(m.Dest), uint64(m.Source))
	}, func(v []byte, m *timeline.AppliedMark) []byte {
		return appendUint64Value(v, m.Stream)
	})
}

// Outbox implements timeline.OutboxReader.
func (s *Store) Outbox(ctx context.Context, source int, after uint64, limit int) ([]timeline.OutboxRecord, error) {
	if after == ^uint64(0) {
		return nil, nil
	}
	return scanAll(s, ctx, "outbox", prefixOutbox, uint64(source), timeline.Range{From: after + 1, Limit: limit},
		func(key, val []byte, r *timeline.OutboxRecord) error {
			return keyed(key, r.UnmarshalBinary(val))
		})
}

// storedLow returns source's low-water mark as stored, and whether there
// is one.
func (s *Store) storedLow(source int) (uint64, bool, error) {
	var low uint64
	err := getRecord(s.db, appendKey(nil, prefixOutboxLow, uint64(source)), &low, decodeUint64)
	if errors.Is(err, timeline.ErrNotFound) {
		return 0, false, nil
	}
	return low, err == nil, err
}

// OutboxLow implements timeline.OutboxReader.
func (s *Store) OutboxLow(ctx context.Context, source int) (uint64, error) {
	var low uint64
	err := s.read(ctx, "outbox low", func() error {
		return orNotFound(getRecord(s.db, appendKey(nil, prefixOutboxLow, uint64(source)), &low, decodeUint64))
	})
	return orZero(low, err)
}

// Applied implements timeline.OutboxReader.
func (s *Store) Applied(ctx context.Context, dest int) ([]timeline.AppliedMark, error) {
	return scanAll(s, ctx, "applied", prefixApplied, uint64(dest), timeline.Range{},
		func(key, val []byte, m *timeline.AppliedMark) error {
			if len(key) != pairKeyLen {
				return keyed(key, errCorrupt)
			}
			m.Dest, m.Source = dest, int(binary.BigEndian.Uint64(key[9:]))
			return decodeUint64(key, val, &m.Stream)
		})
}

// orNotFound turns a missing record into no error: the caller's zero value
// stands for it.
func orNotFound(err error) error {
	if errors.Is(err, timeline.ErrNotFound) {
		return nil
	}
	return err
}
