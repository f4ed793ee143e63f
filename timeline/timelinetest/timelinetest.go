// Package timelinetest is the conformance suite of timeline.Store: every
// backend runs Run, unchanged, and passes it.
//
// The suite assumes nothing about what a store already holds, so that it can
// run against a long-lived database (a Cassandra node) as well as a fresh
// directory: each Run draws a random base for the ids it uses, every subtest
// writes under ids of its own, and a few fixed ids (the top of the id space)
// are always written with the same content, so that reruns leave them as they
// were.
//
// Times are compared as instants at millisecond precision, the precision the
// contract keeps; empty and nil byte slices are equal.
//
// This package is the server's own (README, "Layout"): it has no
// compatibility promise. Clients use packages client, wire and token.
package timelinetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
)

// Run runs the conformance suite against stores made by open. Each subtest
// opens one store; open registers its Close with t.Cleanup and must accept a
// store the suite closed already (Close then returns ErrClosed).
func Run(t *testing.T, open func(t *testing.T) timeline.Store) {
	ids := newIDs()
	tests := []struct {
		name string
		run  func(t *testing.T, s timeline.Store, ids *idGen)
	}{
		{"Ranges", testRanges},
		{"Paging", testPaging},
		{"LastSeq", testLastSeq},
		{"AdjacentKeys", testAdjacentKeys},
		{"MessagesByKey", testMessagesByKey},
		{"ReadBudget", testReadBudget},
		{"RoundTrip", testRoundTrip},
		{"Idempotent", testIdempotent},
		{"Group", testGroup},
		{"Members", testMembers},
		{"Conversations", testConversations},
		{"Markers", testMarkers},
		{"Activity", testActivity},
		{"Dedup", testDedup},
		{"Mentions", testMentions},
		{"Rewrite", testRewrite},
		{"Clock", testClock},
		{"Restrictions", testRestrictions},
		{"Outbox", testOutbox},
		{"ConcurrentWriters", testConcurrentWriters},
		{"LargeBatch", testLargeBatch},
		{"BatchEmptyReset", testBatchEmptyReset},
		{"CommitContextDone", testCommitContextDone},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, open(t), ids)
		})
	}
}

// idGen hands out ids no other subtest, and no earlier run, has used.
// Consecutive ids are adjacent in key space on purpose: a backend whose range
// scans bleed into the next key fails on them.
type idGen struct{ next atomic.Uint64 }

func newIDs() *idGen {
	g := new(idGen)
	// A random base in [2^62, 2^62+2^61) leaves room above it for the ids a
	// run takes and keeps clear of the fixed ids at the top of the space.
	g.next.Store(1<<62 + rand.Uint64N(1<<61))
	return g
}

func (g *idGen) id() uint64 { return g.next.Add(1) }

// carry returns an id whose low k bytes are 0xFF, so that id+1 carries into
// byte k: 0x…12FF and 0x…1300 must stay apart in a byte-ordered key space.
func carry(k int) uint64 {
	low := uint64(1)<<(8*k) - 1
	return rand.Uint64N(1<<(64-8*k)-1)<<(8*k) | low
}

// commit commits b and fails the test on error.
func commit(t *testing.T, s timeline.Store, b *timeline.Batch) {
	t.Helper()
	if err := s.Commit(t.Context(), b); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

// noErr fails the test if err is not nil.
func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// wantErr fails the test unless err wraps target.
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want one wrapping %v", what, err, target)
	}
}

// same fails the test unless got and want hold equal entries in the same
// order, after norm.
func same[T any](t *testing.T, what string, got, want []T) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d entries, want %d\n got %s\nwant %s", what, len(got), len(want), show(got), show(want))
	}
	for i := range got {
		if g, w := norm(got[i]), norm(want[i]); !reflect.DeepEqual(g, w) {
			t.Fatalf("%s: entry %d:\n got %s\nwant %s", what, i, show(g), show(w))
		}
	}
}

// sameOne is same for one value.
func sameOne[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	same(t, what, []T{got}, []T{want})
}

// norm brings a value to the form the suite compares: times at millisecond
// precision in UTC and without a monotonic reading, empty bodies nil.
func norm[T any](v T) T {
	switch x := any(&v).(type) {
	case *timeline.Message:
		x.Time, x.Edited = msTime(x.Time), msTime(x.Edited)
		if len(x.Body) == 0 {
			x.Body = nil
		}
		if len(x.Mentions) == 0 {
			x.Mentions = nil
		}
	case *timeline.Group:
		x.Created, x.MutedUntil = msTime(x.Created), msTime(x.MutedUntil)
	case *timeline.Member:
		x.MutedUntil = msTime(x.MutedUntil)
	case *timeline.Dedup:
		x.Time = msTime(x.Time)
	case *timeline.OutboxRecord:
		x.Time, x.Prev = msTime(x.Time), msTime(x.Prev)
	}
	return v
}

func msTime(t time.Time) time.Time {
	return time.UnixMilli(t.UnixMilli()).UTC()
}

// show formats v for a failure message, cut short: a 64 KiB body helps no one.
func show(v any) string {
	const max = 600
	s := fmt.Sprintf("%+v", v)
	if len(s) > max {
		s = s[:max] + fmt.Sprintf("… (%d bytes)", len(s))
	}
	return s
}
