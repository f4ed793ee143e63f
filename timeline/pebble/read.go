package pebble

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/inboxd/inboxd/timeline"
)

// Inbox implements timeline.TimelineReader.
func (s *Store) Inbox(ctx context.Context, user uint64, r timeline.Range) ([]timeline.Row, error) {
	return scanAll(s, ctx, "inbox", prefixInbox, user, r, decodeRow)
}

// LastInboxSeq implements timeline.TimelineReader.
func (s *Store) LastInboxSeq(ctx context.Context, user uint64) (uint64, error) {
	return s.lastSeq(ctx, "last inbox seq", prefixInbox, user)
}

// Messages implements timeline.TimelineReader.
func (s *Store) Messages(ctx context.Context, conv uint64, r timeline.Range) ([]timeline.Message, error) {
	var out []timeline.Message
	budget := timeline.NewBudget(r.MaxBytes)
	err := s.read(ctx, "messages", func() error {
		return scan(s.db, prefixMessage, conv, r, func(key, val []byte) error {
			var m timeline.Message
			if err := decodeMessage(key, val, &m); err != nil {
				return err
			}
			if !budget.Take(&m) {
				return errStop
			}
			out = append(out, m)
			return nil
		})
	})
	return orZero(out, err)
}

// errStop, returned by a scan callback, ends the scan without an error.
var errStop = errors.New("stop")

// LastConvSeq implements timeline.TimelineReader.
func (s *Store) LastConvSeq(ctx context.Context, conv uint64) (uint64, error) {
	return s.lastSeq(ctx, "last conv seq", prefixMessage, conv)
}

// MessagesByKey implements timeline.TimelineReader. An inbox page names
// runs of consecutive conv_seqs of a few conversations, interleaved: the
// keys are visited in key order on one iterator, which steps from a message
// to the next of its conversation instead of seeking.
// A budget reads the keys in rounds (timeline.ByKeyInRounds).
func (s *Store) MessagesByKey(ctx context.Context, keys []timeline.MessageKey, maxBytes int) ([]timeline.Message, error) {
	return timeline.ByKeyInRounds(keys, maxBytes, func(keys []timeline.MessageKey) ([]timeline.Message, error) {
		return s.messagesByKey(ctx, keys)
	})
}

func (s *Store) messagesByKey(ctx context.Context, keys []timeline.MessageKey) ([]timeline.Message, error) {
	msgs := make([]timeline.Message, len(keys))
	order := make([]int, len(keys))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(keys[a].Conv, keys[b].Conv), cmp.Compare(keys[a].ConvSeq, keys[b].ConvSeq))
	})
	err := s.read(ctx, "messages by key", func() error {
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixMessage}, UpperBound: []byte{prefixMessage + 1}})
		if err != nil {
			return err
		}
		key := make([]byte, 0, pairKeyLen)
		var prev timeline.MessageKey
		for n, i := range order {
			k := keys[i]
			key = appendKey(key[:0], prefixMessage, k.Conv, k.ConvSeq)
			next := n > 0 && k.Conv == prev.Conv && k.ConvSeq == prev.ConvSeq+1
			found := next && it.Next() && bytes.Equal(it.Key(), key)
			if !found {
				found = it.SeekGE(key) && bytes.Equal(it.Key(), key)
			}
			if !found {
				return errors.Join(fmt.Errorf("message %d/%d: %w", k.Conv, k.ConvSeq, timeline.ErrNotFound), it.Close())
			}
			val, err := it.ValueAndErr()
			if err == nil {
				err = decodeMessage(key, val, &msgs[i])
			}
			if err != nil {
				return errors.Join(err, it.Close())
			}
			prev = k
		}
		return errors.Join(it.Error(), it.Close())
	})
	return orZero(msgs, err)
}

// Group implements timeline.MetaReader.
func (s *Store) Group(ctx context.Context, conv uint64) (g timeline.Group, err error) {
	err = s.read(ctx, "group", func() error {
		return getRecord(s.db, appendKey(nil, prefixGroup, conv), &g, decodeGroup)
	})
	return orZero(g, err)
}

