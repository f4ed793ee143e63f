package cassandra_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// TestUpgradeFromFormat1: a keyspace written by format 1 (no activity
// index, members without dnd) opens with its index built from the
// conversation entries and do-not-disturb copied onto the member records.
func TestUpgradeFromFormat1(t *testing.T) {
	const a, b = 100, 200
	const u1, u2, u3 = 1, 2, 3
	// In tenths of a second, so that no two messages share an activity window.
	at := func(ds int64) time.Time { return time.UnixMilli(1748779200000 + 100*ds).UTC() }
	msg := func(conv, seq uint64, ds int64) timeline.Message {
		return timeline.Message{Conv: conv, ConvSeq: seq, ID: conv*10 + seq, Sender: u1, Kind: wire.KindNotice, Time: at(ds)}
	}
	cfg := config(t, "_upgrade")
	s := open(t, cfg)
	// What format 1 wrote: no Activities.
	err := s.Commit(t.Context(), &timeline.Batch{
		Messages: []timeline.Message{msg(a, 1, 10), msg(a, 2, 20), msg(a, 3, 30), msg(b, 1, 25)},
		Members: []timeline.Member{{Conv: a, User: u1, Role: wire.RoleMember, JoinedAt: 1},
			{Conv: a, User: u2, Role: wire.RoleMember, JoinedAt: 1}},
		Conversations: []timeline.Conversation{
			{User: u1, Conv: a, JoinedAt: 1, DND: true}, {User: u1, Conv: b, JoinedAt: 1},
			{User: u2, Conv: a, JoinedAt: 1},
			{User: u3, Conv: a, JoinedAt: 1, LeftAt: 2, DND: true},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	closeOnce(t, s)
	sess := session(t)
	for _, stmt := range []string{
		"DELETE dnd FROM %s.members WHERE conv = 100 AND user IN (1, 2)", // format 1 had no such column: null
		"UPDATE %s.settings SET value = 1 WHERE name = 'format'",
	} {
		if err := sess.Query(fmt.Sprintf(stmt, cfg.Keyspace)).Exec(); err != nil {
			t.Fatal(err)
		}
	}

	s = open(t, cfg)
	for user, want := range map[uint64][]uint64{u1: {a, b}, u2: {a}, u3: {a}} {
		_, cs, err := s.RecentConversations(t.Context(), user, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, c := range cs {
			got = append(got, c.Conv)
		}
		if !slices.Equal(got, want) {
			t.Errorf("user %d: conversations by activity %v, want %v", user, got, want)
		}
	}
	ms, err := s.Members(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || !ms[0].DND || ms[1].DND {
		t.Errorf("members after the upgrade %+v: want u1 with DND, u2 without", ms)
	}
	var format int64
	if err := sess.Query(fmt.Sprintf("SELECT value FROM %s.settings WHERE name = 'format'", cfg.Keyspace)).Scan(&format); err != nil || format != 2 {
		t.Errorf("format after the upgrade: %d, %v; want 2", format, err)
	}
}

// TestMoveFromExactEntry: versions before the activity windows wrote an
// index row at its exact time; the store lists it where it stands, and the
// next move of the conversation deletes it there.
func TestMoveFromExactEntry(t *testing.T) {
	const user, conv = 7, 300
	exact := time.UnixMilli(1748779201234).UTC()
	cfg := config(t, "_exact")
	s := open(t, cfg)
	if err := s.Commit(t.Context(), &timeline.Batch{Conversations: []timeline.Conversation{{User: user, Conv: conv, JoinedAt: 1}}}); err != nil {
		t.Fatal(err)
	}
	insert := fmt.Sprintf("INSERT INTO %s.conversation_activity (user, active, conv) VALUES (?, ?, ?)", cfg.Keyspace)
	if err := session(t).Query(insert, user, exact.UnixMilli(), conv).Exec(); err != nil {
		t.Fatal(err)
	}
	listed := func(what string, want time.Time) {
		t.Helper()
		_, got, err := s.RecentConversations(t.Context(), user, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Conv != conv || !got[0].Active.Equal(want) {
			t.Fatalf("%s: listed %+v, want conv %d once at %v", what, got, conv, want)
		}
	}
	listed("a row written exactly", exact)
	later := exact.Add(3 * time.Second)
	if err := s.Commit(t.Context(), &timeline.Batch{Activities: []timeline.Activity{{User: user, Conv: conv, At: later, Prev: exact}}}); err != nil {
		t.Fatal(err)
	}
	listed("after a move", timeline.WindowOf(later))
	// The reader skips a conversation it listed already, so a row left
	// behind would not show: look at the partition itself.
	var rows int
	count := fmt.Sprintf("SELECT COUNT(*) FROM %s.conversation_activity WHERE user = ?", cfg.Keyspace)
	if err := session(t).Query(count, user).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("index rows after the move: %d, %v; want 1", rows, err)
	}
}
