package bench

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
	"google.golang.org/protobuf/proto"
)

// fakeNode is a node for a device to connect to over loopback TCP: it
// answers AUTH and SYNC as answer says and logs every frame it reads and
// every close. It stands in for the gateway because the answers these
// tests need cannot be had from a real one on demand: a stopping gateway
// refuses requests with SHUTTING_DOWN only while it waits for its running
// ones, and a failover's UNAVAILABLE at AUTH only between two owners.
type fakeNode struct {
	ln net.Listener
	// answer returns the error to answer the n-th frame (from 0) of cmd
	// on this node with, or nil for a success: an AuthResponse, an empty
	// last SYNC page, group createdConv.
	answer func(cmd wire.Command, n int) *wirepb.Error
	log    chan nodeEvent
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
	seen  map[wire.Command]int
}

// nodeEvent is a frame a node read (cmd), or the close of a connection
// (cmd 0), and when its answer was about to be written: after the frame
// was read and before the device could read the answer, so that the time
// between two events bounds from below the device's wait between them
// (stamped after the write, a slow stamp made a 300 ms wait look like
// 299.7 ms in a loaded CI run).
type nodeEvent struct {
	conn     int // the node's connections, numbered from 0
	cmd      wire.Command
	answered time.Time
}

func startFakeNode(t *testing.T, answer func(wire.Command, int) *wirepb.Error) *fakeNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &fakeNode{ln: ln, answer: answer, log: make(chan nodeEvent, 1000), seen: map[wire.Command]int{}}
	n.wg.Go(n.accept)
	t.Cleanup(n.close)
	return n
}

func (n *fakeNode) accept() {
	for {
		c, err := n.ln.Accept()
		if err != nil {
			return
		}
		n.mu.Lock()
		id := len(n.conns)
		n.conns = append(n.conns, c)
		n.mu.Unlock()
		n.wg.Go(func() { n.serve(c, id) })
	}
}

func (n *fakeNode) serve(c net.Conn, id int) {
	for {
		h, _, err := readFrame(c, nil)
		if err != nil {
			n.record(nodeEvent{conn: id})
			return
		}
		n.mu.Lock()
		e := n.answer(h.Command, n.seen[h.Command])
		n.seen[h.Command]++
		n.mu.Unlock()
		var m proto.Message = e
		flags := wire.FlagResponse | wire.FlagError
		switch {
		case e != nil:
		case h.Command == wire.CmdAuth:
			m, flags = &wirepb.AuthResponse{}, wire.FlagResponse
		case h.Command == wire.CmdCreateGroup:
			m, flags = &wirepb.CreateGroupResponse{Group: &wirepb.Group{Id: createdConv}}, wire.FlagResponse
		default:
			m, flags = &wirepb.SyncResponse{}, wire.FlagResponse
		}
		frame, err := wire.AppendFrame(nil, h.Command, flags, h.RequestID, m)
		answered := time.Now()
		if err == nil {
			_, err = c.Write(frame)
		}
		n.record(nodeEvent{conn: id, cmd: h.Command, answered: answered})
		if err != nil || e != nil && h.Command == wire.CmdAuth {
			c.Close() // as the gateway does after a refused AUTH
		}
	}
}

// record logs e, unless the log is full: the test has failed by then (a
// device hammering the node), and the node must still be able to close.
func (n *fakeNode) record(e nodeEvent) {
	select {
	case n.log <- e:
	default:
	}
}

func (n *fakeNode) close() {
	n.ln.Close()
	n.mu.Lock()
	for _, c := range n.conns {
		c.Close()
	}
	n.mu.Unlock()
	n.wg.Wait()
}

// next returns the node's next event; it fails the test if none comes
// within a generous bound (a device stuck elsewhere).
func (n *fakeNode) next(t *testing.T) nodeEvent {
	t.Helper()
	select {
	case e := <-n.log:
		return e
	case <-time.After(30 * time.Second):
		t.Fatalf("node %s: no frame or close came", n.ln.Addr())
		return nodeEvent{}
	}
}

// expect takes the node's next event and fails unless it is cmd (0: a
// close) on connection conn.
func (n *fakeNode) expect(t *testing.T, conn int, cmd wire.Command) nodeEvent {
	t.Helper()
	e := n.next(t)
	if e.conn != conn || e.cmd != cmd {
		t.Fatalf("node %s: connection %d got %v, want %v on connection %d", n.ln.Addr(), e.conn, e.cmd, cmd, conn)
	}
	return e
}