// Members implements timeline.MetaReader.
func (s *Store) Members(ctx context.Context, conv uint64) ([]timeline.Member, error) {
	return scanAll(s, ctx, "members", prefixMember, conv, timeline.Range{}, decodeMember)
}

// Conversation implements timeline.MetaReader. A read marker without a
// conversation entry is not a conversation: ErrNotFound.
func (s *Store) Conversation(ctx context.Context, user, conv uint64) (c timeline.Conversation, err error) {
	err = s.read(ctx, "conversation", func() error {
		// One snapshot for both records, so that the entry and its marker
		// are read as of the same commit.
		snap := s.db.NewSnapshot()
		defer snap.Close()
		c, err = conversation(snap, user, conv)
		return err
	})
	return orZero(c, err)
}

// conversation reads a conversation entry and merges its read marker in.
func conversation(db pebble.Reader, user, conv uint64) (c timeline.Conversation, err error) {
	if err := getRecord(db, appendKey(nil, prefixConversation, user, conv), &c, decodeConversation); err != nil {
		return c, err
	}
	err = getRecord(db, appendKey(nil, prefixMarker, user, conv), &c.ReadSeq, decodeUint64)
	if errors.Is(err, timeline.ErrNotFound) {
		return c, nil
	}
	return c, err
}

// Conversations implements timeline.MetaReader: the user's entries, each with
// its read marker merged in.
func (s *Store) Conversations(ctx context.Context, user uint64) ([]timeline.Conversation, error) {
	var convs []timeline.Conversation
	err := s.read(ctx, "conversations", func() error {
		snap := s.db.NewSnapshot()
		defer snap.Close()
		if err := scan(snap, prefixConversation, user, timeline.Range{}, collect(&convs, decodeConversation)); err != nil {
			return err
		}
		// Both scans run in conv order: merge the markers in one pass.
		i := 0
		return scan(snap, prefixMarker, user, timeline.Range{}, func(key, val []byte) error {
			_, conv, err := pairKeyIDs(key)
			if err != nil {
				return err
			}
			for i < len(convs) && convs[i].Conv < conv {
				i++
			}
			if i == len(convs) || convs[i].Conv != conv {
				return nil // a marker of a conversation without an entry
			}
			return decodeUint64(key, val, &convs[i].ReadSeq)
		})
	})
	return orZero(convs, err)
}

// RecentConversations implements timeline.MetaReader: a forward scan of the
// user's activity index, then a point read of each entry listed, on one
// snapshot.
func (s *Store) RecentConversations(ctx context.Context, user uint64, offset, limit int) ([]timeline.Conversation, error) {
	var convs []timeline.Conversation
	err := s.read(ctx, "recent conversations", func() error {
		snap := s.db.NewSnapshot()
		defer snap.Close()
		ids, err := recentConvs(snap, user, offset, limit)
		if err != nil {
			return err
		}
		for _, conv := range ids {
			c, err := conversation(snap, user, conv)
			if errors.Is(err, timeline.ErrNotFound) {
				continue // indexed in the same batch as its entry: not reached
			}
			if err != nil {
				return err
			}
			convs = append(convs, c)
		}
		return nil
	})
	return orZero(convs, err)
}

// recentConvs returns the conv ids of entries offset to offset+limit of
// user's activity index.
func recentConvs(db pebble.Reader, user uint64, offset, limit int) ([]uint64, error) {
	prefix := appendKey(nil, prefixActivity, user)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(appendKey(nil, prefixActivity, user))})
	if err != nil {
		return nil, err
	}
	scan := recentScan{offset: max(offset, 0), limit: limit}
	for valid := it.First(); valid; valid = it.Next() {
		var e recent
		var window time.Time
		e.conv, window, err = activityKeyEntry(it.Key())
		if err == nil {
			var val []byte
			if val, err = it.ValueAndErr(); err == nil {
				e.ms, err = decodeActivityValue(val)
			}
		}
		if err != nil {
			return nil, errors.Join(err, it.Close())
		}
		if !scan.add(window, e) {
			break
		}
	}
	return scan.result(), errors.Join(it.Error(), it.Close())
}

