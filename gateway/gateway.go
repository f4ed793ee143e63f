// Package gateway puts the inbox service on the network: a gnet TCP server
// speaking the binary protocol of package wire (docs/protocol.md), and,
// when Config.WSAddr is set, the same protocol over WebSocket on a listener
// of the same engine, one frame per binary message (ws.go).
//
// The event loops never block. OnTraffic splits whole frames out of the
// inbound buffer, rejects what must be rejected at once (a frame too large,
// a command before AUTH, a flood), copies each request's body and queues it
// on its session. A bounded pool of workers runs each session's queue in
// order, calling the inbox service. Pushes come from the inbox's notifier
// goroutine (Notify), each group commit's message encoded once for all its
// members. Responses and pushes alike are appended to their session's
// outbound buffer, in the order they are made, and the event loop writes
// all that a connection has gathered with one write(2) when it next turns
// (one AsyncWritev task queued per connection at a time, not one per frame):
// when commits come faster than the loop turns, one write carries several.
//
// A connection whose pending and unwritten bytes together grow past
// MaxOutbound is a slow reader: it gets an ERROR frame and is closed. It
// loses nothing: its client resyncs by seq when it reconnects.
//
// What one client can cost is bounded before and after AUTH (limits.go,
// docs/protocol.md "Limits"): small frames until AUTH succeeds, caps on
// unauthenticated connections, on the bytes held for them and on
// connections per address, a rate limit on every frame that closes a
// flooding connection, and a per-user rate limit on the costly requests.
// Each refusal is counted and logged, at most one line per kind per 10 s.
//
// The server counts what it does in Prometheus metrics (namespace inboxd,
// subsystem gateway; docs/operations.md lists them), registered with
// Config.Registerer. The event loops touch only counters resolved when the
// server is created.
//
// This package is the server's own (README, "Layout"): it has no
// compatibility promise. Clients use packages client, wire and token.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// Config configures a Server. Zero values take the defaults named.
type Config struct {
	// Addr is the TCP address to listen on (default 127.0.0.1:7600).
	Addr string
	// WSAddr, when set, is the address of the WebSocket listener (ws.go,
	// docs/protocol.md "WebSocket"); empty: none. Its port must differ from
	// Addr's.
	WSAddr string
	// WSOrigins are the browser origins (scheme://host[:port]) whose pages
	// may open WebSocket connections; "*" admits any. A handshake without
	// an Origin header, a native client's, is always admitted; one with an
	// origin not listed is refused with HTTP 403. Empty: browsers refused.
	WSOrigins []string
	// Secret verifies connection tokens (package token); required.
	Secret []byte
	// Workers bounds the goroutines running requests (default 512: most of
	// a request's time is spent waiting for a group commit). They start as
	// the load needs them.
	Workers int
	// MaxFrame bounds a frame, header included (default wire.DefaultMaxFrame).
	MaxFrame int
	// PreAuthMaxFrame bounds a frame, header included, until AUTH succeeds
	// (default 4 KiB: the largest AUTH, a token of about 1 KiB, with room;
	// never more than MaxFrame).
	PreAuthMaxFrame int
	// MaxUnauthenticated bounds the connections open and not yet
	// authenticated (default 10,000); the server refuses more at once.
	MaxUnauthenticated int
	// MaxUnauthenticatedBytes bounds the bytes of partial frames held for
	// all unauthenticated connections together (default 16 MiB); the
	// connection whose frame would pass it is closed.
	MaxUnauthenticatedBytes int
	// MaxConnsPerAddr bounds the connections from one source IP address, or
	// one IPv6 /64 (default 1,000). Loopback addresses are exempt unless
	// LimitLoopback: local tests, benchmarks and a proxy on the same host
	// come from there.
	MaxConnsPerAddr int
	LimitLoopback   bool
	// MaxPending bounds the requests queued on one connection (default 256).
	MaxPending int
	// MaxOutbound bounds the bytes waiting to be written to one connection
	// before it is closed as a slow reader (default 4 MiB).
	MaxOutbound int
	// Heartbeat is the interval clients are told to keep (default 30 s); a
	// connection silent for three of them is closed.
	Heartbeat time.Duration
	// AuthTimeout bounds the time from connect to AUTH (default 10 s).
	AuthTimeout time.Duration
	// RequestTimeout bounds one request (default 10 s).
	RequestTimeout time.Duration
	// RateLimit and RateBurst shape each connection's frames, whatever
	// their command, with a token bucket (default 100/s, burst 200). A
	// connection refused RateBurst frames beyond what it earned back is
	// closed as a flood.
	RateLimit float64
	RateBurst int
	// UserRateLimit and UserRateBurst shape each user's requests that fan
	// out or read much (userLimited: SEND, SYNC, the group commands, …)
	// across all their connections (default 100/s, burst 200); the bucket
	// outlives the user's connections until it refills.
	UserRateLimit float64
	UserRateBurst int
	// TypingRate and TypingBurst shape each connection's TYPING requests
	// (default wire.DefaultTypingRate/s, burst wire.DefaultTypingBurst);
	// past them TYPING is answered RATE_LIMITED and nothing is pushed.
	TypingRate  float64
	TypingBurst int
	// Multicore runs one event loop per CPU (default true unless SingleLoop).
	SingleLoop bool
	Logger     *slog.Logger
	Now        func() time.Time
	// Registerer gets the gateway's metrics. Nil leaves them unregistered:
	// they are still counted, and nobody reads them.
	Registerer prometheus.Registerer
	// Ownership, when set, limits the gateway to the users whose shard this
	// node serves (route.go); nil serves every user.
	Ownership Ownership
	// Forwarder, when set, runs the conversation commands whose
	// conversation another node serves at that node (forward.go); nil
	// answers them UNAVAILABLE.
	Forwarder Forwarder
	// Peers, when set, carries typing events and presence questions to the
	// nodes serving other users' shards (ephemeral.go); nil with Ownership
	// answers PRESENCE of such users UNAVAILABLE and pushes typing events
	// to this node's devices only.
	Peers Peers
	// Gate, when set, refuses banned users and revoked tokens at AUTH and
	// banned users' SENDs (moderation.go); nil admits every valid token.
	Gate Gate
}

