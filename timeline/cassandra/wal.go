package cassandra

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/gocql/gocql"

	"github.com/inboxd/inboxd/cluster"
)

// The batch log is logSlots partitions of the batch_log table, one for each
// commit in flight. A slot's rows are chunks of one encoded batch, each at
// most logChunk bytes so that no write nears Cassandra's mutation limit.
// Chunk 0, the head, carries the batch's timestamp ts and the chunk count;
// it is written last, and its landing is the commit point. A slot is cleared
// by overwriting its chunks with ts 0 and no data: overwrites, unlike
// deletes, leave no tombstones, so the log stays cheap to read however many
// batches pass through it.
const (
	logSlots = 32
	logChunk = 512 << 10
)

// entry is a batch in the log.
type entry struct {
	slot int
	ts   int64 // the batch's write timestamp, and its place in the log's order
	data []byte
}

func (e entry) chunks() int { return max(1, (len(e.data)+logChunk-1)/logChunk) }

// slots hands out the slots of the batch log and keeps the entries of
// commits that failed with their outcome unknown, until settle finishes them.
type slots struct {
	free     chan int
	settling sync.Mutex // held by settle

	mu      sync.Mutex
	waiting []entry      // by ts
	n       atomic.Int32 // len(waiting), read without mu on every call
}

func newSlots() *slots {
	s := &slots{free: make(chan int, logSlots)}
	for i := range logSlots {
		s.free <- i
	}
	return s
}

// take waits for a free slot.
func (s *slots) take(ctx context.Context) (int, error) {
	select {
	case slot := <-s.free:
		return slot, nil
	case <-ctx.Done():
		return 0, context.Cause(ctx)
	}
}

func (s *slots) put(slot int) { s.free <- slot }

// unsettled keeps e, whose slot stays taken, for settle.
func (s *slots) unsettled(e entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, _ := slices.BinarySearchFunc(s.waiting, e.ts, func(w entry, ts int64) int { return cmp.Compare(w.ts, ts) })
	s.waiting = slices.Insert(s.waiting, i, e)
	s.n.Store(int32(len(s.waiting)))
}

func (s *slots) pending() bool { return s.n.Load() > 0 }

func (s *slots) oldest() (entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.waiting) == 0 {
		return entry{}, false
	}
	return s.waiting[0], true
}

// settled forgets e and frees its slot.
func (s *slots) settled(e entry) {
	s.mu.Lock()
	s.waiting = slices.DeleteFunc(s.waiting, func(w entry) bool { return w.ts == e.ts })
	s.n.Store(int32(len(s.waiting)))
	s.mu.Unlock()
	s.put(e.slot)
}

// writeEntry writes e into its slot at timestamp e.ts, the head last. sent
// reports whether the head was sent, so that it may have landed even though
// err says otherwise.
func (s *Store) writeEntry(ctx context.Context, e entry) (sent bool, err error) {
	n := e.chunks()
	for i := n - 1; i >= 0; i-- {
		if i == 0 && n > 1 && s.hit("log chunks") {
			return false, errCrashed
		}
		chunk := e.data[i*logChunk : min(len(e.data), (i+1)*logChunk)]
		err := s.retry(ctx, "batch log", func() error {
			if err := s.check(); err != nil {
				return err
			}
			sent = sent || i == 0
			st := s.ownLog().row(e.slot, i, e.ts, n, chunk)
			return s.session.Query(st.cql, st.args...).WithContext(ctx).WithTimestamp(e.ts).Exec()
		})
		if err != nil {
			return sent, err
		}
	}
	return true, nil
}

// clearEntry overwrites the chunks of e's slot at a timestamp above e.ts. A
// clear that fails is harmless: the entry stays in the log until the slot is
// used again, and a replay of a batch already applied rewrites what is there
// at the batch's old timestamp, which changes nothing.
func (s *Store) clearEntry(ctx context.Context, e entry) {
	if err := s.clear(ctx, e.slot, e.chunks()); err != nil {
		s.log.Debug("timeline/cassandra: batch log slot not cleared", "slot", e.slot, "err", err)
	}
}

// clear overwrites chunks 0..n-1 of slot at a fresh timestamp.
func (s *Store) clear(ctx context.Context, slot, n int) error {
	ts, err := s.logTimestamp()
	if err != nil {
		return err
	}
	return s.exec(ctx, s.ownLog().clear(slot, n), ts)
}

// batchLog is one log's partitions: the single-node table (node < 0), or
// one node's partitions of batch_log_nodes in cluster mode.
type batchLog struct {
	q    *queries
	node int
}

// ownLog is the log this store writes.
func (s *Store) ownLog() batchLog {
	if s.cfg.Fence == nil {
		return batchLog{&s.q, -1}
	}
	return batchLog{&s.q, s.cfg.NodeID}
}

// row writes chunk of slot.
func (l batchLog) row(slot, chunk int, ts int64, chunks int, data []byte) stmt {
	if l.node < 0 {
		return stmt{l.q.insertLog, []any{slot, chunk, ts, chunks, data}}
	}
	return stmt{l.q.insertNodeLog, []any{l.node, slot, chunk, ts, chunks, data}}
}

// clear overwrites chunks 0..n-1 of slot with no entry.
func (l batchLog) clear(slot, n int) write {
	w := make(write, n)
	for i := range w {
		w[i] = l.row(slot, i, 0, 0, []byte{})
	}
	return w
}

// scan returns the query reading the whole log, and its arguments.
func (l batchLog) scan() (string, []any) {
	if l.node < 0 {
		return l.q.scanLog, nil
	}
	all := make([]int, logSlots)
	for i := range all {
		all[i] = i
	}
	return l.q.scanNodeLog, []any{l.node, all}
}

