package gateway

import (
	"bytes"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/inboxd/inboxd/internal/gatewaytest"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// stoppedClock is a Config.Now that never moves: no bucket refills and no
// warning interval passes, so counts do not depend on the test's speed.
func stoppedClock() func() time.Time {
	now := time.Now()
	return func() time.Time { return now }
}

// counted waits until the gateway counts n unauthenticated connections.
func (s *server) counted(n int) {
	s.t.Helper()
	waitValue(s.t.(*testing.T), "unauthenticated connections", func() float64 { return float64(s.gw.unauthenticated.Load()) }, float64(n))
}

func TestPreAuthFrameLimit(t *testing.T) {
	s := start(t, Config{PreAuthMaxFrame: 4 << 10})
	t.Run("large frame before AUTH", func(t *testing.T) {
		c := s.dial()
		c.c.Write(rawHeader(8<<10, wire.Version, wire.CmdAuth, 1))
		if got := c.closedWith(); got != wire.CodeFrameTooLarge {
			t.Fatalf("closed with %d", got)
		}
	})
	t.Run("large frame after AUTH", func(t *testing.T) {
		c := s.login(1, "d")
		conv := createGroup(t, c, 2)
		body := bytes.Repeat([]byte("x"), 8<<10)
		if err := c.call(wire.CmdSend, &wirepb.SendRequest{Conv: conv, ClientMsgId: "big", Kind: 1, Body: body}, nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPreAuthFrameWithinMaxFrame(t *testing.T) {
	gw, err := New(Config{Secret: secret, MaxFrame: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if gw.cfg.PreAuthMaxFrame != 1024 {
		t.Fatalf("PreAuthMaxFrame %d with MaxFrame 1024", gw.cfg.PreAuthMaxFrame)
	}
}

func TestCapKey(t *testing.T) {
	for _, tt := range []struct {
		addr          string
		limitLoopback bool
		want          string // "" for exempt
	}{
		{"192.0.2.7", false, "192.0.2.7"},
		{"::ffff:192.0.2.7", false, "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", false, "2001:db8:1:2::"},
		{"2001:db8:1:2:ffff::1", false, "2001:db8:1:2::"},
		{"127.0.0.1", false, ""},
		{"::1", false, ""},
		{"127.0.0.1", true, "127.0.0.1"},
	} {
		got := capKey(netip.MustParseAddr(tt.addr), tt.limitLoopback)
		if want := tt.want; (want == "" && got.IsValid()) || (want != "" && got != netip.MustParseAddr(want)) {
			t.Errorf("capKey(%s, %v) = %v, want %q", tt.addr, tt.limitLoopback, got, want)
		}
	}
}

// peerConn is a connection from addr.
type peerConn struct {
	sinkConn
	addr net.Addr
}

func (c *peerConn) RemoteAddr() net.Addr { return c.addr }

// TestSessionRemote: the session gives back the peer it keeps in its
// compact form, IPv4 unmapped, and none for a connection without one.
func TestSessionRemote(t *testing.T) {
	s, err := New(Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		addr net.Addr
		want string // "" for none
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 40001}, "192.0.2.7:40001"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1}, "192.0.2.7:1"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 65535}, "[2001:db8::1]:65535"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 7}, "[::1]:7"},
		{&net.UnixAddr{Name: "sock", Net: "unix"}, ""},
		{nil, ""},
	} {
		got := newSession(s, &peerConn{addr: tt.addr}, transportTCP).remote()
		if want := tt.want; (want == "" && got.IsValid()) || (want != "" && got != netip.MustParseAddrPort(want)) {
			t.Errorf("remote of %v: %v, want %q", tt.addr, got, want)
		}
	}
}

// TestSessionSize: every idle connection pays for each byte of its session,
// in whole size classes; this one is 288 bytes on 64-bit platforms.
func TestSessionSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the budget is for 64-bit platforms")
	}
	if size := unsafe.Sizeof(session{}); size > 288 {
		t.Fatalf("a session takes %d bytes, past the size class of 288", size)
	}
}

