package client

import (
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// fakeServer speaks the gateway's side of the protocol on a loopback
// socket, for one user (42) with an in-memory inbox: enough to test the
// client's logic without the real server. A test changes its behaviour
// with hook, and reads what it saw under mu.
type fakeServer struct {
	t  *testing.T
	ln net.Listener
	wg sync.WaitGroup

	mu          sync.Mutex
	entries     []*wirepb.Entry // entries[i].Seq == i+1
	acks        map[string]*wirepb.SendAck
	conns       map[*fakeConn]bool
	auths       int
	syncs       []uint64 // after_seq of every SYNC
	sends       []string // client_msg_id of every SEND
	heartbeats  int
	heartbeatMs uint32
	syncLimit   int
	// hook sees every request after AUTH first; it returns true when it
	// has dealt with the request itself.
	hook func(fc *fakeConn, f wire.Frame) bool
}

const fakeUser = 42

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{
		t: t, ln: ln,
		acks:        make(map[string]*wirepb.SendAck),
		conns:       make(map[*fakeConn]bool),
		heartbeatMs: 30000,
		syncLimit:   100,
	}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.stop)
	return s
}

// configure runs f under the server's lock: tests change settings and
// read counters with it.
func (s *fakeServer) configure(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

func (s *fakeServer) setHook(h func(fc *fakeConn, f wire.Frame) bool) {
	s.configure(func() { s.hook = h })
}

func (s *fakeServer) addr() string { return s.ln.Addr().String() }

func (s *fakeServer) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		fc := &fakeConn{s: s, nc: nc}
		s.wg.Add(1)
		go fc.serve()
	}
}

// stop closes the listener and every connection, and waits for their
// goroutines.
func (s *fakeServer) stop() {
	s.ln.Close()
	s.dropAll(0)
	s.wg.Wait()
}

// connList returns the authenticated connections.
func (s *fakeServer) connList() []*fakeConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	conns := make([]*fakeConn, 0, len(s.conns))
	for fc := range s.conns {
		conns = append(conns, fc)
	}
	return conns
}

// dropAll closes every connection, after an ERROR frame with code unless
// code is 0.
func (s *fakeServer) dropAll(code wire.Code) {
	for _, fc := range s.connList() {
		if code != 0 {
			fc.send(wire.CmdError, 0, 0, &wirepb.Error{Code: uint32(code), Message: "fake"})
		}
		fc.nc.Close()
	}
}

// add appends text entries to the inbox and pushes them to every
// connection when push is set.
func (s *fakeServer) add(n int, push bool) []*wirepb.Entry {
	s.mu.Lock()
	var added []*wirepb.Entry
	for range n {
		seq := uint64(len(s.entries) + 1)
		e := textEntry(seq, "")
		s.entries = append(s.entries, e)
		added = append(added, e)
	}
	s.mu.Unlock()
	if push {
		s.pushAll(added...)
	}
	return added
}

func textEntry(seq uint64, clientMsgID string) *wirepb.Entry {
	m := &wirepb.Message{Conv: 7, ConvSeq: seq, MsgId: 1000 + seq, Sender: fakeUser, ClientMsgId: clientMsgID, Kind: 1, Body: []byte("hi"), TimeMs: int64(seq)}
	return &wirepb.Entry{Seq: seq, Conv: 7, ConvSeq: seq, MsgId: m.MsgId, Kind: 1, Message: m}
}

func (s *fakeServer) pushAll(es ...*wirepb.Entry) {
	for _, fc := range s.connList() {
		fc.push(es...)
	}
}

func (s *fakeServer) counts() (auths, heartbeats int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auths, s.heartbeats
}

// fakeConn is one client connection of the fake server.
type fakeConn struct {
	s   *fakeServer
	nc  net.Conn
	wmu sync.Mutex
}

func (fc *fakeConn) serve() {
	defer fc.s.wg.Done()
	defer func() {
		fc.s.mu.Lock()
		delete(fc.s.conns, fc)
		fc.s.mu.Unlock()
		fc.nc.Close()
	}()
	var buf []byte
	tmp := make([]byte, 4096)
	authed := false
	for {
		n, err := fc.nc.Read(tmp)
		if err != nil {
			return
		}
		buf = append(buf, tmp[:n]...)
		for {
			f, n, err := wire.Split(buf, wire.DefaultMaxFrame)
			if err != nil {
				fc.send(wire.CmdError, 0, 0, &wirepb.Error{Code: uint32(wire.CodeFrameTooLarge)})
				return
			}
			if n == 0 {
				break
			}
			f.Body = slices.Clone(f.Body)
			buf = buf[n:]
			if !authed {
				if authed = fc.auth(f); !authed {
					return
				}
				continue
			}
			fc.handle(f)
		}
	}
}

func (fc *fakeConn) auth(f wire.Frame) bool {
	if f.Command != wire.CmdAuth {
		fc.fail(f, wire.CodeUnauthenticated, "authenticate first")
		return false
	}
	var req wirepb.AuthRequest
	if err := wire.Decode(f.Body, &req); err != nil {
		fc.fail(f, wire.CodeUnauthenticated, "bad auth")
		return false
	}
	switch req.Token {
	case "good":
	case "expired":
		fc.fail(f, wire.CodeTokenExpired, "token expired")
		return false
	default:
		fc.fail(f, wire.CodeUnauthenticated, "bad token")
		return false
	}
	s := fc.s
	s.mu.Lock()
	s.auths++
	s.conns[fc] = true
	ar := &wirepb.AuthResponse{UserId: fakeUser, DeviceId: "d", HeadSeq: uint64(len(s.entries)), HeartbeatMs: s.heartbeatMs, ServerTimeMs: 1, MaxFrame: wire.DefaultMaxFrame}
	s.mu.Unlock()
	fc.respond(f, ar)
	return true
}

