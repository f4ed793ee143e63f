package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

func TestMain(m *testing.M) {
	// gnet, under the end-to-end tests' gateway, keeps a process-wide worker
	// pool alive between engines.
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"))
}

// dial connects a client to s with fast backoff and closes it when the
// test ends.
func dial(t *testing.T, s *fakeServer, cfg Config) *Client {
	t.Helper()
	cfg.Addr = s.addr()
	if cfg.Token == "" {
		cfg.Token = "good"
	}
	cfg.MinBackoff = time.Millisecond
	cfg.MaxBackoff = 20 * time.Millisecond
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestAuth(t *testing.T) {
	s := newFakeServer(t)
	s.add(3, false)
	c := dial(t, s, Config{})
	got := c.Session()
	want := Session{Addr: s.addr(), User: 42, Device: "d", HeadSeq: 3, Heartbeat: 30 * time.Second, ServerTime: time.UnixMilli(1), MaxFrame: wire.DefaultMaxFrame}
	if got != want {
		t.Errorf("session %+v, want %+v", got, want)
	}
}

func TestAuthRefused(t *testing.T) {
	s := newFakeServer(t)
	for tok, want := range map[string]error{"forged": ErrUnauthenticated, "expired": ErrTokenExpired} {
		_, err := Dial(ctxT(t), Config{Addr: s.addr(), Token: tok})
		errIs(t, err, want)
		var e *Error
		if !errors.As(err, &e) || e.Message == "" {
			t.Errorf("%s: %v is not an *Error with the server's message", tok, err)
		}
	}
	if _, err := Dial(ctxT(t), Config{Addr: s.addr()}); err == nil {
		t.Error("Dial without a token succeeded")
	}
}

func TestDialNoServer(t *testing.T) {
	s := newFakeServer(t)
	addr := s.addr()
	s.stop()
	if _, err := Dial(ctxT(t), Config{Addr: addr, Token: "good"}); err == nil {
		t.Fatal("Dial to a closed port succeeded")
	}
}

func TestInitialSyncPages(t *testing.T) {
	s := newFakeServer(t)
	s.configure(func() { s.syncLimit = 3 })
	s.add(10, false)
	var col collector
	c := dial(t, s, Config{LastSeq: 2, OnEntry: col.onEntry})
	if err := c.WaitSynced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	col.waitFor(t, 2, 10)
	s.mu.Lock()
	defer s.mu.Unlock()
	if want := []uint64{2, 5, 8}; !slices.Equal(s.syncs, want) {
		t.Errorf("SYNC after %v, want %v", s.syncs, want)
	}
	if c.LastSeq() != 10 {
		t.Errorf("LastSeq %d", c.LastSeq())
	}
}

// TestWaitSyncedAcrossReconnect drops the connection during the first
// SYNC: WaitSynced must wait for the next connection's catch-up.
func TestWaitSyncedAcrossReconnect(t *testing.T) {
	s := newFakeServer(t)
	s.add(3, false)
	// The hook runs on each connection's reader goroutine: the first and
	// the next connection's may overlap.
	var dropped atomic.Bool
	s.setHook(func(fc *fakeConn, f wire.Frame) bool {
		if f.Command != wire.CmdSync || !dropped.CompareAndSwap(false, true) {
			return false
		}
		fc.nc.Close()
		return true
	})
	var col collector
	c := dial(t, s, Config{OnEntry: col.onEntry})
	if err := c.WaitSynced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if got := col.got(); len(got) != 3 {
		t.Errorf("WaitSynced returned with %v delivered", got)
	}
}

// TestPipelining sends many requests at once to a server that answers them
// in reverse order: each caller must get its own response.
func TestPipelining(t *testing.T) {
	s := newFakeServer(t)
	const n = 20
	var held []wire.Frame
	s.setHook(func(fc *fakeConn, f wire.Frame) bool {
		if f.Command != wire.CmdHistory {
			return false
		}
		held = append(held, f) // only the connection's reader goroutine runs this
		if len(held) < n {
			return true
		}
		for _, f := range slices.Backward(held) {
			var req wirepb.HistoryRequest
			mustDecode(t, f, &req)
			fc.respond(f, &wirepb.HistoryResponse{Messages: []*wirepb.Message{{Conv: req.Conv}}})
		}
		return true
	})
	c := dial(t, s, Config{})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			msgs, err := c.History(ctxT(t), uint64(i+1), 0, 0)
			if err == nil && (len(msgs) != 1 || msgs[0].Conv != uint64(i+1)) {
				err = fmt.Errorf("request for conv %d got %v", i+1, msgs)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestRequestContext(t *testing.T) {
	s := newFakeServer(t)
	s.setHook(func(fc *fakeConn, f wire.Frame) bool {
		return f.Command == wire.CmdHistory // never answered
	})
	c := dial(t, s, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.History(ctx, 1, 0, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("History: %v, want the context's deadline", err)
	}
	// The connection is still good for other requests.
	if _, err := c.Conversations(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// syncedClient dials s with an empty inbox and waits until it has synced.
func syncedClient(t *testing.T, s *fakeServer) *collector {
	t.Helper()
	col := new(collector)
	c := dial(t, s, Config{OnEntry: col.onEntry})
	if err := c.WaitSynced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	return col
}

func TestPushInOrder(t *testing.T) {
	s := newFakeServer(t)
	col := syncedClient(t, s)
	s.add(5, true)
	col.waitFor(t, 0, 5)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.syncs) != 1 {
		t.Errorf("SYNC after %v: pushes in order need no SYNC", s.syncs)
	}
}

func TestPushGapSyncs(t *testing.T) {
	s := newFakeServer(t)
	col := syncedClient(t, s)
	es := s.add(4, false)
	s.pushAll(es[0])
	col.waitFor(t, 0, 1)
	s.pushAll(es[3]) // 2 and 3 missing: the client syncs after 1
	col.waitFor(t, 0, 4)
	s.mu.Lock()
	defer s.mu.Unlock()
	if want := []uint64{0, 1}; !slices.Equal(s.syncs, want) {
		t.Errorf("SYNC after %v, want %v", s.syncs, want)
	}
}

func TestDuplicatePushesIgnored(t *testing.T) {
	s := newFakeServer(t)
	col := syncedClient(t, s)
	es := s.add(3, false)
	s.pushAll(es[0], es[0], es[1])
	s.pushAll(es[1], es[0])
	s.pushAll(es[2], es[2])
	col.waitFor(t, 0, 3)
	// A last push proves the ones before were processed.
	s.pushAll(s.add(1, false)...)
	col.waitFor(t, 0, 4)
}

// TestSlowApplication floods pushes at an application that blocks: the
// client drops what it cannot hold and syncs it back afterwards.
func TestSlowApplication(t *testing.T) {
	s := newFakeServer(t)
	release := make(chan struct{})
	var col collector
	c := dial(t, s, Config{pushBacklog: 1, OnEntry: func(e *wirepb.Entry) {
		if e.Seq == 1 {
			<-release
		}
		col.onEntry(e)
	}})
	if err := c.WaitSynced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	s.add(50, true)
	close(release)
	col.waitFor(t, 0, 50)
}

func TestReconnectResyncs(t *testing.T) {
	s := newFakeServer(t)
	s.add(3, false)
	var col collector
	c := dial(t, s, Config{OnEntry: col.onEntry})
	col.waitFor(t, 0, 3)

	// While the client is away, two more entries arrive; it learns of them
	// only by syncing after 3 on the next connection.
	s.add(2, false)
	s.dropAll(wire.CodeSlowReader)
	col.waitFor(t, 0, 5)
	if err := c.WaitSynced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	auths, _ := s.counts()
	s.mu.Lock()
	defer s.mu.Unlock()
	if auths != 2 || s.syncs[len(s.syncs)-1] != 3 {
		t.Errorf("%d auths, SYNC after %v; want 2 auths and a SYNC after 3", auths, s.syncs)
	}
}

// TestClosedDuringSync closes the connection with a retryable code while
// the first SYNC waits: the client must reconnect, not retry the SYNC on
// the closed connection.
func TestClosedDuringSync(t *testing.T) {
	for _, code := range []wire.Code{wire.CodeShuttingDown, wire.CodeUnavailable} {
		t.Run(code.String(), func(t *testing.T) {
			s := newFakeServer(t)
			s.add(2, false)
			var closed atomic.Bool
			s.setHook(func(fc *fakeConn, f wire.Frame) bool {
				if f.Command != wire.CmdSync || !closed.CompareAndSwap(false, true) {
					return false
				}
				fc.send(wire.CmdError, 0, 0, &wirepb.Error{Code: uint32(code), Message: "fake"})
				fc.nc.Close()
				return true
			})
			var col collector
			c := dial(t, s, Config{OnEntry: col.onEntry})
			col.waitFor(t, 0, 2)
			if err := c.WaitSynced(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			if auths, _ := s.counts(); auths != 2 {
				t.Errorf("%d auths, want 2", auths)
			}
		})
	}
}

// TestSendRetryAfterDrop stores a SEND and drops the connection before the
// ack: the client resends under the same client msg id after reconnecting,
// the server's dedup answers with the first result, and the message is
// delivered once.
func TestSendRetryAfterDrop(t *testing.T) {
	s := newFakeServer(t)
	var dropped bool
	s.setHook(func(fc *fakeConn, f wire.Frame) bool {
		if f.Command != wire.CmdSend || dropped {
			return false
		}
		dropped = true
		var req wirepb.SendRequest
		mustDecode(t, f, &req)
		s.store(&req)
		fc.nc.Close()
		return true
	})
	var col collector
	c := dial(t, s, Config{OnEntry: col.onEntry})
	ack, err := c.Send(ctxT(t), 7, "m-1", 1, []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	if !ack.Duplicate || ack.MsgId != 1001 || ack.ConvSeq != 1 {
		t.Errorf("ack %v, want the first result, marked duplicate", ack)
	}
	col.waitFor(t, 0, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Equal(s.sends, []string{"m-1", "m-1"}) || len(s.entries) != 1 {
		t.Errorf("sends %v, %d entries; want one message sent twice", s.sends, len(s.entries))
	}
	if s.auths != 2 {
		t.Errorf("%d auths, want 2", s.auths)
	}
}

func TestSendRetryableCodes(t *testing.T) {
	s := newFakeServer(t)
	fails := []wire.Code{wire.CodeUnavailable, wire.CodeRateLimited, wire.CodeTimeout}
	s.setHook(func(fc *fakeConn, f wire.Frame) bool {
		if f.Command != wire.CmdSend || len(fails) == 0 {
			return false
		}
		var req wirepb.SendRequest
		mustDecode(t, f, &req)
		s.mu.Lock()
		s.sends = append(s.sends, req.ClientMsgId)
		s.mu.Unlock()
		fc.failAfter(f, fails[0], "try again", 30*time.Millisecond)
		fails = fails[1:]
		return true
	})
	var col collector
	c := dial(t, s, Config{OnEntry: col.onEntry})
	start := time.Now()
	ack, err := c.Send(ctxT(t), 7, "", 1, []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 90*time.Millisecond {
		t.Errorf("three retries after 30 ms each took %v", el)
	}
	if ack.Duplicate {
		t.Error("first stored send marked duplicate")
	}
	col.waitFor(t, 0, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sends) != 4 || len(s.sends[0]) != 32 || slices.Compact(slices.Clone(s.sends))[0] != s.sends[0] || len(slices.Compact(slices.Clone(s.sends))) != 1 {
		t.Errorf("sends %q: want four under one generated client msg id", s.sends)
	}
}

// TestMaxAttempts checks which codes Send retries, and that it stops
// after Config.MaxAttempts.
func TestMaxAttempts(t *testing.T) {
	tests := []struct {
		code     wire.Code
		want     error
		attempts int
	}{
		{wire.CodeInternal, ErrInternal, 3},
		{wire.CodeUnavailable, ErrUnavailable, 3},
		{wire.CodeNotMember, ErrNotMember, 1},
		{wire.CodeMuted, ErrMuted, 1},
		{wire.CodeInvalid, ErrInvalid, 1},
	}
	for _, tt := range tests {
		s := newFakeServer(t)
		attempts := 0
		s.setHook(func(fc *fakeConn, f wire.Frame) bool {
			if f.Command != wire.CmdSend {
				return false
			}
			s.configure(func() { attempts++ })
			fc.fail(f, tt.code, "refused")
			return true
		})
		c := dial(t, s, Config{MaxAttempts: 3})
		_, err := c.Send(ctxT(t), 7, "m", 1, nil)
		errIs(t, err, tt.want)
		var e *Error
		if !errors.As(err, &e) || e.Code != tt.code || e.Message != "refused" {
			t.Errorf("code %d: error %#v", tt.code, err)
		}
		s.configure(func() {
			if attempts != tt.attempts {
				t.Errorf("code %d: %d attempts, want %d", tt.code, attempts, tt.attempts)
			}
		})
	}
}

func TestTooLargeNotSent(t *testing.T) {
	s := newFakeServer(t)
	c := dial(t, s, Config{})
	_, err := c.Send(ctxT(t), 7, "m", 1, make([]byte, wire.DefaultMaxFrame))
	errIs(t, err, ErrFrameTooLarge)
	if _, err := c.Conversations(ctxT(t)); err != nil {
		t.Fatalf("connection unusable after a refused send: %v", err)
	}
	if auths, _ := s.counts(); auths != 1 {
		t.Errorf("%d auths: the connection was dropped", auths)
	}
}

func TestReplacedStops(t *testing.T) {
	s := newFakeServer(t)
	c := dial(t, s, Config{})
	s.dropAll(wire.CodeReplaced)
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client still running after REPLACED")
	}
	errIs(t, c.Err(), ErrReplaced)
	_, err := c.Send(ctxT(t), 7, "m", 1, nil)
	errIs(t, err, ErrReplaced)
	if auths, _ := s.counts(); auths != 1 {
		t.Errorf("%d auths: a replaced client must not reconnect", auths)
	}
}

func TestTokenSourceRenews(t *testing.T) {
	s := newFakeServer(t)
	var mu sync.Mutex
	calls := 0
	c := dial(t, s, Config{Token: "unused", TokenSource: func(context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 2 {
			return "expired", nil // the next connection is refused, and retried
		}
		return "good", nil
	}})
	s.dropAll(wire.CodeTokenExpired)
	eventually(t, func() bool { auths, _ := s.counts(); return auths == 2 })
	if _, err := c.Conversations(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func TestHeartbeats(t *testing.T) {
	s := newFakeServer(t)
	s.configure(func() { s.heartbeatMs = 10 })
	dial(t, s, Config{})
	eventually(t, func() bool { _, hb := s.counts(); return hb >= 3 })
}

// TestDeadServerDetected swallows heartbeats: the client must give up on
// the connection and make a new one.
func TestDeadServerDetected(t *testing.T) {
	s := newFakeServer(t)
	s.configure(func() { s.heartbeatMs = 10 })
	s.setHook(func(fc *fakeConn, f wire.Frame) bool { return f.Command == wire.CmdHeartbeat })
	dial(t, s, Config{})
	eventually(t, func() bool { auths, _ := s.counts(); return auths >= 2 })
}

func TestServerGarbageReconnects(t *testing.T) {
	s := newFakeServer(t)
	s.add(1, false)
	var col collector
	dial(t, s, Config{OnEntry: col.onEntry})
	col.waitFor(t, 0, 1)
	s.mu.Lock()
	var fc *fakeConn
	for fc = range s.conns {
	}
	s.mu.Unlock()
	fc.write([]byte{0, 0, 0, 0, 9, 0, 0, 4, 0, 0, 0, 0}) // version 9
	eventually(t, func() bool { auths, _ := s.counts(); return auths == 2 })
	s.add(1, true)
	col.waitFor(t, 0, 2)
}

func TestFromHead(t *testing.T) {
	s := newFakeServer(t)
	s.add(5, false)
	var col collector
	c := dial(t, s, Config{FromHead: true, OnEntry: col.onEntry})
	if c.LastSeq() != 5 {
		t.Fatalf("LastSeq %d, want the head 5", c.LastSeq())
	}
	if err := c.WaitSynced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	s.add(1, true)
	eventually(t, func() bool { return len(col.got()) == 1 })
	if got := col.got(); !slices.Equal(got, []uint64{6}) {
		t.Errorf("delivered %v, want [6]", got)
	}
}

func TestSeqAhead(t *testing.T) {
	s := newFakeServer(t)
	s.add(3, false)
	_, err := Dial(ctxT(t), Config{Addr: s.addr(), Token: "good", LastSeq: 4})
	errIs(t, err, ErrSeqAhead)
}

func TestCloseWhileReconnecting(t *testing.T) {
	s := newFakeServer(t)
	c := dial(t, s, Config{})
	s.stop() // nothing to reconnect to
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := c.Send(context.Background(), 7, "m", 1, nil); !errors.Is(err, ErrClosed) {
			t.Errorf("Send during Close: %v", err)
		}
	}()
	time.Sleep(30 * time.Millisecond)
	c.Close()
	<-done
	errIs(t, c.Err(), ErrClosed)
	if _, err := c.Conversations(ctxT(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("request after Close: %v", err)
	}
}

// TestCodeNamesMatchDoc keeps the names in error messages those of the
// error table of docs/protocol.md.
func TestCodeNamesMatchDoc(t *testing.T) {
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	for c := wire.CodeBadRequest; c <= wire.CodeTooLate; c++ {
		if strings.HasPrefix(c.String(), "CODE_") {
			continue // a number no code has
		}
		row := fmt.Sprintf("| %d | `%s` |", c, c)
		if !strings.Contains(string(doc), row) {
			t.Errorf("docs/protocol.md has no row starting %q", row)
		}
	}
}

func TestErrorMatching(t *testing.T) {
	err := fmt.Errorf("send: %w", &Error{Code: wire.CodeMuted, Message: "muted until 5"})
	errIs(t, err, ErrMuted)
	errIs(t, err, &Error{Code: wire.CodeMuted})
	if errors.Is(err, ErrNotMember) {
		t.Error("MUTED matches NOT_MEMBER")
	}
	if got := err.Error(); got != "send: inboxd: MUTED (code 8): muted until 5" {
		t.Errorf("message %q", got)
	}
	if got := (&Error{Code: 99}).Error(); got != "inboxd: CODE_99 (code 99)" {
		t.Errorf("message %q", got)
	}
	lost := connLost(&Error{Code: wire.CodeReplaced})
	tests := []struct {
		err                  error
		retry, perm, permTok bool
	}{
		{&Error{Code: wire.CodeUnavailable}, true, false, false},
		{&Error{Code: wire.CodeNotMember}, false, false, false},
		{connLost(errors.New("EOF")), true, false, false},
		{lost, true, true, true},
		{&Error{Code: wire.CodeTokenExpired}, false, true, false},
		{&Error{Code: wire.CodeUnauthenticated}, false, true, false},
		{&Error{Code: wire.CodeVersion}, false, true, true},
		{&Error{Code: wire.CodeBanned}, false, true, true},
		{&Error{Code: wire.CodeRevoked}, false, true, false},
		{ErrSeqAhead, false, true, true},
	}
	for _, tt := range tests {
		if retryable(tt.err) != tt.retry || permanent(tt.err, false) != tt.perm || permanent(tt.err, true) != tt.permTok {
			t.Errorf("%v: retryable %v, permanent %v/%v", tt.err, retryable(tt.err), permanent(tt.err, false), permanent(tt.err, true))
		}
	}
}
