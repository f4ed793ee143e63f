package timelinetest

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// awkwardBatch returns a batch of every record type whose fields take the
// values backends get wrong: zero bytes, empty and 64 KiB bodies, non-ASCII
// ids, sub-millisecond and pre-1970 times, zero times, maximal integers.
func awkwardBatch(ids *idGen) *timeline.Batch {
	const max = math.MaxUint64
	conv, user, sender := ids.id(), ids.id(), ids.id()
	long := make([]byte, 64<<10)
	for i := range long {
		long[i] = byte(rand.Uint32())
	}
	// Times the store keeps at millisecond precision, whatever their zone.
	fine := time.Date(2031, 3, 4, 5, 6, 7, 891_234_567, time.FixedZone("UTC+5:30", 5*3600+1800))
	pre1970 := time.UnixMilli(-1)
	return &timeline.Batch{
		Messages: []timeline.Message{
			{Conv: conv, ConvSeq: 1, ID: ids.id(), Sender: sender, ClientMsgID: "ид-客户端-🙂", Kind: wire.KindText, Body: []byte("\x00a\x00\x00"), Time: fine},
			{Conv: conv, ConvSeq: 2, ID: ids.id(), Sender: sender, ClientMsgID: "empty", Kind: wire.KindText, Body: []byte{}, Time: pre1970},
			{Conv: conv, ConvSeq: 3, ID: ids.id(), Kind: wire.KindNotice, Body: []byte(`{"op":"join"}`), Time: time.UnixMilli(epochMS)},
			{Conv: conv, ConvSeq: 4, ID: ids.id(), Sender: sender, ClientMsgID: strings.Repeat("x", 200), Kind: 2, Body: long, Time: time.UnixMilli(epochMS)},
			{Conv: conv, ConvSeq: max, ID: max, Sender: max, ClientMsgID: "max", Kind: math.MaxUint16, Body: []byte{0xFF}, Time: time.UnixMilli(math.MaxInt64),
				Mentions: []uint64{max, 0, 1}, MentionAll: true, Edited: fine, LastEdit: max},
			{Conv: conv, ConvSeq: 5, ID: ids.id(), Sender: sender, ClientMsgID: "recalled", Kind: wire.KindText, Time: fine,
				Mentions: []uint64{user}, Recalled: true, Edited: pre1970, LastEdit: 6},
		},
		Rows: []timeline.Row{
			{User: user, Seq: 1, Conv: conv, ConvSeq: 1, MsgID: ids.id(), Kind: wire.KindText},
			{User: user, Seq: 2, Conv: conv, ConvSeq: 1, Kind: wire.KindRead},
			{User: user, Seq: max, Conv: max, ConvSeq: max, MsgID: max, Kind: math.MaxUint16},
		},
		Groups: []timeline.Group{
			{ID: conv, Name: "群聊 🙂", Owner: max, Created: fine, Open: true, MutedUntil: pre1970},
			{ID: ids.id(), Dismissed: true},
		},
		Members: []timeline.Member{
			{Conv: conv, User: user, Role: wire.RoleOwner, JoinedAt: max, MutedUntil: fine},
			{Conv: conv, User: sender, Role: wire.RoleAdmin},
			{Conv: conv, User: max, Role: wire.RoleMember, JoinedAt: 1},
		},
		Conversations: []timeline.Conversation{
			// ReadSeq is set to show that entries do not write it.
			{User: user, Conv: conv, JoinedAt: 1, LeftAt: max, ReadSeq: 777, DND: true},
			{User: user, Conv: max, JoinedAt: max},
		},
		Markers: []timeline.Marker{{User: user, Conv: conv, ReadSeq: max}},
		Dedups: []timeline.Dedup{
			{Sender: sender, ClientMsgID: "ид-客户端-🙂", Conv: conv, ConvSeq: 1, MsgID: max, Time: fine},
			{Sender: sender, ClientMsgID: strings.Repeat("é", 300), Conv: max, ConvSeq: max, Time: pre1970},
		},
		Mentions: []timeline.Mention{
			{Conv: conv, User: user, ConvSeq: 1},
			{Conv: conv, User: 0, ConvSeq: max},
			{Conv: max, User: max, ConvSeq: max},
		},
		ClockNode: -int64(ids.id()),
		Clock:     max,
	}
}

