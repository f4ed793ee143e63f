package timelinetest

import (
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// shard returns a shard number no other subtest or earlier run uses.
func shard(ids *idGen) int { return int(ids.id() % (1 << 30)) }

func testOutbox(t *testing.T, s timeline.Store, ids *idGen) {
	ctx := t.Context()
	src, other, d1, d2 := shard(ids), shard(ids), shard(ids), shard(ids)
	conv := ids.id()
	rec := func(seq uint64) timeline.OutboxRecord {
		return timeline.OutboxRecord{
			Source: src, Seq: seq, Conv: conv, ConvSeq: seq + 10, MsgID: ids.id(), Kind: wire.KindText,
			Time: time.UnixMilli(epochMS + int64(seq)), Prev: time.UnixMilli(epochMS),
			Dests: []timeline.OutboxDest{
				{Shard: d1, Stream: seq, Recipients: []timeline.Recipient{{User: ids.id(), Effects: timeline.EffectSender | timeline.EffectNoPush}}},
				{Shard: d2, Stream: seq + 100, Recipients: []timeline.Recipient{{User: ids.id(), Effects: timeline.EffectJoin}, {User: ids.id()}}},
			},
		}
	}
	low, err := s.OutboxLow(ctx, src)
	noErr(t, "OutboxLow of a new shard", err)
	if low != 0 {
		t.Fatalf("OutboxLow of a new shard = %d, want 0", low)
	}
	var recs []timeline.OutboxRecord
	for seq := uint64(1); seq <= 5; seq++ {
		recs = append(recs, rec(seq))
	}
	// Records of another source and an applied mark in the same batches:
	// each is atomic with the rest.
	commit(t, s, &timeline.Batch{Outbox: recs[:2], Applied: []timeline.AppliedMark{{Source: src, Dest: d1, Stream: 1}}})
	commit(t, s, &timeline.Batch{Outbox: append(recs[2:], timeline.OutboxRecord{Source: other, Seq: 1, Conv: conv}),
		Applied: []timeline.AppliedMark{{Source: other, Dest: d1, Stream: 7}, {Source: src, Dest: d1, Stream: 2}}})

	got, err := s.Outbox(ctx, src, 0, 0)
	noErr(t, "Outbox", err)
	same(t, "Outbox from the start", got, recs)
	got, err = s.Outbox(ctx, src, 1, 2)
	noErr(t, "Outbox paged", err)
	same(t, "Outbox after 1, 2 records", got, recs[1:3])
	got, err = s.Outbox(ctx, src, 5, 0)
	noErr(t, "Outbox past the end", err)
	same(t, "Outbox past the end", got, nil)

	marks, err := s.Applied(ctx, d1)
	noErr(t, "Applied", err)
	want := []timeline.AppliedMark{{Source: src, Dest: d1, Stream: 2}, {Source: other, Dest: d1, Stream: 7}}
	if src > other {
		want[0], want[1] = want[1], want[0]
	}
	same(t, "Applied into d1", marks, want)
	marks, err = s.Applied(ctx, d2)
	noErr(t, "Applied into d2", err)
	same(t, "Applied into d2", marks, nil)

	// The low-water mark drops the records at or below it, and only the
	// source's.
	commit(t, s, &timeline.Batch{OutboxLows: []timeline.OutboxLow{{Source: src, Seq: 3}}})
	low, err = s.OutboxLow(ctx, src)
	noErr(t, "OutboxLow", err)
	if low != 3 {
		t.Fatalf("OutboxLow = %d, want 3", low)
	}
	got, err = s.Outbox(ctx, src, 0, 0)
	noErr(t, "Outbox after the low-water mark moved", err)
	same(t, "Outbox after the low-water mark moved", got, recs[3:])
	got, err = s.Outbox(ctx, other, 0, 0)
	noErr(t, "Outbox of the other source", err)
	if len(got) != 1 {
		t.Fatalf("Outbox of the other source: %d records, want 1", len(got))
	}
}
