// Package clustertest is a cluster.Ownership that a test sets by hand: a
// Ring says which node owns each shard and where each node is, and each
// node of the test gets its View of it. Nothing expires and nothing is
// stored: it is for tests of what sits on top of the ownership (the
// committer, the gateway, the relay), not of the ownership itself.
//
// It is the server's own test helper (README, "Layout"), not an API.
package clustertest

import (
	"sync"
	"time"

	"github.com/inboxd/inboxd/cluster"
)

// Ring is the shard assignment the nodes of a test share.
type Ring struct {
	mu      sync.Mutex
	owner   []int    // shard → node; -1: no owner
	epoch   []uint64 // shard → raised by every Move
	nodes   map[int]cluster.NodeInfo
	changed cluster.Broadcast // every view's Changes, closed by each Move
}

// NewRing returns a ring of shards shards, shard s owned by nodes[s mod
// len(nodes)] (none owned when nodes is empty), each at epoch 1.
func NewRing(shards int, nodes ...int) *Ring {
	r := &Ring{owner: make([]int, shards), epoch: make([]uint64, shards), nodes: map[int]cluster.NodeInfo{}}
	for s := range r.owner {
		r.owner[s], r.epoch[s] = -1, 1
		if len(nodes) > 0 {
			r.owner[s] = nodes[s%len(nodes)]
		}
	}
	return r
}

// Move gives shard to node (node < 0: to nobody) under a new epoch, and
// wakes every receiver of every view's Changes.
func (r *Ring) Move(shard, node int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.owner[shard] = node
	r.epoch[shard]++
	r.changed.Notify()
}

// SetNode records where node info.ID is: what Owner answers for its shards.
func (r *Ring) SetNode(info cluster.NodeInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nodes[info.ID] = info
}

// Owner returns the node that owns shard, as SetNode described it (its id
// alone if SetNode did not), or false when nobody does.
func (r *Ring) Owner(shard int) (cluster.NodeInfo, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.owner[shard]
	if n < 0 {
		return cluster.NodeInfo{}, false
	}
	if info, ok := r.nodes[n]; ok {
		return info, true
	}
	return cluster.NodeInfo{ID: n, Incarnation: 1}, true
}

// View returns node self's Ownership of r.
func (r *Ring) View(self int) *View {
	return &View{r: r, self: self}
}

// View is one node's cluster.Ownership of a Ring.
type View struct {
	r    *Ring
	self int
}

var _ cluster.Ownership = (*View)(nil)

// ShardCount returns the ring's number of shards.
func (v *View) ShardCount() int { return len(v.r.owner) }

// Serving reports whether the view's node owns shard, and its epoch.
func (v *View) Serving(shard int) (uint64, bool) {
	v.r.mu.Lock()
	defer v.r.mu.Unlock()
	return v.r.epoch[shard], v.r.owner[shard] == v.self
}

// Timestamp is the wall clock's, for a shard the node owns.
func (v *View) Timestamp(shard int) (int64, error) {
	if _, ok := v.Serving(shard); !ok {
		return 0, cluster.ErrNotServing
	}
	return time.Now().UnixMicro(), nil
}

// Owner is the ring's Owner: every view agrees.
func (v *View) Owner(shard int) (cluster.NodeInfo, bool) { return v.r.Owner(shard) }

// Shards returns the shards the view's node owns, in order.
func (v *View) Shards() []int {
	v.r.mu.Lock()
	defer v.r.mu.Unlock()
	var out []int
	for s, n := range v.r.owner {
		if n == v.self {
			out = append(out, s)
		}
	}
	return out
}

// Changes returns a channel closed by the next Move.
func (v *View) Changes() <-chan struct{} { return v.r.changed.Wait() }

// UserOf returns the smallest id from 1 up in shard, of shards shards.
func UserOf(shard, shards int) uint64 {
	for u := uint64(1); ; u++ {
		if cluster.ShardOf(u, shards) == shard {
			return u
		}
	}
}
