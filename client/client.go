package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/inboxd/inboxd/internal/backoff"
	"github.com/inboxd/inboxd/internal/wsconn"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// DefaultAddr is the gateway's default listen address.
const DefaultAddr = "127.0.0.1:7600"

// Config configures a Client. Zero values take the defaults named.
type Config struct {
	// Addr is the gateway's host:port (default DefaultAddr), when Addrs is
	// empty; or the URL of its WebSocket listener, ws://host:port/ws (or
	// wss:// through a TLS terminator): the same protocol over WebSocket
	// (docs/protocol.md, "WebSocket").
	Addr string
	// Addrs are the host:port of several nodes of one inboxd cluster. The
	// client tries them in a random order, moving on to the next when one
	// cannot be reached, and follows the REDIRECT of a node that does not
	// serve the user (docs/protocol.md, "Redirects").
	Addrs []string
	// MaxRedirects bounds the redirects followed in a row without an AUTH
	// that succeeds (default 5); past it, the client backs off and starts
	// again from Addrs.
	MaxRedirects int
	// Token authenticates the connection (see docs/protocol.md, "Tokens").
	Token string
	// TokenSource, when set, is called for a token before every connection
	// instead of using Token; a client with one reconnects after
	// UNAUTHENTICATED, TOKEN_EXPIRED and REVOKED instead of stopping.
	TokenSource func(ctx context.Context) (string, error)

	// LastSeq is the last inbox seq the application has applied; the client
	// delivers entries after it. Persist Entry.Seq as entries are delivered
	// and pass it here when the application starts again.
	LastSeq uint64
	// FromHead starts at the head seq of the first connection when it is
	// beyond LastSeq: a new device that reads its backlog per conversation
	// (Conversations, History) rather than entry by entry.
	FromHead bool
	// OnEntry receives every inbox entry after LastSeq exactly once, in seq
	// order, on one goroutine. The entry is the callee's to keep. It may
	// call the Client's methods but not Close; while it runs no other entry
	// is delivered.
	OnEntry func(*wirepb.Entry)
	// SyncLimit is the page size of SYNC requests (0: the server's default).
	SyncLimit uint32

	// MinBackoff and MaxBackoff bound the wait between reconnections and
	// between retries of a request (defaults 200 ms and 30 s). The wait
	// doubles per failure, with jitter, up to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// MaxAttempts bounds the attempts of a request that is retried (see
	// Send) (default 10); its context bounds their time.
	MaxAttempts int
	// DialTimeout bounds connecting to one address, and authenticating
	// there (default 10 s).
	DialTimeout time.Duration
	// WriteTimeout bounds writing one frame (default 10 s).
	WriteTimeout time.Duration
	// MaxReadFrame is the largest frame accepted from the server (default
	// 64 MiB: a SYNC page of 1000 entries with 64 KiB bodies).
	MaxReadFrame int
	// Dial opens the transport (default: TCP with net.Dialer, or WebSocket
	// for a ws:// or wss:// address); set it for TLS or a proxy.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Logger receives connection events (default: none).
	Logger *slog.Logger

	// pushBacklog overrides maxPushBacklog in tests.
	pushBacklog int
	// keepOrder tries Addrs in their order, for tests.
	keepOrder bool
}

