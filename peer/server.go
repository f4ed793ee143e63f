package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inboxd/inboxd/token"
	"github.com/inboxd/inboxd/wire"
)

// Handler serves the requests of other nodes.
type Handler interface {
	// Serve runs one request: cmd is in [FirstCommand, 0xFFFF], from is the
	// node id (cluster.NodeInfo.ID) the calling node authenticated as, body is the request's body,
	// Serve's to keep. The server copies the returned body into the
	// connection's write buffer, so Serve may return a buffer it reuses
	// once Serve has returned. An error is
	// answered with its code if it is an *Error, TIMEOUT if ctx's deadline
	// (Config.RequestTimeout) passed, SHUTTING_DOWN if the server is
	// closing, and INTERNAL otherwise. Serve is called concurrently, from
	// up to ServerConfig.Workers goroutines.
	Serve(ctx context.Context, from uint32, cmd wire.Command, body []byte) ([]byte, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, from uint32, cmd wire.Command, body []byte) ([]byte, error)

// Serve calls f.
func (f HandlerFunc) Serve(ctx context.Context, from uint32, cmd wire.Command, body []byte) ([]byte, error) {
	return f(ctx, from, cmd, body)
}

// ServerConfig configures a Server. Zero fields take the defaults.
type ServerConfig struct {
	// Addr is the TCP address to listen on (the node's peer address).
	Addr string
	// Node is this node's id, told to the nodes that dial it.
	Node uint32
	// Secret is the cluster's token secret; the handshake's key is derived
	// from it. At least token.MinSecret bytes.
	Secret []byte
	// Workers bounds the handlers running at once (default 4×GOMAXPROCS).
	Workers int
	// QueueSize bounds the requests waiting for a worker; past it a request
	// is answered UNAVAILABLE at once (default 1024).
	QueueSize int
	// RequestTimeout bounds one handler (default wire.DefaultRequestTimeout).
	RequestTimeout time.Duration
	// HandshakeTimeout bounds the handshake (default 5 s).
	HandshakeTimeout time.Duration
	// WriteTimeout bounds one write to a connection; a node that stops
	// reading is disconnected (default 10 s).
	WriteTimeout time.Duration
	// MaxFrame bounds the frames accepted, header included
	// (default wire.DefaultMaxFrame).
	MaxFrame int
	// Logger receives the server's logs (default slog.Default()).
	Logger *slog.Logger
	// Registerer, if set, receives the server's metrics.
	Registerer prometheus.Registerer
}

func (c *ServerConfig) setDefaults() error {
	if len(c.Secret) < token.MinSecret {
		return fmt.Errorf("peer: secret of %d bytes, want at least %d", len(c.Secret), token.MinSecret)
	}
	if c.Workers <= 0 {
		c.Workers = 4 * runtime.GOMAXPROCS(0)
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 1024
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = wire.DefaultRequestTimeout
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 5 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = wire.DefaultMaxFrame
	}
	if c.MaxFrame < minMaxFrame {
		return fmt.Errorf("peer: max frame %d, want at least %d", c.MaxFrame, minMaxFrame)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Server accepts connections from other nodes and serves their requests.
type Server struct {
	cfg ServerConfig
	key []byte
	h   Handler
	ln  net.Listener
	log *slog.Logger
	m   *serverMetrics

	ctx    context.Context // canceled by Close: handlers stop
	cancel context.CancelFunc
	jobs   chan job
	conns  atomic.Int64 // authenticated connections

	mu     sync.Mutex
	open   map[*conn]struct{} // every accepted connection, authenticated or not
	closed bool

	readers sync.WaitGroup // the accept loop and the connections' goroutines
	workers sync.WaitGroup
}

// job is a request waiting for a worker.
type job struct {
	c       *conn
	from    uint32
	cmd     wire.Command
	id      uint32
	body    []byte
	arrived time.Time
}

// Listen starts a Server on cfg.Addr serving h.
func Listen(cfg ServerConfig, h Handler) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, key: peerKey(cfg.Secret), h: h, log: cfg.Logger.With("component", "peer"),
		jobs: make(chan job, cfg.QueueSize), open: make(map[*conn]struct{}),
	}
	m, err := newServerMetrics(s, cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("peer: metrics: %w", err)
	}
	s.m = m
	if s.ln, err = net.Listen("tcp", cfg.Addr); err != nil {
		return nil, fmt.Errorf("peer: listen: %w", err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for range cfg.Workers {
		s.workers.Add(1)
		go s.work()
	}
	s.readers.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server: it stops accepting, closes every connection (the
// callers' requests in flight fail with a retryable error), cancels the
// handlers' contexts and waits for them to return.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for c := range s.open {
		c.close(ErrClosed)
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.cancel()
	s.readers.Wait()
	close(s.jobs)
	s.workers.Wait()
	return err
}

func (s *Server) accept() {
	defer s.readers.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Error("peer: accept", "err", err)
			}
			return
		}
		r := bufio.NewReaderSize(nc, s.cfg.MaxFrame)
		c := newConn(nc, r, s.cfg.MaxFrame, 0, s.cfg.WriteTimeout)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.open[c] = struct{}{}
		s.mu.Unlock()
		s.readers.Add(1)
		go s.serve(c)
	}
}

// serve runs a connection: the handshake, then its requests until it
// closes.
func (s *Server) serve(c *conn) {
	defer s.readers.Done()
	defer func() {
		s.mu.Lock()
		delete(s.open, c)
		s.mu.Unlock()
	}()
	remote := c.nc.RemoteAddr().String()
	c.nc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	sess, err := listen(c.r, c.nc, s.key, s.cfg.Node, s.cfg.MaxFrame)
	if err != nil {
		reason := handshakeIO
		switch {
		case errors.Is(err, ErrAuth):
			reason = handshakeBadProof
		case errors.Is(err, ErrProtocol), errors.Is(err, wire.ErrFrameTooLarge), errors.Is(err, wire.ErrVersion):
			reason = handshakeProtocol
		}
		s.m.handshake[reason].Inc()
		s.log.Warn("peer: handshake refused", "remote", remote, "reason", reason, "err", err)
		c.close(fmt.Errorf("handshake: %w", err))
		return
	}
	c.nc.SetDeadline(time.Time{})
	c.maxOut = sess.maxFrame
	s.conns.Add(1)
	defer s.conns.Add(-1)
	log := s.log.With("remote", remote, "node", sess.node)
	log.Info("peer: node connected")
	s.readers.Add(1)
	go func() {
		defer s.readers.Done()
		c.writeLoop()
	}()
	for {
		f, err := readFrame(c.r, s.cfg.MaxFrame)
		if err != nil {
			code, err := failure(err)
			if code != 0 {
				log.Warn("peer: closing a connection that broke the protocol", "err", err)
				c.closeWith(code, err)
			} else if c.close(err) {
				log.Info("peer: node disconnected", "err", err)
			}
			return
		}
		if f.Flags != 0 {
			err := fmt.Errorf("%w: a frame with flags %#x from the dialling node", ErrProtocol, f.Flags)
			log.Warn("peer: closing a connection that broke the protocol", "err", err)
			c.closeWith(wire.CodeBadRequest, err)
			return
		}
		if f.Command == CmdPing {
			c.send(CmdPing, wire.FlagResponse, f.RequestID, nil)
			continue
		}
		if f.Command < FirstCommand {
			s.m.requests.of(f.Command).count[servedUnknown].Inc()
			c.send(f.Command, wire.FlagResponse|wire.FlagError, f.RequestID, errorBody(wire.CodeUnknownCommand, "not a handler's command"))
			continue
		}
		select {
		case s.jobs <- job{c: c, from: sess.node, cmd: f.Command, id: f.RequestID, body: f.Body, arrived: time.Now()}:
		default:
			s.m.requests.of(f.Command).count[servedBusy].Inc()
			c.send(f.Command, wire.FlagResponse|wire.FlagError, f.RequestID, errorBody(wire.CodeUnavailable, "node busy"))
		}
	}
}

func (s *Server) work() {
	defer s.workers.Done()
	for j := range s.jobs {
		s.run(j)
	}
}

// run serves one request and queues its answer.
func (s *Server) run(j job) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
	body, err := s.h.Serve(ctx, j.from, j.cmd, j.body)
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	cancel()
	if err == nil && wire.HeaderSize+len(body) > j.c.maxOut {
		err = fmt.Errorf("%w: a response of %d bytes", ErrTooLarge, len(body))
	}
	result, flags := servedOK, wire.FlagResponse
	if err != nil {
		code, msg := s.code(err, timedOut)
		result, flags, body = servedError, flags|wire.FlagError, errorBody(code, msg)
	}
	// Counted before the answer is queued, so that a caller that has its
	// answer finds it counted.
	series := s.m.requests.of(j.cmd)
	series.count[result].Inc()
	series.duration.Observe(time.Since(j.arrived).Seconds())
	j.c.send(j.cmd, flags, j.id, body) // fails only if the connection closed: nobody to answer
}

// code is the code and message a handler's error is answered with.
func (s *Server) code(err error, timedOut bool) (wire.Code, string) {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Code, e.Message
	case timedOut:
		return wire.CodeTimeout, "the request timed out"
	case s.ctx.Err() != nil:
		return wire.CodeShuttingDown, "the node is stopping"
	}
	s.log.Error("peer: handler failed", "err", err)
	return wire.CodeInternal, err.Error()
}
