package timelinetest

import (
	"fmt"
	"math"
	"testing"

	"github.com/inboxd/inboxd/timeline"
)

// fill writes entries 1..n to a fresh timeline of kind k, with its
// neighbours in id space holding entries too, and returns its key.
func fill(t *testing.T, s timeline.Store, ids *idGen, k timelineKind, n uint64) uint64 {
	t.Helper()
	before, key, after := ids.id(), ids.id(), ids.id()
	var b timeline.Batch
	k.add(&b, before, 1, 2, 3)
	k.add(&b, key, seqs(1, n)...)
	k.add(&b, after, 1, 2)
	commit(t, s, &b)
	return key
}

func testRanges(t *testing.T, s timeline.Store, ids *idGen) {
	const n = 25
	all := seqs(1, n)
	tests := []struct {
		name string
		r    timeline.Range
		want []uint64
	}{
		{"All", timeline.Range{}, all},
		{"AllDesc", timeline.Range{Desc: true}, reversed(all)},
		{"FromTo", timeline.Range{From: 5, To: 9}, seqs(5, 9)},
		{"FromToDesc", timeline.Range{From: 5, To: 9, Desc: true}, seqs(9, 5)},
		{"From", timeline.Range{From: 20}, seqs(20, n)},
		{"FromDesc", timeline.Range{From: 20, Desc: true}, seqs(n, 20)},
		{"To", timeline.Range{To: 3}, seqs(1, 3)},
		{"ToDesc", timeline.Range{To: 3, Desc: true}, seqs(3, 1)},
		{"One", timeline.Range{From: n, To: n}, []uint64{n}},
		{"Limit", timeline.Range{Limit: 4}, seqs(1, 4)},
		{"LimitDesc", timeline.Range{Limit: 4, Desc: true}, seqs(n, 22)},
		{"BoundsLimitDesc", timeline.Range{From: 5, To: 20, Limit: 3, Desc: true}, seqs(20, 18)},
		{"LimitAboveCount", timeline.Range{Limit: 100}, all},
		{"NegativeLimit", timeline.Range{Limit: -1, Desc: true}, reversed(all)},
		{"ToMax", timeline.Range{To: math.MaxUint64}, all},
		{"ToPastEnd", timeline.Range{From: 24, To: 1000}, seqs(24, n)},
		{"PastEnd", timeline.Range{From: n + 1}, nil},
		{"PastEndDesc", timeline.Range{From: n + 1, Desc: true}, nil},
		{"FarPastEnd", timeline.Range{From: 100, To: 200}, nil},
		{"FromAfterTo", timeline.Range{From: 9, To: 5}, nil},
		{"FromAfterToDesc", timeline.Range{From: 9, To: 5, Desc: true}, nil},
	}
	for _, k := range kinds() {
		key := fill(t, s, ids, k, n)
		for _, tc := range tests {
			t.Run(k.name()+"/"+tc.name, func(t *testing.T) {
				k.check(t, s, key, tc.r, tc.want)
			})
		}
		t.Run(k.name()+"/Unknown", func(t *testing.T) {
			unknown := ids.id()
			k.check(t, s, unknown, timeline.Range{}, nil)
			k.check(t, s, unknown, timeline.Range{Desc: true, Limit: 3}, nil)
		})
	}
}

func testPaging(t *testing.T, s timeline.Store, ids *idGen) {
	const n = 25
	tests := []struct {
		name string
		r    timeline.Range
		want []uint64
	}{
		{"Asc", timeline.Range{}, seqs(1, n)},
		{"Desc", timeline.Range{Desc: true}, seqs(n, 1)},
		{"Window", timeline.Range{From: 4, To: 20}, seqs(4, 20)},
		{"WindowDesc", timeline.Range{From: 4, To: 20, Desc: true}, seqs(20, 4)},
	}
	for _, k := range kinds() {
		key := fill(t, s, ids, k, n)
		for _, limit := range []int{1, 3, 7} {
			for _, tc := range tests {
				t.Run(fmt.Sprintf("%s/%s/%d", k.name(), tc.name, limit), func(t *testing.T) {
					k.checkPages(t, s, key, tc.r, limit, tc.want)
				})
			}
		}
	}
}

func testLastSeq(t *testing.T, s timeline.Store, ids *idGen) {
	for _, k := range kinds() {
		t.Run(k.name(), func(t *testing.T) {
			key := ids.id()
			k.checkLast(t, s, key, 0)
			for _, batch := range [][]uint64{seqs(1, 5), seqs(6, 9), {10}} {
				var b timeline.Batch
				k.add(&b, key, batch...)
				commit(t, s, &b)
				k.checkLast(t, s, key, batch[len(batch)-1])
			}
			k.checkLast(t, s, ids.id(), 0)
		})
	}
}