func (c *Config) setDefaults() error {
	if len(c.Secret) == 0 {
		return errors.New("gateway: Config.Secret is empty")
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:7600"
	}
	if c.WSAddr != "" {
		_, port, err := net.SplitHostPort(c.WSAddr)
		if err != nil {
			return fmt.Errorf("gateway: WebSocket address %q: %w", c.WSAddr, err)
		}
		// The listeners are told apart by their ports, found by their
		// addresses as written: both must differ.
		if _, tcpPort, _ := net.SplitHostPort(c.Addr); c.WSAddr == c.Addr || port != "0" && port == tcpPort {
			return fmt.Errorf("gateway: WebSocket address %q: the TCP listener's port", c.WSAddr)
		}
	}
	setDefault(&c.Workers, 512)
	setDefault(&c.MaxFrame, wire.DefaultMaxFrame)
	setDefault(&c.MaxPending, wire.DefaultMaxInFlight)
	setDefault(&c.MaxOutbound, wire.DefaultMaxOutbound)
	setDefault(&c.Heartbeat, wire.DefaultHeartbeat)
	setDefault(&c.AuthTimeout, wire.DefaultAuthTimeout)
	setDefault(&c.RequestTimeout, wire.DefaultRequestTimeout)
	setDefault(&c.RateLimit, wire.DefaultRateLimit)
	setDefault(&c.RateBurst, wire.DefaultRateBurst)
	setDefault(&c.UserRateLimit, wire.DefaultUserRateLimit)
	setDefault(&c.UserRateBurst, wire.DefaultUserRateBurst)
	setDefault(&c.TypingRate, wire.DefaultTypingRate)
	setDefault(&c.TypingBurst, wire.DefaultTypingBurst)
	setDefault(&c.PreAuthMaxFrame, wire.PreAuthMaxFrame)
	c.PreAuthMaxFrame = min(c.PreAuthMaxFrame, c.MaxFrame)
	setDefault(&c.MaxUnauthenticated, 10_000)
	setDefault(&c.MaxUnauthenticatedBytes, 16<<20)
	setDefault(&c.MaxConnsPerAddr, 1000)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

func setDefault[T int | float64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Service is what the gateway needs of the inbox; *inbox.Service has it.
type Service interface {
	SendMessage(ctx context.Context, sender, conv uint64, m inbox.Outgoing) (inbox.SendResult, error)
	Recall(ctx context.Context, actor, conv, convSeq uint64, clientMsgID string) (inbox.SendResult, error)
	Edit(ctx context.Context, actor, conv, convSeq uint64, clientMsgID string, body []byte) (inbox.SendResult, error)
	SendDirect(ctx context.Context, sender, to uint64, clientMsgID string, kind wire.Kind, body []byte) (inbox.SendResult, error)
	Block(ctx context.Context, user, peer uint64, on bool) error
	SetGroupProfile(ctx context.Context, actor, conv uint64, p inbox.Profile) error
	Head(ctx context.Context, user uint64) (uint64, error)
	Sync(ctx context.Context, user, afterSeq uint64, limit int) (inbox.SyncResult, error)
	History(ctx context.Context, user, conv, before uint64, limit int) ([]timeline.Message, error)
	Conversations(ctx context.Context, user uint64, offset, limit int) (inbox.ConversationsPage, error)
	MarkRead(ctx context.Context, user, conv, convSeq uint64) (uint64, error)
	CreateGroup(ctx context.Context, owner uint64, spec inbox.NewGroup) (timeline.Group, error)
	Invite(ctx context.Context, actor, conv uint64, users []uint64) error
	Join(ctx context.Context, user, conv uint64) error
	Leave(ctx context.Context, user, conv uint64) error
	Kick(ctx context.Context, actor, conv, user uint64) error
	Dismiss(ctx context.Context, actor, conv uint64) error
	SetRole(ctx context.Context, actor, conv, user uint64, role wire.Role) error
	MuteMember(ctx context.Context, actor, conv, user uint64, until time.Time) error
	MuteGroup(ctx context.Context, actor, conv uint64, until time.Time) error
	SetDND(ctx context.Context, user, conv uint64, on bool) error
	Group(ctx context.Context, user, conv uint64) (inbox.GroupInfo, error)
	ReadReceipts(ctx context.Context, user uint64, q inbox.ReceiptsQuery) (inbox.Receipts, error)
	// Describe returns a live group and its members whoever asks.
	Describe(ctx context.Context, conv uint64) (inbox.GroupInfo, error)
	// MaxGroupSize is the member limit, told to clients in the AUTH response.
	MaxGroupSize() int
}

// Server is the gateway. Its Notify method is the inbox's Notifier.
type Server struct {
	cfg     Config
	log     *slog.Logger
	svc     Service
	metrics *metrics

	ready   chan *session // sessions with queued requests, each at most once
	started atomic.Int64  // workers started, at most Config.Workers
	// changes is the Ownership's; nil when shards never move (no
	// Ownership, or one node serving all), and then nobody needs byShard.
	changes <-chan struct{}

	mu       sync.RWMutex
	byUser   map[uint64][]*session       // authenticated sessions
	debts    map[uint64]bucket           // buckets of connections closed as floods, by user, until earned back
	byShard  map[int]map[uint64]struct{} // the users of byUser, by shard, while shards can move
	sessions map[*session]struct{}       // every open session, for the idle sweep
	perAddr  map[netip.Addr]int          // open connections by source address (IPv6: /64), loopback aside

	// rates are the users' buckets (takeUser) not yet refilled. Apart from
	// s.mu: every SEND takes one.
	rateMu sync.Mutex
	rates  map[uint64]bucket

	unauthenticated atomic.Int64 // connections open and not yet authenticated
	unauthBytes     atomic.Int64 // bytes of partial frames held for them
	warn            *warnLog

	engine   gnet.Engine
	booted   chan struct{}
	addr     atomic.Pointer[net.TCPAddr]
	wsAddr   atomic.Pointer[net.TCPAddr]
	upgrader ws.Upgrader
	open     [numTransports]atomic.Int64 // connections open, by transport
	stopping atomic.Bool
	stopped  atomic.Bool // the event loops have ended
	stopOnce sync.Once
	stopErr  error
	inflight atomic.Int64 // requests taken and not yet answered
	bufs     sync.Pool    // []byte: sessions' outbound frames, Notify's pushes
	encoded  msgCache     // the messages of the latest group commits, encoded
	// flushTask is flushQueued, bound once rather than at every enqueue.
	flushTask gnet.AsyncCallback
	workers   sync.WaitGroup

	gnet.BuiltinEventEngine
}

// New returns a Server; Serve starts it.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		ready:    make(chan *session, 1<<16),
		byUser:   make(map[uint64][]*session),
		rates:    make(map[uint64]bucket),
		debts:    make(map[uint64]bucket),
		byShard:  make(map[int]map[uint64]struct{}),
		sessions: make(map[*session]struct{}),
		perAddr:  make(map[netip.Addr]int),
		booted:   make(chan struct{}),
		warn:     &warnLog{log: cfg.Logger, now: cfg.Now},
		upgrader: newUpgrader(cfg.WSOrigins),
	}
	if cfg.Ownership != nil {
		s.changes = cfg.Ownership.Changes()
	}
	s.flushTask = s.flushQueued
	s.metrics = newMetrics(s)
	if err := s.metrics.register(cfg.Registerer); err != nil {
		return nil, fmt.Errorf("gateway: register metrics: %w", err)
	}
	return s, nil
}

