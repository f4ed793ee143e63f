package cassandra_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inboxd/inboxd/cluster"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/cassandra"
	"github.com/inboxd/inboxd/timeline/timelinetest"
	"github.com/inboxd/inboxd/wire"
)

var errNotServing = errors.New("fake fence: shard not served")

// fence is a deterministic cassandra.Fence: it serves every shard but
// those refused, with timestamps as cluster.Node hands them out (strictly
// rising, at least the wall clock), and floors raised by the test.
type fence struct {
	mu     sync.Mutex
	last   int64
	refuse map[int]bool
}

func (f *fence) Timestamp(shard int) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse[shard] {
		return 0, fmt.Errorf("%w: %d", errNotServing, shard)
	}
	return f.nextLocked(), nil
}

func (f *fence) LogTimestamp() (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nextLocked(), nil
}

func (f *fence) nextLocked() int64 {
	f.last = max(time.Now().UnixMicro(), f.last+1)
	return f.last
}

func (*fence) ShardCount() int { return cluster.DefaultShards }

// newest returns the newest timestamp handed out.
func (f *fence) newest() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

// raise makes every later timestamp at least floor, as taking a shard does.
func (f *fence) raise(floor int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = max(f.last, floor-1)
}

// fencedConfig is config in cluster mode, as node of keyspace suffix.
func fencedConfig(t testing.TB, suffix string, node int, f cassandra.Fence) cassandra.Config {
	cfg := config(t, suffix)
	cfg.Fence, cfg.NodeID = f, node
	return cfg
}

// TestConformanceFenced runs the suite in cluster mode, with a fence that
// serves every shard.
func TestConformanceFenced(t *testing.T) {
	cfg := fencedConfig(t, "_fenced", 1, &fence{})
	timelinetest.Run(t, func(t *testing.T) timeline.Store {
		return open(t, cfg)
	})
}

// rowBatch writes one inbox row of user at seq, pointing at msg.
func rowBatch(user, seq, msg uint64) *timeline.Batch {
	return &timeline.Batch{Rows: []timeline.Row{{User: user, Seq: seq, Conv: 7, ConvSeq: seq, MsgID: msg, Kind: wire.KindText}}}
}

// inboxOf returns user's rows as read by s.
func inboxOf(t *testing.T, s *cassandra.Store, user uint64) []timeline.Row {
	t.Helper()
	rows, err := s.Inbox(t.Context(), user, timeline.Range{From: 1})
	if err != nil {
		t.Fatalf("Inbox: %v", err)
	}
	return rows
}

// joinAll joins count nodes to the keyspace of cfg, with onDead(i) as node
// i's OnNodeDead, and waits until each serves a share of the shards and
// together they serve all.
func joinAll(t *testing.T, cfg cassandra.Config, count int, onDead func(i int) func(context.Context, cluster.DeadNode) error) []*cluster.Node {
	t.Helper()
	var nodes []*cluster.Node
	for i := range count {
		n, err := cluster.Join(t.Context(), cluster.Config{
			Hosts:       cfg.Hosts,
			Consistency: cfg.Consistency,
			Keyspace:    cfg.Keyspace,
			NodeID:      cluster.PickNodeID,
			Addr:        fmt.Sprintf("127.0.0.%d:7000", i+1),
			Logger:      slog.New(slog.DiscardHandler),
			OnNodeDead:  onDead(i),
		})
		if err != nil {
			t.Fatalf("Join: %v", err)
		}
		t.Cleanup(func() { _ = n.Close() })
		nodes = append(nodes, n)
	}
	waitFor(t, func() bool {
		total := 0
		for _, n := range nodes {
			if len(n.Shards()) == 0 {
				return false
			}
			total += len(n.Shards())
		}
		return total == nodes[0].ShardCount()
	})
	return nodes
}

// waitFor waits up to 30 s for ok, which the cluster's balancing rounds
// make true.
func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatal("the cluster did not settle in 30 s")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// nodeConfig is base in cluster mode as n.
func nodeConfig(base cassandra.Config, n *cluster.Node) cassandra.Config {
	base.CreateSchema = false
	base.Fence, base.NodeID = n, n.Self().ID
	return base
}

// userOf returns a new user of a shard n serves.
func userOf(n *cluster.Node) uint64 {
	for {
		u := id()
		if _, ok := n.Serving(cluster.ShardOf(u, n.ShardCount())); ok {
			return u
		}
	}
}

