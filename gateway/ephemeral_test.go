package gateway

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// TestTypingEventOnTheWire: the event is a server-initiated frame of
// command 13 (flags 0, request id 0) with a TypingEvent body, to the other
// member's connection only; the typist's connection gets the response and
// nothing else (call fails on any other frame); nothing reaches SYNC.
func TestTypingEventOnTheWire(t *testing.T) {
	s := start(t, Config{})
	a := s.login(1, "d")
	b := s.login(2, "d")
	conv := createGroup(t, a, 2)
	if err := a.call(wire.CmdTyping, &wirepb.TypingRequest{Conv: conv}, &wirepb.Empty{}); err != nil {
		t.Fatal(err)
	}
	if err := a.call(wire.CmdHeartbeat, &wirepb.Empty{}, &wirepb.Empty{}); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := b.read()
		if err != nil {
			t.Fatal(err)
		}
		if f.Command == wire.CmdPush {
			continue // the create notice
		}
		if f.Command != wire.CmdTyping || f.Flags != 0 || f.RequestID != 0 {
			t.Fatalf("frame %+v, want a server-initiated TYPING", f.Header)
		}
		var ev wirepb.TypingEvent
		if err := wire.Decode(f.Body, &ev); err != nil {
			t.Fatal(err)
		}
		if want := (&wirepb.TypingEvent{Conv: conv, User: 1}); !proto.Equal(&ev, want) {
			t.Fatalf("event %v, want %v", &ev, want)
		}
		break
	}
	// Nothing was stored: b's inbox holds the create notice alone.
	var sync wirepb.SyncResponse
	if err := b.call(wire.CmdSync, &wirepb.SyncRequest{}, &sync); err != nil {
		t.Fatal(err)
	}
	if sync.HeadSeq != 1 || len(sync.Entries) != 1 || sync.Entries[0].Kind != uint32(wire.KindNotice) {
		t.Fatalf("SYNC after a typing event: %v", &sync)
	}
}

// TestEphemeralRefusals: each bad request is answered its code, and the
// connection stays open.
func TestEphemeralRefusals(t *testing.T) {
	s := start(t, Config{})
	a := s.login(1, "d")
	conv := createGroup(t, a, 2)
	tooMany := make([]uint64, wire.MaxPresenceUsers+1)
	for i := range tooMany {
		tooMany[i] = uint64(i + 1)
	}
	tests := []struct {
		name string
		user uint64
		cmd  wire.Command
		req  proto.Message
		want wire.Code
	}{
		{"typing in conv 0", 1, wire.CmdTyping, &wirepb.TypingRequest{}, wire.CodeInvalid},
		{"typing by a non-member", 3, wire.CmdTyping, &wirepb.TypingRequest{Conv: conv}, wire.CodeNotMember},
		{"typing in no group", 1, wire.CmdTyping, &wirepb.TypingRequest{Conv: conv + 1}, wire.CodeNoGroup},
		{"presence of 501 users", 1, wire.CmdPresence, &wirepb.PresenceRequest{Users: tooMany}, wire.CodeInvalid},
		{"presence of user 0", 1, wire.CmdPresence, &wirepb.PresenceRequest{Users: []uint64{0, 1}}, wire.CodeInvalid},
		{"receipts in conv 0", 1, wire.CmdReadReceipts, &wirepb.ReadReceiptsRequest{ConvSeq: 1}, wire.CodeInvalid},
		{"receipts beyond the head", 1, wire.CmdReadReceipts, &wirepb.ReadReceiptsRequest{Conv: conv, ConvSeq: 2}, wire.CodeInvalid},
		{"receipts of conv_seq 0", 1, wire.CmdReadReceipts, &wirepb.ReadReceiptsRequest{Conv: conv}, wire.CodeInvalid},
		{"receipts by a non-member", 3, wire.CmdReadReceipts, &wirepb.ReadReceiptsRequest{Conv: conv, ConvSeq: 1}, wire.CodeNotMember},
	}
	conns := map[uint64]*conn{1: a, 3: s.login(3, "d")}
	for _, tt := range tests {
		c := conns[tt.user]
		if err := c.call(tt.cmd, tt.req, nil); code(err) != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	for user, c := range conns {
		if err := c.call(wire.CmdHeartbeat, &wirepb.Empty{}, &wirepb.Empty{}); err != nil {
			t.Errorf("user %d's connection after the refusals: %v", user, err)
		}
	}
}

// TestTypingBlocked: in a direct conversation whose other user blocks the
// typist, the typist's TYPING is answered as usual and reaches nobody; the
// blocker's own typing still reaches the one blocked.
func TestTypingBlocked(t *testing.T) {
	s := start(t, Config{})
	a := s.login(1, "d")
	b := s.login(2, "d")
	var ack wirepb.SendAck
	if err := b.call(wire.CmdSendDirect, &wirepb.SendDirectRequest{To: 1, ClientMsgId: "hi", Kind: 1, Body: []byte("hi")}, &ack); err != nil {
		t.Fatal(err)
	}
	if err := b.call(wire.CmdBlock, &wirepb.BlockRequest{User: 1, On: true}, &wirepb.Empty{}); err != nil {
		t.Fatal(err)
	}
	if err := a.call(wire.CmdTyping, &wirepb.TypingRequest{Conv: ack.Conv}, &wirepb.Empty{}); err != nil {
		t.Fatalf("TYPING of the blocked user: %v", err)
	}
	// An event for b was queued before a's answer: b's next answer comes
	// after it, and b.call fails on any frame but a push or its answer.
	if err := b.call(wire.CmdHeartbeat, &wirepb.Empty{}, &wirepb.Empty{}); err != nil {
		t.Fatal(err)
	}
	if err := b.call(wire.CmdTyping, &wirepb.TypingRequest{Conv: ack.Conv}, &wirepb.Empty{}); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := a.read()
		if err != nil {
			t.Fatal(err)
		}
		if f.Command == wire.CmdPush {
			continue // b's message
		}
		var ev wirepb.TypingEvent
		if f.Command != wire.CmdTyping || wire.Decode(f.Body, &ev) != nil || ev.User != 2 || ev.Conv != ack.Conv {
			t.Fatalf("frame %+v, want b's typing event", f.Header)
		}
		break
	}
}
