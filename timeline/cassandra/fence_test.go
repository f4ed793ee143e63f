package cassandra_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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

// TestClusterNodes opens two stores on one keyspace, each with the
// cluster.Node of its own process's share: neither is refused, each
// commits in the shards it serves and only there, and each reads what the
// other wrote.
func TestClusterNodes(t *testing.T) {
	base := config(t, "_nodes")
	if err := cassandra.CreateSchema(t.Context(), base); err != nil {
		t.Fatal(err)
	}
	var nodes []*cluster.Node
	for i := range 2 {
		n, err := cluster.Join(t.Context(), cluster.Config{
			Hosts:       base.Hosts,
			Consistency: base.Consistency,
			Keyspace:    base.Keyspace,
			NodeID:      cluster.PickNodeID,
			Addr:        fmt.Sprintf("127.0.0.%d:7000", i+1),
			Logger:      slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatalf("Join: %v", err)
		}
		t.Cleanup(func() { _ = n.Close() })
		nodes = append(nodes, n)
	}
	// The two split the shards within a few balancing rounds.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for len(nodes[0].Shards())+len(nodes[1].Shards()) < nodes[0].ShardCount() ||
		len(nodes[0].Shards()) == 0 || len(nodes[1].Shards()) == 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("the nodes serve %d and %d shards", len(nodes[0].Shards()), len(nodes[1].Shards()))
		case <-time.After(50 * time.Millisecond):
		}
	}
	var stores []*cassandra.Store
	for _, n := range nodes {
		cfg := base
		cfg.CreateSchema = false
		cfg.Fence, cfg.NodeID = n, n.Self().ID
		stores = append(stores, open(t, cfg))
	}
	// users[i] is a user of a shard node i serves.
	users := make([]uint64, 2)
	for i, n := range nodes {
		for users[i] = id(); ; users[i] = id() {
			if _, ok := n.Serving(cluster.ShardOf(users[i], n.ShardCount())); ok {
				break
			}
		}
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
