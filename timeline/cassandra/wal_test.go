package cassandra_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/cassandra"
	"github.com/inboxd/inboxd/timeline/timelinetest"
	"github.com/inboxd/inboxd/wire"
)

// smallConfig is config in a keyspace of tiny buckets (4 inbox seqs, 3
// conv_seqs), where every batch spans several partitions of a timeline.
func smallConfig(t testing.TB) cassandra.Config {
	cfg := config(t, "_small")
	cfg.BucketSize, cfg.MessageBucketSize = 4, 3
	return cfg
}

// TestConformanceSmallBuckets runs the suite where its timelines span many
// buckets, so that every scan and page crosses partitions.
func TestConformanceSmallBuckets(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the suite a second time")
	}
	cfg := smallConfig(t)
	timelinetest.Run(t, func(t *testing.T) timeline.Store {
		return open(t, cfg)
	})
}

var nextID atomic.Uint64

func init() { nextID.Store(uint64(time.Now().UnixNano())) }

// id returns an id no other test of this run uses.
func id() uint64 { return nextID.Add(1) }

// groupBatch is a commit of a conversation of five messages (two buckets)
// to three members, each message a row in every member's inbox (two
// buckets), with the sender's marker, dedup record and the clock.
func groupBatch(body int) *timeline.Batch {
	conv := id()
	users := []uint64{id(), id(), id()}
	b := &timeline.Batch{ClockNode: int64(conv % 1000), Clock: conv}
	for seq := range uint64(5) {
		sender := users[seq%3]
		m := timeline.Message{Conv: conv, ConvSeq: seq + 1, ID: conv + seq, Sender: sender,
			ClientMsgID: fmt.Sprint("c", seq), Kind: wire.KindText, Body: make([]byte, body), Time: time.UnixMilli(1e12)}
		b.Messages = append(b.Messages, m)
		for _, u := range users {
			b.Rows = append(b.Rows, timeline.Row{User: u, Seq: seq + 1, Conv: conv, ConvSeq: m.ConvSeq, MsgID: m.ID, Kind: m.Kind})
		}
		b.Markers = append(b.Markers, timeline.Marker{User: sender, Conv: conv, ReadSeq: m.ConvSeq})
		b.Dedups = append(b.Dedups, timeline.Dedup{Sender: sender, ClientMsgID: m.ClientMsgID, Conv: conv,
			ConvSeq: m.ConvSeq, MsgID: m.ID, Time: m.Time})
	}
	for _, u := range users {
		b.Members = append(b.Members, timeline.Member{Conv: conv, User: u, Role: wire.RoleMember})
		b.Conversations = append(b.Conversations, timeline.Conversation{User: u, Conv: conv, JoinedAt: 1})
	}
	return b
}

// checkWhole fails the test unless s holds all of b (a groupBatch), or,
// when whole is false, none of it.
func checkWhole(t *testing.T, s *cassandra.Store, b *timeline.Batch, whole bool) {
	t.Helper()
	ctx := t.Context()
	conv := b.Messages[0].Conv
	msgs, err := s.Messages(ctx, conv, timeline.Range{})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[bool]int{true: len(b.Messages)}[whole]; len(msgs) != want {
		t.Fatalf("conversation holds %d messages, want %d", len(msgs), want)
	}
	members, err := s.Members(ctx, conv)
	if err != nil || len(members) != map[bool]int{true: 3}[whole] {
		t.Fatalf("Members = %d members, %v", len(members), err)
	}
	for _, u := range []uint64{b.Rows[0].User, b.Rows[1].User, b.Rows[2].User} {
		rows, err := s.Inbox(ctx, u, timeline.Range{})
		if err != nil {
			t.Fatal(err)
		}
		want := slices.DeleteFunc(slices.Clone(b.Rows), func(r timeline.Row) bool { return r.User != u || !whole })
		if !slices.Equal(rows, want) {
			t.Fatalf("inbox of %d:\n got %v\nwant %v", u, rows, want)
		}
		last, err := s.LastInboxSeq(ctx, u)
		if err != nil || last != uint64(len(want)) {
			t.Fatalf("LastInboxSeq(%d) = %d, %v; want %d", u, last, err, len(want))
		}
		c, err := s.Conversation(ctx, u, conv)
		if whole && (err != nil || c.ReadSeq == 0) || !whole && !errors.Is(err, timeline.ErrNotFound) {
			t.Fatalf("Conversation(%d, %d) = %+v, %v", u, conv, c, err)
		}
	}
	for _, d := range b.Dedups {
		_, err := s.Dedup(ctx, d.Sender, d.ClientMsgID)
		if whole && err != nil || !whole && !errors.Is(err, timeline.ErrNotFound) {
			t.Fatalf("Dedup(%d, %q): %v", d.Sender, d.ClientMsgID, err)
		}
	}
	clock, err := s.Clock(ctx, b.ClockNode)
	if err != nil || clock != map[bool]uint64{true: b.Clock}[whole] {
		t.Fatalf("Clock = %d, %v", clock, err)
	}
}

