package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/inboxd/inboxd/client"
	"github.com/inboxd/inboxd/cluster"
	"github.com/inboxd/inboxd/internal/backoff"
	"github.com/inboxd/inboxd/internal/cassandratest"
	"github.com/inboxd/inboxd/token"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// clusterProc is one inboxd process of a cluster started by a test.
type clusterProc struct {
	instance
	cmd    *exec.Cmd
	exited chan error
	mu     sync.Mutex
	log    []string // its stderr, for a failure's report
}

// freePort returns a loopback address that was free a moment ago: a
// cluster node advertises its -listen and -peer-listen addresses, so they
// cannot be port 0. The port is drawn below the ephemeral range (32768 on
// Linux), where the connections to Cassandra take theirs.
func freePort(t *testing.T) string {
	t.Helper()
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free port")
	return ""
}

// startNode starts bin with args and waits for its ready line; the
// test's end stops it (SIGTERM, then SIGKILL after 20 s) if it still runs.
func startNode(t *testing.T, bin string, args ...string) *clusterProc {
	t.Helper()
	p := &clusterProc{cmd: exec.Command(bin, args...), exited: make(chan error, 1)}
	stderr, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			p.mu.Lock()
			t.Logf("inboxd %s:\n%s", p.listen, strings.Join(p.log, "\n"))
			p.mu.Unlock()
		}
	})
	lines := bufio.NewScanner(stderr)
	ready := regexp.MustCompile(`inboxd: ready.* listen=(\S+) admin=(\S+)`)
	found := make(chan bool, 1)
	go func() {
		ok := false
		for lines.Scan() {
			p.mu.Lock()
			p.log = append(p.log, lines.Text())
			p.mu.Unlock()
			if m := ready.FindStringSubmatch(lines.Text()); m != nil && !ok {
				p.listen, p.admin, ok = m[1], m[2], true
				found <- true
			}
		}
		if !ok {
			found <- false
		}
		p.exited <- p.cmd.Wait()
	}()
	select {
	case ok := <-found:
		if !ok {
			t.Fatal("inboxd exited before it was ready")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("inboxd not ready within 60 s")
	}
	return p
}

// stop sends SIGTERM and waits (20 s at most) for a clean exit; it returns
// at once if the process has exited.
func (p *clusterProc) stop(t *testing.T) {
	t.Helper()
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("inboxd %s exited with %v", p.listen, err)
		}
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("inboxd %s did not stop on SIGTERM within 20 s", p.listen)
	}
}

// testCluster is n inboxd processes of one cluster started by a test,
// on a keyspace of the test's own, and the users it connected.
type testCluster struct {
	nodes   []*clusterProc
	secret  []byte
	clients map[uint64]*client.Client
	logs    map[uint64]*entryLog // what each client delivered to OnEntry
}

// startCluster starts n cluster nodes, one after the other (the first
// creates the schema), with the given lease TTL.
func startCluster(t *testing.T, n int, leaseTTL string) *testCluster {
	t.Helper()
	hosts := strings.Join(cassandratest.Hosts(t), ",")
	keyspace := cassandratest.Keyspace(t, "cmd")
	bin := buildInboxd(t)
	dir := t.TempDir()
	tc := &testCluster{secret: []byte(strings.Repeat("cluster-secret-", 3)), clients: map[uint64]*client.Client{}, logs: map[uint64]*entryLog{}}
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, tc.secret, 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		p := startNode(t, bin, "-store", "cassandra", "-cluster", "-node", "-1",
			"-cassandra-hosts", hosts, "-keyspace", keyspace, "-cassandra-consistency", "ONE", "-create-schema",
			"-listen", freePort(t), "-peer-listen", freePort(t), "-admin", "127.0.0.1:0",
			"-lease-ttl", leaseTTL, "-secret-file", secretFile, "-data", filepath.Join(dir, fmt.Sprint("data", i)))
		p.secret = tc.secret
		tc.nodes = append(tc.nodes, p)
	}
	return tc
}

// addrs returns the client addresses of every node started.
func (tc *testCluster) addrs() []string {
	var out []string
	for _, p := range tc.nodes {
		out = append(out, p.listen)
	}
	return out
}

