package cassandra_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/cassandra"
	"github.com/inboxd/inboxd/wire"
)

// Batches shaped like the inbox's group commits: fanoutMessages messages to
// a group of fanoutMembers, each message a row in every member's inbox,
// with the sender's read marker and dedup record and the snowflake clock.
const (
	fanoutMessages = 64
	fanoutMembers  = 100
)

// BenchmarkFanout commits fan-out batches through Store.Commit and, in
// turns with it, writes the same records with gocql directly: the same
// writer pool size, consistency and per-partition unlogged batches, with no
// batch log, no phases and no lease. It reports the inbox rows per second
// of each and the store's rate as a percentage of the raw one.
//
//	go test -run '^$' -bench Fanout -benchtime 40x ./timeline/cassandra/
func BenchmarkFanout(b *testing.B) {
	cfg := config(b, "_bench")
	cfg.Writers = cassandra.DefaultWriters
	store := open(b, cfg)
	raw := newRawWriter(b, cfg)
	stored, direct := newFanout(1), newFanout(2)
	var batch timeline.Batch
	var storeTime, rawTime time.Duration
	timed := func(f func() error) time.Duration {
		start := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	commit := func() error { return store.Commit(b.Context(), &batch) }
	write := func() error { return raw.write(&batch) }
	// In turns, each first every other time, so that the two see the same
	// load from the rest of the machine and from Cassandra's flushes.
	for i := 0; b.Loop(); i++ {
		for j := range 2 {
			if (i+j)%2 == 0 {
				stored.next(&batch)
				storeTime += timed(commit)
			} else {
				direct.next(&batch)
				rawTime += timed(write)
			}
		}
	}
	rows := float64(b.N * fanoutMessages * fanoutMembers)
	storeRate, rawRate := rows/storeTime.Seconds(), rows/rawTime.Seconds()
	b.ReportMetric(storeRate, "store-rows/s")
	b.ReportMetric(rawRate, "raw-rows/s")
	b.ReportMetric(100*storeRate/rawRate, "%raw")
}

// fanout builds the batches of one group's traffic.
type fanout struct {
	conv    uint64
	users   []uint64
	seqs    map[uint64]uint64
	convSeq uint64
}

func newFanout(n uint64) *fanout {
	base := uint64(time.Now().UnixNano()) + n<<40
	f := &fanout{conv: base, seqs: make(map[uint64]uint64)}
	for i := range uint64(fanoutMembers) {
		f.users = append(f.users, base+1+i)
	}
	return f
}

func (f *fanout) next(b *timeline.Batch) {
	b.Reset()
	now := time.Now()
	for range fanoutMessages {
		f.convSeq++
		sender := f.users[f.convSeq%uint64(len(f.users))]
		m := timeline.Message{Conv: f.conv, ConvSeq: f.convSeq, ID: f.conv<<8 + f.convSeq, Sender: sender,
			ClientMsgID: fmt.Sprintf("bench-%d", f.convSeq), Kind: wire.KindText,
			Body: fmt.Appendf(nil, "%-100d", f.convSeq), Time: now}
		b.Messages = append(b.Messages, m)
		for _, u := range f.users {
			f.seqs[u]++
			b.Rows = append(b.Rows, timeline.Row{User: u, Seq: f.seqs[u], Conv: f.conv, ConvSeq: m.ConvSeq, MsgID: m.ID, Kind: m.Kind})
		}
		b.Markers = append(b.Markers, timeline.Marker{User: sender, Conv: f.conv, ReadSeq: m.ConvSeq})
		b.Dedups = append(b.Dedups, timeline.Dedup{Sender: sender, ClientMsgID: m.ClientMsgID, Conv: f.conv,
			ConvSeq: m.ConvSeq, MsgID: m.ID, Time: now})
	}
	b.ClockNode, b.Clock = 1, f.conv<<8+f.convSeq
}

// rawWriter writes a batch's records the plain way: grouped by partition,
// each partition one unlogged batch, all at once on a pool of writers.
type rawWriter struct {
	s    *gocql.Session
	ks   string
	work chan func()
}

func newRawWriter(b *testing.B, cfg cassandra.Config) *rawWriter {
	c := gocql.NewCluster(cfg.Hosts...)
	c.Consistency = cfg.Consistency
	c.Timeout = cfg.Timeout
	c.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.RoundRobinHostPolicy())
	c.DefaultIdempotence = true
	c.RetryPolicy = &gocql.SimpleRetryPolicy{NumRetries: 2}
	s, err := c.CreateSession()
	if err != nil {
		b.Fatal(err)
	}
	w := &rawWriter{s: s, ks: cfg.Keyspace, work: make(chan func())}
	var wg sync.WaitGroup
	for range cfg.Writers {
		wg.Go(func() {
			for f := range w.work {
				f()
			}
		})
	}
	b.Cleanup(func() {
		close(w.work)
		wg.Wait()
		s.Close()
	})
	return w
}

type rawStmt struct {
	cql  string
	args []any
}

// rawPart names a partition: a table letter and its key.
type rawPart struct {
	table    byte
	id, more uint64
	text     string
}

