package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inboxd/inboxd/internal/backoff"
	"github.com/inboxd/inboxd/token"
	"github.com/inboxd/inboxd/wire"
)

// PoolConfig configures a Pool. Zero fields take the defaults.
type PoolConfig struct {
	// Node is this node's id, told to the nodes it dials.
	Node uint32
	// Secret is the cluster's token secret; the handshake's key is derived
	// from it. At least token.MinSecret bytes.
	Secret []byte
	// Timeout bounds a call whose ctx has no deadline (default 5 s).
	Timeout time.Duration
	// DialTimeout bounds a dial and its handshake (default 2 s).
	DialTimeout time.Duration
	// WriteTimeout bounds one write to a connection; a node that stops
	// reading is disconnected (default 10 s).
	WriteTimeout time.Duration
	// PingTimeout bounds the answer to the ping that follows a call's
	// timeout; a connection that does not answer is closed (default 2 s).
	PingTimeout time.Duration
	// MaxInFlight bounds the calls in flight to one node, those waiting
	// for its connection included; past it a call fails at once with
	// ErrQueueFull (default 1024).
	MaxInFlight int
	// MaxFrame bounds the frames accepted, header included
	// (default wire.DefaultMaxFrame).
	MaxFrame int
	// Backoff spaces the dials to a node that cannot be reached
	// (default 50 ms doubling to 2 s).
	Backoff backoff.Policy
	// Logger receives the pool's logs (default slog.Default()).
	Logger *slog.Logger
	// Registerer, if set, receives the pool's metrics.
	Registerer prometheus.Registerer
}

func (c *PoolConfig) setDefaults() error {
	if len(c.Secret) < token.MinSecret {
		return fmt.Errorf("peer: secret of %d bytes, want at least %d", len(c.Secret), token.MinSecret)
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 2 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.PingTimeout <= 0 {
		c.PingTimeout = 2 * time.Second
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 1024
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = wire.DefaultMaxFrame
	}
	if c.MaxFrame < minMaxFrame {
		return fmt.Errorf("peer: max frame %d, want at least %d", c.MaxFrame, minMaxFrame)
	}
	if c.Backoff == (backoff.Policy{}) {
		c.Backoff = backoff.Policy{Min: 50 * time.Millisecond, Max: 2 * time.Second}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Pool calls other nodes: one connection per node address, dialled at the
// first call and again, with backoff, after it fails. It is safe for
// concurrent use.
type Pool struct {
	cfg PoolConfig
	key []byte
	log *slog.Logger
	m   *poolMetrics

	ctx      context.Context // canceled by Close: dials stop
	cancel   context.CancelFunc
	inflight atomic.Int64 // calls in flight to every node
	conns    atomic.Int64 // authenticated connections

	mu     sync.Mutex
	nodes  map[string]*remote
	closed bool
	wg     sync.WaitGroup // dials and the connections' goroutines
}

// remote is the pool's state for one node address.
type remote struct {
	addr     string
	inflight atomic.Int64

	mu       sync.Mutex
	cc       *clientConn   // nil while not connected
	dialing  chan struct{} // closed when the dial in progress ends; nil if none
	failures int           // dials failed in a row
	retryAt  time.Time     // no dial before then, after a failure
	lastErr  error         // why the last dial failed
}

// NewPool returns a Pool; it dials nothing until the first call.
func NewPool(cfg PoolConfig) (*Pool, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	p := &Pool{cfg: cfg, key: peerKey(cfg.Secret), log: cfg.Logger.With("component", "peer"), nodes: make(map[string]*remote)}
	m, err := newPoolMetrics(p, cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("peer: metrics: %w", err)
	}
	p.m = m
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

// Call sends a request to the node at addr and returns its response body.
// cmd must be in [FirstCommand, 0xFFFF]; body is not retained after Call
// returns. A ctx without a deadline gets PoolConfig.Timeout. The package
// doc says what to do with each error; Code maps them to wire codes.
func (p *Pool) Call(ctx context.Context, addr string, cmd wire.Command, body []byte) ([]byte, error) {
	resp, result, err := p.call(ctx, addr, cmd, body)
	p.m.calls.of(cmd).count[result].Inc()
	if err != nil {
		return nil, fmt.Errorf("peer: %v to %s: %w", cmd, addr, err)
	}
	return resp, nil
}

// call is Call, returning the result label of its metrics.
func (p *Pool) call(ctx context.Context, addr string, cmd wire.Command, body []byte) ([]byte, int, error) {
	if cmd < FirstCommand {
		return nil, callInvalid, ErrCommand
	}
	r, err := p.remote(addr)
	if err != nil {
		return nil, callClosed, err
	}
	if r.inflight.Add(1) > int64(p.cfg.MaxInFlight) {
		r.inflight.Add(-1)
		return nil, callQueueFull, fmt.Errorf("%w: %d", ErrQueueFull, p.cfg.MaxInFlight)
	}
	p.inflight.Add(1)
	defer func() {
		r.inflight.Add(-1)
		p.inflight.Add(-1)
	}()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.cfg.Timeout)
		defer cancel()
	}
	start := time.Now()
	resp, err := p.roundTrip(ctx, r, cmd, body)
	result := callResult(err)
	if result != callInvalid {
		p.m.calls.of(cmd).duration.Observe(time.Since(start).Seconds())
	}
	return resp, result, err
}

// callResult is the result label of a call that ended with err.
func callResult(err error) int {
	switch {
	case err == nil:
		return callOK
	case errors.Is(err, ErrClosed):
		return callClosed
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrConnLost):
		return callUnavailable
	case isError(err):
		return callError
	case errors.Is(err, context.DeadlineExceeded):
		return callTimeout
	case errors.Is(err, context.Canceled):
		return callCanceled
	}
	return callInvalid
}

func (p *Pool) roundTrip(ctx context.Context, r *remote, cmd wire.Command, body []byte) ([]byte, error) {
	cc, err := p.connect(ctx, r)
	if err != nil {
		return nil, err
	}
	ch := make(chan result, 1)
	id, err := cc.start(ch, cmd, body)
	if err != nil {
		return nil, err
	}
	select {
	case res := <-ch:
		return res.body, res.err
	case <-ctx.Done():
		cc.forget(id)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			p.probe(cc)
		}
		return nil, ctx.Err()
	}
}