func testRoundTrip(t *testing.T, s timeline.Store, ids *idGen) {
	b := awkwardBatch(ids)
	commit(t, s, b)
	checkStored(t, s, b)
}

// testIdempotent commits a batch twice, as a writer retrying after a timeout
// does, and finds the same state: no extra entries, the same values.
func testIdempotent(t *testing.T, s timeline.Store, ids *idGen) {
	b := awkwardBatch(ids)
	for range 3 {
		commit(t, s, b)
		checkStored(t, s, b)
	}
}

// testConcurrentWriters runs writers in parallel, each the single writer of
// its own timelines, and checks every timeline is exactly 1..n.
func testConcurrentWriters(t *testing.T, s timeline.Store, ids *idGen) {
	const writers, keysPerWriter, batches = 8, 5, 30
	var wg sync.WaitGroup
	wants := make([]timeline.Batch, writers)
	for w := range writers {
		keys := make([]uint64, keysPerWriter)
		for i := range keys {
			keys[i] = ids.id()
		}
		for _, k := range kinds() {
			for _, key := range keys {
				k.add(&wants[w], key, seqs(1, batches)...)
			}
		}
		wg.Go(func() {
			var b timeline.Batch
			for seq := range uint64(batches) {
				b.Reset()
				for _, k := range kinds() {
					for _, key := range keys {
						k.add(&b, key, seq+1)
					}
				}
				if err := s.Commit(t.Context(), &b); err != nil {
					t.Errorf("writer %d: Commit: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for w := range wants {
		checkStored(t, s, &wants[w])
	}
}

// testLargeBatch commits one fan-out batch of 200 messages, each to 100 of
// 500 users: 20,000 inbox rows, 40 for each user.
func testLargeBatch(t *testing.T, s timeline.Store, ids *idGen) {
	const users, messages, fanout = 500, 200, 100
	conv := ids.id()
	user := make([]uint64, users)
	for i := range user {
		user[i] = ids.id()
	}
	next := make([]uint64, users) // each user's last seq
	var b timeline.Batch
	for seq := range uint64(messages) {
		m := messageAt(conv, seq+1)
		b.Messages = append(b.Messages, m)
		for j := range uint64(fanout) {
			u := (seq*fanout + j) % users
			next[u]++
			b.Rows = append(b.Rows, timeline.Row{User: user[u], Seq: next[u], Conv: conv, ConvSeq: m.ConvSeq, MsgID: m.ID, Kind: m.Kind})
		}
	}
	if len(b.Rows) != messages*fanout || next[0] != messages*fanout/users || next[users-1] != next[0] {
		t.Fatalf("the test built %d rows, %d and %d for its first and last user", len(b.Rows), next[0], next[users-1])
	}
	commit(t, s, &b)
	checkStored(t, s, &b)
}

func testBatchEmptyReset(t *testing.T, s timeline.Store, ids *idGen) {
	setters := []struct {
		name string
		set  func(b *timeline.Batch)
	}{
		{"Messages", func(b *timeline.Batch) { b.Messages = append(b.Messages, timeline.Message{}) }},
		{"Rows", func(b *timeline.Batch) { b.Rows = append(b.Rows, timeline.Row{}) }},
		{"Groups", func(b *timeline.Batch) { b.Groups = append(b.Groups, timeline.Group{}) }},
		{"Members", func(b *timeline.Batch) { b.Members = append(b.Members, timeline.Member{}) }},
		{"RemoveMembers", func(b *timeline.Batch) { b.RemoveMembers = append(b.RemoveMembers, timeline.MemberKey{}) }},
		{"Conversations", func(b *timeline.Batch) { b.Conversations = append(b.Conversations, timeline.Conversation{}) }},
		{"Markers", func(b *timeline.Batch) { b.Markers = append(b.Markers, timeline.Marker{}) }},
		{"Activities", func(b *timeline.Batch) { b.Activities = append(b.Activities, timeline.Activity{}) }},
		{"Dedups", func(b *timeline.Batch) { b.Dedups = append(b.Dedups, timeline.Dedup{}) }},
		{"Mentions", func(b *timeline.Batch) { b.Mentions = append(b.Mentions, timeline.Mention{}) }},
		{"Clock", func(b *timeline.Batch) { b.ClockNode, b.Clock = 1, 1 }},
	}
	var all timeline.Batch
	for _, st := range setters {
		var b timeline.Batch
		st.set(&b)
		st.set(&all)
		if b.Empty() {
			t.Errorf("a batch with %s is Empty", st.name)
		}
	}
	if b := (timeline.Batch{ClockNode: 3}); !b.Empty() {
		t.Error("a batch with a ClockNode but no Clock is not Empty")
	}
	all.Reset()
	if !all.Empty() {
		t.Errorf("after Reset the batch is not Empty: %+v", all)
	}
	for name, c := range map[string]int{
		"Messages": cap(all.Messages), "Rows": cap(all.Rows), "Groups": cap(all.Groups),
		"Members": cap(all.Members), "RemoveMembers": cap(all.RemoveMembers),
		"Conversations": cap(all.Conversations), "Markers": cap(all.Markers), "Activities": cap(all.Activities),
		"Dedups": cap(all.Dedups), "Mentions": cap(all.Mentions),
	} {
		if c == 0 {
			t.Errorf("Reset dropped the capacity of %s", name)
		}
	}

	node := int64(ids.id())
	commit(t, s, &timeline.Batch{})
	commit(t, s, &timeline.Batch{ClockNode: node})
	checkClock(t, s, node, 0)
}

// testCommitContextDone: a Commit whose context is done before it starts
// fails with the context's error. Whether it wrote anything is not asserted:
// the contract lets a failed Commit have been applied.
func testCommitContextDone(t *testing.T, s timeline.Store, ids *idGen) {
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	expired, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"Canceled", canceled, context.Canceled},
		{"DeadlineExceeded", expired, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := timeline.Batch{Rows: []timeline.Row{rowAt(ids.id(), 1)}}
			wantErr(t, "Commit", s.Commit(tc.ctx, &b), tc.want)
		})
	}
}

// testClosed: after Close every method, Close included, fails with ErrClosed.
func testClosed(t *testing.T, s timeline.Store, ids *idGen) {
	noErr(t, "Close", s.Close())
	c := t.Context()
	id := ids.id()
	calls := []struct {
		name string
		call func() error
	}{
		{"Commit", func() error { return s.Commit(c, &timeline.Batch{Rows: []timeline.Row{rowAt(id, 1)}}) }},
		{"CommitEmpty", func() error { return s.Commit(c, &timeline.Batch{}) }},
		{"Inbox", func() error { _, err := s.Inbox(c, id, timeline.Range{}); return err }},
		{"LastInboxSeq", func() error { _, err := s.LastInboxSeq(c, id); return err }},
		{"Messages", func() error { _, err := s.Messages(c, id, timeline.Range{}); return err }},
		{"LastConvSeq", func() error { _, err := s.LastConvSeq(c, id); return err }},
		{"MessagesByKey", func() error {
			_, err := s.MessagesByKey(c, []timeline.MessageKey{{Conv: id, ConvSeq: 1}}, 0)
			return err
		}},
		{"Group", func() error { _, err := s.Group(c, id); return err }},
		{"Members", func() error { _, err := s.Members(c, id); return err }},
		{"Conversation", func() error { _, err := s.Conversation(c, id, id); return err }},
		{"Conversations", func() error { _, err := s.Conversations(c, id); return err }},
		{"Dedup", func() error { _, err := s.Dedup(c, id, "x"); return err }},
		{"Clock", func() error { _, err := s.Clock(c, int64(id)); return err }},
		{"Close", s.Close},
	}
	for _, tc := range calls {
		wantErr(t, tc.name+" after Close", tc.call(), timeline.ErrClosed)
	}
}
