package gateway

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/internal/gatewaytest"
	"github.com/inboxd/inboxd/peer"
	"github.com/inboxd/inboxd/wire"
)

// TestForwardError: the client is answered the owner's code and message
// as they came, or the code of a forward that did not reach the owner,
// with a retry hint when a retry may help; a conversation refused here
// with no Forwarder is UNAVAILABLE, retryable.
func TestForwardError(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		code  wire.Code
		msg   string
		retry bool
	}{
		{"the owner's answer", fmt.Errorf("relay: forward: %w", &peer.Error{Code: wire.CodeForbidden, Message: "not an admin"}), wire.CodeForbidden, "not an admin", false},
		{"the owner unreachable", fmt.Errorf("relay: %w", peer.ErrUnavailable), wire.CodeUnavailable, "", true},
		{"the connection lost", peer.ErrConnLost, wire.CodeUnavailable, "", true},
		{"timed out", context.DeadlineExceeded, wire.CodeTimeout, "", true},
		{"the pool closed", peer.ErrClosed, wire.CodeShuttingDown, "", true},
	}
	for _, tt := range tests {
		e := forwardError(tt.err)
		if wire.Code(e.Code) != tt.code || (tt.msg != "" && e.Message != tt.msg) || (e.RetryAfterMs != 0) != tt.retry {
			t.Errorf("%s: %v %q retry %d ms, want %v %q retry %v", tt.name, wire.Code(e.Code), e.Message, e.RetryAfterMs, tt.code, tt.msg, tt.retry)
		}
	}
	e := errorFor(&notServedHere{conv: 5, err: fmt.Errorf("%w: conversation 5", inbox.ErrNotOwner)})
	if wire.Code(e.Code) != wire.CodeUnavailable || e.RetryAfterMs == 0 {
		t.Errorf("ErrNotOwner without a Forwarder: %v retry %d ms, want UNAVAILABLE with a retry hint", wire.Code(e.Code), e.RetryAfterMs)
	}
}

// TestServeForwardedRefuses: only conversation commands are run for
// another node; AUTH, SYNC and the user's own commands are not.
func TestServeForwardedRefuses(t *testing.T) {
	s, err := New(Config{Addr: gatewaytest.Addr, Secret: []byte(gatewaytest.Secret)})
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []wire.Command{wire.CmdAuth, wire.CmdSync, wire.CmdMarkRead, wire.CmdConversations, wire.CmdCreateGroup, wire.CmdHeartbeat} {
		_, err := s.ServeForwarded(context.Background(), 1, cmd, nil)
		if e, ok := errors.AsType[*peer.Error](err); !ok || e.Code != wire.CodeUnknownCommand {
			t.Errorf("%v forwarded: %v, want UNKNOWN_COMMAND", cmd, err)
		}
	}
}
