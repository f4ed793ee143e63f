package gateway

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/timeline/pebble"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// fuzzRequest builds the body of cmd from the fuzzer's numbers, so that
// every number a client can supply takes extreme values.
func fuzzRequest(cmd wire.Command, conv, a, b uint64, n uint32, ms int64) proto.Message {
	switch cmd {
	case wire.CmdSend:
		return &wirepb.SendRequest{Conv: conv, ClientMsgId: "f", Kind: n, Body: []byte("x"), Mentions: []uint64{a, b}[:n%3]}
	case wire.CmdRecall:
		return &wirepb.RecallRequest{Conv: conv, ConvSeq: a}
	case wire.CmdEdit:
		return &wirepb.EditRequest{Conv: conv, ConvSeq: a, Body: []byte("y")}
	case wire.CmdSync:
		return &wirepb.SyncRequest{AfterSeq: a, Limit: n}
	case wire.CmdHistory:
		return &wirepb.HistoryRequest{Conv: conv, BeforeConvSeq: a, Limit: n}
	case wire.CmdConversations:
		return &wirepb.ConversationsRequest{Offset: n}
	case wire.CmdMarkRead:
		return &wirepb.MarkReadRequest{Conv: conv, ConvSeq: a}
	case wire.CmdCreateGroup:
		return &wirepb.CreateGroupRequest{Members: []uint64{a, b}}
	case wire.CmdInvite:
		return &wirepb.InviteRequest{Conv: conv, Users: []uint64{a, b}}
	case wire.CmdKick:
		return &wirepb.KickRequest{Conv: conv, User: a}
	case wire.CmdSetRole:
		return &wirepb.SetRoleRequest{Conv: conv, User: a, Role: n}
	case wire.CmdMute:
		return &wirepb.MuteRequest{Conv: conv, User: a, UntilMs: ms}
	case wire.CmdSetDND:
		return &wirepb.SetDNDRequest{Conv: conv, On: n%2 == 1}
	case wire.CmdTyping:
		return &wirepb.TypingRequest{Conv: conv}
	case wire.CmdPresence:
		return &wirepb.PresenceRequest{Users: []uint64{a, b}}
	case wire.CmdReadReceipts:
		return &wirepb.ReadReceiptsRequest{Conv: conv, ConvSeq: a, AfterUser: b, Limit: n, Unread: ms%2 == 0}
	case wire.CmdSendDirect:
		return &wirepb.SendDirectRequest{To: a, ClientMsgId: "f", Kind: n, Body: []byte("x")}
	case wire.CmdBlock:
		return &wirepb.BlockRequest{User: a, On: n%2 == 1}
	case wire.CmdSetGroupProfile:
		// n picks which fields are present and their lengths, around the limits.
		req := &wirepb.SetGroupProfileRequest{Conv: conv}
		if n&1 != 0 {
			req.Name = proto.String(strings.Repeat("n", int(a%(wire.MaxGroupName+2))))
		}
		if n&2 != 0 {
			req.Announcement = proto.String(strings.Repeat("a", int(b%(wire.MaxAnnouncement+2))))
		}
		if n&4 != 0 {
			req.AvatarUrl = proto.String(strings.Repeat("u", int(n>>3)%(wire.MaxAvatarURL+2)))
		}
		return req
	default: // JOIN, LEAVE, DISMISS, GROUP_INFO, HEARTBEAT
		return &wirepb.ConvRequest{Conv: conv}
	}
}

// FuzzHandlers drives every request handler, on a real inbox over an
// in-memory Pebble, with bodies built from extreme numbers. No request may
// panic or fail as an internal error, and what a read returns must lie in
// the range it asked for.
func FuzzHandlers(f *testing.F) {
	extremes := []uint64{0, 1, 2, math.MaxInt64, math.MaxInt64 + 1, math.MaxUint64 - 1, math.MaxUint64}
	for i, cmd := range handlerCommands() {
		for j, x := range extremes {
			f.Add(uint16(cmd), uint64(i%2), x, extremes[(j+1)%len(extremes)], uint32(x), int64(x))
		}
	}
	st, err := pebble.Open(pebble.Options{Dir: "db", FS: vfs.NewMem()})
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	gw, err := New(Config{Secret: secret})
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	svc, err := inbox.New(ctx, inbox.Config{Store: st, Notifier: gw})
	if err != nil {
		f.Fatal(err)
	}
	defer svc.Close()
	gw.svc = svc
	// Users 1 and 2 share a group with a few messages; the fuzzer picks its
	// conv (the group, or any number) and may change it as it goes.
	g, err := svc.CreateGroup(ctx, 1, inbox.NewGroup{Members: []uint64{2}})
	if err != nil {
		f.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		if _, err := svc.SendGroupMessage(ctx, 1, g.ID, id, 1, []byte(id)); err != nil {
			f.Fatal(err)
		}
	}

	f.Fuzz(func(t *testing.T, rawCmd uint16, conv, a, b uint64, n uint32, ms int64) {
		cmd := wire.Command(rawCmd)
		h, ok := handlers[cmd]
		if !ok {
			return
		}
		if conv < 2 {
			conv = g.ID // most inputs should reach a real group
		}
		user := 1 + uint64(n>>31) // the owner, or a plain member
		body, err := proto.Marshal(fuzzRequest(cmd, conv, a, b, n, ms))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := h(ctx, gw, user, body)
		if err != nil {
			if e := errorFor(err); wire.Code(e.Code) == wire.CodeInternal {
				t.Fatalf("%v: internal error: %v", cmd, err)
			}
			return
		}
		switch r := resp.(type) {
		case *wirepb.SyncResponse:
			for i, e := range r.Entries {
				if e.Seq <= a || e.Seq > r.HeadSeq || (i > 0 && e.Seq != r.Entries[i-1].Seq+1) {
					t.Fatalf("SYNC after %d: seq %d at %d (head %d)", a, e.Seq, i, r.HeadSeq)
				}
			}
		case *wirepb.HistoryResponse:
			for _, m := range r.Messages {
				if a != 0 && m.ConvSeq >= a {
					t.Fatalf("HISTORY before %d: conv_seq %d", a, m.ConvSeq)
				}
			}
		case *wirepb.ReadReceiptsResponse:
			if r.Read > r.Members || len(r.Users) > int(r.Members) || !slices.IsSorted(r.Users) || len(r.Users) > 0 && r.Users[0] <= b {
				t.Fatalf("READ_RECEIPTS after user %d: %v", b, r)
			}
		}
	})
}

// handlerCommands lists the commands with a handler, in command order.
func handlerCommands() []wire.Command {
	var cmds []wire.Command
	for c := range wire.Command(1 << 10) {
		if _, ok := handlers[c]; ok {
			cmds = append(cmds, c)
		}
	}
	return cmds
}

// TestSyncAfterLastSeq asks for what follows the largest seq: nothing, and
// not the inbox from its start (after_seq+1 must not wrap).
func TestSyncAfterLastSeq(t *testing.T) {
	s := start(t, Config{})
	c := s.login(1, "d")
	createGroup(t, c, 2)
	var sync wirepb.SyncResponse
	if err := c.call(wire.CmdSync, &wirepb.SyncRequest{AfterSeq: math.MaxUint64}, &sync); err != nil {
		t.Fatal(err)
	}
	if len(sync.Entries) != 0 || sync.HeadSeq != 1 || sync.HasMore {
		t.Fatalf("sync after 2^64-1: %v", &sync)
	}
}