func (fc *fakeConn) handle(f wire.Frame) {
	s := fc.s
	s.mu.Lock()
	hook := s.hook
	s.mu.Unlock()
	if hook != nil && hook(fc, f) {
		return
	}
	switch f.Command {
	case wire.CmdHeartbeat:
		s.mu.Lock()
		s.heartbeats++
		s.mu.Unlock()
		fc.respond(f, &wirepb.Empty{})
	case wire.CmdSync:
		var req wirepb.SyncRequest
		mustDecode(s.t, f, &req)
		fc.respond(f, s.sync(req.AfterSeq))
	case wire.CmdSend:
		var req wirepb.SendRequest
		mustDecode(s.t, f, &req)
		ack, e := s.store(&req)
		fc.respond(f, ack)
		if e != nil {
			s.pushAll(e)
		}
	case wire.CmdHistory:
		var req wirepb.HistoryRequest
		mustDecode(s.t, f, &req)
		fc.respond(f, &wirepb.HistoryResponse{Messages: []*wirepb.Message{{Conv: req.Conv}}})
	default:
		if !f.Command.Known() {
			fc.fail(f, wire.CodeUnknownCommand, "unknown command")
			return
		}
		fc.respond(f, &wirepb.Empty{})
	}
}

func (s *fakeServer) sync(after uint64) *wirepb.SyncResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.syncs = append(s.syncs, after)
	resp := &wirepb.SyncResponse{HeadSeq: uint64(len(s.entries))}
	if after < uint64(len(s.entries)) {
		resp.Entries = s.entries[after:min(len(s.entries), int(after)+s.syncLimit)]
	}
	resp.HasMore = after+uint64(len(resp.Entries)) < uint64(len(s.entries))
	return resp
}

// store stores a send once per client msg id, like inbox's dedup, and
// returns the ack and the new entry (nil for a duplicate).
func (s *fakeServer) store(req *wirepb.SendRequest) (*wirepb.SendAck, *wirepb.Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sends = append(s.sends, req.ClientMsgId)
	if ack, ok := s.acks[req.ClientMsgId]; ok {
		dup := proto.Clone(ack).(*wirepb.SendAck)
		dup.Duplicate = true
		return dup, nil
	}
	e := textEntry(uint64(len(s.entries)+1), req.ClientMsgId)
	s.entries = append(s.entries, e)
	ack := &wirepb.SendAck{MsgId: e.MsgId, ConvSeq: e.ConvSeq, TimeMs: e.Message.TimeMs}
	s.acks[req.ClientMsgId] = ack
	return ack, e
}

func mustDecode(t *testing.T, f wire.Frame, m proto.Message) {
	if err := wire.Decode(f.Body, m); err != nil {
		t.Errorf("fake server: %v body: %v", f.Command, err)
	}
}

func (fc *fakeConn) send(cmd wire.Command, flags wire.Flags, id uint32, m proto.Message) {
	b, err := wire.AppendFrame(nil, cmd, flags, id, m)
	if err != nil {
		fc.s.t.Errorf("fake server: %v", err)
		return
	}
	fc.write(b)
}

func (fc *fakeConn) write(b []byte) {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	fc.nc.Write(b) // a closed connection is the client's business
}

func (fc *fakeConn) respond(f wire.Frame, m proto.Message) {
	fc.send(f.Command, wire.FlagResponse, f.RequestID, m)
}

func (fc *fakeConn) fail(f wire.Frame, code wire.Code, msg string) {
	fc.failAfter(f, code, msg, 0)
}

func (fc *fakeConn) failAfter(f wire.Frame, code wire.Code, msg string, retryAfter time.Duration) {
	fc.send(f.Command, wire.FlagResponse|wire.FlagError, f.RequestID,
		&wirepb.Error{Code: uint32(code), Message: msg, RetryAfterMs: uint32(retryAfter / time.Millisecond)})
}

func (fc *fakeConn) push(es ...*wirepb.Entry) {
	fc.send(wire.CmdPush, 0, 0, &wirepb.Push{Entries: es})
}

// collector records what OnEntry delivers.
type collector struct {
	mu   sync.Mutex
	seqs []uint64
	ids  []string // client msg ids
}

func (c *collector) onEntry(e *wirepb.Entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seqs = append(c.seqs, e.Seq)
	c.ids = append(c.ids, e.GetMessage().GetClientMsgId())
}

func (c *collector) got() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.seqs)
}

// waitFor waits until seqs from+1 … to have been delivered, and fails the
// test if anything else was.
func (c *collector) waitFor(t *testing.T, from, to uint64) {
	t.Helper()
	var want []uint64
	for s := from + 1; s <= to; s++ {
		want = append(want, s)
	}
	eventually(t, func() bool { return len(c.got()) >= len(want) })
	if got := c.got(); !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
}

func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// errIs is errors.Is with a message on failure.
func errIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want one matching %v", err, target)
	}
}