func TestConnectionCaps(t *testing.T) {
	t.Run("unauthenticated", func(t *testing.T) {
		var out syncBuffer
		s := start(t, Config{MaxUnauthenticated: 3, Logger: slog.New(slog.NewTextHandler(&out, nil))})
		first := s.dial()
		s.dial()
		s.dial()
		s.counted(3)
		if got := s.dial().closedWith(); got != wire.CodeUnavailable {
			t.Fatalf("fourth unauthenticated connection closed with %d", got)
		}
		first.c.Close()
		s.counted(2)
		s.login(1, "d")
		s.counted(2) // authenticated, it no longer counts
		s.dial()
		s.counted(3)
		if got := testutil.ToFloat64(s.gw.metrics.refused[refusedUnauthenticated]); got != 1 {
			t.Fatalf("refused %v, want 1", got)
		}
		if n := out.lines("refused at a cap"); n != 1 {
			t.Fatalf("%d log lines of the refusal, want 1", n)
		}
	})
	t.Run("per address", func(t *testing.T) {
		s := start(t, Config{MaxConnsPerAddr: 2, LimitLoopback: true})
		a := s.login(1, "a")
		s.dial()
		s.counted(1)
		if got := s.dial().closedWith(); got != wire.CodeRateLimited {
			t.Fatalf("third connection from the address closed with %d", got)
		}
		a.c.Close()
		waitClosed(t, s, 1)
		s.login(1, "b") // a closed connection frees its place
	})
	t.Run("loopback exempt by default", func(t *testing.T) {
		s := start(t, Config{MaxConnsPerAddr: 2})
		for i := range 4 {
			s.login(uint64(i+1), "d")
		}
	})
	t.Run("unauthenticated bytes", func(t *testing.T) {
		s := start(t, Config{PreAuthMaxFrame: 4 << 10, MaxUnauthenticatedBytes: 10 << 10})
		bytesHeld := func() float64 { return float64(s.gw.unauthBytes.Load()) }
		partial := func() *conn {
			c := s.dial()
			c.c.Write(append(rawHeader(4<<10-wire.HeaderSize, wire.Version, wire.CmdAuth, 1), make([]byte, 1000)...))
			return c
		}
		first, second := partial(), partial()
		waitValue(t, "held bytes", bytesHeld, 8<<10) // each holds its whole frame's size
		if got := partial().closedWith(); got != wire.CodeUnavailable {
			t.Fatalf("third partial frame closed with %d", got)
		}
		first.c.Close()
		second.c.Close()
		waitValue(t, "held bytes after close", bytesHeld, 0)
		if got := testutil.ToFloat64(s.gw.metrics.refused[refusedUnauthenticatedBytes]); got != 1 {
			t.Fatalf("refused %v, want 1", got)
		}
	})
}

