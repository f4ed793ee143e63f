package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/token"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// handler runs one request for an authenticated user, of a session here
// or forwarded by another node (forward.go). It returns the response body.
type handler func(ctx context.Context, srv *Server, user uint64, body []byte) (proto.Message, error)

// errDecode marks a body that does not decode.
var errDecode = errors.New("gateway: malformed body")

var errZeroConv = fmt.Errorf("gateway: %w: conv 0", inbox.ErrInvalid)

// decoded wraps a handler that takes the decoded request body.
func decoded[T any, PT interface {
	*T
	proto.Message
}](f func(ctx context.Context, srv *Server, user uint64, req PT) (proto.Message, error)) handler {
	return func(ctx context.Context, srv *Server, user uint64, body []byte) (proto.Message, error) {
		req := PT(new(T))
		if err := wire.Decode(body, req); err != nil {
			return nil, errDecode
		}
		// No group has id 0: naming it is an argument out of range, for
		// every command, rather than whatever a lookup of it would say.
		if r, ok := any(req).(interface{ GetConv() uint64 }); ok && r.GetConv() == 0 {
			return nil, errZeroConv
		}
		resp, err := f(ctx, srv, user, req)
		if r, ok := any(req).(interface{ GetConv() uint64 }); ok && errors.Is(err, inbox.ErrNotOwner) {
			err = &notServedHere{conv: r.GetConv(), err: err}
		}
		return resp, err
	}
}

var empty = &wirepb.Empty{}

func sendAck(r inbox.SendResult) *wirepb.SendAck {
	return &wirepb.SendAck{MsgId: r.MsgID, ConvSeq: r.ConvSeq, TimeMs: r.Time.UnixMilli(), Duplicate: r.Duplicate, Conv: r.Conv}
}

// pairServedElsewhere marks err, a refusal with ErrNotOwner of a command
// for the direct conversation of user and peer, for forwarding to the node
// that serves the conversation (decoded does it for requests with a conv).
func pairServedElsewhere(user, peer uint64, err error) error {
	if errors.Is(err, inbox.ErrNotOwner) {
		return &notServedHere{conv: wire.DirectConv(user, peer), err: err}
	}
	return err
}

// convOp adapts the inbox calls that take (actor, conv) and answer nothing.
func convOp(op func(Service) func(ctx context.Context, user, conv uint64) error) handler {
	return decoded(func(ctx context.Context, srv *Server, user uint64, req *wirepb.ConvRequest) (proto.Message, error) {
		return empty, op(srv.svc)(ctx, user, req.Conv)
	})
}

