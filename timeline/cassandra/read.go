package cassandra

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/gocql/gocql"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

const (
	// pageSize is the rows a scan fetches per request.
	pageSize = 1000
	// readers bounds the parallel lookups of one MessagesByKey.
	readers = 8
)

// Inbox implements timeline.TimelineReader.
func (s *Store) Inbox(ctx context.Context, user uint64, r timeline.Range) ([]timeline.Row, error) {
	return entries(ctx, s, "inbox", &s.q.inbox, user, r, scanRow)
}

// LastInboxSeq implements timeline.TimelineReader.
func (s *Store) LastInboxSeq(ctx context.Context, user uint64) (uint64, error) {
	return s.lastSeq(ctx, "last inbox seq", &s.q.inbox, user)
}

// Messages implements timeline.TimelineReader. With a budget, pages are
// sized by what it has left, so that a page of large messages fetches
// about what it returns.
func (s *Store) Messages(ctx context.Context, conv uint64, r timeline.Range) ([]timeline.Message, error) {
	var out []timeline.Message
	budget := timeline.NewBudget(r.MaxBytes)
	err := s.read(ctx, "messages", func(ctx context.Context) error {
		return s.scan(ctx, &s.q.messages, conv, r, &budget, func(sc gocql.Scanner) (bool, error) {
			m, err := scanMessage(sc, conv)
			if err != nil || !budget.Take(&m) {
				return false, err
			}
			out = append(out, m)
			return !budget.Full(), nil
		})
	})
	return nilOnError(out, err)
}

// LastConvSeq implements timeline.TimelineReader.
func (s *Store) LastConvSeq(ctx context.Context, conv uint64) (uint64, error) {
	return s.lastSeq(ctx, "last conv seq", &s.q.messages, conv)
}

// entries returns the entries of timeline key in r.
func entries[T any](ctx context.Context, s *Store, op string, tq *timelineQueries, key uint64, r timeline.Range,
	scanEntry func(gocql.Scanner, uint64) (T, error)) ([]T, error) {
	var out []T
	err := s.read(ctx, op, func(ctx context.Context) error {
		return s.scan(ctx, tq, key, r, nil, func(sc gocql.Scanner) (bool, error) {
			e, err := scanEntry(sc, key)
			out = append(out, e)
			return true, err
		})
	})
	return nilOnError(out, err)
}

// MessagesByKey implements timeline.TimelineReader. It asks each partition
// once for the keys it holds (conv_seq IN …), partitions in parallel; a
// budget reads the keys in rounds (timeline.ByKeyInRounds).
func (s *Store) MessagesByKey(ctx context.Context, keys []timeline.MessageKey, maxBytes int) ([]timeline.Message, error) {
	var msgs []timeline.Message
	err := s.read(ctx, "messages by key", func(ctx context.Context) error {
		var err error
		msgs, err = timeline.ByKeyInRounds(keys, maxBytes, func(keys []timeline.MessageKey) ([]timeline.Message, error) {
			return s.messagesByKey(ctx, keys)
		})
		return err
	})
	return nilOnError(msgs, err)
}

func (s *Store) messagesByKey(ctx context.Context, keys []timeline.MessageKey) ([]timeline.Message, error) {
	msgs := make([]timeline.Message, len(keys))
	err := func() error {
		type partition struct{ conv, bucket uint64 }
		seqs := make(map[partition][]uint64)
		var parts []partition
		for _, k := range keys {
			p := partition{k.Conv, k.ConvSeq / s.q.messages.bucketSize}
			if seqs[p] == nil {
				parts = append(parts, p)
			}
			seqs[p] = append(seqs[p], k.ConvSeq)
		}
		var mu sync.Mutex
		found := make(map[timeline.MessageKey]timeline.Message, len(keys))
		err := parallel(ctx, len(parts), readers, func(ctx context.Context, i int) error {
			p := parts[i]
			return s.pages(ctx, s.q.messagesIn, []any{p.conv, p.bucket, seqs[p]}, fixed(pageSize), func(sc gocql.Scanner) (bool, error) {
				m, err := scanMessage(sc, p.conv)
				mu.Lock()
				found[timeline.MessageKey{Conv: m.Conv, ConvSeq: m.ConvSeq}] = m
				mu.Unlock()
				return true, err
			})
		})
		if err != nil {
			return err
		}
		for i, k := range keys {
			m, ok := found[k]
			if !ok {
				return fmt.Errorf("message %d/%d: %w", k.Conv, k.ConvSeq, timeline.ErrNotFound)
			}
			msgs[i] = m
			// A key asked for twice gets a body of its own the second time.
			m.Body = slices.Clone(m.Body)
			found[k] = m
		}
		return nil
	}()
	return nilOnError(msgs, err)
}

