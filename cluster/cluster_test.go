package cluster_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/inboxd/inboxd/cluster"
	"github.com/inboxd/inboxd/internal/cassandratest"
)

// The tests run against a real node, named by INBOXD_CASSANDRA_HOSTS
// (scripts/test starts one). Each test works in a keyspace of its own,
// named after run.Prefix and dropped when the run ends; then TestMain
// checks that no test left a goroutine behind.
var (
	run       = cassandratest.NewRun("cluster")
	keyspaces atomic.Int32
)

func TestMain(m *testing.M) { os.Exit(run.Main(m)) }

func hosts(t testing.TB) []string { return cassandratest.Hosts(t) }

// session opens a driver session of the test's own, to hosts (a proxy) or
// to the node.
func session(t testing.TB, hosts ...string) *gocql.Session { return cassandratest.Session(t, hosts...) }

// keyspace creates a keyspace for the test with the cluster's tables, as
// deploy/cassandra/schema.cql defines them.
func keyspace(t *testing.T) string {
	t.Helper()
	ks := fmt.Sprintf("%s_%d", run.Prefix, keyspaces.Add(1))
	file, err := os.ReadFile("../deploy/cassandra/schema.cql")
	if err != nil {
		t.Fatal(err)
	}
	cql := regexp.MustCompile(`--.*`).ReplaceAllString(string(file), "")
	cql = regexp.MustCompile(`\binboxd\b`).ReplaceAllString(cql, ks)
	wanted := regexp.MustCompile(`^CREATE (KEYSPACE|TABLE IF NOT EXISTS \w+\.(nodes|shards|settings) )`)
	s := session(t, hosts(t)...)
	for stmt := range strings.SplitSeq(cql, ";") {
		if stmt = strings.TrimSpace(stmt); !wanted.MatchString(stmt) {
			continue
		}
		// A busy node may time a schema change out and apply it anyway:
		// IF NOT EXISTS makes another try harmless.
		var err error
		for range 3 {
			if err = s.Query(stmt).Exec(); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	return ks
}

const shards = cluster.DefaultShards

// harness runs nodes of one cluster in the test's process and samples
// which of them serve each shard.
type harness struct {
	t  *testing.T
	ks string

	mu     sync.Mutex
	nodes  []*cluster.Node
	drains map[int][]int // node index → shards drained, in order
	deaths []cluster.DeadNode

	checker *checker
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, ks: keyspace(t), drains: make(map[int][]int)}
	h.checker = newChecker(h)
	t.Cleanup(func() {
		h.checker.stop()
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, n := range h.nodes {
			if n != nil {
				_ = n.Close() // ErrClosed for nodes closed by the test
			}
		}
	})
	return h
}

// join joins count nodes at once, with the default lease TTL and rounds,
// consistency ONE on the one Cassandra node, and edit applied to their
// configurations (if not nil). It returns their indexes.
func (h *harness) join(count int, edit func(*cluster.Config)) []int {
	h.t.Helper()
	errs := make(chan error, count)
	var idxs []int
	for range count {
		h.mu.Lock()
		idx := len(h.nodes)
		h.nodes = append(h.nodes, nil)
		h.mu.Unlock()
		idxs = append(idxs, idx)
		cfg := cluster.Config{
			Hosts:       hosts(h.t),
			Consistency: gocql.One,
			Keyspace:    h.ks,
			Shards:      shards,
			NodeID:      cluster.PickNodeID,
			Addr:        fmt.Sprintf("127.0.0.%d:7000", idx+1),
			PeerAddr:    fmt.Sprintf("127.0.0.%d:7001", idx+1),
			Logger:      slog.New(slog.NewTextHandler(h.t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})).With("i", idx),
			Drain: func(_ context.Context, shard int) error {
				h.mu.Lock()
				defer h.mu.Unlock()
				h.drains[idx] = append(h.drains[idx], shard)
				return nil
			},
		}
		cfg.OnNodeDead = func(_ context.Context, dead cluster.DeadNode) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.deaths = append(h.deaths, dead)
			return nil
		}
		if edit != nil {
			edit(&cfg)
		}
		go func() {
			ctx, cancel := context.WithTimeout(h.t.Context(), 30*time.Second)
			defer cancel()
			n, err := cluster.Join(ctx, cfg)
			if err == nil {
				h.mu.Lock()
				h.nodes[idx] = n
				h.mu.Unlock()
			}
			errs <- err
		}()
	}
	for range count {
		if err := <-errs; err != nil {
			h.t.Fatalf("Join: %v", err)
		}
	}
	return idxs
}

// node returns the node with index i.
func (h *harness) node(i int) *cluster.Node {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nodes[i]
}

// noDeaths fails the test if a node was declared dead: a graceful move
// must never wait for a lease to run out.
func (h *harness) noDeaths() {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.deaths) > 0 {
		h.t.Errorf("nodes were declared dead: %+v", h.deaths)
	}
}

