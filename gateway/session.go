package gateway

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"google.golang.org/protobuf/proto"

	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// session is one connection. Fields are grouped by who may touch them.
type session struct {
	srv    *Server
	c      gnet.Conn
	opened int64 // unix nanos

	// Event loop only.
	authSeen bool    // the first frame was AUTH
	tokens   float64 // rate limiter bucket
	refilled int64   // unix nanos of the last refill

	// Any goroutine.
	lastSeen atomic.Int64 // unix nanos of the last frame received
	user     atomic.Uint64
	closed   atomic.Bool
	failed   atomic.Bool

	// Workers; device is written once by the AUTH request, before user.
	device string

	mu      sync.Mutex
	queue   []request
	running bool // a worker owns the queue
}

// request is a frame waiting for a worker; body is a copy.
type request struct {
	cmd     wire.Command
	id      uint32
	body    []byte
	arrived time.Time // when the frame was read, for the latency histogram
}

func newSession(s *Server, c gnet.Conn) *session {
	now := s.cfg.Now().UnixNano()
	sess := &session{srv: s, c: c, opened: now, tokens: float64(s.cfg.RateBurst), refilled: now}
	sess.lastSeen.Store(now)
	return sess
}

// read splits and dispatches every whole frame in the inbound buffer. It
// runs on the event loop and never blocks.
func (sess *session) read(c gnet.Conn) gnet.Action {
	cfg := &sess.srv.cfg
	m := sess.srv.metrics
	arrived := cfg.Now()
	now := arrived.UnixNano()
	sess.lastSeen.Store(now)
	for {
		buf, _ := c.Peek(c.InboundBuffered())
		f, n, err := wire.Split(buf, cfg.MaxFrame)
		if err != nil {
			code := wire.CodeFrameTooLarge
			if !errors.Is(err, wire.ErrFrameTooLarge) {
				code = wire.CodeVersion
			}
			sess.fail(closedProtocol, code, err.Error())
			c.Discard(len(buf))
			return gnet.None
		}
		if n == 0 {
			return gnet.None
		}
		m.frameIn(f.Command)
		req := request{cmd: f.Command, id: f.RequestID, body: append([]byte(nil), f.Body...), arrived: arrived}
		c.Discard(n)
		if sess.failed.Load() {
			continue
		}
		sess.dispatch(req, now)
	}
}

// dispatch answers what the event loop can answer itself and queues the rest.
func (sess *session) dispatch(req request, now int64) {
	s := sess.srv
	switch {
	case !sess.authSeen && req.cmd != wire.CmdAuth:
		s.metrics.authFailures[authNotFirst].Inc()
		sess.refuse(req, errorBody(wire.CodeUnauthenticated, "AUTH must come first"), closedAuthFailed)
		return
	case req.cmd == wire.CmdAuth && sess.authSeen:
		sess.reply(req, nil, errorBody(wire.CodeInvalid, "already authenticated"))
		return
	case !req.cmd.Known() || req.cmd == wire.CmdPush || req.cmd == wire.CmdError:
		sess.reply(req, nil, errorBody(wire.CodeUnknownCommand, "unknown command "+req.cmd.String()))
		return
	case !sess.allow(now):
		s.metrics.rejected[rejectRateLimited].Inc()
		e := errorBody(wire.CodeRateLimited, "too many requests")
		e.RetryAfterMs = uint32(1000/s.cfg.RateLimit) + 1
		sess.reply(req, nil, e)
		return
	}
	// Count the request before looking at stopping: Shutdown sets stopping
	// and then waits for the count, so every request it does not wait for
	// is refused here.
	s.inflight.Add(1)
	if s.stopping.Load() {
		s.inflight.Add(-1)
		s.metrics.rejected[rejectShuttingDown].Inc()
		sess.reply(req, nil, errorBody(wire.CodeShuttingDown, "server shutting down"))
		return
	}
	sess.authSeen = true
	sess.mu.Lock()
	if len(sess.queue) >= s.cfg.MaxPending {
		sess.mu.Unlock()
		s.inflight.Add(-1)
		s.metrics.rejected[rejectQueueFull].Inc()
		sess.reply(req, nil, errorBody(wire.CodeRateLimited, "too many requests in flight"))
		return
	}
	sess.queue = append(sess.queue, req)
	schedule := !sess.running
	sess.running = true
	sess.mu.Unlock()
	if schedule {
		select {
		case s.ready <- sess:
		default:
			// Every worker slot is taken by waiting sessions: shed load
			// rather than block the event loop.
			sess.mu.Lock()
			dropped := sess.queue
			sess.queue, sess.running = nil, false
			sess.mu.Unlock()
			for _, r := range dropped {
				s.metrics.rejected[rejectOverloaded].Inc()
				sess.reply(r, nil, errorBody(wire.CodeUnavailable, "server overloaded"))
				s.inflight.Add(-1)
			}
		}
	}
}

