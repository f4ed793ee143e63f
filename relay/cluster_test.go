package relay_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/inboxd/inboxd/api"
	"github.com/inboxd/inboxd/client"
	"github.com/inboxd/inboxd/cluster"
	"github.com/inboxd/inboxd/cluster/clustertest"
	"github.com/inboxd/inboxd/gateway"
	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/internal/backoff"
	"github.com/inboxd/inboxd/internal/gatewaytest"
	"github.com/inboxd/inboxd/peer"
	"github.com/inboxd/inboxd/relay"
	"github.com/inboxd/inboxd/timeline/pebble"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// TestMain checks for leaked goroutines; gnet's worker pool keeps two
// for the process.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"))
}

// End-to-end tests of a cluster in one process: two nodes, each an inbox
// service, a gnet gateway, a peer server and a pool, on one in-memory
// Pebble store, with shard s served by node s mod 2 until a test moves it.
// Clients connect over TCP with both gateways' addresses.

const shards = 8

// node is one node of the cluster.
type node struct {
	svc     *inbox.Service
	gw      *gateway.Server
	relay   *relay.Relay
	mod     *api.Moderation
	follow  *api.Follower
	pool    *peer.Pool
	srv     *peer.Server
	served  chan error
	reg     *prometheus.Registry
	addr    string
	peerAdr string
}

type testCluster struct {
	t     testing.TB
	store *pebble.Store
	ring  *clustertest.Ring
	nodes []*node
}

var (
	secret = []byte(gatewaytest.Secret)
	quiet  = slog.New(slog.DiscardHandler)
)

func startCluster(t testing.TB) *testCluster {
	t.Helper()
	st, err := pebble.Open(pebble.Options{Dir: "db", FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, store: st, ring: clustertest.NewRing(shards, 0, 1)}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.stop(t)
		}
		st.Close()
	})
	for i := range 2 {
		c.nodes = append(c.nodes, c.start(i))
	}
	return c
}

