package cluster

import (
	"fmt"
	"sync"
	"time"
)

// Ownership is what the gateway and the service ask of the cluster: which
// shards this process serves, who serves the others, and write timestamps
// that fence a shard's earlier owners. *Node and *Local implement it; all
// methods are safe for concurrent use.
type Ownership interface {
	// ShardCount is the number of shards; ShardOf(key, ShardCount())
	// names a user's or a conversation's shard.
	ShardCount() int
	// Serving reports whether this process serves shard now, and the
	// shard's epoch, raised by every change of owner. Check it before each
	// write for the shard, with Timestamp.
	Serving(shard int) (epoch uint64, ok bool)
	// Timestamp returns a write timestamp (Unix µs) for shard, above every
	// timestamp any earlier owner of the shard used, or an error wrapping
	// ErrNotServing, ErrExpired (transient), ErrLost or ErrClosed.
	Timestamp(shard int) (int64, error)
	// Owner returns the process serving shard, as last known.
	Owner(shard int) (NodeInfo, bool)
	// Shards returns the shards this process owns, in order.
	Shards() []int
	// Changes returns a channel closed at the next change of the shards
	// served or their owners; nil if they never change. A receiver calls
	// it again once the channel is closed, before it looks at the shards.
	Changes() <-chan struct{}
}

var (
	_ Ownership = (*Node)(nil)
	_ Ownership = (*Local)(nil)
)

// Local is the Ownership of a process that is the whole cluster (the
// embedded single-node mode): it serves every shard, always.
type Local struct {
	shards int

	mu   sync.Mutex
	last int64
}

// NewLocal returns the Ownership of a single node with shards shards.
func NewLocal(shards int) *Local {
	if shards <= 0 {
		panic(fmt.Sprintf("cluster: NewLocal(%d): the shard count must be positive", shards))
	}
	return &Local{shards: shards}
}

// ShardCount returns the number of shards.
func (l *Local) ShardCount() int { return l.shards }

// Serving reports true for every shard, at epoch 1.
func (l *Local) Serving(shard int) (uint64, bool) {
	return 1, shard >= 0 && shard < l.shards
}

// Timestamp returns a timestamp above every one returned before.
func (l *Local) Timestamp(shard int) (int64, error) {
	if _, ok := l.Serving(shard); !ok {
		return 0, fmt.Errorf("%w: shard %d of %d", ErrNotServing, shard, l.shards)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last = max(time.Now().UnixMicro(), l.last+1)
	return l.last, nil
}

// Owner returns node 0, this process, for every shard.
func (l *Local) Owner(shard int) (NodeInfo, bool) {
	_, ok := l.Serving(shard)
	return NodeInfo{Incarnation: 1}, ok
}

// Shards returns every shard.
func (l *Local) Shards() []int {
	all := make([]int, l.shards)
	for s := range all {
		all[s] = s
	}
	return all
}

// Changes returns nil: a single node's ownership never changes.
func (l *Local) Changes() <-chan struct{} { return nil }
