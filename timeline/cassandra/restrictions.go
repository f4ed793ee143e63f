package cassandra

import (
	"context"
	"fmt"
	"time"

	"github.com/inboxd/inboxd/timeline"
)

// Restrictions live in one partition (ring 0) of the restrictions table:
// few rows, all read at once when a server starts. revoked_before is Unix
// milliseconds, 0 for none.
const (
	insertRestriction = "INSERT INTO %s.restrictions (ring, user, device, banned, revoked_before) VALUES (0, ?, ?, ?, ?)"
	selectRestriction = "SELECT user, device, banned, revoked_before FROM %s.restrictions WHERE ring = 0"
)

// PutRestriction writes r at a lease timestamp, so that of two writes of
// one record the later wins, as commits do.
func (s *Store) PutRestriction(ctx context.Context, r timeline.Restriction) error {
	if err := s.enter("put restriction"); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	ctx, cancel := s.bind(ctx)
	defer cancel()
	var revoked int64
	if !r.RevokedBefore.IsZero() {
		revoked = r.RevokedBefore.Truncate(time.Second).UnixMilli()
	}
	var ts int64
	err := s.retry(ctx, "put restriction", func() (err error) {
		ts, err = s.logTimestamp()
		return err
	})
	if err == nil {
		cql := fmt.Sprintf(insertRestriction, s.cfg.Keyspace)
		err = s.exec(ctx, write{{cql, []any{r.User, text(r.Device), r.Banned, revoked}}}, ts)
	}
	if err != nil {
		return opError("put restriction", err)
	}
	return nil
}

// AllRestrictions reads the restrictions partition.
func (s *Store) AllRestrictions(ctx context.Context) ([]timeline.Restriction, error) {
	var out []timeline.Restriction
	err := s.read(ctx, "restrictions", func(ctx context.Context) error {
		out = out[:0]
		it := s.session.Query(fmt.Sprintf(selectRestriction, s.cfg.Keyspace)).WithContext(ctx).Iter()
		var r timeline.Restriction
		var revoked int64
		for it.Scan(&r.User, &r.Device, &r.Banned, &revoked) {
			r.RevokedBefore = time.Time{}
			if revoked != 0 {
				r.RevokedBefore = unixMilli(revoked)
			}
			out = append(out, r)
		}
		return it.Close()
	})
	return nilOnError(out, err)
}
