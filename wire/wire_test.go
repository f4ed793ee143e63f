package wire_test

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// frame builds a frame by hand, independently of AppendHeader, so that the
// tests check the header layout rather than the codec against itself.
func frame(length uint32, version, flags byte, cmd uint16, reqID uint32, body []byte) []byte {
	b := []byte{
		byte(length >> 24), byte(length >> 16), byte(length >> 8), byte(length),
		version, flags,
		byte(cmd >> 8), byte(cmd),
		byte(reqID >> 24), byte(reqID >> 16), byte(reqID >> 8), byte(reqID),
	}
	return append(b, body...)
}

func TestSplit(t *testing.T) {
	body := []byte{0x08, 0x2a}
	one := frame(2, 1, 1, 3, 7, body)
	empty := frame(0, 1, 0, 2, 9, nil)
	tests := []struct {
		name     string
		buf      []byte
		maxFrame int
		wantN    int
		wantHdr  wire.Header
		wantBody []byte
		wantErr  error
	}{
		{name: "nil buffer", buf: nil, maxFrame: 64},
		{name: "short header", buf: one[:wire.HeaderSize-1], maxFrame: 64},
		{name: "header only", buf: one[:wire.HeaderSize], maxFrame: 64},
		{name: "short body", buf: one[:len(one)-1], maxFrame: 64},
		{
			name: "exact frame", buf: one, maxFrame: 64, wantN: len(one),
			wantHdr:  wire.Header{Length: 2, Version: 1, Flags: wire.FlagResponse, Command: wire.CmdSend, RequestID: 7},
			wantBody: body,
		},
		{
			name: "first of several", buf: concat(one, empty, one), maxFrame: 64, wantN: len(one),
			wantHdr:  wire.Header{Length: 2, Version: 1, Flags: wire.FlagResponse, Command: wire.CmdSend, RequestID: 7},
			wantBody: body,
		},
		{
			name: "zero-length body", buf: empty, maxFrame: 64, wantN: wire.HeaderSize,
			wantHdr:  wire.Header{Version: 1, Command: wire.CmdHeartbeat, RequestID: 9},
			wantBody: []byte{},
		},
		{
			name: "exactly max frame", buf: one, maxFrame: len(one), wantN: len(one),
			wantHdr:  wire.Header{Length: 2, Version: 1, Flags: wire.FlagResponse, Command: wire.CmdSend, RequestID: 7},
			wantBody: body,
		},
		{name: "one byte over max frame", buf: one, maxFrame: len(one) - 1, wantErr: wire.ErrFrameTooLarge},
		// The size is checked from the header alone: a peer announcing a
		// huge frame is refused before its body is buffered.
		{name: "oversized header only", buf: frame(1<<31, 1, 0, 3, 1, nil), maxFrame: wire.DefaultMaxFrame, wantErr: wire.ErrFrameTooLarge},
		{name: "length overflows int32", buf: frame(0xffffffff, 1, 0, 3, 1, nil), maxFrame: wire.DefaultMaxFrame, wantErr: wire.ErrFrameTooLarge},
		{name: "version 0", buf: frame(2, 0, 0, 3, 1, body), maxFrame: 64, wantErr: wire.ErrVersion},
		{name: "version 2", buf: frame(2, 2, 0, 3, 1, body), maxFrame: 64, wantErr: wire.ErrVersion},
		{name: "wrong version before size", buf: frame(1<<31, 2, 0, 3, 1, nil), maxFrame: 64, wantErr: wire.ErrVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, n, err := wire.Split(tt.buf, tt.maxFrame)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if n != tt.wantN {
				t.Fatalf("n = %d, want %d", n, tt.wantN)
			}
			if n == 0 {
				return
			}
			if f.Header != tt.wantHdr {
				t.Errorf("header = %+v, want %+v", f.Header, tt.wantHdr)
			}
			if !bytes.Equal(f.Body, tt.wantBody) {
				t.Errorf("body = %x, want %x", f.Body, tt.wantBody)
			}
			if cap(f.Body) != len(f.Body) {
				t.Errorf("body capacity %d > length %d: an append could overwrite the next frame", cap(f.Body), len(f.Body))
			}
		})
	}
}

