package inbox

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/inboxd/inboxd/internal/cassandratest"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/cassandra"
)

// BenchmarkCassandraFanout100 is issue 14's Cassandra comparison, in one
// run so that both sides meet the same machine. "inbox" is
// BenchmarkFanout100 on the Cassandra store (a node named by
// INBOXD_CASSANDRA_HOSTS); "inbox-w128" is the same with 128 writers instead
// of the default. Each "raw" variant writes group commits of the same shape
// (benchSenders messages of 100 bytes to a group of 100: the messages, 100
// inbox rows each, the sender's marker and dedup records, every member's
// activity move, the clock) straight with the driver, one commit after the
// other, the way its name says:
//
//   - batch: a partition's statements as one unlogged batch; single: every
//     statement a query of its own; packN: the statements of several
//     partitions in one unlogged batch, up to N;
//   - wN: at most N requests in flight;
//   - rr: nodes picked in turn instead of by token;
//   - cN: N connections per node instead of the driver's 2;
//   - co: with the driver's write coalescing, which the store turns off.
//
// Each reports inbox rows/s. -count repeats each variant back to back; on a
// busy machine, rounds of -count 1 compare better:
//
//	for i in 1 2 3; do INBOXD_CASSANDRA_HOSTS=127.0.0.1:9042 go test -run '^$' -bench CassandraFanout100 -benchtime 1280x ./inbox; done
func BenchmarkCassandraFanout100(b *testing.B) {
	hosts := cassandratest.Hosts(b)
	cfg := cassandra.Config{
		Hosts:        hosts,
		Keyspace:     cassandratest.Keyspace(b, "inbox"),
		Consistency:  gocql.One,
		CreateSchema: true,
		Logger:       slog.New(slog.NewTextHandler(b.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if err := cassandra.CreateSchema(b.Context(), cfg); err != nil {
		b.Fatal(err)
	}
	// Every run of a variant writes a group of its own, far from the others'.
	base := uint64(time.Now().UnixNano())
	for _, v := range []struct {
		name string
		raw  cassandratest.RawConfig
	}{
		{"raw-batch-w32", cassandratest.RawConfig{Writers: 32}},
		{"raw-batch-w32-co", cassandratest.RawConfig{Writers: 32, Coalesce: true}},
		{"raw-batch-w128", cassandratest.RawConfig{Writers: 128}},
		{"raw-batch-w32-rr", cassandratest.RawConfig{Writers: 32, RoundRobin: true}},
		{"raw-batch-w32-c1", cassandratest.RawConfig{Writers: 32, NumConns: 1}},
		{"raw-single-w128", cassandratest.RawConfig{Writers: 128, Single: true}},
		{"raw-pack128-w32", cassandratest.RawConfig{Writers: 32, Pack: 128}},
	} {
		b.Run(v.name, func(b *testing.B) {
			rc := v.raw
			rc.Hosts, rc.Keyspace, rc.Consistency = hosts, cfg.Keyspace, cfg.Consistency
			rc.BucketSize, rc.MessageBucketSize = cassandra.DefaultBucketSize, cassandra.DefaultMessageBucketSize
			raw := cassandratest.NewRaw(b, rc)
			base += 1 << 32
			f := cassandratest.NewFanout(base, 100)
			var batch timeline.Batch
			b.ResetTimer()
			start := time.Now()
			for n := 0; n < b.N; n += benchSenders {
				f.Next(&batch, min(benchSenders, b.N-n))
				if err := raw.Write(b.Context(), &batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*f.Members())/time.Since(start).Seconds(), "rows/s")
		})
	}
	for _, v := range []struct {
		name    string
		writers int
	}{{"inbox", 0}, {"inbox-w128", 128}} {
		b.Run(v.name, func(b *testing.B) {
			// A keyspace of its own: benchSends's users and client msg
			// ids are the same every run, and a resend is not written
			// again.
			cfg := cfg
			cfg.Keyspace = cassandratest.Keyspace(b, "inbox")
			cfg.Writers = v.writers
			benchSends(b, openBenchCassandra(b, cfg), []int{100}, benchSenders)
		})
	}
}

// openBenchCassandra opens a store on cfg, closed when the benchmark ends.
func openBenchCassandra(b *testing.B, cfg cassandra.Config) *cassandra.Store {
	st, err := cassandra.Open(b.Context(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := st.Close(); err != nil && !errors.Is(err, timeline.ErrClosed) {
			b.Error(err)
		}
	})
	return st
}
