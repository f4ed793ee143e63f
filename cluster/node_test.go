package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/inboxd/inboxd/cluster"
)

// The bounds below are generous (the machine is shared); the times
// measured are logged.
const ttl = cluster.DefaultLeaseTTL

func TestRace(t *testing.T) {
	for _, count := range []int{2, 3} {
		t.Run(strconv.Itoa(count)+"Nodes", func(t *testing.T) {
			h := newHarness(t)
			start := time.Now()
			idxs := h.join(count, nil)
			owned := h.waitBalanced(idxs...)
			for _, i := range idxs {
				t.Logf("node %d serves %d shards", h.node(i).Self().ID, len(owned[i]))
			}
			t.Logf("balanced %v after the joins began", time.Since(start).Round(time.Millisecond))
			h.waitOwners(idxs, owned)
			h.noDeaths()
			h.checker.stop()
		})
	}
}

// waitOwners waits until every node's Owner names, for every shard, the
// node that serves it (the views of the others follow their next read).
func (h *harness) waitOwners(idxs []int, owned map[int][]int) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var wrong []string
		for owner, ss := range owned {
			want := h.node(owner).Self()
			for _, i := range idxs {
				for _, s := range ss {
					if got, ok := h.node(i).Owner(s); !ok || got != want {
						wrong = append(wrong, fmt.Sprintf("node index %d: Owner(%d) = %+v, %v; want %+v", i, s, got, ok, want))
					}
				}
			}
		}
		if len(wrong) == 0 {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("the views disagree with the owners: %v", wrong[:min(len(wrong), 5)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestShardCount(t *testing.T) {
	h := newHarness(t)
	h.join(1, nil)
	for _, tc := range []struct {
		shards int
		err    error
	}{
		{shards / 2, cluster.ErrShardCount},
		{0, nil}, // as recorded
		{shards, nil},
	} {
		n, err := cluster.Join(t.Context(), cluster.Config{Hosts: hosts(t), Consistency: gocql.One,
			Keyspace: h.ks, Shards: tc.shards, NodeID: cluster.PickNodeID})
		if !errors.Is(err, tc.err) {
			t.Fatalf("Join with %d shards: %v, want %v", tc.shards, err, tc.err)
		}
		if err == nil {
			if n.ShardCount() != shards {
				t.Errorf("Join with %d shards: ShardCount() = %d, want the recorded %d", tc.shards, n.ShardCount(), shards)
			}
			if err := n.Leave(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// takeover returns, for each of the given shards, the time from since to
// the first instant one of the nodes among served it, and their maximum.
func (h *harness) takeover(shardsOf []int, among []int, since time.Time) (worst time.Duration, each map[int]time.Duration) {
	each = make(map[int]time.Duration)
	for _, s := range shardsOf {
		var first time.Time
		for _, i := range among {
			if f := h.checker.firstServed(i, s, since); !f.IsZero() && (first.IsZero() || f.Before(first)) {
				first = f
			}
		}
		each[s] = first.Sub(since)
		worst = max(worst, each[s])
	}
	return worst, each
}

// stamper asks a node for timestamps of its shards until stopped, and
// keeps the highest it handed out.
type stamper struct {
	highest atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup
}

func stamp(n *cluster.Node, shardsOf []int) *stamper {
	st := &stamper{stop: make(chan struct{})}
	st.wg.Go(func() {
		for {
			for _, s := range shardsOf {
				if ts, err := n.Timestamp(s); err == nil {
					st.highest.Store(max(st.highest.Load(), ts))
				}
			}
			select {
			case <-st.stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	return st
}

// done stops the stamper and returns the highest timestamp handed out.
func (st *stamper) done(t *testing.T) int64 {
	close(st.stop)
	st.wg.Wait()
	if st.highest.Load() == 0 {
		t.Fatal("the node handed out no timestamp")
	}
	return st.highest.Load()
}

// timestamp returns n.Timestamp(shard), retried while it fails with the
// transient ErrExpired: a shard taken from a dead node has the node's
// ts_limit as floor, and this node's ts_limit must rise above it first.
func timestamp(n *cluster.Node, shard int) (int64, error) {
	for range 100 {
		ts, err := n.Timestamp(shard)
		if !errors.Is(err, cluster.ErrExpired) {
			return ts, err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return n.Timestamp(shard)
}

// deaths records the calls of OnNodeDead; the first fails, so that the
// dead node's shards must wait for the second.
type deaths struct {
	mu    sync.Mutex
	calls int
	dead  []cluster.DeadNode
	done  time.Time // when a call first returned nil
}

func (d *deaths) hook(_ context.Context, dead cluster.DeadNode) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	if d.calls == 1 {
		return errors.New("the batch log is out of reach")
	}
	d.dead = append(d.dead, dead)
	if d.done.IsZero() {
		d.done = time.Now()
	}
	return nil
}

// check checks that OnNodeDead reported only incarnation inc of node id,
// with a ts_limit above every timestamp it handed out, and returns when it
// first succeeded.
func (d *deaths) check(t *testing.T, id int, inc, highest int64) time.Time {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.dead) == 0 {
		t.Fatal("OnNodeDead did not succeed")
	}
	for _, dead := range d.dead {
		if dead.ID != id || dead.Incarnation != inc || dead.TSLimit <= highest {
			t.Errorf("OnNodeDead(%+v), want node %d incarnation %d with a ts_limit above %d", dead, id, inc, highest)
		}
	}
	return d.done
}

func TestCrash(t *testing.T) {
	h := newHarness(t)
	var d deaths
	h.join(3, func(cfg *cluster.Config) { cfg.OnNodeDead = d.hook })
	owned := h.waitBalanced(0, 1, 2)
	victim := h.node(2)
	st := stamp(victim, owned[2])
	time.Sleep(10 * time.Millisecond) // a few timestamps before the crash

	crash := time.Now()
	if err := victim.Close(); err != nil {
		t.Fatal(err)
	}
	highest := st.done(t)
	h.waitBalanced(0, 1)
	worst, each := h.takeover(owned[2], []int{0, 1}, crash)
	t.Logf("crash of a node with %d shards: the others served them all %v later (lease TTL %v)",
		len(owned[2]), worst.Round(time.Millisecond), ttl)
	if worst > 3*ttl {
		t.Errorf("takeover took %v, want at most 3 TTL", worst)
	}
	settled := d.check(t, victim.Self().ID, victim.Self().Incarnation, highest)
	for s, after := range each {
		if crash.Add(after).Before(settled) {
			t.Errorf("shard %d was served again before OnNodeDead succeeded", s)
		}
	}
	h.checker.stop()
}

// TestRestart restarts a crashed node with its node id at once, as a
// supervisor would after kill -9: Join waits for the cluster to declare the
// old incarnation dead (here the new one declares it, being alone).
func TestRestart(t *testing.T) {
	h := newHarness(t)
	var d deaths
	fixed := func(cfg *cluster.Config) { cfg.NodeID, cfg.OnNodeDead = 5, d.hook }
	h.join(1, fixed)
	owned := h.waitBalanced(0)
	old := h.node(0).Self()
	st := stamp(h.node(0), owned[0])
	time.Sleep(10 * time.Millisecond)
	crash := time.Now()
	h.node(0).Close()
	highest := st.done(t)

	h.join(1, fixed)
	restarted := h.node(1)
	if got := restarted.Self(); got.ID != old.ID || got.Incarnation != old.Incarnation+1 {
		t.Errorf("the restarted node is %+v, want id %d incarnation %d", got, old.ID, old.Incarnation+1)
	}
	h.waitBalanced(1)
	t.Logf("restart with the same id: serving all shards again %v after the crash", time.Since(crash).Round(time.Millisecond))
	d.check(t, old.ID, old.Incarnation, highest)
	for _, s := range owned[0] {
		if ts, err := timestamp(restarted, s); err != nil || ts <= highest {
			t.Fatalf("Timestamp(%d) after the restart: %d, %v; want above %d", s, ts, err, highest)
		}
	}
	h.checker.stop()
}

// TestRestartAfterClockAhead restarts a crashed node whose clock ran an
// hour ahead (its ts_limit says so): the next incarnation of its id hands
// out timestamps above that limit, also for the node's own rows
// (LogTimestamp), which the dead node's settler cleared at it.
func TestRestartAfterClockAhead(t *testing.T) {
	h := newHarness(t)
	var d deaths
	fixed := func(cfg *cluster.Config) { cfg.NodeID, cfg.OnNodeDead = 6, d.hook }
	h.join(1, fixed)
	h.waitBalanced(0)
	old := h.node(0).Self()
	h.node(0).Close()
	ahead := time.Now().Add(time.Hour).UnixMicro()
	if err := session(t, hosts(t)...).Query("UPDATE "+h.ks+".nodes SET ts_limit = ? WHERE node = ?", ahead, old.ID).Exec(); err != nil {
		t.Fatal(err)
	}

	h.join(1, fixed)
	d.check(t, old.ID, old.Incarnation, ahead-1)
	if ts, err := h.node(1).LogTimestamp(); err != nil || ts <= ahead {
		t.Errorf("LogTimestamp of the next incarnation: %d, %v; want above %d", ts, err, ahead)
	}
	h.checker.stop()
}

// TestLeaveLast checks that the last node to leave releases its shards,
// so that the next node to join takes them at once.
func TestLeaveLast(t *testing.T) {
	h := newHarness(t)
	h.join(1, nil)
	h.waitBalanced(0)
	if err := h.node(0).Leave(t.Context()); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	start := time.Now()
	h.join(1, nil)
	h.waitBalanced(1)
	took := time.Since(start)
	t.Logf("a node joining after the last one left served every shard %v after it began to join", took.Round(time.Millisecond))
	h.noDeaths()
	h.checker.stop()
}

// stopsFirst checks that node from was last seen serving each shard
// before node to first served it after since, and logs the gaps.
func (h *harness) stopsFirst(shardsOf []int, from, to int, since time.Time) {
	h.t.Helper()
	var gaps []time.Duration
	for _, s := range shardsOf {
		stopped, started := h.checker.lastServed(from, s), h.checker.firstServed(to, s, since)
		if started.IsZero() || !stopped.Before(started) {
			h.t.Errorf("shard %d: node %d served it until %v, node %d from %v", s, from,
				stopped.Format(time.StampMicro), to, started.Format(time.StampMicro))
			continue
		}
		gaps = append(gaps, started.Sub(stopped))
	}
	if len(gaps) > 0 {
		h.t.Logf("node %d stopped serving %d shards between %v and %v before node %d started",
			h.node(from).Self().ID, len(gaps), slices.Min(gaps).Round(time.Millisecond),
			slices.Max(gaps).Round(time.Millisecond), h.node(to).Self().ID)
	}
}

func TestPause(t *testing.T) {
	h := newHarness(t)
	h.join(2, nil)
	owned := h.waitBalanced(0, 1)
	a, b := h.node(0), h.node(1)

	// The paused node's callers keep asking for timestamps: the highest
	// one it handed out must stay below the new owner's.
	st := stamp(a, owned[0])
	resume := a.Pause()
	paused := time.Now()
	h.waitBalanced(1)
	t.Logf("node %d paused: node %d served all its shards %v later", a.Self().ID, b.Self().ID,
		time.Since(paused).Round(time.Millisecond))
	h.stopsFirst(owned[0], 0, 1, paused)

	resume()
	select {
	case <-a.Lost():
	case <-time.After(2 * ttl):
		t.Fatal("the resumed node did not report its lease lost")
	}
	highest := st.done(t)
	for _, s := range owned[0] {
		if _, err := a.Timestamp(s); !errors.Is(err, cluster.ErrLost) {
			t.Fatalf("Timestamp(%d) on the resumed node: %v, want ErrLost", s, err)
		}
		ts, err := timestamp(b, s)
		if err != nil || ts <= highest {
			t.Fatalf("Timestamp(%d) on the new owner: %d, %v; want above the paused node's %d", s, ts, err, highest)
		}
	}
	h.checker.stop()
}

func TestPartition(t *testing.T) {
	h := newHarness(t)
	p := newProxy(t, hosts(t)[0])
	h.join(1, func(cfg *cluster.Config) {
		cfg.Hosts, cfg.Session = nil, p.session(t)
	})
	h.join(1, nil)
	owned := h.waitBalanced(0, 1)

	cut := time.Now()
	p.cut()
	h.waitBalanced(1)
	t.Logf("node %d cut off from Cassandra: node %d served all its shards %v later", h.node(0).Self().ID,
		h.node(1).Self().ID, time.Since(cut).Round(time.Millisecond))
	h.stopsFirst(owned[0], 0, 1, cut)
	h.checker.stop()
}

func TestLeave(t *testing.T) {
	h := newHarness(t)
	h.join(3, nil)
	owned := h.waitBalanced(0, 1, 2)
	leaver := h.node(2)
	self := leaver.Self()
	drainedBefore := len(h.drained(2)) // while the three balanced

	start := time.Now()
	if err := leaver.Leave(t.Context()); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	t.Logf("Leave of a node with %d shards returned after %v", len(owned[2]), time.Since(start).Round(time.Millisecond))
	h.waitBalanced(0, 1)
	if got, want := slices.Sorted(slices.Values(h.drained(2)[drainedBefore:])), owned[2]; !slices.Equal(got, want) {
		t.Errorf("Drain was called for %v, want once for each of %v", got, want)
	}
	var gaps []time.Duration
	for _, s := range owned[2] {
		_, each := h.takeover([]int{s}, []int{0, 1}, start)
		gaps = append(gaps, each[s]-h.checker.lastServed(2, s).Sub(start))
	}
	slices.Sort(gaps)
	t.Logf("ownership gap per shard: median %v, max %v", gaps[len(gaps)/2].Round(time.Millisecond),
		gaps[len(gaps)-1].Round(time.Millisecond))
	if gaps[len(gaps)-1] > ttl {
		t.Errorf("a shard went unserved for %v during the handover, want well under a second", gaps[len(gaps)-1])
	}

	// The id is free at once.
	start = time.Now()
	idx := h.join(1, func(cfg *cluster.Config) { cfg.NodeID = self.ID })[0]
	took := time.Since(start)
	if got := h.node(idx).Self(); got.ID != self.ID || got.Incarnation != self.Incarnation+1 {
		t.Errorf("the rejoined node is %+v, want id %d incarnation %d", got, self.ID, self.Incarnation+1)
	}
	t.Logf("id %d claimed again %v after Leave", self.ID, took.Round(time.Millisecond))
	h.waitBalanced(0, 1, idx)
	h.noDeaths()
	h.checker.stop()
}

func TestJoin(t *testing.T) {
	h := newHarness(t)
	h.join(2, nil)
	before := h.waitBalanced(0, 1)
	drainedBefore := map[int]int{0: len(h.drained(0)), 1: len(h.drained(1))}
	incarnations := []cluster.NodeInfo{h.node(0).Self(), h.node(1).Self()}

	// Two receivers of each node's changes (the gateway and the service
	// of inboxd): each must be woken.
	var changes [2][2]<-chan struct{}
	for i := range changes {
		for j := range changes[i] {
			changes[i][j] = h.node(i).Changes()
		}
	}
	start := time.Now()
	h.join(1, nil)
	after := h.waitBalanced(0, 1, 2)
	for i := range changes {
		for j, ch := range changes[i] {
			select {
			case <-ch:
			default:
				t.Errorf("node index %d gave shards up without a value on its receiver %d of Changes", i, j)
			}
		}
	}
	t.Logf("the third node serves %d shards %v after it began to join", len(after[2]), time.Since(start).Round(time.Millisecond))

	ownerBefore := make(map[int]int)
	for i, ss := range before {
		for _, s := range ss {
			ownerBefore[s] = i
		}
	}
	moved := make(map[int][]int) // previous owner → shards it gave up
	for i, ss := range after {
		for _, s := range ss {
			if prev := ownerBefore[s]; prev != i {
				moved[prev] = append(moved[prev], s)
			}
		}
	}
	for _, i := range []int{0, 1} {
		got := slices.Sorted(slices.Values(h.drained(i)[drainedBefore[i]:]))
		want := slices.Sorted(slices.Values(moved[i]))
		if !slices.Equal(got, want) {
			t.Errorf("node index %d drained %v, want once each of the shards it gave up, %v", i, got, want)
		}
		if got := h.node(i).Self(); got != incarnations[i] {
			t.Errorf("node index %d is now %+v, was %+v: it must not restart", i, got, incarnations[i])
		}
	}
	t.Logf("%d + %d shards moved", len(moved[0]), len(moved[1]))
	h.noDeaths()
	h.checker.stop()
}

// proxy forwards TCP connections to Cassandra until cut, after which it
// holds every connection silently, as a network partition would.
type proxy struct {
	ln       net.Listener
	upstream string
	mu       sync.Mutex
	cutOff   bool
	conns    []net.Conn
	wg       sync.WaitGroup
}

func newProxy(t *testing.T, upstream string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, upstream: upstream}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		cut := p.cutOff
		p.mu.Unlock()
		if cut {
			continue
		}
		u, err := net.Dial("tcp", p.upstream)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, u)
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		p.wg.Go(func() { pipe(u, c) })
		p.wg.Go(func() { pipe(c, u) })
	}
}

// cut drops every connection and holds new ones without an answer.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutOff = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) close() {
	p.ln.Close()
	p.cut()
	p.wg.Wait()
}

// session returns a driver session that reaches Cassandra only through the
// proxy, whatever addresses the cluster advertises.
func (p *proxy) session(t *testing.T) *gocql.Session {
	t.Helper()
	addr := p.ln.Addr().(*net.TCPAddr)
	c := gocql.NewCluster(addr.String())
	c.Consistency = gocql.One
	c.Timeout = ttl / 4
	c.ConnectTimeout = ttl / 4
	c.ReconnectInterval = time.Second
	c.DisableInitialHostLookup = true
	c.AddressTranslator = gocql.AddressTranslatorFunc(func(net.IP, int) (net.IP, int) { return addr.IP, addr.Port })
	// A schema event while the proxy is cut would leave the driver waiting
	// for agreement on the dead connection, past Close and the leak check,
	// as the node's own sessions do not (cluster.Config's newSession).
	c.Events.DisableSchemaEvents = true
	s, err := c.CreateSession()
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestDrainError checks that a shard whose Drain fails stays with its
// owner, served, and is handed over in a later round.
func TestDrainError(t *testing.T) {
	h := newHarness(t)
	var failed atomic.Int32 // the shard whose first Drain failed, plus one
	var failedAt atomic.Int64
	h.join(1, func(cfg *cluster.Config) {
		drain := cfg.Drain
		cfg.Drain = func(ctx context.Context, shard int) error {
			if failed.CompareAndSwap(0, int32(shard)+1) {
				failedAt.Store(time.Now().UnixNano())
				return errors.New("the shard's writes are stuck")
			}
			return drain(ctx, shard)
		}
	})
	h.waitBalanced(0)
	h.join(1, nil)
	h.waitBalanced(0, 1)
	shard := int(failed.Load()) - 1
	if shard < 0 {
		t.Fatal("no shard was drained")
	}
	if n := slices.Index(h.drained(0), shard); n < 0 {
		t.Errorf("shard %d was not drained again after the failure", shard)
	}
	if last := h.checker.lastServed(0, shard); !last.After(time.Unix(0, failedAt.Load())) {
		t.Errorf("shard %d was not served again after its drain failed (last %v)", shard, last)
	}
	if _, ok := h.node(1).Serving(shard); !ok {
		t.Errorf("shard %d did not move after its drain succeeded", shard)
	}
	h.checker.stop()
}
