package gateway

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/internal/gatewaytest"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

func createGroup(t *testing.T, c *conn, members ...uint64) uint64 {
	t.Helper()
	var resp wirepb.CreateGroupResponse
	if err := c.call(wire.CmdCreateGroup, &wirepb.CreateGroupRequest{Members: members}, &resp); err != nil {
		t.Fatal(err)
	}
	return resp.Group.Id
}

func TestSendPushesToEveryDevice(t *testing.T) {
	s := start(t, Config{})
	alice, alice2, bob := s.login(1, "phone"), s.login(1, "laptop"), s.login(2, "phone")
	conv := createGroup(t, alice, 2)
	var ack wirepb.SendAck
	if err := bob.call(wire.CmdSend, &wirepb.SendRequest{Conv: conv, ClientMsgId: "b1", Kind: 1, Body: []byte("hi")}, &ack); err != nil {
		t.Fatal(err)
	}
	if ack.ConvSeq != 2 || ack.MsgId == 0 || ack.Duplicate {
		t.Fatalf("ack %+v", &ack)
	}
	for name, c := range map[string]*conn{"alice phone": alice, "alice laptop": alice2, "bob": bob} {
		es := c.pushes(2)
		if es[0].Seq != 1 || es[0].Kind != 0x8001 || es[1].Seq != 2 || string(es[1].Message.GetBody()) != "hi" || es[1].Message.Sender != 2 {
			t.Fatalf("%s pushes %v", name, es)
		}
	}
	// A resend is answered with the first result, and pushes nothing new.
	var again wirepb.SendAck
	if err := bob.call(wire.CmdSend, &wirepb.SendRequest{Conv: conv, ClientMsgId: "b1", Kind: 1, Body: []byte("hi")}, &again); err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || again.MsgId != ack.MsgId {
		t.Fatalf("resend ack %+v", &again)
	}
	var sync wirepb.SyncResponse
	if err := alice2.call(wire.CmdSync, &wirepb.SyncRequest{AfterSeq: 0}, &sync); err != nil {
		t.Fatal(err)
	}
	if len(sync.Entries) != 2 || sync.HeadSeq != 2 || sync.HasMore {
		t.Fatalf("sync %v", &sync)
	}
}

func TestAuthRequired(t *testing.T) {
	s := start(t, Config{})
	tests := []struct {
		name  string
		cmd   wire.Command
		token string
		want  wire.Code
	}{
		{"command before auth", wire.CmdSync, "", wire.CodeUnauthenticated},
		{"forged token", wire.CmdAuth, gatewaytest.Token(t, 1, "d", time.Hour)[:20] + "x.yy", wire.CodeUnauthenticated},
		{"garbage token", wire.CmdAuth, "not a token", wire.CodeUnauthenticated},
		{"expired token", wire.CmdAuth, gatewaytest.Token(t, 1, "d", -time.Second), wire.CodeTokenExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := s.dial()
			var req = &wirepb.AuthRequest{Token: tt.token}
			err := c.call(tt.cmd, req, nil)
			if code(err) != tt.want {
				t.Fatalf("err %v, want code %d", err, tt.want)
			}
			if got := c.closedWith(); got != 0 {
				t.Fatalf("extra ERROR frame %d", got)
			}
		})
	}
}

func TestBadFrames(t *testing.T) {
	s := start(t, Config{MaxFrame: 1024})
	t.Run("oversized", func(t *testing.T) {
		c := s.login(1, "d")
		c.c.Write(rawHeader(2000, wire.Version, wire.CmdSend, 9))
		if got := c.closedWith(); got != wire.CodeFrameTooLarge {
			t.Fatalf("closed with %d", got)
		}
	})
	t.Run("wrong version", func(t *testing.T) {
		c := s.dial()
		c.c.Write(rawHeader(0, 7, wire.CmdAuth, 1))
		if got := c.closedWith(); got != wire.CodeVersion {
			t.Fatalf("closed with %d", got)
		}
	})
	t.Run("unknown command and malformed body keep the connection", func(t *testing.T) {
		c := s.login(1, "d")
		if err := c.call(wire.Command(999), nil, nil); code(err) != wire.CodeUnknownCommand {
			t.Fatalf("unknown command: %v", err)
		}
		c.next++
		bad := append(rawHeader(3, wire.Version, wire.CmdSend, c.next), 0xff, 0xff, 0xff)
		c.c.Write(bad)
		f, err := c.read()
		if err != nil || f.Flags&wire.FlagError == 0 || f.RequestID != c.next {
			t.Fatalf("malformed body: %+v, %v", f.Header, err)
		}
		var e wirepb.Error
		wire.Decode(f.Body, &e)
		if wire.Code(e.Code) != wire.CodeBadRequest {
			t.Fatalf("malformed body code %d", e.Code)
		}
		if err := c.call(wire.CmdHeartbeat, nil, nil); err != nil {
			t.Fatalf("connection unusable after errors: %v", err)
		}
	})
	t.Run("truncated frame then close", func(t *testing.T) {
		c := s.login(1, "d")
		frame, _ := wire.AppendFrame(nil, wire.CmdHeartbeat, 0, 5, &wirepb.SyncRequest{AfterSeq: 1})
		c.c.Write(frame[:len(frame)-1])
		c.c.Close() // the server drops the half frame with the connection
		ok := s.login(1, "d2")
		if err := ok.call(wire.CmdHeartbeat, nil, nil); err != nil {
			t.Fatal(err)
		}
	})
}