// probe pings cc after a call on it timed out, and closes it if the ping is
// not answered within PingTimeout. A node that vanished without closing its
// connections (a machine lost, a network cut) is then noticed in seconds:
// the calls in flight on it fail with ErrConnLost and the next call dials
// again, instead of every call timing out until TCP gives up. A node that is
// merely slow answers the ping at once: the listener's reader answers it,
// not a worker.
func (p *Pool) probe(cc *clientConn) {
	if !cc.probing.CompareAndSwap(false, true) {
		return
	}
	ch := make(chan result, 1)
	id, err := cc.start(ch, CmdPing, nil)
	if err != nil {
		cc.probing.Store(false)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return // Close has failed cc, or is about to
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer cc.probing.Store(false)
		t := time.NewTimer(p.cfg.PingTimeout)
		defer t.Stop()
		select {
		case <-ch:
		case <-cc.done:
		case <-t.C:
			cc.forget(id)
			cc.fail(fmt.Errorf("node %d did not answer a ping within %v after a call timed out", cc.node, p.cfg.PingTimeout))
		}
	}()
}

// remote returns the state of addr, creating it at its first use.
func (p *Pool) remote(addr string) (*remote, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	r := p.nodes[addr]
	if r == nil {
		r = &remote{addr: addr}
		p.nodes[addr] = r
	}
	return r, nil
}

