package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/inboxd/inboxd/cluster"
)

// Typing events and presence questions (docs/cluster.md, "Typing and
// presence") go to the nodes serving the users concerned, one call per
// node, the calls to different nodes at once.

// Typing pushes a typing event of user in conv to the devices of to at the
// nodes serving their shards, one CmdTyping call per node. Users of a
// shard that no other node serves now are skipped: no device of theirs is
// connected anywhere else. It returns the calls' errors joined; every call
// is made whatever the others do. It is gateway.Peers.
func (r *Relay) Typing(ctx context.Context, conv, user uint64, to []uint64) error {
	return r.eachNode(to, func(node cluster.NodeInfo, users []uint64) error {
		start := time.Now()
		_, err := r.cfg.Pool.Call(ctx, node.PeerAddr, CmdTyping, appendTyping(nil, conv, user, users))
		r.m.typing.observe(err, start)
		if err != nil {
			return fmt.Errorf("relay: typing event to node %d: %w", node.ID, err)
		}
		return nil
	})
}

// Online returns those of users with a device connected to the node
// serving their shard, by one CmdPresence call per node; users of a shard
// no other node serves now are offline. It fails if any call fails. It is
// gateway.Peers.
func (r *Relay) Online(ctx context.Context, users []uint64) ([]uint64, error) {
	var mu sync.Mutex
	var online []uint64
	err := r.eachNode(users, func(node cluster.NodeInfo, users []uint64) error {
		start := time.Now()
		resp, err := r.cfg.Pool.Call(ctx, node.PeerAddr, CmdPresence, appendUsers(nil, users))
		if err == nil {
			var on []uint64
			if on, err = decodeUsers(resp); err == nil {
				mu.Lock()
				online = append(online, on...)
				mu.Unlock()
			}
		}
		r.m.presence.observe(err, start)
		if err != nil {
			return fmt.Errorf("relay: presence at node %d: %w", node.ID, err)
		}
		return nil
	})
	return online, err
}

// eachNode groups users by the node serving their shard, leaving out
// those of shards served here or by nobody, and calls call for each node
// in a goroutine of its own. It returns the calls' errors joined.
func (r *Relay) eachNode(users []uint64, call func(node cluster.NodeInfo, users []uint64) error) error {
	own := r.cfg.Ownership
	nodes := make(map[int]cluster.NodeInfo)
	byNode := make(map[int][]uint64)
	for _, u := range users {
		shard := cluster.ShardOf(u, own.ShardCount())
		if _, self := own.Serving(shard); self {
			continue
		}
		node, ok := own.Owner(shard)
		if !ok || node.PeerAddr == "" {
			continue
		}
		nodes[node.ID] = node
		byNode[node.ID] = append(byNode[node.ID], u)
	}
	errs := make(chan error, len(byNode))
	var wg sync.WaitGroup
	for id, us := range byNode {
		wg.Go(func() { errs <- call(nodes[id], us) })
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// Pusher serves the ephemeral commands: *gateway.Server. Its methods must
// not block.
type Pusher interface {
	// PushTyping pushes a typing event of user in conv to the devices of to
	// connected here.
	PushTyping(conv, user uint64, to []uint64)
	// Online returns those of users with a device connected here.
	Online(users []uint64) []uint64
}
