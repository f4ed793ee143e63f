package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"time"
)

// maxClaims bounds the shards claimed in one conditional batch (about 40
// bytes each): claims drain nothing, so a round takes many.
const maxClaims = 128

// seen is what this node last read of another node's row, and since when
// (its monotonic clock, taken after the read returned).
type seen struct {
	incarnation, beat int64
	state             string
	since             time.Time
	killed            bool // declared dead by this node: settle without waiting
}

// balance runs a balancing round every Interval plus jitter until ctx is
// done or the node is lost.
func (n *Node) balance(ctx context.Context) {
	failures := 0
	for {
		t := time.NewTimer(n.cfg.Interval + rand.N(n.cfg.Interval))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		n.pause.wait(ctx)
		if ctx.Err() != nil || n.lostErr() != nil {
			return
		}
		switch err := n.round(ctx); {
		case err == nil:
			failures = 0
		case ctx.Err() == nil:
			if failures == 0 {
				n.log.Warn("cluster: balancing round failed; retrying", "err", err)
			}
			failures++
		}
	}
}

// round reads the nodes and the shards, declares dead the nodes that
// stopped renewing, and moves shards towards their targets.
func (n *Node) round(ctx context.Context) error {
	nodes, err := n.readNodes(ctx)
	if err != nil {
		return err
	}
	n.reap(ctx, nodes)
	shards, err := n.readShards(ctx)
	if err != nil {
		return err
	}
	n.reconcile(nodes, shards)

	n.mu.Lock()
	active := n.state == stateLive && time.Now().Before(n.valid)
	n.mu.Unlock()
	live := liveIDs(nodes)
	if !active || nodes[n.self.ID].incarnation != n.self.Incarnation || !slices.Contains(live, n.self.ID) {
		return nil // not a target (yet) in this read
	}
	tgt := n.targets.of(live, n.shards)
	if err := n.claim(ctx, nodes, shards, tgt); err != nil {
		return err
	}
	return n.handOver(ctx, n.cfg.MaxMoves, func(shard int) (NodeInfo, bool) {
		r := nodes[tgt[shard]]
		return r.info(), r.id != n.self.ID && n.fresh(r)
	})
}

// liveIDs returns the ids of the live nodes, in order: the balancing
// targets. A leaving node is not one.
func liveIDs(nodes map[int]nodeRow) []int {
	var live []int
	for id, r := range nodes {
		if r.state == stateLive {
			live = append(live, id)
		}
	}
	slices.Sort(live)
	return live
}

// fresh reports whether this node saw r's beat change within the time a
// renewal keeps a lease valid: a node that has just crashed is still live
// in its row, and a shard handed to it would wait for it to be declared
// dead.
func (n *Node) fresh(r nodeRow) bool {
	s, ok := n.seen[r.id]
	return ok && s.incarnation == r.incarnation && time.Since(s.since) < n.validFor()
}

// reap watches every other node's (incarnation, beat): one unchanged for
// longer than deadAfter on this node's clock is declared dead, and a dead
// one settled once OnNodeDead has finished its leftovers. It updates nodes
// with what it changed.
func (n *Node) reap(ctx context.Context, nodes map[int]nodeRow) {
	now := time.Now()
	for id := range n.seen {
		if _, ok := nodes[id]; !ok {
			delete(n.seen, id)
		}
	}
	for id, r := range nodes {
		if id == n.self.ID && r.incarnation == n.self.Incarnation {
			continue
		}
		s, ok := n.seen[id]
		if !ok || s.incarnation != r.incarnation || s.beat != r.beat || s.state != r.state {
			n.seen[id] = seen{incarnation: r.incarnation, beat: r.beat, state: r.state, since: now}
			continue
		}
		if !s.killed && now.Sub(s.since) <= n.deadAfter() {
			continue
		}
		switch r.state {
		case stateLive, stateLeaving:
			dead, killed, err := n.kill(ctx, r, now.Sub(s.since))
			if killed {
				// Settled by this node as soon as it can, without waiting as
				// the others do for a killer that died.
				n.seen[id] = seen{incarnation: r.incarnation, beat: r.beat, state: stateDead, since: now, killed: true}
			}
			if err != nil {
				n.log.Warn("cluster: declaring a node dead", "dead_node", id, "err", err)
				continue
			}
			if !killed {
				continue // it renewed in time after all
			}
			r = dead
			nodes[id] = r
		case stateDead:
		default:
			continue
		}
		if err := n.settle(ctx, r); err != nil {
			n.log.Warn("cluster: finishing a dead node's work", "dead_node", id, "err", err)
			continue
		}
		r.state = stateSettled
		nodes[id] = r
	}
}

// kill declares r's incarnation dead if its beat is still r's, reports
// whether it did, and returns its row as it then is (read at serial
// consistency: its final ts_limit).
func (n *Node) kill(ctx context.Context, r nodeRow, unchanged time.Duration) (nodeRow, bool, error) {
	applied, err := n.cas(ctx, nil, n.q.kill, r.id, r.incarnation, r.beat, r.state)
	if err != nil || !applied {
		return nodeRow{}, false, err
	}
	n.log.Warn("cluster: declared a node dead", "dead_node", r.id, "dead_incarnation", r.incarnation,
		"beat_unchanged_for", unchanged)
	dead, err := n.readNodeSerial(ctx, r.id)
	return dead, true, err
}