// connect returns r's connection, dialling it if there is none. While the
// pool waits out its backoff after a failed dial, it fails at once with
// ErrUnavailable.
func (p *Pool) connect(ctx context.Context, r *remote) (*clientConn, error) {
	for {
		r.mu.Lock()
		if r.cc != nil && r.cc.closedErr() != nil {
			r.cc = nil // dead, and its reader has not yet said so: dial again
		}
		if r.cc != nil {
			cc := r.cc
			r.mu.Unlock()
			return cc, nil
		}
		if p.ctx.Err() != nil {
			r.mu.Unlock()
			return nil, ErrClosed
		}
		if r.dialing == nil {
			if r.failures > 0 && time.Now().Before(r.retryAt) {
				err := r.lastErr
				r.mu.Unlock()
				return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
			r.dialing = make(chan struct{})
			p.wg.Add(1)
			go p.dial(r, r.dialing)
		}
		dialing := r.dialing
		r.mu.Unlock()
		select {
		case <-dialing:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// dial connects to r, authenticates, and installs the connection.
func (p *Pool) dial(r *remote, done chan struct{}) {
	defer p.wg.Done()
	cc, err := p.open(r)
	r.mu.Lock()
	defer r.mu.Unlock()
	defer close(done)
	r.dialing = nil
	if err != nil {
		p.m.dials[1].Inc()
		r.failures++
		r.retryAt = time.Now().Add(p.cfg.Backoff.Delay(r.failures - 1))
		r.lastErr = err
		p.log.Warn("peer: dial failed", "addr", r.addr, "failures", r.failures, "err", err)
		return
	}
	if p.ctx.Err() != nil {
		// Close has taken its list of connections: this one is not on it.
		cc.nc.Close()
		return
	}
	p.m.dials[0].Inc()
	r.failures, r.lastErr, r.cc = 0, nil, cc
	p.conns.Add(1)
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		cc.writeLoop()
	}()
	go func() {
		defer p.wg.Done()
		err := cc.readLoop()
		r.mu.Lock()
		if r.cc == cc {
			r.cc = nil
		}
		r.mu.Unlock()
		p.conns.Add(-1)
		if !errors.Is(err, ErrClosed) {
			p.log.Warn("peer: connection lost", "addr", r.addr, "node", cc.node, "err", err)
		}
	}()
	p.log.Info("peer: connected", "addr", r.addr, "node", cc.node)
}

// open dials r's address and runs the handshake, within DialTimeout and
// until Close.
func (p *Pool) open(r *remote) (*clientConn, error) {
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", r.addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	br := bufio.NewReaderSize(nc, p.cfg.MaxFrame)
	sess, err := dial(br, nc, p.key, p.cfg.Node, p.cfg.MaxFrame)
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("handshake with %s: %w", r.addr, err)
	}
	return &clientConn{
		conn:    newConn(nc, br, p.cfg.MaxFrame, sess.maxFrame, p.cfg.WriteTimeout),
		node:    sess.node,
		pending: make(map[uint32]chan<- result),
	}, nil
}

// Close fails every call in flight with ErrClosed (wrapped in ErrConnLost
// when it was sent), closes the connections and waits for the pool's
// goroutines. Calls after Close fail with ErrClosed.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	nodes := p.nodes
	p.nodes = nil
	p.mu.Unlock()
	p.cancel()
	for _, r := range nodes {
		r.mu.Lock()
		if r.cc != nil {
			r.cc.fail(ErrClosed)
		}
		r.mu.Unlock()
	}
	p.wg.Wait()
	return nil
}

// result is the answer to a call.
type result struct {
	body []byte
	err  error
}

// clientConn is a connection the pool dialled: requests out, responses
// matched to their calls by request id.
type clientConn struct {
	*conn
	node uint32

	pmu     sync.Mutex
	pending map[uint32]chan<- result
	nextID  uint32
	dead    error // set by fail: no call is added after it

	probing atomic.Bool // a ping is in flight
}

// start registers a call and queues its request; it returns the request id.
func (cc *clientConn) start(ch chan<- result, cmd wire.Command, body []byte) (uint32, error) {
	cc.pmu.Lock()
	if cc.dead != nil {
		cc.pmu.Unlock()
		return 0, fmt.Errorf("%w: %w", ErrConnLost, cc.dead)
	}
	for {
		cc.nextID++
		if _, taken := cc.pending[cc.nextID]; cc.nextID != 0 && !taken {
			break
		}
	}
	id := cc.nextID
	cc.pending[id] = ch
	cc.pmu.Unlock()
	if err := cc.send(cmd, 0, id, body); err != nil {
		cc.forget(id)
		if errors.Is(err, ErrTooLarge) {
			return 0, err
		}
		return 0, fmt.Errorf("%w: %w", ErrConnLost, err)
	}
	return id, nil
}

// forget drops a call that gave up; a late response to it is ignored.
func (cc *clientConn) forget(id uint32) {
	cc.pmu.Lock()
	delete(cc.pending, id)
	cc.pmu.Unlock()
}

// take removes and returns the call waiting for id.
func (cc *clientConn) take(id uint32) chan<- result {
	cc.pmu.Lock()
	defer cc.pmu.Unlock()
	ch := cc.pending[id]
	delete(cc.pending, id)
	return ch
}

// fail closes the connection and fails every call in flight on it with
// ErrConnLost wrapping cause.
func (cc *clientConn) fail(cause error) {
	cc.close(cause)
	cc.pmu.Lock()
	defer cc.pmu.Unlock()
	if cc.dead != nil {
		return
	}
	cc.dead = cause
	err := fmt.Errorf("%w: %w", ErrConnLost, cause)
	for id, ch := range cc.pending {
		ch <- result{err: err}
		delete(cc.pending, id)
	}
}

// readLoop delivers responses to their calls until the connection fails;
// it returns why.
func (cc *clientConn) readLoop() error {
	for {
		f, err := cc.readFrameOrFail()
		if err != nil {
			return err
		}
		if f.Flags&wire.FlagResponse == 0 {
			err := fmt.Errorf("%w: a %v frame with flags %#x from the listening node", ErrProtocol, f.Command, f.Flags)
			if f.Command == wire.CmdError && f.Flags == 0 {
				err = fmt.Errorf("closed by node %d: %w", cc.node, decodeError(f.Body))
			}
			cc.fail(err)
			return err
		}
		ch := cc.take(f.RequestID)
		if ch == nil {
			continue // the call gave up
		}
		if f.Flags&wire.FlagError != 0 {
			ch <- result{err: decodeError(f.Body)}
		} else {
			ch <- result{body: f.Body}
		}
	}
}

// readFrameOrFail reads a frame; a failure fails the connection.
func (cc *clientConn) readFrameOrFail() (wire.Frame, error) {
	f, err := readFrame(cc.r, cc.maxIn)
	if err == nil {
		return f, nil
	}
	if closed := cc.closedErr(); closed != nil {
		err = closed // closed on purpose: say why, not "use of closed connection"
	} else if _, err = failure(err); errors.Is(err, ErrProtocol) {
		err = fmt.Errorf("node %d: %w", cc.node, err)
	}
	cc.fail(err)
	return wire.Frame{}, err
}
