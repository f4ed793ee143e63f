package inbox

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/inboxd/inboxd/cluster"
	"github.com/inboxd/inboxd/cluster/clustertest"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/pebble"
	"github.com/inboxd/inboxd/wire"
)

// peers is a Deliverer that calls the destination service's Apply in
// process, with faults a test turns on.
type peers struct {
	mu       sync.Mutex
	svcs     map[int]*Service
	cut      bool // every delivery fails
	twice    bool // every request is applied twice
	reversed bool // every request is first sent in reverse order
	calls    int  // requests
	multi    int  // requests of more than one record
}

var errCut = errors.New("test: link cut")

func (p *peers) Deliver(ctx context.Context, dest cluster.NodeInfo, recs []timeline.OutboxRecord) ([]timeline.AppliedMark, error) {
	p.mu.Lock()
	svc, cut, twice, reversed := p.svcs[dest.ID], p.cut, p.twice, p.reversed
	p.calls++
	if len(recs) > 1 {
		p.multi++
	}
	p.mu.Unlock()
	if cut || svc == nil {
		return nil, errCut
	}
	if reversed && len(recs) > 1 {
		back := slices.Clone(recs)
		slices.Reverse(back)
		if _, err := svc.Apply(ctx, back); err != nil {
			return nil, err
		}
	}
	marks, err := svc.Apply(ctx, recs)
	if twice && err == nil {
		marks, err = svc.Apply(ctx, recs)
	}
	return marks, err
}

