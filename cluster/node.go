package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/gocql/gocql"
)

var (
	// ErrNotServing is wrapped by the error of Timestamp for a shard that
	// the node does not serve now: another node owns it, or it moves.
	ErrNotServing = errors.New("cluster: shard not served here")
	// ErrExpired is wrapped by the error of Timestamp while the node's
	// lease is not renewed in time: transient, cured by the next renewal.
	ErrExpired = errors.New("cluster: node lease not renewed in time")
	// ErrLost is wrapped by the error of Timestamp once the cluster has
	// declared this node dead: it owns nothing any more, for good.
	ErrLost = errors.New("cluster: node lease lost")
	// ErrClosed is wrapped by the error of Timestamp after Close or Leave.
	ErrClosed = errors.New("cluster: node closed")
	// ErrShardCount is wrapped by the error of Join when the keyspace
	// records another number of shards than Config.Shards.
	ErrShardCount = errors.New("cluster: shard count differs from the keyspace's")
	// ErrNoFreeID is wrapped by the error of Join when every node id is in
	// use.
	ErrNoFreeID = errors.New("cluster: no free node id")
)

// NodeInfo names a node incarnation and its addresses.
type NodeInfo struct {
	ID          int
	Incarnation int64
	Addr        string // for clients
	PeerAddr    string // for other nodes
}

// Node is this process's membership of the cluster: its node lease and the
// shards it owns. It is safe for concurrent use.
type Node struct {
	cfg        Config
	session    *gocql.Session
	ownSession bool
	q          queries
	log        *slog.Logger
	shards     int
	ttl        time.Duration

	self NodeInfo // set by Join

	// rowMu serialises the node's writes of its own nodes row.
	rowMu sync.Mutex

	mu     sync.Mutex
	beat   int64
	state  string
	valid  time.Time // serving until then unless renewed (monotonic)
	limit  int64     // every timestamp is below it (Unix µs)
	last   int64     // the newest timestamp handed out
	lost   error     // wraps ErrLost
	closed bool
	owned  map[int]*owned
	view   []NodeInfo // each shard's owner in the last read; ID -1: none
	lostCh chan struct{}
	// renewNow asks for a renewal before its time, to raise ts_limit
	// above a floor close to it.
	renewNow chan struct{}

	changes Broadcast

	// Balancing state, used by the balancing goroutine only (and by Join
	// and Leave while it does not run).
	seen    map[int]seen
	targets targets
	pending []handover // sent, outcome unknown

	cancelRenew, cancelBalance context.CancelFunc
	renewDone, balanceDone     chan struct{}
	pause                      gate
}

// owned is a shard this node owns.
type owned struct {
	epoch    int64
	draining bool // being handed over: not served
}

// Join claims a node id in the cluster of cfg.Keyspace and starts renewing
// its lease and balancing shards. The node owns no shard yet when Join
// returns; it claims its share within a few rounds. ctx bounds Join only.
func Join(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("cluster: join: %w", err)
	}
	n := &Node{
		cfg:      cfg,
		session:  cfg.Session,
		q:        newQueries(cfg.Keyspace),
		log:      cfg.Logger,
		ttl:      cfg.LeaseTTL,
		owned:    make(map[int]*owned),
		lostCh:   make(chan struct{}),
		renewNow: make(chan struct{}, 1),
		seen:     make(map[int]seen),
	}
	if n.session == nil {
		s, err := newSession(cfg)
		if err != nil {
			return nil, fmt.Errorf("cluster: join: connect to %v: %w", cfg.Hosts, err)
		}
		n.session, n.ownSession = s, true
	}
	if err := n.join(ctx); err != nil {
		if n.ownSession {
			n.session.Close()
		}
		return nil, fmt.Errorf("cluster: join: %w", err)
	}
	n.log = n.log.With("node", n.self.ID, "incarnation", n.self.Incarnation)
	n.log.Info("cluster: joined", "shards", n.shards)

	var renewCtx, balanceCtx context.Context
	renewCtx, n.cancelRenew = context.WithCancel(context.Background())
	balanceCtx, n.cancelBalance = context.WithCancel(context.Background())
	n.renewDone, n.balanceDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(n.renewDone)
		n.keep(renewCtx)
	}()
	go func() {
		defer close(n.balanceDone)
		n.balance(balanceCtx)
	}()
	return n, nil
}

func (n *Node) join(ctx context.Context) error {
	if err := n.loadShardCount(ctx); err != nil {
		return err
	}
	n.view = make([]NodeInfo, n.shards)
	for s := range n.view {
		n.view[s].ID = -1
	}
	return n.claimID(ctx)
}

// loadShardCount records the shard count in a new keyspace or reads that of
// an existing one.
func (n *Node) loadShardCount(ctx context.Context) error {
	want := n.cfg.Shards
	if want == 0 {
		want = DefaultShards
	}
	cur := make(map[string]any)
	if _, err := n.cas(ctx, cur, n.q.setting, int64(want)); err != nil {
		return fmt.Errorf("read the shard count: %w", err)
	}
	got := want
	if v, ok := cur["value"].(int64); ok { // the row existed
		got = int(v)
	}
	if got <= 0 || n.cfg.Shards != 0 && got != n.cfg.Shards {
		return fmt.Errorf("%w: keyspace %q has %d shards, this node wants %d", ErrShardCount, n.cfg.Keyspace, got, n.cfg.Shards)
	}
	n.shards = got
	return nil
}

