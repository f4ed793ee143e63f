package gateway

import (
	"net"
	"net/netip"

	"github.com/panjf2000/gnet/v2"

	"github.com/inboxd/inboxd/wire"
)

// What the gateway bounds, and why (docs/protocol.md, "Limits"):
//
//   - Before AUTH succeeds a frame is at most Config.PreAuthMaxFrame bytes:
//     a token is about 1 KiB, so nobody without one makes the server hold a
//     max-size frame.
//   - Unauthenticated connections are capped in number and in the bytes of
//     partial frames held for them together; a source address is capped in
//     connections.
//   - Every frame takes a token from its connection's bucket, whatever its
//     command; a connection refused more than a burst's worth of frames
//     beyond what it earned back is closed as a flood, and the user's next
//     connections inherit its debt until it is earned back.
//   - A user's SEND and expensive reads share one bucket across devices,
//     kept, whether the user is online or not, until it refills.

// bucket is a token bucket. It is not safe for concurrent use.
type bucket struct {
	tokens float64
	at     int64 // unix nanos of the last refill
}

func newBucket(burst int, now int64) bucket { return bucket{tokens: float64(burst), at: now} }

// refill adds what rate earned since the last refill, up to burst.
func (b *bucket) refill(now int64, rate float64, burst int) {
	if now > b.at {
		b.tokens = min(float64(burst), b.tokens+float64(now-b.at)/1e9*rate)
		b.at = now
	}
}

// verdict is what a connection's bucket says of a frame.
type verdict uint8

const (
	allowed verdict = iota
	limited         // answer RATE_LIMITED
	flooded         // close the connection
)

// take charges one frame to the connection's bucket. A refused frame is
// charged too, as debt: a client that backs off earns it back at the rate,
// and one that keeps sending runs up more than a burst of debt and is closed.
func (b *bucket) take(now int64, rate float64, burst int) verdict {
	b.refill(now, rate, burst)
	b.tokens--
	switch {
	case b.tokens >= 0:
		return allowed
	case b.tokens < -float64(burst):
		return flooded
	}
	return limited
}

// spend charges one frame to the connection's bucket, which first takes
// over the debt the user's last flood left. It runs on the event loop.
func (sess *session) spend(now int64) verdict {
	if d := sess.debt.Swap(nil); d != nil {
		sess.rate = *d
	}
	return sess.rate.take(now, sess.srv.cfg.RateLimit, sess.srv.cfg.RateBurst)
}

// flooded records a connection its bucket closes as a flood of what: the
// user's next connections owe its debt, and the log tells.
func (sess *session) flooded(what string) {
	s := sess.srv
	s.owe(sess.user.Load(), sess.rate)
	s.warn.warn(warnFlood, "gateway: connection closed for flooding", "remote", sess.remote(), "user", sess.user.Load(), "command", what)
}

// owe keeps the bucket of user's connection closed as a flood: the user's
// next connections take it over, so that reconnecting does not buy a flood
// a fresh burst.
func (s *Server) owe(user uint64, b bucket) {
	if user == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.debts[user] = b
}

// forgive forgets the debts earned back by now, and the users' buckets
// refilled by now.
func (s *Server) forgive(now int64) {
	s.mu.Lock()
	for user, b := range s.debts {
		if b.refill(now, s.cfg.RateLimit, s.cfg.RateBurst); b.tokens >= float64(s.cfg.RateBurst) {
			delete(s.debts, user)
		}
	}
	s.mu.Unlock()
	s.rateMu.Lock()
	defer s.rateMu.Unlock()
	if len(s.rates) == 0 {
		return
	}
	for user, b := range s.rates {
		if b.refill(now, s.cfg.UserRateLimit, s.cfg.UserRateBurst); b.tokens >= float64(s.cfg.UserRateBurst) {
			delete(s.rates, user)
		}
	}
	if len(s.rates) == 0 {
		// Made anew: a map keeps the room of its largest size, which the
		// users who all SYNCed as they connected would leave to idle
		// connections.
		s.rates = make(map[uint64]bucket)
	}
}

// takeUser takes a token from user's bucket for the commands in
// userLimited, shared by the user's connections and kept whether they are
// online or not, if there is one; a refused request costs nothing here (its
// connection's bucket charged it already). A user whose bucket is full has
// none: most connections are idle.
func (s *Server) takeUser(user uint64, now int64) bool {
	s.rateMu.Lock()
	defer s.rateMu.Unlock()
	b := s.rates[user] // none: the zero bucket, full
	if !b.spare(now, s.cfg.UserRateLimit, s.cfg.UserRateBurst) {
		return false
	}
	s.rates[user] = b
	return true
}

