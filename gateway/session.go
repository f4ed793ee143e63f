package gateway

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"google.golang.org/protobuf/proto"

	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// session is one connection. Fields are grouped by who may touch them;
// every idle connection pays for each byte, so the flags of every group
// sit together at the end, where they share one word instead of padding
// one each.
type session struct {
	srv    *Server
	c      gnet.Conn
	opened int64    // unix nanos
	ip     [16]byte // the peer's address, IPv4 mapped (remote)
	ws     *wsConn  // the WebSocket state; nil over TCP

	// Event loop only.
	answers []byte // frames the event loop answered, written once per read
	rate    bucket // every frame's
	// held is the start of a frame not yet whole, owned by the session
	// rather than left in gnet's buffer: it is sized to the frame, dropped
	// once the frame is whole or the connection closes, and counted
	// (charged bytes) while the connection is unauthenticated.
	held    []byte
	charged int

	// Any goroutine.
	lastSeen atomic.Int64 // unix nanos of the last frame received
	user     atomic.Uint64
	debt     atomic.Pointer[bucket] // a flood's debt for rate to take over, set at AUTH
	outbound atomic.Int64           // gnet's unwritten bytes after the last write

	// Frames waiting for the event loop to write them, from any goroutine.
	outMu sync.Mutex
	out   []byte

	// Workers; device and issued are written once by the AUTH request,
	// before user.
	device string
	issued int64   // the token's iat, unix seconds; 0 without one
	typing *bucket // the connection's TYPING requests, from the first

	mu    sync.Mutex
	queue []request

	unauthenticated atomic.Bool // counted in Server.unauthenticated
	closed          atomic.Bool
	failed          atomic.Bool
	port            uint16 // the peer's port (remote); 0: none
	authSeen        bool   // event loop: the first frame was AUTH
	closing         bool   // event loop: read closes the connection when it returns
	flushing        bool   // outMu: a flush task is queued on the event loop
	shut            bool   // outMu: the connection closes once out is written; nothing more is queued
	running         bool   // mu: a worker owns the queue
}

// request is a frame waiting for a worker; body is a copy.
type request struct {
	cmd     wire.Command
	id      uint32
	body    []byte
	arrived time.Time // when the frame was read, for the latency histogram
}

func newSession(s *Server, c gnet.Conn, t transport) *session {
	now := s.cfg.Now().UnixNano()
	sess := &session{srv: s, c: c, opened: now, rate: newBucket(s.cfg.RateBurst, now)}
	if t == transportWS {
		sess.ws = &wsConn{}
	}
	if remote := remoteAddr(c); remote.IsValid() {
		sess.ip, sess.port = remote.Addr().As16(), remote.Port()
	}
	sess.lastSeen.Store(now)
	return sess
}

// remote is the peer, for logs and the per-address cap; invalid if the
// connection is not TCP. The session keeps the address's bytes and the port
// rather than a netip.AddrPort, whose zone handle and padding would take 16
// bytes more of every connection: an IPv6 zone is not kept.
func (sess *session) remote() netip.AddrPort {
	if sess.port == 0 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(netip.AddrFrom16(sess.ip).Unmap(), sess.port)
}

