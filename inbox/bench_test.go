package inbox

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	crdb "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/pebble"
	"github.com/inboxd/inboxd/wire"
)

// The benchmarks write to a real directory with fsync on every group
// commit, as inboxd does. Each reports inbox rows/s; BenchmarkRawPebble
// writes rows of the same size in batches of the same size straight to
// Pebble, as the baseline for the ratio in docs/benchmarks.md.

const benchSenders = 64 // concurrent senders: at most this many messages per group commit

func BenchmarkFanout100(b *testing.B) {
	benchSends(b, openBenchPebble(b), []int{100})
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

// BenchmarkMixed sends to 200 groups of 5 to 200 members, sizes skewed small
// as in real chat: the rows of many keys share each commit.
func BenchmarkMixed(b *testing.B) {
	sizes := make([]int, 200)
	for i := range sizes {
		sizes[i] = []int{5, 10, 10, 20, 50, 100, 200}[i%7]
	}
	benchSends(b, openBenchPebble(b), sizes)
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

// benchSends sends, from benchSenders goroutines, b.N messages of 100 bytes
// in turn to groups of the sizes given, through a service on st, and
// reports the inbox rows written per second.
func benchSends(b *testing.B, st timeline.Store, sizes []int) {
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
	start := time.Now()
	var wg sync.WaitGroup
	for w := range benchSenders {
		wg.Go(func() {
			for i := w; ; i += benchSenders {
				if sent.Add(1) > int64(b.N) {
					return
				}
				g := i % len(convs)
				if _, err := svc.SendGroupMessage(ctx, owners[g], convs[g], fmt.Sprint(w, "-", i), wire.KindText, body); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	rows := float64(b.N) * float64(rowsPerRound) / float64(len(sizes))
	b.ReportMetric(rows/elapsed.Seconds(), "rows/s")
}

// BenchmarkRawPebble is the baseline: straight to Pebble, tuned as
// timeline/pebble tunes it, with fsync, it commits batches of benchSenders
// messages, each written as inboxd writes a send to a 100-member group — the
// message, its dedup record, the sender's marker and 100 inbox rows, keys and
// values of the same sizes — and reports inbox rows/s.
func BenchmarkRawPebble(b *testing.B) {
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
	key := make([]byte, 32)
	row := make([]byte, 24)   // a row's version byte and varint conv, conv_seq, msg id, kind
	msg := make([]byte, 150)  // a message with a 100-byte body
	small := make([]byte, 30) // a dedup record or a marker
	seq := uint64(0)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for n := 0; n < b.N; n += benchSenders {
		batch := db.NewBatch()
		for m := 0; m < benchSenders && n+m < b.N; m++ {
			seq++
			put := func(prefix byte, id, sub uint64, keyLen int, val []byte) {
				key[0] = prefix
				binary.BigEndian.PutUint64(key[1:], id)
				binary.BigEndian.PutUint64(key[9:], sub)
				batch.Set(key[:keyLen], val, nil)
			}
			put('c', 7, seq, 17, msg)
			put('d', 1, seq, 30, small)
			put('r', 1, 7, 17, small)
			for u := range uint64(100) {
				put('i', u, seq, 17, row)
			}
		}
		if err := batch.Commit(crdb.Sync); err != nil {
			b.Fatal(err)
		}
		batch.Close()
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(b.N)*100/elapsed.Seconds(), "rows/s")
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
