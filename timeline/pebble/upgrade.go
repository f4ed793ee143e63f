package pebble

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/inboxd/inboxd/timeline"
)

// upgradeBatch bounds the records of one batch of the upgrade.
const upgradeBatch = 10_000

// upgrade brings a store of format version 1 or 2 to the current one, on
// Open, before any other call: it drops version 2's activity index, keyed
// by exact times, then builds the index from the conversation entries (each
// entry in the window of the newest message its user has, holding that
// message's time) and copies do-not-disturb onto the member records. It
// writes in batches and records the version last, so that an upgrade cut
// short by a crash runs again, rewriting the same keys.
func (s *Store) upgrade(dir string, from uint64) error {
	if from == 2 {
		if err := s.db.DeleteRange([]byte{prefixActivity}, []byte{prefixActivity + 1}, pebble.NoSync); err != nil {
			return fmt.Errorf("timeline/pebble: open %q: upgrade from format version 2: %w", dir, err)
		}
	}
	if err := s.buildIndex(); err != nil {
		return fmt.Errorf("timeline/pebble: open %q: upgrade from format version %d: %w", dir, from, err)
	}
	if err := s.db.Set([]byte{prefixVersion}, appendUint64Value(nil, formatVersion), pebble.Sync); err != nil {
		return fmt.Errorf("timeline/pebble: open %q: write format version: %w", dir, err)
	}
	return nil
}

func (s *Store) buildIndex() error {
	b := s.db.NewBatch()
	defer func() { b.Close() }()
	flush := func(force bool) error {
		if b.Count() == 0 || !force && b.Count() < upgradeBatch {
			return nil
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			return err
		}
		b.Close()
		b = s.db.NewBatch()
		return nil
	}
	heads := make(map[uint64]uint64) // conv → newest conv_seq
	err := scanPrefix(s.db, prefixConversation, func(key, val []byte) error {
		var c timeline.Conversation
		if err := decodeConversation(key, val, &c); err != nil {
			return err
		}
		seq := c.LeftAt
		if seq == 0 {
			head, ok := heads[c.Conv]
			if !ok {
				var err error
				if head, err = lastSeqOf(s.db, prefixMessage, c.Conv); err != nil {
					return err
				}
				heads[c.Conv] = head
			}
			seq = head
		}
		var m timeline.Message
		err := getRecord(s.db, appendKey(nil, prefixMessage, c.Conv, seq), &m, decodeMessage)
		if errors.Is(err, timeline.ErrNotFound) {
			return nil // no message reached the user: nothing to list by
		}
		if err != nil {
			return err
		}
		if err := b.Set(appendActivityKey(nil, c.User, windowOf(m.Time), c.Conv), appendActivityValue(nil, m.Time), nil); err != nil {
			return err
		}
		if c.DND && c.LeftAt == 0 {
			if err := setMemberDND(s.db, b, c.Conv, c.User); err != nil {
				return err
			}
		}
		return flush(false)
	})
	if err != nil {
		return err
	}
	// The batches go without fsync: the version, written with one, syncs
	// the log they are in.
	return flush(true)
}

// setMemberDND rewrites a member record, if any, with DND on.
func setMemberDND(db pebble.Reader, b *pebble.Batch, conv, user uint64) error {
	key := appendKey(nil, prefixMember, conv, user)
	var m timeline.Member
	err := getRecord(db, key, &m, decodeMember)
	if errors.Is(err, timeline.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	m.DND = true
	return b.Set(key, appendMemberValue(nil, &m), nil)
}

// scanPrefix calls fn with every record of a type.
func scanPrefix(db pebble.Reader, prefix byte, fn func(key, val []byte) error) error {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefix}, UpperBound: []byte{prefix + 1}})
	if err != nil {
		return err
	}
	for valid := it.First(); valid; valid = it.Next() {
		val, err := it.ValueAndErr()
		if err == nil {
			err = fn(it.Key(), val)
		}
		if err != nil {
			return errors.Join(err, it.Close())
		}
	}
	return errors.Join(it.Error(), it.Close())
}

// lastSeqOf returns the newest seq of timeline id, 0 if none.
func lastSeqOf(db pebble.Reader, prefix byte, id uint64) (seq uint64, err error) {
	lower, upper, _ := bounds(prefix, id, 0, 0)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, err
	}
	if it.Last() {
		_, seq, err = pairKeyIDs(it.Key())
	}
	return seq, errors.Join(err, it.Error(), it.Close())
}
