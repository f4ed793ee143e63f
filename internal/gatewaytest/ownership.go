package gatewaytest

import (
	"sync"

	"github.com/inboxd/inboxd/cluster"
)

// Ownership is one node's view of a cluster, set by the test: which node
// owns each shard, and the nodes' client addresses. It has the methods of
// cluster.Ownership that the gateway uses. Each gateway under test gets its
// own, so that two views may disagree (a redirect loop); Move changes
// several at once.
type Ownership struct {
	self    int
	shards  int
	changes chan struct{}

	mu    sync.Mutex
	owner map[int]int    // shard → node; absent: no owner
	addrs map[int]string // node → client address
}

// NewOwnership returns the view of node self of shards shards, none owned.
func NewOwnership(self, shards int) *Ownership {
	return &Ownership{
		self: self, shards: shards, changes: make(chan struct{}, 1),
		owner: make(map[int]int), addrs: make(map[int]string),
	}
}

// Move makes node the owner of shard in every view given (node < 0: no
// owner), and notifies each.
func Move(shard, node int, views ...*Ownership) {
	for _, o := range views {
		o.mu.Lock()
		if node < 0 {
			delete(o.owner, shard)
		} else {
			o.owner[shard] = node
		}
		o.mu.Unlock()
		select {
		case o.changes <- struct{}{}:
		default:
		}
	}
}

// SetAddr records node's client address in every view given.
func SetAddr(node int, addr string, views ...*Ownership) {
	for _, o := range views {
		o.mu.Lock()
		o.addrs[node] = addr
		o.mu.Unlock()
	}
}

// ShardCount returns the number of shards.
func (o *Ownership) ShardCount() int { return o.shards }

// Serving reports whether this view's node owns shard.
func (o *Ownership) Serving(shard int) (uint64, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, ok := o.owner[shard]
	return 1, ok && n == o.self
}

// Owner returns shard's owner, if any.
func (o *Ownership) Owner(shard int) (cluster.NodeInfo, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, ok := o.owner[shard]
	if !ok {
		return cluster.NodeInfo{}, false
	}
	return cluster.NodeInfo{ID: n, Addr: o.addrs[n]}, true
}

// Changes is notified by Move.
func (o *Ownership) Changes() <-chan struct{} { return o.changes }

// UserOf returns the smallest user id from 1 up in shard.
func UserOf(shard, shards int) uint64 {
	for u := uint64(1); ; u++ {
		if cluster.ShardOf(u, shards) == shard {
			return u
		}
	}
}