func (c *Config) setDefaults() error {
	if c.Token == "" && c.TokenSource == nil {
		return errors.New("client: Config has neither Token nor TokenSource")
	}
	if len(c.Addrs) == 0 {
		c.Addrs = []string{cmp.Or(c.Addr, DefaultAddr)}
	}
	setDefault(&c.MaxRedirects, 5)
	setDefault(&c.MinBackoff, 200*time.Millisecond)
	setDefault(&c.MaxBackoff, 30*time.Second)
	c.MaxBackoff = max(c.MaxBackoff, c.MinBackoff)
	setDefault(&c.MaxAttempts, 10)
	setDefault(&c.DialTimeout, 10*time.Second)
	setDefault(&c.WriteTimeout, 10*time.Second)
	setDefault(&c.MaxReadFrame, 64<<20)
	setDefault(&c.pushBacklog, maxPushBacklog)
	if c.Dial == nil {
		var d net.Dialer
		c.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			if wsconn.IsURL(addr) {
				return wsconn.Dial(ctx, addr, wsconn.Options{})
			}
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Session is what the server said when the current connection
// authenticated.
type Session struct {
	Addr       string // the node's address
	User       uint64
	Device     string
	HeadSeq    uint64 // the user's newest inbox seq at that moment
	Heartbeat  time.Duration
	ServerTime time.Time
	MaxFrame   int
}

// Client is a connection to an inboxd gateway that stays up: it
// reconnects with backoff when the connection drops, and its sync loop
// delivers the user's inbox entries to Config.OnEntry exactly once and in
// seq order across pushes, gaps and reconnections. Its methods are safe for
// concurrent use; a request made while the client reconnects waits for the
// new connection (bounded by its context).
type Client struct {
	cfg   Config
	log   *slog.Logger
	addrs *addrList // the connecting goroutine's: Dial's, then run's

	// life ends with Close; it bounds the background goroutine's I/O.
	life    context.Context
	cancel  context.CancelFunc
	stopped chan struct{} // closed when the background goroutine is gone

	last atomic.Uint64 // the last seq delivered to OnEntry

	mu      sync.Mutex
	cur     *conn         // nil while reconnecting
	ready   chan struct{} // closed when cur is set
	synced  chan struct{} // closed when cur has caught up
	caught  bool          // synced is closed
	session Session
	err     error // why the client stopped
}

// Dial connects and authenticates, then returns a Client that keeps the
// connection up and starts syncing in the background. It fails if this
// first connection fails; later failures are retried.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	c := &Client{
		cfg:     cfg,
		log:     cfg.Logger,
		addrs:   newAddrList(cfg.Addrs, !cfg.keepOrder),
		stopped: make(chan struct{}),
		ready:   make(chan struct{}),
		synced:  make(chan struct{}),
	}
	c.last.Store(cfg.LastSeq)
	cn, ar, err := c.connect(ctx, "")
	if err != nil {
		return nil, err
	}
	if cfg.FromHead && ar.GetHeadSeq() > cfg.LastSeq {
		c.last.Store(ar.GetHeadSeq())
	}
	if err := c.checkHead(ar); err != nil {
		cn.close(err)
		cn.wait()
		return nil, err
	}
	c.life, c.cancel = context.WithCancel(context.Background())
	c.publish(cn, ar)
	go c.run(cn)
	return c, nil
}

// Close stops the client: it closes the connection, fails the requests in
// flight with ErrClosed, and waits for the client's goroutines, OnEntry
// included, to return.
func (c *Client) Close() error {
	c.cancel()
	<-c.stopped
	return nil
}

// Done is closed when the client has stopped: after Close, or after an
// error that reconnecting cannot cure (see Err).
func (c *Client) Done() <-chan struct{} { return c.stopped }

// Err returns why the client stopped: ErrClosed after Close, or an error
// matching ErrReplaced (the same device connected elsewhere), ErrBanned,
// ErrUnauthenticated, ErrTokenExpired or ErrRevoked (without a
// TokenSource), ErrVersion or ErrSeqAhead. It returns nil while the client runs.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// LastSeq returns the seq of the last entry delivered to OnEntry (or the
// starting point, when none has been).
func (c *Client) LastSeq() uint64 { return c.last.Load() }

// Session returns what the server said when the latest connection
// authenticated.
func (c *Client) Session() Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session
}

// WaitSynced waits until the entries up to the head seq of the current
// connection's authentication have been delivered to OnEntry.
func (c *Client) WaitSynced(ctx context.Context) error {
	c.mu.Lock()
	ch := c.synced
	c.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.stopped:
		return c.Err()
	}
}

