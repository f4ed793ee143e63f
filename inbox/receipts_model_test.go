package inbox

import (
	"slices"
	"testing"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// verifyReceipts checks READ_RECEIPTS of every live group of the model
// tests against the store they verified: for the group's newest message
// and its first, the members (replayed from the notices, with their join
// points) who received it, its sender left out, and of them those whose
// marker (checked against the model by verify) is at it or past it. It
// pages by 3, so that every group of more than three members pages.
func (m *model) verifyReceipts(t *testing.T, st timeline.Store, route func(id uint64) *Service, users int) {
	t.Helper()
	convs := map[uint64]bool{}
	for u := 1; u <= users; u++ {
		cs, err := st.Conversations(ctx, uint64(u))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			convs[c.Conv] = true
		}
	}
	for conv := range convs {
		g, err := st.Group(ctx, conv)
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := st.Messages(ctx, conv, timeline.Range{})
		if err != nil {
			t.Fatal(err)
		}
		if g.Dismissed || len(msgs) == 0 {
			continue
		}
		members, joined := map[uint64]bool{}, map[uint64]uint64{}
		for _, msg := range msgs {
			_, after := replay(t, members, msg)
			for u := range after {
				if !members[u] {
					joined[u] = msg.ConvSeq
				}
			}
			members = after
		}
		if len(members) == 0 {
			continue
		}
		for _, n := range []uint64{uint64(len(msgs)), 1} {
			checkReceipts(t, st, route(conv), conv, msgs[n-1], members, joined)
		}
	}
}

func checkReceipts(t *testing.T, st timeline.Store, svc *Service, conv uint64, msg timeline.Message, members map[uint64]bool, joined map[uint64]uint64) {
	t.Helper()
	var asker uint64
	var readers, others []uint64
	for u := range members {
		if joined[u] > msg.ConvSeq {
			continue
		}
		asker = u
		if u == msg.Sender {
			continue
		}
		c, err := st.Conversation(ctx, u, conv)
		if err != nil {
			t.Fatal(err)
		}
		if c.ReadSeq >= msg.ConvSeq {
			readers = append(readers, u)
		} else {
			others = append(others, u)
		}
	}
	if asker == 0 {
		return // every member joined after it
	}
	slices.Sort(readers)
	slices.Sort(others)
	for _, unread := range []bool{false, true} {
		want := readers
		if unread {
			want = others
		}
		q := ReceiptsQuery{Conv: conv, ConvSeq: msg.ConvSeq, Limit: 3, Unread: unread}
		var got []uint64
		for {
			r, err := svc.ReadReceipts(ctx, asker, q)
			if err != nil {
				t.Fatalf("conv %d: receipts of %d asked by %d: %v", conv, msg.ConvSeq, asker, err)
			}
			if r.Members != len(readers)+len(others) || r.Read != len(readers) {
				t.Fatalf("conv %d: receipts of %d (kind %v, sender %d): %d of %d, model %d of %d",
					conv, msg.ConvSeq, wire.Kind(msg.Kind), msg.Sender, r.Read, r.Members, len(readers), len(readers)+len(others))
			}
			got = append(got, r.Users...)
			if r.NextAfter == 0 {
				break
			}
			q.AfterUser = r.NextAfter
		}
		if !slices.Equal(got, want) {
			t.Fatalf("conv %d: receipts of %d (unread %v): %v, model %v", conv, msg.ConvSeq, unread, got, want)
		}
	}
}