// TestFraming writes frames split at every byte and many frames in one
// write: every request gets its response, in order.
func TestFraming(t *testing.T) {
	s := start(t, Config{})
	c := s.login(1, "d")
	var stream []byte
	const n = 40
	for i := range n {
		stream, _ = wire.AppendFrame(stream, wire.CmdHeartbeat, 0, uint32(100+i), nil)
	}
	// First byte by byte, then everything else in one write.
	split := len(stream) / 4
	for i := range split {
		c.c.Write(stream[i : i+1])
		time.Sleep(100 * time.Microsecond)
	}
	c.c.Write(stream[split:])
	for i := range n {
		f, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		if f.RequestID != uint32(100+i) || f.Command != wire.CmdHeartbeat {
			t.Fatalf("response %d: %+v", i, f.Header)
		}
	}
}

func TestMembershipOverTheWire(t *testing.T) {
	s := start(t, Config{})
	alice, eve := s.login(1, "d"), s.login(9, "d")
	conv := createGroup(t, alice, 2)
	err := eve.call(wire.CmdSend, &wirepb.SendRequest{Conv: conv, ClientMsgId: "x", Kind: 1}, nil)
	if code(err) != wire.CodeNotMember {
		t.Fatalf("non-member send: %v", err)
	}
	err = eve.call(wire.CmdHistory, &wirepb.HistoryRequest{Conv: conv}, nil)
	if code(err) != wire.CodeNotMember {
		t.Fatalf("non-member history: %v", err)
	}
	err = eve.call(wire.CmdGroupInfo, &wirepb.ConvRequest{Conv: conv}, nil)
	if code(err) != wire.CodeNotMember {
		t.Fatalf("non-member group info: %v", err)
	}
	err = alice.call(wire.CmdSend, &wirepb.SendRequest{Conv: conv, ClientMsgId: "y", Kind: 0x8001}, nil)
	if code(err) != wire.CodeInvalid {
		t.Fatalf("system kind: %v", err)
	}
}

func TestReplacedDevice(t *testing.T) {
	s := start(t, Config{})
	old := s.login(1, "phone")
	s.login(1, "phone")
	if got := old.closedWith(); got != wire.CodeReplaced {
		t.Fatalf("old connection closed with %d", got)
	}
}

