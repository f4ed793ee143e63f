package bench

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// TestParseEntriesMatchesGeneratedCode decodes with the hand-written
// decoder what the generated code encodes.
func TestParseEntriesMatchesGeneratedCode(t *testing.T) {
	body := appendSendRequest(nil, 7, []byte("r-1"), 123456789, 40)
	var req wirepb.SendRequest
	if err := proto.Unmarshal(body, &req); err != nil || req.Conv != 7 || req.ClientMsgId != "r-1" || req.Kind != benchKind || len(req.Body) != 40 {
		t.Fatalf("SendRequest %v: %v", &req, err)
	}
	resp := &wirepb.SyncResponse{HeadSeq: 9, HasMore: true, Entries: []*wirepb.Entry{
		{Seq: 8, Conv: 7, ConvSeq: 3, MsgId: 1 << 60, Kind: benchKind, Message: &wirepb.Message{
			Conv: 7, ConvSeq: 3, MsgId: 1 << 60, Sender: 42, ClientMsgId: "r-1", Kind: benchKind, Body: req.Body, TimeMs: 5}},
		{Seq: 9, Conv: 7, ConvSeq: 3, Kind: uint32(wire.KindRead)},
	}}
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var got []entry
	head, more, err := parseEntries(b, func(e entry) {
		e.clientMsgID = append([]byte(nil), e.clientMsgID...)
		got = append(got, e)
	})
	if err != nil || head != 9 || !more || len(got) != 2 {
		t.Fatalf("head %d more %v entries %d: %v", head, more, len(got), err)
	}
	want := entry{seq: 8, conv: 7, convSeq: 3, msgID: 1 << 60, kind: benchKind, sender: 42, sentAt: 123456789}
	if g := got[0]; g.seq != want.seq || g.conv != want.conv || g.convSeq != want.convSeq || g.msgID != want.msgID ||
		g.kind != want.kind || g.sender != want.sender || g.sentAt != want.sentAt || string(g.clientMsgID) != "r-1" {
		t.Fatalf("entry %+v, want %+v", g, want)
	}
	if g := got[1]; g.seq != 9 || g.kind != wire.KindRead || g.sentAt != -1 {
		t.Fatalf("read entry %+v", g)
	}
	if n := testing.AllocsPerRun(100, func() { parseEntries(b, func(entry) {}) }); n != 0 {
		t.Fatalf("parseEntries allocates %v times per push", n)
	}
	ack, _ := proto.Marshal(&wirepb.SendAck{MsgId: 5, ConvSeq: 6, Duplicate: true, Conv: 1 << 63})
	if a, err := parseSendAck(ack); err != nil || a != (sendAck{msgID: 5, convSeq: 6, duplicate: true, conv: 1 << 63}) {
		t.Fatalf("SendAck %+v: %v", a, err)
	}
	eb, _ := proto.Marshal(&wirepb.Error{Code: 13, RetryAfterMs: 250})
	if c, ra, to := parseError(eb); c != 13 || ra != 250 || to != "" {
		t.Fatalf("Error %d %d %q", c, ra, to)
	}
	eb, _ = proto.Marshal(&wirepb.Error{Code: uint32(wire.CodeRedirect), Redirect: "10.0.0.2:7600"})
	if c, _, to := parseError(eb); c != uint32(wire.CodeRedirect) || to != "10.0.0.2:7600" {
		t.Fatalf("Error %d redirect %q", c, to)
	}
}

// FuzzParseError holds parseError to the generated code: on every body
// that the generated code decodes, the two agree.
func FuzzParseError(f *testing.F) {
	for _, e := range []*wirepb.Error{
		{},
		{Code: 13, RetryAfterMs: 250},
		{Code: uint32(wire.CodeRedirect), Message: "moved", Redirect: "10.0.0.2:7600"},
	} {
		b, _ := proto.Marshal(e)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var e wirepb.Error
		if proto.Unmarshal(b, &e) != nil {
			parseError(b) // must not panic
			return
		}
		code, after, to := parseError(b)
		if code != e.Code || after != uint64(e.RetryAfterMs) || to != e.Redirect {
			t.Fatalf("parseError(%x) = %d, %d, %q; generated code: %v", b, code, after, to, &e)
		}
	})
}
