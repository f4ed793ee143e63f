package gateway

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// Typing and presence are ephemeral (docs/protocol.md, TYPING and
// PRESENCE): the gateway answers them from its table of connections, and
// nothing of them is stored. In a cluster a user's devices are all on the
// node serving the user's shard, so a typing event for members of other
// shards, and the presence of their users, goes through Peers to the nodes
// serving them.

// Peers carries typing events and presence questions to the nodes serving
// other shards' users: *relay.Relay has it. Its methods are called from
// workers, concurrently.
type Peers interface {
	// Typing pushes a typing event of user in conv to the devices of to,
	// none of whose shards this node serves, at the nodes serving them. It
	// is best effort: a node that cannot be reached misses the event.
	Typing(ctx context.Context, conv, user uint64, to []uint64) error
	// Online returns those of users (none of whose shards this node
	// serves) with a device connected to the node serving them. It fails
	// when a node serving some of them cannot be asked; users of a shard
	// no node serves have no device connected anywhere.
	Online(ctx context.Context, users []uint64) ([]uint64, error)
}

// typing pushes the user's typing event to the conversation's other
// members that are online. It runs where the conversation is served: the
// member records are there, and say who is a member (in a cluster the
// user's own conversation entry may still be on its way).
func typing(ctx context.Context, srv *Server, user uint64, req *wirepb.TypingRequest) (proto.Message, error) {
	g, err := srv.svc.Describe(ctx, req.Conv)
	if err != nil {
		return nil, err
	}
	to := make([]uint64, 0, len(g.Members))
	member := false
	for _, m := range g.Members {
		if m.User == user {
			member = true
		} else {
			to = append(to, m.User)
		}
	}
	if !member {
		return nil, fmt.Errorf("gateway: typing in %d: %w", req.Conv, inbox.ErrNotMember)
	}
	if g.Blocks(user) {
		// The other user refuses the typist's messages, and so their
		// typing; the typist is not told (BLOCKED is SEND's to say).
		return empty, nil
	}
	local, remote := srv.splitServed(to)
	srv.PushTyping(req.Conv, user, local)
	if len(remote) > 0 && srv.cfg.Peers != nil {
		if err := srv.cfg.Peers.Typing(ctx, req.Conv, user, remote); err != nil {
			// The typist need not know: the event is ephemeral, and the
			// next one, seconds later, tries again.
			srv.warn.warn(warnPeers, "gateway: typing event not relayed", "conv", req.Conv, "err", err)
		}
	}
	return empty, nil
}

// presence answers which of the users asked about have a device connected.
func presence(ctx context.Context, srv *Server, _ uint64, req *wirepb.PresenceRequest) (proto.Message, error) {
	if len(req.Users) > wire.MaxPresenceUsers {
		return nil, fmt.Errorf("gateway: presence: %w: %d users, at most %d", inbox.ErrInvalid, len(req.Users), wire.MaxPresenceUsers)
	}
	users := slices.Clone(req.Users)
	slices.Sort(users)
	users = slices.Compact(users)
	if len(users) > 0 && users[0] == 0 {
		return nil, fmt.Errorf("gateway: presence: %w: user 0", inbox.ErrInvalid)
	}
	local, remote := srv.splitServed(users)
	online := srv.Online(local)
	if len(remote) > 0 {
		if srv.cfg.Peers == nil {
			return nil, fmt.Errorf("gateway: presence: %w: users of shards served elsewhere", inbox.ErrNotOwner)
		}
		more, err := srv.cfg.Peers.Online(ctx, remote)
		if err != nil {
			return nil, fmt.Errorf("gateway: presence: %w: %w", inbox.ErrUnavailable, err)
		}
		online = append(online, more...)
		slices.Sort(online)
	}
	return &wirepb.PresenceResponse{Online: online}, nil
}

// splitServed divides users into those whose shard this node serves and
// the others; without Ownership it serves them all.
func (s *Server) splitServed(users []uint64) (local, remote []uint64) {
	if s.cfg.Ownership == nil {
		return users, nil
	}
	for _, u := range users {
		if _, ok := s.cfg.Ownership.Serving(s.shardOf(u)); ok {
			local = append(local, u)
		} else {
			remote = append(remote, u)
		}
	}
	return local, remote
}

// PushTyping sends a typing event of user in conv to the connected devices
// of to. It never blocks; a user with no device here is skipped. It is
// also how the relay delivers the events of other nodes' conversations.
func (s *Server) PushTyping(conv, user uint64, to []uint64) {
	frame, err := wire.AppendFrame(s.getBuf(), wire.CmdTyping, 0, 0, &wirepb.TypingEvent{Conv: conv, User: user})
	if err != nil {
		panic(fmt.Sprintf("gateway: encode a typing event: %v", err)) // two integers always encode
	}
	defer s.putBuf(frame) // write copies it
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, u := range to {
		for _, sess := range s.byUser[u] {
			if sess.write(frame) {
				s.metrics.frameOut(sess.transport(), wire.CmdTyping)
			}
		}
	}
}

// Online returns those of users with a device connected here, in their
// order. It is also how the relay answers other nodes' presence questions.
func (s *Server) Online(users []uint64) []uint64 {
	var out []uint64
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, u := range users {
		if len(s.byUser[u]) > 0 {
			out = append(out, u)
		}
	}
	return out
}

// readReceipts answers who of a group has read one of its messages.
func readReceipts(ctx context.Context, srv *Server, user uint64, req *wirepb.ReadReceiptsRequest) (proto.Message, error) {
	r, err := srv.svc.ReadReceipts(ctx, user, inbox.ReceiptsQuery{Conv: req.Conv, ConvSeq: req.ConvSeq,
		AfterUser: req.AfterUser, Limit: int(min(req.Limit, wire.MaxReceiptsLimit)), Unread: req.Unread})
	if err != nil {
		return nil, err
	}
	return &wirepb.ReadReceiptsResponse{Members: uint32(r.Members), Read: uint32(r.Read), Users: r.Users, NextAfter: r.NextAfter}, nil
}
