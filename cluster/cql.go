package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/gocql/gocql"
)

// The states of a nodes row.
const (
	stateLive    = "live"    // renewing, serving, a balancing target
	stateLeaving = "leaving" // renewing and serving, handing every shard over
	stateDead    = "dead"    // declared dead; its leftovers not yet finished
	stateSettled = "settled" // gone for good: its id may be claimed again
)

// queries holds the statements, with the keyspace spliced in.
type queries struct {
	setting              string
	nodes, node          string
	claimID, renew, kill string
	settle               string
	shards, moveShard    string
}

func newQueries(ks string) queries {
	f := func(format string) string { return fmt.Sprintf(format, ks) }
	return queries{
		setting: f("INSERT INTO %s.settings (name, value) VALUES ('shards', ?) IF NOT EXISTS"),
		nodes:   f("SELECT node, incarnation, addr, peer, beat, ts_limit, state FROM %s.nodes"),
		node:    f("SELECT node, incarnation, addr, peer, beat, ts_limit, state FROM %s.nodes WHERE node = ?"),
		claimID: f("UPDATE %s.nodes SET incarnation = ?, addr = ?, peer = ?, beat = 0, ts_limit = ?, state = 'live' " +
			"WHERE node = ? IF incarnation = ? AND state = ?"),
		renew: f("UPDATE %s.nodes SET beat = ?, ts_limit = ?, state = ? " +
			"WHERE node = ? IF incarnation = ? AND beat = ? AND state = ?"),
		kill:   f("UPDATE %s.nodes SET state = 'dead' WHERE node = ? IF incarnation = ? AND beat = ? AND state = ?"),
		settle: f("UPDATE %s.nodes SET state = 'settled' WHERE node = ? IF incarnation = ? AND state = 'dead'"),
		// All shards are rows of one partition, ring 0: one query reads
		// them, one conditional batch moves several.
		shards: f("SELECT shard, node, incarnation, epoch, ts_floor FROM %s.shards WHERE ring = 0"),
		// Every change of a shard row raises its epoch, so a row whose
		// epoch is as read is the row as read.
		moveShard: f("UPDATE %s.shards SET node = ?, incarnation = ?, epoch = ?, ts_floor = ? " +
			"WHERE ring = 0 AND shard = ? IF epoch = ?"),
	}
}

// nodeRow is a nodes row as read.
type nodeRow struct {
	id          int
	incarnation int64
	addr, peer  string
	beat, limit int64
	state       string
}

func (r nodeRow) info() NodeInfo {
	return NodeInfo{ID: r.id, Incarnation: r.incarnation, Addr: r.addr, PeerAddr: r.peer}
}

// serving reports whether the row's node may be serving shards.
func (r nodeRow) serving() bool { return r.state == stateLive || r.state == stateLeaving }

// shardRow is a shards row as read; a missing row has no epoch.
type shardRow struct {
	shard       int
	node        int // -1: nobody
	incarnation int64
	epoch       int64 // 0: the row does not exist
	floor       int64
}

// names reports whether the row gives the shard to incarnation inc of id.
func (r shardRow) names(id int, inc int64) bool {
	return r.epoch != 0 && r.node == id && r.incarnation == inc
}

// epochArg is the row's epoch as a condition: null for a missing row.
func (r shardRow) epochArg() any {
	if r.epoch == 0 {
		return nil
	}
	return r.epoch
}

// nodeColumns receives the columns of the nodes queries; null columns read
// as zero values.
type nodeColumns struct {
	id                int
	inc, beat, limit  *int64
	addr, peer, state *string
}

func (c *nodeColumns) dest() []any {
	return []any{&c.id, &c.inc, &c.addr, &c.peer, &c.beat, &c.limit, &c.state}
}

func (c *nodeColumns) row() nodeRow {
	return nodeRow{id: c.id, incarnation: deref(c.inc), addr: deref(c.addr), peer: deref(c.peer),
		beat: deref(c.beat), limit: deref(c.limit), state: deref(c.state)}
}

func deref[T any](p *T) T {
	var v T
	if p != nil {
		v = *p
	}
	return v
}

// readNodes reads every nodes row.
func (n *Node) readNodes(ctx context.Context) (map[int]nodeRow, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	rows := make(map[int]nodeRow)
	iter := n.session.Query(n.q.nodes).WithContext(ctx).Consistency(n.cfg.Consistency).Iter()
	var c nodeColumns
	for iter.Scan(c.dest()...) {
		rows[c.id] = c.row()
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("read nodes: %w", err)
	}
	return rows, nil
}

// readNodeSerial reads one nodes row at serial consistency, which sees
// every transaction that completed. A missing row reads as a zero row.
func (n *Node) readNodeSerial(ctx context.Context, id int) (nodeRow, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	var c nodeColumns
	err := n.session.Query(n.q.node, id).WithContext(ctx).Consistency(gocql.Consistency(n.cfg.serial())).
		Scan(c.dest()...)
	switch {
	case errors.Is(err, gocql.ErrNotFound):
		return nodeRow{id: id}, nil
	case err != nil:
		return nodeRow{}, fmt.Errorf("read node %d: %w", id, err)
	}
	return c.row(), nil
}

// readShards reads the shards partition: one row per shard.
func (n *Node) readShards(ctx context.Context) ([]shardRow, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	rows := make([]shardRow, n.shards)
	for s := range rows {
		rows[s] = shardRow{shard: s, node: -1}
	}
	iter := n.session.Query(n.q.shards).WithContext(ctx).Consistency(n.cfg.Consistency).Iter()
	var shard int
	var node *int
	var inc, epoch, floor *int64
	for iter.Scan(&shard, &node, &inc, &epoch, &floor) {
		if shard < 0 || shard >= n.shards {
			continue // cannot happen with the count checked at Join
		}
		rows[shard] = shardRow{shard: shard, node: deref(node), incarnation: deref(inc), epoch: deref(epoch), floor: deref(floor)}
		if node == nil {
			rows[shard].node = -1
		}
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("read shards: %w", err)
	}
	return rows, nil
}

// cas runs a lightweight transaction and reports whether it applied, with
// the row's current values of the condition columns in cur when it did
// not. A transaction that timed out may have applied: the driver must not
// repeat it, and the caller learns the outcome from the rows.
func (n *Node) cas(ctx context.Context, cur map[string]any, stmt string, args ...any) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	if cur == nil {
		cur = make(map[string]any)
	}
	return n.session.Query(stmt, args...).WithContext(ctx).Consistency(n.cfg.Consistency).
		SerialConsistency(n.cfg.serial()).Idempotent(false).RetryPolicy(nil).MapScanCAS(cur)
}

// casBatch runs statements on the shards partition as one conditional
// batch: all apply or none.
func (n *Node) casBatch(ctx context.Context, stmts [][]any) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	b := n.session.NewBatch(gocql.LoggedBatch).WithContext(ctx)
	for _, args := range stmts {
		b.Query(n.q.moveShard, args...)
	}
	b.SetConsistency(n.cfg.Consistency)
	b.SerialConsistency(n.cfg.serial())
	b.RetryPolicy(nil)
	applied, iter, err := n.session.MapExecuteBatchCAS(b, make(map[string]any))
	if err == nil {
		err = iter.Close()
	}
	return applied, err
}
