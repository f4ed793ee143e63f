package client

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

func TestE2EDirect(t *testing.T) {
	addr := startServer(t)
	ctx := ctxT(t)
	alice, aliceLog := e2eClient(t, addr, 1, "phone", Config{})
	bob, bobLog := e2eClient(t, addr, 2, "phone", Config{})

	ack, err := alice.SendDirect(ctx, 2, "d-1", uint32(wire.KindText), []byte("hi bob"))
	if err != nil {
		t.Fatal(err)
	}
	conv := wire.DirectConv(1, 2)
	if ack.Conv != conv || ack.ConvSeq != 1 || ack.Duplicate {
		t.Fatalf("first direct ack %v, want conv %d at conv_seq 1", ack, conv)
	}
	// Bob answers in the conversation by its id; Alice resends her first.
	if ack, err := bob.Send(ctx, conv, "d-2", uint32(wire.KindText), []byte("hi alice")); err != nil || ack.ConvSeq != 2 || ack.Conv != conv {
		t.Fatalf("SEND to the direct conversation: %v, %v", ack, err)
	}
	if again, err := alice.SendDirect(ctx, 2, "d-1", uint32(wire.KindText), []byte("hi bob")); err != nil || !again.Duplicate || again.MsgId != ack.MsgId {
		t.Fatalf("resend: %v, %v (first %v)", again, err, ack)
	}
	for _, l := range []*entryLog{aliceLog, bobLog} {
		l.waitMessages(t, []string{"d-1", "d-2"})
	}
	for user, c := range map[uint64]*Client{1: alice, 2: bob} {
		convs, err := c.Conversations(ctx)
		if err != nil || len(convs) != 1 {
			t.Fatalf("user %d: conversations %v, %v", user, convs, err)
		}
		got := convs[0]
		if !got.Direct || got.Peer != 3-user || got.Conv != conv || got.Head != 2 {
			t.Errorf("user %d: conversation %v, want direct with %d, head 2", user, got, 3-user)
		}
		// Each sent the last message they saw as theirs: Alice has Bob's unread.
		if want := map[uint64]uint64{1: 1, 2: 0}[user]; got.Unread != want {
			t.Errorf("user %d: unread %d, want %d", user, got.Unread, want)
		}
	}

	// Refusals, each with its code; nothing is stored.
	if _, err := alice.SendDirect(ctx, 1, "self", 1, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("direct to self: %v, want INVALID", err)
	}
	if err := alice.Invite(ctx, conv, 3); !errors.Is(err, ErrInvalid) {
		t.Errorf("invite into a direct conversation: %v, want INVALID", err)
	}
	if err := alice.Leave(ctx, conv); !errors.Is(err, ErrInvalid) {
		t.Errorf("leave a direct conversation: %v, want INVALID", err)
	}
	if err := bob.Block(ctx, 1, true); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendDirect(ctx, 2, "d-3", 1, nil); !errors.Is(err, ErrBlocked) {
		t.Errorf("direct send to a user who blocked the sender: %v, want BLOCKED", err)
	}
	if _, err := alice.Send(ctx, conv, "d-4", 1, nil); !errors.Is(err, ErrBlocked) {
		t.Errorf("SEND to a user who blocked the sender: %v, want BLOCKED", err)
	}
	if err := bob.Block(ctx, 1, false); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendDirect(ctx, 2, "d-5", uint32(wire.KindText), nil); err != nil {
		t.Fatal(err)
	}
	bobLog.waitMessages(t, []string{"d-1", "d-2", "d-5"})
}

func TestE2EGroupProfile(t *testing.T) {
	addr := startServer(t)
	ctx := ctxT(t)
	alice, _ := e2eClient(t, addr, 1, "phone", Config{})
	bob, bobLog := e2eClient(t, addr, 2, "phone", Config{})
	g, err := alice.CreateGroup(ctx, &wirepb.CreateGroupRequest{Name: "ops", Members: []uint64{2}})
	if err != nil {
		t.Fatal(err)
	}
	name, ann, empty := "ops team", "standup at 10", ""
	if err := bob.SetGroupProfile(ctx, g.Id, GroupProfile{Name: &name}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("a plain member renames: %v, want FORBIDDEN", err)
	}
	if err := alice.SetGroupProfile(ctx, g.Id, GroupProfile{Name: &name, Announcement: &ann}); err != nil {
		t.Fatal(err)
	}
	if err := alice.SetGroupProfile(ctx, g.Id, GroupProfile{Announcement: &empty}); err != nil {
		t.Fatal(err)
	}
	info, err := bob.GroupInfo(ctx, g.Id)
	if err != nil || info.Group.Name != name || info.Group.Announcement != "" {
		t.Fatalf("GroupInfo: %v, %v", info, err)
	}
	// Bob's device gets a notice per change: create, rename, announcement
	// set, announcement cleared.
	eventually(t, func() bool { return len(bobLog.kinds()) >= 4 })
	var types []wire.NoticeType
	bobLog.mu.Lock()
	for _, e := range bobLog.entries {
		var n wire.Notice
		if err := json.Unmarshal(e.Message.Body, &n); err != nil {
			t.Fatal(err)
		}
		types = append(types, n.Type)
	}
	bobLog.mu.Unlock()
	want := []wire.NoticeType{wire.NoticeCreate, wire.NoticeRename, wire.NoticeAnnounce, wire.NoticeAnnounce}
	if !slices.Equal(types, want) {
		t.Fatalf("notices %v, want %v", types, want)
	}
}