func concat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// TestSplitEveryPosition feeds a stream of frames to Split the way a reader
// receives it, cut into two reads at every byte position, and checks that
// the same frames come out.
func TestSplitEveryPosition(t *testing.T) {
	frames := [][]byte{
		frame(3, 1, 0, 3, 1, []byte{1, 2, 3}),
		frame(0, 1, 1, 2, 2, nil),
		frame(5, 1, 3, 5, 3, []byte("hello")),
	}
	stream := concat(frames...)
	for cut := 0; cut <= len(stream); cut++ {
		var buf, got []byte
		var bodies [][]byte
		for _, chunk := range [][]byte{stream[:cut], stream[cut:]} {
			buf = append(buf, chunk...)
			for {
				f, n, err := wire.Split(buf, 64)
				if err != nil {
					t.Fatalf("cut %d: %v", cut, err)
				}
				if n == 0 {
					break
				}
				got = append(got, buf[:n]...)
				bodies = append(bodies, bytes.Clone(f.Body))
				buf = buf[n:]
			}
		}
		if len(buf) != 0 || !bytes.Equal(got, stream) || len(bodies) != len(frames) {
			t.Fatalf("cut %d: split %d frames, %d bytes left", cut, len(bodies), len(buf))
		}
		for i, b := range bodies {
			if !bytes.Equal(b, frames[i][wire.HeaderSize:]) {
				t.Errorf("cut %d: frame %d body %x", cut, i, b)
			}
		}
	}
}

// TestSplitPrefixes checks that no proper prefix of a valid frame is either
// a frame or an error: a reader must simply wait for more bytes.
func TestSplitPrefixes(t *testing.T) {
	f := frame(4, 1, 0, 3, 1, []byte{1, 2, 3, 4})
	for i := range len(f) {
		if _, n, err := wire.Split(f[:i], 64); n != 0 || err != nil {
			t.Errorf("prefix of %d bytes: n = %d, err = %v", i, n, err)
		}
	}
}

func TestAppendHeader(t *testing.T) {
	got := wire.AppendHeader([]byte{0xee}, wire.CmdHistory, wire.FlagResponse|wire.FlagError, 0x01020304, 0x0a0b0c)
	want := concat([]byte{0xee}, frame(0x0a0b0c, 1, 3, 6, 0x01020304, nil))
	if !bytes.Equal(got, want) {
		t.Errorf("AppendHeader = %x, want %x", got, want)
	}
}