// settle runs OnNodeDead for dead row r, then marks the row settled, which
// frees its shards and its id.
func (n *Node) settle(ctx context.Context, r nodeRow) error {
	if n.cfg.OnNodeDead != nil {
		if err := n.cfg.OnNodeDead(ctx, DeadNode{ID: r.id, Incarnation: r.incarnation, TSLimit: r.limit}); err != nil {
			return fmt.Errorf("OnNodeDead: %w", err)
		}
	}
	applied, err := n.cas(ctx, nil, n.q.settle, r.id, r.incarnation)
	if err != nil {
		return fmt.Errorf("settle: %w", err)
	}
	if !applied {
		return errors.New("settle: another node settled it, or it changed")
	}
	n.log.Info("cluster: settled a dead node", "dead_node", r.id, "dead_incarnation", r.incarnation)
	return nil
}

// reconcile brings the owned shards and the view in line with the rows
// read: a row naming this incarnation is owned (a handover from another
// node, or a claim whose reply was lost), but for a pending handover of
// this node's; and one naming another is not.
func (n *Node) reconcile(nodes map[int]nodeRow, shards []shardRow) {
	n.mu.Lock()
	defer n.mu.Unlock()
	changed := false
	var gone []int
	for _, r := range shards {
		mine := r.names(n.self.ID, n.self.Incarnation) && !slices.ContainsFunc(n.pending,
			func(h handover) bool { return h.shard == r.shard })
		o := n.owned[r.shard]
		switch {
		case mine && o == nil:
			n.owned[r.shard] = &owned{epoch: r.epoch}
			n.raiseFloorLocked(r.floor)
			changed = true
		case mine:
			o.epoch = r.epoch
		case o != nil:
			// Taken after this node was declared dead: its renewal is
			// about to find out.
			gone = append(gone, r.shard)
			delete(n.owned, r.shard)
			changed = true
		}
		owner := NodeInfo{ID: -1}
		if nr, ok := nodes[r.node]; ok && r.epoch != 0 && nr.incarnation == r.incarnation && nr.serving() {
			owner = nr.info()
		}
		if n.view[r.shard] != owner {
			n.view[r.shard], changed = owner, true
		}
	}
	if len(gone) > 0 {
		n.log.Warn("cluster: shards are no longer this node's", "shards", gone)
	}
	if changed {
		n.notify()
	}
}

// claimable returns the ts_floor for a claim of row r, if nobody may serve
// the shard: the row is missing, released, or names an incarnation that is
// settled or superseded (only a settled id is claimed again). A claim above
// a settled incarnation starts at its ts_limit, which its successors' rows
// never lower. The nodes were read before the shards: a shard naming a
// newer incarnation than its node's row belongs to a node that joined in
// between, and is not claimable.
func claimable(r shardRow, nodes map[int]nodeRow) (int64, bool) {
	if r.epoch == 0 || r.node < 0 {
		return r.floor, true
	}
	nr, ok := nodes[r.node]
	switch {
	case !ok, nr.incarnation < r.incarnation:
		return 0, false
	case nr.incarnation == r.incarnation && nr.state != stateSettled:
		return 0, false
	}
	return max(r.floor, nr.limit), true
}

// claim claims, in one conditional batch, the claimable shards whose
// target is this node.
func (n *Node) claim(ctx context.Context, nodes map[int]nodeRow, shards []shardRow, tgt []int) error {
	type claimed struct {
		shard        int
		epoch, floor int64
	}
	var cs []claimed
	var stmts [][]any
	n.mu.Lock()
	for _, r := range shards {
		if tgt[r.shard] != n.self.ID || n.owned[r.shard] != nil {
			continue
		}
		floor, ok := claimable(r, nodes)
		if !ok {
			continue
		}
		cs = append(cs, claimed{r.shard, r.epoch + 1, floor})
		stmts = append(stmts, []any{n.self.ID, n.self.Incarnation, r.epoch + 1, floor, r.shard, r.epochArg()})
		if len(cs) == maxClaims {
			break
		}
	}
	n.mu.Unlock()
	if len(cs) == 0 {
		return nil
	}
	// Not applied: another node moved one of the rows since the read; the
	// next round reads again. An error: the next read tells.
	applied, err := n.casBatch(ctx, stmts)
	if err != nil || !applied {
		return err
	}
	n.mu.Lock()
	for _, c := range cs {
		n.owned[c.shard] = &owned{epoch: c.epoch}
		n.raiseFloorLocked(c.floor)
	}
	n.mu.Unlock()
	n.notify()
	n.log.Info("cluster: claimed shards", "count", len(cs))
	return nil
}

// handover is a shard given to another node (or released: to.ID -1).
type handover struct {
	shard        int
	epoch, floor int64 // the row's epoch as owned, the floor set
	to           NodeInfo
}