// read splits and dispatches every whole frame received. It runs on the
// event loop and never blocks.
//
// It takes every byte from gnet each time: a frame's start that gnet kept
// would sit in a buffer that gnet pools after the connection closes, sized
// for the largest frame the connection ever sent. The session holds it
// instead (held), and only while the frame is incomplete.
func (sess *session) read(c gnet.Conn) gnet.Action {
	cfg := &sess.srv.cfg
	arrived := cfg.Now()
	sess.lastSeen.Store(arrived.UnixNano())
	in, _ := c.Next(-1)
	limit := cfg.MaxFrame
	if sess.user.Load() == 0 {
		limit = cfg.PreAuthMaxFrame
	}
	if sess.ws != nil {
		sess.readWS(in, limit, arrived)
	} else {
		sess.readStream(in, limit, arrived)
	}
	if !sess.failed.Load() && !sess.charge() {
		sess.srv.metrics.refused[refusedUnauthenticatedBytes].Inc()
		sess.srv.warn.warn(warnConnLimit, "gateway: connection closed at a cap", "limit", refusalNames[refusedUnauthenticatedBytes], "remote", sess.remote())
		sess.failNow(closedConnLimit, wire.CodeUnavailable, "too many unauthenticated bytes")
	}
	sess.flush()
	if sess.failed.Load() {
		sess.release() // nothing more is read from a failed connection
	}
	if sess.closing {
		// Closed here and now rather than by a task queued behind the
		// flood that keeps arriving meanwhile.
		return gnet.Close
	}
	return gnet.None
}

// readStream splits the TCP byte stream in into frames, holding the start
// of a frame not yet whole. It runs on the event loop.
func (sess *session) readStream(in []byte, limit int, arrived time.Time) {
	for len(in) > 0 && !sess.failed.Load() {
		buf := in
		if sess.held != nil {
			in = sess.fill(in)
			buf = sess.held
		}
		f, n, err := wire.Split(buf, limit)
		if err != nil {
			code := wire.CodeFrameTooLarge
			if !errors.Is(err, wire.ErrFrameTooLarge) {
				code = wire.CodeVersion
			}
			sess.failNow(closedProtocol, code, err.Error())
			break
		}
		if n == 0 {
			if sess.held == nil {
				in = sess.fill(in)
			}
			continue
		}
		if sess.held != nil {
			sess.held = nil // the request owns it now
		} else {
			f.Body = append([]byte(nil), f.Body...) // gnet reuses in
			in = in[n:]
		}
		sess.accept(f, arrived)
	}
}

// accept dispatches a whole frame, whose body the session owns, from either
// transport. It runs on the event loop.
func (sess *session) accept(f wire.Frame, arrived time.Time) {
	sess.srv.metrics.frameIn(sess.transport(), f.Command)
	sess.dispatch(request{cmd: f.Command, id: f.RequestID, body: f.Body, arrived: arrived}, arrived.UnixNano())
}

// transport is what carries the session's frames.
func (sess *session) transport() transport {
	if sess.ws != nil {
		return transportWS
	}
	return transportTCP
}

// fill moves into held the bytes of in that its frame still lacks and
// returns the rest: the header first, then, once wire.Split has accepted
// the header's length, the body, in a buffer of exactly the frame's size.
func (sess *session) fill(in []byte) []byte {
	need := wire.HeaderSize
	if len(sess.held) >= wire.HeaderSize {
		need += int(binary.BigEndian.Uint32(sess.held))
		sess.held = slices.Grow(sess.held, need-len(sess.held))
	} else if sess.held == nil {
		sess.held = make([]byte, 0, need)
	}
	take := min(need-len(sess.held), len(in))
	sess.held = append(sess.held, in[:take]...)
	return in[take:]
}

