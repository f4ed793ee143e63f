package cassandra

import (
	"context"
	"errors"
	"fmt"

	"github.com/gocql/gocql"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// upgradeBatch bounds the records of one batch of the upgrade.
const upgradeBatch = 2000

// upgrade brings a keyspace of format 1 to format 2, on Open, under the
// writer lease and before any other call: it reads every conversation entry
// (a full scan of the conversations table, once), indexes each at the time
// of the newest message its user has, copies do-not-disturb onto the member
// records, and records format 2 last. It commits through the batch log like
// any batch, so an upgrade cut short runs again on the next Open, rewriting
// the same rows.
func (s *Store) upgrade(ctx context.Context) error {
	s.log.Info("timeline/cassandra: upgrading the keyspace to format 2", "keyspace", s.cfg.Keyspace)
	var b timeline.Batch
	flush := func() error {
		if b.Empty() {
			return nil
		}
		err := s.commit(ctx, &b)
		b.Reset()
		return err
	}
	heads := make(map[uint64]uint64) // conv → newest conv_seq
	err := s.pages(ctx, s.q.allConversations, nil, fixed(pageSize), func(sc gocql.Scanner) (bool, error) {
		var user, conv uint64
		c, listed, err := scanConversation(sc, 0, 0, &user, &conv)
		if err != nil || !listed {
			return err == nil, err
		}
		c.User, c.Conv = user, conv
		seq := c.LeftAt
		if seq == 0 {
			head, ok := heads[conv]
			if !ok {
				if head, err = s.newestSeq(ctx, &s.q.messages, conv); err != nil {
					return false, err
				}
				heads[conv] = head
			}
			seq = head
		}
		var ms int64
		err = s.session.Query(s.q.messageTime, conv, seq/s.q.messages.bucketSize, seq).WithContext(ctx).Scan(&ms)
		if errors.Is(err, gocql.ErrNotFound) {
			return true, nil // no message reached the user: nothing to list by
		}
		if err != nil {
			return false, err
		}
		b.Activities = append(b.Activities, timeline.Activity{User: user, Conv: conv, At: unixMilli(ms)})
		if c.DND && c.LeftAt == 0 {
			m := timeline.Member{Conv: conv, User: user, DND: true}
			var role int
			var muted int64
			err := s.session.Query(s.q.member, conv, user).WithContext(ctx).Scan(&role, &m.JoinedAt, &muted)
			switch {
			case err == nil:
				m.Role, m.MutedUntil = wire.Role(role), unixMilli(muted)
				b.Members = append(b.Members, m)
			case !errors.Is(err, gocql.ErrNotFound):
				return false, err
			}
		}
		if len(b.Activities) >= upgradeBatch {
			return true, flush()
		}
		return true, nil
	})
	if err == nil {
		err = flush()
	}
	if err == nil {
		err = s.session.Query(s.q.updateSetting, int64(storeFormat), "format", int64(1)).WithContext(ctx).Exec()
	}
	if err != nil {
		return fmt.Errorf("upgrade to format %d: %w", storeFormat, err)
	}
	s.format = storeFormat
	return nil
}