// handOver hands up to limit owned shards to their targets (to returns
// the target and whether the shard should go to it now; a target with a
// negative ID releases the shard). Each shard stops being served, is
// drained, and then all go in one conditional batch, with a ts_floor above
// every timestamp this node handed out.
//
// A batch whose outcome is unknown stays pending, its shards unserved,
// and is sent again first thing each round until the reply says: the
// coordinator may still be working on it, and serving a shard whose row
// may yet name the target would let two nodes serve it. Sending the same
// transitions again is harmless, as each is conditional on the epoch as
// owned.
func (n *Node) handOver(ctx context.Context, limit int, to func(shard int) (NodeInfo, bool)) error {
	if len(n.pending) > 0 {
		if err := n.sendHandovers(ctx, n.pending); err != nil {
			return err
		}
		n.pending = nil
	}
	var hs []handover
	n.mu.Lock()
	for _, s := range slices.Sorted(maps.Keys(n.owned)) {
		target, ok := to(s)
		if !ok {
			continue
		}
		n.owned[s].draining = true
		hs = append(hs, handover{shard: s, epoch: n.owned[s].epoch, to: target})
		if len(hs) == limit {
			break
		}
	}
	n.mu.Unlock()
	if len(hs) == 0 {
		return nil
	}
	n.notify()

	kept := hs[:0]
	for _, h := range hs {
		if n.cfg.Drain != nil {
			if err := n.cfg.Drain(ctx, h.shard); err != nil {
				n.log.Warn("cluster: draining a shard failed; keeping it", "shard", h.shard, "err", err)
				n.mu.Lock()
				n.owned[h.shard].draining = false
				n.mu.Unlock()
				continue
			}
		}
		kept = append(kept, h)
	}
	hs = kept
	if len(hs) == 0 {
		return nil
	}

	n.mu.Lock()
	for i := range hs {
		hs[i].floor = n.last + 1
		delete(n.owned, hs[i].shard)
	}
	n.mu.Unlock()
	n.notify()
	if err := n.sendHandovers(ctx, hs); err != nil {
		n.pending = hs
		return err
	}
	return nil
}

// sendHandovers sends hs in one conditional batch and returns an error
// only when the outcome is unknown.
func (n *Node) sendHandovers(ctx context.Context, hs []handover) error {
	stmts := make([][]any, len(hs))
	for i, h := range hs {
		stmts[i] = []any{h.to.ID, h.to.Incarnation, h.epoch + 1, h.floor, h.shard, h.epoch}
	}
	applied, err := n.casBatch(ctx, stmts)
	switch {
	case err != nil:
		return fmt.Errorf("hand over %d shards: %w", len(hs), err)
	case applied:
		n.log.Info("cluster: handed shards over", "count", len(hs), "first_to", hs[0].to.ID)
	default:
		// An earlier send of this batch applied, or the rows were taken
		// after this node was declared dead: either way not this node's.
		n.log.Info("cluster: shards handed over earlier or taken", "count", len(hs))
	}
	return nil
}

// Leave hands every shard over to the other live nodes (Drain first, each)
// and gives the node id up, so that it may be claimed again at once; then
// it closes the node. A Leave that fails (ctx done, Cassandra out of reach)
// leaves the rest to the cluster, as a crash would.
func (n *Node) Leave(ctx context.Context) error {
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return fmt.Errorf("cluster: leave: %w", ErrClosed)
	}
	n.cancelBalance()
	<-n.balanceDone
	err := n.leave(ctx)
	if err != nil {
		err = fmt.Errorf("cluster: leave: %w", err)
	}
	return errors.Join(err, n.Close())
}

func (n *Node) leave(ctx context.Context) error {
	if err := n.renew(ctx, stateLeaving); err != nil {
		return err
	}
	for {
		err := n.leaveRound(ctx)
		n.mu.Lock()
		left := len(n.owned) + len(n.pending)
		n.mu.Unlock()
		if err == nil && left == 0 {
			break
		}
		if err != nil {
			n.log.Warn("cluster: leaving: handing shards over", "err", err)
			t := time.NewTimer(n.cfg.Interval)
			select {
			case <-ctx.Done():
				t.Stop()
				return errors.Join(err, ctx.Err())
			case <-t.C:
			}
		}
	}
	// Not serving from before the row says settled, when others may take
	// whatever still names this node.
	n.mu.Lock()
	n.valid = time.Time{}
	n.mu.Unlock()
	return n.renew(ctx, stateSettled)
}

// leaveRound hands up to MaxMoves shards to their targets among the other
// live nodes, or releases them if there is none.
func (n *Node) leaveRound(ctx context.Context) error {
	nodes, err := n.readNodes(ctx)
	if err != nil {
		return err
	}
	shards, err := n.readShards(ctx)
	if err != nil {
		return err
	}
	n.reconcile(nodes, shards)
	live := liveIDs(nodes)
	var tgt []int
	if len(live) > 0 {
		tgt = n.targets.of(live, n.shards)
	}
	return n.handOver(ctx, n.cfg.MaxMoves, func(shard int) (NodeInfo, bool) {
		if tgt == nil {
			return NodeInfo{ID: -1}, true
		}
		return nodes[tgt[shard]].info(), true
	})
}