// TestClusterNodes opens two stores on one keyspace, each with the
// cluster.Node of its own process's share: neither is refused, each
// commits in the shards it serves and only there, and each reads what the
// other wrote.
func TestClusterNodes(t *testing.T) {
	base := config(t, "_nodes")
	if err := cassandra.CreateSchema(t.Context(), base); err != nil {
		t.Fatal(err)
	}
	nodes := joinAll(t, base, 2, func(int) func(context.Context, cluster.DeadNode) error { return nil })
	var stores []*cassandra.Store
	users := make([]uint64, len(nodes)) // users[i] is a user of a shard node i serves
	for i, n := range nodes {
		stores = append(stores, open(t, nodeConfig(base, n)))
		users[i] = userOf(n)
	}
	for i, s := range stores {
		if err := s.Commit(t.Context(), rowBatch(users[i], 1, uint64(i+1))); err != nil {
			t.Fatalf("store %d: Commit: %v", i, err)
		}
		other := users[1-i]
		if err := s.Commit(t.Context(), rowBatch(other, 2, 9)); !errors.Is(err, cassandra.ErrFenced) {
			t.Errorf("store %d: Commit to a shard of the other node: %v, want ErrFenced", i, err)
		}
	}
	for i, s := range stores {
		for j, u := range users {
			rows := inboxOf(t, s, u)
			if len(rows) != 1 || rows[0].MsgID != uint64(j+1) {
				t.Errorf("store %d reads user of node %d: %+v, want the one row of msg %d", i, j, rows, j+1)
			}
		}
	}
}

// TestClusterTakeover crashes a node after its batch's head landed and
// before any write of it: the survivor, whose OnNodeDead is its store's
// SettleNode (as cmd/inboxd wires it), applies the batch before it serves
// the dead node's shards, and then writes on from it.
func TestClusterTakeover(t *testing.T) {
	base := config(t, "_takeover")
	if err := cassandra.CreateSchema(t.Context(), base); err != nil {
		t.Fatal(err)
	}
	var survivor atomic.Pointer[cassandra.Store]
	nodes := joinAll(t, base, 2, func(i int) func(context.Context, cluster.DeadNode) error {
		return func(ctx context.Context, dead cluster.DeadNode) error {
			s := survivor.Load()
			if i != 0 || s == nil {
				return errors.New("no store open yet")
			}
			return s.SettleNode(ctx, dead.ID, dead.TSLimit)
		}
	})
	survivor.Store(open(t, nodeConfig(base, nodes[0])))
	var crashing atomic.Bool
	victim := open(t, cassandra.WithHook(nodeConfig(base, nodes[1]), func(step string) bool {
		return step == "logged" && crashing.Load()
	}))

	user := userOf(nodes[1])
	crashing.Store(true)
	if err := victim.Commit(t.Context(), rowBatch(user, 1, 1)); err == nil {
		t.Fatal("Commit stopped by a crash succeeded")
	}
	cassandra.Crash(victim)
	if err := nodes[1].Close(); err != nil {
		t.Fatal(err)
	}
	shard := cluster.ShardOf(user, nodes[0].ShardCount())
	waitFor(t, func() bool {
		_, ok := nodes[0].Serving(shard)
		return ok
	})
	s := survivor.Load()
	if rows := inboxOf(t, s, user); len(rows) != 1 || rows[0].MsgID != 1 {
		t.Fatalf("the survivor reads %+v, want the dead node's row of msg 1", rows)
	}
	if err := s.Commit(t.Context(), rowBatch(user, 2, 2)); err != nil {
		t.Fatalf("the survivor's Commit: %v", err)
	}
	if rows := inboxOf(t, s, user); len(rows) != 2 || rows[1].MsgID != 2 {
		t.Errorf("the survivor reads %+v, want msgs 1 and 2", rows)
	}
}

