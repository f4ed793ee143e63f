package cassandra_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/timeline/cassandra"
	"github.com/inboxd/inboxd/wire"
)

// faultsEnv enables the tests that stop and start a Cassandra node of their
// own (about a minute and a second JVM); scripts/test sets it.
const faultsEnv = "INBOXD_CASSANDRA_FAULTS"

// node is a Cassandra node that a test starts and stops, through
// deploy/cassandra/cassandra.sh, with its own state directory and ports.
type node struct {
	t   *testing.T
	env []string
	cql string // host:port
}

func newNode(t *testing.T) *node {
	ports := freePorts(t, 2)
	n := &node{t: t, cql: "127.0.0.1:" + strconv.Itoa(ports[0])}
	n.env = append(os.Environ(),
		"INBOXD_CASSANDRA_STATE="+t.TempDir(),
		"INBOXD_CASSANDRA_PORT="+strconv.Itoa(ports[0]),
		"INBOXD_CASSANDRA_STORAGE_PORT="+strconv.Itoa(ports[1]),
		"INBOXD_CASSANDRA_HEAP=512M",
	)
	// Registered after TempDir's cleanup, so it runs before it.
	t.Cleanup(func() { n.run("stop") })
	return n
}

func (n *node) run(cmd string) {
	n.t.Helper()
	start := time.Now()
	c := exec.Command("bash", "../../deploy/cassandra/cassandra.sh", cmd)
	c.Env = n.env
	if out, err := c.CombinedOutput(); err != nil {
		n.t.Fatalf("cassandra.sh %s: %v\n%s", cmd, err, out)
	}
	n.t.Logf("cassandra.sh %s: %v", cmd, time.Since(start).Round(time.Second))
}

// freePorts returns n TCP ports free on the loopback address just now.
func freePorts(t *testing.T, n int) []int {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// sent is what a sender knows of one message: acknowledged or not yet.
type sent struct {
	sender uint64
	cmid   string
	acked  bool
	res    inbox.SendResult
}

// TestInboxSurvivesNodeRestart runs the inbox service on a store whose only
// node is stopped and started again under concurrent senders. While it is
// down, sends fail with retryable errors; once it is back, they succeed
// without restarting anything; in the end, after the unacknowledged sends are
// retried with their client msg ids, every member's inbox holds every
// message once, at seqs 1, 2, 3, ….
func TestInboxSurvivesNodeRestart(t *testing.T) {
	if os.Getenv(faultsEnv) != "1" {
		t.Skipf("%s is not 1: this test starts and stops a Cassandra node of its own", faultsEnv)
	}
	n := newNode(t)
	n.run("start")
	cfg := cassandra.Config{
		Hosts:        []string{n.cql},
		Keyspace:     "inboxd_fault",
		Consistency:  gocql.One,
		Timeout:      2 * time.Second,
		Writers:      8,
		CreateSchema: true,
		LeaseTTL:     10 * time.Second, // shorter than the outage: the lease is taken back
		Logger:       slog.New(slog.NewTextHandler(t.Output(), nil)),
	}
	store := open(t, cfg)
	svc, err := inbox.New(t.Context(), inbox.Config{Store: store, Node: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()

	const senders, members = 4, 8
	users := make([]uint64, members)
	for i := range users {
		users[i] = uint64(1000 + i)
	}
	g, err := svc.CreateGroup(t.Context(), users[0], inbox.NewGroup{Members: users[1:]})
	if err != nil {
		t.Fatal(err)
	}

	var (
		mu       sync.Mutex
		messages []*sent
		down     = make(chan struct{}) // closed when the node is stopped
		failed   = make(map[int]bool)  // senders whose send failed while down
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	send := func(m *sent) error {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		res, err := svc.SendGroupMessage(ctx, m.sender, g.ID, m.cmid, wire.KindText, []byte(m.cmid))
		if err == nil {
			mu.Lock()
			m.acked, m.res = true, res
			mu.Unlock()
		}
		return err
	}
	// Each sender is a client: it retries a message that failed, with the
	// same client msg id, after a pause, and sends the next one only once
	// it is acknowledged. (A sender that moved on at once would pile up
	// thousands of failed messages while reads fail fast during the outage,
	// each to be resent at the end.)
	for i := range senders {
		wg.Go(func() {
			for k := 0; ; k++ {
				m := &sent{sender: users[i], cmid: fmt.Sprintf("s%d-%d", i, k)}
				mu.Lock()
				messages = append(messages, m)
				mu.Unlock()
				for {
					select {
					case <-stop:
						return
					default:
					}
					err := send(m)
					if err == nil {
						break
					}
					if !errors.Is(err, inbox.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("send %s: %v, neither ErrUnavailable nor a deadline", m.cmid, err)
						return
					}
					select {
					case <-down:
						mu.Lock()
						failed[i] = true
						mu.Unlock()
					default:
					}
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
		})
	}
	acked := func() int {
		mu.Lock()
		defer mu.Unlock()
		k := 0
		for _, m := range messages {
			if m.acked {
				k++
			}
		}
		return k
	}
	waitFor := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("timed out after %v waiting for %s", d, what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	waitFor("sends before the outage", time.Minute, func() bool { return acked() >= 40 })
	n.run("stop")
	close(down)
	before := acked()
	waitFor("every sender to fail while the node is down", time.Minute, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(failed) == senders
	})
	if got := acked() - before; got > senders {
		t.Errorf("%d sends were acknowledged while the node was down", got)
	}
	n.run("start")
	again := acked()
	waitFor("sends after the node came back", 2*time.Minute, func() bool { return acked() >= again+40 })
	close(stop)
	wg.Wait()

	// A client retries what was not acknowledged, with the same client msg
	// id: stored once, whether or not the first attempt was.
	for _, m := range messages {
		if !m.acked {
			if err := send(m); err != nil {
				t.Fatalf("resend %s: %v", m.cmid, err)
			}
		}
	}
	checkInboxes(t, svc, users, g.ID, messages)
}

// checkInboxes fails the test unless every user's inbox is seqs 1..n and
// holds each message once, at the conv_seq its sender was told.
func checkInboxes(t *testing.T, svc *inbox.Service, users []uint64, conv uint64, messages []*sent) {
	t.Helper()
	want := make(map[string]uint64) // cmid → conv_seq
	for _, m := range messages {
		want[m.cmid] = m.res.ConvSeq
	}
	for _, u := range users {
		var after uint64
		got := make(map[string]uint64)
		for {
			res, err := svc.Sync(t.Context(), u, after, 200)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range res.Entries {
				if e.Row.Seq != after+1 {
					t.Fatalf("inbox of %d: seq %d follows %d", u, e.Row.Seq, after)
				}
				after = e.Row.Seq
				if e.Row.Conv != conv || e.Row.Kind != wire.KindText {
					continue
				}
				cmid := e.Msg.ClientMsgID
				if _, dup := got[cmid]; dup {
					t.Fatalf("inbox of %d holds %s twice", u, cmid)
				}
				got[cmid] = e.Row.ConvSeq
			}
			if !res.HasMore {
				break
			}
		}
		if len(got) != len(want) {
			t.Fatalf("inbox of %d holds %d messages, %d were sent", u, len(got), len(want))
		}
		for cmid, seq := range want {
			if got[cmid] != seq {
				t.Fatalf("inbox of %d: %s at conv_seq %d, its sender was told %d", u, cmid, got[cmid], seq)
			}
		}
	}
	t.Logf("%d messages in each of %d inboxes", len(want), len(users))
}