// recentScan picks a page from a user's activity index read in key order:
// the entries at positions offset to offset+limit-1 once each window's
// entries are ordered by the exact times they hold. It keeps the entries
// of the windows the page overlaps, so what a page costs beyond its own
// entries is a key of each other entry of its two end windows.
type recentScan struct {
	offset, limit int
	pos           int // position of the next entry
	first         int // position of held[0]
	window        time.Time
	held          []recent
}

type recent struct {
	conv uint64
	ms   int64 // the exact time, in Unix milliseconds
}

// add takes the next entry of the index, in window, and reports whether
// the scan needs more.
func (r *recentScan) add(window time.Time, e recent) bool {
	if r.limit <= 0 {
		return false
	}
	if len(r.held) == 0 || !window.Equal(r.window) {
		switch {
		case r.pos <= r.offset:
			// A window that ends before the offset takes no part.
			r.held, r.first = r.held[:0], r.pos
		case r.pos >= r.offset+r.limit:
			return false
		}
		r.window = window
	}
	r.held = append(r.held, e)
	r.pos++
	return true
}

// result returns the conv ids of the page in the index's order: the later
// time first, on equal times the higher conv id. The windows are in that
// order already; within one the entries are sorted.
func (r *recentScan) result() []uint64 {
	if r.pos <= r.offset {
		return nil // the index ends before the offset
	}
	slices.SortFunc(r.held, func(a, b recent) int {
		return cmp.Or(cmp.Compare(b.ms, a.ms), cmp.Compare(b.conv, a.conv))
	})
	page := r.held[r.offset-r.first:]
	page = page[:min(len(page), r.limit)]
	convs := make([]uint64, len(page))
	for i := range page {
		convs[i] = page[i].conv
	}
	return convs
}

// Dedup implements timeline.MetaReader.
func (s *Store) Dedup(ctx context.Context, sender uint64, clientMsgID string) (d timeline.Dedup, err error) {
	err = s.read(ctx, "dedup", func() error {
		return getRecord(s.db, appendDedupKey(nil, sender, clientMsgID), &d, decodeDedup)
	})
	return orZero(d, err)
}

// Mentions implements timeline.MetaReader.
func (s *Store) Mentions(ctx context.Context, conv, user uint64, r timeline.Range) ([]uint64, error) {
	if r.To != 0 && r.From > r.To {
		return nil, nil
	}
	lower := appendKey(nil, prefixMention, conv, user, r.From)
	upper := prefixEnd(appendKey(nil, prefixMention, conv, user))
	if r.To != 0 && r.To != ^uint64(0) {
		upper = appendKey(nil, prefixMention, conv, user, r.To+1)
	}
	var out []uint64
	err := s.read(ctx, "mentions", func() error {
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			return err
		}
		for more := it.First(); more && (r.Limit <= 0 || len(out) < r.Limit); more = it.Next() {
			k := it.Key()
			if len(k) != pairKeyLen+8 {
				return errors.Join(fmt.Errorf("%w: mention key of %d bytes", errCorrupt, len(k)), it.Close())
			}
			out = append(out, binary.BigEndian.Uint64(k[pairKeyLen:]))
		}
		return errors.Join(it.Error(), it.Close())
	})
	return orZero(out, err)
}

// Clock implements timeline.MetaReader.
func (s *Store) Clock(ctx context.Context, node int64) (clock uint64, err error) {
	err = s.read(ctx, "clock", func() error {
		err := getRecord(s.db, appendKey(nil, prefixClock, uint64(node)), &clock, decodeUint64)
		if errors.Is(err, timeline.ErrNotFound) {
			return nil
		}
		return err
	})
	return orZero(clock, err)
}

// read runs fn unless the store is closed or ctx is done, and wraps fn's
// error with the name of the operation.
func (s *Store) read(ctx context.Context, op string, fn func() error) error {
	if err := s.enter(op); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	err := ctx.Err()
	if err == nil {
		err = fn()
	}
	if err != nil {
		return fmt.Errorf("timeline/pebble: %s: %w", op, err)
	}
	return nil
}

