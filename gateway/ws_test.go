package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/inboxd/inboxd/internal/gatewaytest"
	"github.com/inboxd/inboxd/internal/wsconn"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// startWS runs a gateway with a WebSocket listener beside its TCP one.
func startWS(t *testing.T, cfg Config) *server {
	t.Helper()
	cfg.WSAddr = gatewaytest.WSAddr
	return start(t, cfg)
}

func (s *server) wsURL() string { return "ws://" + s.gw.WSAddr().String() + wire.WSPath }

// dialWS opens a WebSocket connection with the given Origin header (none
// if empty).
func (s *server) dialWS(origin string) *conn {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := wsconn.Dial(ctx, s.wsURL(), wsconn.Options{Origin: origin})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	return &conn{t: s.t, c: c}
}

func (s *server) loginWS(user uint64, device string) *conn {
	s.t.Helper()
	c := s.dialWS("")
	var resp wirepb.AuthResponse
	if err := c.call(wire.CmdAuth, &wirepb.AuthRequest{Token: gatewaytest.Token(s.t, user, device, time.Hour)}, &resp); err != nil {
		s.t.Fatalf("auth %d/%s over WebSocket: %v", user, device, err)
	}
	return c
}

// wsClosed reads until the server closes the WebSocket connection and
// returns the close frame's code, and the ERROR frame's code if one came.
func (c *conn) wsClosed() (ws.StatusCode, wire.Code) {
	c.t.Helper()
	var got wire.Code
	for {
		f, err := c.read()
		var closed *wsconn.CloseError
		switch {
		case errors.As(err, &closed):
			return closed.Code, got
		case err != nil:
			c.t.Fatalf("waiting for a close frame: %v", err)
		case f.Command == wire.CmdError || f.Flags&wire.FlagError != 0:
			var e wirepb.Error
			wire.Decode(f.Body, &e)
			got = wire.Code(e.Code)
		case f.Command == wire.CmdPush:
			c.keepPush(f)
		}
	}
}

func (c *conn) ws() *wsconn.Conn { return c.c.(*wsconn.Conn) }