// start assembles node i as cmd/inboxd would (relay's package doc).
func (c *testCluster) start(i int) *node {
	t := c.t
	t.Helper()
	n := &node{served: make(chan error, 1), reg: prometheus.NewRegistry()}
	var err error
	n.pool, err = peer.NewPool(peer.PoolConfig{Node: uint32(i + 1), Secret: secret, Timeout: 2 * time.Second,
		DialTimeout: 200 * time.Millisecond,
		Backoff:     backoff.Policy{Min: time.Millisecond, Max: 20 * time.Millisecond}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	n.relay, err = relay.New(relay.Config{Ownership: c.ring.View(i), Pool: n.pool, Registerer: n.reg})
	if err != nil {
		t.Fatal(err)
	}
	if n.mod, err = api.LoadModeration(context.Background(), c.store); err != nil {
		t.Fatal(err)
	}
	// No rate limits: BenchmarkSend's one device sends as fast as it can.
	n.gw, err = gateway.New(gateway.Config{Addr: gatewaytest.Addr, Secret: secret, SingleLoop: true,
		RateLimit: 1e9, RateBurst: 1 << 30, UserRateLimit: 1e9, UserRateBurst: 1 << 30,
		Ownership: c.ring.View(i), Forwarder: n.relay, Peers: n.relay, Gate: n.mod})
	if err != nil {
		t.Fatal(err)
	}
	// The Follower re-reads only in the tests that Run it.
	if n.follow, err = api.NewFollower(api.FollowerConfig{Moderation: n.mod, Sessions: n.gw, Interval: 20 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	n.svc, err = inbox.New(context.Background(), inbox.Config{Store: c.store, Node: int64(i + 1),
		Ownership: c.ring.View(i), Deliverer: n.relay, Notifier: n.gw})
	if err != nil {
		t.Fatal(err)
	}
	go func() { n.served <- n.gw.Serve(n.svc) }()
	addr := n.gw.Addr()
	if addr == nil {
		t.Fatalf("gateway %d did not start: %v", i, <-n.served)
	}
	n.addr = addr.String()
	n.listen(t, gatewaytest.Addr)
	c.ring.SetNode(cluster.NodeInfo{ID: i, Incarnation: 1, Addr: n.addr, PeerAddr: n.peerAdr})
	return n
}

// listen starts the node's peer server on addr.
func (n *node) listen(t testing.TB, addr string) {
	t.Helper()
	var err error
	n.srv, err = peer.Listen(peer.ServerConfig{Addr: addr, Secret: secret, Logger: quiet}, relay.WithRestrictions(n.follow, relay.Handler(n.svc, n.gw)))
	if err != nil {
		t.Fatal(err)
	}
	n.peerAdr = n.srv.Addr().String()
}

// count returns the value of the relay counter name{result} on n.
func (n *node) count(t *testing.T, name, result string) float64 {
	t.Helper()
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no series %s{result=%q}", name, result)
	return 0
}

func (n *node) stop(t testing.TB) {
	if err := n.gw.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	if err := <-n.served; err != nil {
		t.Error(err)
	}
	n.srv.Close()
	n.svc.Close()
	n.pool.Close()
}

// users returns k users of each node's shards, by node.
func (c *testCluster) users(k int) [2][]uint64 {
	var out [2][]uint64
	for u := uint64(1); len(out[0]) < k || len(out[1]) < k; u++ {
		if i := cluster.ShardOf(u, shards) % 2; len(out[i]) < k {
			out[i] = append(out[i], u)
		}
	}
	return out
}

// device is a user's client and the entries it received.
type device struct {
	user uint64
	c    *client.Client
	mu   sync.Mutex
	log  []*wirepb.Entry
}

// dial connects user's device dev with both addresses, in a random order:
// it follows the REDIRECT of a node that does not serve the user.
func (c *testCluster) dial(user uint64, dev string, cfg client.Config) *device {
	c.t.Helper()
	d := &device{user: user}
	cfg.Addrs = []string{c.nodes[0].addr, c.nodes[1].addr}
	cfg.Token = gatewaytest.Token(c.t, user, dev, time.Hour)
	cfg.OnEntry = func(e *wirepb.Entry) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.log = append(d.log, e)
	}
	cfg.MinBackoff, cfg.MaxBackoff = 5*time.Millisecond, 50*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, cfg)
	if err != nil {
		c.t.Fatalf("dial user %d: %v", user, err)
	}
	c.t.Cleanup(func() { cl.Close() })
	d.c = cl
	return d
}

// bodies returns the bodies of the messages of conv d received, in order.
func (d *device) bodies(conv uint64) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, e := range d.log {
		if e.Conv == conv && e.Message != nil && e.Message.Kind == 1 {
			out = append(out, string(e.Message.Body))
		}
	}
	return out
}

// check waits until every device received want[conv] (bodies, any order
// across senders) of each conv, and checks its inbox: seqs contiguous from
// 1, each conversation's conv_seqs strictly increasing with no gap, every
// message exactly once.
func (c *testCluster) check(devs []*device, want map[uint64][]string) {
	c.t.Helper()
	if c.t.Failed() {
		c.t.FailNow() // a send failed
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, d := range devs {
		for conv, bodies := range want {
			for len(d.bodies(conv)) < len(bodies) && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			got := d.bodies(conv)
			if !equalSets(got, bodies) {
				c.t.Fatalf("user %d conv %d: %d messages %v, want %d %v", d.user, conv, len(got), got, len(bodies), bodies)
			}
		}
		d.mu.Lock()
		last := map[uint64]uint64{}
		for i, e := range d.log {
			if e.Seq != uint64(i+1) {
				c.t.Fatalf("user %d: seq %d at position %d", d.user, e.Seq, i)
			}
			if l, ok := last[e.Conv]; ok && e.Message != nil && e.ConvSeq != l+1 {
				c.t.Fatalf("user %d conv %d: conv_seq %d after %d", d.user, e.Conv, e.ConvSeq, l)
			}
			if e.Message != nil {
				last[e.Conv] = e.ConvSeq
			}
		}
		d.mu.Unlock()
	}
}

func equalSets(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// groups creates, for each node, a group of every user, created by a user
// of that node (so that its conversation is there), and returns the
// devices and the groups.
func (c *testCluster) groups(k int, cfg client.Config) ([]*device, []uint64) {
	c.t.Helper()
	us := c.users(k)
	var devs []*device
	for _, u := range slices.Concat(us[0], us[1]) {
		devs = append(devs, c.dial(u, "phone", cfg))
	}
	var convs []uint64
	for i := range 2 {
		creator := devs[i*k]
		var others []uint64
		for _, d := range devs {
			if d != creator {
				others = append(others, d.user)
			}
		}
		g, err := creator.c.CreateGroup(ctxT(c.t), &wirepb.CreateGroupRequest{Name: fmt.Sprint("g", i), Members: others})
		if err != nil {
			c.t.Fatal(err)
		}
		if got := cluster.ShardOf(g.Id, shards) % 2; got != i {
			c.t.Fatalf("group of node %d's user is in a shard of node %d", i, got)
		}
		convs = append(convs, g.Id)
	}
	return devs, convs
}

// sendAll has every device send n messages to every conv, concurrently,
// and returns the bodies sent by conv.
func sendAll(t *testing.T, devs []*device, convs []uint64, n int, tag string) map[uint64][]string {
	t.Helper()
	want := map[uint64][]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, d := range devs {
		wg.Go(func() {
			for _, conv := range convs {
				for j := range n {
					body := fmt.Sprintf("%s/%d/%d/%d", tag, d.user, conv, j)
					if _, err := d.c.Send(ctxT(t), conv, body, 1, []byte(body)); err != nil {
						t.Errorf("user %d: send to %d: %v", d.user, conv, err)
						return
					}
					mu.Lock()
					want[conv] = append(want[conv], body)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return want
}

// TestClusterFanOut: members of two groups spread over both nodes, each
// group's conversation on one of them; every member sends to both groups
// (half of the SENDs forwarded). Every SEND is acked, and every member
// gets every message once, in conv_seq order, with contiguous seqs. The
// other conversation commands are forwarded and answered as the owner
// answers them.
func TestClusterFanOut(t *testing.T) {
	c := startCluster(t)
	devs, convs := c.groups(3, client.Config{})
	want := sendAll(t, devs, convs, 5, "m")
	c.check(devs, want)
	for i, n := range c.nodes {
		if got := n.count(t, "inboxd_relay_forwards_total", "ok"); got == 0 {
			t.Errorf("node %d: no forward counted ok", i)
		}
		if got := n.count(t, "inboxd_relay_deliveries_total", "ok"); got == 0 {
			t.Errorf("node %d: no delivery counted ok", i)
		}
	}

	// A member of node 1 asks about node 0's group: forwarded.
	d, conv := devs[3], convs[0]
	info, err := d.c.GroupInfo(ctxT(t), conv)
	if err != nil {
		t.Fatalf("GROUP_INFO forwarded: %v", err)
	}
	if len(info.Members) != len(devs) || info.Group.Id != conv {
		t.Fatalf("GROUP_INFO forwarded: %d members of %d, want %d of %d", len(info.Members), info.Group.Id, len(devs), conv)
	}
	msgs, err := d.c.History(ctxT(t), conv, 0, 100)
	if err != nil || len(msgs) == 0 {
		t.Fatalf("HISTORY forwarded: %d messages, %v", len(msgs), err)
	}
	// A message with a mention, its edit and its recall: each forwarded to
	// the group's owner, which rewrites the message it stored.
	ack, err := d.c.SendMessage(ctxT(t), &wirepb.SendRequest{Conv: conv, Kind: 1, Body: []byte("@0"), Mentions: []uint64{devs[0].user}})
	if err != nil {
		t.Fatalf("SEND with a mention, forwarded: %v", err)
	}
	if _, err := d.c.Edit(ctxT(t), conv, ack.ConvSeq, "", []byte("@0!")); err != nil {
		t.Fatalf("EDIT forwarded: %v", err)
	}
	if _, err := d.c.Recall(ctxT(t), conv, ack.ConvSeq, ""); err != nil {
		t.Fatalf("RECALL forwarded: %v", err)
	}
	if msgs, err := d.c.History(ctxT(t), conv, ack.ConvSeq+1, 1); err != nil || len(msgs) != 1 || !msgs[0].Recalled || msgs[0].EditedMs == 0 ||
		len(msgs[0].Body) != 0 || !slices.Equal(msgs[0].Mentions, []uint64{devs[0].user}) {
		t.Fatalf("HISTORY of the recalled message, forwarded: %v, %v", msgs, err)
	}
	if err := d.c.SetDND(ctxT(t), conv, true); err != nil {
		t.Fatalf("SET_DND forwarded: %v", err)
	}
	// The owner's refusal comes back as it answered it.
	if err := d.c.Kick(ctxT(t), conv, devs[0].user); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("KICK of the owner by a member, forwarded: %v, want FORBIDDEN", err)
	}
	if err := d.c.Leave(ctxT(t), conv); err != nil {
		t.Fatalf("LEAVE forwarded: %v", err)
	}
	if _, err := d.c.Send(ctxT(t), conv, "after leave", 1, nil); !errors.Is(err, client.ErrNotMember) {
		t.Fatalf("SEND after LEAVE, forwarded: %v, want NOT_MEMBER", err)
	}
}

// TestClusterLinkCut: node 1's peer server closes. A SEND that node 0
// forwards there is answered UNAVAILABLE; once the server listens again,
// the same SEND is stored once, and the deliveries owed across the link
// all arrive.
func TestClusterLinkCut(t *testing.T) {
	c := startCluster(t)
	devs, convs := c.groups(2, client.Config{})
	want := sendAll(t, devs, convs, 3, "before")

	n1 := c.nodes[1]
	addr := n1.peerAdr
	n1.srv.Close()
	once := c.dial(devs[0].user, "tablet", client.Config{MaxAttempts: 1})
	if _, err := once.c.Send(ctxT(t), convs[1], "cut", 1, []byte("cut")); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("SEND forwarded over a cut link: %v, want UNAVAILABLE", err)
	}
	if got := c.nodes[0].count(t, "inboxd_relay_forwards_total", "unavailable"); got == 0 {
		t.Error("the forward over the cut link is not counted unavailable")
	}
	// Node 1's own sends keep working; their deliveries to node 0 too,
	// node 0's to node 1 wait.
	more := sendAll(t, devs[2:], convs[1:], 2, "during")

	n1.listen(t, addr)
	ack, err := devs[0].c.Send(ctxT(t), convs[1], "cut", 1, []byte("cut"))
	if err != nil {
		t.Fatalf("SEND retried after the link returned: %v", err)
	}
	if ack.Duplicate {
		t.Fatal("the SEND answered UNAVAILABLE was stored")
	}
	want[convs[1]] = append(append(want[convs[1]], more[convs[1]]...), "cut")
	after := sendAll(t, devs, convs, 2, "after")
	for conv, bodies := range after {
		want[conv] = append(want[conv], bodies...)
	}
	c.check(devs, want)
}

// TestClusterOwnerUnreachable: a SEND forwarded while the conversation's
// shard has no owner, or to an owner that accepts connections and never
// answers, is answered UNAVAILABLE with a retry hint within the peer
// timeouts, not dropped; once the owner is back the retry is stored once.
func TestClusterOwnerUnreachable(t *testing.T) {
	c := startCluster(t)
	devs, convs := c.groups(1, client.Config{})
	conv := convs[1] // on node 1; devs[0] is on node 0
	once := c.dial(devs[0].user, "tablet", client.Config{MaxAttempts: 1})
	unavailable := func(what string) {
		t.Helper()
		_, err := once.c.Send(ctxT(t), conv, "x", 1, []byte("x"))
		var e *client.Error
		if !errors.As(err, &e) || e.Code != wire.CodeUnavailable || e.RetryAfter == 0 {
			t.Fatalf("SEND forwarded %s: %v, want UNAVAILABLE with retry_after_ms", what, err)
		}
	}

	shard := cluster.ShardOf(conv, shards)
	c.ring.Move(shard, -1)
	unavailable("with no owner")
	c.ring.Move(shard, 1)

	silent, err := net.Listen("tcp", gatewaytest.Addr)
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn // open, never answered
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, conn)
		}
	}()
	defer func() {
		silent.Close()
		<-accepted
		for _, conn := range held {
			conn.Close()
		}
	}()
	n1 := c.nodes[1]
	c.ring.SetNode(cluster.NodeInfo{ID: 1, Incarnation: 1, Addr: n1.addr, PeerAddr: silent.Addr().String()})
	unavailable("to a silent owner")

	c.ring.SetNode(cluster.NodeInfo{ID: 1, Incarnation: 1, Addr: n1.addr, PeerAddr: n1.peerAdr})
	ack, err := devs[0].c.Send(ctxT(t), conv, "x", 1, []byte("x"))
	if err != nil || ack.Duplicate {
		t.Fatalf("SEND retried at the owner: %v, %v; want stored once", ack, err)
	}
	c.check(devs, map[uint64][]string{conv: {"x"}})
}

// TestClusterDrain: the shard of node 0's group moves to node 1 as a
// cluster hands it over (unserved, drained, served by the new owner) while
// every member sends to it. Every SEND is acked, and nothing is lost or
// doubled.
func TestClusterDrain(t *testing.T) {
	c := startCluster(t)
	devs, convs := c.groups(2, client.Config{})
	conv := convs[0]
	shard := cluster.ShardOf(conv, shards)
	var want map[uint64][]string
	done := make(chan struct{})
	go func() {
		defer close(done)
		want = sendAll(t, devs, convs[:1], 20, "m")
	}()
	// Hand over once a few SENDs of the run have been stored.
	for deadline := time.Now().Add(10 * time.Second); len(devs[0].bodies(conv)) < 4 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	c.ring.Move(shard, -1)
	if err := c.nodes[0].svc.Drain(context.Background(), shard); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	c.ring.Move(shard, 1)
	<-done
	c.check(devs, want)
}

// TestClusterDirect: users of both nodes exchange first direct messages,
// both sides of each pair at once. Whichever node the senders are on, the
// commands run on the node serving the pair's conversation (forwarded), and
// each pair ends with one conversation holding both messages. A block set
// through one node holds for sends through the other.
func TestClusterDirect(t *testing.T) {
	c := startCluster(t)
	us := c.users(2)
	var devs []*device
	for _, u := range slices.Concat(us[0], us[1]) {
		devs = append(devs, c.dial(u, "phone", client.Config{}))
	}
	want := map[uint64][]string{}
	var wg sync.WaitGroup
	for i, a := range devs {
		for _, b := range devs[i+1:] {
			conv := wire.DirectConv(a.user, b.user)
			for _, d := range []struct{ from, to *device }{{a, b}, {b, a}} {
				body := fmt.Sprintf("%d→%d", d.from.user, d.to.user)
				want[conv] = append(want[conv], body)
				wg.Go(func() {
					ack, err := d.from.c.SendDirect(ctxT(t), d.to.user, body, 1, []byte(body))
					if err != nil || ack.Conv != conv {
						t.Errorf("direct %s: %v, %v (want conv %d)", body, ack, err, conv)
					}
				})
			}
		}
	}
	wg.Wait()
	// check wants every conversation on every device: give each its pair's.
	for _, d := range devs {
		mine := map[uint64][]string{}
		for _, o := range devs {
			if o != d {
				conv := wire.DirectConv(d.user, o.user)
				mine[conv] = want[conv]
			}
		}
		c.check([]*device{d}, mine)
	}

	a, b := devs[0], devs[len(devs)-1] // on different nodes
	if err := b.c.Block(ctxT(t), a.user, true); err != nil {
		t.Fatalf("BLOCK forwarded: %v", err)
	}
	if _, err := a.c.SendDirect(ctxT(t), b.user, "blocked", 1, nil); !errors.Is(err, client.ErrBlocked) {
		t.Fatalf("direct send to a user who blocked the sender, forwarded: %v, want BLOCKED", err)
	}
}