// dispatch answers what the event loop can answer itself and queues the rest.
// Every frame is charged to the connection's bucket first, whatever it is.
// It runs on the event loop.
func (sess *session) dispatch(req request, now int64) {
	s := sess.srv
	if !sess.authSeen && req.cmd != wire.CmdAuth {
		s.authFailed(authNotFirst, sess.remote())
		if sess.closeNow(closedAuthFailed) {
			sess.answer(req, errorBody(wire.CodeUnauthenticated, "AUTH must come first"))
		}
		return
	}
	switch sess.spend(now) {
	case flooded:
		sess.flooded(req.cmd.String())
		s.metrics.rejected[rejectRateLimited].Inc()
		if sess.closeNow(closedFlood) {
			sess.answer(req, sess.rateLimited("too many requests: closing"))
		}
		return
	case limited:
		s.metrics.rejected[rejectRateLimited].Inc()
		sess.answer(req, sess.rateLimited("too many requests"))
		return
	}
	switch {
	case req.cmd == wire.CmdAuth && sess.authSeen:
		sess.answer(req, errorBody(wire.CodeInvalid, "already authenticated"))
		return
	case !req.cmd.Known() || req.cmd == wire.CmdPush || req.cmd == wire.CmdError:
		sess.answer(req, errorBody(wire.CodeUnknownCommand, "unknown command "+req.cmd.String()))
		return
	}
	// Count the request before looking at stopping: Shutdown sets stopping
	// and then waits for the count, so every request it does not wait for
	// is refused here.
	s.inflight.Add(1)
	if s.stopping.Load() {
		s.inflight.Add(-1)
		s.metrics.rejected[rejectShuttingDown].Inc()
		sess.answer(req, errorBody(wire.CodeShuttingDown, "server shutting down"))
		return
	}
	sess.authSeen = true
	sess.mu.Lock()
	if len(sess.queue) >= s.cfg.MaxPending {
		sess.mu.Unlock()
		s.inflight.Add(-1)
		s.metrics.rejected[rejectQueueFull].Inc()
		sess.answer(req, errorBody(wire.CodeRateLimited, "too many requests in flight"))
		return
	}
	sess.queue = append(sess.queue, req)
	schedule := !sess.running
	sess.running = true
	sess.mu.Unlock()
	if schedule {
		select {
		case s.ready <- sess:
			s.queued()
		default:
			// Every worker slot is taken by waiting sessions: shed load
			// rather than block the event loop.
			sess.mu.Lock()
			dropped := sess.queue
			sess.queue, sess.running = nil, false
			sess.mu.Unlock()
			for _, r := range dropped {
				s.metrics.rejected[rejectOverloaded].Inc()
				sess.answer(r, errorBody(wire.CodeUnavailable, "server overloaded"))
				s.inflight.Add(-1)
			}
		}
	}
}

// rateLimited is the error of a request over a limit, telling when a token
// is back.
func (sess *session) rateLimited(msg string) *wirepb.Error {
	e := errorBody(wire.CodeRateLimited, msg)
	e.RetryAfterMs = uint32(1000/sess.srv.cfg.RateLimit) + 1
	return e
}

// run handles the session's queue in order until it is empty.
func (sess *session) run() {
	for {
		sess.mu.Lock()
		if len(sess.queue) == 0 {
			// Dropped, not kept for the next request: an idle connection
			// would hold it, and taken from the front it seldom has room
			// left anyway.
			sess.queue, sess.running = nil, false
			sess.mu.Unlock()
			return
		}
		req := sess.queue[0]
		sess.queue[0] = request{}
		sess.queue = sess.queue[1:]
		sess.mu.Unlock()
		if !sess.closed.Load() && !sess.failed.Load() {
			sess.handle(req)
		}
		sess.srv.inflight.Add(-1)
	}
}

// write queues a whole frame for the connection and closes it as a slow
// reader when too much is waiting. It reports false when the frame was not
// queued: the connection is closed or closing.
func (sess *session) write(frame []byte) bool {
	queued, slow := sess.enqueue(frame, false)
	if slow && sess.fail(closedSlowReader, wire.CodeSlowReader, "outbound buffer full: read faster") {
		sess.srv.warn.warn(warnSlowReader, "gateway: slow reader closed", "remote", sess.remote(), "user", sess.user.Load(),
			"outbound", sess.outbound.Load())
	}
	return queued
}

