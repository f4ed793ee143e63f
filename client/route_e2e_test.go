package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inboxd/inboxd/cluster"
	"github.com/inboxd/inboxd/cluster/clustertest"
	"github.com/inboxd/inboxd/gateway"
	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/internal/gatewaytest"
	"github.com/inboxd/inboxd/wire"
)

// End-to-end tests of sticky routing (docs/protocol.md, "Redirects"): two
// real gateways in front of one inbox service, as nodes 1 and 2 of a
// cluster of one shard, each with its own view of who owns it.

// pair is two gateways of one cluster.
type pair struct {
	svc   *inbox.Service
	addrs [2]string
	// rings[i] is node i+1's truth of who owns the shard: the same unless
	// a test makes them disagree (a redirect loop).
	rings [2]*clustertest.Ring
}

func startPair(t *testing.T) *pair {
	t.Helper()
	p := &pair{rings: [2]*clustertest.Ring{clustertest.NewRing(1), clustertest.NewRing(1)}}
	gws := make([]*gateway.Server, 2)
	for i := range gws {
		gw, err := gateway.New(gateway.Config{Addr: gatewaytest.Addr, Secret: []byte(gatewaytest.Secret), SingleLoop: true, Ownership: p.rings[i].View(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		gws[i] = gw
	}
	svc, addrs := gatewaytest.StartAll(t, []gatewaytest.Gateway{gws[0], gws[1]}, func(i int, svc *inbox.Service) error { return gws[i].Serve(svc) })
	p.svc = svc
	for i, addr := range addrs {
		p.addrs[i] = addr
		for _, r := range p.rings {
			r.SetNode(cluster.NodeInfo{ID: i + 1, Addr: addr})
		}
	}
	return p
}

// move makes node (1, 2; -1: none) the shard's owner in both views.
func (p *pair) move(node int) {
	for _, r := range p.rings {
		r.Move(0, node)
	}
}

// dialLogged dials user's device with both addresses, node 1's first, and
// records the addresses it dials.
func (p *pair) dialLogged(t *testing.T, user uint64, cfg Config) (*Client, *entryLog, *addrLog, error) {
	t.Helper()
	return p.dialLoggedCtx(ctxT(t), t, user, cfg, new(addrLog))
}

// dialLoggedCtx is dialLogged within ctx, recording the dials in dials.
func (p *pair) dialLoggedCtx(ctx context.Context, t *testing.T, user uint64, cfg Config, dials *addrLog) (*Client, *entryLog, *addrLog, error) {
	t.Helper()
	log := new(entryLog)
	cfg.Addrs = p.addrs[:]
	cfg.keepOrder = true
	cfg.Token = gatewaytest.Token(t, user, "phone", time.Hour)
	cfg.OnEntry = log.add
	cfg.MinBackoff, cfg.MaxBackoff = 5*time.Millisecond, 50*time.Millisecond
	cfg.Dial = dials.dial
	c, err := Dial(ctx, cfg)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, log, dials, err
}

// addrLog is a TCP Dial func that records the addresses dialled.
type addrLog struct {
	mu    sync.Mutex
	addrs []string
	d     net.Dialer
}

func (l *addrLog) dial(ctx context.Context, addr string) (net.Conn, error) {
	l.mu.Lock()
	l.addrs = append(l.addrs, addr)
	l.mu.Unlock()
	return l.d.DialContext(ctx, "tcp", addr)
}

func (l *addrLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.addrs...)
}

func TestE2ERedirectAtAuth(t *testing.T) {
	p := startPair(t)
	p.move(2)
	c, _, dials, err := p.dialLogged(t, 1, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Session().Addr; got != p.addrs[1] {
		t.Errorf("authenticated on %s, want node 2 at %s", got, p.addrs[1])
	}
	if got := dials.get(); fmt.Sprint(got) != fmt.Sprint(p.addrs) {
		t.Errorf("dialled %q, want node 1 then, redirected, node 2 %q", got, p.addrs)
	}
}

// TestE2EHandover moves the user's shard from node 1 to node 2 while the
// user is connected to node 1 and messages are sent: the client is closed
// with REDIRECT, reconnects to node 2, and catches up by SYNC with every
// message once, in order.
func TestE2EHandover(t *testing.T) {
	p := startPair(t)
	p.move(1)
	ctx := ctxT(t)
	const alice, bob = 1, 2
	g, err := p.svc.CreateGroup(ctx, alice, inbox.NewGroup{Members: []uint64{bob}})
	if err != nil {
		t.Fatal(err)
	}
	c, log, dials, err := p.dialLogged(t, bob, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Session().Addr; got != p.addrs[0] {
		t.Fatalf("authenticated on %s, want node 1 at %s", got, p.addrs[0])
	}
	want := ids("m", 30)
	send := func(ids []string) {
		for _, id := range ids {
			if _, err := p.svc.SendGroupMessage(ctx, alice, g.ID, id, wire.KindText, []byte(id)); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(want[:10])
	log.waitMessages(t, want[:10])
	// Messages sent around the move reach the client by push on node 1,
	// or by SYNC on node 2.
	send(want[10:15])
	p.move(2)
	send(want[15:20])
	eventually(t, func() bool { return c.Session().Addr == p.addrs[1] })
	send(want[20:])
	log.waitMessages(t, want)
	if err := c.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	// The REDIRECT that closed the connection named node 2: the client
	// went there, not back to the list.
	if got := dials.get(); fmt.Sprint(got) != fmt.Sprint(p.addrs) {
		t.Errorf("dialled %q, want node 1, then node 2 from the REDIRECT", got)
	}
}

// TestE2EUnavailable checks UNAVAILABLE while the shard has no owner: Dial
// retries it, on each node in turn, until its context ends, and a
// connected client, closed with it, comes back once the shard has an
// owner again.
func TestE2EUnavailable(t *testing.T) {
	p := startPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	dials := new(addrLog)
	_, _, _, err := p.dialLoggedCtx(ctx, t, 1, Config{}, dials)
	errIs(t, err, ErrUnavailable)
	errIs(t, err, context.DeadlineExceeded)
	var e *Error
	if !errors.As(err, &e) || e.RetryAfter <= 0 {
		t.Errorf("Dial = %v, want UNAVAILABLE with a retry hint", err)
	}
	// The gateway's hint is 500 ms: node 1, node 2, node 1.
	if got := dials.get(); len(got) < 2 || got[0] != p.addrs[0] || got[1] != p.addrs[1] {
		t.Errorf("dialled %q, want node 1, then node 2, …", got)
	}

	p.move(1)
	c, log, _, err := p.dialLogged(t, 1, Config{})
	if err != nil {
		t.Fatal(err)
	}
	p.move(-1)
	g, err := p.svc.CreateGroup(ctxT(t), 1, inbox.NewGroup{})
	if err != nil {
		t.Fatal(err)
	}
	p.move(2)
	eventually(t, func() bool { return c.Session().Addr == p.addrs[1] })
	if err := c.WaitSynced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return c.LastSeq() == 1 })
	if ks := log.kinds(); len(ks) != 1 || ks[0] != wire.KindNotice {
		t.Errorf("delivered kinds %v, want the create notice of group %d", ks, g.ID)
	}
}

// TestE2EDialDuringFailover dials while the user's shard has no owner, as
// during a failover: Dial waits it out, retrying, and connects once node 2
// serves the shard.
func TestE2EDialDuringFailover(t *testing.T) {
	p := startPair(t)
	dials := new(addrLog)
	// The shard moves once a third dial has begun: by then two AUTHs were
	// answered UNAVAILABLE, whatever the scheduling.
	go func() {
		for len(dials.get()) < 3 {
			time.Sleep(5 * time.Millisecond)
		}
		p.move(2)
	}()
	c, _, _, err := p.dialLoggedCtx(ctxT(t), t, 1, Config{}, dials)
	if err != nil {
		t.Fatalf("Dial during the failover: %v", err)
	}
	if got := c.Session().Addr; got != p.addrs[1] {
		t.Errorf("authenticated on %s, want node 2 at %s", got, p.addrs[1])
	}
	if got := dials.get(); len(got) < 3 {
		t.Errorf("dialled %q: want two answers UNAVAILABLE, then node 2", got)
	}
}

// TestE2ERedirectLoop gives the two nodes views that send the user to each
// other: the client gives up after MaxRedirects redirects in a row.
func TestE2ERedirectLoop(t *testing.T) {
	p := startPair(t)
	p.rings[0].Move(0, 2)
	p.rings[1].Move(0, 1)
	const max = 3
	_, _, dials, err := p.dialLogged(t, 1, Config{MaxRedirects: max})
	errIs(t, err, ErrTooManyRedirects)
	if !strings.Contains(err.Error(), p.addrs[0]) || !strings.Contains(err.Error(), p.addrs[1]) {
		t.Errorf("error %q does not name the nodes", err)
	}
	if got := dials.get(); len(got) != max+1 {
		t.Errorf("dialled %q: the first node, then %d redirects", got, max)
	}
}