var handlers = map[wire.Command]handler{
	wire.CmdHeartbeat: func(context.Context, *Server, uint64, []byte) (proto.Message, error) { return empty, nil },
	wire.CmdSend: decoded(func(ctx context.Context, srv *Server, user uint64, req *wirepb.SendRequest) (proto.Message, error) {
		if req.Kind > 0xFFFF {
			return nil, inbox.ErrInvalid
		}
		r, err := srv.svc.SendMessage(ctx, user, req.Conv, inbox.Outgoing{ClientMsgID: req.ClientMsgId, Kind: wire.Kind(req.Kind),
			Body: req.Body, Mentions: req.Mentions, MentionAll: req.MentionAll})
		return sendAck(r), err
	}),
	wire.CmdRecall: decoded(func(ctx context.Context, srv *Server, user uint64, req *wirepb.RecallRequest) (proto.Message, error) {
		r, err := srv.svc.Recall(ctx, user, req.Conv, req.ConvSeq, req.ClientMsgId)
		return sendAck(r), err
	}),
	wire.CmdEdit: decoded(func(ctx context.Context, srv *Server, user uint64, req *wirepb.EditRequest) (proto.Message, error) {
		r, err := srv.svc.Edit(ctx, user, req.Conv, req.ConvSeq, req.ClientMsgId, req.Body)
		return sendAck(r), err
	}),
	// SEND_DIRECT names a user, not a conversation: the conversation it
	// runs in, and so the node a refusal with ErrNotOwner forwards it to,
	// is the pair's.
	wire.CmdSendDirect: decoded(func(ctx context.Context, srv *Server, user uint64, req *wirepb.SendDirectRequest) (proto.Message, error) {
		if req.Kind > 0xFFFF {
			return nil, inbox.ErrInvalid
		}
		r, err := srv.svc.SendDirect(ctx, user, req.To, req.ClientMsgId, wire.Kind(req.Kind), req.Body)
		return sendAck(r), pairServedElsewhere(user, req.To, err)
	}),
	wire.CmdBlock: decoded(func(ctx context.Context, srv *Server, user uint64, req *wirepb.BlockRequest) (proto.Message, error) {
		return empty, pairServedElsewhere(user, req.User, srv.svc.Block(ctx, user, req.User, req.On))
	}),
	wire.CmdSetGroupProfile: decoded(func(ctx context.Context, srv *Server, user uint64, req *wirepb.SetGroupProfileRequest) (proto.Message, error) {
		return empty, srv.svc.SetGroupProfile(ctx, user, req.Conv, inbox.Profile{Name: req.Name, Announcement: req.Announcement, AvatarURL: req.AvatarUrl})
	}),
	wire.CmdSync: decoded(func(ctx context.Context, srv *Server, user uint64, req *wirepb.SyncRequest) (proto.Message, error) {
		r, err := srv.svc.Sync(ctx, user, req.AfterSeq, int(min(req.Limit, 1<<20)))
		if err != nil {
			return nil, err
		}
		pb := entriesPB(r.Entries)
		n := fit(pb, srv.cfg.MaxFrame)
		return &wirepb.SyncResponse{Entries: pb[:n], HeadSeq: r.Head, HasMore: r.HasMore || n < len(pb)}, nil
	}),
	wire.CmdHistory: decoded(func(ctx context.Context, srv *Server, user uint64, req *wirepb.HistoryRequest) (proto.Message, error) {
		msgs, err := srv.svc.History(ctx, user, req.Conv, req.BeforeConvSeq, int(min(req.Limit, 1<<20)))
		if err != nil {
			return nil, err
		}
		pb := make([]*wirepb.Message, len(msgs))
		for i := range msgs {
			pb[i] = messagePB(&msgs[i])
		}
		// A shorter page is fine: the client pages on from the oldest.
		return &wirepb.HistoryResponse{Messages: pb[:fit(pb, srv.cfg.MaxFrame)]}, nil
	}),
	wire.CmdConversations: decoded(func(ctx context.Context, srv *Server, user uint64, req *wirepb.ConversationsRequest) (proto.Message, error) {
		page, err := srv.svc.Conversations(ctx, user, int(req.Offset), 0)
		if err != nil {
			return nil, err
		}
		cs := page.Conversations
		pb := make([]*wirepb.Conversation, len(cs))
		for i, c := range cs {
			pc := &wirepb.Conversation{Conv: c.Conv, Name: c.Name, JoinedAt: c.JoinedAt, LeftAt: c.LeftAt,
				ReadSeq: c.ReadSeq, Head: c.Head, Unread: c.Unread, Dnd: c.DND, MentionUnread: c.MentionUnread,
				Direct: c.Peer != 0, Peer: c.Peer}
			if c.Last != nil {
				pc.Last = messagePB(c.Last)
			}
			pb[i] = pc
		}
		n := fit(pb, srv.cfg.MaxFrame)
		return &wirepb.ConversationsResponse{Conversations: pb[:n], HasMore: page.HasMore || n < len(pb)}, nil
	}),
	wire.CmdMarkRead: decoded(func(ctx context.Context, srv *Server, user uint64, req *wirepb.MarkReadRequest) (proto.Message, error) {
		n, err := srv.svc.MarkRead(ctx, user, req.Conv, req.ConvSeq)
		return &wirepb.MarkReadResponse{ReadSeq: n}, err
	}),
	wire.CmdCreateGroup: decoded(func(ctx context.Context, srv *Server, user uint64, req *wirepb.CreateGroupRequest) (proto.Message, error) {
		g, err := srv.svc.CreateGroup(ctx, user, inbox.NewGroup{Name: req.Name, Members: req.Members, Open: req.Open})
		if err != nil {
			return nil, err
		}
		return &wirepb.CreateGroupResponse{Group: groupPB(g)}, nil
	}),
	wire.CmdInvite: decoded(func(ctx context.Context, srv *Server, user uint64, req *wirepb.InviteRequest) (proto.Message, error) {
		return empty, srv.svc.Invite(ctx, user, req.Conv, req.Users)
	}),
	wire.CmdJoin:    convOp(func(s Service) func(context.Context, uint64, uint64) error { return s.Join }),
	wire.CmdLeave:   convOp(func(s Service) func(context.Context, uint64, uint64) error { return s.Leave }),
	wire.CmdDismiss: convOp(func(s Service) func(context.Context, uint64, uint64) error { return s.Dismiss }),
	wire.CmdKick: decoded(func(ctx context.Context, srv *Server, user uint64, req *wirepb.KickRequest) (proto.Message, error) {
		return empty, srv.svc.Kick(ctx, user, req.Conv, req.User)
	}),
	wire.CmdSetRole: decoded(func(ctx context.Context, srv *Server, user uint64, req *wirepb.SetRoleRequest) (proto.Message, error) {
		if req.Role > 0xFF {
			return nil, inbox.ErrInvalid
		}
		return empty, srv.svc.SetRole(ctx, user, req.Conv, req.User, wire.Role(req.Role))
	}),
	wire.CmdMute: decoded(func(ctx context.Context, srv *Server, user uint64, req *wirepb.MuteRequest) (proto.Message, error) {
		var until time.Time
		if req.UntilMs != 0 {
			until = time.UnixMilli(req.UntilMs)
		}
		if req.User == 0 {
			return empty, srv.svc.MuteGroup(ctx, user, req.Conv, until)
		}
		return empty, srv.svc.MuteMember(ctx, user, req.Conv, req.User, until)
	}),
	wire.CmdSetDND: decoded(func(ctx context.Context, srv *Server, user uint64, req *wirepb.SetDNDRequest) (proto.Message, error) {
		return empty, srv.svc.SetDND(ctx, user, req.Conv, req.On)
	}),
	wire.CmdGroupInfo: decoded(func(ctx context.Context, srv *Server, user uint64, req *wirepb.ConvRequest) (proto.Message, error) {
		g, err := srv.svc.Group(ctx, user, req.Conv)
		if err != nil {
			return nil, err
		}
		resp := &wirepb.GroupInfoResponse{Group: groupPB(g.Group), Members: make([]*wirepb.Member, len(g.Members))}
		for i, m := range g.Members {
			resp.Members[i] = &wirepb.Member{User: m.User, Role: uint32(m.Role), JoinedAt: m.JoinedAt, MutedUntilMs: unixMilli(m.MutedUntil)}
		}
		return resp, nil
	}),
	wire.CmdTyping:       decoded(typing),
	wire.CmdPresence:     decoded(presence),
	wire.CmdReadReceipts: decoded(readReceipts),
}

