package gateway

import (
	"time"

	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// Gate holds the bans and token revocations set through the server API
// (package api). The gateway asks it at AUTH, under its own lock, and on
// every SEND: its methods must be quick, safe for concurrent use, and must
// not call the gateway.
type Gate interface {
	// Admit returns 0 when a token of user's device issued at issued (the
	// zero time: a token without iat) may connect, else wire.CodeBanned or
	// wire.CodeRevoked.
	Admit(user uint64, device string, issued time.Time) wire.Code
	// Banned reports whether user is banned.
	Banned(user uint64) bool
}

// gateRefusals are the codes a Gate refuses with, and what each counts as.
var gateRefusals = map[wire.Code]struct {
	auth   authFailure
	closed disconnect
}{
	wire.CodeBanned:  {authBanned, closedBanned},
	wire.CodeRevoked: {authRevoked, closedRevoked},
}

// gated asks the Gate whether sess, authenticating, may register.
func (s *Server) gated(sess *session) *wirepb.Error {
	if s.cfg.Gate == nil {
		return nil
	}
	switch code := s.cfg.Gate.Admit(sess.user.Load(), sess.device, sess.issued); code {
	case 0:
		return nil
	case wire.CodeBanned:
		return errorBody(code, "the user is banned")
	default:
		return errorBody(code, "the token was revoked: get a new one")
	}
}

// Disconnect closes user's authenticated connections with an ERROR frame of
// code, wire.CodeBanned or wire.CodeRevoked: all of them when device is
// empty, else that device's. Call it after the Gate refuses them: a
// connection authenticating meanwhile is refused by the Gate. It returns
// the number of connections closed.
func (s *Server) Disconnect(user uint64, device string, code wire.Code, msg string) int {
	why, ok := gateRefusals[code]
	if !ok {
		panic("gateway: Disconnect with code " + code.String())
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, sess := range s.byUser[user] {
		if (device == "" || sess.device == device) && sess.fail(why.closed, code, msg) {
			n++
		}
	}
	return n
}
