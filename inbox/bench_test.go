package inbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	crdb "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/cassandra"
	"github.com/inboxd/inboxd/timeline/pebble"
	"github.com/inboxd/inboxd/wire"
)

// The benchmarks write to a real directory with fsync on every group
// commit, as inboxd does. Each reports inbox rows/s; BenchmarkRawPebble
// writes rows of the same size in batches of the same size straight to
// Pebble, as the baseline for the ratio in docs/benchmarks.md.

const benchSenders = 64 // concurrent senders: at most this many messages per group commit

func BenchmarkFanout100(b *testing.B) {
	benchCommitters(b, []int{100})
}

// BenchmarkFanout100Sharded is BenchmarkFanout100 with the members spread
// over two in-process nodes on one store: the conversation's node writes
// the rows of its half and one outbox record a message, the other node
// applies the records in batches of its own. The timer stops once every
// record is applied; rows/s counts both halves.
func BenchmarkFanout100Sharded(b *testing.B) {
	c := newNodesOn(b, pebble.Options{Dir: b.TempDir()}, 2, nil)
	us := c.users(50)
	owner := us[0][0]
	members := append(us[0][1:], us[1]...)
	g, err := c.of(owner).CreateGroup(ctx, owner, NewGroup{Members: members})
	if err != nil {
		b.Fatal(err)
	}
	c.settle()
	svc := c.of(g.ID)
	body := make([]byte, 100)
	var sent atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range benchSenders {
		wg.Go(func() {
			for i := w; sent.Add(1) <= int64(b.N); i += benchSenders {
				if _, err := svc.SendGroupMessage(ctx, owner, g.ID, fmt.Sprint(w, "-", i), wire.KindText, body); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	c.settle()
	b.ReportMetric(float64(b.N*100)/time.Since(start).Seconds(), "rows/s")
}

// BenchmarkGroups10 sends to 400 groups of 10, the shape of inboxd-bench's
// chatty preset, from 1, 8 and 64 concurrent senders: as many sends at most
// share a group commit, so the process CPU per send (cpu-µs/send) of one
// sender against many shows what a commit costs besides its sends.
func BenchmarkGroups10(b *testing.B) {
	sizes := make([]int, 400)
	for i := range sizes {
		sizes[i] = 10
	}
	for _, senders := range []int{1, 8, benchSenders} {
		b.Run(fmt.Sprintf("senders=%d", senders), func(b *testing.B) { benchSends(b, openBenchPebble(b), sizes, senders) })
	}
}

// BenchmarkMixed sends to 200 groups of 5 to 200 members, sizes skewed small
// as in real chat: the rows of many keys share each commit.
func BenchmarkMixed(b *testing.B) {
	sizes := make([]int, 200)
	for i := range sizes {
		sizes[i] = []int{5, 10, 10, 20, 50, 100, 200}[i%7]
	}
	benchCommitters(b, sizes)
}

// benchCommitters runs benchSends with the committer pipelining its batches
// on Pebble, and committing one at a time (the store's Apply hidden from
// it), side by side.
func benchCommitters(b *testing.B, sizes []int) {
	for _, pipelined := range []bool{true, false} {
		b.Run(fmt.Sprintf("pipelined=%v", pipelined), func(b *testing.B) {
			st := openBenchPebble(b)
			if !pipelined {
				st = struct{ timeline.Store }{st}
			}
			benchSends(b, st, sizes, benchSenders)
		})
	}
}

// openBenchPebble opens a store in a directory of the benchmark's own,
// closed when it ends.
func openBenchPebble(b *testing.B) timeline.Store {
	st, err := pebble.Open(pebble.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

// benchSends sends, from senders goroutines, b.N messages of 100 bytes in
// turn to groups of the sizes given, through a service on st, and reports
// inbox rows/s, the senders' ack latency, the process's CPU per row and per
// send (the committer, the store's goroutines and the garbage collector
// included), on the Cassandra store the node's CPU per row too (cpuTimes),
// and the sends per group commit.
func benchSends(b *testing.B, st timeline.Store, sizes []int, senders int) {
	svc, err := New(ctx, Config{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	convs := make([]uint64, len(sizes))
	owners := make([]uint64, len(sizes))
	rowsPerRound := 0
	next := uint64(1)
	for i, n := range sizes {
		members := make([]uint64, n-1)
		for j := range members {
			members[j] = next + uint64(j) + 1
		}
		g, err := svc.CreateGroup(ctx, next, NewGroup{Members: members})
		if err != nil {
			b.Fatal(err)
		}
		convs[i], owners[i] = g.ID, next
		rowsPerRound += n
		next += uint64(n) / 2 // groups overlap: users are in several
	}
	body := make([]byte, 100)
	var sent atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	commits := commitCount(b, svc)
	start, cpu := time.Now(), readCPU()
	var wg sync.WaitGroup
	acks := make([][]time.Duration, senders)
	for w := range senders {
		wg.Go(func() {
			for i := w; ; i += senders {
				if sent.Add(1) > int64(b.N) {
					return
				}
				g := i % len(convs)
				t0 := time.Now()
				if _, err := svc.SendGroupMessage(ctx, owners[g], convs[g], fmt.Sprint(w, "-", i), wire.KindText, body); err != nil {
					b.Error(err)
					return
				}
				acks[w] = append(acks[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	rows := float64(b.N) * float64(rowsPerRound) / float64(len(sizes))
	b.ReportMetric(rows/elapsed.Seconds(), "rows/s")
	reportLatency(b, slices.Concat(acks...), "-ack-ms")
	if _, ok := st.(*cassandra.Store); !ok {
		cpu.nodeOK = false // the node, if one runs, serves others
	}
	used := cpu.report(b, rows)
	b.ReportMetric(float64(used.Microseconds())/float64(b.N), "cpu-µs/send")
	b.ReportMetric(float64(b.N)/float64(commitCount(b, svc)-commits), "sends/commit")
}

// reportLatency reports the median and the 99th percentile of lat, in ms,
// as p50<suffix> and p99<suffix>; it sorts lat.
func reportLatency(b *testing.B, lat []time.Duration, suffix string) {
	slices.Sort(lat)
	for _, q := range []struct {
		name string
		at   float64
	}{{"p50", .5}, {"p99", .99}} {
		b.ReportMetric(float64(lat[int(q.at*float64(len(lat)-1))])/float64(time.Millisecond), q.name+suffix)
	}
}

// commitCount returns how many group commits svc has made.
func commitCount(b *testing.B, svc *Service) uint64 {
	return observed(b, svc.metrics.batchCmds).GetSampleCount()
}

// observed returns what h has observed so far.
func observed(b *testing.B, h prometheus.Histogram) *dto.Histogram {
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		b.Fatal(err)
	}
	return m.GetHistogram()
}

// BenchmarkRawPebble is the baseline: straight to Pebble, tuned as
// timeline/pebble tunes it, with fsync, it commits batches of sends, each
// written as inboxd writes a send to a group — the message, its dedup
// record, the sender's marker and a row in every member's inbox, keys and
// values of the same sizes — and reports inbox rows/s and the process's CPU
// per row (a row is a delivery).
//
// Three shapes of commit: fanout100 is BenchmarkFanout100's, 64 sends to
// one group of 100 (a member gets 64 rows a commit); groups100 is
// inboxd-bench's preset of that name at 1,000 sends/s, commits of 18 sends
// to 18 of 20 groups of 100 (a member gets one row a commit); groups10 is
// the chatty preset at 10,000 sends/s, commits of 200 sends (inboxd's
// held 197 on average there) to half of 400 groups of 10 (a member, in one
// group here and in two in the preset, gets a row every other commit). "rows" is
// the durable minimum, one inbox row per delivery: its cpu-ns/row is the
// floor of what a store costs a delivery on this machine. "rows+activity"
// adds what timeline/pebble's activity index wrote (format 2) for a member
// who gets one row a commit: a delete and a set; "rows+activity-in-place"
// what it writes since format 3, a set of the same key while the entry
// stays in its tenth of a second (about five commits at these rates) and a
// delete and a set when it leaves it. "+dedup-read" adds, before each
// commit, the Get of every send's dedup record that a send's idempotency
// needs (a key that is not there yet): with it, a shape writes and reads
// what an inboxd send does.
// The records go into the batch in the order a commit builds them, send by
// send, or sorted by key. cpu-ns/row-settled adds the CPU of flushing the
// last memtable and of the compactions that follow, so that no work the
// rows cause is left out.
func BenchmarkRawPebble(b *testing.B) {
	for _, shape := range []rawShape{
		{"fanout100/rows", benchSenders, 1, 100, noActivity, false},
		{"groups100/rows", 18, 20, 100, noActivity, false},
		{"groups100/rows+activity", 18, 20, 100, activityMoves, false},
		{"groups100/rows+activity-in-place", 18, 20, 100, activityInPlace, false},
		{"groups10/rows", 200, 400, 10, noActivity, false},
		{"groups10/rows+activity-in-place", 200, 400, 10, activityInPlace, false},
		{"groups10/rows+activity-in-place+dedup-read", 200, 400, 10, activityInPlace, true},
	} {
		for _, sorted := range []bool{false, true} {
			name := shape.name + "/send-order"
			if sorted {
				name = shape.name + "/key-order"
			}
			b.Run(name, func(b *testing.B) { benchRawPebble(b, shape, sorted) })
		}
	}
}

// rawShape is a commit of BenchmarkRawPebble: sends messages, to groups of
// size members taken in turn, and what is written and read besides the rows.
type rawShape struct {
	name                string
	sends, groups, size int
	activity            rawActivity
	dedupRead           bool
}

// rawActivity is what BenchmarkRawPebble writes to the activity index.
type rawActivity int

const (
	noActivity      rawActivity = iota
	activityMoves               // a delete and a set every commit
	activityInPlace             // a set every commit, a delete too every rawWindow commits
)

// rawWindow is how many commits of BenchmarkRawPebble's groups100 shape
// fall in one activity window: 55 commits a second at 1,000 sends/s.
const rawWindow = 5

// rawRecord is a record of BenchmarkRawPebble's batch: a set, or a delete
// when val is nil.
type rawRecord struct {
	key []byte
	val []byte
}

func benchRawPebble(b *testing.B, shape rawShape, sorted bool) {
	sends, groups, size, activity := shape.sends, shape.groups, shape.size, shape.activity
	opts := &crdb.Options{
		MemTableSize:                64 << 20,
		MemTableStopWritesThreshold: 4,
		Logger:                      quietLogger{},
	}
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := crdb.Open(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	row := make([]byte, 24)   // a row's version byte and varint conv, conv_seq, msg id, kind
	msg := make([]byte, 150)  // a message with a 100-byte body
	small := make([]byte, 30) // a dedup record or a marker
	mark := []byte{1}         // an activity index entry of format 2
	exact := make([]byte, 7)  // one of format 3: the version byte and a time
	// seqs[g] is group g's conv_seq, and each of its members' inbox seq:
	// a member is in one group. last[g] is the commit of its last send.
	seqs := make([]uint64, groups)
	last := make([]uint64, groups)
	var recs []rawRecord
	keys := make([]byte, 0, 32*sends*(3+3*size))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), processCPU()
	for n, commit := 0, uint64(1); n < b.N; n, commit = n+sends, commit+1 {
		recs, keys = recs[:0], keys[:0]
		add := func(val []byte, prefix byte, ids ...uint64) {
			k := len(keys)
			keys = append(keys, prefix)
			for _, id := range ids {
				keys = binary.BigEndian.AppendUint64(keys, id)
			}
			recs = append(recs, rawRecord{keys[k:len(keys):len(keys)], val})
		}
		for m := 0; m < sends && n+m < b.N; m++ {
			g := (n + m) % groups
			seqs[g]++
			conv, first := uint64(g+1), uint64(g*size)
			add(msg, 'c', conv, seqs[g])
			add(small, 'd', first, seqs[g]) // the sender and a client message id
			if shape.dedupRead {
				if _, closer, err := db.Get(recs[len(recs)-1].key); err == nil {
					closer.Close()
					b.Fatal("a new send's dedup record is already there")
				} else if !errors.Is(err, crdb.ErrNotFound) {
					b.Fatal(err)
				}
			}
			add(small, 'r', first, conv)
			for u := first; u < first+uint64(size); u++ {
				add(row, 'i', u, seqs[g])
				// User, inverted time, inverted conv.
				switch prev, now := last[g]/rawWindow, commit/rawWindow; {
				case activity == activityMoves:
					add(nil, 'a', u, ^last[g], ^conv)
					add(mark, 'a', u, ^commit, ^conv)
				case activity == activityInPlace:
					if prev != now {
						add(nil, 'a', u, ^prev, ^conv)
					}
					add(exact, 'a', u, ^now, ^conv)
				}
			}
			last[g] = commit
		}
		if sorted {
			slices.SortStableFunc(recs, func(a, b rawRecord) int { return bytes.Compare(a.key, b.key) })
		}
		batch := db.NewBatch()
		for _, r := range recs {
			if r.val == nil {
				err = batch.Delete(r.key, nil)
			} else {
				err = batch.Set(r.key, r.val, nil)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		if err := batch.Commit(crdb.Sync); err != nil {
			b.Fatal(err)
		}
		batch.Close()
	}
	elapsed := time.Since(start)
	rows := float64(b.N * size)
	b.ReportMetric(rows/elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(processCPU()-cpu)/rows, "cpu-ns/row")
	b.StopTimer()
	if err := db.Flush(); err != nil {
		b.Fatal(err)
	}
	waitCompactions(db)
	b.ReportMetric(float64(processCPU()-cpu)/rows, "cpu-ns/row-settled")
}

// waitCompactions returns once db has run no compaction for several polls
// in a row: a flush schedules its compactions after it returns.
func waitCompactions(db *crdb.DB) {
	for idle := 0; idle < 5; {
		if db.Metrics().Compact.NumInProgress == 0 {
			idle++
		} else {
			idle = 0
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processCPU is the user and system CPU time of the whole process so far:
// every goroutine, Pebble's flushes and compactions and the GC included.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