// TestWSEndToEnd runs a user's day over WebSocket: AUTH, SEND, pushes and
// SYNC, with a TCP device and a WebSocket device of the same user both
// receiving every push.
func TestWSEndToEnd(t *testing.T) {
	s := startWS(t, Config{})
	wsPhone := s.loginWS(1, "browser")
	tcpPhone := s.login(1, "phone")
	bob := s.loginWS(2, "browser")
	conv := createGroup(t, wsPhone, 2)
	var ack wirepb.SendAck
	if err := bob.call(wire.CmdSend, &wirepb.SendRequest{Conv: conv, ClientMsgId: "b1", Kind: 1, Body: []byte("over ws")}, &ack); err != nil {
		t.Fatal(err)
	}
	if ack.ConvSeq != 2 || ack.Duplicate {
		t.Fatalf("ack %+v", &ack)
	}
	for name, c := range map[string]*conn{"ws device": wsPhone, "tcp device": tcpPhone, "sender over ws": bob} {
		es := c.pushes(2)
		if es[1].Seq != 2 || string(es[1].Message.GetBody()) != "over ws" || es[1].Message.Sender != 2 {
			t.Fatalf("%s pushes %v", name, es)
		}
	}
	var sync wirepb.SyncResponse
	if err := wsPhone.call(wire.CmdSync, &wirepb.SyncRequest{AfterSeq: 1}, &sync); err != nil {
		t.Fatal(err)
	}
	if len(sync.Entries) != 1 || sync.Entries[0].Seq != 2 || sync.HeadSeq != 2 || sync.HasMore {
		t.Fatalf("sync %v", &sync)
	}
	// Heartbeats and WebSocket pings both keep the connection; a ping is
	// answered with a pong, which the client library takes.
	if err := wsPhone.ws().WriteFrame(ws.NewPingFrame([]byte("p"))); err != nil {
		t.Fatal(err)
	}
	if err := wsPhone.call(wire.CmdHeartbeat, nil, nil); err != nil {
		t.Fatal(err)
	}

	m := s.gw.metrics
	if got := testutil.ToFloat64(m.framesIn[transportWS][wire.CmdSend]); got != 1 {
		t.Fatalf("SEND frames in over ws = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.accepted[transportWS]); got != 2 {
		t.Fatalf("ws connections accepted = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.accepted[transportTCP]); got != 1 {
		t.Fatalf("tcp connections accepted = %v, want 1", got)
	}

	// The same device connecting again replaces the WebSocket connection:
	// the ERROR frame, then close code 4000 + REPLACED.
	s.login(1, "browser")
	if code, e := wsPhone.wsClosed(); code != wire.WSCloseError+ws.StatusCode(wire.CodeReplaced) || e != wire.CodeReplaced {
		t.Fatalf("replaced: close %d, error %v", code, e)
	}
}

// TestWSFragmentsReassembled sends a SEND in three fragments, with a ping
// between them: the server puts the message together.
func TestWSFragmentsReassembled(t *testing.T) {
	s := startWS(t, Config{})
	c := s.loginWS(1, "d")
	conv := createGroup(t, c)
	frame, _ := wire.AppendFrame(nil, wire.CmdSend, 0, 99, &wirepb.SendRequest{Conv: conv, ClientMsgId: "frag", Kind: 1, Body: []byte("in three parts")})
	w := c.ws()
	for _, f := range []ws.Frame{
		ws.NewFrame(ws.OpBinary, false, nil), // an empty first fragment is a start too
		ws.NewFrame(ws.OpContinuation, false, frame[:5]),
		ws.NewPingFrame(nil),
		ws.NewFrame(ws.OpContinuation, false, frame[5:20]),
		ws.NewFrame(ws.OpContinuation, true, frame[20:]),
	} {
		if err := w.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	for {
		f, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		if f.RequestID != 99 {
			continue
		}
		var ack wirepb.SendAck
		if f.Flags&wire.FlagError != 0 || wire.Decode(f.Body, &ack) != nil || ack.ConvSeq != 2 {
			t.Fatalf("response %+v %x", f.Header, f.Body)
		}
		return
	}
}

// TestWSBadInput sends what the WebSocket listener refuses, each over a
// real connection of an authenticated user, and checks the close code and
// that nothing was stored.
func TestWSBadInput(t *testing.T) {
	send := func(id uint32, conv uint64) []byte {
		f, _ := wire.AppendFrame(nil, wire.CmdSend, 0, id, &wirepb.SendRequest{Conv: conv, ClientMsgId: "bad", Kind: 1, Body: []byte("x")})
		return f
	}
	tests := []struct {
		name  string
		bad   func(w *wsconn.Conn, conv uint64) error
		close ws.StatusCode
		error wire.Code // the ERROR frame before the close, if any
	}{
		{"text message", func(w *wsconn.Conn, conv uint64) error {
			return w.WriteMessage(ws.OpText, send(10, conv))
		}, ws.StatusUnsupportedData, 0},
		{"frame split across two messages", func(w *wsconn.Conn, conv uint64) error {
			f := send(10, conv)
			if err := w.WriteMessage(ws.OpBinary, f[:7]); err != nil {
				return err
			}
			w.WriteMessage(ws.OpBinary, f[7:]) // the server may have closed already
			return nil
		}, ws.StatusInvalidFramePayloadData, 0},
		{"two frames in one message", func(w *wsconn.Conn, conv uint64) error {
			return w.WriteMessage(ws.OpBinary, append(send(10, conv), send(11, conv)...))
		}, ws.StatusInvalidFramePayloadData, 0},
		{"oversized message", func(w *wsconn.Conn, conv uint64) error {
			return startMessage(w, ws.OpBinary, true, wire.DefaultMaxFrame+1)
		}, ws.StatusMessageTooBig, 0},
		{"oversized fragmented message", func(w *wsconn.Conn, conv uint64) error {
			quarter := make([]byte, wire.DefaultMaxFrame/4)
			for _, op := range []ws.OpCode{ws.OpBinary, ws.OpContinuation, ws.OpContinuation} {
				if err := w.WriteFrame(ws.NewFrame(op, false, quarter)); err != nil {
					return err
				}
			}
			// The fourth quarter is one byte too many.
			return startMessage(w, ws.OpContinuation, true, len(quarter)+1)
		}, ws.StatusMessageTooBig, 0},
		{"unmasked frame", func(w *wsconn.Conn, conv uint64) error {
			return ws.WriteFrame(w.Conn, ws.NewBinaryFrame(send(10, conv)))
		}, ws.StatusProtocolError, 0},
		{"continuation without a start", func(w *wsconn.Conn, conv uint64) error {
			return w.WriteFrame(ws.NewFrame(ws.OpContinuation, true, send(10, conv)))
		}, ws.StatusProtocolError, 0},
		{"wrong version in the frame", func(w *wsconn.Conn, conv uint64) error {
			f := send(10, conv)
			f[4] = 7
			return w.WriteMessage(ws.OpBinary, f)
		}, wire.WSCloseError + ws.StatusCode(wire.CodeVersion), wire.CodeVersion},
		{"client closes", func(w *wsconn.Conn, conv uint64) error {
			return w.WriteFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(4321, "bye")))
		}, 4321, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startWS(t, Config{})
			c := s.loginWS(1, "d")
			conv := createGroup(t, c)
			c.pushes(1)
			if err := tt.bad(c.ws(), conv); err != nil {
				t.Fatal(err)
			}
			code, e := c.wsClosed()
			if code != tt.close || e != tt.error {
				t.Fatalf("close %d after error %v, want %d after %v", code, e, tt.close, tt.error)
			}
			if head, err := s.svc.Head(context.Background(), 1); err != nil || head != 1 {
				t.Fatalf("inbox head %d (%v): something was stored", head, err)
			}
		})
	}
}