// TestFencedLateWrite pauses a store between its timestamp and its write;
// meanwhile the shard's next owner, whose floor is above every timestamp
// the first handed out, writes the same cells. The late write must lose.
func TestFencedLateWrite(t *testing.T) {
	first, next := &fence{}, &fence{}
	paused, resume := make(chan struct{}), make(chan struct{})
	var once sync.Once
	late := open(t, cassandra.WithHook(fencedConfig(t, "_late", 1, first), func(step string) bool {
		if step == "logged" {
			once.Do(func() {
				close(paused)
				<-resume
			})
		}
		return false
	}))
	owner := open(t, fencedConfig(t, "_late", 2, next))

	user := id()
	done := make(chan error, 1)
	go func() { done <- late.Commit(context.Background(), rowBatch(user, 1, 1)) }()
	<-paused
	next.raise(first.newest() + 1) // the handover's ts_floor
	if err := owner.Commit(t.Context(), rowBatch(user, 1, 2)); err != nil {
		t.Fatalf("owner: Commit: %v", err)
	}
	close(resume)
	if err := <-done; err != nil {
		t.Fatalf("late: Commit: %v", err)
	}
	for name, s := range map[string]*cassandra.Store{"late": late, "owner": owner} {
		if rows := inboxOf(t, s, user); len(rows) != 1 || rows[0].MsgID != 2 {
			t.Errorf("%s reads %+v, want the owner's row of msg 2", name, rows)
		}
	}
}

// TestSettleNode crashes a node after its batch's head landed and before
// any write of it; another node settles it, twice, and the batch is applied
// once. A head of the dead node that lands after the settle is never
// replayed, neither by a later settle nor by the node's next incarnation.
func TestSettleNode(t *testing.T) {
	// The dead node's clock ran an hour ahead: only tsLimit, not the
	// settling node's clock, is above its timestamps.
	dead := &fence{}
	dead.raise(time.Now().Add(time.Hour).UnixMicro())
	crash := func(step string) bool { return step == "logged" }
	s1 := open(t, cassandra.WithHook(fencedConfig(t, "_settle", 1, dead), crash))
	user := id()
	if err := s1.Commit(t.Context(), rowBatch(user, 1, 1)); err == nil {
		t.Fatal("Commit stopped by a crash succeeded")
	}
	cassandra.Crash(s1)
	tsLimit := dead.newest() + 1

	s2 := open(t, fencedConfig(t, "_settle", 2, &fence{}))
	if rows := inboxOf(t, s2, user); len(rows) != 0 {
		t.Fatalf("before the settle: %+v, want nothing", rows)
	}
	for range 2 {
		if err := s2.SettleNode(t.Context(), 1, tsLimit); err != nil {
			t.Fatalf("SettleNode: %v", err)
		}
		if rows := inboxOf(t, s2, user); len(rows) != 1 || rows[0].MsgID != 1 {
			t.Fatalf("after the settle: %+v, want the row of msg 1", rows)
		}
	}

	// The dead node's head of another batch lands late, below its limit.
	data, err := cassandra.EncodeBatch(rowBatch(user, 2, 2))
	if err != nil {
		t.Fatal(err)
	}
	cfg := config(t, "_settle")
	err = session(t).Query("INSERT INTO "+cfg.Keyspace+".batch_log_nodes (node, slot, chunk, ts, chunks, data) VALUES (1, 3, 0, ?, 1, ?) USING TIMESTAMP ?",
		tsLimit-1, data, tsLimit-1).Exec()
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.SettleNode(t.Context(), 1, tsLimit); err != nil {
		t.Fatalf("SettleNode: %v", err)
	}
	next := &fence{}
	next.raise(tsLimit + 1) // a new incarnation writes above the settled limit
	open(t, fencedConfig(t, "_settle", 1, next))
	if rows := inboxOf(t, s2, user); len(rows) != 1 || rows[0].MsgID != 1 {
		t.Errorf("after the late head: %+v, want only the row of msg 1", rows)
	}
}

// TestFencedRefusesSingleNodeLog: a store in cluster mode does not start
// over a single-node batch log that holds a batch, which it would never
// replay.
func TestFencedRefusesSingleNodeLog(t *testing.T) {
	cfg := config(t, "_legacy")
	crash := func(step string) bool { return step == "logged" }
	s := open(t, cassandra.WithHook(cfg, crash))
	if err := s.Commit(t.Context(), rowBatch(id(), 1, 1)); err == nil {
		t.Fatal("Commit stopped by a crash succeeded")
	}
	cassandra.Crash(s)
	fenced := fencedConfig(t, "_legacy", 1, &fence{})
	if s, err := cassandra.Open(t.Context(), fenced); !errors.Is(err, cassandra.ErrSchema) {
		if err == nil {
			closeOnce(t, s)
		}
		t.Fatalf("Open in cluster mode: %v, want ErrSchema", err)
	}
}