// handle runs one request on a worker.
func (sess *session) handle(req request) {
	s := sess.srv
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	// Observed after the response is queued, whatever the outcome.
	defer func() { s.metrics.latency[cmdSlot(req.cmd)].Observe(time.Since(req.arrived).Seconds()) }()
	if req.cmd == wire.CmdAuth {
		sess.auth(ctx, req)
		return
	}
	user := sess.user.Load()
	if userLimited(req.cmd) && !s.takeUser(user, s.cfg.Now().UnixNano()) {
		s.metrics.rejected[rejectUserRateLimited].Inc()
		e := errorBody(wire.CodeRateLimited, "too many requests for this user")
		e.RetryAfterMs = uint32(1000/s.cfg.UserRateLimit) + 1
		sess.reply(req, nil, e)
		return
	}
	if req.cmd == wire.CmdTyping && !sess.typingBucket().spare(s.cfg.Now().UnixNano(), s.cfg.TypingRate, s.cfg.TypingBurst) {
		// Typing is ephemeral: the refused event is dropped, and the
		// client's next one, after retry_after_ms, takes its place.
		e := errorBody(wire.CodeRateLimited, "too many TYPING on this connection")
		e.RetryAfterMs = uint32(1000/s.cfg.TypingRate) + 1
		sess.reply(req, nil, e)
		return
	}
	if (req.cmd == wire.CmdSend || req.cmd == wire.CmdSendDirect) && s.cfg.Gate != nil && s.cfg.Gate.Banned(user) {
		sess.reply(req, nil, errorBody(wire.CodeBanned, "the user is banned"))
		return
	}
	h := handlers[req.cmd]
	resp, err := h(ctx, s, user, req.body)
	if ns, ok := errors.AsType[*notServedHere](err); ok && s.cfg.Forwarder != nil && forwardable[req.cmd] {
		sess.forward(ctx, req, user, ns.conv)
		return
	}
	if err != nil {
		sess.reply(req, nil, errorFor(err))
		return
	}
	sess.reply(req, resp, nil)
}