// TestFloodClosed pipelines a flood of one command: every frame counts
// against the connection's bucket, whatever its command, and a connection
// that keeps going past the limit is closed with RATE_LIMITED.
func TestFloodClosed(t *testing.T) {
	const burst = 5
	for _, tt := range []struct {
		name   string
		cmd    wire.Command
		answer wire.Code // what the frames within the limit get
		// queued: the frames within the limit go to a worker, whose answers
		// may come after the close and be dropped.
		queued bool
	}{
		{"unknown command", wire.Command(999), wire.CodeUnknownCommand, false},
		{"repeated AUTH", wire.CmdAuth, wire.CodeInvalid, false},
		{"heartbeat", wire.CmdHeartbeat, 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, Config{RateLimit: 1, RateBurst: burst, Now: stoppedClock()})
			c := s.login(1, "d") // AUTH takes a token
			var stream []byte
			for i := range 100 {
				stream, _ = wire.AppendFrame(stream, tt.cmd, 0, uint32(10+i), &wirepb.AuthRequest{Token: "x"})
			}
			c.c.Write(stream)
			answers := map[wire.Code]int{}
			for {
				f, err := c.read()
				if err != nil {
					break
				}
				var e wirepb.Error
				if f.Flags&wire.FlagError != 0 {
					wire.Decode(f.Body, &e)
				}
				answers[wire.Code(e.Code)]++
			}
			// burst-1 frames answered, burst refused, the next refused and
			// the connection closed.
			limited, answered := answers[wire.CodeRateLimited], answers[tt.answer]
			delete(answers, wire.CodeRateLimited)
			delete(answers, tt.answer)
			if limited != burst+1 || answered > burst-1 || (!tt.queued && answered != burst-1) || len(answers) > 0 {
				t.Fatalf("%d limited, %d answered %v, others %v; want %d limited, %d answered", limited, answered, tt.answer, answers, burst+1, burst-1)
			}
			waitValue(t, "flood disconnects", func() float64 { return testutil.ToFloat64(s.gw.metrics.disconnects[transportTCP][closedFlood]) }, 1)
		})
	}
}