// Group implements timeline.MetaReader.
func (s *Store) Group(ctx context.Context, conv uint64) (timeline.Group, error) {
	g := timeline.Group{ID: conv}
	err := s.read(ctx, "group", func(ctx context.Context) error {
		var created, muted int64
		err := s.session.Query(s.q.group, conv).WithContext(ctx).
			Scan(&g.Name, &g.Owner, &created, &g.Open, &muted, &g.Dismissed,
				&g.Announcement, &g.AvatarURL, &g.Direct[0], &g.Direct[1], &g.Blocked[0], &g.Blocked[1])
		g.Created, g.MutedUntil = unixMilli(created), unixMilli(muted)
		return notFound(err, "group %d", conv)
	})
	if err != nil {
		return timeline.Group{}, err
	}
	return g, nil
}

// Members implements timeline.MetaReader.
func (s *Store) Members(ctx context.Context, conv uint64) ([]timeline.Member, error) {
	return list(ctx, s, "members", s.q.members, conv, func(sc gocql.Scanner) (timeline.Member, bool, error) {
		m := timeline.Member{Conv: conv}
		var role int
		var muted int64
		var dnd *bool // null in rows written before format 2
		err := sc.Scan(&m.User, &role, &m.JoinedAt, &muted, &dnd)
		m.Role, m.MutedUntil, m.DND = wire.Role(role), unixMilli(muted), dnd != nil && *dnd
		return m, true, err
	})
}

