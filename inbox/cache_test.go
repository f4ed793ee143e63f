package inbox

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/pebble"
	"github.com/inboxd/inboxd/wire"
)

func newTestCache(maxBytes int) (*groupCache, cacheMetrics) {
	m := cacheMetrics{
		hits: prometheus.NewCounter(prometheus.CounterOpts{Name: "hits"}), misses: prometheus.NewCounter(prometheus.CounterOpts{Name: "misses"}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{Name: "evictions"}), bytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "bytes"}),
	}
	return newGroupCache(maxBytes, m), m
}

func groupOf(id uint64, members int) *group {
	g := &group{Group: timeline.Group{ID: id}, members: make(map[uint64]timeline.Member)}
	for u := range uint64(members) {
		g.add(timeline.Member{Conv: id, User: u + 1})
	}
	return g
}

func TestGroupCacheLRU(t *testing.T) {
	size := sizeOf(groupOf(1, 10))
	c, m := newTestCache(3 * size)
	for id := uint64(1); id <= 3; id++ {
		c.put(groupOf(id, 10))
	}
	if _, ok := c.get(1); !ok { // 1 is now the most recently used: 2 goes first
		t.Fatal("group 1 not cached")
	}
	c.put(groupOf(4, 10))
	for id, want := range map[uint64]bool{1: true, 2: false, 3: true, 4: true} {
		if _, ok := c.peek(id); ok != want {
			t.Errorf("group %d cached: %v, want %v", id, ok, want)
		}
	}
	if c.used > c.max || testutil.ToFloat64(m.bytes) != float64(c.used) {
		t.Errorf("cache holds %d bytes (gauge %v) of %d", c.used, testutil.ToFloat64(m.bytes), c.max)
	}
	// A group as large as the whole budget pushes out everything, itself
	// last: the cache never holds more than its budget.
	c.put(groupOf(5, 3*10+5))
	if c.used != 0 || c.lru.Len() != 0 {
		t.Errorf("after an oversized group the cache holds %d groups, %d bytes", c.lru.Len(), c.used)
	}
	if got := testutil.ToFloat64(m.evictions); got != 5 {
		t.Errorf("evictions %v, want 5", got)
	}
	c.get(2)
	if h, ms := testutil.ToFloat64(m.hits), testutil.ToFloat64(m.misses); h != 1 || ms != 1 {
		t.Errorf("hits %v misses %v, want 1 and 1", h, ms)
	}
}

// countingStore counts group loads (Members reads) and per-member
// conversation reads, and fails commits on demand.
type countingStore struct {
	timeline.Store
	fail          atomic.Bool
	members       atomic.Int64
	conversations atomic.Int64
}

func (c *countingStore) Commit(ctx context.Context, b *timeline.Batch) error {
	if c.fail.Load() {
		return errors.New("injected outage")
	}
	return c.Store.Commit(ctx, b)
}

func (c *countingStore) Members(ctx context.Context, conv uint64) ([]timeline.Member, error) {
	c.members.Add(1)
	return c.Store.Members(ctx, conv)
}

func (c *countingStore) Conversation(ctx context.Context, user, conv uint64) (timeline.Conversation, error) {
	c.conversations.Add(1)
	return c.Store.Conversation(ctx, user, conv)
}

// reopenCounting restarts e's service on a counting wrapper of its store.
func reopenCounting(t *testing.T, e *env, cfg Config) *countingStore {
	t.Helper()
	e.close()
	st, err := pebble.Open(pebble.Options{Dir: "db", FS: e.fs})
	if err != nil {
		t.Fatal(err)
	}
	counting := &countingStore{Store: st}
	cfg.Store = counting
	svc, err := New(ctx, cfg)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	e.store, e.svc = st, svc
	return counting
}

// TestFailedCommitEvictsItsGroupsOnly: after a failed commit the committer
// reloads the groups that batch touched and keeps every other one.
func TestFailedCommitEvictsItsGroupsOnly(t *testing.T) {
	e := newEnv(t, Config{})
	a, b := e.create(1, 2), e.create(1, 3)
	st := reopenCounting(t, e, Config{})
	e.send(1, a, "a1", "x")
	e.send(1, b, "b1", "x")
	if n := st.members.Load(); n != 2 {
		t.Fatalf("%d group loads for two groups", n)
	}
	st.fail.Store(true)
	if _, err := e.svc.SendGroupMessage(ctx, 1, a, "a2", wire.KindText, nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("send during outage: %v", err)
	}
	st.fail.Store(false)
	e.send(1, b, "b2", "x")
	if n := st.members.Load(); n != 2 {
		t.Fatalf("group b, not in the failed batch, was reloaded (%d loads)", n)
	}
	e.send(1, a, "a2", "x")
	if n := st.members.Load(); n != 3 {
		t.Fatalf("group a of the failed batch: %d loads, want it reloaded once", n)
	}
}

// TestGroupLoadIsOneMembersRead: loading a group for a fan-out reads its
// members once and no conversation entry per member.
func TestGroupLoadIsOneMembersRead(t *testing.T) {
	e := newEnv(t, Config{})
	members := make([]uint64, 50)
	for i := range members {
		members[i] = uint64(i + 2)
	}
	conv := e.create(1, members...)
	st := reopenCounting(t, e, Config{})
	e.send(1, conv, "m", "x")
	if m, c := st.members.Load(), st.conversations.Load(); m != 1 || c != 0 {
		t.Fatalf("a send to a group of 51 not cached: %d members reads, %d conversation reads; want 1 and 0", m, c)
	}
}

// TestGroupCacheBounded: touching more groups than the cache holds keeps
// its memory within the budget, evicting one group at a time.
func TestGroupCacheBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	budget := 4 * sizeOf(groupOf(0, 6))
	e := newEnv(t, Config{GroupCacheBytes: budget, Registerer: reg})
	for i := range 20 {
		conv := e.create(1, 2, 3, 4, 5, 6)
		e.send(2, conv, fmt.Sprint("m", i), "x")
		if used := e.svc.metrics.groupCache.bytes; testutil.ToFloat64(used) > float64(budget) {
			t.Fatalf("after %d groups the cache holds %v bytes, budget %d", i+1, testutil.ToFloat64(used), budget)
		}
	}
	cached := e.svc.groups.lru.Len()
	if n := testutil.ToFloat64(e.svc.metrics.groupCache.evictions); cached == 0 || int(n)+cached != 20 {
		t.Fatalf("%v evictions and %d groups cached, of 20", n, cached)
	}
}