// TestWSHandshakeRefused checks the HTTP answers to handshakes the listener
// refuses, and that an Origin is admitted only when listed.
func TestWSHandshakeRefused(t *testing.T) {
	s := startWS(t, Config{WSOrigins: []string{"https://chat.example.com"}})
	upgrade := "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	tests := []struct {
		name    string
		request string
		status  int
	}{
		{"plain HTTP request", "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusBadRequest},
		{"wrong origin", "GET /ws HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n" + upgrade + "\r\n", http.StatusForbidden},
		{"wrong path", "GET /other HTTP/1.1\r\nHost: x\r\n" + upgrade + "\r\n", http.StatusNotFound},
		{"POST", "POST /ws HTTP/1.1\r\nHost: x\r\n" + upgrade + "\r\n", http.StatusMethodNotAllowed},
		{"WebSocket version 8", "GET /ws HTTP/1.1\r\nHost: x\r\n" + strings.Replace(upgrade, "Version: 13", "Version: 8", 1) + "\r\n", http.StatusUpgradeRequired},
		{"not HTTP at all", string(rawHeader(0, 1, wire.CmdAuth, 1)) + "\r\n\r\n", http.StatusBadRequest},
		{"handshake too large", "GET /ws HTTP/1.1\r\nHost: x\r\nCookie: " + string(bytes.Repeat([]byte("a"), maxHandshake)) + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"listed origin", "GET /ws HTTP/1.1\r\nHost: x\r\nOrigin: https://chat.example.com\r\n" + upgrade + "\r\n", http.StatusSwitchingProtocols},
		{"no origin: a native client", "GET /ws?v=1 HTTP/1.1\r\nHost: x\r\n" + upgrade + "\r\n", http.StatusSwitchingProtocols},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", s.gw.WSAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(nc, tt.request); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
		})
	}
	if got := testutil.ToFloat64(s.gw.metrics.disconnects[transportWS][closedHandshake]); got != 7 {
		t.Fatalf("handshake disconnects %v, want 7", got)
	}
	// A browser from a listed origin gets through to AUTH.
	var resp wirepb.AuthResponse
	if err := s.dialWS("https://chat.example.com").call(wire.CmdAuth, &wirepb.AuthRequest{Token: gatewaytest.Token(t, 1, "b", time.Hour)}, &resp); err != nil || resp.UserId != 1 {
		t.Fatalf("auth from a listed origin: %v", err)
	}
}

