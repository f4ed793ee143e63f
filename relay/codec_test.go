package relay

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

var testRecords = []timeline.OutboxRecord{
	{Source: 3, Seq: 7, Conv: 1 << 40, ConvSeq: 12, MsgID: 99, Kind: wire.KindText,
		Time: time.UnixMilli(1_700_000_000_000), Prev: time.UnixMilli(1_699_999_999_000),
		Dests: []timeline.OutboxDest{
			{Shard: 1, Stream: 4, Recipients: []timeline.Recipient{{User: 5, Effects: timeline.EffectJoin}, {User: 6}}},
			{Shard: 200, Stream: 1, Recipients: []timeline.Recipient{{User: 1 << 60, Effects: timeline.EffectSender | timeline.EffectNoPush}}},
		}},
	{Source: 0, Seq: 8, Conv: 2, ConvSeq: 1, Kind: wire.KindDND, Time: time.UnixMilli(1),
		Dests: []timeline.OutboxDest{{Shard: 2, Stream: 9, Recipients: []timeline.Recipient{{User: 3}}}}},
}

func TestRecordsRoundTrip(t *testing.T) {
	for _, recs := range [][]timeline.OutboxRecord{nil, testRecords[:1], testRecords} {
		body, err := appendRecords(nil, recs)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeRecords(body)
		if err != nil {
			t.Fatalf("decode %d records: %v", len(recs), err)
		}
		if !slices.EqualFunc(got, recs, equalRecord) {
			t.Fatalf("decoded %+v, want %+v", got, recs)
		}
	}
}

func equalRecord(a, b timeline.OutboxRecord) bool {
	x, _ := a.MarshalBinary()
	y, _ := b.MarshalBinary()
	return bytes.Equal(x, y)
}

func TestMarksRoundTrip(t *testing.T) {
	marks := []timeline.AppliedMark{{Source: 0, Dest: 255, Stream: 1}, {Source: 4095, Dest: 3, Stream: 1 << 63}}
	got, err := decodeMarks(appendMarks(nil, marks))
	if err != nil || !slices.Equal(got, marks) {
		t.Fatalf("decoded %v, %v; want %v", got, err, marks)
	}
}

func TestDecodeMalformed(t *testing.T) {
	good, _ := appendRecords(nil, testRecords)
	tests := []struct {
		name string
		body []byte
		dec  func([]byte) error
	}{
		{"records: empty", nil, decRecords},
		{"records: count beyond the bytes", []byte{0xFF, 0xFF, 0x03}, decRecords},
		{"records: length beyond the bytes", []byte{1, 50, 1}, decRecords},
		{"records: truncated", good[:len(good)-1], decRecords},
		{"records: trailing byte", append(slices.Clone(good), 0), decRecords},
		{"records: a corrupt record", []byte{1, 1, 9}, decRecords},
		{"marks: count beyond the bytes", []byte{5, 1, 1}, decMarks},
		{"marks: truncated mark", []byte{1, 1, 1}, decMarks},
		{"marks: shard out of range", appendMarks(nil, []timeline.AppliedMark{{Source: maxShard}}), decMarks},
		{"marks: trailing byte", []byte{0, 0}, decMarks},
		{"forward: short", make([]byte, forwardHeader-1), decForward},
	}
	for _, tt := range tests {
		if err := tt.dec(tt.body); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", tt.name, err)
		}
	}
}

func decRecords(b []byte) error { _, err := decodeRecords(b); return err }
func decMarks(b []byte) error   { _, err := decodeMarks(b); return err }
func decForward(b []byte) error { _, _, _, err := decodeForward(b); return err }

func TestForwardRoundTrip(t *testing.T) {
	user, cmd, body, err := decodeForward(appendForward(nil, 1<<63+5, wire.CmdSend, []byte("req")))
	if err != nil || user != 1<<63+5 || cmd != wire.CmdSend || string(body) != "req" {
		t.Fatalf("decoded %d %v %q %v", user, cmd, body, err)
	}
}

// FuzzDecodeRecords: any body decodes or fails with ErrMalformed, without
// panicking, and what decodes encodes back to the same bytes.
func FuzzDecodeRecords(f *testing.F) {
	good, _ := appendRecords(nil, testRecords)
	f.Add(good)
	f.Add([]byte{0})
	f.Add([]byte{1, 1, 1})
	f.Fuzz(func(t *testing.T, body []byte) {
		recs, err := decodeRecords(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := appendRecords(nil, recs)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeRecords(again)
		if err != nil || !slices.EqualFunc(back, recs, equalRecord) {
			t.Fatalf("re-encoded records decode to %+v, %v; want %+v", back, err, recs)
		}
	})
}

// FuzzDecodeMarks: as FuzzDecodeRecords, for the answer.
func FuzzDecodeMarks(f *testing.F) {
	f.Add(appendMarks(nil, []timeline.AppliedMark{{Source: 1, Dest: 2, Stream: 3}}))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, body []byte) {
		marks, err := decodeMarks(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		back, err := decodeMarks(appendMarks(nil, marks))
		if err != nil || !slices.Equal(back, marks) {
			t.Fatalf("re-encoded marks decode to %v, %v; want %v", back, err, marks)
		}
	})
}

// FuzzDecodeForward: any body of the header's size decodes, and encodes
// back to itself.
func FuzzDecodeForward(f *testing.F) {
	f.Add(appendForward(nil, 7, wire.CmdSend, []byte{1, 2}))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		user, cmd, body, err := decodeForward(b)
		if err != nil {
			if len(b) >= forwardHeader || !errors.Is(err, ErrMalformed) {
				t.Fatalf("%x: %v", b, err)
			}
			return
		}
		if again := appendForward(nil, user, cmd, body); !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x, want %x", again, b)
		}
	})
}

// FuzzDecodeTyping: any body decodes or fails with ErrMalformed, without
// panicking, and what decodes encodes back to the same event.
func FuzzDecodeTyping(f *testing.F) {
	f.Add(appendTyping(nil, 1<<63+7, 42, []uint64{1, 2, 1 << 63}))
	f.Add(appendTyping(nil, 7, 42, nil))
	f.Add([]byte{7, 42, 200})
	f.Fuzz(func(t *testing.T, body []byte) {
		conv, user, to, err := decodeTyping(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		c, u, back, err := decodeTyping(appendTyping(nil, conv, user, to))
		if err != nil || c != conv || u != user || !slices.Equal(back, to) {
			t.Fatalf("re-encoded event decodes to %d %d %v, %v; want %d %d %v", c, u, back, err, conv, user, to)
		}
	})
}

// FuzzDecodeUsers: as FuzzDecodeTyping, for PRESENCE and its answer.
func FuzzDecodeUsers(f *testing.F) {
	f.Add(appendUsers(nil, []uint64{1, 300, 1 << 63}))
	f.Add([]byte{0})
	f.Add([]byte{3, 1})
	f.Fuzz(func(t *testing.T, body []byte) {
		users, err := decodeUsers(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		back, err := decodeUsers(appendUsers(nil, users))
		if err != nil || !slices.Equal(back, users) {
			t.Fatalf("re-encoded users decode to %v, %v; want %v", back, err, users)
		}
	})
}
