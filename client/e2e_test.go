package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/inboxd/inboxd/gateway"
	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/internal/gatewaytest"
	"github.com/inboxd/inboxd/token"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// End-to-end tests: the client against the real gateway, inbox service and
// embedded store (in memory), over loopback TCP.

// startServer runs a gateway on an inbox on an in-memory Pebble store and
// returns its address; it stops when the test ends, after the clients the
// test dialled (cleanups run last-registered first).
func startServer(t *testing.T) string {
	t.Helper()
	gw, err := gateway.New(gateway.Config{Addr: gatewaytest.Addr, Secret: []byte(gatewaytest.Secret), SingleLoop: true})
	if err != nil {
		t.Fatal(err)
	}
	_, addr := gatewaytest.Start(t, gw, func(svc *inbox.Service) error { return gw.Serve(svc) })
	return addr
}

// e2eClient dials user's device and records what it delivers.
func e2eClient(t *testing.T, addr string, user uint64, device string, cfg Config) (*Client, *entryLog) {
	t.Helper()
	log := new(entryLog)
	cfg.Addr = addr
	cfg.Token = gatewaytest.Token(t, user, device, time.Hour)
	cfg.OnEntry = log.add
	cfg.MinBackoff = 5 * time.Millisecond
	cfg.MaxBackoff = 50 * time.Millisecond
	c, err := Dial(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, log
}

// entryLog records delivered entries and checks they come once, in order.
type entryLog struct {
	mu      sync.Mutex
	entries []*wirepb.Entry
	err     error
}

func (l *entryLog) add(e *wirepb.Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.entries); n > 0 && e.Seq != l.entries[n-1].Seq+1 && l.err == nil {
		l.err = fmt.Errorf("entry %d delivered after %d", e.Seq, l.entries[n-1].Seq)
	}
	l.entries = append(l.entries, e)
}

// messages returns the client msg ids of the text messages delivered.
func (l *entryLog) messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ids []string
	for _, e := range l.entries {
		if e.Kind == uint32(wire.KindText) {
			ids = append(ids, e.Message.ClientMsgId)
		}
	}
	return ids
}

func (l *entryLog) kinds() []wire.Kind {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ks []wire.Kind
	for _, e := range l.entries {
		ks = append(ks, wire.Kind(e.Kind))
	}
	return ks
}

// waitMessages waits for exactly the text messages want, in order.
func (l *entryLog) waitMessages(t *testing.T, want []string) {
	t.Helper()
	eventually(t, func() bool { return len(l.messages()) >= len(want) })
	l.mu.Lock()
	err := l.err
	l.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if got := l.messages(); !slices.Equal(got, want) {
		t.Fatalf("delivered messages %q, want %q", got, want)
	}
}

func ids(prefix string, n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return s
}

