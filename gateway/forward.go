package gateway

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/inboxd/inboxd/peer"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// Forwarding (docs/cluster.md, "Routing"): a conversation command that this
// node's inbox refuses with ErrNotOwner (the conversation's shard is served
// elsewhere) is sent, with the acting user and the client's request body
// unchanged, to the node serving the conversation, which runs the same
// handler (ServeForwarded) and whose answer goes back to the client as it
// came. User commands never need it: a node keeps only the users it serves.

// Forwarder runs a conversation command at the node serving conv.
// *relay.Relay has it.
type Forwarder interface {
	// Forward returns the owner's response body, or an error whose code
	// peer.Code gives: the owner's own error answer (a *peer.Error),
	// UNAVAILABLE when no owner is known or it cannot be reached, TIMEOUT
	// when ctx's deadline passed.
	Forward(ctx context.Context, conv, user uint64, cmd wire.Command, body []byte) ([]byte, error)
}

// notServedHere marks a conversation command the inbox refused because
// another node serves conv.
type notServedHere struct {
	conv uint64
	err  error
}

func (e *notServedHere) Error() string { return e.err.Error() }
func (e *notServedHere) Unwrap() error { return e.err }

// forward runs req at the owner of conv and answers the session with what
// the owner answered.
func (sess *session) forward(ctx context.Context, req request, user, conv uint64) {
	resp, err := sess.srv.cfg.Forwarder.Forward(ctx, conv, user, req.cmd, req.body)
	if err != nil {
		sess.reply(req, nil, forwardError(err))
		return
	}
	frame := wire.AppendHeader(nil, req.cmd, wire.FlagResponse, req.id, len(resp))
	if sess.write(append(frame, resp...)) {
		sess.srv.metrics.frameOut(sess.transport(), req.cmd)
	}
}

// forwardError is the client's answer to a forward that failed: the owner's
// code and message as it answered them, or the code peer.Code gives, with a
// retry hint when retrying may help.
func forwardError(err error) *wirepb.Error {
	code, msg := peer.Code(err), err.Error()
	if e, ok := errors.AsType[*peer.Error](err); ok {
		msg = e.Message
	}
	e := errorBody(code, msg)
	if code.Retryable() {
		e.RetryAfterMs = unavailableRetryMs
	}
	return e
}

// forwardable are the commands another node may forward here: those that
// name a conversation. AUTH, SYNC and the user's own commands are not.
var forwardable = map[wire.Command]bool{
	wire.CmdSend: true, wire.CmdHistory: true, wire.CmdInvite: true, wire.CmdJoin: true,
	wire.CmdLeave: true, wire.CmdKick: true, wire.CmdDismiss: true, wire.CmdSetRole: true,
	wire.CmdMute: true, wire.CmdSetDND: true, wire.CmdGroupInfo: true,
}

// ServeForwarded runs a conversation command another node forwarded for
// user, with the handler a session here would run (relay.Runner). It
// returns the response body, or a *peer.Error with the code and message the
// client is answered: a conversation this node does not serve either (its
// shard moved again) is UNAVAILABLE, never forwarded on.
func (s *Server) ServeForwarded(ctx context.Context, user uint64, cmd wire.Command, body []byte) ([]byte, error) {
	if !forwardable[cmd] {
		return nil, &peer.Error{Code: wire.CodeUnknownCommand, Message: fmt.Sprintf("%v is not forwarded", cmd)}
	}
	resp, err := handlers[cmd](ctx, s, user, body)
	if err != nil {
		e := errorFor(err)
		return nil, &peer.Error{Code: wire.Code(e.Code), Message: e.Message}
	}
	out, err := proto.Marshal(resp)
	if err != nil {
		return nil, fmt.Errorf("gateway: encode a forwarded %v response: %w", cmd, err)
	}
	return out, nil
}
