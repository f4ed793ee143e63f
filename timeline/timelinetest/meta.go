package timelinetest

import (
	"math"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

func testGroup(t *testing.T, s timeline.Store, ids *idGen) {
	id, neighbor := ids.id(), ids.id()
	_, err := s.Group(t.Context(), id)
	wantErr(t, "Group of an unknown group", err, timeline.ErrNotFound)

	g := timeline.Group{ID: id, Name: "team", Owner: ids.id(), Created: time.UnixMilli(epochMS), Open: true}
	commit(t, s, &timeline.Batch{Groups: []timeline.Group{g}})
	checkStored(t, s, &timeline.Batch{Groups: []timeline.Group{g}})

	// An upsert replaces every field.
	g = timeline.Group{ID: id, Name: "renamed", Owner: ids.id(), Created: g.Created, MutedUntil: time.UnixMilli(epochMS + 60_000), Dismissed: true}
	commit(t, s, &timeline.Batch{Groups: []timeline.Group{g}})
	checkStored(t, s, &timeline.Batch{Groups: []timeline.Group{g}})

	// The profile, then back to none: an upsert clears what it leaves empty.
	g.Announcement, g.AvatarURL = "公告: standup at 10", "https://example.com/team.png"
	commit(t, s, &timeline.Batch{Groups: []timeline.Group{g}})
	checkStored(t, s, &timeline.Batch{Groups: []timeline.Group{g}})
	g.Announcement, g.AvatarURL = "", ""
	commit(t, s, &timeline.Batch{Groups: []timeline.Group{g}})
	checkStored(t, s, &timeline.Batch{Groups: []timeline.Group{g}})

	// A direct conversation: its pair and blocks, ids past 2^63 included.
	d := timeline.Group{ID: id | 1<<63, Created: time.UnixMilli(epochMS), Direct: [2]uint64{ids.id(), math.MaxUint64}, Blocked: [2]bool{false, true}}
	commit(t, s, &timeline.Batch{Groups: []timeline.Group{d}})
	checkStored(t, s, &timeline.Batch{Groups: []timeline.Group{d}})
	d.Blocked = [2]bool{true, false}
	commit(t, s, &timeline.Batch{Groups: []timeline.Group{d}})
	checkStored(t, s, &timeline.Batch{Groups: []timeline.Group{d}})

	_, err = s.Group(t.Context(), neighbor)
	wantErr(t, "Group of the next id", err, timeline.ErrNotFound)
}

func member(conv, user uint64, role wire.Role) timeline.Member {
	return timeline.Member{Conv: conv, User: user, Role: role, JoinedAt: user % 1000, DND: user%2 == 0}
}

func testMembers(t *testing.T, s timeline.Store, ids *idGen) {
	conv, other := ids.id(), ids.id()
	u1, u2, u3 := ids.id(), ids.id(), ids.id()
	// Written out of order: Members orders by user id.
	b := timeline.Batch{Members: []timeline.Member{
		member(conv, u3, wire.RoleMember),
		member(conv, u1, wire.RoleOwner),
		member(conv, u2, wire.RoleMember),
		member(other, u1, wire.RoleMember),
	}}
	commit(t, s, &b)
	checkStored(t, s, &b)

	// A role change, a DND change, a removal and the removal of a
	// non-member.
	u3dnd := member(conv, u3, wire.RoleMember)
	u3dnd.DND = !u3dnd.DND
	commit(t, s, &timeline.Batch{
		Members:       []timeline.Member{member(conv, u2, wire.RoleAdmin), u3dnd},
		RemoveMembers: []timeline.MemberKey{{Conv: conv, User: u1}, {Conv: conv, User: ids.id()}},
	})
	checkStored(t, s, &timeline.Batch{Members: []timeline.Member{
		member(conv, u2, wire.RoleAdmin),
		u3dnd,
		member(other, u1, wire.RoleMember),
	}})

	// Removing everyone leaves an empty list, as does a group never written.
	commit(t, s, &timeline.Batch{RemoveMembers: []timeline.MemberKey{{Conv: conv, User: u2}, {Conv: conv, User: u3}}})
	checkStored(t, s, &timeline.Batch{RemoveMembers: []timeline.MemberKey{{Conv: conv}, {Conv: ids.id()}}})
}

func conversation(user, conv uint64) timeline.Conversation {
	return timeline.Conversation{User: user, Conv: conv, JoinedAt: conv % 1000}
}

func testConversations(t *testing.T, s timeline.Store, ids *idGen) {
	user, neighbor := ids.id(), ids.id()
	unlisted, c1, c2, c3 := ids.id(), ids.id(), ids.id(), ids.id()
	// Entries written out of order, and a marker of a conversation without
	// an entry, which must neither be listed nor lend its ReadSeq to the
	// next entry.
	b := timeline.Batch{
		Conversations: []timeline.Conversation{
			conversation(user, c3), conversation(user, c1), conversation(user, c2),
			conversation(neighbor, c2),
		},
		Markers: []timeline.Marker{{User: user, Conv: unlisted, ReadSeq: 9}},
	}
	commit(t, s, &b)
	checkStored(t, s, &b)

	_, err := s.Conversation(t.Context(), user, ids.id())
	wantErr(t, "Conversation of an unknown conversation", err, timeline.ErrNotFound)
	checkConversations(t, s, ids.id(), nil)

	// Leaving rewrites the entry; the rest of the list stays.
	left := conversation(user, c2)
	left.LeftAt, left.DND = 40, true
	commit(t, s, &timeline.Batch{Conversations: []timeline.Conversation{left}})
	checkConversations(t, s, user, []timeline.Conversation{conversation(user, c1), left, conversation(user, c3)})
}

// testMarkers checks that ReadSeq is written by Markers alone: an entry
// write never moves it, whatever ReadSeq the entry carries.
func testMarkers(t *testing.T, s timeline.Store, ids *idGen) {
	// orphan sorts before conv, so that its marker lands before conv's
	// entry in a merged scan.
	user, orphan, conv := ids.id(), ids.id(), ids.id()
	entry := timeline.Conversation{User: user, Conv: conv, JoinedAt: 5, DND: true}
	marker := func(seq uint64) []timeline.Marker { return []timeline.Marker{{User: user, Conv: conv, ReadSeq: seq}} }
	withReadSeq := func(c timeline.Conversation, seq uint64) timeline.Conversation {
		c.ReadSeq = seq
		return c
	}
	steps := []struct {
		name string
		b    timeline.Batch
		want timeline.Conversation
	}{
		{"EntryAndMarker", timeline.Batch{Conversations: []timeline.Conversation{entry}, Markers: marker(7)}, withReadSeq(entry, 7)},
		{"Marker", timeline.Batch{Markers: marker(10)}, withReadSeq(entry, 10)},
		{"EntryWithoutReadSeq", timeline.Batch{Conversations: []timeline.Conversation{{User: user, Conv: conv, JoinedAt: 5, LeftAt: 20}}},
			timeline.Conversation{User: user, Conv: conv, JoinedAt: 5, LeftAt: 20, ReadSeq: 10}},
		{"EntryWithReadSeq", timeline.Batch{Conversations: []timeline.Conversation{withReadSeq(entry, 99)}}, withReadSeq(entry, 10)},
		{"MarkerToMax", timeline.Batch{Markers: marker(math.MaxUint64)}, withReadSeq(entry, math.MaxUint64)},
	}
	for _, step := range steps {
		commit(t, s, &step.b)
		checkConversations(t, s, user, []timeline.Conversation{step.want})
	}

	// A marker of a conversation the user has no entry for is kept, but is
	// no conversation until the entry is written.
	commit(t, s, &timeline.Batch{Markers: []timeline.Marker{{User: user, Conv: orphan, ReadSeq: 3}}})
	_, err := s.Conversation(t.Context(), user, orphan)
	wantErr(t, "Conversation with only a marker", err, timeline.ErrNotFound)
	checkConversations(t, s, user, []timeline.Conversation{withReadSeq(entry, math.MaxUint64)})
	commit(t, s, &timeline.Batch{Conversations: []timeline.Conversation{conversation(user, orphan)}})
	checkConversations(t, s, user, []timeline.Conversation{withReadSeq(conversation(user, orphan), 3), withReadSeq(entry, math.MaxUint64)})
}

func testDedup(t *testing.T, s timeline.Store, ids *idGen) {
	sender, neighbor := ids.id(), ids.id()
	dedup := func(sender uint64, clientMsgID string) timeline.Dedup {
		return timeline.Dedup{Sender: sender, ClientMsgID: clientMsgID, Conv: ids.id(), ConvSeq: 7, MsgID: ids.id(), Time: time.UnixMilli(epochMS + 1)}
	}
	_, err := s.Dedup(t.Context(), sender, "ab")
	wantErr(t, "Dedup of an unknown pair", err, timeline.ErrNotFound)

	// Client ids that are prefixes of each other, and the same client id
	// of two senders, are distinct pairs.
	b := timeline.Batch{Dedups: []timeline.Dedup{dedup(sender, "ab"), dedup(sender, "abc"), dedup(neighbor, "ab")}}
	commit(t, s, &b)
	checkStored(t, s, &b)
	for _, id := range []string{"a", "abcd", "", "AB"} {
		_, err := s.Dedup(t.Context(), sender, id)
		wantErr(t, "Dedup of "+id, err, timeline.ErrNotFound)
	}
}

func testClock(t *testing.T, s timeline.Store, ids *idGen) {
	n1, n2 := int64(ids.id()), int64(ids.id())
	checkClock(t, s, n1, 0)
	steps := []struct {
		b            timeline.Batch
		want1, want2 uint64
	}{
		{timeline.Batch{ClockNode: n1, Clock: 100}, 100, 0},
		{timeline.Batch{ClockNode: n2, Clock: math.MaxUint64}, 100, math.MaxUint64},
		{timeline.Batch{ClockNode: n1}, 100, math.MaxUint64}, // Clock 0 writes nothing
		{timeline.Batch{ClockNode: n1, Clock: 200}, 200, math.MaxUint64},
	}
	for _, step := range steps {
		commit(t, s, &step.b)
		checkClock(t, s, n1, step.want1)
		checkClock(t, s, n2, step.want2)
	}
}