// TestWSConnectionCap checks that a WebSocket connection over a cap is
// refused with an HTTP answer before its handshake is read: 503 at the cap
// on unauthenticated connections, 429 at the per-address cap.
func TestWSConnectionCap(t *testing.T) {
	for _, tt := range []struct {
		name   string
		cfg    Config
		status int
	}{
		{"unauthenticated", Config{MaxUnauthenticated: 1}, http.StatusServiceUnavailable},
		{"per address", Config{MaxConnsPerAddr: 1, LimitLoopback: true}, http.StatusTooManyRequests},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startWS(t, tt.cfg)
			s.dialWS("") // holds the one place
			nc, err := net.Dial("tcp", s.gw.WSAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status || resp.Header.Get("Retry-After") != "1" {
				t.Fatalf("status %d, Retry-After %q; want %d and 1", resp.StatusCode, resp.Header.Get("Retry-After"), tt.status)
			}
		})
	}
}

// TestWSPreAuthLimit checks that the pre-AUTH frame limit holds over
// WebSocket too, and that the TCP listener does not speak WebSocket.
func TestWSPreAuthLimit(t *testing.T) {
	s := startWS(t, Config{})
	c := s.dialWS("")
	if err := startMessage(c.ws(), ws.OpBinary, true, wire.PreAuthMaxFrame+1); err != nil {
		t.Fatal(err)
	}
	if code, _ := c.wsClosed(); code != ws.StatusMessageTooBig {
		t.Fatalf("close %d, want %d", code, ws.StatusMessageTooBig)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if wc, err := wsconn.Dial(ctx, "ws://"+s.addr+wire.WSPath, wsconn.Options{}); err == nil {
		wc.Close()
		t.Fatal("a WebSocket handshake succeeded on the TCP listener")
	}
}

// startMessage writes the header of a frame of n bytes and a few of them:
// the server refuses it at the header, and the client must not leave more
// unread, or the server's close would reset the connection before the
// close frame is read.
func startMessage(w *wsconn.Conn, op ws.OpCode, fin bool, n int) error {
	h := ws.Header{Fin: fin, OpCode: op, Length: int64(n), Masked: true, Mask: ws.NewMask()}
	if err := ws.WriteHeader(w.Conn, h); err != nil {
		return err
	}
	_, err := w.Conn.Write(make([]byte, 16))
	return err
}

func TestAppendWSHeader(t *testing.T) {
	for _, n := range []int{0, 125, 126, 0xffff, 0x10000, wire.DefaultMaxFrame} {
		h, err := ws.ReadHeader(bytes.NewReader(appendWSHeader(nil, ws.OpBinary, n)))
		if err != nil || !h.Fin || h.OpCode != ws.OpBinary || h.Masked || h.Length != int64(n) {
			t.Fatalf("length %d: header %+v, %v", n, h, err)
		}
		if size := ws.HeaderSize(h); size != len(appendWSHeader(nil, ws.OpBinary, n)) {
			t.Fatalf("length %d: %d header bytes, the library says %d", n, len(appendWSHeader(nil, ws.OpBinary, n)), size)
		}
	}
}

// TestWSLimits checks that the limits on what a client may cost hold over
// WebSocket as over TCP, each counted under the ws transport.
func TestWSLimits(t *testing.T) {
	rateLimited := wire.WSCloseError + ws.StatusCode(wire.CodeRateLimited)
	t.Run("flood", func(t *testing.T) {
		s := startWS(t, Config{RateLimit: 1, RateBurst: 5, Now: stoppedClock()})
		c := s.loginWS(1, "d")
		var stream []byte
		for i := range 100 {
			stream, _ = wire.AppendFrame(stream, wire.CmdHeartbeat, 0, uint32(10+i), &wirepb.Empty{})
		}
		c.c.Write(stream) // the server may close before it has all
		if code, e := c.wsClosed(); code != rateLimited || e != wire.CodeRateLimited {
			t.Fatalf("close %d after %v, want %d after RATE_LIMITED", code, e, rateLimited)
		}
		waitValue(t, "ws flood disconnects", func() float64 { return testutil.ToFloat64(s.gw.metrics.disconnects[transportWS][closedFlood]) }, 1)
	})
	// WebSocket frames that carry no inboxd frame count against the rate
	// too: a ping costs a pong, and unasked-for pongs and the fragments of a
	// message that never ends cost the event loop as much as any frame.
	for _, tt := range []struct {
		name  string
		frame func(i int) ws.Frame
	}{
		{"ping flood", func(int) ws.Frame { return ws.NewPingFrame(nil) }},
		{"pong flood", func(int) ws.Frame { return ws.NewPongFrame(nil) }},
		{"fragment flood", func(i int) ws.Frame {
			op := ws.OpContinuation
			if i == 0 {
				op = ws.OpBinary
			}
			return ws.NewFrame(op, false, nil)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startWS(t, Config{RateLimit: 1, RateBurst: 5, Now: stoppedClock()})
			c := s.loginWS(1, "d")
			for i := range 20 {
				if err := c.ws().WriteFrame(tt.frame(i)); err != nil {
					break // closed already
				}
			}
			if code, _ := c.wsClosed(); code != rateLimited {
				t.Fatalf("close %d, want %d", code, rateLimited)
			}
			waitValue(t, "ws flood disconnects", func() float64 { return testutil.ToFloat64(s.gw.metrics.disconnects[transportWS][closedFlood]) }, 1)
		})
	}
	t.Run("unauthenticated bytes", func(t *testing.T) {
		s := startWS(t, Config{MaxUnauthenticatedBytes: 10 << 10})
		bytesHeld := func() float64 { return float64(s.gw.unauthBytes.Load()) }
		// partial sends most of a message the size of the largest AUTH.
		partial := func() *conn {
			c := s.dialWS("")
			h := ws.Header{Fin: true, OpCode: ws.OpBinary, Length: wire.PreAuthMaxFrame, Masked: true, Mask: ws.NewMask()}
			if err := ws.WriteHeader(c.ws().Conn, h); err != nil {
				t.Fatal(err)
			}
			if _, err := c.ws().Conn.Write(make([]byte, wire.PreAuthMaxFrame-100)); err != nil {
				t.Fatal(err)
			}
			return c
		}
		partial()
		waitValue(t, "held bytes", func() float64 { return min(bytesHeld(), 1) }, 1)
		partial()
		waitValue(t, "held bytes", func() float64 { return min(bytesHeld(), 8<<10) }, 8<<10)
		third := partial()
		want := wire.WSCloseError + ws.StatusCode(wire.CodeUnavailable)
		if code, e := third.wsClosed(); code != want || e != wire.CodeUnavailable {
			t.Fatalf("third partial message: close %d after %v, want %d after UNAVAILABLE", code, e, want)
		}
		waitValue(t, "refused", func() float64 { return testutil.ToFloat64(s.gw.metrics.refused[refusedUnauthenticatedBytes]) }, 1)
	})
	t.Run("command before AUTH", func(t *testing.T) {
		s := startWS(t, Config{})
		err := s.dialWS("").call(wire.CmdHeartbeat, nil, nil)
		if code(err) != wire.CodeUnauthenticated {
			t.Fatalf("heartbeat before AUTH: %v", err)
		}
	})
	t.Run("no AUTH in time", func(t *testing.T) {
		s := startWS(t, Config{AuthTimeout: 200 * time.Millisecond})
		want := wire.WSCloseError + ws.StatusCode(wire.CodeUnauthenticated)
		if code, e := s.dialWS("").wsClosed(); code != want || e != wire.CodeUnauthenticated {
			t.Fatalf("close %d after %v, want %d", code, e, want)
		}
		// Without even a handshake, the connection is just closed.
		nc, err := net.Dial("tcp", s.gw.WSAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := nc.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("read %d bytes, %v; want the connection closed", n, err)
		}
	})
	t.Run("slow reader", func(t *testing.T) {
		s := startWS(t, Config{MaxOutbound: 256 << 10, RateLimit: 1e6, RateBurst: 1e6})
		sender, slow := s.login(1, "d"), s.loginWS(2, "d")
		slow.ws().Conn.(*net.TCPConn).SetReadBuffer(4096)
		conv := createGroup(t, sender, 2)
		body := bytes.Repeat([]byte("x"), 60<<10)
		for i := range 150 {
			if err := sender.call(wire.CmdSend, &wirepb.SendRequest{Conv: conv, ClientMsgId: fmt.Sprint(i), Kind: 1, Body: body}, nil); err != nil {
				t.Fatal(err)
			}
			sender.push = nil
		}
		waitClosed(t, s, 2)
		waitValue(t, "ws slow-reader disconnects", func() float64 {
			return testutil.ToFloat64(s.gw.metrics.disconnects[transportWS][closedSlowReader])
		}, 1)
	})
}
