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
	at := func(ms int64) time.Time { return time.UnixMilli(1748779200000 + ms).UTC() }
	msg := func(conv, seq uint64, ms int64) timeline.Message {
		return timeline.Message{Conv: conv, ConvSeq: seq, ID: conv*10 + seq, Sender: u1, Kind: wire.KindNotice, Time: at(ms)}
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
		cs, err := s.RecentConversations(t.Context(), user, 0, 10)
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