// Serving reports whether the gateway listens and takes requests: it has
// started and Shutdown has not begun.
func (s *Server) Serving() bool {
	select {
	case <-s.booted:
	default:
		return false
	}
	return s.addr.Load() != nil && !s.stopping.Load() && !s.stopped.Load()
}

// Serve runs the gateway for svc until Shutdown. It returns once the event
// loops have stopped.
func (s *Server) Serve(svc Service) error {
	s.svc = svc
	// The first worker; queued starts the others as the load needs them.
	s.started.Store(1)
	s.workers.Go(s.work)
	stopWatch := make(chan struct{})
	if s.changes != nil {
		s.workers.Go(func() { s.watchOwnership(s.changes, stopWatch) })
	}
	defer func() {
		close(s.ready)
		close(stopWatch)
		s.workers.Wait()
	}()
	addrs := []string{"tcp://" + s.cfg.Addr}
	if s.cfg.WSAddr != "" {
		addrs = append(addrs, "tcp://"+s.cfg.WSAddr)
	}
	err := gnet.Rotate(s, addrs,
		gnet.WithMulticore(!s.cfg.SingleLoop),
		gnet.WithTicker(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithReuseAddr(true),
		gnet.WithLogger(gnetLogger{s.log}),
	)
	s.stopped.Store(true)
	select {
	case <-s.booted:
	default:
		close(s.booted) // unblock Addr: the engine never started
	}
	if err != nil {
		return fmt.Errorf("gateway: serve %s: %w", s.cfg.Addr, err)
	}
	return nil
}

// Addr waits until the server listens and returns its address (useful with
// port 0), or nil if it failed to start.
func (s *Server) Addr() *net.TCPAddr {
	<-s.booted
	return s.addr.Load()
}

// WSAddr waits until the server listens and returns the address of its
// WebSocket listener, or nil if it has none or failed to start.
func (s *Server) WSAddr() *net.TCPAddr {
	<-s.booted
	return s.wsAddr.Load()
}

// OnBoot records the engine and the bound addresses.
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.engine = eng
	if fd, err := eng.DupListener("tcp", s.cfg.Addr); err == nil {
		s.addr.Store(boundAddr(fd))
		unix.Close(fd)
	}
	if s.cfg.WSAddr != "" {
		if fd, err := eng.DupListener("tcp", s.cfg.WSAddr); err == nil {
			s.wsAddr.Store(boundAddr(fd))
			unix.Close(fd)
		}
	}
	close(s.booted)
	s.log.Info("gateway: listening", "addr", s.addr.Load(), "ws", s.wsAddr.Load(), "loops", runtime.GOMAXPROCS(0))
	return gnet.None
}

