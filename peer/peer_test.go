package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/inboxd/inboxd/internal/backoff"
	"github.com/inboxd/inboxd/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	secret = []byte("the cluster's secret, 32 bytes!!")
	quiet  = slog.New(slog.DiscardHandler)
)

const cmdEcho = FirstCommand + 1

// echo answers every request with its body, prefixed by the caller's id.
var echo = HandlerFunc(func(_ context.Context, from uint32, _ wire.Command, body []byte) ([]byte, error) {
	return append([]byte(fmt.Sprintf("%d:", from)), body...), nil
})

func startServer(t testing.TB, h Handler, mod func(*ServerConfig)) *Server {
	t.Helper()
	cfg := ServerConfig{Addr: "127.0.0.1:0", Node: 2, Secret: secret, Logger: quiet}
	if mod != nil {
		mod(&cfg)
	}
	s, err := Listen(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newPool(t testing.TB, mod func(*PoolConfig)) *Pool {
	t.Helper()
	cfg := PoolConfig{Node: 1, Secret: secret, Logger: quiet}
	if mod != nil {
		mod(&cfg)
	}
	p, err := NewPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// gate is a handler that blocks every request until released (or its
// context ends), and tells who entered.
type gate struct {
	entered chan []byte
	release chan struct{}
	served  atomic.Int64
}

func newGate() *gate { return &gate{entered: make(chan []byte, 1024), release: make(chan struct{})} }

func (g *gate) Serve(ctx context.Context, _ uint32, _ wire.Command, body []byte) ([]byte, error) {
	g.served.Add(1)
	g.entered <- body
	select {
	case <-g.release:
		return body, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func TestRoundTrip(t *testing.T) {
	h := HandlerFunc(func(ctx context.Context, from uint32, cmd wire.Command, body []byte) ([]byte, error) {
		switch string(body) {
		case "not member":
			return nil, &Error{Code: wire.CodeNotMember, Message: "no"}
		case "bug":
			return nil, errors.New("a handler's bug")
		}
		return echo(ctx, from, cmd, body)
	})
	s := startServer(t, h, nil)
	p := newPool(t, nil)
	addr := s.Addr().String()
	tests := []struct {
		cmd  wire.Command
		body string
		want string
		code wire.Code
	}{
		{cmdEcho, "hello", "1:hello", 0},
		{0xFFFF, "", "1:", 0},
		{cmdEcho, "not member", "", wire.CodeNotMember},
		{cmdEcho, "bug", "", wire.CodeInternal},
		{CmdHello, "x", "", wire.CodeInternal}, // ErrCommand, refused before sending
		{wire.CmdSend, "x", "", wire.CodeInternal},
	}
	for _, tt := range tests {
		got, err := p.Call(context.Background(), addr, tt.cmd, []byte(tt.body))
		if Code(err) != tt.code || string(got) != tt.want {
			t.Errorf("Call(%v, %q) = %q, %v (code %v); want %q, code %v", tt.cmd, tt.body, got, err, Code(err), tt.want, tt.code)
		}
	}
	if _, err := p.Call(context.Background(), addr, CmdProof, nil); !errors.Is(err, ErrCommand) {
		t.Errorf("a transport command: %v, want ErrCommand", err)
	}
	if n := testutil.ToFloat64(p.m.dials[0]); n != 1 {
		t.Errorf("%v dials, want 1", n)
	}
}

func TestPipelinedOutOfOrder(t *testing.T) {
	const n = 64
	release := make([]chan struct{}, n)
	for i := range release {
		release[i] = make(chan struct{})
	}
	entered := make(chan struct{}, n)
	h := HandlerFunc(func(ctx context.Context, _ uint32, _ wire.Command, body []byte) ([]byte, error) {
		var i int
		fmt.Sscan(string(body), &i)
		entered <- struct{}{}
		select {
		case <-release[i]:
			return body, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	reg := prometheus.NewRegistry()
	s := startServer(t, h, func(c *ServerConfig) { c.Workers = n; c.Registerer = reg })
	p := newPool(t, nil)
	done := make([]chan error, n)
	for i := range n {
		done[i] = make(chan error, 1)
		go func() {
			body, err := p.Call(context.Background(), s.Addr().String(), cmdEcho, fmt.Append(nil, i))
			if err == nil && string(body) != fmt.Sprint(i) {
				err = fmt.Errorf("call %d answered %q", i, body)
			}
			done[i] <- err
		}()
	}
	for range n {
		<-entered
	}
	// Every request is in a handler at once: answer them last first, each
	// only after the one before it came back.
	for i := n - 1; i >= 0; i-- {
		close(release[i])
		if err := <-done[i]; err != nil {
			t.Fatal(err)
		}
	}
	if d := testutil.ToFloat64(p.m.dials[0]); d != 1 {
		t.Errorf("%v dials for %d concurrent calls, want 1", d, n)
	}
	if got := testutil.ToFloat64(s.m.requests.of(cmdEcho).count[servedOK]); got != n {
		t.Errorf("server counted %v requests, want %d", got, n)
	}
}

func TestWrongSecretRefused(t *testing.T) {
	g := newGate()
	s := startServer(t, g, nil)
	p := newPool(t, func(c *PoolConfig) { c.Secret = []byte("another cluster's secret") })
	_, err := p.Call(context.Background(), s.Addr().String(), cmdEcho, []byte("x"))
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrAuth) || Code(err) != wire.CodeUnavailable {
		t.Fatalf("Call with a wrong secret: %v, want ErrUnavailable wrapping ErrAuth", err)
	}
	// While the pool backs off, calls fail at once with the dial's error.
	if _, err := p.Call(context.Background(), s.Addr().String(), cmdEcho, nil); !errors.Is(err, ErrAuth) {
		t.Errorf("second call: %v, want ErrAuth", err)
	}

	// A dialler that sends a forged proof is refused, and its requests are
	// never served.
	nc := rawDial(t, s)
	r := bufio.NewReader(nc)
	writeFrame(t, nc, CmdHello, 0, 1, mustMarshalHello(t))
	readOne(t, r) // the listener's HelloReply
	writeFrame(t, nc, CmdProof, 0, 2, mustMarshalProof(t, make([]byte, 32)))
	f := readOne(t, r)
	if f.Flags != wire.FlagResponse|wire.FlagError || decodeError(f.Body).Code != wire.CodeUnauthenticated {
		t.Fatalf("forged proof answered %+v", f.Header)
	}
	nc.Write(appendFrame(nil, cmdEcho, 0, 3, []byte("x")))
	if f, err := readFrame(r, wire.DefaultMaxFrame); err == nil {
		t.Errorf("after a refused proof: a %v frame, want the connection closed", f.Command)
	}
	// A request with no handshake at all is not served either.
	nc = rawDial(t, s)
	writeFrame(t, nc, cmdEcho, 0, 1, []byte("x"))
	if _, err := io.ReadAll(nc); err != nil {
		t.Fatal(err)
	}
	if g.served.Load() != 0 {
		t.Errorf("%d requests served without a valid handshake", g.served.Load())
	}
	if got := testutil.ToFloat64(s.m.handshake[handshakeBadProof]); got != 1 {
		t.Errorf("bad_proof failures %v, want 1", got)
	}
}

func TestNodeDiesMidCall(t *testing.T) {
	g := newGate()
	s := startServer(t, g, nil)
	addr := s.Addr().String()
	p := newPool(t, nil)
	errc := make(chan error, 1)
	go func() {
		_, err := p.Call(context.Background(), addr, cmdEcho, []byte("x"))
		errc <- err
	}()
	<-g.entered
	s.Close()
	err := <-errc
	if !errors.Is(err, ErrConnLost) || !Retryable(err) || Code(err) != wire.CodeUnavailable {
		t.Fatalf("call in flight on a dead node: %v, want retryable ErrConnLost", err)
	}
	// The node comes back on the same address: the next call dials again.
	s2 := startServer(t, echo, func(c *ServerConfig) { c.Addr = addr })
	got, err := p.Call(context.Background(), s2.Addr().String(), cmdEcho, []byte("again"))
	if err != nil || string(got) != "1:again" {
		t.Fatalf("call after the node came back: %q, %v", got, err)
	}
	if d := testutil.ToFloat64(p.m.dials[0]); d != 2 {
		t.Errorf("%v dials, want 2", d)
	}
}

func TestDeadlines(t *testing.T) {
	g := newGate()
	s := startServer(t, g, func(c *ServerConfig) { c.RequestTimeout = 20 * time.Millisecond })
	p := newPool(t, nil)
	// The server's RequestTimeout ends the handler: TIMEOUT from the node.
	_, err := p.Call(context.Background(), s.Addr().String(), cmdEcho, nil)
	if e, ok := errors.AsType[*Error](err); !ok || e.Code != wire.CodeTimeout {
		t.Errorf("handler past RequestTimeout: %v, want *Error TIMEOUT", err)
	}
	<-g.entered

	slow := startServer(t, g, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = p.Call(ctx, slow.Addr().String(), cmdEcho, nil)
	if !errors.Is(err, context.DeadlineExceeded) || Code(err) != wire.CodeTimeout {
		t.Errorf("caller's deadline: %v, want DeadlineExceeded", err)
	}
	<-g.entered
	// The default timeout applies to a ctx without a deadline.
	p2 := newPool(t, func(c *PoolConfig) { c.Timeout = 20 * time.Millisecond })
	if _, err := p2.Call(context.Background(), slow.Addr().String(), cmdEcho, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("default timeout: %v, want DeadlineExceeded", err)
	}
	<-g.entered
}

// A call that times out on a slow node leaves the connection up: the node
// answers the ping that follows.
func TestTimeoutOnSlowNodeKeepsConnection(t *testing.T) {
	g := newGate()
	s := startServer(t, g, nil)
	p := newPool(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := p.Call(ctx, s.Addr().String(), cmdEcho, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call to a slow handler: %v, want DeadlineExceeded", err)
	}
	<-g.entered
	r, _ := p.remote(s.Addr().String())
	r.mu.Lock()
	cc := r.cc
	r.mu.Unlock()
	for cc.probing.Load() { // the ping is answered, or closes cc
		runtime.Gosched()
	}
	close(g.release)
	if _, err := p.Call(context.Background(), s.Addr().String(), cmdEcho, nil); err != nil {
		t.Fatal(err)
	}
	if d := testutil.ToFloat64(p.m.dials[0]); d != 1 || cc.closedErr() != nil {
		t.Errorf("%v dials, connection error %v; want the first connection still up", d, cc.closedErr())
	}
}

// A node that stops answering anything, pings included (a machine lost
// without closing its connections), is disconnected after a call times out,
// and the next call dials again.
func TestSilentNodeDisconnected(t *testing.T) {
	gone := make(chan struct{})
	addr := fakeNode(t, func(nc net.Conn, r *bufio.Reader) {
		io.Copy(io.Discard, r) // reads everything, answers nothing
		close(gone)
	})
	p := newPool(t, func(c *PoolConfig) { c.PingTimeout = 20 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := p.Call(ctx, addr, cmdEcho, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call to a silent node: %v, want DeadlineExceeded", err)
	}
	<-gone // the pool closed the connection
	// The fake node accepts one connection only: the next call's dial is
	// refused, which proves the pool dialled again.
	if _, err := p.Call(context.Background(), addr, cmdEcho, nil); !errors.Is(err, ErrUnavailable) {
		t.Errorf("call after the silent connection closed: %v, want ErrUnavailable from a new dial", err)
	}
}

func TestQueueFull(t *testing.T) {
	g := newGate()
	s := startServer(t, g, nil)
	p := newPool(t, func(c *PoolConfig) { c.MaxInFlight = 2 })
	errc := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := p.Call(context.Background(), s.Addr().String(), cmdEcho, nil)
			errc <- err
		}()
	}
	<-g.entered
	<-g.entered
	_, err := p.Call(context.Background(), s.Addr().String(), cmdEcho, nil)
	if !errors.Is(err, ErrQueueFull) || Code(err) != wire.CodeUnavailable {
		t.Errorf("third call: %v, want ErrQueueFull", err)
	}
	close(g.release)
	for range 2 {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	if _, err := p.Call(context.Background(), s.Addr().String(), cmdEcho, nil); err != nil {
		t.Errorf("a call once the queue drained: %v", err)
	}
}

func TestServerBusy(t *testing.T) {
	g := newGate()
	s := startServer(t, g, func(c *ServerConfig) { c.Workers, c.QueueSize = 1, 1 })
	p := newPool(t, nil)
	errc := make(chan error, 2)
	call := func() {
		_, err := p.Call(context.Background(), s.Addr().String(), cmdEcho, nil)
		errc <- err
	}
	go call()
	<-g.entered // the one worker is busy
	go call()
	for len(s.jobs) == 0 { // the second request is queued
		runtime.Gosched()
	}
	_, err := p.Call(context.Background(), s.Addr().String(), cmdEcho, nil)
	if e, ok := errors.AsType[*Error](err); !ok || e.Code != wire.CodeUnavailable || !Retryable(err) {
		t.Errorf("a call to a node whose queue is full: %v, want *Error UNAVAILABLE", err)
	}
	close(g.release)
	for range 2 {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}

func TestCloseWithCallsInFlight(t *testing.T) {
	g := newGate()
	s := startServer(t, g, nil)
	p := newPool(t, nil)
	const n = 8
	errc := make(chan error, n)
	for range n {
		go func() {
			_, err := p.Call(context.Background(), s.Addr().String(), cmdEcho, nil)
			errc <- err
		}()
	}
	for range n {
		<-g.entered
	}
	p.Close()
	for range n {
		if err := <-errc; !errors.Is(err, ErrClosed) || Code(err) != wire.CodeShuttingDown {
			t.Errorf("call in flight at Close: %v, want ErrClosed", err)
		}
	}
	if _, err := p.Call(context.Background(), s.Addr().String(), cmdEcho, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("call after Close: %v, want ErrClosed", err)
	}
	close(g.release)
}

// Frames that break the protocol close the connection, with an ERROR frame
// saying why, on the listening side.
func TestMalformedFramesFromDialler(t *testing.T) {
	g := newGate()
	s := startServer(t, g, func(c *ServerConfig) { c.MaxFrame = 8 << 10 })
	tests := []struct {
		name  string
		frame []byte
		code  wire.Code
	}{
		{"oversized", wire.AppendHeader(nil, cmdEcho, 0, 1, 8<<10), wire.CodeFrameTooLarge},
		{"version", slices.Concat(wire.AppendHeader(nil, cmdEcho, 0, 1, 0)[:4], []byte{2, 0, 0x81, 0x01, 0, 0, 0, 1}), wire.CodeVersion},
		{"response", appendFrame(nil, cmdEcho, wire.FlagResponse, 1, nil), wire.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, r := authDial(t, s)
			nc.Write(tt.frame)
			f := readOne(t, r)
			if f.Command != wire.CmdError || decodeError(f.Body).Code != tt.code {
				t.Fatalf("answered %v %+v, want ERROR %v", f.Command, decodeError(f.Body), tt.code)
			}
			if f, err := readFrame(r, wire.DefaultMaxFrame); err == nil {
				t.Errorf("after the ERROR frame: a %v frame, want the connection closed", f.Command)
			}
		})
	}
	// A command of the transport after the handshake is answered, and the
	// connection stays open.
	nc, r := authDial(t, s)
	writeFrame(t, nc, CmdHello, 0, 7, nil)
	if f := readOne(t, r); f.RequestID != 7 || decodeError(f.Body).Code != wire.CodeUnknownCommand {
		t.Errorf("HELLO after the handshake: %+v %v", f.Header, decodeError(f.Body))
	}
	if g.served.Load() != 0 {
		t.Errorf("%d malformed requests served", g.served.Load())
	}
}

// A listener that breaks the protocol fails the calls in flight with an
// error that says so.
func TestMalformedFramesFromListener(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
		want  error // nil: the node's own error
	}{
		{"oversized", wire.AppendHeader(nil, cmdEcho, wire.FlagResponse, 1, wire.DefaultMaxFrame), wire.ErrFrameTooLarge},
		{"version", slices.Concat(wire.AppendHeader(nil, cmdEcho, 0, 1, 0)[:4], []byte{9, 1, 0x81, 0x01, 0, 0, 0, 1}), wire.ErrVersion},
		{"request", appendFrame(nil, cmdEcho, 0, 1, nil), ErrProtocol},
		{"error frame", appendFrame(nil, wire.CmdError, 0, 0, errorBody(wire.CodeInternal, "broken")), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := fakeListener(t, tt.frame)
			p := newPool(t, nil)
			_, err := p.Call(context.Background(), addr, cmdEcho, nil)
			if !errors.Is(err, ErrConnLost) || Code(err) != wire.CodeUnavailable {
				t.Fatalf("Call: %v, want ErrConnLost, UNAVAILABLE", err)
			}
			if tt.want == nil {
				if e, ok := errors.AsType[*Error](err); !ok || e.Message != "broken" {
					t.Errorf("Call: %v, want the node's error", err)
				}
			} else if !errors.Is(err, tt.want) {
				t.Errorf("Call: %v, want %v", err, tt.want)
			}
		})
	}
}

// fakeListener accepts one connection, completes the handshake, waits for
// a request and answers it with frame. It returns its address.
func fakeListener(t *testing.T, frame []byte) string {
	return fakeNode(t, func(nc net.Conn, r *bufio.Reader) {
		if _, err := readFrame(r, wire.DefaultMaxFrame); err != nil {
			t.Error(err)
			return
		}
		nc.Write(frame)
		io.Copy(io.Discard, nc)
	})
}

// fakeNode accepts one connection, completes the handshake and hands the
// connection to serve. It returns its address.
func fakeNode(t *testing.T, serve func(net.Conn, *bufio.Reader)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		r := bufio.NewReaderSize(nc, wire.DefaultMaxFrame)
		if _, err := listen(r, nc, peerKey(secret), 9, wire.DefaultMaxFrame); err != nil {
			t.Error(err)
			return
		}
		serve(nc, r)
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

func rawDial(t *testing.T, s *Server) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// authDial connects to s and completes the handshake by hand.
func authDial(t *testing.T, s *Server) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc := rawDial(t, s)
	r := bufio.NewReaderSize(nc, wire.DefaultMaxFrame)
	if _, err := dial(r, nc, peerKey(secret), 5, wire.DefaultMaxFrame); err != nil {
		t.Fatal(err)
	}
	return nc, r
}

func writeFrame(t *testing.T, w io.Writer, cmd wire.Command, flags wire.Flags, id uint32, body []byte) {
	t.Helper()
	if _, err := w.Write(appendFrame(nil, cmd, flags, id, body)); err != nil {
		t.Fatal(err)
	}
}

func readOne(t *testing.T, r *bufio.Reader) wire.Frame {
	t.Helper()
	f, err := readFrame(r, wire.DefaultMaxFrame)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Frames are bounded by the receiver's max_frame, which the handshake
// tells: a request or a response too large is refused by its sender, and
// the connection stays up.
func TestTooLarge(t *testing.T) {
	big := HandlerFunc(func(context.Context, uint32, wire.Command, []byte) ([]byte, error) {
		return make([]byte, 16<<10), nil
	})
	s := startServer(t, big, func(c *ServerConfig) { c.MaxFrame = 8 << 10 })
	p := newPool(t, func(c *PoolConfig) { c.MaxFrame = 8 << 10 })
	_, err := p.Call(context.Background(), s.Addr().String(), cmdEcho, make([]byte, 8<<10))
	if !errors.Is(err, ErrTooLarge) || Retryable(err) {
		t.Errorf("a request above the node's max_frame: %v, want ErrTooLarge, not retryable", err)
	}
	_, err = p.Call(context.Background(), s.Addr().String(), cmdEcho, nil)
	if e, ok := errors.AsType[*Error](err); !ok || e.Code != wire.CodeInternal {
		t.Errorf("a response above the caller's max_frame: %v, want *Error INTERNAL", err)
	}
	if d := testutil.ToFloat64(p.m.dials[0]); d != 1 {
		t.Errorf("%v dials, want 1: the connection stays up", d)
	}
}

// A connection that does not finish the handshake in time is closed.
func TestHandshakeTimeout(t *testing.T) {
	s := startServer(t, echo, func(c *ServerConfig) { c.HandshakeTimeout = 20 * time.Millisecond })
	nc := rawDial(t, s)
	if _, err := io.ReadAll(nc); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(s.m.handshake[handshakeIO]); got != 1 {
		t.Errorf("io handshake failures %v, want 1", got)
	}
}

// The package doc lists exactly the metrics a Pool and a Server register.
func TestMetricsDocumented(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := startServer(t, echo, func(c *ServerConfig) { c.Registerer = reg })
	p := newPool(t, func(c *PoolConfig) { c.Registerer = reg })
	if _, err := p.Call(context.Background(), s.Addr().String(), cmdEcho, nil); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		got = append(got, mf.GetName())
	}
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, m := range regexp.MustCompile(`(?m)^//\t(inboxd_peer_[a-z_]+)`).FindAllSubmatch(doc, -1) {
		want = append(want, string(m[1]))
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("registered %v\ndocumented %v", got, want)
	}
}

// Calls from many goroutines while the node restarts under them: every call
// ends, with an answer or a retryable error, and once the node is back the
// calls succeed again.
func TestCallsAcrossRestarts(t *testing.T) {
	s := startServer(t, echo, nil)
	addr := s.Addr().String()
	p := newPool(t, func(c *PoolConfig) { c.Backoff = backoff.Policy{Min: time.Millisecond, Max: 5 * time.Millisecond} })
	const callers, calls, restarts = 8, 300, 3
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range calls {
				_, err := p.Call(context.Background(), addr, cmdEcho, []byte("x"))
				if err == nil {
					ok.Add(1)
				} else if !Retryable(err) {
					t.Errorf("a call during restarts: %v, not retryable", err)
					return
				}
			}
		})
	}
	done, restarted := make(chan struct{}), 0
	go func() {
		wg.Wait()
		close(done)
	}()
restart:
	for i := range restarts {
		for ok.Load() < int64((i+1)*callers*calls/(restarts+2)) {
			select {
			case <-done: // the calls ran out first: restart no more
				break restart
			default:
				runtime.Gosched()
			}
		}
		s.Close()
		s = startServer(t, echo, func(c *ServerConfig) { c.Addr = addr })
		restarted++
	}
	<-done
	if restarted == 0 {
		t.Error("the calls ran out before the first restart")
	}
	if _, err := p.Call(context.Background(), addr, cmdEcho, nil); err != nil {
		t.Errorf("a call after the restarts: %v", err)
	}
}
