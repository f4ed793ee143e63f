package gateway

import (
	"time"

	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// Gate holds the bans and token revocations set through the server API
// (package api). The gateway asks it at AUTH and in Recheck, under its own
// lock, and on every SEND: its methods must be quick, safe for concurrent
// use, and must not call the gateway.
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
	return gateError(s.cfg.Gate.Admit(sess.user.Load(), sess.device, sess.issuedAt()))
}

// gateError is the ERROR body of a Gate's code; nil for 0.
func gateError(code wire.Code) *wirepb.Error {
	switch code {
	case 0:
		return nil
	case wire.CodeBanned:
		return errorBody(code, "the user is banned")
	default:
		return errorBody(code, "the token was revoked: get a new one")
	}
}

// Recheck asks the Gate again about each of user's authenticated
// connections, and closes those it refuses now with an ERROR frame of its
// code (BANNED or REVOKED). Call it after a change of the user's ban or
// revocations, made here or learned from another node: a connection whose
// token is still admitted (a device not revoked, a token issued after the
// revocation) stays, so a change learned twice closes nothing more. A
// connection authenticating meanwhile is refused at AUTH. It returns the
// number of connections closed.
func (s *Server) Recheck(user uint64) int {
	if s.cfg.Gate == nil {
		return 0
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, sess := range s.byUser[user] {
		code := s.cfg.Gate.Admit(user, sess.device, sess.issuedAt())
		if code == 0 {
			continue
		}
		why, ok := gateRefusals[code]
		if !ok {
			panic("gateway: the Gate refused with code " + code.String())
		}
		if sess.failWith(why.closed, gateError(code)) {
			n++
		}
	}
	return n
}

// issuedSeconds is how a session keeps a token's iat, which has second
// precision: 0 for none.
func issuedSeconds(iat time.Time) int64 {
	if iat.IsZero() {
		return 0
	}
	return iat.Unix()
}

// issuedAt is the session's token's iat; zero without one.
func (sess *session) issuedAt() time.Time {
	if sess.issued == 0 {
		return time.Time{}
	}
	return time.Unix(sess.issued, 0)
}