// drained returns the shards node i drained so far.
func (h *harness) drained(i int) []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.drains[i])
}

// servers returns the nodes, among those of the given indexes, that serve
// shard now.
func (h *harness) servers(shard int, among []int) []int {
	var out []int
	for _, i := range among {
		if _, ok := h.node(i).Serving(shard); ok {
			out = append(out, i)
		}
	}
	return out
}

// waitBalanced waits until the nodes of the given indexes serve every
// shard, each shard on one of them, with shard counts within one of each
// other, and returns the shards of each.
func (h *harness) waitBalanced(among ...int) map[int][]int {
	h.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		owned := make(map[int][]int)
		ok := true
		for s := range shards {
			servers := h.servers(s, among)
			if len(servers) != 1 {
				ok = false
				break
			}
			owned[servers[0]] = append(owned[servers[0]], s)
		}
		if ok {
			lo, hi := shards, 0
			for _, i := range among {
				lo, hi = min(lo, len(owned[i])), max(hi, len(owned[i]))
			}
			if hi-lo <= 1 {
				h.checker.catchUp() // so that it has seen what this saw
				return owned
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("the nodes %v did not come to serve every shard, balanced, within a minute: %v", among, owned)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checker samples every node's Serving(shard) continuously and records, for
// each (node, shard), the intervals from the first to the last sample that
// found it served. Two nodes' intervals of one shard must not overlap: if
// they do, one node was seen serving before and after another was.
type checker struct {
	h      *harness
	mu     sync.Mutex
	ivs    map[key][]interval
	sweeps int // completed
	done   chan struct{}
	quit   chan struct{}
	once   sync.Once
}

type key struct{ node, shard int }

type interval struct{ from, to time.Time }

func newChecker(h *harness) *checker {
	c := &checker{h: h, ivs: make(map[key][]interval), done: make(chan struct{}), quit: make(chan struct{})}
	go c.run()
	return c
}

func (c *checker) run() {
	defer close(c.done)
	open := make(map[key]bool)
	for {
		select {
		case <-c.quit:
			return
		default:
		}
		c.h.mu.Lock()
		nodes := slices.Clone(c.h.nodes)
		c.h.mu.Unlock()
		c.mu.Lock()
		for s := range shards {
			for i, n := range nodes {
				if n == nil {
					continue
				}
				k := key{i, s}
				t := time.Now()
				if _, ok := n.Serving(s); !ok {
					open[k] = false
					continue
				}
				if open[k] {
					c.ivs[k][len(c.ivs[k])-1].to = t
				} else {
					c.ivs[k] = append(c.ivs[k], interval{t, t})
					open[k] = true
				}
			}
		}
		c.sweeps++
		c.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
}

// stop ends the sampling and fails the test if two nodes were seen serving
// one shard at once.
func (c *checker) stop() {
	c.once.Do(func() {
		close(c.quit)
		<-c.done
		c.mu.Lock()
		defer c.mu.Unlock()
		for s := range shards {
			var all []struct {
				node int
				iv   interval
			}
			for k, ivs := range c.ivs {
				if k.shard == s {
					for _, iv := range ivs {
						all = append(all, struct {
							node int
							iv   interval
						}{k.node, iv})
					}
				}
			}
			slices.SortFunc(all, func(a, b struct {
				node int
				iv   interval
			}) int {
				return a.iv.from.Compare(b.iv.from)
			})
			for i := 1; i < len(all); i++ {
				if a, b := all[i-1], all[i]; a.node != b.node && !b.iv.from.After(a.iv.to) {
					c.h.t.Errorf("shard %d: node %d served it from %v and node %d from %v, until %v",
						s, b.node, b.iv.from.Format(time.StampMicro), a.node, a.iv.from.Format(time.StampMicro), a.iv.to.Format(time.StampMicro))
				}
			}
		}
	})
}

// catchUp waits until the checker has recorded a whole sweep begun after
// the call.
func (c *checker) catchUp() {
	c.mu.Lock()
	target := c.sweeps + 2
	c.mu.Unlock()
	for {
		c.mu.Lock()
		done := c.sweeps >= target
		c.mu.Unlock()
		if done {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// lastServed returns the last instant node was seen serving shard.
func (c *checker) lastServed(node, shard int) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ivs := c.ivs[key{node, shard}]
	if len(ivs) == 0 {
		return time.Time{}
	}
	return ivs[len(ivs)-1].to
}

// firstServed returns the first instant after after at which node was seen
// serving shard.
func (c *checker) firstServed(node, shard int, after time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, iv := range c.ivs[key{node, shard}] {
		if iv.from.After(after) {
			return iv.from
		}
	}
	return time.Time{}
}
