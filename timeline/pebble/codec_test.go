package pebble

import (
	"bytes"
	"errors"
	"log/slog"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// fuzzDecoder checks that decode survives any input, fails only with
// errCorrupt, and that whatever it accepts re-encodes to a value that decodes
// to the same record. The seeds, encoded, start the corpus.
func fuzzDecoder[T any](f *testing.F, encode func([]byte, *T) []byte, decode func([]byte, *T) error, seeds ...T) {
	for _, s := range seeds {
		f.Add(encode(nil, &s))
	}
	f.Add([]byte{})
	f.Add([]byte{valueVersion})
	f.Add([]byte{valueVersion + 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, val []byte) {
		var v T
		if err := decode(val, &v); err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("decode(%x): error %v does not wrap errCorrupt", val, err)
			}
			return
		}
		again := encode(nil, &v)
		var w T
		if err := decode(again, &w); err != nil {
			t.Fatalf("decode(%x) = %+v, which encodes to %x, which does not decode: %v", val, v, again, err)
		}
		if !reflect.DeepEqual(v, w) {
			t.Fatalf("decode(%x) = %+v, but after re-encoding %+v", val, v, w)
		}
	})
}

const maxU = math.MaxUint64

// someTime is a time as decoders return it: milliseconds, UTC.
func someTime() time.Time { return time.UnixMilli(1748779200123).UTC() }

func FuzzDecodeRow(f *testing.F) {
	fuzzDecoder(f, appendRowValue, decodeRowValue,
		timeline.Row{Conv: 1, ConvSeq: 2, MsgID: 3, Kind: wire.KindText},
		timeline.Row{Conv: maxU, ConvSeq: maxU, MsgID: maxU, Kind: math.MaxUint16},
		timeline.Row{Kind: wire.KindRead})
}

func FuzzDecodeMessage(f *testing.F) {
	fuzzDecoder(f, appendMessageValue, decodeMessageValue,
		timeline.Message{ID: 1, Sender: 2, ClientMsgID: "ид-🙂", Kind: wire.KindText, Body: []byte("\x00hi\x00"), Time: someTime()},
		timeline.Message{ID: maxU, Sender: maxU, Kind: wire.KindNotice, Body: bytes.Repeat([]byte{0xFF}, 300), Time: time.UnixMilli(-1)},
		timeline.Message{ID: 3, Kind: wire.KindText, Time: someTime(), Mentions: []uint64{0, 7, maxU}, MentionAll: true},
		timeline.Message{ID: 4, Kind: wire.KindText, Time: someTime(), Recalled: true, Edited: someTime(), LastEdit: maxU},
		timeline.Message{})
}

func FuzzDecodeGroup(f *testing.F) {
	fuzzDecoder(f, appendGroupValue, decodeGroupValue,
		timeline.Group{Name: "群聊", Owner: 7, Created: someTime(), Open: true, MutedUntil: someTime(), Dismissed: true},
		timeline.Group{Owner: maxU},
		timeline.Group{Name: "ops", Announcement: "公告", AvatarURL: "https://example.com/a.png"},
		timeline.Group{Created: someTime(), Direct: [2]uint64{1, maxU}, Blocked: [2]bool{false, true}})
}

func FuzzDecodeMember(f *testing.F) {
	fuzzDecoder(f, appendMemberValue, decodeMemberValue,
		timeline.Member{Role: wire.RoleOwner, JoinedAt: maxU, MutedUntil: someTime()},
		timeline.Member{Role: wire.RoleMember}, timeline.Member{Role: wire.RoleAdmin, DND: true})
}

func FuzzDecodeConversation(f *testing.F) {
	fuzzDecoder(f, appendConversationValue, decodeConversationValue,
		timeline.Conversation{JoinedAt: 1, LeftAt: maxU, DND: true},
		timeline.Conversation{})
}

func FuzzDecodeDedup(f *testing.F) {
	fuzzDecoder(f, appendDedupValue, decodeDedupValue,
		timeline.Dedup{Conv: 1, ConvSeq: 2, MsgID: maxU, Time: someTime()},
		timeline.Dedup{})
}

// FuzzDecodeUint64 covers read markers and clocks.
func FuzzDecodeUint64(f *testing.F) {
	encode := func(dst []byte, v *uint64) []byte { return appendUint64Value(dst, *v) }
	fuzzDecoder(f, encode, decodeUint64Value, 0, 1, 300, maxU)
}

func TestDecodeCorrupt(t *testing.T) {
	row := appendRowValue(nil, &timeline.Row{Conv: 300, ConvSeq: 2, MsgID: 3, Kind: 4})
	tests := []struct {
		name   string
		decode func([]byte) error
		val    []byte
		want   string
	}{
		{"Empty", decodeRow1, nil, "truncated at byte 0"},
		{"UnknownVersion", decodeRow1, append([]byte{2}, row[1:]...), "unknown value version 2"},
		{"Truncated", decodeRow1, row[:2], "bad uvarint at byte 1"},
		{"Trailing", decodeRow1, append(row, 0), "1 trailing bytes"},
		{"KindOutOfRange", decodeRow1, []byte{1, 0, 0, 0, 0x80, 0x80, 0x04}, "kind 65536 out of range"},
		{"UnknownFlags", func(v []byte) error { return decodeConversationValue(v, new(timeline.Conversation)) }, []byte{1, 0x80, 0, 0}, "unknown flags 0x80"},
		{"LengthPastEnd", func(v []byte) error { return decodeGroupValue(v, new(timeline.Group)) }, []byte{1, 0, 5, 'a'}, "length 5 exceeds the 1 bytes left"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.decode(tc.val)
			if !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decode(%x) = %v, want an errCorrupt saying %q", tc.val, err, tc.want)
			}
		})
	}
}

func decodeRow1(val []byte) error { return decodeRowValue(val, new(timeline.Row)) }

// TestPebbleLogger: Pebble's routine messages go out at Debug, its errors at
// Warn, and Fatalf logs at Error and does not return.
func TestPebbleLogger(t *testing.T) {
	var buf bytes.Buffer
	l := pebbleLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	l.Infof("flushed %d", 1)
	l.Errorf("background error: %s", "disk slow")
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Fatalf returned")
			}
		}()
		l.Fatalf("corrupt %s", "MANIFEST")
	}()
	for _, want := range []string{`level=DEBUG msg="flushed 1"`, `level=WARN msg="background error: disk slow"`, `level=ERROR msg="corrupt MANIFEST"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, buf.String())
		}
	}

	// A logger at Info drops Pebble's routine messages without formatting them.
	buf.Reset()
	l = pebbleLogger{slog.New(slog.NewTextHandler(&buf, nil))}
	l.Infof("flushed %d", 1)
	if buf.Len() != 0 {
		t.Errorf("Infof reached an Info logger: %s", buf.String())
	}
}
