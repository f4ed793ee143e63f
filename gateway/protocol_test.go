package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/internal/gatewaytest"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// signPayload signs a payload JSON as it is, so that tests can present
// tokens token.Sign refuses to make.
func signPayload(payload string) string {
	enc := base64.RawURLEncoding
	p := enc.EncodeToString([]byte(payload))
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(p))
	return p + "." + enc.EncodeToString(h.Sum(nil))
}

func TestAuthTokenClaims(t *testing.T) {
	s := start(t, Config{})
	device := func(n int) string {
		return `{"u":42,"d":"` + strings.Repeat("d", n) + `","exp":4000000000}`
	}
	tests := []struct {
		name    string
		payload string
		want    wire.Code // 0: accepted
	}{
		{"device of 64 bytes", device(64), 0},
		{"device of 65 bytes", device(65), wire.CodeUnauthenticated},
		{"device of 300 bytes", device(300), wire.CodeUnauthenticated},
		{"device of 700 bytes", device(700), wire.CodeUnauthenticated},
		{"exp is the largest int64", `{"u":42,"d":"p","exp":9223372036854775807}`, 0},
		{"exp missing", `{"u":42,"d":"p"}`, wire.CodeUnauthenticated},
		{"key in upper case", `{"U":42,"d":"p","exp":4000000000}`, wire.CodeUnauthenticated},
		{"exp passed", `{"u":42,"d":"p","exp":1000000000}`, wire.CodeTokenExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := s.dial()
			var resp wirepb.AuthResponse
			err := c.call(wire.CmdAuth, &wirepb.AuthRequest{Token: signPayload(tt.payload)}, &resp)
			if code(err) != tt.want || tt.want == 0 && err != nil {
				t.Fatalf("err %v, want code %d", err, tt.want)
			}
			if tt.want == 0 && (resp.UserId != 42 || resp.MaxGroupSize != 500) {
				t.Fatalf("auth response %v", &resp)
			}
		})
	}
}

// headThenSend reads a user's head once and then has a message sent to
// them before answering: the entry that a gateway reading the head before
// registering the session would neither count nor push.
type headThenSend struct {
	Service
	user, conv atomic.Uint64
}

func (h *headThenSend) Head(ctx context.Context, user uint64) (uint64, error) {
	head, err := h.Service.Head(ctx, user)
	if err == nil && h.user.CompareAndSwap(user, 0) {
		_, err = h.Service.SendMessage(ctx, user, h.conv.Load(), inbox.Outgoing{ClientMsgID: "between", Kind: wire.KindText, Body: []byte("between")})
	}
	return head, err
}