// testAdjacentKeys writes timelines whose keys differ by one, across byte
// carries and at the top of the id space, and entries at the edges of the
// seq space, and checks that no scan or last seq reaches another key.
func testAdjacentKeys(t *testing.T, s timeline.Store, ids *idGen) {
	consecutive := ids.id()
	ids.id() // consecutive+1 is used below
	pairs := []struct {
		name string
		lo   uint64 // the pair is lo, lo+1
	}{
		{"Consecutive", consecutive},
		{"Carry1", carry(1)},
		{"Carry2", carry(2)},
		{"Carry4", carry(4)},
		{"Carry7", carry(7)},
		// Fixed ids, shared by every run: their content is always the same.
		{"Top", math.MaxUint64 - 1},
	}
	edges := []uint64{1, 2, 0xFF, 0x100, 0xFFFF, 0x1_0000, math.MaxUint64 - 1, math.MaxUint64}
	edgeKey := ids.id()
	var b timeline.Batch
	for _, k := range kinds() {
		for _, p := range pairs {
			k.add(&b, p.lo, seqs(1, 3)...)
			k.add(&b, p.lo+1, seqs(1, 5)...)
		}
		k.add(&b, edgeKey, edges...)
	}
	commit(t, s, &b)

	for _, k := range kinds() {
		for _, p := range pairs {
			t.Run(k.name()+"/"+p.name, func(t *testing.T) {
				for _, key := range []struct {
					id uint64
					n  uint64
				}{{p.lo, 3}, {p.lo + 1, 5}} {
					k.check(t, s, key.id, timeline.Range{}, seqs(1, key.n))
					k.check(t, s, key.id, timeline.Range{Desc: true}, seqs(key.n, 1))
					k.check(t, s, key.id, timeline.Range{From: 2, Desc: true, Limit: 10}, seqs(key.n, 2))
					k.checkLast(t, s, key.id, key.n)
				}
			})
		}
		t.Run(k.name()+"/SeqEdges", func(t *testing.T) {
			k.check(t, s, edgeKey, timeline.Range{}, edges)
			k.check(t, s, edgeKey, timeline.Range{Desc: true}, reversed(edges))
			k.check(t, s, edgeKey, timeline.Range{From: 3, To: 0xFF}, []uint64{0xFF})
			k.check(t, s, edgeKey, timeline.Range{From: 0x100, To: math.MaxUint64 - 1}, edges[3:7])
			k.check(t, s, edgeKey, timeline.Range{From: math.MaxUint64}, edges[7:])
			k.check(t, s, edgeKey, timeline.Range{From: 0x101, To: 0xFFFE}, nil)
			k.checkLast(t, s, edgeKey, math.MaxUint64)
		})
	}
}

func testMessagesByKey(t *testing.T, s timeline.Store, ids *idGen) {
	c1, c2, c3 := ids.id(), ids.id(), ids.id()
	var b timeline.Batch
	for _, conv := range []uint64{c1, c2, c3} {
		for seq := range uint64(5) {
			b.Messages = append(b.Messages, messageAt(conv, seq+1))
		}
	}
	commit(t, s, &b)

	for _, tc := range []struct {
		name string
		keys []timeline.MessageKey
	}{
		{"Order", []timeline.MessageKey{{Conv: c2, ConvSeq: 3}, {Conv: c1, ConvSeq: 1}, {Conv: c3, ConvSeq: 5},
			{Conv: c1, ConvSeq: 4}, {Conv: c2, ConvSeq: 3}}},
		// An inbox page: runs of consecutive conv_seqs, interleaved, with
		// gaps, and runs that end at their conversation's last message.
		{"Runs", []timeline.MessageKey{{Conv: c1, ConvSeq: 2}, {Conv: c2, ConvSeq: 1}, {Conv: c1, ConvSeq: 3},
			{Conv: c2, ConvSeq: 2}, {Conv: c1, ConvSeq: 5}, {Conv: c3, ConvSeq: 4}, {Conv: c3, ConvSeq: 5}, {Conv: c2, ConvSeq: 4}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want []timeline.Message
			for _, k := range tc.keys {
				want = append(want, messageAt(k.Conv, k.ConvSeq))
			}
			got, err := s.MessagesByKey(t.Context(), tc.keys, 0)
			noErr(t, "MessagesByKey", err)
			same(t, "MessagesByKey", got, want)
		})
	}
	t.Run("NoKeys", func(t *testing.T) {
		got, err := s.MessagesByKey(t.Context(), nil, 0)
		noErr(t, "MessagesByKey", err)
		same(t, "MessagesByKey(nil)", got, nil)
	})
	for _, tc := range []struct {
		name    string
		missing timeline.MessageKey
	}{
		{"PastEnd", timeline.MessageKey{Conv: c1, ConvSeq: 6}}, // right after c1's last: the end of a run
		{"SeqZero", timeline.MessageKey{Conv: c2, ConvSeq: 0}},
		{"UnknownConv", timeline.MessageKey{Conv: ids.id(), ConvSeq: 1}},
	} {
		t.Run("Missing"+tc.name, func(t *testing.T) {
			_, err := s.MessagesByKey(t.Context(), []timeline.MessageKey{{Conv: c1, ConvSeq: 5}, tc.missing}, 0)
			wantErr(t, fmt.Sprintf("MessagesByKey(%+v)", tc.missing), err, timeline.ErrNotFound)
		})
	}
}