// spare takes a token if there is one; unlike take, a refusal costs
// nothing. A zero bucket is full.
func (b *bucket) spare(now int64, rate float64, burst int) bool {
	b.refill(now, rate, burst)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// typingBucket is the connection's bucket of TYPING requests, made at the
// first: most connections never type. Only the worker that owns the queue
// calls it.
func (sess *session) typingBucket() *bucket {
	if sess.typing == nil {
		sess.typing = new(bucket)
	}
	return sess.typing
}

// userLimited are the commands limited per user, across devices: the writes
// that fan out (messages, and the group commands that post a notice to
// every member) and the reads that cost the store the most.
func userLimited(c wire.Command) bool {
	switch c {
	case wire.CmdSend, wire.CmdSendDirect, wire.CmdRecall, wire.CmdEdit, wire.CmdSync, wire.CmdHistory, wire.CmdConversations,
		wire.CmdPresence, wire.CmdReadReceipts,
		wire.CmdCreateGroup, wire.CmdInvite, wire.CmdJoin, wire.CmdLeave, wire.CmdKick, wire.CmdDismiss, wire.CmdSetRole,
		wire.CmdMute, wire.CmdSetGroupProfile, wire.CmdGroupInfo:
		return true
	}
	return false
}

// refusal is why a connection was refused at a cap.
type refusal uint8

const (
	refusedUnauthenticated      refusal = iota // Config.MaxUnauthenticated reached
	refusedAddress                             // Config.MaxConnsPerAddr reached for the source address
	refusedUnauthenticatedBytes                // Config.MaxUnauthenticatedBytes reached
	numRefusals
)

var refusalNames = [numRefusals]string{"unauthenticated", "address", "unauthenticated_bytes"}

// remoteAddr is the address a connection comes from; invalid if not TCP.
func remoteAddr(c gnet.Conn) netip.AddrPort {
	tcp, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	remote := tcp.AddrPort()
	return netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
}

// source is what the per-address cap counts the session under (capKey).
// It is derived each time rather than kept: a session's every byte is paid
// by every idle connection.
func (sess *session) source() netip.Addr {
	return capKey(sess.remote().Addr(), sess.srv.cfg.LimitLoopback)
}

// capKey is what the per-address cap counts a connection from a under: the
// IPv4 address, or the IPv6 /64 (one host usually holds a whole /64);
// invalid for a loopback address unless limitLoopback.
func capKey(a netip.Addr, limitLoopback bool) netip.Addr {
	a = a.Unmap()
	switch {
	case a.IsLoopback() && !limitLoopback:
		return netip.Addr{}
	case a.Is6():
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// admit counts a new connection against the caps, or says which refuses
// it. It runs on the event loop with s.mu held.
func (s *Server) admit(sess *session) (refusal, bool) {
	if s.unauthenticated.Load() >= int64(s.cfg.MaxUnauthenticated) {
		return refusedUnauthenticated, false
	}
	if source := sess.source(); source.IsValid() {
		if s.perAddr[source] >= s.cfg.MaxConnsPerAddr {
			return refusedAddress, false
		}
		s.perAddr[source]++
	}
	s.unauthenticated.Add(1)
	sess.unauthenticated.Store(true)
	return 0, true
}

// forget undoes admit's counting of a closing connection; s.mu is held.
func (s *Server) forget(sess *session) {
	sess.dropUnauthenticated()
	source := sess.source()
	if !source.IsValid() {
		return
	}
	if s.perAddr[source]--; s.perAddr[source] <= 0 {
		delete(s.perAddr, source)
	}
}

// dropUnauthenticated takes the session out of the unauthenticated count,
// once: when it authenticates or closes.
func (sess *session) dropUnauthenticated() {
	if sess.unauthenticated.CompareAndSwap(true, false) {
		sess.srv.unauthenticated.Add(-1)
	}
}

// charge counts the partial frame the session holds against the bytes all
// unauthenticated connections may hold, and reports false (having released
// it) when that is over the cap. It runs on the event loop.
func (sess *session) charge() bool {
	s := sess.srv
	want := 0
	if sess.unauthenticated.Load() {
		want = cap(sess.held)
		if sess.ws != nil {
			want += cap(sess.ws.msg)
		}
	}
	d := want - sess.charged
	if d == 0 {
		return true
	}
	sess.charged = want
	if s.unauthBytes.Add(int64(d)) <= int64(s.cfg.MaxUnauthenticatedBytes) || d < 0 {
		return true
	}
	sess.release()
	return false
}

// release drops the partial frame the session holds, and its charge.
func (sess *session) release() {
	sess.held = nil
	if sess.ws != nil {
		sess.ws.msg, sess.ws.fragmented = nil, false
	}
	sess.charge()
}
