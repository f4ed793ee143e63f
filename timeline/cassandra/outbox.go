package cassandra

import (
	"context"
	"errors"

	"github.com/gocql/gocql"

	"github.com/inboxd/inboxd/timeline"
)

// planOutbox adds b's outbox records, low-water marks and applied marks to
// the writes that go with the inbox rows: the batch log makes them land
// with the rest of the batch.
func (s *Store) planOutbox(ps *partitions, b *timeline.Batch) {
	q := &s.q
	for i := range b.Outbox {
		r := &b.Outbox[i]
		data, _ := r.MarshalBinary() // never fails
		ps.add(key{'o', uint64(r.Source)}, stmt{q.insertOutbox, []any{r.Source, r.Seq, data}}, 32+len(data))
	}
	for _, l := range lastWins(b.OutboxLows, func(l *timeline.OutboxLow) any { return l.Source }) {
		ps.add(key{'o', uint64(l.Source)}, stmt{q.dropOutbox, []any{l.Source, l.Seq}}, 32)
		ps.add(key{'w', uint64(l.Source)}, stmt{q.insertOutboxLow, []any{l.Source, l.Seq}}, 32)
	}
	for _, m := range lastWins(b.Applied, func(m *timeline.AppliedMark) any { return [2]int{m.Source, m.Dest} }) {
		ps.add(key{'p', uint64(m.Dest)}, stmt{q.insertApplied, []any{m.Dest, m.Source, m.Stream}}, 32)
	}
}

// Outbox implements timeline.OutboxReader.
func (s *Store) Outbox(ctx context.Context, source int, after uint64, limit int) ([]timeline.OutboxRecord, error) {
	if limit <= 0 {
		limit = pageSize
	}
	var out []timeline.OutboxRecord
	err := s.read(ctx, "outbox", func(ctx context.Context) error {
		out = out[:0]
		sc := s.session.Query(s.q.outbox, source, after, limit).WithContext(ctx).Iter().Scanner()
		for sc.Next() {
			var data []byte
			var r timeline.OutboxRecord
			if err := sc.Scan(&data); err != nil {
				return err
			}
			if err := r.UnmarshalBinary(data); err != nil {
				return err
			}
			out = append(out, r)
		}
		return sc.Err()
	})
	return nilOnError(out, err)
}

// OutboxLow implements timeline.OutboxReader.
func (s *Store) OutboxLow(ctx context.Context, source int) (uint64, error) {
	var low uint64
	err := s.read(ctx, "outbox low", func(ctx context.Context) error {
		err := s.session.Query(s.q.outboxLow, source).WithContext(ctx).Scan(&low)
		if errors.Is(err, gocql.ErrNotFound) {
			return nil
		}
		return err
	})
	return low, err
}

// Applied implements timeline.OutboxReader.
func (s *Store) Applied(ctx context.Context, dest int) ([]timeline.AppliedMark, error) {
	var out []timeline.AppliedMark
	err := s.read(ctx, "applied", func(ctx context.Context) error {
		out = out[:0]
		sc := s.session.Query(s.q.applied, dest).WithContext(ctx).Iter().Scanner()
		for sc.Next() {
			m := timeline.AppliedMark{Dest: dest}
			if err := sc.Scan(&m.Source, &m.Stream); err != nil {
				return err
			}
			out = append(out, m)
		}
		return sc.Err()
	})
	return nilOnError(out, err)
}
