package timelinetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
)

// testActivity checks the activity index: RecentConversations lists the
// entries latest activity first, higher conv id first on equal times, pages
// by offset and limit, follows every move, and merges read markers in.
func testActivity(t *testing.T, s timeline.Store, ids *idGen) {
	user, neighbor := ids.id(), ids.id()
	c1, c2, c3, c4, c5 := ids.id(), ids.id(), ids.id(), ids.id(), ids.id()
	at := func(ms int64) time.Time { return time.UnixMilli(epochMS + ms) }
	b := timeline.Batch{
		Conversations: []timeline.Conversation{conversation(user, c1), conversation(user, c2), conversation(user, c3),
			conversation(user, c4), conversation(user, c5), conversation(neighbor, c1)},
		Markers: []timeline.Marker{{User: user, Conv: c2, ReadSeq: 7}},
		Activities: []timeline.Activity{
			{User: user, Conv: c1, At: at(10)},
			{User: user, Conv: c2, At: at(30)},
			{User: user, Conv: c3, At: at(20)},
			{User: user, Conv: c4, At: at(20)},                // c3's time: the higher id, c4, first
			{User: user, Conv: c5, At: time.UnixMilli(-5000)}, // before 1970: last
			{User: neighbor, Conv: c1, At: at(99)},
		},
	}
	commit(t, s, &b)
	entry := func(conv uint64) timeline.Conversation {
		c := conversation(user, conv)
		if conv == c2 {
			c.ReadSeq = 7
		}
		return c
	}
	check := func(what string, want ...uint64) {
		t.Helper()
		var all []timeline.Conversation
		for _, conv := range want {
			all = append(all, entry(conv))
		}
		for offset := 0; offset <= len(all); offset++ {
			for _, limit := range []int{1, 2, len(all) + 1} {
				got, err := s.RecentConversations(t.Context(), user, offset, limit)
				noErr(t, "RecentConversations", err)
				same(t, fmt.Sprintf("%s: RecentConversations(offset %d, limit %d)", what, offset, limit),
					got, all[offset:min(len(all), offset+limit)])
			}
		}
	}
	check("written", c2, c4, c3, c1, c5)

	// Moves: c1 to the front, c5 past c3 and c4 on their time (a higher id),
	// and c2 back in time (a clock set back).
	commit(t, s, &timeline.Batch{Activities: []timeline.Activity{
		{User: user, Conv: c1, At: at(40), Prev: at(10)},
		{User: user, Conv: c5, At: at(20), Prev: time.UnixMilli(-5000)},
		{User: user, Conv: c2, At: at(5), Prev: at(30)},
	}})
	check("moved", c1, c5, c4, c3, c2)
	// Moves a second and more apart, as a store may key entries coarser
	// than the millisecond (timeline/pebble keys them by the tenth of a
	// second).
	commit(t, s, &timeline.Batch{Activities: []timeline.Activity{
		{User: user, Conv: c3, At: at(1500), Prev: at(20)},
		{User: user, Conv: c4, At: at(1499), Prev: at(20)},
		{User: user, Conv: c1, At: at(-2500), Prev: at(40)},
	}})
	check("moved across seconds", c3, c4, c5, c2, c1)

	got, err := s.RecentConversations(t.Context(), ids.id(), 0, 10)
	noErr(t, "RecentConversations of a user without conversations", err)
	same(t, "RecentConversations of a user without conversations", got, nil)
	got, err = s.RecentConversations(t.Context(), neighbor, 0, 10)
	noErr(t, "RecentConversations", err)
	same(t, "the neighbor's list", got, []timeline.Conversation{conversation(neighbor, c1)})
}