// raiseFloorLocked makes the next timestamp at least floor. A shard taken
// from a superseded incarnation has its successor's ts_limit as floor,
// which may be this node's own: Timestamp fails (ErrExpired) until a
// renewal raises ts_limit above it, so the renewal is asked for now.
func (n *Node) raiseFloorLocked(floor int64) {
	n.last = max(n.last, floor-1)
	if n.limit-n.last < n.ttl.Microseconds()/2 {
		select {
		case n.renewNow <- struct{}{}:
		default:
		}
	}
}

// Self returns this node's id, incarnation and addresses.
func (n *Node) Self() NodeInfo { return n.self }

// ShardCount returns the number of shards of the cluster.
func (n *Node) ShardCount() int { return n.shards }

// Lost is closed once the cluster has declared this node dead (a renewal
// found another incarnation or state in its row): it serves nothing more,
// and the process should leave the cluster's work to the others (and may
// Join again as a new incarnation).
func (n *Node) Lost() <-chan struct{} { return n.lostCh }

// Changes returns a channel closed at the next change of the shards this
// node serves or of the owners in its view, or when it loses its lease or
// closes. A receiver calls Changes again once its channel is closed, and
// before it looks at the shards, so that it misses no change after its
// look. Every receiver waiting between two changes gets the same channel:
// a receiver that goes away leaves nothing behind.
func (n *Node) Changes() <-chan struct{} { return n.changes.Wait() }

func (n *Node) notify() { n.changes.Notify() }

// Broadcast is what an Ownership's Changes is made of: every receiver
// waiting between two changes gets the same channel, which the next change
// closes, so a receiver that goes away leaves nothing behind. The zero
// value is ready to use.
type Broadcast struct {
	mu sync.Mutex
	ch chan struct{} // nil: nobody waits
}

// Wait returns the channel the next Notify closes.
func (b *Broadcast) Wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

// Notify closes the channel Wait handed out, if any.
func (b *Broadcast) Notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

// servingLocked returns nil if the node serves shard now.
func (n *Node) servingLocked(shard int, now time.Time) (*owned, error) {
	switch {
	case n.closed:
		return nil, ErrClosed
	case n.lost != nil:
		return nil, n.lost
	}
	o := n.owned[shard]
	if o == nil || o.draining {
		return nil, fmt.Errorf("%w: shard %d on node %d", ErrNotServing, shard, n.self.ID)
	}
	if !now.Before(n.valid) {
		return nil, ErrExpired
	}
	return o, nil
}

// Serving reports whether this node serves shard now, with the shard's
// epoch (raised by every change of owner).
func (n *Node) Serving(shard int) (epoch uint64, ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	o, err := n.servingLocked(shard, time.Now())
	if err != nil {
		return 0, false
	}
	return uint64(o.epoch), true
}

// Timestamp returns a write timestamp (Unix µs) for shard: above every one
// this node handed out before and every one an earlier owner of the shard
// used, and below the node's ts_limit. It fails unless the node serves the
// shard now.
func (n *Node) Timestamp(shard int) (int64, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	if _, err := n.servingLocked(shard, now); err != nil {
		return 0, err
	}
	return n.nextLocked(now)
}

// LogTimestamp returns a write timestamp (Unix µs) for rows that belong to
// the node rather than to a shard (its batch log): above every one this
// node or an earlier incarnation of its id handed out, and below its
// ts_limit. It fails once the node's lease is not valid. It must never be
// used for a shard's cells: it is not fenced by the shard's ts_floor.
func (n *Node) LogTimestamp() (int64, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	switch {
	case n.closed:
		return 0, ErrClosed
	case n.lost != nil:
		return 0, n.lost
	case !now.Before(n.valid):
		return 0, ErrExpired
	}
	return n.nextLocked(now)
}

// nextLocked hands out the next timestamp: the node's timestamps rise
// strictly, whatever shard they are taken for.
func (n *Node) nextLocked(now time.Time) (int64, error) {
	t := max(now.UnixMicro(), n.last+1)
	if t >= n.limit {
		return 0, ErrExpired
	}
	n.last = t
	return t, nil
}

// Owner returns the node that owns shard: this one while it serves it,
// else the owner in the last read of the shards (a node that may be
// serving it, or about to).
func (n *Node) Owner(shard int) (NodeInfo, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := n.servingLocked(shard, time.Now()); err == nil {
		return n.self, true
	}
	if shard < 0 || shard >= len(n.view) || n.view[shard].ID < 0 || n.view[shard] == n.self {
		return NodeInfo{}, false
	}
	return n.view[shard], true
}

// Shards returns the shards this node owns, in order, but those it is
// handing over. It serves them while its lease is valid (Serving).
func (n *Node) Shards() []int {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []int
	if n.closed || n.lost != nil {
		return out
	}
	for s, o := range n.owned {
		if !o.draining {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// Close stops the node without a word to the cluster, as a crash would:
// the others take its shards once its lease has run out (Leave hands them
// over at once). It closes the session it opened.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return ErrClosed
	}
	n.closed = true
	n.mu.Unlock()
	n.notify()
	n.cancelBalance()
	n.cancelRenew()
	<-n.balanceDone
	<-n.renewDone
	if n.ownSession {
		n.session.Close()
	}
	return nil
}

// markLost records that the cluster declared this node dead.
func (n *Node) markLost(err error) {
	n.mu.Lock()
	first := n.lost == nil
	if first {
		n.lost = err
	}
	n.mu.Unlock()
	if first {
		n.log.Error("cluster: this node lost its lease and serves nothing more", "err", err)
		close(n.lostCh)
		n.notify()
	}
}

// gate holds the node's goroutines while paused (tests: a process stopped
// with SIGSTOP).
type gate struct {
	mu sync.Mutex
	ch chan struct{} // nil unless paused; closed to resume
}

func (g *gate) wait(ctx context.Context) {
	g.mu.Lock()
	ch := g.ch
	g.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}
}