// dial connects users 1 to users, each with every node's address, and
// waits until every node serves some of them.
func (tc *testCluster) dial(t *testing.T, users uint64) {
	t.Helper()
	addrs := tc.addrs()
	for u := uint64(1); u <= users; u++ {
		tok, err := token.Sign(tc.secret, token.Claims{User: u, Device: "phone", Expiry: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		log := new(entryLog)
		// Until the first balancing rounds claimed the shards, AUTH is
		// answered UNAVAILABLE (no owner): Dial retries it.
		c, err := client.Dial(ctxFor(t, 30*time.Second), client.Config{Addrs: addrs, Token: tok, OnEntry: log.add,
			MinBackoff: 5 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
		if err != nil {
			t.Fatalf("user %d: dial: %v", u, err)
		}
		t.Cleanup(func() { c.Close() })
		tc.clients[u], tc.logs[u] = c, log
	}
	// The later nodes take their share of the shards over a few balancing
	// rounds; their users' connections to the first are redirected meanwhile.
	waitUntil(t, 30*time.Second, "users on every node", func() bool {
		var sum float64
		for i, n := range tc.nodes {
			online := n.scrape(t).value("inboxd_gateway_users_online")
			if online == 0 || len(tc.on()[i]) == 0 {
				return false
			}
			sum += online
		}
		return sum == float64(users)
	})
}

// on returns the users connected to each node.
func (tc *testCluster) on() [][]uint64 {
	by := make([][]uint64, len(tc.nodes))
	for u, c := range tc.clients {
		for i, n := range tc.nodes {
			if c.Session().Addr == n.listen {
				by[i] = append(by[i], u)
			}
		}
	}
	for _, us := range by {
		slices.Sort(us)
	}
	return by
}

// createGroups creates a group of every user with each creator, and
// returns their ids.
func (tc *testCluster) createGroups(t *testing.T, creators ...uint64) []uint64 {
	t.Helper()
	var convs []uint64
	for i, creator := range creators {
		var members []uint64
		for u := range tc.clients {
			if u != creator {
				members = append(members, u)
			}
		}
		g, err := tc.clients[creator].CreateGroup(ctxFor(t, 20*time.Second), &wirepb.CreateGroupRequest{Name: fmt.Sprint("g", i), Members: members})
		if err != nil {
			t.Fatalf("user %d: create group: %v", creator, err)
		}
		convs = append(convs, g.Id)
	}
	return convs
}

// TestClusterOnCassandra runs two inboxd processes as a cluster on one
// keyspace: users of both nodes in two groups, every member's inbox
// complete, contiguous and in conv_seq order, exactly once; then one node
// leaves on SIGTERM and the other serves everyone.
func TestClusterOnCassandra(t *testing.T) {
	tc := startCluster(t, 2, "3s")
	nodes, clients := tc.nodes, tc.clients
	const users = 12
	tc.dial(t, users)
	by := tc.on()

	// A group created by a user of each node, with every user in it.
	convs := tc.createGroups(t, by[0][0], by[1][0])
	want := map[uint64][]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for u, c := range clients {
		wg.Go(func() {
			for _, conv := range convs {
				for j := range 3 {
					body := fmt.Sprintf("%d/%d/%d", u, conv, j)
					if _, err := c.Send(ctxFor(t, 20*time.Second), conv, body, 1, []byte(body)); err != nil {
						t.Errorf("user %d: send to %d: %v", u, conv, err)
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
	if t.Failed() {
		t.FailNow()
	}
	checkInboxes(t, clients, want)
	checkMetricsTable(t, nodes[0].scrape(t), true)

	// The second node leaves: its shards are handed to the first, whose
	// users it then serves all.
	leaving := nodes[1]
	sent := time.Now()
	leaving.stop(t)
	t.Logf("SIGTERM to exit: %v", time.Since(sent))
	deadline := sent.Add(10 * time.Second)
	for u, c := range clients {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		_, err := c.Sync(ctx, 0, 1)
		cancel()
		if err != nil {
			t.Fatalf("user %d: no SYNC answered within 10 s of SIGTERM: %v", u, err)
		}
		if got := c.Session().Addr; got != nodes[0].listen {
			t.Fatalf("user %d served by %s, want the survivor %s", u, got, nodes[0].listen)
		}
	}
	t.Logf("SIGTERM to every user served by the survivor: %v", time.Since(sent))
	sender := by[1][0]
	body := "after-leave"
	if _, err := clients[sender].Send(ctxFor(t, 20*time.Second), convs[0], body, 1, []byte(body)); err != nil {
		t.Fatalf("user %d: send after the leave: %v", sender, err)
	}
	want[convs[0]] = append(want[convs[0]], body)
	checkInboxes(t, clients, want)
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitUntil polls cond every 50 ms until it holds, or fails the test
// after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no %s within %v", what, d)
		}
	}
}

// checkInboxes reads every user's inbox by SYNC, until it holds every
// message of want (20 s at most: deliveries to other nodes' members are
// asynchronous), and checks it: seqs contiguous from 1, each
// conversation's messages in conv_seq order with no gap, each body of
// want[conv] exactly once.
func checkInboxes(t *testing.T, clients map[uint64]*client.Client, want map[uint64][]string) {
	t.Helper()
	for u, c := range clients {
		var entries []*wirepb.Entry
		for end := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			entries = syncAll(t, c)
			complete := true
			for conv, bodies := range want {
				complete = complete && len(bodiesOf(entries, conv)) >= len(bodies)
			}
			if complete {
				break
			}
			if time.Now().After(end) {
				for conv, bodies := range want {
					t.Errorf("user %d conv %d: %d of %d messages within 20 s", u, conv, len(bodiesOf(entries, conv)), len(bodies))
				}
				t.FailNow()
			}
		}
		last := map[uint64]uint64{}
		for i, e := range entries {
			if e.Seq != uint64(i+1) {
				t.Fatalf("user %d: seq %d at position %d", u, e.Seq, i)
			}
			if e.Message == nil {
				continue
			}
			if l, ok := last[e.Conv]; ok && e.ConvSeq != l+1 {
				t.Fatalf("user %d conv %d: conv_seq %d after %d", u, e.Conv, e.ConvSeq, l)
			}
			last[e.Conv] = e.ConvSeq
		}
		for conv, bodies := range want {
			inOrder := bodiesOf(entries, conv)
			got, w := slices.Clone(inOrder), slices.Clone(bodies)
			slices.Sort(got)
			slices.Sort(w)
			if !slices.Equal(got, w) {
				t.Fatalf("user %d conv %d: %d messages %v, want %d %v", u, conv, len(got), got, len(w), w)
			}
			// One sender's messages in the order they were acknowledged.
			for sender, acked := range bySender(bodies) {
				if got := bySender(inOrder)[sender]; !slices.Equal(got, acked) {
					t.Fatalf("user %d conv %d: sender %s's messages in the order %v, acknowledged %v", u, conv, sender, got, acked)
				}
			}
		}
	}
}

// bySender splits bodies by their sender, the part before the first "/",
// keeping their order.
func bySender(bodies []string) map[string][]string {
	out := map[string][]string{}
	for _, b := range bodies {
		sender, _, _ := strings.Cut(b, "/")
		out[sender] = append(out[sender], b)
	}
	return out
}

// entryLog records the entries a client delivered to OnEntry.
type entryLog struct {
	mu      sync.Mutex
	entries []*wirepb.Entry
}

func (l *entryLog) add(e *wirepb.Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, e)
}

func (l *entryLog) get() []*wirepb.Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.entries)
}

// syncAll reads c's whole inbox by SYNC, page by page.
func syncAll(t *testing.T, c *client.Client) []*wirepb.Entry {
	t.Helper()
	var all []*wirepb.Entry
	for {
		var after uint64
		if len(all) > 0 {
			after = all[len(all)-1].Seq
		}
		r, err := c.Sync(ctxFor(t, 20*time.Second), after, 500)
		if err != nil {
			t.Fatalf("sync: %v", err)
		}
		all = append(all, r.Entries...)
		if !r.HasMore || len(r.Entries) == 0 {
			return all
		}
	}
}

// bodiesOf returns the bodies of the messages of conv in entries.
func bodiesOf(entries []*wirepb.Entry, conv uint64) []string {
	var out []string
	for _, e := range entries {
		if e.Conv == conv && e.Message != nil && e.Message.Kind == 1 {
			out = append(out, string(e.Message.Body))
		}
	}
	return out
}

// kill sends SIGKILL to the process and waits for it to die.
func (p *clusterProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill inboxd %s: %v", p.listen, err)
	}
	<-p.exited
}

// TestClusterFailover runs three inboxd processes as a cluster and kills
// one with SIGKILL while every user sends, paced, to three groups (one
// created on each node, so owned there). The dead node's users reconnect
// through the client's address list, are served by a survivor once the
// dead node's lease has run out and its shards were taken over, and catch
// up by SYNC; every send is retried under its client msg id until it is
// acknowledged, and every member's inbox then holds each message exactly
// once, contiguous, in each sender's order, as the client delivered it.
// The lease TTL is the default (3 s). The failover time — the kill to the
// first ack of a send a user of the dead node began after the kill — is
// logged; the test fails only if a user is not served again within a
// minute.
func TestClusterFailover(t *testing.T) {
	tc := startCluster(t, 3, cluster.DefaultLeaseTTL.String())
	const users = 15
	tc.dial(t, users)
	by := tc.on()
	const victim = 1
	dead := tc.nodes[victim]
	orphans := map[uint64]bool{}
	for _, u := range by[victim] {
		orphans[u] = true
	}
	convs := tc.createGroups(t, by[0][0], by[1][0], by[2][0])

	var (
		mu        sync.Mutex
		want      = map[uint64][]string{}
		recovered = map[uint64]time.Duration{} // a user of the dead node: the kill to its first ack
		killedAt  time.Time                    // set before killed is closed
	)
	killed, stop := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	for u, c := range tc.clients {
		wg.Go(func() {
			for j := range 600 {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				conv := convs[j%len(convs)]
				body := fmt.Sprintf("%d/%d/%d", u, conv, j)
				began := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				var err error
				// Send retries a few times on its own; the failover may
				// take longer, so it is sent again, same client msg id.
				for {
					if _, err = c.Send(ctx, conv, body, 1, []byte(body)); err == nil || !backoff.Sleep(ctx, 50*time.Millisecond) {
						break
					}
				}
				cancel()
				if err != nil {
					t.Errorf("user %d: send %s not acknowledged within a minute: %v", u, body, err)
					return
				}
				acked := time.Now()
				mu.Lock()
				want[conv] = append(want[conv], body)
				select {
				case <-killed:
					if _, ok := recovered[u]; orphans[u] && !ok && began.After(killedAt) {
						recovered[u] = acked.Sub(killedAt)
					}
				default:
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(2 * time.Second) // under load
	mu.Lock()
	killedAt = time.Now()
	mu.Unlock()
	dead.kill(t)
	close(killed)
	waitUntil(t, time.Minute, "ack for every user of the killed node", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(recovered) == len(orphans) || t.Failed()
	})
	time.Sleep(time.Second) // the survivors serving everyone, under load
	close(stop)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	first, all := time.Duration(math.MaxInt64), time.Duration(0)
	for _, d := range recovered {
		first, all = min(first, d), max(all, d)
	}
	t.Logf("kill -9 of node %s (lease TTL %v, %d of %d users on it): first ack for one of its users after %v, for all of them after %v",
		dead.listen, cluster.DefaultLeaseTTL, len(orphans), users, first.Round(time.Millisecond), all.Round(time.Millisecond))
	for u := range orphans {
		if got := tc.clients[u].Session().Addr; got == dead.listen {
			t.Errorf("user %d still on the killed node %s", u, got)
		}
	}
	checkInboxes(t, tc.clients, want)
	tc.checkDelivered(t)
}

// checkDelivered checks that every client delivered to OnEntry exactly
// its user's inbox as SYNC reads it, once everything sent is in it.
func (tc *testCluster) checkDelivered(t *testing.T) {
	t.Helper()
	for u, c := range tc.clients {
		inbox := syncAll(t, c)
		var got []*wirepb.Entry
		waitUntil(t, 20*time.Second, fmt.Sprintf("user %d's client delivering its %d entries", u, len(inbox)), func() bool {
			got = tc.logs[u].get()
			return len(got) >= len(inbox)
		})
		for i, e := range inbox {
			if g := got[i]; g.Seq != e.Seq || g.Conv != e.Conv || g.ConvSeq != e.ConvSeq || g.MsgId != e.MsgId {
				t.Fatalf("user %d: delivered entry %d is seq %d conv %d/%d msg %d, the inbox's seq %d conv %d/%d msg %d",
					u, i, g.Seq, g.Conv, g.ConvSeq, g.MsgId, e.Seq, e.Conv, e.ConvSeq, e.MsgId)
			}
		}
	}
}
