package gateway

import (
	"fmt"

	"github.com/inboxd/inboxd/cluster"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// Sticky routing (docs/cluster.md, "Routing"): a node keeps connections
// only of the users whose shard it serves. AUTH of another user is answered
// REDIRECT to the shard's owner, or UNAVAILABLE while the shard has none;
// when the node stops serving a shard, the sessions of its users are closed
// the same way, and their clients reconnect and SYNC.

// Ownership tells the gateway which users it serves. *cluster.Node and
// *cluster.Local have it. Its methods are called from workers and from the
// gateway's watcher goroutine, concurrently, and must not block.
type Ownership interface {
	// ShardCount is the number of shards: a user's is
	// cluster.ShardOf(user, ShardCount()).
	ShardCount() int
	// Serving reports whether this node serves shard now.
	Serving(shard int) (epoch uint64, ok bool)
	// Owner returns the node serving shard as last known; its Addr is
	// where the shard's clients are sent.
	Owner(shard int) (cluster.NodeInfo, bool)
	// Changes returns a channel closed at the next change of the shards
	// served or their owners; nil if they never change. The gateway calls
	// it again at each close, before it looks at the shards.
	Changes() <-chan struct{}
}

// unavailableRetryMs is the retry hint of UNAVAILABLE for a shard with no
// owner: a failover takes a lease TTL and a balancing round, a few seconds.
const unavailableRetryMs = 500

// notServed returns the error to send a user of shard away with, nil when
// this node serves the shard (or has no Ownership: it serves everyone).
func (s *Server) notServed(shard int) *wirepb.Error {
	own := s.cfg.Ownership
	if own == nil {
		return nil
	}
	if _, ok := own.Serving(shard); ok {
		return nil
	}
	if owner, ok := own.Owner(shard); ok && owner.Addr != "" {
		e := errorBody(wire.CodeRedirect, fmt.Sprintf("shard %d is served by node %d", shard, owner.ID))
		e.Redirect = owner.Addr
		return e
	}
	e := errorBody(wire.CodeUnavailable, fmt.Sprintf("shard %d has no owner now: retry", shard))
	e.RetryAfterMs = unavailableRetryMs
	return e
}

// shardOf returns user's shard; 0 without Ownership, where it does not matter.
func (s *Server) shardOf(user uint64) int {
	if s.cfg.Ownership == nil {
		return 0
	}
	return cluster.ShardOf(user, s.cfg.Ownership.ShardCount())
}

// watchOwnership closes the sessions of shards this node stopped serving,
// at every close of changes, until stop is closed.
func (s *Server) watchOwnership(changes, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-changes:
			changes = s.cfg.Ownership.Changes()
			s.dropUnserved()
		}
	}
}

// dropUnserved closes, with REDIRECT or UNAVAILABLE, every session whose
// user's shard this node does not serve. It looks only at the shards that
// have sessions, through byShard.
func (s *Server) dropUnserved() {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for shard, users := range s.byShard {
		e := s.notServed(shard)
		if e == nil {
			continue
		}
		for user := range users {
			for _, sess := range s.byUser[user] {
				if sess.failWith(closedNotServed, e) {
					s.metrics.redirect(redirectMoved, wire.Code(e.Code))
				}
			}
		}
	}
}

// indexShard records that user is online, in byShard; s.mu is held.
func (s *Server) indexShard(user uint64) {
	if s.changes == nil {
		return // shards never move: nobody is ever looked up by shard
	}
	shard := s.shardOf(user)
	users := s.byShard[shard]
	if users == nil {
		users = make(map[uint64]struct{})
		s.byShard[shard] = users
	}
	users[user] = struct{}{}
}

// unindexShard records that user has gone offline; s.mu is held.
func (s *Server) unindexShard(user uint64) {
	shard := s.shardOf(user)
	delete(s.byShard[shard], user)
	if len(s.byShard[shard]) == 0 {
		delete(s.byShard, shard)
	}
}