// boundAddr is the local address of the socket fd; nil if unknown.
func boundAddr(fd int) *net.TCPAddr {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
	}
	return nil
}

// transportOf is the transport of a connection: WebSocket if it came to the
// WebSocket listener's port.
func (s *Server) transportOf(c gnet.Conn) transport {
	wsAddr := s.wsAddr.Load()
	if wsAddr == nil {
		return transportTCP
	}
	if local := boundAddr(c.Fd()); local != nil && local.Port == wsAddr.Port {
		return transportWS
	}
	return transportTCP
}

// Shutdown stops accepting requests, lets the running ones finish and their
// responses go out, then closes every connection and stops the event loops.
// Calls after the first wait for it and return its result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { s.stopErr = s.shutdown(ctx) })
	return s.stopErr
}

func (s *Server) shutdown(ctx context.Context) error {
	s.stopping.Store(true)
	for s.inflight.Load() > 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	s.mu.RLock()
	for sess := range s.sessions {
		sess.fail(closedShutdown, wire.CodeShuttingDown, "server shutting down")
	}
	s.mu.RUnlock()
	<-s.booted
	if s.addr.Load() == nil {
		return nil
	}
	if err := s.engine.Stop(ctx); err != nil {
		return fmt.Errorf("gateway: stop: %w", err)
	}
	return nil
}