func (w *rawWriter) write(b *timeline.Batch) error {
	ks := w.ks
	var (
		insertMessage = "INSERT INTO " + ks + ".messages (conv, bucket, conv_seq, msg_id, sender, client_msg_id, kind, body, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
		insertRow     = "INSERT INTO " + ks + ".inbox (user, bucket, seq, conv, conv_seq, msg_id, kind) VALUES (?, ?, ?, ?, ?, ?, ?)"
		updateMarker  = "UPDATE " + ks + ".conversations SET read_seq = ? WHERE user = ? AND conv = ?"
		insertDedup   = "INSERT INTO " + ks + ".dedups (sender, client_msg_id, conv, conv_seq, msg_id, time) VALUES (?, ?, ?, ?, ?, ?)"
		insertClock   = "INSERT INTO " + ks + ".clocks (node, clock) VALUES (?, ?)"
	)
	parts := make(map[rawPart][]rawStmt)
	add := func(p rawPart, cql string, args ...any) {
		parts[p] = append(parts[p], rawStmt{cql, args})
	}
	for _, m := range b.Messages {
		bucket := m.ConvSeq / cassandra.DefaultMessageBucketSize
		add(rawPart{'c', m.Conv, bucket, ""}, insertMessage,
			m.Conv, bucket, m.ConvSeq, m.ID, m.Sender, m.ClientMsgID, int(m.Kind), m.Body, m.Time.UnixMilli())
	}
	for _, r := range b.Rows {
		bucket := r.Seq / cassandra.DefaultBucketSize
		add(rawPart{'i', r.User, bucket, ""}, insertRow, r.User, bucket, r.Seq, r.Conv, r.ConvSeq, r.MsgID, int(r.Kind))
	}
	for _, m := range b.Markers {
		add(rawPart{'u', m.User, 0, ""}, updateMarker, m.ReadSeq, m.User, m.Conv)
	}
	for _, d := range b.Dedups {
		add(rawPart{'d', d.Sender, 0, d.ClientMsgID}, insertDedup, d.Sender, d.ClientMsgID, d.Conv, d.ConvSeq, d.MsgID, d.Time.UnixMilli())
	}
	add(rawPart{'k', uint64(b.ClockNode), 0, ""}, insertClock, b.ClockNode, b.Clock)

	ts := time.Now().UnixMicro()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, stmts := range parts {
		wg.Add(1)
		w.work <- func() {
			defer wg.Done()
			var err error
			if len(stmts) == 1 {
				err = w.s.Query(stmts[0].cql, stmts[0].args...).WithTimestamp(ts).Exec()
			} else {
				batch := w.s.NewBatch(gocql.UnloggedBatch).WithTimestamp(ts)
				for _, st := range stmts {
					batch.Entries = append(batch.Entries, gocql.BatchEntry{Stmt: st.cql, Args: st.args, Idempotent: true})
				}
				err = w.s.ExecuteBatch(batch)
			}
			if err != nil {
				mu.Lock()
				first = err
				mu.Unlock()
			}
		}
	}
	wg.Wait()
	return first
}

// BenchmarkRecentConversations reads a page of 100 of a user's activity
// index (1,000 conversations), fresh and after 20,000 moves have left a
// tombstone each in the partition, beside a scan of the user's whole
// conversation list in conv id order as the baseline.
//
//	go test -run '^$' -bench RecentConversations -benchtime 50x ./timeline/cassandra/
func BenchmarkRecentConversations(b *testing.B) {
	const convs, hot, moves = 1000, 50, 20_000
	store := open(b, config(b, "_bench"))
	user := uint64(time.Now().UnixNano())
	at := func(ms int) time.Time { return time.UnixMilli(1748779200000 + int64(ms)) }
	var batch timeline.Batch
	for c := range convs {
		batch.Conversations = append(batch.Conversations, timeline.Conversation{User: user, Conv: uint64(c + 1), JoinedAt: 1})
		batch.Activities = append(batch.Activities, timeline.Activity{User: user, Conv: uint64(c + 1), At: at(c)})
	}
	if err := store.Commit(b.Context(), &batch); err != nil {
		b.Fatal(err)
	}
	page := func(b *testing.B) {
		for b.Loop() {
			if cs, err := store.RecentConversations(b.Context(), user, 0, 100); err != nil || len(cs) != 100 {
				b.Fatalf("RecentConversations: %d, %v", len(cs), err)
			}
		}
	}
	b.Run("Page/fresh", page)
	// The hot conversations move to the front again and again, as a
	// user's busiest groups do.
	last := make([]time.Time, hot)
	for i := range hot {
		last[i] = at(i)
	}
	// Each batch moves every hot conversation once, as the committer
	// writes at most one move of a conversation per batch.
	for m := 0; m < moves; m += hot {
		batch.Reset()
		for c := range hot {
			next := at(convs + m + c)
			batch.Activities = append(batch.Activities, timeline.Activity{User: user, Conv: uint64(c + 1), At: next, Prev: last[c]})
			last[c] = next
		}
		if err := store.Commit(b.Context(), &batch); err != nil {
			b.Fatal(err)
		}
	}
	b.Run(fmt.Sprintf("Page/after-%d-moves", moves), page)
	b.Run("Baseline", func(b *testing.B) {
		for b.Loop() {
			if cs, err := store.Conversations(b.Context(), user); err != nil || len(cs) != convs {
				b.Fatalf("Conversations: %d, %v", len(cs), err)
			}
		}
	})
}