// Conversation implements timeline.MetaReader. A row with a read marker and
// no entry (the marker's UPDATE creates no row of its own) is not a
// conversation: ErrNotFound.
func (s *Store) Conversation(ctx context.Context, user, conv uint64) (timeline.Conversation, error) {
	var c timeline.Conversation
	err := s.read(ctx, "conversation", func(ctx context.Context) error {
		var listed bool
		var err error
		sc := s.session.Query(s.q.conversation, user, conv).WithContext(ctx).Iter().Scanner()
		if sc.Next() {
			c, listed, err = scanConversation(sc, user, conv)
		}
		if err := errors.Join(err, sc.Err()); err != nil {
			return err
		}
		if !listed {
			return fmt.Errorf("conversation %d of user %d: %w", conv, user, timeline.ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return timeline.Conversation{}, err
	}
	return c, nil
}

// Conversations implements timeline.MetaReader.
func (s *Store) Conversations(ctx context.Context, user uint64) ([]timeline.Conversation, error) {
	return list(ctx, s, "conversations", s.q.conversations, user, func(sc gocql.Scanner) (timeline.Conversation, bool, error) {
		var conv uint64
		c, listed, err := scanConversation(sc, user, 0, &conv)
		c.Conv = conv
		return c, listed, err
	})
}

// RecentConversations implements timeline.MetaReader: a slice of the user's
// activity index partition, newest first, then the entries it lists in one
// query. An index row whose tombstone was lost (a replica that missed it
// past gc_grace_seconds) may come back: it lies behind the conversation's
// current row, and a conversation already listed is skipped.
func (s *Store) RecentConversations(ctx context.Context, user uint64, offset, limit int) ([]timeline.Conversation, error) {
	var out []timeline.Conversation
	err := s.read(ctx, "recent conversations", func(ctx context.Context) error {
		seen := make(map[uint64]bool)
		var convs []uint64
		err := s.pages(ctx, s.q.recent, []any{user}, fixed(min(offset+limit+1, pageSize)), func(sc gocql.Scanner) (bool, error) {
			var conv uint64
			if err := sc.Scan(&conv); err != nil {
				return false, err
			}
			if !seen[conv] {
				seen[conv] = true
				if offset > 0 {
					offset--
				} else {
					convs = append(convs, conv)
				}
			}
			return len(convs) < limit, nil
		})
		if err != nil || len(convs) == 0 {
			return err
		}
		byConv := make(map[uint64]timeline.Conversation, len(convs))
		err = s.pages(ctx, s.q.conversationsIn, []any{user, convs}, fixed(pageSize), func(sc gocql.Scanner) (bool, error) {
			var conv uint64
			c, listed, err := scanConversation(sc, user, 0, &conv)
			c.Conv = conv
			if listed {
				byConv[conv] = c
			}
			return true, err
		})
		for _, conv := range convs {
			if c, ok := byConv[conv]; ok {
				out = append(out, c)
			}
		}
		return err
	})
	return nilOnError(out, err)
}

// list returns the records of partition key that scanRecord keeps.
func list[T any](ctx context.Context, s *Store, op, cql string, key uint64,
	scanRecord func(gocql.Scanner) (v T, keep bool, err error)) ([]T, error) {
	var out []T
	err := s.read(ctx, op, func(ctx context.Context) error {
		return s.pages(ctx, cql, []any{key}, fixed(pageSize), func(sc gocql.Scanner) (bool, error) {
			v, keep, err := scanRecord(sc)
			if keep {
				out = append(out, v)
			}
			return true, err
		})
	})
	return nilOnError(out, err)
}

// Dedup implements timeline.MetaReader.
func (s *Store) Dedup(ctx context.Context, sender uint64, clientMsgID string) (timeline.Dedup, error) {
	d := timeline.Dedup{Sender: sender, ClientMsgID: clientMsgID}
	err := s.read(ctx, "dedup", func(ctx context.Context) error {
		var t int64
		err := s.session.Query(s.q.dedup, sender, text(clientMsgID)).WithContext(ctx).
			Scan(&d.Conv, &d.ConvSeq, &d.MsgID, &t)
		d.Time = unixMilli(t)
		return notFound(err, "dedup %d/%q", sender, clientMsgID)
	})
	if err != nil {
		return timeline.Dedup{}, err
	}
	return d, nil
}

// Mentions implements timeline.MetaReader.
func (s *Store) Mentions(ctx context.Context, conv, user uint64, r timeline.Range) ([]uint64, error) {
	to := r.To
	if to == 0 {
		to = math.MaxUint64
	}
	if r.From > to {
		return nil, nil
	}
	var out []uint64
	err := s.read(ctx, "mentions", func(ctx context.Context) error {
		out = out[:0]
		return s.pages(ctx, s.q.mentions, []any{conv, user, r.From, to}, fixed(pageSize), func(sc gocql.Scanner) (bool, error) {
			var seq uint64
			if err := sc.Scan(&seq); err != nil {
				return false, err
			}
			out = append(out, seq)
			return r.Limit <= 0 || len(out) < r.Limit, nil
		})
	})
	return nilOnError(out, err)
}

// Clock implements timeline.MetaReader.
func (s *Store) Clock(ctx context.Context, node int64) (clock uint64, err error) {
	err = s.read(ctx, "clock", func(ctx context.Context) error {
		err := s.session.Query(s.q.clock, node).WithContext(ctx).Scan(&clock)
		if errors.Is(err, gocql.ErrNotFound) {
			return nil
		}
		return err
	})
	return clock, err
}

// read runs fn unless the store is closed or ctx is done, once every commit
// that failed with its outcome unknown is finished, and names the operation
// in fn's error.
func (s *Store) read(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	if err := s.enter(op); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return opError(op, err)
	}
	ctx, cancel := s.bind(ctx)
	defer cancel()
	err := s.settle(ctx)
	if err == nil {
		err = fn(ctx)
	}
	if err != nil {
		return opError(op, err)
	}
	return nil
}

// scan calls fn with each entry of timeline key in r, in r's order: bucket
// by bucket through the bucket index, a page at a time, until r.Limit or
// until fn returns false. A budget, when given, sizes the pages.
func (s *Store) scan(ctx context.Context, tq *timelineQueries, key uint64, r timeline.Range, budget *timeline.Budget,
	fn func(gocql.Scanner) (bool, error)) error {
	to := r.To
	if to == 0 {
		to = math.MaxUint64
	}
	if r.From > to {
		return nil
	}
	dir := 0
	if r.Desc {
		dir = 1
	}
	n := 0
	stopped := false
	more := func() bool { return !stopped && (r.Limit <= 0 || n < r.Limit) }
	size := func() int {
		size := pageSize
		if r.Limit > 0 {
			size = min(size, r.Limit-n)
		}
		if budget != nil {
			size = budget.Next(size)
		}
		return size
	}
	return s.pages(ctx, tq.buckets[dir], []any{key, r.From / tq.bucketSize, to / tq.bucketSize}, fixed(16), func(sc gocql.Scanner) (bool, error) {
		var bucket uint64
		if err := sc.Scan(&bucket); err != nil {
			return false, err
		}
		err := s.pages(ctx, tq.rows[dir], []any{key, bucket, r.From, to}, size, func(sc gocql.Scanner) (bool, error) {
			n++
			keep, err := fn(sc)
			stopped = !keep
			return more(), err
		})
		return more(), err
	})
}

// lastSeq returns the newest seq of timeline key, 0 if none. It tries the
// key's buckets newest first: an index row can be readable before the first
// entry of its bucket.
func (s *Store) lastSeq(ctx context.Context, op string, tq *timelineQueries, key uint64) (uint64, error) {
	var seq uint64
	err := s.read(ctx, op, func(ctx context.Context) (err error) {
		seq, err = s.newestSeq(ctx, tq, key)
		return err
	})
	return seq, err
}

// newestSeq is lastSeq without the checks of read.
func (s *Store) newestSeq(ctx context.Context, tq *timelineQueries, key uint64) (seq uint64, err error) {
	err = s.pages(ctx, tq.buckets[1], []any{key, uint64(0), uint64(math.MaxUint64) / tq.bucketSize}, fixed(16), func(sc gocql.Scanner) (bool, error) {
		var bucket uint64
		if err := sc.Scan(&bucket); err != nil {
			return false, err
		}
		err := s.session.Query(tq.last, key, bucket).WithContext(ctx).Scan(&seq)
		if errors.Is(err, gocql.ErrNotFound) {
			return true, nil
		}
		return false, err
	})
	return seq, err
}

// pages runs a query a page at a time, with the driver's page state, calling
// fn for each row until fn returns false or an error. size gives the rows of
// each next page.
func (s *Store) pages(ctx context.Context, cql string, args []any, size func() int, fn func(gocql.Scanner) (bool, error)) error {
	var state []byte
	for {
		iter := s.session.Query(cql, args...).WithContext(ctx).PageSize(size()).PageState(state).Iter()
		next := iter.PageState()
		sc := iter.Scanner()
		more := true
		var err error
		for more && err == nil && sc.Next() {
			more, err = fn(sc)
		}
		if err := errors.Join(err, sc.Err()); err != nil {
			return err
		}
		if !more || len(next) == 0 {
			return nil
		}
		state = next
	}
}

// fixed is a page size that does not change.
func fixed(n int) func() int { return func() int { return n } }

// parallel runs fn for 0..n-1 on at most limit goroutines and returns the
// first error, after stopping the rest.
func parallel(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

func scanRow(sc gocql.Scanner, user uint64) (timeline.Row, error) {
	r := timeline.Row{User: user}
	var kind int
	err := sc.Scan(&r.Seq, &r.Conv, &r.ConvSeq, &r.MsgID, &kind)
	r.Kind = wire.Kind(kind)
	return r, err
}

func scanMessage(sc gocql.Scanner, conv uint64) (timeline.Message, error) {
	m := timeline.Message{Conv: conv}
	var kind int
	var t int64
	// Null in rows written before these columns existed.
	var mentionAll, recalled *bool
	var edited *int64
	var lastEdit *uint64
	err := sc.Scan(&m.ConvSeq, &m.ID, &m.Sender, &m.ClientMsgID, &kind, &m.Body, &t,
		&m.Mentions, &mentionAll, &recalled, &edited, &lastEdit)
	m.Kind, m.Time = wire.Kind(kind), unixMilli(t)
	m.MentionAll, m.Recalled = mentionAll != nil && *mentionAll, recalled != nil && *recalled
	if edited != nil {
		m.Edited = unixMilli(*edited)
	}
	if lastEdit != nil {
		m.LastEdit = *lastEdit
	}
	return m, err
}

// scanConversation scans a conversations row, the columns of the
// conversations query after the conv when conv is given, and reports
// whether it holds an entry and not only a read marker.
func scanConversation(sc gocql.Scanner, user, conv uint64, dest ...any) (timeline.Conversation, bool, error) {
	c := timeline.Conversation{User: user, Conv: conv}
	var joined, left, read *uint64
	var dnd *bool
	if err := sc.Scan(append(dest, &joined, &left, &dnd, &read)...); err != nil || joined == nil {
		return c, false, err
	}
	c.JoinedAt, c.DND = *joined, dnd != nil && *dnd
	if left != nil {
		c.LeftAt = *left
	}
	if read != nil {
		c.ReadSeq = *read
	}
	return c, true, nil
}

// notFound turns the driver's ErrNotFound into timeline.ErrNotFound, naming
// the record.
func notFound(err error, format string, args ...any) error {
	if errors.Is(err, gocql.ErrNotFound) {
		return fmt.Errorf(format+": %w", append(args, timeline.ErrNotFound)...)
	}
	return err
}

func unixMilli(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func nilOnError[T any](v []T, err error) ([]T, error) {
	if err != nil {
		return nil, err
	}
	return v, nil
}