// createdConv is the group a fakeNode creates.
const createdConv = 77

// runDevice runs one device, of user 1, against the nodes, first trying
// nodes[0], until the test ends.
func runDevice(t *testing.T, nodes ...*fakeNode) *device {
	r := &runner{dials: make(chan struct{}, 1), model: NewModel()}
	for _, n := range nodes {
		r.addrs = append(r.addrs, n.ln.Addr().String())
	}
	u := &user{id: 1}
	d := &device{r: r, user: u, name: "d0", token: "t", wake: make(chan struct{}), digest: digestSeed}
	u.devices = []*device{d}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { d.run(ctx) })
	t.Cleanup(func() {
		cancel()
		d.goAway(0)
		wg.Wait()
	})
	return d
}

func refuse(code wire.Code, retryAfterMs uint32) *wirepb.Error {
	return &wirepb.Error{Code: uint32(code), RetryAfterMs: retryAfterMs}
}

// answerAll answers every frame with success.
func answerAll(wire.Command, int) *wirepb.Error { return nil }

// TestDeviceLeavesStoppingNode: a node that answers a request
// SHUTTING_DOWN refuses everything until it closes (docs/protocol.md,
// "Errors": retry on a new connection, later). The device must not send
// it anything more, and must reconnect to another node of the list.
func TestDeviceLeavesStoppingNode(t *testing.T) {
	stopping := startFakeNode(t, func(cmd wire.Command, _ int) *wirepb.Error {
		if cmd == wire.CmdSync {
			return refuse(wire.CodeShuttingDown, 0)
		}
		return nil
	})
	other := startFakeNode(t, answerAll)
	runDevice(t, stopping, other)

	stopping.expect(t, 0, wire.CmdAuth)
	stopping.expect(t, 0, wire.CmdSync) // the catch-up, refused
	stopping.expect(t, 0, 0)            // and nothing more on it
	other.expect(t, 0, wire.CmdAuth)
	other.expect(t, 0, wire.CmdSync)
	if len(stopping.log) != 0 {
		t.Fatalf("the stopping node got %+v after the device left it", <-stopping.log)
	}
}

// TestDeviceMovesOnAfterRefusedAuth: an AUTH refused otherwise than by
// REDIRECT (a stopping node; no owner of the user's shard during a
// failover) is tried again after at least retry_after_ms, on another node
// of the list (docs/protocol.md, "Redirects").
func TestDeviceMovesOnAfterRefusedAuth(t *testing.T) {
	for _, tc := range []struct {
		name       string
		code       wire.Code
		retryAfter uint32
	}{
		{"shutting down", wire.CodeShuttingDown, 0},
		{"unavailable", wire.CodeUnavailable, 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refusing := startFakeNode(t, func(cmd wire.Command, _ int) *wirepb.Error {
				return refuse(tc.code, tc.retryAfter)
			})
			other := startFakeNode(t, answerAll)
			runDevice(t, refusing, other)

			refused := refusing.expect(t, 0, wire.CmdAuth)
			refusing.expect(t, 0, 0)
			auth := other.expect(t, 0, wire.CmdAuth)
			if wait, least := auth.answered.Sub(refused.answered), time.Duration(tc.retryAfter)*time.Millisecond; wait < least {
				t.Errorf("connected again %v after the refusal, before its retry_after_ms of %v", wait, least)
			}
			other.expect(t, 0, wire.CmdSync)
			if len(refusing.log) != 0 {
				t.Fatalf("the refusing node got %+v after the device left it", <-refusing.log)
			}
		})
	}
}

// TestDeviceResyncsAfterRetryAfter: a SYNC refused RATE_LIMITED is made
// again on the same connection, no sooner than retry_after_ms (the
// per-user bucket the SYNC shares with the user's other devices and sends
// refills meanwhile), not at once.
func TestDeviceResyncsAfterRetryAfter(t *testing.T) {
	const retryAfter = 300 * time.Millisecond
	n := startFakeNode(t, func(cmd wire.Command, i int) *wirepb.Error {
		if cmd == wire.CmdSync && i == 0 {
			return refuse(wire.CodeRateLimited, uint32(retryAfter.Milliseconds()))
		}
		return nil
	})
	runDevice(t, n)

	n.expect(t, 0, wire.CmdAuth)
	refused := n.expect(t, 0, wire.CmdSync)
	again := n.expect(t, 0, wire.CmdSync)
	if wait := again.answered.Sub(refused.answered); wait < retryAfter {
		t.Fatalf("SYNC made again %v after RATE_LIMITED, before its retry_after_ms of %v", wait, retryAfter)
	}
}