func TestE2EGroupChat(t *testing.T) {
	addr := startServer(t)
	alice, aliceLog := e2eClient(t, addr, 1, "phone", Config{})
	ctx := ctxT(t)
	g, err := alice.CreateGroup(ctx, &wirepb.CreateGroupRequest{Name: "ops", Members: []uint64{2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	bob, bobLog := e2eClient(t, addr, 2, "phone", Config{})
	bobTablet, tabletLog := e2eClient(t, addr, 2, "tablet", Config{})

	want := ids("m", 10)
	for i, id := range want {
		ack, err := alice.Send(ctx, g.Id, id, uint32(wire.KindText), []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		if ack.ConvSeq != uint64(i+2) || ack.Duplicate { // conv_seq 1 is the create notice
			t.Errorf("ack %v", ack)
		}
	}
	// Everyone, the sender included, gets the notice and then the messages.
	for _, l := range []*entryLog{aliceLog, bobLog, tabletLog} {
		l.waitMessages(t, want)
		if k := l.kinds()[0]; k != wire.KindNotice {
			t.Errorf("first entry of kind %d, want the create notice", k)
		}
	}

	msgs, err := bob.History(ctx, g.Id, 0, 20)
	if err != nil || len(msgs) != 11 || msgs[0].ConvSeq != 11 || msgs[10].Kind != uint32(wire.KindNotice) {
		t.Fatalf("History: %d messages, %v", len(msgs), err)
	}
	older, err := bob.History(ctx, g.Id, 3, 20)
	if err != nil || len(older) != 2 || older[0].ConvSeq != 2 {
		t.Fatalf("History before 3: %v, %v", older, err)
	}
	convs, err := bob.Conversations(ctx)
	if err != nil || len(convs) != 1 || convs[0].Unread != 11 || convs[0].Name != "ops" {
		t.Fatalf("Conversations: %v, %v", convs, err)
	}

	// Bob reads on his phone; the tablet learns it from a read entry.
	if n, err := bob.MarkRead(ctx, g.Id, 11); err != nil || n != 11 {
		t.Fatalf("MarkRead = %d, %v", n, err)
	}
	eventually(t, func() bool { return slices.Contains(tabletLog.kinds(), wire.KindRead) })
	if convs, _ := bobTablet.Conversations(ctx); convs[0].Unread != 0 {
		t.Errorf("unread %d after MarkRead", convs[0].Unread)
	}

	// Errors arrive typed.
	if _, err := bob.Send(ctx, g.Id+1000, "x", 1, nil); !errors.Is(err, ErrNoGroup) {
		t.Errorf("send to no group: %v", err)
	}
	if _, err := bob.Send(ctx, g.Id, "y", 0x8001, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("send of a notice kind: %v", err)
	}
	if err := bob.Kick(ctx, g.Id, 1); !errors.Is(err, ErrForbidden) {
		t.Errorf("member kicks owner: %v", err)
	}
}

// cutter dials through connections it can cut, like a network failure.
type cutter struct {
	mu    sync.Mutex
	conns []net.Conn
	// cutAfterSend, when set, cuts the connection right after the next
	// SEND frame is written: the request may or may not be processed.
	cutAfterSend bool
}

func (c *cutter) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.conns = append(c.conns, nc)
	c.mu.Unlock()
	return &cutConn{Conn: nc, c: c}, nil
}

func (c *cutter) cutAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, nc := range c.conns {
		nc.Close()
	}
	c.conns = nil
}

type cutConn struct {
	net.Conn
	c *cutter
}

func (cc *cutConn) Write(b []byte) (int, error) {
	n, err := cc.Conn.Write(b)
	isSend := len(b) >= wire.HeaderSize && wire.Command(binary.BigEndian.Uint16(b[6:8])) == wire.CmdSend
	cc.c.mu.Lock()
	cut := isSend && cc.c.cutAfterSend
	if cut {
		cc.c.cutAfterSend = false
	}
	cc.c.mu.Unlock()
	if cut {
		cc.Conn.Close()
	}
	return n, err
}

// TestE2EReconnect cuts a reader's connection while messages are sent: it
// must still see each message once, in order.
func TestE2EReconnect(t *testing.T) {
	addr := startServer(t)
	alice, _ := e2eClient(t, addr, 1, "phone", Config{})
	ctx := ctxT(t)
	g, err := alice.CreateGroup(ctx, &wirepb.CreateGroupRequest{Members: []uint64{2}})
	if err != nil {
		t.Fatal(err)
	}
	var cut cutter
	_, bobLog := e2eClient(t, addr, 2, "phone", Config{Dial: cut.dial, SyncLimit: 3})
	want := ids("r", 30)
	for i, id := range want {
		if i%7 == 3 {
			cut.cutAll()
		}
		if _, err := alice.Send(ctx, g.Id, id, 1, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	bobLog.waitMessages(t, want)
}

// TestE2ESendRetry cuts the sender's connection right after a SEND frame:
// Send resends under the same client msg id on the next connection, and
// the group gets the message once whether or not the first copy was
// processed.
func TestE2ESendRetry(t *testing.T) {
	addr := startServer(t)
	var cut cutter
	alice, aliceLog := e2eClient(t, addr, 1, "phone", Config{Dial: cut.dial})
	ctx := ctxT(t)
	g, err := alice.CreateGroup(ctx, &wirepb.CreateGroupRequest{Members: []uint64{2}})
	if err != nil {
		t.Fatal(err)
	}
	_, bobLog := e2eClient(t, addr, 2, "phone", Config{})
	want := ids("s", 5)
	for _, id := range want {
		cut.mu.Lock()
		cut.cutAfterSend = true
		cut.mu.Unlock()
		if _, err := alice.Send(ctx, g.Id, id, 1, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	// A plain resend is answered from the dedup record.
	ack1, err := alice.Send(ctx, g.Id, "once", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	ack2, err := alice.Send(ctx, g.Id, "once", 1, nil)
	if err != nil || !ack2.Duplicate || ack2.MsgId != ack1.MsgId || ack2.ConvSeq != ack1.ConvSeq {
		t.Fatalf("resend: %v, %v; first %v", ack2, err, ack1)
	}
	want = append(want, "once")
	bobLog.waitMessages(t, want)
	aliceLog.waitMessages(t, want)
}

func TestE2EAuth(t *testing.T) {
	addr := startServer(t)
	_, err := Dial(ctxT(t), Config{Addr: addr, Token: gatewaytest.Token(t, 1, "phone", -time.Minute)})
	errIs(t, err, ErrTokenExpired)
	forged, _ := token.Sign([]byte("another secret of 16+ bytes"), token.Claims{User: 1, Device: "phone", Expiry: time.Now().Add(time.Hour)})
	_, err = Dial(ctxT(t), Config{Addr: addr, Token: forged})
	errIs(t, err, ErrUnauthenticated)
}

func TestE2EReplaced(t *testing.T) {
	addr := startServer(t)
	first, _ := e2eClient(t, addr, 1, "phone", Config{})
	second, _ := e2eClient(t, addr, 1, "phone", Config{})
	select {
	case <-first.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the first connection of the device was not replaced")
	}
	errIs(t, first.Err(), ErrReplaced)
	if _, err := second.Conversations(ctxT(t)); err != nil {
		t.Fatalf("the second connection: %v", err)
	}
}

// TestE2EThreeUsersTwoDevices: three users with two devices each send to one
// group at once, interleaved, while one device's connection is cut again and
// again. Every device ends with its user's whole inbox: every entry once, in
// seq order, every message of the group in the same conv_seq order.
func TestE2EThreeUsersTwoDevices(t *testing.T) {
	addr := startServer(t)
	ctx := ctxT(t)
	var cut cutter
	type device struct {
		c   *Client
		log *entryLog
	}
	var devices []device
	for u := uint64(1); u <= 3; u++ {
		for _, name := range []string{"phone", "laptop"} {
			cfg := Config{}
			if u == 2 && name == "laptop" {
				cfg = Config{Dial: cut.dial, SyncLimit: 4}
			}
			c, log := e2eClient(t, addr, u, name, cfg)
			devices = append(devices, device{c, log})
		}
	}
	g, err := devices[0].c.CreateGroup(ctx, &wirepb.CreateGroupRequest{Members: []uint64{2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	const perDevice = 15
	var wg sync.WaitGroup
	for i, d := range devices {
		wg.Go(func() {
			for n := range perDevice {
				if i == 0 && n%4 == 1 {
					cut.cutAll()
				}
				id := fmt.Sprintf("d%d-%d", i, n)
				if _, err := d.c.Send(ctx, g.Id, id, uint32(wire.KindText), []byte(id)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// The whole group, in conv_seq order, from one user's inbox.
	want := devices[0].log
	eventually(t, func() bool { return len(want.messages()) == len(devices)*perDevice })
	order := want.messages()
	for _, d := range devices {
		d.log.waitMessages(t, order)
	}
}

// TestE2EWebSocket runs the client over WebSocket (a ws:// address) beside
// a TCP client of the same user: both devices get every message, in order,
// and sends and reads work over either.
func TestE2EWebSocket(t *testing.T) {
	gw, err := gateway.New(gateway.Config{Addr: gatewaytest.Addr, WSAddr: gatewaytest.WSAddr, Secret: []byte(gatewaytest.Secret), SingleLoop: true})
	if err != nil {
		t.Fatal(err)
	}
	_, addr := gatewaytest.Start(t, gw, func(svc *inbox.Service) error { return gw.Serve(svc) })
	url := "ws://" + gw.WSAddr().String() + wire.WSPath
	ctx := ctxT(t)
	browser, browserLog := e2eClient(t, url, 1, "browser", Config{})
	_, phoneLog := e2eClient(t, addr, 1, "phone", Config{})
	bob, bobLog := e2eClient(t, url, 2, "browser", Config{})
	g, err := browser.CreateGroup(ctx, &wirepb.CreateGroupRequest{Members: []uint64{2}})
	if err != nil {
		t.Fatal(err)
	}
	want := ids("m", 6)
	for i, id := range want {
		from := browser
		if i%2 == 1 {
			from = bob
		}
		if _, err := from.Send(ctx, g.Id, id, uint32(wire.KindText), []byte(id)); err != nil {
			t.Fatal(err)
		}
	}
	for _, log := range []*entryLog{browserLog, phoneLog, bobLog} {
		log.waitMessages(t, want)
	}
	page, err := bob.History(ctx, g.Id, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 3 || page[0].ClientMsgId != want[5] {
		t.Fatalf("history over WebSocket: %v", page)
	}
}