func TestRateLimit(t *testing.T) {
	s := start(t, Config{RateLimit: 1, RateBurst: 3})
	c := s.login(1, "d") // AUTH took one token
	var limited int
	for range 5 {
		err := c.call(wire.CmdHeartbeat, nil, nil)
		if code(err) == wire.CodeRateLimited {
			limited++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if limited != 3 {
		t.Fatalf("%d of 5 requests limited, want 3", limited)
	}
}

func TestIdleAndAuthTimeouts(t *testing.T) {
	s := start(t, Config{Heartbeat: 300 * time.Millisecond, AuthTimeout: 300 * time.Millisecond})
	silent := s.login(1, "d")
	never := s.dial()
	if got := silent.closedWith(); got != wire.CodeIdle {
		t.Fatalf("idle connection closed with %d", got)
	}
	if got := never.closedWith(); got != wire.CodeUnauthenticated {
		t.Fatalf("unauthenticated connection closed with %d", got)
	}
}

// TestSlowReader never reads while a flood of pushes arrives: the server
// closes it rather than buffer without bound, and the user loses nothing.
func TestSlowReader(t *testing.T) {
	var out syncBuffer
	// The sender gets its own messages too, and a delivery loop that lags
	// behind the acks hands it several at once: MaxOutbound leaves room for
	// 16 of them, so that only the reader that stopped overflows (the 9 MB
	// sent exceed the 4 MB kernel send buffer and the cap together).
	s := start(t, Config{MaxOutbound: 1 << 20, RateLimit: 1e6, RateBurst: 1e6,
		Logger: slog.New(slog.NewTextHandler(&out, nil))})
	sender, slow := s.login(1, "d"), s.login(2, "d")
	slow.c.(*net.TCPConn).SetReadBuffer(4096)
	conv := createGroup(t, sender, 2)
	body := bytes.Repeat([]byte("x"), 60<<10)
	const n = 150 // 9 MB: more than the kernel buffers between the two
	for i := range n {
		if err := sender.call(wire.CmdSend, &wirepb.SendRequest{Conv: conv, ClientMsgId: fmt.Sprint(i), Kind: 1, Body: body}, nil); err != nil {
			t.Fatal(err)
		}
		sender.push = nil
	}
	// The server closed the connection (its ERROR frame queues behind the
	// backlog, so the client may not read it soon: don't wait for it).
	waitClosed(t, s, 2)
	waitValue(t, "slow-reader disconnects", func() float64 {
		return testutil.ToFloat64(s.gw.metrics.disconnects[transportTCP][closedSlowReader])
	}, 1)
	if n := out.lines("slow reader closed"); n != 1 {
		t.Fatalf("%d log lines of the slow reader, want 1", n)
	}
	again := s.login(2, "d2")
	var last uint64
	for more := true; more; {
		var sync wirepb.SyncResponse
		if err := again.call(wire.CmdSync, &wirepb.SyncRequest{AfterSeq: last, Limit: 1000}, &sync); err != nil {
			t.Fatal(err)
		}
		for _, e := range sync.Entries {
			if e.Seq != last+1 {
				t.Fatalf("resync: seq %d after %d", e.Seq, last)
			}
			last = e.Seq
		}
		more = sync.HasMore
	}
	if last != n+1 {
		t.Fatalf("resync ended at %d, want %d", last, n+1)
	}
}

// waitClosed waits until the server has closed every session of user but
// those opened later.
func waitClosed(t *testing.T, s *server, user uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.gw.mu.RLock()
		n := len(s.gw.byUser[user])
		s.gw.mu.RUnlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("user %d still has %d sessions", user, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gated holds every send until its gate opens.
type gated struct {
	Service
	gate    chan struct{}
	waiting atomic.Int32
}

func (g *gated) SendMessage(ctx context.Context, sender, conv uint64, m inbox.Outgoing) (inbox.SendResult, error) {
	g.waiting.Add(1)
	<-g.gate
	return g.Service.SendMessage(ctx, sender, conv, m)
}

// TestWorkersStartAsNeeded: a worker starts when a queued request finds
// none waiting, up to Config.Workers, and not before.
func TestWorkersStartAsNeeded(t *testing.T) {
	g := &gated{gate: make(chan struct{})}
	s := start(t, Config{Workers: 3}, func(svc Service) Service { g.Service = svc; return g })
	var once sync.Once
	release := func() { once.Do(func() { close(g.gate) }) }
	t.Cleanup(release) // before the server stops: it waits for the held
	if n := s.gw.started.Load(); n != 1 {
		t.Fatalf("%d workers before any request, want 1", n)
	}
	var conns []*conn
	for user := range uint64(4) {
		conns = append(conns, s.login(user+1, "d"))
	}
	// Each held SEND holds its worker: the next request starts another.
	for i, c := range conns[:3] {
		c.send(wire.CmdSend, &wirepb.SendRequest{Conv: 1, ClientMsgId: "m", Kind: 1})
		waitValue(t, "held sends", func() float64 { return float64(g.waiting.Load()) }, float64(i+1))
	}
	// All three held: the last request waits for one of them.
	last := conns[3]
	last.send(wire.CmdHeartbeat, nil)
	waitValue(t, "sessions waiting for a worker", func() float64 { return float64(len(s.gw.ready)) }, 1)
	if n := s.gw.started.Load(); n != 3 {
		t.Fatalf("%d workers started, want the bound, 3", n)
	}
	release()
	for i, c := range conns {
		want := wire.CmdSend
		if c == last {
			want = wire.CmdHeartbeat
		}
		if f, err := c.read(); err != nil || f.Command != want {
			t.Fatalf("connection %d: %v, %v; want the response to %v", i, f.Command, err, want)
		}
	}
}

func TestShutdownAnswersInFlight(t *testing.T) {
	g := &gated{gate: make(chan struct{})}
	s := start(t, Config{}, func(svc Service) Service { g.Service = svc; return g })
	c := s.login(1, "d")
	conv := createGroup(t, c, 2)
	var burst []byte
	const n = 20
	for i := range n {
		burst, _ = wire.AppendFrame(burst, wire.CmdSend, 0, uint32(10+i), &wirepb.SendRequest{Conv: conv, ClientMsgId: fmt.Sprint(i), Kind: 1})
	}
	c.c.Write(burst)
	for g.waiting.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	go s.gw.Shutdown(context.Background())
	for !s.gw.stopping.Load() {
		time.Sleep(time.Millisecond)
	}
	close(g.gate)
	// Requests the server took before it began stopping are acknowledged;
	// any it read later are refused with SHUTTING_DOWN. None goes unanswered.
	acked, refused := 0, 0
	for {
		f, err := c.read()
		if err != nil {
			break
		}
		switch {
		case f.Command != wire.CmdSend:
		case f.Flags == wire.FlagResponse:
			acked++
		case f.Flags == wire.FlagResponse|wire.FlagError:
			var e wirepb.Error
			wire.Decode(f.Body, &e)
			if wire.Code(e.Code) != wire.CodeShuttingDown {
				t.Fatalf("send refused with %d", e.Code)
			}
			refused++
		}
	}
	if acked == 0 || acked+refused != n {
		t.Fatalf("%d acknowledged and %d refused of %d sends", acked, refused, n)
	}
}

// TestConversationsPages lists more conversations than one frame holds:
// every page fits max_frame, and the pages together hold each conversation
// once, latest activity first.
//
// The pages come from one user's list that does not change meanwhile; a
// conversation that moves up between two requests is the client's to merge
// (docs/protocol.md).
func TestConversationsPages(t *testing.T) {
	const maxFrame, groups = 4096, 12
	s := start(t, Config{MaxFrame: maxFrame})
	alice, bob := s.login(1, "d"), s.login(2, "d")
	body := bytes.Repeat([]byte("x"), 1000) // four last messages fill a frame
	var want []uint64
	for i := range groups {
		conv := createGroup(t, alice, 2)
		if err := alice.call(wire.CmdSend, &wirepb.SendRequest{Conv: conv, ClientMsgId: fmt.Sprint(i), Kind: 1, Body: body}, nil); err != nil {
			t.Fatal(err)
		}
		want = append(want, conv)
	}
	var got []uint64
	var last *wirepb.Message
	pages := 0
	for more := true; more; pages++ {
		var resp wirepb.ConversationsResponse
		if err := bob.call(wire.CmdConversations, &wirepb.ConversationsRequest{Offset: uint32(len(got))}, &resp); err != nil {
			t.Fatal(err)
		}
		if len(resp.Conversations) == 0 {
			t.Fatalf("page %d is empty", pages)
		}
		for _, c := range resp.Conversations {
			if last != nil && c.Last.TimeMs > last.TimeMs {
				t.Errorf("conversation %d (last at %d) after one last at %d", c.Conv, c.Last.TimeMs, last.TimeMs)
			}
			got, last = append(got, c.Conv), c.Last
		}
		more = resp.HasMore
	}
	slices.Sort(got)
	slices.Sort(want)
	if bob.largest > maxFrame {
		t.Errorf("a frame of %d bytes, max_frame %d", bob.largest, maxFrame)
	}
	if pages < 3 {
		t.Errorf("%d conversations in %d pages: not cut", groups, pages)
	}
	if !slices.Equal(got, want) {
		t.Errorf("conversations %v, want %v", got, want)
	}
}

// TestConversationsPageLimit: however small the conversations, a page holds
// at most wire.MaxConversationsLimit of them, so that its cost is bounded
// by the page and not by the length of the user's list.
func TestConversationsPageLimit(t *testing.T) {
	const groups = wire.MaxConversationsLimit + 30
	s := start(t, Config{})
	alice, bob := s.login(1, "d"), s.login(2, "d")
	for range groups {
		createGroup(t, alice, 2)
	}
	var sizes []int
	seen := make(map[uint64]bool)
	for more := true; more; {
		var resp wirepb.ConversationsResponse
		if err := bob.call(wire.CmdConversations, &wirepb.ConversationsRequest{Offset: uint32(len(seen))}, &resp); err != nil {
			t.Fatal(err)
		}
		for _, c := range resp.Conversations {
			seen[c.Conv] = true
		}
		sizes = append(sizes, len(resp.Conversations))
		more = resp.HasMore
	}
	if !slices.Equal(sizes, []int{wire.MaxConversationsLimit, 30}) || len(seen) != groups {
		t.Fatalf("pages of %v, %d distinct conversations; want pages of [%d 30]", sizes, len(seen), wire.MaxConversationsLimit)
	}
}