func (p *peers) set(f func(p *peers)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

// nodes is n services on one shared store, each serving its share of the
// shards: they write disjoint keys, as nodes of a cluster do.
type nodes struct {
	t     testing.TB
	store timeline.Store
	ring  *clustertest.Ring
	peers *peers
	cfgs  []Config
	svcs  []*Service
}

const testShards = 8

func newNodes(t testing.TB, n int, cfg func(i int) Config) *nodes {
	return newNodesOn(t, pebble.Options{Dir: "db", FS: vfs.NewMem()}, n, cfg)
}

// newNodesOn is newNodes on a store opened with opts.
func newNodesOn(t testing.TB, opts pebble.Options, n int, cfg func(i int) Config) *nodes {
	t.Helper()
	st, err := pebble.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	c := &nodes{t: t, store: st, ring: clustertest.NewRing(testShards, nodeIDs(n)...), peers: &peers{svcs: map[int]*Service{}}, svcs: make([]*Service, n)}
	for i := range n {
		cf := Config{}
		if cfg != nil {
			cf = cfg(i)
		}
		cf.Node = int64(i + 1)
		c.cfgs = append(c.cfgs, cf)
		c.start(i)
	}
	t.Cleanup(func() {
		for i := range c.svcs {
			c.stop(i)
		}
		st.Close()
	})
	return c
}

// start starts node i on the shared store.
func (c *nodes) start(i int) {
	c.t.Helper()
	cfg := c.cfgs[i]
	cfg.Store, cfg.Ownership, cfg.Deliverer = c.store, c.ring.View(i), c.peers
	svc, err := New(context.Background(), cfg)
	if err != nil {
		c.t.Fatalf("start node %d: %v", i, err)
	}
	c.svcs[i] = svc
	c.peers.set(func(p *peers) { p.svcs[i] = svc })
}

// stop stops node i: what it committed stays in the store, what it had not
// delivered stays in its outbox.
func (c *nodes) stop(i int) {
	if c.svcs[i] == nil {
		return
	}
	c.peers.set(func(p *peers) { delete(p.svcs, i) })
	c.svcs[i].Close()
	c.svcs[i] = nil
}

// of returns the service serving the shard of a user or conversation.
func (c *nodes) of(id uint64) *Service {
	n, _ := c.ring.Owner(cluster.ShardOf(id, testShards))
	return c.svcs[n.ID]
}

// settle waits until every outbox record in the store is applied by all
// its destinations.
func (c *nodes) settle() {
	c.t.Helper()
	waitFor(c.t, "every outbox record applied", func() bool {
		for src := range testShards {
			low, err := c.store.OutboxLow(ctx, src)
			if err != nil {
				c.t.Fatal(err)
			}
			recs, err := c.store.Outbox(ctx, src, low, 0)
			if err != nil {
				c.t.Fatal(err)
			}
			for _, r := range recs {
				for _, d := range r.Dests {
					marks, err := c.store.Applied(ctx, d.Shard)
					if err != nil {
						c.t.Fatal(err)
					}
					i := slices.IndexFunc(marks, func(m timeline.AppliedMark) bool { return m.Source == src })
					if i < 0 || marks[i].Stream < d.Stream {
						return false
					}
				}
			}
		}
		return true
	})
}

func (c *nodes) conversations(user uint64) []ConversationInfo {
	c.t.Helper()
	var all []ConversationInfo
	for {
		page, err := c.of(user).Conversations(ctx, user, len(all), 50)
		if err != nil {
			c.t.Fatalf("Conversations(%d): %v", user, err)
		}
		all = append(all, page.Conversations...)
		if !page.HasMore {
			return all
		}
	}
}

// users returns n users of each node's shards, by node.
func (c *nodes) users(n int) [][]uint64 {
	out := make([][]uint64, len(c.svcs))
	for id := uint64(1); ; id++ {
		node, _ := c.ring.Owner(cluster.ShardOf(id, testShards))
		if len(out[node.ID]) < n {
			out[node.ID] = append(out[node.ID], id)
		}
		done := true
		for _, us := range out {
			done = done && len(us) == n
		}
		if done {
			return out
		}
	}
}

// checkInboxes checks every user's inbox in the store: seqs 1..N with no
// gap, every message of a conversation once and in conv_seq order, and
// exactly the messages of want (per user, per conversation: conv_seqs).
func (c *nodes) checkInboxes(want map[uint64]map[uint64][]uint64) {
	c.t.Helper()
	for u, convs := range want {
		rows, err := c.store.Inbox(ctx, u, timeline.Range{})
		if err != nil {
			c.t.Fatal(err)
		}
		got := map[uint64][]uint64{}
		for i, r := range rows {
			if r.Seq != uint64(i+1) {
				c.t.Fatalf("user %d: seq %d at position %d", u, r.Seq, i)
			}
			if r.Kind.HasMessage() {
				got[r.Conv] = append(got[r.Conv], r.ConvSeq)
			}
		}
		for conv, seqs := range convs {
			if !slices.Equal(got[conv], seqs) {
				c.t.Fatalf("user %d conv %d: conv_seqs %v, want %v", u, conv, got[conv], seqs)
			}
		}
	}
}

func span(from, to uint64) []uint64 {
	var out []uint64
	for n := from; n <= to; n++ {
		out = append(out, n)
	}
	return out
}

// TestShardedFanOut: a group with members on two nodes. Every member gets
// every message once, in order, with contiguous seqs, whichever node
// serves them; joins, leaves and kicks reach the other node's members;
// unread counts and markers are exact once the deliveries are applied.
func TestShardedFanOut(t *testing.T) {
	c := newNodes(t, 2, nil)
	us := c.users(3)
	a, b := us[0], us[1]
	owner := a[0]
	g, err := c.of(owner).CreateGroup(ctx, owner, NewGroup{Members: []uint64{a[1], b[0], b[1]}})
	if err != nil {
		t.Fatal(err)
	}
	conv := g.ID
	if c.of(conv) != c.svcs[0] {
		t.Fatalf("the group was created in shard %d, not served by its creator's node", cluster.ShardOf(conv, testShards))
	}
	home := c.of(conv)
	for i := range 5 {
		sender := []uint64{a[0], b[0], a[1], b[1], b[0]}[i]
		if _, err := home.SendGroupMessage(ctx, sender, conv, fmt.Sprint("m", i), wire.KindText, []byte("hi")); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	// 1 create, 2–6 texts, 7 invite b[2], 8 text, 9 b[1] leaves, 10 kick a[1], 11 text.
	if err := home.Invite(ctx, b[0], conv, []uint64{b[2]}); err != nil {
		t.Fatal(err)
	}
	if _, err := home.SendGroupMessage(ctx, b[2], conv, "new", wire.KindText, nil); err != nil {
		t.Fatal(err)
	}
	if err := home.Leave(ctx, b[1], conv); err != nil {
		t.Fatal(err)
	}
	if err := home.Kick(ctx, owner, conv, a[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := home.SendGroupMessage(ctx, b[0], conv, "last", wire.KindText, nil); err != nil {
		t.Fatal(err)
	}
	c.settle()
	c.checkInboxes(map[uint64]map[uint64][]uint64{
		a[0]: {conv: span(1, 11)},
		a[1]: {conv: span(1, 10)},
		b[0]: {conv: span(1, 11)},
		b[1]: {conv: span(1, 9)},
		b[2]: {conv: span(7, 11)},
	})
	// Markers: b[0] sent 11; b[2] joined at 7 and sent 8; a[0] kicked at 10;
	// b[1] left at 9
	// having sent 5.
	for _, tc := range []struct {
		user, marker, head, left uint64
	}{
		{b[0], 11, 11, 0}, {b[2], 8, 11, 0}, {b[1], 5, 9, 9}, {a[0], 10, 11, 0}, {a[1], 4, 10, 10},
	} {
		info := findConv(t, c.conversations(tc.user), conv)
		if info.ReadSeq != tc.marker || info.Head != tc.head || info.LeftAt != tc.left || info.Unread != tc.head-tc.marker {
			t.Errorf("user %d: %+v, want marker %d head %d left %d", tc.user, info, tc.marker, tc.head, tc.left)
		}
	}
	// A member of the other node reads and syncs on their own node.
	if _, err := c.svcs[0].Sync(ctx, b[0], 0, 10); !errors.Is(err, ErrNotOwner) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("Sync on a node not serving the user: %v, want ErrNotOwner, retryable", err)
	}
	if _, err := c.svcs[1].SendGroupMessage(ctx, b[0], conv, "elsewhere", wire.KindText, nil); !errors.Is(err, ErrNotOwner) {
		t.Errorf("send on a node not serving the conversation: %v, want ErrNotOwner", err)
	}
	if m, err := c.of(b[0]).MarkRead(ctx, b[0], conv, 100); err != nil || m != 11 {
		t.Errorf("MarkRead of a conversation served elsewhere: %d, %v; want 11", m, err)
	}
}

func findConv(t *testing.T, cs []ConversationInfo, conv uint64) ConversationInfo {
	t.Helper()
	for _, c := range cs {
		if c.Conv == conv {
			return c
		}
	}
	t.Fatalf("no conversation %d in %+v", conv, cs)
	return ConversationInfo{}
}

// TestShardedRedelivery: deliveries applied twice, sent in reverse order
// first (refused from the gap on), lost to a cut link while the source node
// stops and restarts: every inbox still holds every message once.
func TestShardedRedelivery(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(p *peers)
		// restart stops the source node before the link heals and starts
		// it again: its successor delivers from the outbox.
		restart bool
	}{
		{"twice", func(p *peers) { p.twice = true }, false},
		{"reversed", func(p *peers) { p.reversed = true }, false},
		{"source restart", func(p *peers) { p.cut = true }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newNodes(t, 2, nil)
			us := c.users(2)
			a, b := us[0], us[1]
			g, err := c.of(a[0]).CreateGroup(ctx, a[0], NewGroup{Members: []uint64{a[1], b[0], b[1]}})
			if err != nil {
				t.Fatal(err)
			}
			c.settle()
			c.peers.set(tc.fault)
			// Sends from many goroutines: their batches hold several
			// records, so that a reversed request has a gap.
			var wg sync.WaitGroup
			for i := range 40 {
				wg.Go(func() {
					sender := []uint64{a[0], a[1], b[0], b[1]}[i%4]
					if _, err := c.svcs[0].SendGroupMessage(ctx, sender, g.ID, fmt.Sprint("m", i), wire.KindText, nil); err != nil {
						t.Errorf("send %d: %v", i, err)
					}
				})
			}
			wg.Wait()
			if tc.restart {
				c.stop(0)
				c.peers.set(func(p *peers) { p.cut = false })
				c.start(0)
			}
			c.settle()
			var multi int
			if c.peers.set(func(p *peers) { multi = p.multi }); multi == 0 && !tc.restart {
				t.Error("no request held more than one record: the fault tested nothing")
			}
			want := span(1, 41)
			c.checkInboxes(map[uint64]map[uint64][]uint64{a[0]: {g.ID: want}, a[1]: {g.ID: want}, b[0]: {g.ID: want}, b[1]: {g.ID: want}})
			for _, u := range []uint64{b[0], b[1]} {
				if info := findConv(t, c.conversations(u), g.ID); info.Head != 41 || info.Unread != 41-info.ReadSeq {
					t.Errorf("user %d: %+v", u, info)
				}
			}
		})
	}
}

// TestShardedDestinationCrash: the destination node dies while it applies
// a delivery, before its batch is written or after it is written and
// before it answers. The source delivers again to its successor: every
// message lands once.
func TestShardedDestinationCrash(t *testing.T) {
	for _, step := range []commitStep{stepBeforeCommit, stepAfterCommit} {
		t.Run(step.String(), func(t *testing.T) {
			crash := newCrashHook(t, step)
			c := newNodes(t, 2, func(i int) Config {
				if i != 1 {
					return Config{}
				}
				return Config{stepHook: crash.hook}
			})
			us := c.users(2)
			a, b := us[0], us[1]
			g, err := c.of(a[0]).CreateGroup(ctx, a[0], NewGroup{Members: []uint64{b[0], b[1]}})
			if err != nil {
				t.Fatal(err)
			}
			c.settle()
			crash.arm()
			for i := range 5 {
				if _, err := c.svcs[0].SendGroupMessage(ctx, a[0], g.ID, fmt.Sprint("m", i), wire.KindText, nil); err != nil {
					t.Fatal(err)
				}
			}
			crash.wait(t)
			c.stop(1)
			c.start(1)
			c.settle()
			want := span(1, 6)
			c.checkInboxes(map[uint64]map[uint64][]uint64{a[0]: {g.ID: want}, b[0]: {g.ID: want}, b[1]: {g.ID: want}})
		})
	}
}

// TestShardedMove: a shard moves to the other node while records for it
// are undelivered; the new owner of the source shard delivers its outbox,
// and the destination's new owner applies from the marks on.
func TestShardedMove(t *testing.T) {
	c := newNodes(t, 2, nil)
	us := c.users(2)
	a, b := us[0], us[1]
	g, err := c.of(a[0]).CreateGroup(ctx, a[0], NewGroup{Members: []uint64{b[0], b[1]}})
	if err != nil {
		t.Fatal(err)
	}
	c.peers.set(func(p *peers) { p.cut = true })
	for i := range 5 {
		if _, err := c.of(g.ID).SendGroupMessage(ctx, a[0], g.ID, fmt.Sprint("m", i), wire.KindText, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The conversation's shard moves to node 1, where b's users are: its
	// outbox is now owed to the node's own shards.
	c.ring.Move(cluster.ShardOf(g.ID, testShards), 1)
	c.peers.set(func(p *peers) { p.cut = false })
	c.settle()
	if _, err := c.of(g.ID).SendGroupMessage(ctx, b[0], g.ID, "after", wire.KindText, nil); err != nil {
		t.Fatal(err)
	}
	c.settle()
	want := span(1, 7)
	c.checkInboxes(map[uint64]map[uint64][]uint64{a[0]: {g.ID: want}, b[0]: {g.ID: want}, b[1]: {g.ID: want}})
}

// TestRandomizedModelSharded is TestRandomizedModel over two and three
// in-process nodes: every operation goes to the node serving its conversation or
// user, members are spread over both, and the simulated crashes stop one
// node at a random commit step — of a command or of an apply — and start
// it again on the store as it is, and shards move between the nodes.
// After each crash, once the outboxes are
// applied, the same model checks every inbox, marker and unread count.
// -seed replays a run.
func TestRandomizedModelSharded(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d nodes", n), func(t *testing.T) { randomizedSharded(t, n) })
	}
}

func randomizedSharded(t *testing.T, n int) {
	seed := modelSeedFor(t)
	m := newModel(seed)
	steps := []commitStep{stepBeforeCommit, stepAfterCommit, stepAfterAck}
	var armed atomic.Uint32 // the commitStep to crash at; 0 when disarmed
	var victim atomic.Int32 // the node to crash
	var countdown atomic.Int32
	crashed := make(chan int, 1)
	c := newNodes(t, n, func(i int) Config {
		return Config{MaxGroupSize: 8, GroupCacheBytes: 4 << 10, stepHook: func(step commitStep) bool {
			if victim.Load() != int32(i) || armed.Load() != uint32(step) || countdown.Add(-1) > 0 {
				return false
			}
			armed.Store(0)
			crashed <- i
			return true
		}}
	})

	const workers, ops, maxOps, minAcked, users = 6, 250, 2500, 150, 12
	var mu sync.RWMutex // write-held while a node restarts
	var wg sync.WaitGroup
	var done atomic.Int32
	route := func(id uint64) *Service { return c.of(id) }
	for w := range workers {
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		wg.Go(func() {
			defer done.Add(1)
			for i := 0; i < maxOps && (i < ops || m.ackedSends() < minAcked); i++ {
				mu.RLock()
				m.step(t, route, rng, w, i, users)
				mu.RUnlock()
			}
		})
	}
	crashes, moves := 0, 0
	for done.Load() < workers {
		countdown.Store(int32(10 + m.intn(40)))
		victim.Store(int32(m.intn(n)))
		armed.Store(uint32(steps[m.intn(len(steps))]))
		node := -1
		select {
		case node = <-crashed:
			crashes++
		case <-waitAll(&wg):
		}
		mu.Lock()
		armed.Store(0)
		if node >= 0 {
			c.stop(node)
			c.start(node)
		}
		c.settle()
		m.verify(t, c.store, c.conversations, users)
		m.verifyReceipts(t, c.store, route, users)
		// Now and then a shard moves, while nothing is in flight (the
		// handover's drain, which waits out a shard's batches, is the
		// cluster's part).
		if m.intn(2) == 0 {
			c.ring.Move(m.intn(testShards), m.intn(n))
			moves++
		}
		mu.Unlock()
	}
	wg.Wait()
	c.settle()
	m.verify(t, c.store, c.conversations, users)
	m.verifyReceipts(t, c.store, route, users)
	var calls int
	c.peers.set(func(p *peers) { calls = p.calls })
	t.Logf("%d sends acknowledged, %d groups, %d crashes, %d shard moves, %d deliveries between the nodes",
		len(m.acked), len(m.groups), crashes, moves, calls)
	if len(m.acked) < minAcked || crashes == 0 || calls == 0 {
		t.Fatalf("the workload did too little to test anything")
	}
}

// TestShardedMoveBack: a conversation's shard moves to the other node,
// which posts to it, and comes back: the first node reads the group, its
// conv_seq and its streams again instead of reusing what it held.
func TestShardedMoveBack(t *testing.T) {
	c := newNodes(t, 2, nil)
	us := c.users(2)
	a, b := us[0], us[1]
	g, err := c.of(a[0]).CreateGroup(ctx, a[0], NewGroup{Members: []uint64{a[1], b[0]}})
	if err != nil {
		t.Fatal(err)
	}
	shard := cluster.ShardOf(g.ID, testShards)
	send := func(sender uint64, id string) {
		t.Helper()
		if _, err := c.of(g.ID).SendGroupMessage(ctx, sender, g.ID, id, wire.KindText, nil); err != nil {
			t.Fatalf("send %s: %v", id, err)
		}
	}
	send(a[0], "on 0")
	c.ring.Move(shard, 1)
	send(b[0], "on 1")
	if err := c.of(g.ID).Invite(ctx, b[0], g.ID, []uint64{b[1]}); err != nil {
		t.Fatal(err)
	}
	c.settle()
	c.ring.Move(shard, 0)
	send(b[1], "on 0 again")
	c.settle()
	want := span(1, 5)
	c.checkInboxes(map[uint64]map[uint64][]uint64{a[0]: {g.ID: want}, a[1]: {g.ID: want}, b[0]: {g.ID: want}, b[1]: {g.ID: span(4, 5)}})
	msgs, err := c.store.Messages(ctx, g.ID, timeline.Range{})
	if err != nil || len(msgs) != 5 || msgs[4].Sender != b[1] {
		t.Fatalf("messages %+v, %v: want 5, the last from %d", msgs, err, b[1])
	}
}

// TestShardedPush: the members of the other node are pushed what is applied
// there, with the message; an offline one gets the offline push unless it
// is their own message or they set do-not-disturb, which they set on the
// conversation's node and their devices learn from a KindDND row.
func TestShardedPush(t *testing.T) {
	rec := newRecorder()
	c := newNodes(t, 2, func(i int) Config {
		if i == 1 {
			return Config{Notifier: rec, OfflinePusher: rec}
		}
		return Config{}
	})
	us := c.users(3)
	a, b := us[0], us[1]
	rec.online[b[2]] = true
	g, err := c.of(a[0]).CreateGroup(ctx, a[0], NewGroup{Members: b})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.of(g.ID).SetDND(ctx, b[1], g.ID, true); err != nil {
		t.Fatal(err)
	}
	for i, sender := range []uint64{a[0], b[0]} {
		if _, err := c.of(g.ID).SendGroupMessage(ctx, sender, g.ID, fmt.Sprint("m", i), wire.KindText, []byte(fmt.Sprint("body", i))); err != nil {
			t.Fatal(err)
		}
	}
	c.settle()
	count := func(es []Entry, kind wire.Kind) int {
		n := 0
		for _, e := range es {
			if e.Row.Kind == kind {
				n++
			}
		}
		return n
	}
	waitFor(t, "the pushes of node 1", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.pushed[b[0]]) == 3 && len(rec.pushed[b[1]]) == 4 && len(rec.pushed[b[2]]) == 3
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, e := range rec.pushed[b[2]] {
		if e.Row.Kind == wire.KindText && (e.Msg == nil || !slices.Contains([]string{"body0", "body1"}, string(e.Msg.Body))) {
			t.Errorf("pushed %+v without its message", e.Row)
		}
	}
	if n := count(rec.pushed[b[1]], wire.KindDND); n != 1 {
		t.Errorf("user %d was pushed %d KindDND rows, want 1", b[1], n)
	}
	// Offline: b[0] gets the creation notice and a[0]'s text, not their own;
	// b[1] only the notice, sent before do-not-disturb; b[2] is online.
	for u, want := range map[uint64]int{b[0]: 2, b[1]: 1, b[2]: 0} {
		if got := len(rec.offline[u]); got != want {
			t.Errorf("user %d: %d offline pushes, want %d", u, got, want)
		}
	}
	if _, ok := rec.offline[a[0]]; ok {
		t.Errorf("node 1 pushed user %d of node 0", a[0])
	}
	if info := findConv(t, c.conversations(b[1]), g.ID); !info.DND {
		t.Errorf("user %d's entry lacks do-not-disturb: %+v", b[1], info)
	}
}

// TestShardedBacklog: records pile up while the link is cut, far beyond
// what the delivery loop holds in memory and sends in one request; once it
// heals, all of them are delivered, the rest read back from the store.
func TestShardedBacklog(t *testing.T) {
	c := newNodes(t, 2, func(int) Config {
		return Config{outboxLimits: outboxLimits{queued: 8, incoming: 4, perRequest: 3}}
	})
	us := c.users(1)
	a, b := us[0][0], us[1][0]
	g, err := c.of(a).CreateGroup(ctx, a, NewGroup{Members: []uint64{b}})
	if err != nil {
		t.Fatal(err)
	}
	c.peers.set(func(p *peers) { p.cut = true })
	const n = 60
	for i := range n {
		if _, err := c.of(g.ID).SendGroupMessage(ctx, a, g.ID, fmt.Sprint("m", i), wire.KindText, nil); err != nil {
			t.Fatal(err)
		}
	}
	c.peers.set(func(p *peers) { p.cut = false })
	// Nothing else happens: the loop must go on by itself.
	c.settle()
	c.checkInboxes(map[uint64]map[uint64][]uint64{a: {g.ID: span(1, n+1)}, b: {g.ID: span(1, n+1)}})
}

// nodeIDs returns 0, 1, …, n−1.
func nodeIDs(n int) []int {
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i
	}
	return ids
}

// TestShardedStaleHead moves a node's shards away and back with no batch
// of its own in between: its reads must not be cut at the heads it cached
// before, past which the other node wrote meanwhile.
func TestShardedStaleHead(t *testing.T) {
	c := newNodes(t, 2, nil)
	a := c.users(2)[0]
	g, err := c.of(a[0]).CreateGroup(ctx, a[0], NewGroup{Members: []uint64{a[1]}})
	if err != nil {
		t.Fatal(err)
	}
	send := func(id string) {
		t.Helper()
		if _, err := c.of(g.ID).SendGroupMessage(ctx, a[0], g.ID, id, wire.KindText, nil); err != nil {
			t.Fatalf("send %s: %v", id, err)
		}
	}
	send("on 0")
	first := c.svcs[0]
	if res, err := first.Sync(ctx, a[1], 0, 0); err != nil || len(res.Entries) != 2 {
		t.Fatalf("sync on node 0: %+v, %v; want the notice and a message", res, err)
	}
	moveAll := func(from, to int) {
		for _, sh := range c.ring.View(from).Shards() {
			c.ring.Move(sh, to)
		}
	}
	moveAll(0, 1)
	send("on 1")
	moveAll(1, 0)
	for _, u := range a {
		res, err := first.Sync(ctx, u, 0, 0)
		if err != nil || len(res.Entries) != 3 || res.Head != 3 {
			t.Errorf("user %d: sync on node 0 after the shards came back: %d entries, head %d, %v; want 3", u, len(res.Entries), res.Head, err)
		}
	}
}

// TestShardedMentionsAndAmends: a group of node 0 with members of node 1.
// A mention reaches a member of node 1 who set do-not-disturb through the
// offline push (the record drops EffectDND); the edit and the recall of it
// reach every member's inbox but no offline push (EffectNoPush); node 1's
// conversation list counts the unread mention.
func TestShardedMentionsAndAmends(t *testing.T) {
	rec := newRecorder()
	c := newNodes(t, 2, func(i int) Config {
		if i == 1 {
			return Config{Notifier: rec, OfflinePusher: rec}
		}
		return Config{}
	})
	us := c.users(2)
	a, b := us[0], us[1]
	g, err := c.of(a[0]).CreateGroup(ctx, a[0], NewGroup{Members: b})
	if err != nil {
		t.Fatal(err)
	}
	owner := c.of(g.ID)
	if err := owner.SetDND(ctx, b[1], g.ID, true); err != nil {
		t.Fatal(err)
	}
	sent, err := owner.SendMessage(ctx, a[0], g.ID, Outgoing{ClientMsgID: "m", Kind: wire.KindText, Body: []byte("@b1"), Mentions: []uint64{b[1]}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Edit(ctx, a[0], g.ID, sent.ConvSeq, "e", []byte("@b1!")); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.SendMessage(ctx, a[0], g.ID, Outgoing{ClientMsgID: "plain", Kind: wire.KindText, Body: []byte("no mention")}); err != nil {
		t.Fatal(err)
	}
	recall, err := owner.Recall(ctx, a[0], g.ID, sent.ConvSeq, "r")
	if err != nil {
		t.Fatal(err)
	}
	c.settle()
	c.checkInboxes(map[uint64]map[uint64][]uint64{
		a[0]: {g.ID: span(1, recall.ConvSeq)}, b[0]: {g.ID: span(1, recall.ConvSeq)}, b[1]: {g.ID: span(1, recall.ConvSeq)},
	})
	waitFor(t, "node 1's pushes", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return slices.ContainsFunc(rec.pushed[b[1]], func(e Entry) bool { return e.Row.Kind == wire.KindRecall })
	})
	rec.mu.Lock()
	offline := map[uint64][]uint64{}
	for _, u := range b {
		for _, e := range rec.offline[u] {
			offline[u] = append(offline[u], e.Row.ConvSeq)
		}
	}
	rec.mu.Unlock()
	// b[0]: everything but the edit and the recall; b[1], on do-not-disturb:
	// the notice (before it) and the message that mentions them.
	want := map[uint64][]uint64{b[0]: {1, sent.ConvSeq, sent.ConvSeq + 2}, b[1]: {1, sent.ConvSeq}}
	for u, w := range want {
		if !slices.Equal(offline[u], w) {
			t.Errorf("user %d: offline pushes of conv_seqs %v, want %v", u, offline[u], w)
		}
	}
	info := findConv(t, c.conversations(b[1]), g.ID)
	if info.MentionUnread != 1 || info.Unread != recall.ConvSeq {
		t.Errorf("user %d's entry: %d unread, %d mentions; want %d, 1", b[1], info.Unread, info.MentionUnread, recall.ConvSeq)
	}
	msgs, err := owner.History(ctx, b[1], g.ID, sent.ConvSeq+1, 1)
	if err != nil || len(msgs) != 1 || !msgs[0].Recalled || len(msgs[0].Body) != 0 {
		t.Fatalf("history of the recalled message: %+v, %v", msgs, err)
	}
}

// TestShardedMemberBeforeDelivery: a member of another node's shard is a
// member on the group's node as soon as the group's commit is durable,
// while their own conversation entry is still on its way (the link to
// their node is cut): GROUP_INFO and HISTORY serve them, and a stranger
// stays refused.
func TestShardedMemberBeforeDelivery(t *testing.T) {
	c := newNodes(t, 2, nil)
	us := c.users(2)
	a, b := us[0], us[1]
	c.peers.set(func(p *peers) { p.cut = true })
	g, err := c.of(a[0]).CreateGroup(ctx, a[0], NewGroup{Members: []uint64{a[1], b[0]}})
	if err != nil {
		t.Fatal(err)
	}
	owner := c.of(g.ID)
	remote, stranger := b[0], b[1] // the member of the node not serving the group
	if owner == c.svcs[1] {
		remote = a[1]
	}
	if _, err := owner.Group(ctx, remote, g.ID); err != nil {
		t.Errorf("group info for member %d, whose entry is not delivered yet: %v", remote, err)
	}
	if msgs, err := owner.History(ctx, remote, g.ID, 0, 10); err != nil || len(msgs) != 1 {
		t.Errorf("history for member %d, whose entry is not delivered yet: %d messages, %v", remote, len(msgs), err)
	}
	if _, err := owner.Group(ctx, stranger, g.ID); !errors.Is(err, ErrNotMember) {
		t.Errorf("group info for stranger %d: %v, want ErrNotMember", stranger, err)
	}
	c.peers.set(func(p *peers) { p.cut = false })
	c.settle()
}