// scanAll returns the decoded entries of timeline id in r.
func scanAll[T any](s *Store, ctx context.Context, op string, prefix byte, id uint64, r timeline.Range,
	decode func(key, val []byte, v *T) error) ([]T, error) {
	var out []T
	err := s.read(ctx, op, func() error {
		return scan(s.db, prefix, id, r, collect(&out, decode))
	})
	return orZero(out, err)
}

// lastSeq returns the seq of the newest entry of timeline id, 0 if none.
func (s *Store) lastSeq(ctx context.Context, op string, prefix byte, id uint64) (seq uint64, err error) {
	err = s.read(ctx, op, func() error {
		seq, err = lastSeqOf(s.db, prefix, id)
		return err
	})
	return orZero(seq, err)
}

// orZero returns v, or T's zero value (not a half-decoded record) with err.
func orZero[T any](v T, err error) (T, error) {
	if err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

// scan calls fn with each entry of timeline id in r, in r's order. Key and
// value are valid only during the call.
func scan(db pebble.Reader, prefix byte, id uint64, r timeline.Range, fn func(key, val []byte) error) error {
	lower, upper, ok := bounds(prefix, id, r.From, r.To)
	if !ok {
		return nil
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	valid, step := it.First, it.Next
	if r.Desc {
		valid, step = it.Last, it.Prev
	}
	n := 0
	for more := valid(); more && (r.Limit <= 0 || n < r.Limit); more = step() {
		val, err := it.ValueAndErr()
		if err == nil {
			err = fn(it.Key(), val)
		}
		if errors.Is(err, errStop) {
			break
		}
		if err != nil {
			return errors.Join(err, it.Close())
		}
		n++
	}
	return errors.Join(it.Error(), it.Close())
}

// getRecord looks key up and decodes its value into v; a missing key is
// timeline.ErrNotFound.
func getRecord[T any](db pebble.Reader, key []byte, v *T, decode func(key, val []byte, v *T) error) error {
	val, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return timeline.ErrNotFound
	}
	if err != nil {
		return err
	}
	defer closer.Close()
	return decode(key, val, v)
}

// collect returns a scan callback that decodes each entry and appends it to
// *out.
func collect[T any](out *[]T, decode func(key, val []byte, v *T) error) func(key, val []byte) error {
	return func(key, val []byte) error {
		var v T
		if err := decode(key, val, &v); err != nil {
			return err
		}
		*out = append(*out, v)
		return nil
	}
}

// The record decoders below take the ids in the key and the rest from the
// value, and name the key in their errors.

func decodeRow(key, val []byte, r *timeline.Row) error {
	return decodePair(key, val, &r.User, &r.Seq, r, decodeRowValue)
}

func decodeMessage(key, val []byte, m *timeline.Message) error {
	return decodePair(key, val, &m.Conv, &m.ConvSeq, m, decodeMessageValue)
}

func decodeMember(key, val []byte, m *timeline.Member) error {
	return decodePair(key, val, &m.Conv, &m.User, m, decodeMemberValue)
}

func decodeConversation(key, val []byte, c *timeline.Conversation) error {
	return decodePair(key, val, &c.User, &c.Conv, c, decodeConversationValue)
}

func decodePair[T any](key, val []byte, a, b *uint64, v *T, decode func([]byte, *T) error) error {
	var err error
	if *a, *b, err = pairKeyIDs(key); err == nil {
		err = decode(val, v)
	}
	if err != nil {
		return fmt.Errorf("key %x: %w", key, err)
	}
	return nil
}

func decodeGroup(key, val []byte, g *timeline.Group) error {
	g.ID = binary.BigEndian.Uint64(key[1:idKeyLen])
	return keyed(key, decodeGroupValue(val, g))
}

// decodeUint64 decodes the one-number values: read markers and clocks.
func decodeUint64(key, val []byte, v *uint64) error {
	return keyed(key, decodeUint64Value(val, v))
}

func decodeDedup(key, val []byte, d *timeline.Dedup) error {
	d.Sender = binary.BigEndian.Uint64(key[1:idKeyLen])
	d.ClientMsgID = string(key[idKeyLen:])
	return keyed(key, decodeDedupValue(val, d))
}

func keyed(key []byte, err error) error {
	if err != nil {
		return fmt.Errorf("key %x: %w", key, err)
	}
	return nil
}