// recover replays the entries that earlier stores left in the batch log, in
// timestamp order, and then clears every slot. The clears also fence the
// log: an entry whose write timed out and lands only now, or later, has a
// timestamp below every one this store uses (see lease), so it cannot
// overwrite a clear and is never replayed.
func (s *Store) recover(ctx context.Context) error {
	return s.replay(ctx, s.ownLog(), s.logTimestamp)
}

// recoverNode is recover in cluster mode. The node's earlier incarnations
// wrote its log below the ts_limit at which the id was settled, and
// LogTimestamp is above it. A single-node store's log left unreplayed
// would be lost: Open refuses to start until a single-node Open replays it.
func (s *Store) recoverNode(ctx context.Context) error {
	entries, _, err := s.readLog(ctx, batchLog{&s.q, -1})
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("%w: keyspace %q: the single-node batch log holds %d batches: open it once without a fence to replay them",
			ErrSchema, s.cfg.Keyspace, len(entries))
	}
	return s.replay(ctx, s.ownLog(), s.logTimestamp)
}

// SettleNode finishes the commits that dead node left in its batch log
// (cluster mode): it applies each entry, the same bytes at the same
// timestamps, so that two nodes settling one node at once write the same
// cells, and then clears the node's slots at timestamp tsLimit, above every
// timestamp of the dead incarnation (cluster.DeadNode.TSLimit): a head the
// dead node sent before it stopped and that lands late loses to the clear
// and is never replayed. The node's next incarnation writes above tsLimit.
// It is what cluster.Config.OnNodeDead is to call.
func (s *Store) SettleNode(ctx context.Context, node int, tsLimit int64) error {
	if err := s.enter("settle node"); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if s.cfg.Fence == nil {
		return opError("settle node", errors.New("not in cluster mode"))
	}
	if node < 0 || node > cluster.MaxNodeID || node == s.cfg.NodeID {
		return opError("settle node", fmt.Errorf("node %d is not another node's id", node))
	}
	ctx, cancel := s.bind(ctx)
	defer cancel()
	err := s.retry(ctx, "settle node", func() error {
		return s.replay(ctx, batchLog{&s.q, node}, func() (int64, error) { return tsLimit, nil })
	})
	if err != nil {
		return opError("settle node", fmt.Errorf("node %d: %w", node, err))
	}
	return nil
}

// replay applies the entries of log, in timestamp order, then clears every
// slot at a timestamp from clearAt.
func (s *Store) replay(ctx context.Context, from batchLog, clearAt func() (int64, error)) error {
	entries, chunks, err := s.readLog(ctx, from)
	if err != nil {
		return err
	}
	for _, e := range entries {
		b, err := decodeBatch(e.data)
		if err != nil {
			return fmt.Errorf("batch log slot %d: %w", e.slot, err)
		}
		if err := s.apply(ctx, s.plan(b), e.ts); err != nil {
			return fmt.Errorf("replay the batch log: %w", err)
		}
		s.log.Info("timeline/cassandra: replayed a batch from the log", "node", from.node, "slot", e.slot, "ts", e.ts,
			"rows", len(b.Rows), "messages", len(b.Messages))
	}
	chunks = append(chunks, make([]int, max(0, logSlots-len(chunks)))...)
	clears := make([]chain, len(chunks))
	for slot, n := range chunks {
		clears[slot] = chain{from.clear(slot, max(1, n))}
	}
	ts, err := clearAt()
	if err == nil {
		err = s.run(ctx, clears, ts)
	}
	if err != nil {
		return fmt.Errorf("clear the batch log: %w", err)
	}
	return nil
}

// readLog returns the entries in the batch log, by timestamp, and the number
// of chunk rows in each slot.
func (s *Store) readLog(ctx context.Context, from batchLog) ([]entry, []int, error) {
	type part struct {
		ts     int64
		chunks int
		data   []byte
	}
	var slots []map[int]part // by slot and chunk
	var chunks []int
	var slot, chunk, n int
	var ts int64
	var data []byte
	cql, args := from.scan()
	err := s.pages(ctx, cql, args, fixed(4), func(sc gocql.Scanner) (bool, error) {
		if err := sc.Scan(&slot, &chunk, &ts, &n, &data); err != nil {
			return false, err
		}
		if slot < 0 || slot >= 1<<16 || chunk < 0 {
			return false, fmt.Errorf("batch log: a row at slot %d, chunk %d", slot, chunk)
		}
		for len(slots) <= slot {
			slots, chunks = append(slots, make(map[int]part)), append(chunks, 0)
		}
		slots[slot][chunk] = part{ts, n, slices.Clone(data)}
		chunks[slot] = max(chunks[slot], chunk+1)
		return true, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read batch log: %w", err)
	}
	var entries []entry
next:
	for slot, parts := range slots {
		head := parts[0]
		if head.ts == 0 {
			continue
		}
		e := entry{slot: slot, ts: head.ts}
		for i := range head.chunks {
			p, ok := parts[i]
			switch {
			case ok && p.ts > head.ts:
				// A later batch was being written into the slot, which is
				// reused only once its batch is applied.
				continue next
			case !ok || p.ts != head.ts:
				return nil, nil, fmt.Errorf("batch log slot %d: chunk %d of %d of the batch at %d is missing", slot, i, head.chunks, head.ts)
			}
			e.data = append(e.data, p.data...)
		}
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b entry) int { return cmp.Compare(a.ts, b.ts) })
	return entries, chunks, nil
}