// TestUserRateLimit: SEND and the expensive reads share one bucket across
// the user's devices; other commands and other users are not held back.
func TestUserRateLimit(t *testing.T) {
	s := start(t, Config{UserRateLimit: 1, UserRateBurst: 2, Now: stoppedClock()})
	phone, laptop, other := s.login(1, "phone"), s.login(1, "laptop"), s.login(2, "phone")
	for _, c := range []*conn{phone, laptop} {
		if err := c.call(wire.CmdSync, &wirepb.SyncRequest{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := phone.call(wire.CmdHistory, &wirepb.HistoryRequest{Conv: 1}, nil); code(err) != wire.CodeRateLimited {
		t.Fatalf("third expensive request of the user: %v", err)
	}
	if err := laptop.call(wire.CmdHeartbeat, nil, nil); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	if err := other.call(wire.CmdConversations, &wirepb.ConversationsRequest{}, nil); err != nil {
		t.Fatalf("another user: %v", err)
	}
	if got := testutil.ToFloat64(s.gw.metrics.rejected[rejectUserRateLimited]); got != 1 {
		t.Fatalf("user rate limited %v, want 1", got)
	}
}

// TestUserRateLimitedCommands: every command that fans out or reads much
// takes from the user's bucket, group commands included; the cheap ones do
// not.
func TestUserRateLimitedCommands(t *testing.T) {
	s := start(t, Config{UserRateLimit: 1, UserRateBurst: 1, Now: stoppedClock()})
	for i, tt := range []struct {
		cmd     wire.Command
		limited bool
	}{
		{wire.CmdSend, true}, {wire.CmdSendDirect, true}, {wire.CmdRecall, true}, {wire.CmdEdit, true},
		{wire.CmdSync, true}, {wire.CmdHistory, true}, {wire.CmdConversations, true}, {wire.CmdPresence, true},
		{wire.CmdReadReceipts, true}, {wire.CmdCreateGroup, true}, {wire.CmdInvite, true}, {wire.CmdJoin, true},
		{wire.CmdLeave, true}, {wire.CmdKick, true}, {wire.CmdDismiss, true}, {wire.CmdSetRole, true},
		{wire.CmdMute, true}, {wire.CmdSetGroupProfile, true}, {wire.CmdGroupInfo, true},
		{wire.CmdHeartbeat, false}, {wire.CmdMarkRead, false}, {wire.CmdSetDND, false}, {wire.CmdBlock, false},
	} {
		c := s.login(uint64(100+i), "d")
		// The first takes the user's one token, whatever it answers; the
		// second finds the bucket empty if the command is limited.
		for n := range 2 {
			err := c.call(tt.cmd, nil, nil)
			if got := code(err) == wire.CodeRateLimited; got != (tt.limited && n == 1) {
				t.Errorf("%v, request %d: %v", tt.cmd, n+1, err)
			}
		}
	}
}

// TestUserRateKeptAcrossReconnect: a user whose devices all disconnect
// keeps their per-user bucket until it refills, so that reconnecting buys
// no fresh burst; once refilled, it is forgotten.
func TestUserRateKeptAcrossReconnect(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	s := start(t, Config{UserRateLimit: 10, UserRateBurst: 2, Now: func() time.Time { return time.Unix(0, now.Load()) }})
	c := s.login(1, "d")
	for range 2 {
		if err := c.call(wire.CmdSync, &wirepb.SyncRequest{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	c.c.Close()
	waitClosed(t, s, 1)
	s.gw.forgive(now.Load()) // not refilled: kept
	again, other := s.login(1, "d"), s.login(2, "d")
	if err := again.call(wire.CmdSync, &wirepb.SyncRequest{}, nil); code(err) != wire.CodeRateLimited {
		t.Fatalf("SYNC after reconnecting with the bucket empty: %v, want RATE_LIMITED", err)
	}
	if err := other.call(wire.CmdSync, &wirepb.SyncRequest{}, nil); err != nil {
		t.Fatalf("another user: %v", err)
	}
	again.c.Close()
	other.c.Close()
	waitClosed(t, s, 1)
	waitClosed(t, s, 2)
	// Refilled at 10/s in 0.2 s: the bucket is forgotten, and the user's
	// next connection starts full.
	now.Add(int64(200 * time.Millisecond))
	s.gw.forgive(now.Load())
	if users := s.userBuckets(); len(users) != 0 {
		t.Fatalf("buckets of users %v left once refilled", users)
	}
	c = s.login(1, "d")
	for range 2 {
		if err := c.call(wire.CmdSync, &wirepb.SyncRequest{}, nil); err != nil {
			t.Fatalf("after the bucket refilled: %v", err)
		}
	}
}

// TestUserBucketOnlyUntilRefilled: a user has a bucket only while it is not
// full, online or not: an idle connection keeps none, and a user whose
// bucket was forgotten once refilled is held to the burst again.
func TestUserBucketOnlyUntilRefilled(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	s := start(t, Config{UserRateLimit: 10, UserRateBurst: 2, Now: func() time.Time { return time.Unix(0, now.Load()) }})
	busy, idle := s.login(1, "d"), s.login(2, "d")
	if err := idle.call(wire.CmdHeartbeat, nil, nil); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := busy.call(wire.CmdSync, &wirepb.SyncRequest{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	s.gw.forgive(now.Load()) // not refilled: kept
	if users := s.userBuckets(); !slices.Equal(users, []uint64{1}) {
		t.Fatalf("buckets of users %v, want only the one that spent", users)
	}
	now.Add(int64(200 * time.Millisecond))
	s.gw.forgive(now.Load())
	if users := s.userBuckets(); len(users) != 0 {
		t.Fatalf("buckets of online users %v left once refilled", users)
	}
	for range 2 {
		if err := busy.call(wire.CmdSync, &wirepb.SyncRequest{}, nil); err != nil {
			t.Fatalf("after the bucket refilled: %v", err)
		}
	}
	if err := busy.call(wire.CmdSync, &wirepb.SyncRequest{}, nil); code(err) != wire.CodeRateLimited {
		t.Fatalf("past the burst again: %v, want RATE_LIMITED", err)
	}
}

// userBuckets lists the users that have a bucket, in order.
func (s *server) userBuckets() []uint64 {
	s.gw.rateMu.Lock()
	defer s.gw.rateMu.Unlock()
	return slices.Sorted(maps.Keys(s.gw.rates))
}

// syncBuffer is a log destination safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) lines(substr string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.b.String(), substr)
}

// TestWarningsRateLimited: attacks reach the log, as one line per kind per
// interval rather than one per event, and never with the token.
func TestWarningsRateLimited(t *testing.T) {
	var out syncBuffer
	log := slog.New(slog.NewTextHandler(&out, nil))
	s := start(t, Config{Logger: log, RateLimit: 1, RateBurst: 2, Now: stoppedClock()})
	forged := gatewaytest.Token(t, 1, "d", time.Hour)
	forged = forged[:len(forged)-2] + "xx"
	for range 10 {
		c := s.dial()
		if err := c.call(wire.CmdAuth, &wirepb.AuthRequest{Token: forged}, nil); code(err) != wire.CodeUnauthenticated {
			t.Fatalf("forged token: %v", err)
		}
	}
	for i := range 5 {
		c := s.login(uint64(10+i), "d")
		var stream []byte
		for j := range 50 {
			stream, _ = wire.AppendFrame(stream, wire.Command(999), 0, uint32(j), nil)
		}
		c.c.Write(stream)
		c.closedWith()
	}
	waitValue(t, "flood disconnects", func() float64 { return testutil.ToFloat64(s.gw.metrics.disconnects[transportTCP][closedFlood]) }, 5)
	if n := out.lines("authentication failed"); n != 1 {
		t.Errorf("%d auth failure lines for 10 failures, want 1", n)
	}
	if n := out.lines("closed for flooding"); n != 1 {
		t.Errorf("%d flood lines for 5 floods of 50 frames, want 1", n)
	}
	if n := out.lines(forged[:20]); n != 0 {
		t.Errorf("the token is in the log")
	}
	// The next line of a kind, an interval later, tells how many were held
	// back.
	s.gw.warn.mu.Lock()
	s.gw.warn.last[warnAuthFailed] = time.Time{}
	s.gw.warn.mu.Unlock()
	s.dial().call(wire.CmdHeartbeat, nil, nil)
	waitValue(t, "auth failure lines", func() float64 { return float64(out.lines("authentication failed")) }, 2)
	if n := out.lines("suppressed=9"); n != 1 {
		t.Errorf("no line tells of the 9 held back:\n%s", out.b.String())
	}
}

// TestFloodDebtInherited: a user whose connection was closed as a flood does
// not get a fresh burst by reconnecting; once the debt is earned back at the
// rate, they do.
func TestFloodDebtInherited(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	s := start(t, Config{RateLimit: 10, RateBurst: 5, Now: func() time.Time { return time.Unix(0, now.Load()) }})
	flooder := s.login(1, "d")
	var stream []byte
	for i := range 20 {
		stream, _ = wire.AppendFrame(stream, wire.Command(999), 0, uint32(i+10), nil)
	}
	flooder.c.Write(stream)
	if got := flooder.closedWith(); got != 0 {
		t.Fatalf("flood closed with ERROR %d, want a RATE_LIMITED response and close", got)
	}
	again := s.login(1, "d")
	if err := again.call(wire.CmdHeartbeat, nil, nil); code(err) != wire.CodeRateLimited {
		t.Fatalf("first request after reconnecting: %v, want RATE_LIMITED", err)
	}
	again.closedWith()
	if err := s.login(2, "d").call(wire.CmdHeartbeat, nil, nil); err != nil {
		t.Fatalf("another user: %v", err)
	}
	waitValue(t, "flood disconnects", func() float64 { return testutil.ToFloat64(s.gw.metrics.disconnects[transportTCP][closedFlood]) }, 2)
	// The debt (7 frames: 5 beyond the burst, one to close, one more after
	// reconnecting) and the burst (5) come back at 10/s: in 1.2 s.
	now.Add(int64(1200 * time.Millisecond))
	s.gw.forgive(now.Load())
	s.gw.mu.RLock()
	owed := len(s.gw.debts)
	s.gw.mu.RUnlock()
	if owed != 0 {
		t.Fatalf("%d debts left once earned back", owed)
	}
	if err := s.login(1, "d").call(wire.CmdHeartbeat, nil, nil); err != nil {
		t.Fatalf("after the debt was earned back: %v", err)
	}
}
