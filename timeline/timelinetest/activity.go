package timelinetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
)

// testActivity checks the activity index: entries stand at the start of
// their activity's window (timeline.ActivityWindow), RecentConversations
// lists them latest window first, higher conv id first within a window,
// returns the whole windows its page overlaps, follows every move, and
// merges read markers in.
func testActivity(t *testing.T, s timeline.Store, ids *idGen) {
	user, neighbor := ids.id(), ids.id()
	c1, c2, c3, c4, c5 := ids.id(), ids.id(), ids.id(), ids.id(), ids.id()
	at := func(sec, ms int64) time.Time {
		return time.UnixMilli(epochMS + sec*timeline.ActivityWindow.Milliseconds() + ms)
	}
	b := timeline.Batch{
		Conversations: []timeline.Conversation{conversation(user, c1), conversation(user, c2), conversation(user, c3),
			conversation(user, c4), conversation(user, c5), conversation(neighbor, c1)},
		Markers: []timeline.Marker{{User: user, Conv: c2, ReadSeq: 7}},
		Activities: []timeline.Activity{
			{User: user, Conv: c1, At: at(1, 100)},
			{User: user, Conv: c2, At: at(3, 500)},
			{User: user, Conv: c3, At: at(2, 700)},
			{User: user, Conv: c4, At: at(2, 200)},            // c3's window: the higher id, c4, first
			{User: user, Conv: c5, At: time.UnixMilli(-5500)}, // before 1970: last
			{User: neighbor, Conv: c1, At: at(9, 0)},
		},
	}
	commit(t, s, &b)
	type listed struct {
		conv   uint64
		window time.Time
	}
	check := func(what string, want ...listed) {
		t.Helper()
		for offset := 0; offset <= len(want)+1; offset++ {
			for _, limit := range []int{1, 2, len(want) + 1} {
				// The page's positions, widened to the windows they stand in.
				lo, hi := min(offset, len(want)), min(offset+limit, len(want))
				for lo > 0 && lo < len(want) && want[lo-1].window.Equal(want[lo].window) {
					lo--
				}
				for hi > lo && hi < len(want) && want[hi].window.Equal(want[hi-1].window) {
					hi++
				}
				var entries []timeline.Recent
				for _, l := range want[lo:hi] {
					c := conversation(user, l.conv)
					if l.conv == c2 {
						c.ReadSeq = 7
					}
					entries = append(entries, timeline.Recent{Conversation: c, Active: l.window})
				}
				wantFirst := lo
				if offset >= len(want) {
					wantFirst = offset
				}
				first, got, err := s.RecentConversations(t.Context(), user, offset, limit)
				noErr(t, "RecentConversations", err)
				page := fmt.Sprintf("%s: RecentConversations(offset %d, limit %d)", what, offset, limit)
				if first != wantFirst {
					t.Fatalf("%s: first %d, want %d", page, first, wantFirst)
				}
				same(t, page, got, entries)
			}
		}
	}
	w := func(sec int64) time.Time { return at(sec, 0) }
	check("written", listed{c2, w(3)}, listed{c4, w(2)}, listed{c3, w(2)}, listed{c1, w(1)}, listed{c5, time.UnixMilli(-6000)})

	// Moves: c1 to the front, c5 into c3 and c4's window (the highest id
	// there), and c2 back in time (a clock set back). Each Prev is the exact
	// time the entry was moved for, not its window.
	commit(t, s, &timeline.Batch{Activities: []timeline.Activity{
		{User: user, Conv: c1, At: at(4, 0), Prev: at(1, 100)},
		{User: user, Conv: c5, At: at(2, 900), Prev: time.UnixMilli(-5500)},
		{User: user, Conv: c2, At: at(0, 5), Prev: at(3, 500)},
	}})
	check("moved", listed{c1, w(4)}, listed{c5, w(2)}, listed{c4, w(2)}, listed{c3, w(2)}, listed{c2, w(0)})

	first, got, err := s.RecentConversations(t.Context(), ids.id(), 0, 10)
	noErr(t, "RecentConversations of a user without conversations", err)
	same(t, "RecentConversations of a user without conversations", got, nil)
	if first != 0 {
		t.Fatalf("RecentConversations of a user without conversations: first %d", first)
	}
	_, got, err = s.RecentConversations(t.Context(), neighbor, 0, 10)
	noErr(t, "RecentConversations", err)
	same(t, "the neighbor's list", got, []timeline.Recent{{Conversation: conversation(neighbor, c1), Active: w(9)}})
}
