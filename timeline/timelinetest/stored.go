package timelinetest

import (
	"cmp"
	"fmt"
	"slices"
	"testing"

	"github.com/inboxd/inboxd/timeline"
)

// checkStored fails the test unless the store holds exactly what b wrote
// under every key b writes to. Timelines and lists are read whole, so that an
// entry the store holds beyond b's fails as surely as a missing one. It
// assumes nothing else wrote under those keys and b writes no key twice.
func checkStored(t *testing.T, s timeline.Store, b *timeline.Batch) {
	t.Helper()
	c := t.Context()
	for _, k := range kinds() {
		k.checkStored(t, s, b)
	}
	for _, g := range b.Groups {
		got, err := s.Group(c, g.ID)
		noErr(t, "Group", err)
		sameOne(t, fmt.Sprintf("group %#x", g.ID), got, g)
	}
	removed := func(m timeline.Member) bool {
		return slices.Contains(b.RemoveMembers, timeline.MemberKey{Conv: m.Conv, User: m.User})
	}
	memberConvs := append(keys(b.Members, memberConv), keys(b.RemoveMembers, func(k timeline.MemberKey) uint64 { return k.Conv })...)
	for _, conv := range keys(memberConvs, func(id uint64) uint64 { return id }) {
		got, err := s.Members(c, conv)
		noErr(t, "Members", err)
		want := sortedWhere(b.Members, func(m timeline.Member) bool { return m.Conv == conv && !removed(m) }, memberUser)
		same(t, fmt.Sprintf("members of %#x", conv), got, want)
	}
	for _, user := range keys(b.Conversations, convUser) {
		want := sortedWhere(b.Conversations, func(cv timeline.Conversation) bool { return cv.User == user }, convConv)
		for i := range want {
			want[i].ReadSeq = markerOf(b, user, want[i].Conv)
		}
		checkConversations(t, s, user, want)
	}
	for _, d := range b.Dedups {
		got, err := s.Dedup(c, d.Sender, d.ClientMsgID)
		noErr(t, "Dedup", err)
		sameOne(t, fmt.Sprintf("dedup %#x/%q", d.Sender, d.ClientMsgID), got, d)
	}
	type convUser struct{ conv, user uint64 }
	mentioned := make(map[convUser][]uint64)
	for _, m := range b.Mentions {
		k := convUser{m.Conv, m.User}
		if !slices.Contains(mentioned[k], m.ConvSeq) {
			mentioned[k] = append(mentioned[k], m.ConvSeq)
		}
	}
	for k, want := range mentioned {
		slices.Sort(want)
		got, err := s.Mentions(c, k.conv, k.user, timeline.Range{From: 1})
		noErr(t, "Mentions", err)
		same(t, fmt.Sprintf("mentions of %#x in %#x", k.user, k.conv), got, want)
	}
	if b.Clock != 0 {
		checkClock(t, s, b.ClockNode, b.Clock)
	}
}

// checkConversations fails the test unless the user's conversation list is
// exactly want, read whole and entry by entry.
func checkConversations(t *testing.T, s timeline.Store, user uint64, want []timeline.Conversation) {
	t.Helper()
	got, err := s.Conversations(t.Context(), user)
	noErr(t, "Conversations", err)
	same(t, fmt.Sprintf("conversations of %#x", user), got, want)
	for _, w := range want {
		got, err := s.Conversation(t.Context(), user, w.Conv)
		noErr(t, "Conversation", err)
		sameOne(t, fmt.Sprintf("conversation %#x of %#x", w.Conv, user), got, w)
	}
}

func checkClock(t *testing.T, s timeline.Store, node int64, want uint64) {
	t.Helper()
	got, err := s.Clock(t.Context(), node)
	noErr(t, "Clock", err)
	if got != want {
		t.Fatalf("clock of node %d: got %d, want %d", node, got, want)
	}
}

// markerOf returns the read marker b sets for (user, conv), 0 if none: the
// contract leaves ReadSeq to markers alone.
func markerOf(b *timeline.Batch, user, conv uint64) uint64 {
	var seq uint64
	for _, m := range b.Markers {
		if m.User == user && m.Conv == conv {
			seq = m.ReadSeq
		}
	}
	return seq
}

func memberConv(m timeline.Member) uint64     { return m.Conv }
func memberUser(m timeline.Member) uint64     { return m.User }
func convUser(c timeline.Conversation) uint64 { return c.User }
func convConv(c timeline.Conversation) uint64 { return c.Conv }

// keys returns the distinct keys of items, ascending.
func keys[T any](items []T, key func(T) uint64) []uint64 {
	ks := make([]uint64, len(items))
	for i, v := range items {
		ks[i] = key(v)
	}
	slices.Sort(ks)
	return slices.Compact(ks)
}

// sortedWhere returns a copy of the items that keep accepts, ordered by.
func sortedWhere[T any](items []T, keep func(T) bool, by func(T) uint64) []T {
	var out []T
	for _, v := range items {
		if keep(v) {
			out = append(out, v)
		}
	}
	slices.SortStableFunc(out, func(a, b T) int { return cmp.Compare(by(a), by(b)) })
	return out
}