// OnOpen creates the connection's session, or refuses the connection at
// once when it is over a cap.
func (s *Server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	t := s.transportOf(c)
	s.metrics.accepted[t].Inc()
	sess := newSession(s, c, t)
	s.mu.Lock()
	why, ok := s.admit(sess)
	if ok {
		s.sessions[sess] = struct{}{}
		s.open[t].Add(1)
	}
	s.mu.Unlock()
	if !ok {
		s.metrics.refused[why].Inc()
		s.metrics.disconnects[t][closedConnLimit].Inc()
		s.warn.warn(warnConnLimit, "gateway: connection refused at a cap", "limit", refusalNames[why], "remote", sess.remote())
		code := wire.CodeUnavailable
		if why == refusedAddress {
			code = wire.CodeRateLimited
		}
		e := errorBody(code, "too many connections")
		e.RetryAfterMs = 1000
		if t == transportWS {
			return refusedHTTP(why), gnet.Close
		}
		frame, _ := wire.AppendFrame(nil, wire.CmdError, 0, 0, e)
		s.metrics.frameOut(t, wire.CmdError)
		return frame, gnet.Close
	}
	c.SetContext(sess)
	return nil, gnet.None
}

// OnClose forgets the session.
func (s *Server) OnClose(c gnet.Conn, _ error) gnet.Action {
	sess, ok := c.Context().(*session)
	if !ok {
		return gnet.None
	}
	sess.closed.Store(true)
	sess.dropOut()
	// A connection the server did not end was ended by its peer; claiming
	// failed here also keeps a later fail from counting it twice.
	if sess.failed.CompareAndSwap(false, true) {
		s.metrics.disconnects[sess.transport()][closedByPeer].Inc()
	}
	sess.release()
	s.mu.Lock()
	delete(s.sessions, sess)
	s.open[sess.transport()].Add(-1)
	s.forget(sess)
	if user := sess.user.Load(); user != 0 {
		s.byUser[user] = deleteSession(s.byUser[user], sess)
		if len(s.byUser[user]) == 0 {
			delete(s.byUser, user)
			s.unindexShard(user)
		}
	}
	s.mu.Unlock()
	return gnet.None
}

func deleteSession(list []*session, sess *session) []*session {
	for i, x := range list {
		if x == sess {
			return append(list[:i:i], list[i+1:]...)
		}
	}
	return list
}

// OnTraffic reads every whole frame now buffered.
func (s *Server) OnTraffic(c gnet.Conn) gnet.Action {
	sess := c.Context().(*session)
	return sess.read(c)
}

