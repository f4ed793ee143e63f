package timelinetest

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// timelineKind is one of the two kinds of timeline, inbox or conversation,
// seen through the same operations, so that the range, paging and key
// tests run against both.
type timelineKind interface {
	name() string
	// add appends to b the entries of timeline key at seqs.
	add(b *timeline.Batch, key uint64, seqs ...uint64)
	// check fails the test unless a scan of key in r returns exactly the
	// entries at the seqs want, in that order.
	check(t *testing.T, s timeline.Store, key uint64, r timeline.Range, want []uint64)
	// checkLast fails the test unless the last seq of key is want.
	checkLast(t *testing.T, s timeline.Store, key, want uint64)
	// checkStored fails the test unless every timeline b writes to holds
	// exactly b's entries of it, and its last seq is the last of them.
	checkStored(t *testing.T, s timeline.Store, b *timeline.Batch)
	// checkPages reads key in r page by page, limit entries a page, moving
	// the bound past each page as the contract says, and fails the test
	// unless the pages concatenate to exactly the entries at want.
	checkPages(t *testing.T, s timeline.Store, key uint64, r timeline.Range, limit int, want []uint64)
}

func kinds() []timelineKind {
	return []timelineKind{
		kind[timeline.Row]{
			label: "Inbox",
			at:    rowAt,
			put:   func(b *timeline.Batch, r timeline.Row) { b.Rows = append(b.Rows, r) },
			of:    func(b *timeline.Batch) []timeline.Row { return b.Rows },
			key:   func(r timeline.Row) uint64 { return r.User },
			seq:   func(r timeline.Row) uint64 { return r.Seq },
			scan:  timeline.Store.Inbox,
			last:  timeline.Store.LastInboxSeq,
		},
		kind[timeline.Message]{
			label: "Messages",
			at:    messageAt,
			put:   func(b *timeline.Batch, m timeline.Message) { b.Messages = append(b.Messages, m) },
			of:    func(b *timeline.Batch) []timeline.Message { return b.Messages },
			key:   func(m timeline.Message) uint64 { return m.Conv },
			seq:   func(m timeline.Message) uint64 { return m.ConvSeq },
			scan:  timeline.Store.Messages,
			last:  timeline.Store.LastConvSeq,
		},
	}
}

type kind[T any] struct {
	label string
	at    func(key, seq uint64) T // the entry the suite writes at (key, seq)
	put   func(b *timeline.Batch, v T)
	of    func(b *timeline.Batch) []T // the entries of this kind in b
	key   func(v T) uint64
	seq   func(v T) uint64
	scan  func(s timeline.Store, ctx context.Context, key uint64, r timeline.Range) ([]T, error)
	last  func(s timeline.Store, ctx context.Context, key uint64) (uint64, error)
}

func (k kind[T]) name() string { return k.label }

func (k kind[T]) add(b *timeline.Batch, key uint64, seqs ...uint64) {
	for _, seq := range seqs {
		k.put(b, k.at(key, seq))
	}
}

func (k kind[T]) entries(key uint64, seqs []uint64) []T {
	want := make([]T, len(seqs))
	for i, seq := range seqs {
		want[i] = k.at(key, seq)
	}
	return want
}

func (k kind[T]) check(t *testing.T, s timeline.Store, key uint64, r timeline.Range, want []uint64) {
	t.Helper()
	what := fmt.Sprintf("%s(%#x, %+v)", k.label, key, r)
	got, err := k.scan(s, t.Context(), key, r)
	noErr(t, what, err)
	same(t, what, got, k.entries(key, want))
}

func (k kind[T]) checkLast(t *testing.T, s timeline.Store, key, want uint64) {
	t.Helper()
	got, err := k.last(s, t.Context(), key)
	noErr(t, k.label+" last seq", err)
	if got != want {
		t.Fatalf("last seq of %s %#x: got %d, want %d", k.label, key, got, want)
	}
}

func (k kind[T]) checkStored(t *testing.T, s timeline.Store, b *timeline.Batch) {
	t.Helper()
	entries := k.of(b)
	for _, key := range keys(entries, k.key) {
		want := sortedWhere(entries, func(v T) bool { return k.key(v) == key }, k.seq)
		got, err := k.scan(s, t.Context(), key, timeline.Range{})
		noErr(t, k.label, err)
		same(t, fmt.Sprintf("%s %#x", k.label, key), got, want)
		k.checkLast(t, s, key, k.seq(want[len(want)-1]))
	}
}

func (k kind[T]) checkPages(t *testing.T, s timeline.Store, key uint64, r timeline.Range, limit int, want []uint64) {
	t.Helper()
	var all []T
	r.Limit = limit
	for pages := 0; ; pages++ {
		if pages > len(want)+1 {
			t.Fatalf("%s %#x: paging by %d does not end after %d pages", k.label, key, limit, pages)
		}
		what := fmt.Sprintf("%s(%#x, %+v)", k.label, key, r)
		page, err := k.scan(s, t.Context(), key, r)
		noErr(t, what, err)
		if len(page) > limit {
			t.Fatalf("%s: got %d entries, more than the limit", what, len(page))
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		last := k.seq(page[len(page)-1])
		// The bound moves past the last entry. It cannot move past seq 1
		// going down (To == 0 means no bound) or past the top going up.
		if r.Desc && last == 1 || !r.Desc && last == math.MaxUint64 {
			break
		}
		if r.Desc {
			r.To = last - 1
		} else {
			r.From = last + 1
		}
	}
	same(t, fmt.Sprintf("%s %#x in pages of %d", k.label, key, limit), all, k.entries(key, want))
}

// epochMS (2025-06-01 12:00 UTC, in Unix milliseconds) is the base of the
// times the suite writes.
const epochMS = 1748779200000

// rowAt is the inbox row the suite writes at (user, seq). It depends on
// nothing else, so that rewriting a fixed key on a rerun changes nothing.
func rowAt(user, seq uint64) timeline.Row {
	r := timeline.Row{User: user, Seq: seq, Conv: user ^ 0x5a5a, ConvSeq: seq * 3, MsgID: user*1_000_003 + seq, Kind: wire.KindText}
	if seq%5 == 0 {
		r.Kind, r.MsgID = wire.KindRead, 0
	}
	return r
}

// messageAt is the message the suite writes at (conv, seq).
func messageAt(conv, seq uint64) timeline.Message {
	return timeline.Message{
		Conv:        conv,
		ConvSeq:     seq,
		ID:          conv*7919 + seq,
		Sender:      conv + seq%7,
		ClientMsgID: fmt.Sprintf("c-%x-%d", conv, seq),
		Kind:        wire.KindText,
		Body:        fmt.Appendf(nil, "message %d of %#x", seq, conv),
		Time:        time.UnixMilli(epochMS + int64(seq%1e6)),
	}
}

// seqs returns from, from+1, …, to; or the reverse when from > to.
func seqs(from, to uint64) []uint64 {
	var s []uint64
	for i := min(from, to); ; i++ {
		s = append(s, i)
		if i == max(from, to) {
			break
		}
	}
	if from > to {
		slices.Reverse(s)
	}
	return s
}

// reversed returns a reversed copy of s.
func reversed(s []uint64) []uint64 {
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}
