package timeline

import (
	"iter"
	"time"
)

// ActivityWindow is the precision of the activity index. An entry stands at
// the start of the window its activity time falls in, so a conversation
// with many messages a second moves in each member's index once a second
// rather than with every commit; the reader orders the entries of a window
// by the times of their newest messages, which it reads anyway (see
// MetaReader.RecentConversations), and so the list keeps its order to the
// millisecond.
const ActivityWindow = time.Second

// WindowOf returns the start of the activity window t falls in.
func WindowOf(t time.Time) time.Time { return t.Truncate(ActivityWindow) }

// Activity moves a user's conversation in the user's activity index, the
// conversation list ordered by last activity: from Prev (zero: not listed
// yet) to At, the server times of the newest message the user had and has
// in it. A store writes the entry at WindowOf(At) and removes it from where
// it stood (Stale). The writer never writes an Activity whose At and Prev
// fall in one window, nor two of one (User, Conv) in a batch.
type Activity struct {
	User, Conv uint64
	At, Prev   time.Time
}

// Entry returns the time a's entry stands at after it.
func (a *Activity) Entry() time.Time { return WindowOf(a.At) }

// Stale yields the times a's entry may stand at before it: Prev's window,
// and Prev itself where that differs, as an entry written by a version
// before the windows (2026-11-30) stands at its exact time. Deleting a time
// that holds no entry costs a tombstone and changes nothing.
func (a *Activity) Stale() iter.Seq[time.Time] {
	return func(yield func(time.Time) bool) {
		if a.Prev.IsZero() {
			return
		}
		w := WindowOf(a.Prev)
		if yield(w) && !w.Equal(a.Prev) {
			yield(a.Prev)
		}
	}
}

// Recent is an entry of a user's conversation list as the activity index
// lists it.
type Recent struct {
	Conversation
	Active time.Time // where the entry stands in the index: its window's start, or an exact time (see Activity.Stale)
}

// RecentScan picks, from a user's activity index read in order, the entries
// RecentConversations returns: those at positions offset to offset+limit-1
// and the rest of the windows they stand in. The zero value is not usable;
// see NewRecentScan.
type RecentScan struct {
	offset, limit int
	pos           int // position of the next entry
	first         int // position of entries[0]
	entries       []Recent
}

// NewRecentScan returns a scan for positions offset to offset+limit-1.
func NewRecentScan(offset, limit int) *RecentScan {
	return &RecentScan{offset: max(offset, 0), limit: limit}
}

// Add takes the next entry of the index, conv at active, and reports whether
// the scan needs more.
func (r *RecentScan) Add(user, conv uint64, active time.Time) bool {
	if r.limit <= 0 {
		return false
	}
	if n := len(r.entries); n == 0 || !WindowOf(r.entries[n-1].Active).Equal(WindowOf(active)) {
		switch {
		case r.pos <= r.offset:
			// A window that ends before the offset is not returned.
			r.entries, r.first = r.entries[:0], r.pos
		case r.pos >= r.offset+r.limit:
			return false
		}
	}
	r.entries = append(r.entries, Recent{Conversation: Conversation{User: user, Conv: conv}, Active: active})
	r.pos++
	return true
}

// Result returns the position of the first entry picked and the entries, of
// which only User, Conv and Active are set.
func (r *RecentScan) Result() (first int, entries []Recent) {
	if r.pos <= r.offset {
		return r.offset, nil // the index ends before the offset
	}
	return r.first, r.entries
}
