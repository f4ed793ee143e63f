package timelinetest

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/inboxd/inboxd/timeline"
)

// testReadBudget checks that Range.MaxBytes and MessagesByKey's maxBytes
// return exactly the longest prefix within the budget, never less than one
// message, for every cut point.
func testReadBudget(t *testing.T, s timeline.Store, ids *idGen) {
	c1, c2 := ids.id(), ids.id()
	const n = 9
	var b timeline.Batch
	for _, conv := range []uint64{c1, c2} {
		for seq := range uint64(n) {
			b.Messages = append(b.Messages, budgetMessage(conv, seq+1))
		}
	}
	commit(t, s, &b)

	// budgets returns, for want = 1..len(msgs), a budget that takes exactly
	// want messages: the sum of their sizes, and one byte short of adding
	// the next.
	type cut struct{ budget, want int }
	cuts := func(msgs []timeline.Message) []cut {
		out := []cut{{1, 1}}
		sum := 0
		for i := range msgs {
			sum += msgs[i].Size()
			out = append(out, cut{sum, i + 1})
			if i+1 < len(msgs) {
				out = append(out, cut{sum + msgs[i+1].Size() - 1, i + 1})
			}
		}
		return out
	}

	for _, desc := range []bool{false, true} {
		var all []timeline.Message
		for seq := range uint64(n) {
			all = append(all, budgetMessage(c1, seq+1))
		}
		if desc {
			slices.Reverse(all)
		}
		for _, c := range cuts(all) {
			t.Run(fmt.Sprintf("Messages/desc=%v/%d", desc, c.budget), func(t *testing.T) {
				got, err := s.Messages(t.Context(), c1, timeline.Range{Desc: desc, MaxBytes: c.budget})
				noErr(t, "Messages", err)
				same(t, "Messages", got, all[:c.want])
			})
		}
		t.Run(fmt.Sprintf("Messages/desc=%v/LimitFirst", desc), func(t *testing.T) {
			got, err := s.Messages(t.Context(), c1, timeline.Range{Desc: desc, Limit: 2, MaxBytes: 1 << 20})
			noErr(t, "Messages", err)
			same(t, "Messages", got, all[:2])
		})
	}

	// An inbox page: the two conversations interleaved.
	var keys []timeline.MessageKey
	var want []timeline.Message
	for seq := range uint64(n) {
		for _, conv := range []uint64{c2, c1} {
			keys = append(keys, timeline.MessageKey{Conv: conv, ConvSeq: seq + 1})
			want = append(want, budgetMessage(conv, seq+1))
		}
	}
	for _, c := range cuts(want) {
		t.Run(fmt.Sprintf("MessagesByKey/%d", c.budget), func(t *testing.T) {
			got, err := s.MessagesByKey(t.Context(), keys, c.budget)
			noErr(t, "MessagesByKey", err)
			same(t, "MessagesByKey", got, want[:c.want])
		})
	}
	t.Run("MessagesByKey/NoKeys", func(t *testing.T) {
		got, err := s.MessagesByKey(t.Context(), nil, 1)
		noErr(t, "MessagesByKey", err)
		same(t, "MessagesByKey(nil)", got, nil)
	})
	t.Run("MessagesByKey/MissingWithinBudget", func(t *testing.T) {
		_, err := s.MessagesByKey(t.Context(), []timeline.MessageKey{{Conv: c1, ConvSeq: 1}, {Conv: c1, ConvSeq: n + 1}}, 1<<20)
		wantErr(t, "MessagesByKey", err, timeline.ErrNotFound)
	})
}

// budgetMessage is messageAt with a body whose size varies with seq, so
// that the cut points of a budget are uneven.
func budgetMessage(conv, seq uint64) timeline.Message {
	m := messageAt(conv, seq)
	m.Body = bytes.Repeat([]byte{byte('a' + seq%26)}, int(seq%4)*700+int(conv%3)*50+10)
	return m
}