// auth verifies the token and registers the session for the user.
func (sess *session) auth(ctx context.Context, req request) {
	s := sess.srv
	var ar wirepb.AuthRequest
	if err := wire.Decode(req.body, &ar); err != nil {
		s.authFailed(authMalformedBody, sess.remote())
		sess.refuse(req, errorBody(wire.CodeBadRequest, "malformed AUTH body"), closedAuthFailed)
		return
	}
	claims, err := token.Verify(s.cfg.Secret, ar.Token, s.cfg.Now())
	if err != nil {
		code, why := wire.CodeUnauthenticated, authMalformed
		switch {
		case errors.Is(err, token.ErrExpired):
			code, why = wire.CodeTokenExpired, authExpired
		case errors.Is(err, token.ErrSignature):
			why = authBadSignature
		}
		s.authFailed(why, sess.remote())
		sess.refuse(req, errorBody(code, err.Error()), closedAuthFailed)
		return
	}
	sess.device, sess.issued = claims.Device, issuedSeconds(claims.Issued)
	sess.user.Store(claims.User)
	// Register before reading the head: an entry committed in between is
	// then pushed (perhaps also counted in head_seq, which the client's
	// sync rules absorb). The other order would lose it until the next SYNC.
	if e := s.register(sess); e != nil {
		if why, ok := gateRefusals[wire.Code(e.Code)]; ok {
			s.authFailed(why.auth, sess.remote())
			sess.refuse(req, e, why.closed)
			return
		}
		s.metrics.redirect(redirectAuth, wire.Code(e.Code))
		sess.refuse(req, e, closedNotServed)
		return
	}
	head, err := s.svc.Head(ctx, claims.User)
	if err != nil {
		s.authFailed(authUnavailable, sess.remote())
		sess.refuse(req, errorFor(err), closedAuthFailed)
		return
	}
	sess.reply(req, &wirepb.AuthResponse{
		UserId: claims.User, DeviceId: claims.Device, HeadSeq: head,
		HeartbeatMs: uint32(s.cfg.Heartbeat.Milliseconds()), ServerTimeMs: s.cfg.Now().UnixMilli(),
		MaxFrame: uint32(s.cfg.MaxFrame), MaxGroupSize: uint32(s.svc.MaxGroupSize()),
	}, nil)
}

func errorBody(code wire.Code, msg string) *wirepb.Error {
	return &wirepb.Error{Code: uint32(code), Message: msg}
}

var errorCodes = []struct {
	err  error
	code wire.Code
}{
	{errDecode, wire.CodeBadRequest},
	{inbox.ErrInvalid, wire.CodeInvalid},
	{inbox.ErrNoGroup, wire.CodeNoGroup},
	{inbox.ErrDismissed, wire.CodeDismissed},
	{inbox.ErrNotMember, wire.CodeNotMember},
	{inbox.ErrForbidden, wire.CodeForbidden},
	{inbox.ErrMuted, wire.CodeMuted},
	{inbox.ErrGroupFull, wire.CodeGroupFull},
	{inbox.ErrBlocked, wire.CodeBlocked},
	{inbox.ErrTooLate, wire.CodeTooLate},
	{inbox.ErrUnavailable, wire.CodeUnavailable},
	{inbox.ErrNotOwner, wire.CodeUnavailable},
	{inbox.ErrClosed, wire.CodeShuttingDown},
	{context.DeadlineExceeded, wire.CodeTimeout},
}

// errorFor maps a service error to its protocol error.
func errorFor(err error) *wirepb.Error {
	for _, ec := range errorCodes {
		if errors.Is(err, ec.err) {
			e := errorBody(ec.code, err.Error())
			if ec.code.Retryable() {
				e.RetryAfterMs = 100
			}
			return e
		}
	}
	return errorBody(wire.CodeInternal, "internal error")
}
