package pebble

import (
	"context"
	"encoding/binary"
	"errors"

	"github.com/inboxd/inboxd/timeline"
)

// fillOutbox writes b's outbox records, low-water marks and applied marks
// into the batch. A low-water mark drops its shard's records at or below it
// with one range deletion.
func fillOutbox(w *batchWriter, b *timeline.Batch) {
	set(w, b.Outbox, func(k []byte, r *timeline.OutboxRecord) []byte {
		return appendKey(k, prefixOutbox, uint64(r.Source), r.Seq)
	}, func(v []byte, r *timeline.OutboxRecord) []byte {
		v, _ = r.AppendBinary(v) // never fails
		return v
	})
	for _, l := range b.OutboxLows {
		if w.err != nil {
			return
		}
		lower := appendKey(nil, prefixOutbox, uint64(l.Source), 0)
		upper := appendKey(nil, prefixOutbox, uint64(l.Source), l.Seq+1)
		if l.Seq == ^uint64(0) {
			upper = prefixEnd(appendKey(nil, prefixOutbox, uint64(l.Source)))
		}
		if w.err = w.pb.DeleteRange(lower, upper, nil); w.err == nil {
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
