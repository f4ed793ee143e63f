package cassandra

import (
	"errors"
	"fmt"
	"slices"

	"github.com/inboxd/inboxd/cluster"
	"github.com/inboxd/inboxd/timeline"
)

// Fence hands out the write timestamps of a store that shares its keyspace
// with the stores of other nodes (Config.Fence). *cluster.Node is one.
type Fence interface {
	// Timestamp returns a timestamp for writing shard's cells: above every
	// one this node handed out before and every one an earlier owner of the
	// shard used. It fails unless the node serves shard now.
	Timestamp(shard int) (int64, error)
	// LogTimestamp returns a timestamp for the node's own rows (its batch
	// log): above every one handed out before by the node's id, whatever
	// the shard. It fails once the node's lease is not valid.
	LogTimestamp() (int64, error)
	// ShardCount returns the number of shards of the keyspace.
	ShardCount() int
}

// ErrFenced is wrapped by a commit that got no write timestamp from the
// Fence (the node does not serve a shard of the batch, or its lease is late):
// nothing of the batch was written, and it may be retried, on this node or
// on the shard's owner.
var ErrFenced = errors.New("timeline/cassandra: no write timestamp from the fence")

// shardsOf returns the shards whose cells b writes, ascending, each once,
// keyed as docs/cluster.md ("Shards and ownership") says: a conversation's
// message, group, members and dedup records by the conversation, a user's
// rows, entries, markers and activity by the user, and the outbox records,
// low marks and applied marks by the shard they name. The clock is the
// node's own row and belongs to no shard.
func shardsOf(b *timeline.Batch, shards int) []int {
	// A fan-out batch holds thousands of keys in a few shards: marks, not
	// a sort of them all. The shards named by records are few, and taken
	// as they are (the fence refuses one that is out of range).
	touched := make([]bool, shards)
	key := func(id uint64) { touched[cluster.ShardOf(id, shards)] = true }
	var named []int
	shard := func(s int) { named = append(named, s) }
	for _, m := range b.Messages {
		key(m.Conv)
	}
	for _, r := range b.Rows {
		key(r.User)
	}
	for _, g := range b.Groups {
		key(g.ID)
	}
	for _, m := range b.Members {
		key(m.Conv)
	}
	for _, m := range b.RemoveMembers {
		key(m.Conv)
	}
	for _, c := range b.Conversations {
		key(c.User)
	}
	for _, m := range b.Markers {
		key(m.User)
	}
	for _, a := range b.Activities {
		key(a.User)
	}
	for _, d := range b.Dedups {
		key(d.Conv)
	}
	for _, r := range b.Outbox {
		shard(r.Source)
	}
	for _, l := range b.OutboxLows {
		shard(l.Source)
	}
	for _, a := range b.Applied {
		shard(a.Dest)
	}
	for s, ok := range touched {
		if ok {
			named = append(named, s)
		}
	}
	slices.Sort(named)
	return slices.Compact(named)
}

// fencedTimestamp returns the one timestamp of a batch writing the cells of
// shards, in cluster mode. It must be at or above the ts_floor of every one
// of them (a late write of their earlier owners must lose to it) and below
// the ts_floor each will get when it is handed over (this write must lose to
// the next owner's). The node's timestamps rise strictly, whatever the shard
// (cluster.Node hands out max(now, last+1) under one lock, and raises last
// to floor−1 when it takes a shard), so:
//
//   - the last of Timestamp(s1) … Timestamp(sk), T, is above each earlier
//     one, and each Timestamp(si) is at or above si's floor: T is above
//     every floor;
//   - T was handed out for sk only. A handover of an earlier si between its
//     Timestamp and T's would give si a floor at or below T, so each earlier
//     si is asked again after T: a timestamp handed out for si after T
//     proves si was still served (a handover stops Timestamp(si) first and
//     sets the floor above every timestamp handed out), so si's next floor
//     is above T.
//
// A batch of no shard (the clock alone) takes LogTimestamp.
func (s *Store) fencedTimestamp(shards []int) (int64, error) {
	f := s.cfg.Fence
	if len(shards) == 0 {
		ts, err := f.LogTimestamp()
		if err != nil {
			return 0, fmt.Errorf("%w: %w", ErrFenced, err)
		}
		return ts, nil
	}
	var ts int64
	for _, shard := range shards {
		t, err := f.Timestamp(shard)
		if err != nil {
			return 0, fmt.Errorf("%w: shard %d: %w", ErrFenced, shard, err)
		}
		ts = t
	}
	for _, shard := range shards[:len(shards)-1] {
		if _, err := f.Timestamp(shard); err != nil {
			return 0, fmt.Errorf("%w: shard %d: %w", ErrFenced, shard, err)
		}
	}
	return ts, nil
}

// batchTimestamp returns b's write timestamp: from the writer lease on one
// node, from the fence in cluster mode.
func (s *Store) batchTimestamp(b *timeline.Batch) (int64, error) {
	if s.cfg.Fence != nil {
		return s.fencedTimestamp(shardsOf(b, s.cfg.Fence.ShardCount()))
	}
	return s.lease.timestamp()
}

// logTimestamp returns a timestamp for the store's own rows (the batch log,
// restrictions): from the writer lease on one node, from the node's lease
// in cluster mode.
func (s *Store) logTimestamp() (int64, error) {
	if s.cfg.Fence != nil {
		ts, err := s.cfg.Fence.LogTimestamp()
		if err != nil {
			return 0, fmt.Errorf("%w: %w", ErrFenced, err)
		}
		return ts, nil
	}
	return s.lease.timestamp()
}

// check reports whether this store may write now. In cluster mode every
// write carries a fenced timestamp, which is the check.
func (s *Store) check() error {
	if s.lease == nil {
		return nil
	}
	return s.lease.check()
}
