package gateway

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/internal/gatewaytest"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

func TestMain(m *testing.M) {
	// gnet keeps a process-wide worker pool alive between engines.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"))
}

var secret = []byte(gatewaytest.Secret)

// server is a gateway on an inbox on an in-memory store.
type server struct {
	t    testing.TB
	gw   *Server
	svc  *inbox.Service
	addr string
}

// start runs a gateway; wrap, if given, stands between it and the inbox.
func start(t testing.TB, cfg Config, wrap ...func(Service) Service) *server {
	t.Helper()
	return startInbox(t, cfg, inbox.Config{}, wrap...)
}

// startInbox is start with the inbox service configured by icfg.
func startInbox(t testing.TB, cfg Config, icfg inbox.Config, wrap ...func(Service) Service) *server {
	t.Helper()
	cfg.Addr = gatewaytest.Addr
	cfg.Secret = secret
	gw, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc, addr := gatewaytest.StartConfig(t, gw, icfg, func(svc *inbox.Service) error {
		var front Service = svc
		for _, w := range wrap {
			front = w(front)
		}
		return gw.Serve(front)
	})
	return &server{t: t, gw: gw, svc: svc, addr: addr}
}

// conn is a raw protocol connection for tests.
type conn struct {
	t    testing.TB
	c    net.Conn
	next uint32
	buf  []byte
	push []*wirepb.Entry // pushes read while waiting for responses
	// largest is the size of the largest frame read, header included.
	largest int
}

func (s *server) dial() *conn {
	s.t.Helper()
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	return &conn{t: s.t, c: c}
}

// login dials and authenticates.
func (s *server) login(user uint64, device string) *conn {
	s.t.Helper()
	c := s.dial()
	var resp wirepb.AuthResponse
	if err := c.call(wire.CmdAuth, &wirepb.AuthRequest{Token: gatewaytest.Token(s.t, user, device, time.Hour)}, &resp); err != nil {
		s.t.Fatalf("auth %d/%s: %v", user, device, err)
	}
	return c
}

func (c *conn) send(cmd wire.Command, req proto.Message) uint32 {
	c.t.Helper()
	c.next++
	frame, err := wire.AppendFrame(nil, cmd, 0, c.next, req)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.c.Write(frame); err != nil {
		c.t.Fatal(err)
	}
	return c.next
}

// read returns the next frame, or an error if the server closed.
func (c *conn) read() (wire.Frame, error) {
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, n, err := wire.Split(c.buf, 1<<30)
		if err != nil {
			c.t.Fatal(err)
		}
		if n > 0 {
			c.largest = max(c.largest, n)
			f.Body = append([]byte(nil), f.Body...)
			c.buf = c.buf[n:]
			return f, nil
		}
		chunk := make([]byte, 64<<10)
		m, err := c.c.Read(chunk)
		if err != nil {
			return wire.Frame{}, err
		}
		c.buf = append(c.buf, chunk[:m]...)
	}
}

// protoError is an error response.
type protoError struct{ e *wirepb.Error }

func (p protoError) Error() string { return fmt.Sprintf("code %d: %s", p.e.Code, p.e.Message) }

func code(err error) wire.Code {
	var pe protoError
	if errors.As(err, &pe) {
		return wire.Code(pe.e.Code)
	}
	return 0
}

// call sends a request and waits for its response, keeping pushes aside.
func (c *conn) call(cmd wire.Command, req, resp proto.Message) error {
	c.t.Helper()
	id := c.send(cmd, req)
	for {
		f, err := c.read()
		if err != nil {
			return err
		}
		switch {
		case f.Command == wire.CmdPush:
			c.keepPush(f)
		case f.Command == wire.CmdError:
			var e wirepb.Error
			wire.Decode(f.Body, &e)
			return protoError{&e}
		case f.RequestID == id && f.Flags&wire.FlagResponse != 0:
			if f.Command != cmd {
				c.t.Fatalf("response command %v to %v", f.Command, cmd)
			}
			if f.Flags&wire.FlagError != 0 {
				var e wirepb.Error
				if err := wire.Decode(f.Body, &e); err != nil {
					c.t.Fatal(err)
				}
				return protoError{&e}
			}
			if resp == nil {
				return nil
			}
			return wire.Decode(f.Body, resp)
		default:
			c.t.Fatalf("unexpected frame %+v", f.Header)
		}
	}
}

func (c *conn) keepPush(f wire.Frame) {
	var p wirepb.Push
	if err := wire.Decode(f.Body, &p); err != nil {
		c.t.Fatal(err)
	}
	c.push = append(c.push, p.Entries...)
}

// pushes waits until n pushed entries arrived and returns them.
func (c *conn) pushes(n int) []*wirepb.Entry {
	c.t.Helper()
	for len(c.push) < n {
		f, err := c.read()
		if err != nil {
			c.t.Fatalf("waiting for %d pushes, have %d: %v", n, len(c.push), err)
		}
		if f.Command != wire.CmdPush {
			c.t.Fatalf("unexpected frame %+v", f.Header)
		}
		c.keepPush(f)
	}
	return c.push
}

// closedWith reads until the server closes, returning the ERROR frame's
// code; pushes read on the way are kept.
func (c *conn) closedWith() wire.Code {
	c.t.Helper()
	return wire.Code(c.closeError().GetCode())
}

// closeError reads until the server closes, returning the ERROR frame's
// body (nil if none came); pushes read on the way are kept.
func (c *conn) closeError() *wirepb.Error {
	c.t.Helper()
	var got *wirepb.Error
	for {
		f, err := c.read()
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
			return got
		}
		if f.Command == wire.CmdPush {
			c.keepPush(f)
		}
		if err != nil {
			c.t.Fatalf("waiting for close: %v", err)
		}
		if f.Command == wire.CmdError {
			got = new(wirepb.Error)
			wire.Decode(f.Body, got)
		}
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

func rawHeader(length uint32, version byte, cmd wire.Command, id uint32) []byte {
	h := binary.BigEndian.AppendUint32(nil, length)
	h = append(h, version, 0)
	h = binary.BigEndian.AppendUint16(h, uint16(cmd))
	return binary.BigEndian.AppendUint32(h, id)
}