// expireLease ends the writer lease of keyspace ks as its TTL would, for a
// test that crashed a store and does not want to wait.
func expireLease(t *testing.T, ks string) {
	t.Helper()
	q := session(t).Query("DELETE owner FROM " + ks + ".lease WHERE name = 'writer' IF EXISTS")
	if _, err := q.MapScanCAS(make(map[string]any)); err != nil {
		t.Fatalf("expire lease: %v", err)
	}
}

// TestCrashRecovery stops a commit at each of its steps as if the process
// died there, and checks that the next store holds all of the batch, or none
// of it when the crash came before the log entry's head landed.
func TestCrashRecovery(t *testing.T) {
	cfg := smallConfig(t)
	tests := []struct {
		name  string
		body  int // message body size: 300 KiB makes a log entry of several chunks
		crash func(step string, phase2Writes int) bool
		whole bool
	}{
		{"BeforeHead", 300 << 10, func(step string, _ int) bool { return step == "log chunks" }, false},
		{"Logged", 10, func(step string, _ int) bool { return step == "logged" }, true},
		{"LoggedInChunks", 300 << 10, func(step string, _ int) bool { return step == "logged" }, true},
		{"AfterMessages", 10, func(step string, _ int) bool { return step == "phase 1" }, true},
		{"AmidRows", 10, func(step string, n int) bool { return step == "write" && n == 2 }, true},
		{"AfterRows", 10, func(step string, _ int) bool { return step == "phase 2" }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var phase, writes atomic.Int32
			hooked := cassandra.WithHook(cfg, func(step string) bool {
				switch step {
				case "phase 1":
					phase.Store(2)
				case "write":
					if phase.Load() == 2 {
						return tc.crash(step, int(writes.Add(1)))
					}
				}
				return tc.crash(step, 0)
			})
			s, err := cassandra.Open(t.Context(), hooked)
			if err != nil {
				t.Fatal(err)
			}
			b := groupBatch(tc.body)
			if err := s.Commit(t.Context(), b); err == nil {
				t.Fatal("Commit succeeded through a crash")
			}
			cassandra.Crash(s)
			expireLease(t, cfg.Keyspace)
			checkWhole(t, open(t, cfg), b, tc.whole)
		})
	}
}

// TestCommitFinishedByNextCall: a commit that gave up after its log entry
// was written is finished by the next call, before that call reads.
func TestCommitFinishedByNextCall(t *testing.T) {
	cfg := smallConfig(t)
	ctx, cancel := context.WithCancel(t.Context())
	s := open(t, cassandra.WithHook(cfg, func(step string) bool {
		if step == "phase 1" {
			cancel()
		}
		return false
	}))
	b := groupBatch(10)
	if err := s.Commit(ctx, b); !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit: got %v, want context.Canceled", err)
	}
	checkWhole(t, s, b, true)
}

// TestLateLogEntryIsFenced: a log entry that lands after the store that
// wrote it died, later than the next store's Open, is never replayed; one
// written above the fence is.
func TestLateLogEntryIsFenced(t *testing.T) {
	cfg := smallConfig(t)
	a := open(t, cfg)
	if err := a.Commit(t.Context(), groupBatch(10)); err != nil {
		t.Fatal(err)
	}
	late := cassandra.LastTimestamp(a) // a timestamp a's head could have had
	cassandra.Crash(a)
	expireLease(t, cfg.Keyspace)
	b := open(t, cfg) // fences the log
	fence := cassandra.LastTimestamp(b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	sess := session(t)
	for _, tc := range []struct {
		name  string
		ts    func() int64
		whole bool
	}{
		{"BelowFence", func() int64 { return late }, false},
		{"AboveFence", func() int64 { return fence + 1 }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			batch := groupBatch(10)
			data, err := cassandra.EncodeBatch(batch)
			if err != nil {
				t.Fatal(err)
			}
			err = sess.Query("INSERT INTO "+cfg.Keyspace+".batch_log (slot, chunk, ts, chunks, data) VALUES (?, 0, ?, 1, ?)",
				3, tc.ts(), data).WithTimestamp(tc.ts()).Exec()
			if err != nil {
				t.Fatal(err)
			}
			s := open(t, cfg)
			checkWhole(t, s, batch, tc.whole)
			fence = cassandra.LastTimestamp(s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}

	// A slot is written again only once its batch is applied: an entry
	// whose chunks a later batch began to overwrite is not replayed.
	t.Run("Superseded", func(t *testing.T) {
		batch := groupBatch(10)
		data, err := cassandra.EncodeBatch(batch)
		if err != nil {
			t.Fatal(err)
		}
		insert := "INSERT INTO " + cfg.Keyspace + ".batch_log (slot, chunk, ts, chunks, data) VALUES (4, ?, ?, 2, ?)"
		if err := sess.Query(insert, 0, fence+1, data).WithTimestamp(fence + 1).Exec(); err != nil {
			t.Fatal(err)
		}
		if err := sess.Query(insert, 1, fence+2, []byte("later")).WithTimestamp(fence + 2).Exec(); err != nil {
			t.Fatal(err)
		}
		checkWhole(t, open(t, cfg), batch, false)
	})
}
