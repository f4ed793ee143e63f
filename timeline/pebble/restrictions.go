package pebble

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/inboxd/inboxd/timeline"
)

// prefixRestriction keys a restriction: 'b' user(8) device (the rest of the
// key). Its value is a flags byte (1: banned) and the revocation time in
// Unix seconds as a varint.
const prefixRestriction = 'b'

// PutRestriction writes r, synced like a commit.
func (s *Store) PutRestriction(ctx context.Context, r timeline.Restriction) error {
	if err := s.enter("put restriction"); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("timeline/pebble: put restriction: %w", err)
	}
	key := append(appendKey(nil, prefixRestriction, r.User), r.Device...)
	if err := s.db.Set(key, appendRestrictionValue(nil, r), s.sync); err != nil {
		return fmt.Errorf("timeline/pebble: put restriction: %w", err)
	}
	return nil
}

func appendRestrictionValue(dst []byte, r timeline.Restriction) []byte {
	var flags byte
	if r.Banned {
		flags = 1
	}
	return binary.AppendVarint(append(dst, flags), revokedUnix(r.RevokedBefore))
}

// revokedUnix is the revocation time in Unix seconds, 0 for none.
func revokedUnix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// AllRestrictions scans the restriction key space.
func (s *Store) AllRestrictions(ctx context.Context) ([]timeline.Restriction, error) {
	var out []timeline.Restriction
	err := s.read(ctx, "restrictions", func() error {
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixRestriction}, UpperBound: []byte{prefixRestriction + 1}})
		if err != nil {
			return err
		}
		for ok := it.First(); ok; ok = it.Next() {
			r, err := decodeRestriction(it.Key(), it.Value())
			if err != nil {
				it.Close()
				return err
			}
			out = append(out, r)
		}
		return it.Close()
	})
	return orZero(out, err)
}

var errBadRestriction = errors.New("malformed restriction record")

func decodeRestriction(key, val []byte) (timeline.Restriction, error) {
	if len(key) < idKeyLen || key[0] != prefixRestriction || len(val) < 2 || val[0] > 1 {
		return timeline.Restriction{}, errBadRestriction
	}
	// One spelling per record: a canonical varint of a time not before 1970.
	at, n := binary.Varint(val[1:])
	if n <= 0 || 1+n != len(val) || at < 0 || len(binary.AppendVarint(nil, at)) != n {
		return timeline.Restriction{}, errBadRestriction
	}
	r := timeline.Restriction{User: binary.BigEndian.Uint64(key[1:idKeyLen]), Device: string(key[idKeyLen:]), Banned: val[0] == 1}
	if at != 0 {
		r.RevokedBefore = time.Unix(at, 0)
	}
	return r, nil
}