// enqueue appends frame to the frames waiting for the event loop, unless the
// connection is closed or closing, and makes sure a flush is queued. A frame
// that would take the waiting and unwritten bytes past MaxOutbound is
// refused (slow), unless last: last is the final frame, after which the
// connection closes (an ERROR, a refusal), whatever is waiting.
func (sess *session) enqueue(frame []byte, last bool) (queued, slow bool) {
	s := sess.srv
	sess.outMu.Lock()
	// Checked under outMu: OnClose sets closed before dropOut takes the lock.
	if sess.shut || sess.closed.Load() {
		sess.outMu.Unlock()
		return false, false
	}
	if !last && int64(len(sess.out)+len(frame))+sess.outbound.Load() > int64(s.cfg.MaxOutbound) {
		sess.outMu.Unlock()
		return false, true
	}
	if sess.out == nil {
		sess.out = s.getBuf()
	}
	sess.out = sess.appendOut(sess.out, frame)
	sess.shut = last
	schedule := !sess.flushing
	sess.flushing = true
	sess.outMu.Unlock()
	if schedule {
		// An empty AsyncWritev writes nothing itself: it runs flushQueued on
		// the event loop, which writes whatever has gathered by then.
		sess.c.AsyncWritev(nil, s.flushTask)
	}
	return true, false
}

// appendOut appends frames, one or more whole frames, to dst as the
// session's transport carries them.
func (sess *session) appendOut(dst, frames []byte) []byte {
	if sess.ws != nil {
		return sess.ws.appendMessages(dst, frames)
	}
	return append(dst, frames...)
}

// take returns the frames waiting, and whether the connection closes once
// they are written; done says the queued flush is running, so that the
// next frame queues another. It leaves out empty.
func (sess *session) take(done bool) (out []byte, shut bool) {
	sess.outMu.Lock()
	defer sess.outMu.Unlock()
	out, sess.out = sess.out, nil
	// Until the write that follows stores what gnet could not send, the
	// bytes taken count as unwritten: enqueue, meanwhile, must not see
	// them nowhere and let the connection hold twice MaxOutbound.
	sess.outbound.Add(int64(len(out)))
	if done {
		sess.flushing = false
	}
	return out, sess.shut
}

// flushQueued is the flush task enqueue queues (Server.flushTask): on the
// event loop, it writes every frame waiting with one write and checks the
// slow-reader cap.
func (s *Server) flushQueued(c gnet.Conn, err error) error {
	sess, ok := c.Context().(*session)
	if !ok { // gnet forgot the context of a connection it closed
		return nil
	}
	out, shut := sess.take(true)
	if err != nil { // closed meanwhile
		s.putBuf(out)
		return nil
	}
	if len(out) > 0 {
		c.Write(out) // gnet copies what the socket does not take
		s.putBuf(out)
	}
	if shut {
		if close := sess.ws.closeFrame(); close != nil {
			c.Write(close)
		}
		return c.Close()
	}
	n := c.OutboundBuffered()
	sess.outbound.Store(int64(n))
	if n > s.cfg.MaxOutbound && sess.fail(closedSlowReader, wire.CodeSlowReader, "outbound buffer full: read faster") {
		s.warn.warn(warnSlowReader, "gateway: slow reader closed", "remote", sess.remote(), "user", sess.user.Load(), "outbound", n)
	}
	return nil
}

// dropOut frees the frames still waiting when the connection has closed.
func (sess *session) dropOut() {
	out, _ := sess.take(false)
	sess.srv.putBuf(out)
}

// reply writes the response to req from a worker: body, or the error e.
func (sess *session) reply(req request, body proto.Message, e *wirepb.Error) {
	if frame := sess.response(nil, req, body, e); frame != nil && sess.write(frame) {
		sess.srv.metrics.frameOut(sess.transport(), req.cmd)
	}
}

// answer adds the error e in response to req to what the event loop writes
// when read returns: a flood's answers then cost one write, not one queued
// task and one system call each, and they are out before a close the event
// loop makes.
func (sess *session) answer(req request, e *wirepb.Error) {
	if out := sess.response(sess.answers, req, nil, e); out != nil {
		sess.answers = out
		sess.srv.metrics.frameOut(sess.transport(), req.cmd)
	}
}