// examples holds one populated value of every body type. TestExamplesCover
// keeps it complete when the .proto grows.
func examples() []proto.Message {
	msg := &wirepb.Message{
		Conv: 7, ConvSeq: 3, MsgId: 1_869_000_000_000_000_001, Sender: 42,
		ClientMsgId: "c-1", Kind: 1, Body: []byte("hi"), TimeMs: 1_767_225_600_000,
	}
	group := &wirepb.Group{Id: 7, Name: "ops", Owner: 42, CreatedMs: 1_767_225_600_000, Open: true, MutedUntilMs: 5, Dismissed: true,
		Announcement: "standup at 10", AvatarUrl: "https://example.com/ops.png"}
	return []proto.Message{
		&wirepb.Error{Code: uint32(wire.CodeRateLimited), Message: "slow down", RetryAfterMs: 250},
		&wirepb.Error{Code: uint32(wire.CodeRedirect), Message: "moved", Redirect: "10.0.0.2:7600"},
		&wirepb.Empty{},
		&wirepb.AuthRequest{Token: "a.b"},
		&wirepb.AuthResponse{UserId: 42, DeviceId: "phone", HeadSeq: 9, HeartbeatMs: 30000, ServerTimeMs: -1, MaxFrame: wire.DefaultMaxFrame},
		group,
		&wirepb.Member{User: 42, Role: 3, JoinedAt: 1, MutedUntilMs: 9},
		&wirepb.CreateGroupRequest{Name: "ops", Members: []uint64{43, 44}, Open: true},
		&wirepb.CreateGroupResponse{Group: group},
		&wirepb.InviteRequest{Conv: 7, Users: []uint64{45, 1 << 63}},
		&wirepb.ConvRequest{Conv: 7},
		&wirepb.KickRequest{Conv: 7, User: 43},
		&wirepb.SetRoleRequest{Conv: 7, User: 43, Role: 2},
		&wirepb.MuteRequest{Conv: 7, User: 43, UntilMs: 1_767_225_600_000},
		&wirepb.SetDNDRequest{Conv: 7, On: true},
		&wirepb.GroupInfoResponse{Group: group, Members: []*wirepb.Member{{User: 42, Role: 3}, {User: 43, Role: 1, JoinedAt: 2}}},
		&wirepb.SendRequest{Conv: 7, ClientMsgId: "c-1", Kind: 1, Body: []byte("hi")},
		&wirepb.SendAck{MsgId: 1, ConvSeq: 3, TimeMs: 4, Duplicate: true, Conv: 1 << 63},
		&wirepb.SendDirectRequest{To: 43, ClientMsgId: "c-2", Kind: 1, Body: []byte("hi")},
		&wirepb.BlockRequest{User: 43, On: true},
		&wirepb.SetGroupProfileRequest{Conv: 7, Name: proto.String("ops"), Announcement: proto.String("")},
		&wirepb.SendRequest{Conv: 7, ClientMsgId: "c-2", Kind: 1, Body: []byte("@43 hi"), Mentions: []uint64{43, 1 << 63}, MentionAll: true},
		&wirepb.RecallRequest{Conv: 7, ConvSeq: 3, ClientMsgId: "r-1"},
		&wirepb.EditRequest{Conv: 7, ConvSeq: 3, ClientMsgId: "e-1", Body: []byte("hello")},
		&wirepb.Message{Conv: 7, ConvSeq: 4, MsgId: 2, Sender: 42, Kind: 1, TimeMs: 5, Mentions: []uint64{43}, MentionAll: true, Recalled: true, EditedMs: -1},
		msg,
		&wirepb.Entry{Seq: 5, Conv: 7, ConvSeq: 3, MsgId: msg.MsgId, Kind: 1, Message: msg},
		&wirepb.Push{Entries: []*wirepb.Entry{{Seq: 5, Conv: 7, ConvSeq: 3, MsgId: 1, Kind: 1, Message: msg}, {Seq: 6, Conv: 7, ConvSeq: 3, Kind: 0x8002}}},
		&wirepb.SyncRequest{AfterSeq: 4, Limit: 1000},
		&wirepb.SyncResponse{Entries: []*wirepb.Entry{{Seq: 5, Conv: 7}}, HeadSeq: 6, HasMore: true},
		&wirepb.HistoryRequest{Conv: 7, BeforeConvSeq: 3, Limit: 20},
		&wirepb.HistoryResponse{Messages: []*wirepb.Message{msg, msg}},
		&wirepb.Conversation{Conv: 7, Name: "ops", JoinedAt: 1, LeftAt: 9, ReadSeq: 2, Head: 3, Unread: 1, Dnd: true, Last: msg, MentionUnread: 1, Direct: true, Peer: 43},
		&wirepb.ConversationsRequest{Offset: 40},
		&wirepb.ConversationsResponse{Conversations: []*wirepb.Conversation{{Conv: 7}, {Conv: 8, Last: msg}}, HasMore: true},
		&wirepb.MarkReadRequest{Conv: 7, ConvSeq: 3},
		&wirepb.MarkReadResponse{ReadSeq: 3},
		&wirepb.TypingRequest{Conv: 7},
		&wirepb.TypingEvent{Conv: 7, User: 43},
		&wirepb.PresenceRequest{Users: []uint64{42, 43, 1 << 63}},
		&wirepb.PresenceResponse{Online: []uint64{43}},
		&wirepb.ReadReceiptsRequest{Conv: 7, ConvSeq: 3, AfterUser: 43, Limit: 100, Unread: true},
		&wirepb.ReadReceiptsResponse{Members: 499, Read: 12, Users: []uint64{44, 45}, NextAfter: 45},
	}
}