func TestAuthRegistersBeforeReadingHead(t *testing.T) {
	var wrapped *headThenSend
	s := start(t, Config{}, func(svc Service) Service {
		wrapped = &headThenSend{Service: svc}
		return wrapped
	})
	alice := s.login(1, "phone")
	conv := createGroup(t, alice, 2)
	wrapped.conv.Store(conv)
	wrapped.user.Store(1)
	laptop := s.dial()
	var resp wirepb.AuthResponse
	if err := laptop.call(wire.CmdAuth, &wirepb.AuthRequest{Token: gatewaytest.Token(t, 1, "laptop", time.Hour)}, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.HeadSeq != 1 {
		t.Fatalf("head_seq %d, want 1 (the create notice)", resp.HeadSeq)
	}
	// Entry 2 was committed after the head was read: it must come as a push.
	// The create notice's own push may come first, when it went out after
	// this device registered (the create's ack need not wait for it): it
	// is within head_seq, which the client's sync rules absorb.
	es := laptop.pushes(1)
	if es[0].Seq == 1 {
		es = laptop.pushes(2)[1:]
	}
	if es[0].Seq != 2 || string(es[0].Message.GetBody()) != "between" {
		t.Fatalf("pushed %v", es)
	}
}

func TestConvZeroIsInvalid(t *testing.T) {
	s := start(t, Config{})
	c := s.login(1, "d")
	createGroup(t, c, 2)
	tests := []struct {
		cmd wire.Command
		req proto.Message
	}{
		{wire.CmdSend, &wirepb.SendRequest{ClientMsgId: "m", Kind: 1}},
		{wire.CmdHistory, &wirepb.HistoryRequest{}},
		{wire.CmdMarkRead, &wirepb.MarkReadRequest{ConvSeq: 1}},
		{wire.CmdInvite, &wirepb.InviteRequest{Users: []uint64{3}}},
		{wire.CmdJoin, &wirepb.ConvRequest{}},
		{wire.CmdLeave, &wirepb.ConvRequest{}},
		{wire.CmdKick, &wirepb.KickRequest{User: 2}},
		{wire.CmdDismiss, &wirepb.ConvRequest{}},
		{wire.CmdSetRole, &wirepb.SetRoleRequest{User: 2, Role: 2}},
		{wire.CmdMute, &wirepb.MuteRequest{}},
		{wire.CmdSetDND, &wirepb.SetDNDRequest{On: true}},
		{wire.CmdGroupInfo, &wirepb.ConvRequest{}},
		{wire.CmdRecall, &wirepb.RecallRequest{ConvSeq: 1, ClientMsgId: "r"}},
		{wire.CmdEdit, &wirepb.EditRequest{ConvSeq: 1, ClientMsgId: "e", Body: []byte("x")}},
		{wire.CmdTyping, &wirepb.TypingRequest{}},
		{wire.CmdSetGroupProfile, &wirepb.SetGroupProfileRequest{Name: proto.String("x")}},
		{wire.CmdReadReceipts, &wirepb.ReadReceiptsRequest{ConvSeq: 1}},
	}
	for _, tt := range tests {
		if err := c.call(tt.cmd, tt.req, nil); code(err) != wire.CodeInvalid {
			t.Errorf("%v with conv 0: %v, want INVALID", tt.cmd, err)
		}
	}
}

func TestDismissedGroupOverTheWire(t *testing.T) {
	s := start(t, Config{})
	owner, member, former, stranger := s.login(1, "d"), s.login(2, "d"), s.login(3, "d"), s.login(4, "d")
	conv := createGroup(t, owner, 2, 3)
	if err := former.call(wire.CmdLeave, &wirepb.ConvRequest{Conv: conv}, nil); err != nil {
		t.Fatal(err)
	}
	if err := owner.call(wire.CmdDismiss, &wirepb.ConvRequest{Conv: conv}, nil); err != nil {
		t.Fatal(err)
	}
	requests := []struct {
		cmd wire.Command
		req proto.Message
	}{
		{wire.CmdGroupInfo, &wirepb.ConvRequest{Conv: conv}},
		{wire.CmdHistory, &wirepb.HistoryRequest{Conv: conv}},
		{wire.CmdSend, &wirepb.SendRequest{Conv: conv, ClientMsgId: "late", Kind: 1}},
		{wire.CmdSetDND, &wirepb.SetDNDRequest{Conv: conv, On: true}},
		{wire.CmdLeave, &wirepb.ConvRequest{Conv: conv}},
		{wire.CmdJoin, &wirepb.ConvRequest{Conv: conv}},
		{wire.CmdInvite, &wirepb.InviteRequest{Conv: conv, Users: []uint64{5}}},
	}
	for name, c := range map[string]*conn{"owner": owner, "member": member, "former member": former, "stranger": stranger} {
		for _, r := range requests {
			if err := c.call(r.cmd, r.req, nil); code(err) != wire.CodeDismissed {
				t.Errorf("%s: %v on a dismissed group: %v, want DISMISSED", name, r.cmd, err)
			}
		}
	}
	// The read marker is the user's own: it still moves up to the dismiss
	// notice, so that the unread count can reach zero.
	var mr wirepb.MarkReadResponse
	if err := member.call(wire.CmdMarkRead, &wirepb.MarkReadRequest{Conv: conv, ConvSeq: 100}, &mr); err != nil || mr.ReadSeq != 3 {
		t.Fatalf("mark read after dismissal: %v, %v", &mr, err)
	}
	if err := stranger.call(wire.CmdMarkRead, &wirepb.MarkReadRequest{Conv: conv, ConvSeq: 1}, nil); code(err) != wire.CodeNotMember {
		t.Fatalf("a stranger's mark read: %v", err)
	}
}

// TestNoSuchGroup: HISTORY and GROUP_INFO of a group that does not exist
// answer NO_GROUP, as the group commands do, not NOT_MEMBER.
func TestNoSuchGroup(t *testing.T) {
	s := start(t, Config{})
	c := s.login(1, "d")
	missing := createGroup(t, c, 2) + 1000
	for _, r := range []struct {
		cmd wire.Command
		req proto.Message
	}{
		{wire.CmdHistory, &wirepb.HistoryRequest{Conv: missing}},
		{wire.CmdGroupInfo, &wirepb.ConvRequest{Conv: missing}},
	} {
		if err := c.call(r.cmd, r.req, nil); code(err) != wire.CodeNoGroup {
			t.Errorf("%v of a group that does not exist: %v, want NO_GROUP", r.cmd, err)
		}
	}
}

// TestGroupFullTellsTheLimit: the AUTH response's max_group_size is the
// server's member limit, not the default, and GROUP_FULL names it.
func TestGroupFullTellsTheLimit(t *testing.T) {
	s := startInbox(t, Config{}, inbox.Config{MaxGroupSize: 3})
	c := s.dial()
	var resp wirepb.AuthResponse
	if err := c.call(wire.CmdAuth, &wirepb.AuthRequest{Token: gatewaytest.Token(t, 1, "d", time.Hour)}, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.MaxGroupSize != 3 {
		t.Fatalf("max_group_size %d, want 3", resp.MaxGroupSize)
	}
	createGroup(t, c, 2, 3)
	err := c.call(wire.CmdCreateGroup, &wirepb.CreateGroupRequest{Members: []uint64{2, 3, 4}}, nil)
	if code(err) != wire.CodeGroupFull || !strings.Contains(err.Error(), "at most 3 members") {
		t.Fatalf("a group of 4: %v, want GROUP_FULL naming the limit", err)
	}
}

func TestClientMsgID(t *testing.T) {
	s := start(t, Config{})
	c := s.login(1, "d")
	a, b := createGroup(t, c, 2), createGroup(t, c, 3)
	send := func(conv uint64, id string) (*wirepb.SendAck, error) {
		var ack wirepb.SendAck
		err := c.call(wire.CmdSend, &wirepb.SendRequest{Conv: conv, ClientMsgId: id, Kind: 1, Body: []byte("x")}, &ack)
		return &ack, err
	}
	first, err := send(a, "m-1")
	if err != nil {
		t.Fatal(err)
	}
	// The same id in another conversation is refused, not taken for a
	// resend: the ack would be the other conversation's.
	if _, err := send(b, "m-1"); code(err) != wire.CodeInvalid {
		t.Fatalf("id reused in another conversation: %v", err)
	}
	if again, err := send(a, "m-1"); err != nil || !again.Duplicate || again.MsgId != first.MsgId {
		t.Fatalf("resend: %v, %v", again, err)
	}
	// Bytes, not characters: 21 three-byte characters are 63 bytes.
	if _, err := send(a, strings.Repeat("€", 21)); err != nil {
		t.Fatalf("63 bytes of UTF-8: %v", err)
	}
	for _, id := range []string{"", strings.Repeat("x", 65), strings.Repeat("€", 22)} {
		if _, err := send(a, id); code(err) != wire.CodeInvalid {
			t.Errorf("client_msg_id of %d bytes: %v", len(id), err)
		}
	}
	// A proto3 string must be UTF-8: a body holding other bytes does not
	// decode.
	body := protowire.AppendTag(nil, 1, protowire.VarintType)
	body = protowire.AppendVarint(body, a)
	body = protowire.AppendTag(body, 2, protowire.BytesType)
	body = protowire.AppendBytes(body, []byte{0xff, 0xfe})
	body = protowire.AppendTag(body, 3, protowire.VarintType)
	body = protowire.AppendVarint(body, 1)
	c.next++
	c.c.Write(append(rawHeader(uint32(len(body)), wire.Version, wire.CmdSend, c.next), body...))
	f, err := c.read()
	var e wirepb.Error
	if err != nil || f.Flags&wire.FlagError == 0 || wire.Decode(f.Body, &e) != nil || wire.Code(e.Code) != wire.CodeBadRequest {
		t.Fatalf("client_msg_id not UTF-8: %+v %v, %v", f.Header, &e, err)
	}
}

// TestSettingEntriesHaveNoMessage: the read and dnd entries a user's other
// devices receive, pushed or synced, carry msg_id 0 and no message, the
// setting's value in conv_seq.
func TestSettingEntriesHaveNoMessage(t *testing.T) {
	s := start(t, Config{})
	phone, laptop, bob := s.login(1, "phone"), s.login(1, "laptop"), s.login(2, "d")
	conv := createGroup(t, phone, 2)
	if err := bob.call(wire.CmdSend, &wirepb.SendRequest{Conv: conv, ClientMsgId: "m", Kind: 1, Body: []byte("hi")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := phone.call(wire.CmdMarkRead, &wirepb.MarkReadRequest{Conv: conv, ConvSeq: 2}, nil); err != nil {
		t.Fatal(err)
	}
	if err := phone.call(wire.CmdSetDND, &wirepb.SetDNDRequest{Conv: conv, On: true}, nil); err != nil {
		t.Fatal(err)
	}
	var page wirepb.SyncResponse
	if err := laptop.call(wire.CmdSync, &wirepb.SyncRequest{}, &page); err != nil {
		t.Fatal(err)
	}
	for how, es := range map[string][]*wirepb.Entry{"pushed": laptop.pushes(4), "synced": page.Entries} {
		if len(es) != 4 {
			t.Fatalf("%s: %d entries, want 4", how, len(es))
		}
		for i, want := range []struct {
			kind    wire.Kind
			convSeq uint64
		}{{wire.KindRead, 2}, {wire.KindDND, 1}} {
			e := es[2+i]
			if wire.Kind(e.Kind) != want.kind || e.ConvSeq != want.convSeq || e.MsgId != 0 || e.Message != nil {
				t.Errorf("%s %v entry: %v", how, want.kind, e)
			}
		}
	}
}

func TestMuteUntil(t *testing.T) {
	s := start(t, Config{})
	c := s.login(1, "d")
	conv := createGroup(t, c, 2)
	now := time.Now().UnixMilli()
	tests := []struct {
		user  uint64
		until int64
		want  wire.Code
	}{
		{2, now - 1000, wire.CodeInvalid},
		{2, -1, wire.CodeInvalid},
		{0, now - 1000, wire.CodeInvalid},
		{2, now + 60_000, 0},
		{2, 0, 0},
		{0, now + 60_000, 0},
		{0, 0, 0},
	}
	for _, tt := range tests {
		err := c.call(wire.CmdMute, &wirepb.MuteRequest{Conv: conv, User: tt.user, UntilMs: tt.until}, nil)
		if code(err) != tt.want || tt.want == 0 && err != nil {
			t.Errorf("mute user %d until %d: %v, want code %d", tt.user, tt.until, err, tt.want)
		}
	}
}

// TestRepeatedMembershipCommands: a MUTE repeated with the same until_ms
// is answered as the first and posts no second notice; INVITE of members
// only and KICK of a non-member keep version 1's answers.
func TestRepeatedMembershipCommands(t *testing.T) {
	s := start(t, Config{})
	c := s.login(1, "d")
	conv := createGroup(t, c, 2)
	until := time.Now().Add(time.Hour).UnixMilli()
	for _, req := range []*wirepb.MuteRequest{{Conv: conv, User: 2, UntilMs: until}, {Conv: conv, UntilMs: until}, {Conv: conv}} {
		for i := range 2 {
			if err := c.call(wire.CmdMute, req, nil); err != nil {
				t.Errorf("MUTE %v, call %d: %v", req, i+1, err)
			}
		}
	}
	if err := c.call(wire.CmdInvite, &wirepb.InviteRequest{Conv: conv, Users: []uint64{2}}, nil); code(err) != wire.CodeInvalid {
		t.Errorf("INVITE of a member: %v, want INVALID", err)
	}
	if err := c.call(wire.CmdKick, &wirepb.KickRequest{Conv: conv, User: 9}, nil); code(err) != wire.CodeNotMember {
		t.Errorf("KICK of a non-member: %v, want NOT_MEMBER", err)
	}
	var sync wirepb.SyncResponse
	if err := c.call(wire.CmdSync, &wirepb.SyncRequest{}, &sync); err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range sync.Entries {
		var n wire.Notice
		if e.Message != nil && wire.Kind(e.Message.Kind) == wire.KindNotice && json.Unmarshal(e.Message.Body, &n) == nil {
			types = append(types, string(n.Type))
		}
	}
	if want := []string{"create", "mute", "mute_group", "mute_group"}; !slices.Equal(types, want) {
		t.Errorf("notices %q, want %q: one for each change", types, want)
	}
}
