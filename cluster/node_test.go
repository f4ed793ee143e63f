package cluster_test

import (
	"errors"
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
			h.checker.stop()
		})
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

func TestCrash(t *testing.T) {
	h := newHarness(t)
	h.join(3, nil)
	owned := h.waitBalanced(0, 1, 2)
	crash := time.Now()
	if err := h.node(2).Close(); err != nil {
		t.Fatal(err)
	}
	h.waitBalanced(0, 1)
	worst, _ := h.takeover(owned[2], []int{0, 1}, crash)
	t.Logf("crash of a node with %d shards: the others served them all %v later (lease TTL %v)",
		len(owned[2]), worst.Round(time.Millisecond), ttl)
	if worst > 3*ttl {
		t.Errorf("takeover took %v, want at most 3 TTL", worst)
	}
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
			from, len(gaps), slices.Min(gaps).Round(time.Millisecond), slices.Max(gaps).Round(time.Millisecond), to)
	}
}

func TestPause(t *testing.T) {
	h := newHarness(t)
	h.join(2, nil)
	owned := h.waitBalanced(0, 1)
	a, b := h.node(0), h.node(1)

	// The paused node's callers keep asking for timestamps: the highest
	// one it handed out must stay below the new owner's.
	var highest atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			for _, s := range owned[0] {
				if ts, err := a.Timestamp(s); err == nil {
					highest.Store(max(highest.Load(), ts))
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	defer wg.Wait()
	defer close(stop)

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
	for _, s := range owned[0] {
		if _, err := a.Timestamp(s); !errors.Is(err, cluster.ErrLost) {
			t.Fatalf("Timestamp(%d) on the resumed node: %v, want ErrLost", s, err)
		}
		ts, err := b.Timestamp(s)
		if err != nil || ts <= highest.Load() {
			t.Fatalf("Timestamp(%d) on the new owner: %d, %v; want above the paused node's %d", s, ts, err, highest.Load())
		}
	}
	if highest.Load() == 0 {
		t.Fatal("the paused node handed out no timestamp")
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
	if gaps[len(gaps)-1] > 2*time.Second {
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
	if took > ttl {
		t.Errorf("claiming the id of a node that left took %v: more than the lease TTL", took)
	}
	h.waitBalanced(0, 1, idx)
	h.checker.stop()
}

func TestJoin(t *testing.T) {
	h := newHarness(t)
	h.join(2, nil)
	before := h.waitBalanced(0, 1)
	drainedBefore := map[int]int{0: len(h.drained(0)), 1: len(h.drained(1))}
	incarnations := []cluster.NodeInfo{h.node(0).Self(), h.node(1).Self()}

	start := time.Now()
	h.join(1, nil)
	after := h.waitBalanced(0, 1, 2)
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
	s, err := c.CreateSession()
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}
