package pebble_test

import (
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/pebble"
	"github.com/inboxd/inboxd/wire"
)

// TestUpgradeFromFormat1: a store written by format 1 (no activity index,
// member records without flags) opens with its index built from the
// conversation entries and do-not-disturb copied onto the member records.
func TestUpgradeFromFormat1(t *testing.T) {
	const a, b = 100, 200
	const u1, u2, u3 = 1, 2, 3
	// In tenths of a second, so that no two messages share an activity window.
	at := func(ds int64) time.Time { return time.UnixMilli(1748779200000 + 100*ds).UTC() }
	msg := func(conv, seq uint64, ds int64) timeline.Message {
		return timeline.Message{Conv: conv, ConvSeq: seq, ID: conv*10 + seq, Sender: u1, Kind: wire.KindNotice, Time: at(ds)}
	}
	fs := vfs.NewMem()
	s := open(t, pebble.Options{Dir: "db", FS: fs})
	// What format 1 wrote: no Activities.
	err := s.Commit(t.Context(), &timeline.Batch{
		Messages: []timeline.Message{msg(a, 1, 10), msg(a, 2, 20), msg(a, 3, 30), msg(b, 1, 25)},
		Conversations: []timeline.Conversation{
			{User: u1, Conv: a, JoinedAt: 1, DND: true}, {User: u1, Conv: b, JoinedAt: 1},
			{User: u2, Conv: a, JoinedAt: 1},
			{User: u3, Conv: a, JoinedAt: 1, LeftAt: 2, DND: true},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Member records in format 1's encoding: version, role, joined_at,
	// muted_until, and no flags.
	for _, u := range []uint64{u1, u2} {
		rawSet(t, fs, "db", memberKey(a, u), []byte{1, byte(wire.RoleMember), 1, 0})
	}
	rawSet(t, fs, "db", []byte("v"), []byte{1, 1})

	s = open(t, pebble.Options{Dir: "db", FS: fs})
	for user, want := range map[uint64][]uint64{u1: {a, b}, u2: {a}, u3: {a}} {
		if got := recentConvIDs(t, s, user); !slices.Equal(got, want) {
			t.Errorf("user %d: conversations by activity %v, want %v", user, got, want)
		}
	}
	// u3 left at conv_seq 2 (time 20): a later move from there finds the
	// index entry where the upgrade put it.
	err = s.Commit(t.Context(), &timeline.Batch{
		Activities: []timeline.Activity{{User: u3, Conv: a, At: at(50), Prev: at(20)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cs, err := s.RecentConversations(t.Context(), u3, 0, 10); err != nil || len(cs) != 1 {
		t.Fatalf("u3 after a move: %+v, %v; want one entry", cs, err)
	}
	ms, err := s.Members(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	want := []timeline.Member{{Conv: a, User: u1, Role: wire.RoleMember, JoinedAt: 1, DND: true},
		{Conv: a, User: u2, Role: wire.RoleMember, JoinedAt: 1}}
	for i := range ms {
		ms[i].MutedUntil = time.Time{}
	}
	if !slices.Equal(ms, want) {
		t.Errorf("members after the upgrade %+v, want %+v", ms, want)
	}
}

func memberKey(conv, user uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64([]byte{'m'}, conv), user)
}

// TestUpgradeFromFormat2: format 2 keyed activity index entries by their
// exact time; Open rebuilds the index in windows, so that the list keeps
// its order and the next move finds the entry where it stands.
func TestUpgradeFromFormat2(t *testing.T) {
	const user, a, b = 7, 300, 400
	at := func(ms int64) time.Time { return time.UnixMilli(1748779201000 + ms).UTC() } // windows start at whole tenths
	fs := vfs.NewMem()
	s := open(t, pebble.Options{Dir: "db", FS: fs})
	err := s.Commit(t.Context(), &timeline.Batch{
		// a's newest message is later than b's within one window: a first.
		Messages: []timeline.Message{{Conv: a, ConvSeq: 1, ID: 1, Kind: wire.KindNotice, Time: at(150)},
			{Conv: b, ConvSeq: 1, ID: 2, Kind: wire.KindNotice, Time: at(110)}},
		Conversations: []timeline.Conversation{{User: user, Conv: a, JoinedAt: 1}, {User: user, Conv: b, JoinedAt: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// What format 2 wrote: b's entry at its exact time and no value (a has
	// none: the rebuild must not depend on what the old index held).
	key := binary.BigEndian.AppendUint64([]byte{'a'}, user)
	key = binary.BigEndian.AppendUint64(key, ^(uint64(at(110).UnixMilli()) ^ 1<<63))
	rawSet(t, fs, "db", binary.BigEndian.AppendUint64(key, ^uint64(b)), []byte{1})
	rawSet(t, fs, "db", []byte("v"), []byte{1, 2})

	s = open(t, pebble.Options{Dir: "db", FS: fs})
	listed := func(what string, want ...uint64) {
		t.Helper()
		if got := recentConvIDs(t, s, user); !slices.Equal(got, want) {
			t.Fatalf("%s: conversations by activity %v, want %v", what, got, want)
		}
	}
	listed("after the upgrade", a, b)
	err = s.Commit(t.Context(), &timeline.Batch{Activities: []timeline.Activity{{User: user, Conv: b, At: at(190), Prev: at(110)}}})
	if err != nil {
		t.Fatal(err)
	}
	listed("after b's move within the window", b, a)
	err = s.Commit(t.Context(), &timeline.Batch{Activities: []timeline.Activity{{User: user, Conv: a, At: at(3000), Prev: at(150)}}})
	if err != nil {
		t.Fatal(err)
	}
	listed("after a's move to a later window", a, b)
}

// recentConvIDs returns the conv ids of the first ten entries of user's
// conversation list by activity.
func recentConvIDs(t *testing.T, s *pebble.Store, user uint64) []uint64 {
	t.Helper()
	cs, err := s.RecentConversations(t.Context(), user, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, c := range cs {
		ids = append(ids, c.Conv)
	}
	return ids
}