// OnTick closes connections that stayed silent too long or never
// authenticated.
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	now := s.cfg.Now()
	idle := now.Add(-wire.IdleHeartbeats * s.cfg.Heartbeat).UnixNano()
	unauth := now.Add(-s.cfg.AuthTimeout).UnixNano()
	s.forgive(now.UnixNano())
	s.mu.RLock()
	for sess := range s.sessions {
		switch last := sess.lastSeen.Load(); {
		case sess.user.Load() == 0 && sess.opened < unauth:
			if sess.fail(closedAuthTimeout, wire.CodeUnauthenticated, "no AUTH within the auth timeout") {
				s.authFailed(authTimeout, sess.remote())
			}
		case last < idle:
			sess.fail(closedIdle, wire.CodeIdle, "no frame within three heartbeats")
		}
	}
	s.mu.RUnlock()
	return time.Second, gnet.None
}

// register makes sess the user's session for its device, replacing an older
// connection of the same device, or returns the error to send the user away
// with (route.go) when this node does not serve the user's shard. Checking
// under s.mu orders the check with dropUnserved: a change of ownership
// either precedes it, or its notification finds the session registered.
func (s *Server) register(sess *session) *wirepb.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	user := sess.user.Load()
	if e := s.notServed(s.shardOf(user)); e != nil {
		return e
	}
	// Under s.mu, as Disconnect looks for the sessions to close: a ban or a
	// revocation set meanwhile either finds this session registered or is
	// seen here.
	if e := s.gated(sess); e != nil {
		return e
	}
	list, online := s.byUser[user]
	if !online {
		s.indexShard(user)
	}
	for _, old := range list {
		if old.device == sess.device {
			list = deleteSession(list, old)
			old.fail(closedReplaced, wire.CodeReplaced, "the device connected again")
			break
		}
	}
	s.byUser[user] = append(list, sess)
	if d, ok := s.debts[user]; ok {
		sess.debt.Store(&d)
	}
	sess.dropUnauthenticated()
	return nil
}

// Notify pushes committed inbox entries to the user's online devices. It is
// the inbox's Notifier: it never blocks.
func (s *Server) Notify(user uint64, entries []inbox.Entry) bool {
	s.mu.RLock()
	list := s.byUser[user]
	if len(list) == 0 {
		s.mu.RUnlock()
		return false
	}
	enc, done := s.encoded.encoder()
	frame, frames := appendPushes(s.getBuf(), entries, s.cfg.MaxFrame, enc)
	done()
	for _, sess := range list {
		if sess.write(frame) {
			s.metrics.framesOut[sess.transport()][wire.CmdPush].Add(float64(frames))
		}
	}
	s.mu.RUnlock()
	s.putBuf(frame) // write copied it
	return true
}

// getBuf returns an empty buffer for frames, from the pool.
func (s *Server) getBuf() []byte {
	if b, ok := s.bufs.Get().([]byte); ok {
		return b
	}
	return nil
}

// putBuf returns b to the pool, unless it grew too large to keep.
func (s *Server) putBuf(b []byte) {
	if cap(b) > 0 && cap(b) <= maxPooledBuf {
		s.bufs.Put(b[:0])
	}
}

// maxPooledBuf is the largest buffer the pool keeps: a larger one, left by
// a burst, goes back to the garbage collector.
const maxPooledBuf = 256 << 10

// work runs the sessions put on ready until it closes.
func (s *Server) work() {
	for sess := range s.ready {
		sess.run()
	}
}

// queued starts a worker for the session just put on ready when none was
// waiting for it, up to Config.Workers. Workers start as the load needs
// them rather than all at once: each one's stack grows with the requests it
// runs (the token's JSON, the store's reads), leaving the smaller stacks it
// outgrew to the heap, and the workers take turns (ready hands a session to
// the longest waiting). 512 started at once held 2.4 MB more of stacks, and
// 9 MB more of freed heap the process kept, once 10,000 connections had
// merely logged in (docs/benchmarks.md). It runs on the event loop.
func (s *Server) queued() {
	// A waiting worker takes the session from the send itself: one left in
	// the buffer found none.
	if len(s.ready) == 0 {
		return
	}
	for {
		n := s.started.Load()
		if n == 0 || n >= int64(s.cfg.Workers) { // 0: not serving
			return
		}
		if s.started.CompareAndSwap(n, n+1) {
			break
		}
	}
	s.workers.Go(s.work)
}
