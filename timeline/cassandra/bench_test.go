package cassandra_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/inboxd/inboxd/internal/cassandratest"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/cassandra"
)

// Batches shaped like the inbox's group commits (cassandratest.Fanout):
// fanoutMessages messages to a group of fanoutMembers.
const (
	fanoutMessages = 64
	fanoutMembers  = 100
)

// BenchmarkFanout commits fan-out batches through Store.Commit and, in
// turns with it, writes the same records with gocql directly
// (cassandratest.Raw): the same writer pool size, consistency and
// per-partition unlogged batches, with no batch log, no phases and no lease.
// It reports the inbox rows per second of each and the store's rate as a
// percentage of the raw one.
//
//	go test -run '^$' -bench Fanout -benchtime 40x ./timeline/cassandra/
func BenchmarkFanout(b *testing.B) {
	cfg := config(b, "_bench")
	cfg.Writers = cassandra.DefaultWriters
	store := open(b, cfg)
	raw := cassandratest.NewRaw(b, cassandratest.RawConfig{Hosts: cfg.Hosts, Keyspace: cfg.Keyspace,
		Consistency: cfg.Consistency, Writers: cfg.Writers,
		BucketSize: cassandra.DefaultBucketSize, MessageBucketSize: cassandra.DefaultMessageBucketSize})
	base := uint64(time.Now().UnixNano())
	stored, direct := cassandratest.NewFanout(base+1<<40, fanoutMembers), cassandratest.NewFanout(base+2<<40, fanoutMembers)
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
	write := func() error { return raw.Write(b.Context(), &batch) }
	// In turns, each first every other time, so that the two see the same
	// load from the rest of the machine and from Cassandra's flushes.
	for i := 0; b.Loop(); i++ {
		for j := range 2 {
			if (i+j)%2 == 0 {
				stored.Next(&batch, fanoutMessages)
				storeTime += timed(commit)
			} else {
				direct.Next(&batch, fanoutMessages)
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
