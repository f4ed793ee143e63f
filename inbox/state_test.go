package inbox

import (
	"testing"

	"github.com/inboxd/inboxd/timeline"
)

// TestReserveDoubles checks that a commit of 64 sends to 100 members moves
// its rows and deliveries to new memory a logarithmic number of times:
// append alone grows a large slice by a quarter, and copied a commit's rows
// into some thirty arrays, five times their size in all.
func TestReserveDoubles(t *testing.T) {
	const sends, members = 64, 100
	tx := &txn{}
	moves := 0
	for range sends {
		tx.reserve(members)
		for u := range uint64(members) {
			before := cap(tx.b.Rows)
			tx.b.Rows = append(tx.b.Rows, timeline.Row{User: u})
			tx.deliveries = append(tx.deliveries, delivery{})
			if cap(tx.b.Rows) != before {
				moves++
			}
		}
	}
	// reserve moves them once a doubling, before a send, never row by row.
	if moves > 0 || cap(tx.b.Rows) > 2*sends*members || cap(tx.deliveries) > 2*sends*members {
		t.Errorf("%d rows: %d moves within a send, capacities %d and %d; want none and at most twice the rows",
			len(tx.b.Rows), moves, cap(tx.b.Rows), cap(tx.deliveries))
	}
}

func TestGrow(t *testing.T) {
	for _, tc := range []struct {
		len, cap, n int
		want        int // the capacity after
	}{
		{0, 0, 100, 100},
		{100, 100, 100, 200},
		{100, 100, 1, 200},   // doubles rather than grow by a quarter
		{100, 150, 50, 150},  // room enough: unchanged
		{100, 150, 300, 400}, // n beyond doubling: exactly what is asked
	} {
		s := grow(make([]int, tc.len, tc.cap), tc.n)
		if len(s) != tc.len || cap(s) < tc.want || cap(s) > tc.want+tc.want/4 {
			t.Errorf("grow(len %d cap %d, %d): len %d cap %d, want len %d cap about %d",
				tc.len, tc.cap, tc.n, len(s), cap(s), tc.len, tc.want)
		}
	}
}
