package main

import (
	"bufio"
	"context"
	"fmt"
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

// TestClusterOnCassandra runs two inboxd processes as a cluster on one
// keyspace: users of both nodes in two groups, every member's inbox
// complete, contiguous and in conv_seq order, exactly once; then one node
// leaves on SIGTERM and the other serves everyone.
func TestClusterOnCassandra(t *testing.T) {
	hosts := strings.Join(cassandratest.Hosts(t), ",")
	keyspace := cassandratest.Keyspace(t, "cmd")
	bin := buildInboxd(t)
	dir := t.TempDir()
	secret := []byte(strings.Repeat("cluster-secret-", 3))
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	var nodes [2]*clusterProc
	for i := range nodes {
		// One after the other: the first creates the schema.
		nodes[i] = startNode(t, bin, "-store", "cassandra", "-cluster", "-node", "-1",
			"-cassandra-hosts", hosts, "-keyspace", keyspace, "-cassandra-consistency", "ONE", "-create-schema",
			"-listen", freePort(t), "-peer-listen", freePort(t), "-admin", "127.0.0.1:0",
			"-lease-ttl", "3s", "-secret-file", secretFile, "-data", filepath.Join(dir, fmt.Sprint("data", i)))
		nodes[i].secret = secret
	}
	addrs := []string{nodes[0].listen, nodes[1].listen}

	const users = 12
	clients := make(map[uint64]*client.Client)
	for u := uint64(1); u <= users; u++ {
		tok, err := token.Sign(secret, token.Claims{User: u, Device: "phone", Expiry: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		// Until the first balancing rounds claimed the shards, AUTH is
		// answered UNAVAILABLE (no owner), which Dial returns.
		var c *client.Client
		waitUntil(t, 30*time.Second, fmt.Sprintf("connection of user %d", u), func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err = client.Dial(ctx, client.Config{Addrs: addrs, Token: tok, MinBackoff: 5 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
			return err == nil
		})
		t.Cleanup(func() { c.Close() })
		clients[u] = c
	}
	// The second node takes its share of the shards over a few balancing
	// rounds; its users' connections to the first are redirected meanwhile.
	on := func() [2][]uint64 {
		var by [2][]uint64
		for u, c := range clients {
			for i, n := range nodes {
				if c.Session().Addr == n.listen {
					by[i] = append(by[i], u)
				}
			}
		}
		return by
	}
	waitUntil(t, 30*time.Second, "users on both nodes", func() bool {
		online := [2]float64{}
		for i, n := range nodes {
			online[i] = n.scrape(t).value("inboxd_gateway_users_online")
		}
		by := on()
		return online[0] > 0 && online[1] > 0 && online[0]+online[1] == users && len(by[0]) > 0 && len(by[1]) > 0
	})
	by := on()

	// A group created by a user of each node, with every user in it.
	var convs []uint64
	for i := range nodes {
		creator := by[i][0]
		var members []uint64
		for u := range clients {
			if u != creator {
				members = append(members, u)
			}
		}
		g, err := clients[creator].CreateGroup(ctxFor(t, 20*time.Second), &wirepb.CreateGroupRequest{Name: fmt.Sprint("g", i), Members: members})
		if err != nil {
			t.Fatalf("user %d: create group: %v", creator, err)
		}
		convs = append(convs, g.Id)
	}
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
			got, w := bodiesOf(entries, conv), slices.Clone(bodies)
			slices.Sort(got)
			slices.Sort(w)
			if !slices.Equal(got, w) {
				t.Fatalf("user %d conv %d: %d messages %v, want %d %v", u, conv, len(got), got, len(w), w)
			}
		}
	}
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
