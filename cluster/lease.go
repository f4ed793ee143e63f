package cluster

import (
	"cmp"
	"context"
	"fmt"
	"time"
)

// validFor is how long after sending a renewal that succeeded the node
// serves: three quarters of the TTL, a quarter less than observers wait
// (see the package documentation).
func (n *Node) validFor() time.Duration { return n.ttl * 3 / 4 }

// deadAfter is how long an observer must see a node's (incarnation, beat)
// unchanged before it declares the node dead: the TTL and a margin for the
// rates of the two machines' clocks and the scheduling of their
// goroutines.
func (n *Node) deadAfter() time.Duration { return n.ttl + n.ttl/8 }

// claimID claims a node id: Config.NodeID once its row is free (never used,
// or settled), or the lowest free id. While a crashed incarnation still
// holds a fixed id, claimID observes it like any node and declares it dead
// after the TTL.
func (n *Node) claimID(ctx context.Context) error {
	n.self.ID = -1
	for {
		rows, err := n.readNodes(ctx)
		if err == nil {
			n.reap(ctx, rows)
			prev, ok := n.freeID(rows)
			if !ok && n.cfg.NodeID == PickNodeID {
				return fmt.Errorf("%w: all %d are in use", ErrNoFreeID, MaxNodeID+1)
			}
			if ok {
				var claimed bool
				if claimed, err = n.claimRow(ctx, prev); claimed {
					return nil
				}
			}
		}
		if err != nil {
			n.log.Warn("cluster: claiming a node id", "err", err)
		}
		t := time.NewTimer(n.cfg.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("claim node id: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// freeID returns the row of the id to claim, if free.
func (n *Node) freeID(rows map[int]nodeRow) (nodeRow, bool) {
	free := func(id int) (nodeRow, bool) {
		r, ok := rows[id]
		if !ok {
			return nodeRow{id: id}, true
		}
		return r, r.state == stateSettled
	}
	if n.cfg.NodeID != PickNodeID {
		return free(n.cfg.NodeID)
	}
	for id := range MaxNodeID + 1 {
		if r, ok := free(id); ok {
			return r, true
		}
	}
	return nodeRow{}, false
}

// claimRow claims the free id of prev as its next incarnation.
func (n *Node) claimRow(ctx context.Context, prev nodeRow) (bool, error) {
	var prevInc, prevState any // null: the row is missing
	if prev.state != "" {
		prevInc, prevState = prev.incarnation, prev.state
	}
	inc := prev.incarnation + 1
	sent := time.Now()
	// ts_limit never decreases: a shard still naming an earlier incarnation
	// takes the row's ts_limit as its floor.
	limit := max(sent.UnixMicro(), prev.limit) + n.ttl.Microseconds()
	applied, err := n.cas(ctx, nil, n.q.claimID, inc, n.cfg.Addr, n.cfg.PeerAddr, limit, prev.id, prevInc, prevState)
	if err != nil || !applied {
		// Another node won the id, or the outcome is unknown: a claim that
		// applied unseen leaves a row that nobody renews, declared dead
		// after the TTL.
		return false, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.self = NodeInfo{ID: prev.id, Incarnation: inc, Addr: n.cfg.Addr, PeerAddr: n.cfg.PeerAddr}
	n.beat, n.state, n.limit, n.valid = 0, stateLive, limit, sent.Add(n.validFor())
	// The id's rows (its batch log) were cleared at the previous
	// incarnation's ts_limit when it was settled: this one writes above it.
	n.last = max(n.last, prev.limit)
	return true, nil
}

// keep renews the lease every quarter TTL, and every eighth while renewals
// fail, until ctx is done or the lease is lost.
func (n *Node) keep(ctx context.Context) {
	wait := n.ttl / 4
	failures := 0
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-n.renewNow:
			t.Stop()
		}
		n.pause.wait(ctx)
		if ctx.Err() != nil {
			return
		}
		err := n.renew(ctx, "")
		switch {
		case err == nil:
			if failures > 0 {
				n.log.Info("cluster: lease renewed", "failed_attempts", failures)
			}
			failures, wait = 0, n.ttl/4
		case n.lostErr() != nil:
			return
		case ctx.Err() == nil:
			if failures == 0 {
				n.log.Warn("cluster: lease not renewed; retrying", "err", err)
			}
			failures, wait = failures+1, n.ttl/8
		}
	}
}

func (n *Node) lostErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lost
}

// renew renews the lease, moving the row to state to ("" keeps it). A
// renewal that finds another incarnation or state in the row marks the node
// lost.
func (n *Node) renew(ctx context.Context, to string) error {
	n.rowMu.Lock()
	defer n.rowMu.Unlock()
	n.mu.Lock()
	beat, state, limit, last, lost := n.beat, n.state, n.limit, n.last, n.lost
	n.mu.Unlock()
	if lost != nil {
		return lost
	}
	if state == stateSettled {
		return nil // gone: nothing to renew
	}
	to = cmp.Or(to, state)
	// Two attempts: the first may find the beat of an earlier renewal of
	// this node whose reply was lost.
	for range 2 {
		sent := time.Now()
		newLimit := max(sent.UnixMicro()+n.ttl.Microseconds(), last+n.ttl.Microseconds(), limit)
		cur := make(map[string]any)
		applied, err := n.cas(ctx, cur, n.q.renew, beat+1, newLimit, to, n.self.ID, n.self.Incarnation, beat, state)
		if err != nil {
			return fmt.Errorf("renew: %w", err)
		}
		if applied {
			n.mu.Lock()
			defer n.mu.Unlock()
			n.beat, n.state, n.limit = beat+1, to, max(n.limit, newLimit)
			if to != stateSettled {
				n.valid = later(n.valid, sent.Add(n.validFor()))
			}
			return nil
		}
		inc, _ := cur["incarnation"].(int64)
		curBeat, _ := cur["beat"].(int64)
		curState, _ := cur["state"].(string)
		if inc != n.self.Incarnation || curState != state && curState != to || curState == stateDead {
			err := fmt.Errorf("%w: node %d incarnation %d: its row shows incarnation %d in state %q",
				ErrLost, n.self.ID, n.self.Incarnation, inc, curState)
			n.markLost(err)
			return err
		}
		// Only this incarnation writes its beat: a renewal of ours applied
		// unseen. Its validity is unknown, so renew again from its beat.
		beat, state = curBeat, curState
		n.mu.Lock()
		n.beat, n.state = beat, state
		n.mu.Unlock()
		if state == stateSettled {
			return nil // the move to settled applied unseen
		}
	}
	return fmt.Errorf("renew: node %d: the row changed twice", n.self.ID)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