// flush writes the answers on the event loop, behind the frames of other
// goroutines waiting, all with one write, and closes the connection as a
// slow reader when too much is waiting.
func (sess *session) flush() {
	out, shut := sess.take(false)
	answers := sess.answers
	if sess.ws != nil {
		answers = sess.wsTail(answers)
	}
	switch {
	case len(out) > 0 && len(answers) > 0:
		sess.c.Writev([][]byte{out, answers})
	case len(out) > 0:
		sess.c.Write(out)
	case len(answers) > 0:
		sess.c.Write(answers)
	default:
		return
	}
	// gnet copied what it could not write. A closing connection's last
	// frame went out with out: the queued flush closes it.
	sess.srv.putBuf(out)
	sess.answers = nil
	n := sess.c.OutboundBuffered()
	sess.outbound.Store(int64(n))
	if !shut && n > sess.srv.cfg.MaxOutbound && sess.closeNow(closedSlowReader) {
		sess.srv.warn.warn(warnSlowReader, "gateway: slow reader closed", "remote", sess.remote(), "user", sess.user.Load(), "outbound", n)
	}
}

// closeNow marks the connection failed, counting why, for read to close it
// when it returns; it reports whether this was the first failure. It runs
// on the event loop.
func (sess *session) closeNow(why disconnect) bool {
	if !sess.failed.CompareAndSwap(false, true) {
		return false
	}
	sess.srv.metrics.disconnects[sess.transport()][why].Inc()
	sess.closing = true
	return true
}

// failNow is fail on the event loop: the ERROR frame is written at once and
// read closes the connection when it returns.
func (sess *session) failNow(why disconnect, code wire.Code, msg string) {
	if sess.closeNow(why) {
		sess.answers, _ = wire.AppendFrame(sess.answers, wire.CmdError, 0, 0, errorBody(code, msg))
		sess.srv.metrics.frameOut(sess.transport(), wire.CmdError)
	}
}

// response appends to dst the response to req: body, or the error e; nil if
// it does not encode.
func (sess *session) response(dst []byte, req request, body proto.Message, e *wirepb.Error) []byte {
	flags := wire.FlagResponse
	var m proto.Message = body
	if e != nil {
		flags |= wire.FlagError
		m = e
		sess.srv.metrics.errorResponse(wire.Code(e.Code))
	}
	frame, err := wire.AppendFrame(dst, req.cmd, flags, req.id, m)
	if err != nil {
		sess.srv.log.Error("gateway: encode response", "cmd", req.cmd, "err", err)
		return nil
	}
	return frame
}

// refuse answers req with the error e and closes the connection, counting
// why. The connection is marked failed before the answer goes out: a client
// that closes as soon as it reads the answer must not count as the peer
// closing first.
func (sess *session) refuse(req request, e *wirepb.Error, why disconnect) {
	first := sess.failed.CompareAndSwap(false, true)
	if first {
		sess.srv.metrics.disconnects[sess.transport()][why].Inc()
	}
	if frame := sess.response(nil, req, nil, e); frame != nil {
		if queued, _ := sess.enqueue(frame, first); queued {
			sess.srv.metrics.frameOut(sess.transport(), req.cmd)
		}
	}
}

// fail sends an ERROR frame with code and closes the connection once it is
// written; why is counted. Only the first failure counts: fail reports
// whether this was it.
func (sess *session) fail(why disconnect, code wire.Code, msg string) bool {
	return sess.failWith(why, errorBody(code, msg))
}

// failWith is fail with the whole Error body e. The ERROR frame goes out
// behind the frames already waiting (a shutdown's last responses).
func (sess *session) failWith(why disconnect, e *wirepb.Error) bool {
	if !sess.failed.CompareAndSwap(false, true) {
		return false
	}
	m := sess.srv.metrics
	m.disconnects[sess.transport()][why].Inc()
	frame, _ := wire.AppendFrame(nil, wire.CmdError, 0, 0, e)
	if queued, _ := sess.enqueue(frame, true); queued {
		m.frameOut(sess.transport(), wire.CmdError)
	}
	return true
}