// TestRetryWait: a request or a connection refused is tried again after
// the server's retry_after_ms, also when the refusal comes wrapped (a
// SYNC chain ended on a lost connection), and never sooner than the floor.
func TestRetryWait(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want time.Duration
	}{
		{&serverError{code: wire.CodeRateLimited, retryAfterMs: 700}, 700 * time.Millisecond},
		{&serverError{code: wire.CodeShuttingDown}, minRetryWait},
		{errors.Join(errOffline, &serverError{code: wire.CodeUnavailable, retryAfterMs: 1000}), time.Second},
		{errOffline, minRetryWait},
	} {
		if got := retryWait(tc.err, minRetryWait); got != tc.want {
			t.Errorf("retryWait(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestCreateGroupRetried: CREATE_GROUP carries no request id, so a create
// answered UNAVAILABLE or TIMEOUT may still be stored. The bench makes it
// again, and records in the model the group the first attempt may have
// left (the verifier accepts its create notice); one refused RATE_LIMITED
// never ran, and leaves nothing to record.
func TestCreateGroupRetried(t *testing.T) {
	for _, tc := range []struct {
		code  wire.Code
		maybe bool
	}{
		{wire.CodeUnavailable, true},
		{wire.CodeTimeout, true},
		{wire.CodeRateLimited, false},
	} {
		t.Run(tc.code.String(), func(t *testing.T) {
			n := startFakeNode(t, func(cmd wire.Command, i int) *wirepb.Error {
				if cmd == wire.CmdCreateGroup && i == 0 {
					return refuse(tc.code, 0)
				}
				return nil
			})
			d := runDevice(t, n)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			members := []*user{d.user, {id: 2}}
			g, err := d.r.createGroup(ctx, "g", d.user, members)
			if err != nil {
				t.Fatal(err)
			}
			if g.conv != createdConv {
				t.Errorf("group %d, want %d", g.conv, createdConv)
			}
			stray := d.r.model.strays["g"]
			switch {
			case tc.maybe && (stray == nil || stray.owner != 1 || !slices.Equal(stray.members, []uint64{1, 2})):
				t.Errorf("the group the first attempt may have left: %+v, want owner 1 and members [1 2]", stray)
			case !tc.maybe && stray != nil:
				t.Errorf("a create refused RATE_LIMITED recorded as maybe stored: %+v", stray)
			}
		})
	}
}

// TestResendBackoff: a send refused or lost again and again is made again
// after a wait that doubles with each attempt, up to maxResendWait, and at
// least the server's retry_after_ms: a user's sends refused together
// (RATE_LIMITED, UNAVAILABLE while a node fails over) must not keep coming
// back every few milliseconds, faster than the user's bucket refills.
func TestResendBackoff(t *testing.T) {
	for _, tc := range []struct {
		attempt int
		server  time.Duration
		least   time.Duration // the backoff's least, with its jitter
	}{
		{1, 0, minRetryWait / 2},
		{2, 0, minRetryWait},
		{4, 0, 4 * minRetryWait},
		{10, 0, maxResendWait / 2},
		{1, 700 * time.Millisecond, 700 * time.Millisecond},
	} {
		r := &runner{}
		before := time.Now()
		r.retryAfter(3, tc.attempt, tc.server)
		it := r.takeRetries(time.Now().Add(time.Hour))
		if len(it) != 1 || it[0].send != 3 || it[0].attempt != tc.attempt {
			t.Fatalf("attempt %d: queued %+v", tc.attempt, it)
		}
		if wait := it[0].due.Sub(before); wait < tc.least {
			t.Errorf("attempt %d (server's wait %v): again after %v, want at least %v", tc.attempt, tc.server, wait, tc.least)
		}
		if wait := it[0].due.Sub(time.Now()); tc.server == 0 && wait > maxResendWait {
			t.Errorf("attempt %d: again after %v, beyond %v", tc.attempt, wait, maxResendWait)
		}
	}
}
