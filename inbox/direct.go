package inbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// Direct conversations (docs/architecture.md, "Direct conversations"): the
// conversation of two users has the id wire.DirectConv derives from the
// pair, so both users' first sends name the same conversation and run on
// the committer of its shard, one after the other. The first of them
// creates it; a BLOCK before any message creates only its record.

// SendDirect sends a message to the direct conversation of sender and to,
// creating it with this message if it has none: the message is its
// conv_seq 1, both users join with it, and nothing else (no notice) is
// posted. Otherwise it is SendGroupMessage to that conversation. It fails
// with ErrBlocked, storing nothing, while to blocks sender. The result
// names the conversation.
func (s *Service) SendDirect(ctx context.Context, sender, to uint64, clientMsgID string, kind wire.Kind, body []byte) (SendResult, error) {
	conv := wire.DirectConv(sender, to)
	err := checkPair(sender, to)
	if err == nil {
		err = s.checkSend(sender, conv, clientMsgID, kind, body)
	}
	if err != nil {
		s.metrics.sends[sendRejected].Inc()
		return SendResult{}, fmt.Errorf("inbox: direct message to %d: %w", to, err)
	}
	res, err := s.send(ctx, sender, conv, clientMsgID, kind, body, func(tx *txn) (*group, error) {
		g, err := tx.pairConv(conv, sender, to, true)
		if err != nil {
			return nil, err
		}
		if err := g.refuses(sender); err != nil {
			return nil, err
		}
		if g.size() == 0 {
			// Both join with this message: conv_seq 1, unless the record
			// (made by a BLOCK) took a system message from the server API
			// before, which reached nobody.
			head, err := tx.convHead(conv)
			if err != nil {
				return nil, err
			}
			g = tx.mutable(g)
			for _, u := range g.Direct {
				if err := tx.join(g, u, wire.RoleMember, head+1); err != nil {
					return nil, err
				}
			}
		}
		return g, nil
	})
	if err != nil {
		return SendResult{}, fmt.Errorf("inbox: direct message to %d: %w", to, err)
	}
	return res, nil
}

// Block makes user refuse direct messages from peer (on), or accept them
// again (off). It posts nothing and tells nobody: peer learns it from
// ErrBlocked on the next send. Setting what is set changes nothing.
func (s *Service) Block(ctx context.Context, user, peer uint64, on bool) error {
	if err := checkPair(user, peer); err != nil {
		return fmt.Errorf("inbox: block %d: %w", peer, err)
	}
	conv := wire.DirectConv(user, peer)
	err := s.do(ctx, user, func(tx *txn) error {
		if err := tx.ownConv(conv); err != nil {
			return err
		}
		g, err := tx.pairConv(conv, user, peer, on)
		if err != nil || g == nil {
			return err // unblocking in a conversation never created: nothing to do
		}
		i := g.Side(user)
		if g.Blocked[i] == on {
			return nil
		}
		g = tx.mutable(g)
		g.Blocked[i] = on
		tx.b.Groups = append(tx.b.Groups, g.Group)
		return nil
	})
	if err != nil {
		return fmt.Errorf("inbox: block %d: %w", peer, err)
	}
	return nil
}

func checkPair(user, peer uint64) error {
	switch {
	case user == 0 || peer == 0:
		return fmt.Errorf("%w: zero user id", ErrInvalid)
	case user == peer:
		return fmt.Errorf("%w: a direct conversation with oneself", ErrInvalid)
	}
	return nil
}

// pairConv returns the direct conversation conv of users a and b, with its
// record created in this batch if it has none and create is set (nil if
// not). An existing conversation of another pair under the same id (a
// collision of wire.DirectConv, docs/architecture.md) is refused.
func (tx *txn) pairConv(conv, a, b uint64, create bool) (*group, error) {
	pair := [2]uint64{min(a, b), max(a, b)}
	g, err := tx.group(conv)
	switch {
	case errors.Is(err, ErrNoGroup):
		if !create {
			return nil, nil
		}
		g = &group{Group: timeline.Group{ID: conv, Created: tx.now, Direct: pair}, members: map[uint64]timeline.Member{}}
		tx.groups[conv] = g
		tx.b.Groups = append(tx.b.Groups, g.Group)
		return g, nil
	case err != nil:
		return nil, err
	case g.Direct != pair:
		return nil, fmt.Errorf("%w: conversation %d is not the direct conversation of %d and %d", ErrInvalid, conv, a, b)
	}
	return g, nil
}

// refuses returns ErrBlocked if g is a direct conversation whose other
// user blocks sender.
func (g *group) refuses(sender uint64) error {
	if g.Blocks(sender) {
		return fmt.Errorf("%w: %d does not accept direct messages from %d", ErrBlocked, g.Peer(sender), sender)
	}
	return nil
}

// groupMember is memberOf for the commands that only a group has (groupOnly).
func (tx *txn) groupMember(conv, user uint64) (*group, timeline.Member, error) {
	g, m, err := tx.memberOf(conv, user)
	if err == nil {
		err = groupOnly(g)
	}
	return g, m, err
}

// groupOnly refuses, for a direct conversation, the commands that manage a
// group's membership, roles, mutes and profile: its two users are its
// members for good.
func groupOnly(g *group) error {
	if g.IsDirect() {
		return fmt.Errorf("%w: conversation %d is a direct conversation, not a group", ErrInvalid, g.ID)
	}
	return nil
}