// allow takes a token from the connection's bucket.
func (sess *session) allow(now int64) bool {
	cfg := &sess.srv.cfg
	elapsed := float64(now-sess.refilled) / 1e9
	sess.refilled = now
	sess.tokens = min(float64(cfg.RateBurst), sess.tokens+elapsed*cfg.RateLimit)
	if sess.tokens < 1 {
		return false
	}
	sess.tokens--
	return true
}

// run handles the session's queue in order until it is empty.
func (sess *session) run() {
	for {
		sess.mu.Lock()
		if len(sess.queue) == 0 {
			sess.running = false
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
// reader when too much is waiting. It reports false when the connection is
// closed already.
func (sess *session) write(frame []byte) bool {
	if sess.closed.Load() {
		return false
	}
	max := sess.srv.cfg.MaxOutbound
	sess.c.AsyncWrite(frame, func(c gnet.Conn, err error) error {
		if err == nil && c.OutboundBuffered() > max {
			sess.fail(closedSlowReader, wire.CodeSlowReader, "outbound buffer full: read faster")
		}
		return nil
	})
	return true
}

// reply writes the response to req: body, or the error e.
func (sess *session) reply(req request, body proto.Message, e *wirepb.Error) {
	flags := wire.FlagResponse
	var m proto.Message = body
	if e != nil {
		flags |= wire.FlagError
		m = e
		sess.srv.metrics.errorResponse(wire.Code(e.Code))
	}
	frame, err := wire.AppendFrame(nil, req.cmd, flags, req.id, m)
	if err != nil {
		sess.srv.log.Error("gateway: encode response", "cmd", req.cmd, "err", err)
		return
	}
	if sess.write(frame) {
		sess.srv.metrics.frameOut(req.cmd)
	}
}

// refuse answers req with the error e and closes the connection, counting
// why. The connection is marked failed before the answer goes out: a client
// that closes as soon as it reads the answer must not count as the peer
// closing first.
func (sess *session) refuse(req request, e *wirepb.Error, why disconnect) {
	first := sess.failed.CompareAndSwap(false, true)
	if first {
		sess.srv.metrics.disconnects[why].Inc()
	}
	sess.reply(req, nil, e)
	if first {
		sess.c.Close()
	}
}

// fail sends an ERROR frame with code and closes the connection once it is
// written; why is counted. Only the first failure counts: fail reports
// whether this was it.
func (sess *session) fail(why disconnect, code wire.Code, msg string) bool {
	return sess.failWith(why, errorBody(code, msg))
}

// failWith is fail with the whole Error body e.
func (sess *session) failWith(why disconnect, e *wirepb.Error) bool {
	if !sess.failed.CompareAndSwap(false, true) {
		return false
	}
	m := sess.srv.metrics
	m.disconnects[why].Inc()
	frame, _ := wire.AppendFrame(nil, wire.CmdError, 0, 0, e)
	m.frameOut(wire.CmdError)
	sess.c.AsyncWrite(frame, func(c gnet.Conn, _ error) error { return c.Close() })
	return true
}