// connect dials and authenticates one connection: to redirect, the node a
// REDIRECT named, if not empty, else to the first of Config.Addrs that
// answers. It follows the REDIRECT answers to AUTH, at most MaxRedirects
// in a row (the one that named redirect included).
func (c *Client) connect(ctx context.Context, redirect string) (*conn, *wirepb.AuthResponse, error) {
	tok := c.cfg.Token
	if c.cfg.TokenSource != nil {
		var err error
		if tok, err = c.cfg.TokenSource(ctx); err != nil {
			return nil, nil, fmt.Errorf("client: token: %w", err)
		}
	}
	addr, hops := redirect, 0
	if redirect != "" {
		hops = 1
	}
	for {
		cn, ar, dialled, err := c.authenticate(ctx, addr, tok)
		if err == nil {
			return cn, ar, nil
		}
		var e *Error
		if !errors.As(err, &e) || e.Code != wire.CodeRedirect || e.Redirect == "" {
			return nil, nil, err
		}
		if hops >= c.cfg.MaxRedirects {
			return nil, nil, fmt.Errorf("%w: %d in a row, the last from %s to %s", ErrTooManyRedirects, hops+1, dialled, e.Redirect)
		}
		hops++
		c.log.Info("inboxd redirected", "from", dialled, "to", e.Redirect)
		addr = e.Redirect
	}
}

// authenticate dials addr (empty: the first of Config.Addrs that answers)
// and sends AUTH. It returns the address dialled, also when AUTH fails.
func (c *Client) authenticate(ctx context.Context, addr, tok string) (*conn, *wirepb.AuthResponse, string, error) {
	var nc net.Conn
	var err error
	if addr == "" {
		nc, addr, err = c.addrs.dial(ctx, c.cfg.DialTimeout, c.cfg.Dial)
	} else {
		dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
		nc, err = c.cfg.Dial(dctx, addr)
		cancel()
		if err != nil {
			err = fmt.Errorf("client: connect to %s: %w", addr, err)
		}
	}
	if err != nil {
		return nil, nil, addr, err
	}
	cn := newConn(nc, addr, &c.cfg, c.unpublish)
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	ar := new(wirepb.AuthResponse)
	if err := cn.roundTrip(ctx, wire.CmdAuth, &wirepb.AuthRequest{Token: tok}, ar); err != nil {
		cn.close(err)
		cn.wait()
		return nil, nil, addr, fmt.Errorf("client: authenticate to %s: %w", addr, err)
	}
	cn.authenticated(ar)
	return cn, ar, addr, nil
}

func (c *Client) checkHead(ar *wirepb.AuthResponse) error {
	if last := c.last.Load(); ar.GetHeadSeq() < last {
		return fmt.Errorf("%w: last seq %d, head seq %d", ErrSeqAhead, last, ar.GetHeadSeq())
	}
	return nil
}

// publish makes cn the connection requests use.
func (c *Client) publish(cn *conn, ar *wirepb.AuthResponse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur = cn
	close(c.ready)
	c.session = Session{
		Addr:       cn.addr,
		User:       ar.GetUserId(),
		Device:     ar.GetDeviceId(),
		HeadSeq:    ar.GetHeadSeq(),
		Heartbeat:  time.Duration(ar.GetHeartbeatMs()) * time.Millisecond,
		ServerTime: time.UnixMilli(ar.GetServerTimeMs()),
		MaxFrame:   int(ar.GetMaxFrame()),
	}
}

// unpublish runs when cn closes: requests wait for the next connection
// instead of failing on the dead one.
func (c *Client) unpublish(cn *conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == cn {
		c.cur = nil
		c.ready = make(chan struct{})
		// A WaitSynced still waiting keeps waiting, for the next connection.
		if c.caught {
			c.synced = make(chan struct{})
			c.caught = false
		}
	}
}

