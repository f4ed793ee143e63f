package inbox

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/inboxd/inboxd/internal/cassandratest"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/cassandra"
	"github.com/inboxd/inboxd/wire"
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
// Each reports inbox rows/s and, per row, the CPU time of the process
// (cpu-ns/row) and of the node (node-cpu-ns/row, when the node is the one
// deploy/cassandra/cassandra.sh started here): with the node on the same
// cores, the two sides' rates stand in the inverse ratio of their sums
// once the cores are busy. -count repeats each variant back to back; on a
// busy machine, rounds of -count 1 compare better:
//
//	for i in 1 2 3; do INBOXD_CASSANDRA_HOSTS=127.0.0.1:9042 go test -run '^$' -bench CassandraFanout100 -benchtime 1280x ./inbox; done
func BenchmarkCassandraFanout100(b *testing.B) {
	cfg := benchCassandraConfig(b)
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
			raw := cassandratest.NewRaw(b, rawConfig(cfg, v.raw))
			base += 1 << 32
			f := cassandratest.NewFanout(base, 100)
			var batch timeline.Batch
			b.ResetTimer()
			start, cpu := time.Now(), readCPU()
			for n := 0; n < b.N; n += benchSenders {
				f.Next(&batch, min(benchSenders, b.N-n))
				if err := raw.Write(b.Context(), &batch); err != nil {
					b.Fatal(err)
				}
			}
			rows := float64(b.N * f.Members())
			b.ReportMetric(rows/time.Since(start).Seconds(), "rows/s")
			cpu.report(b, rows)
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

// cpuTimes is the CPU time used so far by the process and by the dev node.
type cpuTimes struct {
	process, node time.Duration
	nodeOK        bool
}

func readCPU() cpuTimes {
	node, ok := cassandratest.NodeCPU()
	return cpuTimes{processCPU(), node, ok}
}

// report reports the CPU time used since c, per row of rows: the process's
// as cpu-ns/row, the node's as node-cpu-ns/row when it can be read. It
// returns the process's.
func (c cpuTimes) report(b *testing.B, rows float64) time.Duration {
	now := readCPU()
	used := now.process - c.process
	b.ReportMetric(float64(used)/rows, "cpu-ns/row")
	if c.nodeOK && now.nodeOK {
		b.ReportMetric(float64(now.node-c.node)/rows, "node-cpu-ns/row")
	}
	return used
}

// benchCassandraConfig returns the configuration of a store on the node
// named by INBOXD_CASSANDRA_HOSTS, at consistency ONE, in a keyspace of the
// benchmark's own whose tables it creates.
func benchCassandraConfig(b *testing.B) cassandra.Config {
	cfg := cassandra.Config{
		Hosts:        cassandratest.Hosts(b),
		Keyspace:     cassandratest.Keyspace(b, "inbox"),
		Consistency:  gocql.One,
		CreateSchema: true,
		Logger:       slog.New(slog.NewTextHandler(b.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if err := cassandra.CreateSchema(b.Context(), cfg); err != nil {
		b.Fatal(err)
	}
	return cfg
}

// rawConfig returns rc writing to the node, keyspace and buckets of the
// store configured by cfg.
func rawConfig(cfg cassandra.Config, rc cassandratest.RawConfig) cassandratest.RawConfig {
	rc.Hosts, rc.Keyspace, rc.Consistency = cfg.Hosts, cfg.Keyspace, cfg.Consistency
	rc.BucketSize, rc.MessageBucketSize = cassandra.DefaultBucketSize, cassandra.DefaultMessageBucketSize
	return rc
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

// The shape of inboxd-bench's groups100 preset, the load of issue 14's
// Cassandra latency goal: sends to latencyGroups groups of latencyMembers
// in turn, 100-byte bodies.
const (
	latencyGroups  = 20
	latencyMembers = 100
)

// BenchmarkCassandraLatency measures the latency of sends arriving at a
// fixed rate (sends/s, the sub-benchmark's name; 100 is issue 14's 10,000
// deliveries/s) on the node named by INBOXD_CASSANDRA_HOSTS, b.N sends each:
//
//   - raw: one writer loop, like a group commit, takes every send that has
//     arrived, builds their records into one batch (cassandratest.Fanout:
//     the messages, 100 inbox rows each, the senders' markers and dedup
//     records, the members' activity moves, the clock) and writes it with
//     cassandratest.Raw (32 writers); a send's latency runs from its arrival
//     to its batch's write returning.
//   - raw-pack10: raw with the statements of several partitions packed,
//     up to 10 an unlogged batch, as the store packs its small writes;
//   - raw-rows: raw without the activity moves, half of a send's
//     partitions: what a store that moved no activity entry per delivery
//     would be left with, the bound of that lever.
//   - inbox: the service's SendGroupMessage on the Cassandra store, a
//     goroutine per arrival; a send's latency runs from its arrival to its
//     ack.
//
// An arrival's time is the schedule's, not when its goroutine ran: a late
// start counts against the side that was slow. Each reports p50-ms and
// p99-ms, the sends/s achieved (b.N over the time from the first arrival to
// the last answer), the process's CPU per send, the sends per commit, and the
// mean time of a commit's write (commit-ms: Raw.Write, or the store's Commit)
// and of building it (build-ms: Fanout.Add, or the committer running the
// commands, the dedup reads included). 1,500 sends at 100/s last 15 s; on a
// busy machine, rounds of -count 1 compare best:
//
//	for i in 1 2 3; do uptime; INBOXD_CASSANDRA_HOSTS=127.0.0.1:9042 go test -run '^$' \
//	    -bench 'CassandraLatency/rate=100/' -benchtime 1500x -count 1 ./inbox; done
func BenchmarkCassandraLatency(b *testing.B) {
	cfg := benchCassandraConfig(b)
	// Every run writes groups and users of its own, far from the others'.
	base := uint64(time.Now().UnixNano())
	for _, rate := range []int{100, 50} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			for _, v := range []struct {
				name     string
				pack     int
				activity bool
			}{{"raw", 0, true}, {"raw-pack10", 10, true}, {"raw-rows", 0, false}} {
				b.Run(v.name, func(b *testing.B) {
					base += 1 << 32
					rc := cassandratest.RawConfig{Writers: cassandra.DefaultWriters, Pack: v.pack}
					latencyRaw(b, rawConfig(cfg, rc), rate, base, v.activity)
				})
			}
			b.Run("inbox", func(b *testing.B) {
				base += 1 << 32
				latencyInbox(b, openBenchCassandra(b, cfg), rate, base)
			})
		})
	}
}

// latencyRaw is BenchmarkCassandraLatency's raw side, writing as rc says;
// without activity, it leaves the activity moves out of its batches.
func latencyRaw(b *testing.B, rc cassandratest.RawConfig, rate int, base uint64, activity bool) {
	raw := cassandratest.NewRaw(b, rc)
	groups := make([]*cassandratest.Fanout, latencyGroups)
	for g := range groups {
		groups[g] = cassandratest.NewFanout(base+uint64(g)<<20, latencyMembers)
	}
	var (
		batch          timeline.Batch
		pending        []arrival
		lat            []time.Duration
		commits        int
		build, writing time.Duration
		sendsToGroup   = make([]int, latencyGroups)
	)
	arrived := make(chan arrival, b.N)
	start, cpu, end := arrive(b, rate, func(a arrival) { arrived <- a })
	for len(lat) < b.N {
		pending = append(pending[:0], <-arrived)
	gather:
		for {
			select {
			case a := <-arrived:
				pending = append(pending, a)
			default:
				break gather
			}
		}
		t0 := time.Now()
		batch.Reset()
		clear(sendsToGroup)
		for _, a := range pending {
			sendsToGroup[a.i%latencyGroups]++
		}
		for g, n := range sendsToGroup {
			if n > 0 {
				groups[g].Add(&batch, n)
			}
		}
		if !activity {
			batch.Activities = batch.Activities[:0]
		}
		t1 := time.Now()
		if err := raw.Write(b.Context(), &batch); err != nil {
			b.Fatal(err)
		}
		done := time.Now()
		build, writing, commits = build+t1.Sub(t0), writing+done.Sub(t1), commits+1
		for _, a := range pending {
			lat = append(lat, done.Sub(a.at))
		}
	}
	end()
	reportArrivals(b, lat, start, cpu)
	b.ReportMetric(float64(b.N)/float64(commits), "sends/commit")
	b.ReportMetric(float64(build)/float64(commits)/float64(time.Millisecond), "build-ms")
	b.ReportMetric(float64(writing)/float64(commits)/float64(time.Millisecond), "commit-ms")
}

// latencyInbox is BenchmarkCassandraLatency's inbox side, on st.
func latencyInbox(b *testing.B, st timeline.Store, rate int, base uint64) {
	svc, err := New(b.Context(), Config{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	convs, owners := make([]uint64, latencyGroups), make([]uint64, latencyGroups)
	for g := range convs {
		owners[g] = base + uint64(g)<<20 + 1
		members := make([]uint64, latencyMembers-1)
		for j := range members {
			members[j] = owners[g] + uint64(j) + 1
		}
		grp, err := svc.CreateGroup(b.Context(), owners[g], NewGroup{Members: members})
		if err != nil {
			b.Fatal(err)
		}
		convs[g] = grp.ID
	}
	m := svc.metrics
	cmds, builds, commits := observed(b, m.batchCmds), observed(b, m.builds), observed(b, m.commits)
	body := make([]byte, 100)
	lat := make([]time.Duration, b.N)
	var wg sync.WaitGroup
	start, cpu, end := arrive(b, rate, func(a arrival) {
		wg.Go(func() {
			g := a.i % latencyGroups
			if _, err := svc.SendGroupMessage(b.Context(), owners[g], convs[g], fmt.Sprint("l-", a.i), wire.KindText, body); err != nil {
				b.Error(err)
				return
			}
			lat[a.i] = time.Since(a.at)
		})
	})
	end()
	wg.Wait()
	reportArrivals(b, lat, start, cpu)
	n := float64(commitCount(b, svc) - cmds.GetSampleCount())
	b.ReportMetric(float64(b.N)/n, "sends/commit")
	mean := func(before *dto.Histogram, h prometheus.Histogram) float64 {
		after := observed(b, h)
		return 1000 * (after.GetSampleSum() - before.GetSampleSum()) / float64(after.GetSampleCount()-before.GetSampleCount())
	}
	b.ReportMetric(mean(builds, m.builds), "build-ms")
	b.ReportMetric(mean(commits, m.commits), "commit-ms")
}

// arrival is the send a schedule let in: the i-th, due at at.
type arrival struct {
	i  int
	at time.Time
}

// arrive calls f with b.N arrivals, rate a second, from a goroutine of its
// own, and returns when the first is due, the process's CPU time then, and
// a func that waits for the last call to f. It resets the benchmark's
// timer.
func arrive(b *testing.B, rate int, f func(arrival)) (start time.Time, cpu time.Duration, end func()) {
	b.ResetTimer()
	period := time.Second / time.Duration(rate)
	start, cpu = time.Now(), processCPU()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range b.N {
			at := start.Add(time.Duration(i) * period)
			time.Sleep(time.Until(at))
			if b.Context().Err() != nil {
				return // the benchmark failed
			}
			f(arrival{i, at})
		}
	}()
	return start, cpu, func() { <-done }
}

// reportArrivals reports BenchmarkCassandraLatency's latency, sends/s and
// CPU per send, from the latencies lat of the sends that arrived from
// start, when the process had used cpu, and stops the timer.
func reportArrivals(b *testing.B, lat []time.Duration, start time.Time, cpu time.Duration) {
	elapsed, used := time.Since(start), processCPU()-cpu
	b.StopTimer()
	reportLatency(b, lat, "-ms")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "sends/s")
	b.ReportMetric(float64(used.Microseconds())/float64(b.N), "cpu-µs/send")
}
