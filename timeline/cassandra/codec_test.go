package cassandra

import (
	"bytes"
	"cmp"
	"encoding/gob"
	"errors"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

func TestBatchRoundTrip(t *testing.T) {
	const max = math.MaxUint64
	b := &timeline.Batch{
		Messages: []timeline.Message{
			{Conv: max, ConvSeq: 1, ID: 2, Sender: 3, ClientMsgID: "ид-🙂", Kind: wire.KindNotice, Body: []byte{0, 1}, Time: time.UnixMilli(-1).UTC()},
			{Conv: 1, ConvSeq: max, Kind: math.MaxUint16, Body: make([]byte, 70_000)},
		},
		Rows:          []timeline.Row{{User: max, Seq: max, Conv: 1, ConvSeq: 2, MsgID: 3, Kind: wire.KindRead}, {}},
		Groups:        []timeline.Group{{ID: 1, Name: "群", Owner: max, Created: time.UnixMilli(1e12).UTC(), Open: true, Dismissed: true}},
		Members:       []timeline.Member{{Conv: 1, User: 2, Role: wire.RoleOwner, JoinedAt: max}},
		RemoveMembers: []timeline.MemberKey{{Conv: 1, User: max}},
		Conversations: []timeline.Conversation{{User: 1, Conv: 2, JoinedAt: 3, LeftAt: 4, ReadSeq: 5, DND: true}},
		Markers:       []timeline.Marker{{User: 1, Conv: 2, ReadSeq: max}},
		Dedups:        []timeline.Dedup{{Sender: 1, ClientMsgID: "", Conv: 2, ConvSeq: 3, MsgID: 4, Time: time.UnixMilli(5).UTC()}},
		Activities: []timeline.Activity{
			{User: max, Conv: 1, At: time.UnixMilli(1e12).UTC(), Prev: time.UnixMilli(-1).UTC()},
			{User: 2, Conv: 1, At: time.UnixMilli(1e12).UTC(), Prev: time.UnixMilli(-1).UTC()},
			{User: 2, Conv: max, At: time.UnixMilli(1e12).UTC()},
		},
		Outbox: []timeline.OutboxRecord{{Source: 3, Seq: max, Conv: 1, ConvSeq: 2, MsgID: 3, Kind: wire.KindText,
			Time: time.UnixMilli(1e12), Dests: []timeline.OutboxDest{{Shard: 4, Stream: 5,
				Recipients: []timeline.Recipient{{User: max, Effects: timeline.EffectJoin}}}}}},
		OutboxLows: []timeline.OutboxLow{{Source: 3, Seq: 9}},
		Applied:    []timeline.AppliedMark{{Source: 1, Dest: 2, Stream: max}},
		ClockNode:  -7,
		Clock:      max,
	}
	data, err := encodeBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeBatch(data)
	if err != nil {
		t.Fatal(err)
	}
	// gob leaves out empty slices and zero times; compare what the store
	// writes from.
	got.Messages[1].Time = b.Messages[1].Time
	if !reflect.DeepEqual(got, b) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, b)
	}
}

// TestEncodeMoves: a fan-out's activity moves take a few bytes each in the
// log, and come back grouped by conversation and times.
func TestEncodeMoves(t *testing.T) {
	const members = 100
	at, prev := time.UnixMilli(1e12).UTC(), time.UnixMilli(1e12-7).UTC()
	var b timeline.Batch
	for i := range uint64(members) {
		for conv := uint64(1); conv <= 2; conv++ {
			b.Activities = append(b.Activities, timeline.Activity{User: 1<<40 + i, Conv: conv, At: at, Prev: prev})
		}
	}
	data, err := encodeBatch(&b)
	if err != nil {
		t.Fatal(err)
	}
	empty, err := encodeBatch(&timeline.Batch{})
	if err != nil {
		t.Fatal(err)
	}
	if per := (len(data) - len(empty)) / len(b.Activities); per > 8 {
		t.Errorf("a move takes %d bytes in the log, want at most 8", per)
	}
	got, err := decodeBatch(data)
	if err != nil {
		t.Fatal(err)
	}
	byConv := func(x, y timeline.Activity) int { return cmp.Compare(x.Conv, y.Conv) }
	want := slices.SortedStableFunc(slices.Values(b.Activities), byConv)
	if !reflect.DeepEqual(got.Activities, want) {
		t.Fatalf("moves:\n got %+v\nwant %+v", got.Activities, want)
	}
}

// TestDecodeFormat1: an entry of format 1, the moves in the batch, left by
// an earlier release, is read as it was written.
func TestDecodeFormat1(t *testing.T) {
	b := &timeline.Batch{
		Rows:       []timeline.Row{{User: 1, Seq: 2, Conv: 3, ConvSeq: 4, MsgID: 5}},
		Activities: []timeline.Activity{{User: 1, Conv: 3, At: time.UnixMilli(1e12).UTC(), Prev: time.UnixMilli(9).UTC()}},
	}
	var buf bytes.Buffer
	buf.WriteByte(logFormatGob1)
	e := logEntry{Batch: &timeline.Batch{Activities: b.Activities},
		Runs: []rowRun{{Conv: 3, ConvSeq: 4, MsgID: 5, Users: []uint64{1}, Seqs: []uint64{2}}}}
	if err := gob.NewEncoder(&buf).Encode(&e); err != nil {
		t.Fatal(err)
	}
	got, err := decodeBatch(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, b) {
		t.Fatalf("format 1:\n got %+v\nwant %+v", got, b)
	}
}

func TestDecodeCorrupt(t *testing.T) {
	data, err := encodeBatch(&timeline.Batch{Rows: []timeline.Row{{User: 1, Seq: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]byte{
		"Empty":         nil,
		"UnknownFormat": append([]byte{9}, data[1:]...),
		"Truncated":     data[:len(data)-3],
		"Trailing":      append(data[:len(data):len(data)], 0),
		"Garbage":       {logFormat, 0xFF, 0xFF, 0xFF, 0xFF},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeBatch(bad); !errors.Is(err, errCorrupt) {
				t.Fatalf("decodeBatch: got %v, want errCorrupt", err)
			}
		})
	}
}

// FuzzDecodeBatch: no input makes the decoder panic.
func FuzzDecodeBatch(f *testing.F) {
	data, _ := encodeBatch(&timeline.Batch{Rows: []timeline.Row{{User: 1, Seq: 2}}, Clock: 3,
		Activities: []timeline.Activity{{User: 1, Conv: 4, At: time.UnixMilli(5)}}})
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeBatch(data)
	})
}
