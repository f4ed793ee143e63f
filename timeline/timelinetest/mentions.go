package timelinetest

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
)

// testMentions: Mentions reads the records of one (conv, user) by range,
// never those of the neighbouring user or conversation, and the user 0 of
// the @all records like any other.
func testMentions(t *testing.T, s timeline.Store, ids *idGen) {
	conv, user := ids.id(), ids.id()
	neighbor := ids.id()
	var b timeline.Batch
	for _, seq := range []uint64{1, 2, 5, 9, math.MaxUint64} {
		b.Mentions = append(b.Mentions, timeline.Mention{Conv: conv, User: user, ConvSeq: seq})
	}
	for _, seq := range []uint64{2, 3, 6, 10, 11} {
		b.Mentions = append(b.Mentions, timeline.Mention{Conv: conv, User: 0, ConvSeq: seq})
	}
	b.Mentions = append(b.Mentions,
		timeline.Mention{Conv: conv, User: neighbor, ConvSeq: 3},
		timeline.Mention{Conv: neighbor, User: user, ConvSeq: 4},
		timeline.Mention{Conv: conv, User: user, ConvSeq: 5}) // twice: once stored
	commit(t, s, &b)
	checkStored(t, s, &b)

	cases := []struct {
		user uint64
		r    timeline.Range
		want []uint64
	}{
		{user, timeline.Range{From: 1}, []uint64{1, 2, 5, 9, math.MaxUint64}},
		{user, timeline.Range{From: 3}, []uint64{5, 9, math.MaxUint64}},
		{user, timeline.Range{From: 2, To: 9}, []uint64{2, 5, 9}},
		{user, timeline.Range{From: 2, To: 9, Limit: 2}, []uint64{2, 5}},
		{user, timeline.Range{From: 10, To: 11}, nil},
		{user, timeline.Range{From: math.MaxUint64}, []uint64{math.MaxUint64}},
		{0, timeline.Range{From: 1, To: 10}, []uint64{2, 3, 6, 10}},
		{neighbor, timeline.Range{From: 1}, []uint64{3}},
		{ids.id(), timeline.Range{From: 1}, nil},
	}
	for _, c := range cases {
		got, err := s.Mentions(t.Context(), conv, c.user, c.r)
		noErr(t, "Mentions", err)
		same(t, fmt.Sprintf("mentions of %#x in %+v", c.user, c.r), got, c.want)
	}
}

// testRewrite: a message committed again under its key (a recall or an
// edit rewrites the original) replaces the first version whole, and the
// timeline keeps its length.
func testRewrite(t *testing.T, s timeline.Store, ids *idGen) {
	conv := ids.id()
	first := messageAt(conv, 1)
	first.Mentions = []uint64{7, 8}
	b := timeline.Batch{Messages: []timeline.Message{first, messageAt(conv, 2)}}
	commit(t, s, &b)

	edited := first
	edited.Body, edited.Edited, edited.LastEdit = []byte("edited"), time.UnixMilli(epochMS+5), 2
	recalled := edited
	recalled.Body, recalled.Recalled, recalled.Mentions = nil, true, nil
	for _, m := range []timeline.Message{edited, recalled} {
		commit(t, s, &timeline.Batch{Messages: []timeline.Message{m}})
		got, err := s.Messages(t.Context(), conv, timeline.Range{From: 1})
		noErr(t, "Messages", err)
		same(t, "rewritten timeline", got, []timeline.Message{m, b.Messages[1]})
		byKey, err := s.MessagesByKey(t.Context(), []timeline.MessageKey{{Conv: conv, ConvSeq: 1}}, 0)
		noErr(t, "MessagesByKey", err)
		same(t, "rewritten message by key", byKey, []timeline.Message{m})
	}
	if last, err := s.LastConvSeq(t.Context(), conv); err != nil || last != 2 {
		t.Fatalf("LastConvSeq after rewrites = %d, %v; want 2", last, err)
	}
}
