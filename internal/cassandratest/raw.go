package cassandratest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/inboxd/inboxd/timeline"
)

// RawConfig configures a Raw writer: how the batch's records reach
// Cassandra, the benchmarks' baseline's knobs.
type RawConfig struct {
	Hosts       []string
	Keyspace    string // created by the store with its tables
	Consistency gocql.Consistency
	// Writers bounds the requests in flight.
	Writers int
	// Single sends every statement as a query of its own; otherwise the
	// statements of one partition go as one unlogged batch.
	Single bool
	// Pack, when above 0, puts the statements of several partitions in one
	// unlogged batch, up to Pack statements (a partition's are never
	// split): fewer requests, each across partitions.
	Pack int
	// RoundRobin picks the node of a request in turn rather than by its
	// partition's token.
	RoundRobin bool
	// NumConns is the connections per node (0: the driver's default).
	NumConns int
	// Coalesce keeps the driver's write coalescing (requests held back up
	// to 200 µs to be written together), which the store turns off.
	Coalesce bool
	// BucketSize and MessageBucketSize are the store's, which the rows'
	// partition keys depend on.
	BucketSize, MessageBucketSize uint64
}

// Raw writes a timeline.Batch's records straight with the driver, into the
// tables and columns the store writes, at one timestamp: no batch log, no
// phases, no lease, no bucket index. It is the baseline of the benchmarks
// that measure what the store's guarantees cost.
type Raw struct {
	cfg RawConfig
	s   *gocql.Session
	q   rawQueries
}

type rawQueries struct {
	message, row, marker, dedup, activity, unactivity, clock string
}

// NewRaw connects a Raw writer; the test's end closes it.
func NewRaw(t testing.TB, cfg RawConfig) *Raw {
	t.Helper()
	c := gocql.NewCluster(cfg.Hosts...)
	c.Consistency = cfg.Consistency
	c.Timeout = 5 * time.Second
	if !cfg.Coalesce {
		c.WriteCoalesceWaitTime = 0
	}
	if cfg.NumConns > 0 {
		c.NumConns = cfg.NumConns
	}
	if !cfg.RoundRobin {
		c.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.RoundRobinHostPolicy())
	}
	c.DefaultIdempotence = true
	quiet(c)
	s, err := c.CreateSession()
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(s.Close)
	ks := cfg.Keyspace
	return &Raw{cfg: cfg, s: s, q: rawQueries{
		message: "INSERT INTO " + ks + ".messages (conv, bucket, conv_seq, msg_id, sender, client_msg_id, kind, body, time, " +
			"mentions, mention_all, recalled, edited, last_edit) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		row:        "INSERT INTO " + ks + ".inbox (user, bucket, seq, conv, conv_seq, msg_id, kind) VALUES (?, ?, ?, ?, ?, ?, ?)",
		marker:     "UPDATE " + ks + ".conversations SET read_seq = ? WHERE user = ? AND conv = ?",
		dedup:      "INSERT INTO " + ks + ".dedups (sender, client_msg_id, conv, conv_seq, msg_id, time) VALUES (?, ?, ?, ?, ?, ?)",
		activity:   "INSERT INTO " + ks + ".conversation_activity (user, active, conv) VALUES (?, ?, ?)",
		unactivity: "DELETE FROM " + ks + ".conversation_activity WHERE user = ? AND active = ? AND conv = ?",
		clock:      "INSERT INTO " + ks + ".clocks (node, clock) VALUES (?, ?)",
	}}
}

type rawStmt struct {
	cql  string
	args []any
}

// rawKey names a partition: a table letter and its key.
type rawKey struct {
	table   byte
	id, id2 uint64
	text    string
}

// Write writes b's messages, inbox rows, markers (the last of each key, as
// the store does), dedup records, activity moves and clock, all at once.
func (r *Raw) Write(ctx context.Context, b *timeline.Batch) error {
	var keys []rawKey
	parts := make(map[rawKey][]rawStmt)
	add := func(k rawKey, cql string, args ...any) {
		if _, ok := parts[k]; !ok {
			keys = append(keys, k)
		}
		parts[k] = append(parts[k], rawStmt{cql, args})
	}
	for _, m := range b.Messages {
		bucket := m.ConvSeq / r.cfg.MessageBucketSize
		add(rawKey{'c', m.Conv, bucket, ""}, r.q.message, m.Conv, bucket, m.ConvSeq, m.ID, m.Sender, m.ClientMsgID,
			int(m.Kind), m.Body, m.Time.UnixMilli(), append([]uint64{}, m.Mentions...), m.MentionAll, m.Recalled,
			m.Edited.UnixMilli(), m.LastEdit)
	}
	for _, row := range b.Rows {
		bucket := row.Seq / r.cfg.BucketSize
		add(rawKey{'i', row.User, bucket, ""}, r.q.row, row.User, bucket, row.Seq, row.Conv, row.ConvSeq, row.MsgID, int(row.Kind))
	}
	last := make(map[[2]uint64]uint64)
	for _, m := range b.Markers {
		last[[2]uint64{m.User, m.Conv}] = m.ReadSeq
	}
	for k, seq := range last {
		add(rawKey{'u', k[0], 0, ""}, r.q.marker, seq, k[0], k[1])
	}
	for _, d := range b.Dedups {
		add(rawKey{'d', d.Sender, 0, d.ClientMsgID}, r.q.dedup, d.Sender, d.ClientMsgID, d.Conv, d.ConvSeq, d.MsgID, d.Time.UnixMilli())
	}
	for _, a := range b.Activities {
		if !a.Prev.IsZero() {
			add(rawKey{'a', a.User, 0, ""}, r.q.unactivity, a.User, a.Prev.UnixMilli(), a.Conv)
		}
		add(rawKey{'a', a.User, 0, ""}, r.q.activity, a.User, a.At.UnixMilli(), a.Conv)
	}
	if b.Clock != 0 {
		add(rawKey{'k', uint64(b.ClockNode), 0, ""}, r.q.clock, b.ClockNode, b.Clock)
	}

	ts := time.Now().UnixMicro()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, r.cfg.Writers)
	exec := func(f func() error) {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(); err != nil {
				mu.Lock()
				first = err
				mu.Unlock()
			}
		})
	}
	batch := func(stmts []rawStmt) func() error {
		return func() error {
			batch := r.s.NewBatch(gocql.UnloggedBatch).WithContext(ctx).WithTimestamp(ts)
			for _, st := range stmts {
				batch.Entries = append(batch.Entries, gocql.BatchEntry{Stmt: st.cql, Args: st.args, Idempotent: true})
			}
			return r.s.ExecuteBatch(batch)
		}
	}
	var pack []rawStmt
	for _, k := range keys {
		stmts := parts[k]
		switch {
		case r.cfg.Pack > 0:
			if len(pack) > 0 && len(pack)+len(stmts) > r.cfg.Pack {
				exec(batch(pack))
				pack = nil
			}
			pack = append(pack, stmts...)
		case r.cfg.Single || len(stmts) == 1:
			for _, st := range stmts {
				exec(func() error { return r.s.Query(st.cql, st.args...).WithContext(ctx).WithTimestamp(ts).Exec() })
			}
		default:
			exec(batch(stmts))
		}
	}
	if len(pack) > 0 {
		exec(batch(pack))
	}
	wg.Wait()
	if first != nil {
		return fmt.Errorf("raw write: %w", first)
	}
	return nil
}