// stop records why the client stops.
func (c *Client) stop(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

// run is the client's background goroutine: it serves a connection until
// it ends, then reconnects, until Close or a permanent error.
func (c *Client) run(cn *conn) {
	defer close(c.stopped)
	attempt := 0
	for {
		up := time.Now()
		err := c.serve(cn)
		cn.close(err)
		cn.wait()
		if c.life.Err() != nil {
			c.stop(ErrClosed)
			return
		}
		if cause := cn.cause(); cause != nil {
			err = cause // the server's ERROR beats what we saw after it
		}
		if permanent(err, c.cfg.TokenSource != nil) {
			c.log.Error("inboxd client stopped", "err", err)
			c.stop(err)
			return
		}
		// A connection that stayed up a while starts the backoff anew.
		if time.Since(up) > c.cfg.MaxBackoff {
			attempt = 0
		}
		c.log.Warn("inboxd connection lost", "err", err)
		if cn = c.reconnect(&attempt, err); cn == nil {
			return
		}
	}
}

// reconnect connects again, until it succeeds (returning the connection,
// published), the client closes, or a permanent error stops it (returning
// nil). A connection the server closed with REDIRECT is followed at once;
// every other attempt waits for a backoff first.
func (c *Client) reconnect(attempt *int, cause error) *conn {
	for {
		var e *Error
		redirect := ""
		if errors.As(cause, &e) && e.Code == wire.CodeRedirect {
			redirect = e.Redirect
		}
		if redirect == "" {
			d := c.backoff(*attempt)
			if e != nil && e.RetryAfter > d {
				d = e.RetryAfter
			}
			*attempt++
			if !backoff.Sleep(c.life, d) {
				c.stop(ErrClosed)
				return nil
			}
		}
		cn, ar, err := c.connect(c.life, redirect)
		if err == nil {
			err = c.checkHead(ar)
			if err == nil {
				c.publish(cn, ar)
				c.log.Info("inboxd connected", "addr", cn.addr, "head_seq", ar.GetHeadSeq(), "last_seq", c.last.Load())
				return cn
			}
			cn.close(err)
			cn.wait()
		}
		if c.life.Err() != nil {
			c.stop(ErrClosed)
			return nil
		}
		if permanent(err, c.cfg.TokenSource != nil) {
			c.log.Error("inboxd client stopped", "err", err)
			c.stop(err)
			return nil
		}
		c.log.Warn("inboxd reconnect failed", "err", err, "attempt", *attempt)
		cause = err
	}
}

// backoff returns the wait before retry number n (0-based): MinBackoff
// doubled n times, capped at MaxBackoff, jittered down by up to half so that
// clients cut off together do not return together.
func (c *Client) backoff(n int) time.Duration {
	return backoff.Policy{Min: c.cfg.MinBackoff, Max: c.cfg.MaxBackoff}.Delay(n)
}

// conn returns the live connection, waiting for one while the client
// reconnects.
func (c *Client) conn(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		cn, ready, err := c.cur, c.ready, c.err
		c.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if cn != nil {
			return cn, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.stopped:
			return nil, c.Err()
		}
	}
}

// Do sends a request and decodes the response into resp; an error
// response returns an *Error. It does not retry: a request that fails with
// ErrConnLost may or may not have been applied. Do is the way to commands
// that have no method of their own.
func (c *Client) Do(ctx context.Context, cmd wire.Command, req, resp proto.Message) error {
	cn, err := c.conn(ctx)
	if err != nil {
		return err
	}
	return cn.roundTrip(ctx, cmd, req, resp)
}

// doRetry is Do for requests that are safe to repeat: it retries on
// retryable codes and on lost connections, after a backoff (or the
// server's retry_after), up to Config.MaxAttempts attempts.
func (c *Client) doRetry(ctx context.Context, cmd wire.Command, req, resp proto.Message) error {
	for attempt := 0; ; attempt++ {
		err := c.Do(ctx, cmd, req, resp)
		if err == nil || !retryable(err) || attempt+1 >= c.cfg.MaxAttempts {
			return err
		}
		d := c.backoff(attempt)
		var e *Error
		if errors.As(err, &e) && e.RetryAfter > d {
			d = e.RetryAfter
		}
		if errors.Is(err, ErrConnLost) {
			d = 0 // the next Do waits for the reconnection, which backs off itself
		}
		c.log.Debug("inboxd retry", "cmd", cmd, "attempt", attempt+1, "err", err)
		if !backoff.Sleep(ctx, d) {
			return fmt.Errorf("client: %v: %w (last attempt: %w)", cmd, ctx.Err(), err)
		}
	}
}