func TestExamplesCover(t *testing.T) {
	have := make(map[protoreflect.FullName]bool)
	for _, m := range examples() {
		have[m.ProtoReflect().Descriptor().FullName()] = true
	}
	msgs := wirepb.File_inboxd_proto.Messages()
	for i := range msgs.Len() {
		if name := msgs.Get(i).FullName(); !have[name] {
			t.Errorf("examples() has no %s", name)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for i, m := range examples() {
		name := string(m.ProtoReflect().Descriptor().Name())
		t.Run(name, func(t *testing.T) {
			prefix := []byte("prefix")
			buf, err := wire.AppendFrame(prefix, wire.CmdSend, wire.FlagResponse, uint32(i+1), m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf[:len(prefix)], prefix) {
				t.Fatalf("AppendFrame changed the bytes before it")
			}
			f, n, err := wire.Split(buf[len(prefix):], wire.DefaultMaxFrame)
			if err != nil || n != len(buf)-len(prefix) {
				t.Fatalf("Split: n = %d of %d, err = %v", n, len(buf)-len(prefix), err)
			}
			want := wire.Header{Length: uint32(proto.Size(m)), Version: wire.Version, Flags: wire.FlagResponse, Command: wire.CmdSend, RequestID: uint32(i + 1)}
			if f.Header != want {
				t.Errorf("header %+v, want %+v", f.Header, want)
			}
			got := m.ProtoReflect().New().Interface()
			if err := wire.Decode(f.Body, got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, m) {
				t.Errorf("decoded %v, want %v", got, m)
			}
		})
	}
}

func TestAppendFrameNilBody(t *testing.T) {
	buf, err := wire.AppendFrame(nil, wire.CmdHeartbeat, 0, 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := frame(0, 1, 0, 2, 5, nil); !bytes.Equal(buf, want) {
		t.Errorf("got %x, want %x", buf, want)
	}
}

func TestAppendFrameInvalidUTF8(t *testing.T) {
	// proto3 strings must be UTF-8; the codec refuses to send what the peer
	// would refuse to decode, and leaves dst as it was.
	dst := []byte{1, 2}
	out, err := wire.AppendFrame(dst, wire.CmdAuth, 0, 1, &wirepb.AuthRequest{Token: "\xff"})
	if err == nil {
		t.Fatal("no error for an invalid UTF-8 string")
	}
	if !bytes.Equal(out, dst) {
		t.Errorf("dst changed to %x", out)
	}
}

func TestDecodeMalformed(t *testing.T) {
	bad := [][]byte{
		{0x0a},             // field 1, length-delimited, no length
		{0x0a, 0x05, 'a'},  // length past the end
		{0x0a, 0x01, 0xff}, // invalid UTF-8 in a string
		{0x07},             // wire type 7 does not exist
	}
	for _, b := range bad {
		if err := wire.Decode(b, &wirepb.AuthRequest{}); !errors.Is(err, wire.ErrBody) {
			t.Errorf("Decode(%x) = %v, want ErrBody", b, err)
		}
	}
}

func TestCommandNames(t *testing.T) {
	seen := make(map[string]wire.Command)
	for c := range wire.Command(1<<16 - 1) {
		if !c.Known() {
			continue
		}
		name := c.String()
		if prev, dup := seen[name]; dup {
			t.Errorf("commands %d and %d are both %s", prev, c, name)
		}
		seen[name] = c
	}
	if len(seen) != 27 {
		t.Errorf("%d known commands, want 27", len(seen))
	}
	if got := wire.Command(99).String(); got != "COMMAND(99)" {
		t.Errorf("unknown command prints as %q", got)
	}
}

func TestRetryable(t *testing.T) {
	retryable := map[wire.Code]bool{
		wire.CodeRateLimited: true, wire.CodeUnavailable: true, wire.CodeTimeout: true,
		wire.CodeShuttingDown: true, wire.CodeInternal: true,
	}
	for c := wire.Code(0); c <= wire.CodeTooLate+1; c++ {
		if c.Retryable() != retryable[c] {
			t.Errorf("code %d: Retryable() = %v", c, c.Retryable())
		}
	}
}

func TestClientCommandsBelowPeerRange(t *testing.T) {
	for c := int(wire.CmdPeerFirst); c <= 0xFFFF; c++ {
		if wire.Command(c).Known() {
			t.Errorf("client command %v is in the peer range", wire.Command(c))
		}
	}
}
