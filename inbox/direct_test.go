package inbox

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

func (e *env) sendDirect(sender, to uint64, cmid string) SendResult {
	e.t.Helper()
	r, err := e.svc.SendDirect(ctx, sender, to, cmid, wire.KindText, []byte(cmid))
	if err != nil {
		e.t.Fatalf("SendDirect(%d → %d, %q): %v", sender, to, cmid, err)
	}
	return r
}

func TestSendDirect(t *testing.T) {
	e := newEnv(t, Config{})
	first := e.sendDirect(1, 2, "a")
	conv := wire.DirectConv(1, 2)
	if first.Conv != conv || first.ConvSeq != 1 || first.Duplicate {
		t.Fatalf("first direct send: %+v, want conv %d at conv_seq 1", first, conv)
	}
	// The other side answers: the same conversation, whichever way.
	if r := e.sendDirect(2, 1, "b"); r.Conv != conv || r.ConvSeq != 2 {
		t.Fatalf("reply: %+v, want conv %d conv_seq 2", r, conv)
	}
	// A plain SEND to the conversation id works like any send.
	if r := e.send(1, conv, "c", "c"); r.Conv != conv || r.ConvSeq != 3 {
		t.Fatalf("SEND to the direct conversation: %+v", r)
	}
	// A resend is a duplicate with the first result.
	if r := e.sendDirect(1, 2, "a"); !r.Duplicate || r.MsgID != first.MsgID || r.Conv != conv {
		t.Fatalf("resend: %+v, first %+v", r, first)
	}
	for _, u := range []uint64{1, 2} {
		if got := e.bodies(u, conv); fmt.Sprint(got) != "[a b c]" {
			t.Errorf("user %d has %v in the direct conversation, want [a b c]", u, got)
		}
		if n := len(e.inbox(u)); n != 3 {
			t.Errorf("user %d: %d inbox rows, want 3 (no notice, one row per message)", u, n)
		}
	}
	c1, c2 := e.conversation(1, conv), e.conversation(2, conv)
	if c1.Peer != 2 || c2.Peer != 1 || c1.Name != "" {
		t.Errorf("peers %d and %d, name %q; want 2 and 1 and no name", c1.Peer, c2.Peer, c1.Name)
	}
	// 1 sent last: all read; 2 read nothing but its own reply.
	if c1.Unread != 0 || c2.Unread != 1 || c2.JoinedAt != 1 {
		t.Errorf("unread %d and %d (joined at %d), want 0 and 1 (1)", c1.Unread, c2.Unread, c2.JoinedAt)
	}
	// Nobody else may send, read or join.
	if _, err := e.svc.SendGroupMessage(ctx, 3, conv, "x", wire.KindText, nil); !errors.Is(err, ErrNotMember) {
		t.Errorf("a third user's SEND: %v, want ErrNotMember", err)
	}
	if _, err := e.svc.History(ctx, 3, conv, 0, 10); !errors.Is(err, ErrNotMember) {
		t.Errorf("a third user's HISTORY: %v, want ErrNotMember", err)
	}
}

func TestDirectRefusals(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.sendDirect(1, 2, "a").Conv
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"to self", func() error { _, err := e.svc.SendDirect(ctx, 1, 1, "s", wire.KindText, nil); return err }, ErrInvalid},
		{"to user 0", func() error { _, err := e.svc.SendDirect(ctx, 1, 0, "s", wire.KindText, nil); return err }, ErrInvalid},
		{"server kind", func() error { _, err := e.svc.SendDirect(ctx, 1, 2, "s", wire.KindNotice, nil); return err }, ErrInvalid},
		{"block self", func() error { return e.svc.Block(ctx, 1, 1, true) }, ErrInvalid},
		{"invite", func() error { return e.svc.Invite(ctx, 1, conv, []uint64{3}) }, ErrInvalid},
		{"join", func() error { return e.svc.Join(ctx, 3, conv) }, ErrInvalid},
		{"leave", func() error { return e.svc.Leave(ctx, 1, conv) }, ErrInvalid},
		{"kick", func() error { return e.svc.Kick(ctx, 1, conv, 2) }, ErrInvalid},
		{"dismiss", func() error { return e.svc.Dismiss(ctx, 1, conv) }, ErrInvalid},
		{"set role", func() error { return e.svc.SetRole(ctx, 1, conv, 2, wire.RoleAdmin) }, ErrInvalid},
		{"mute", func() error { return e.svc.MuteGroup(ctx, 1, conv, e.svc.cfg.Now().Add(1e12)) }, ErrInvalid},
		{"profile", func() error { n := "x"; return e.svc.SetGroupProfile(ctx, 1, conv, Profile{Name: &n}) }, ErrInvalid},
	}
	for _, tt := range tests {
		if err := tt.call(); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if n := len(e.inbox(1)) + len(e.inbox(2)); n != 2 {
		t.Errorf("%d inbox rows after the refusals, want 2", n)
	}
}

func TestBlock(t *testing.T) {
	e := newEnv(t, Config{})
	// Blocking before any message: the conversation's record only.
	if err := e.svc.Block(ctx, 2, 1, true); err != nil {
		t.Fatal(err)
	}
	conv := wire.DirectConv(1, 2)
	if _, err := e.svc.SendDirect(ctx, 1, 2, "a", wire.KindText, nil); !errors.Is(err, ErrBlocked) {
		t.Fatalf("direct send from a blocked user: %v, want ErrBlocked", err)
	}
	// The record alone makes nobody a member.
	if _, err := e.svc.SendGroupMessage(ctx, 2, conv, "a", wire.KindText, nil); !errors.Is(err, ErrNotMember) {
		t.Fatalf("SEND to a conversation with no message yet: %v, want ErrNotMember", err)
	}
	if len(e.inbox(1)) != 0 || len(e.inbox(2)) != 0 || len(e.conversations(1)) != 0 {
		t.Fatal("a refused send stored something")
	}
	// The blocker may still write, and the blocked user still reads it.
	e.sendDirect(2, 1, "from 2")
	if _, err := e.svc.SendGroupMessage(ctx, 1, conv, "b", wire.KindText, nil); !errors.Is(err, ErrBlocked) {
		t.Fatalf("SEND from a blocked user: %v, want ErrBlocked", err)
	}
	// The block survives a restart (it is in the conversation's record).
	e.close()
	e.open()
	if _, err := e.svc.SendDirect(ctx, 1, 2, "c", wire.KindText, nil); !errors.Is(err, ErrBlocked) {
		t.Fatalf("after a restart: %v, want ErrBlocked", err)
	}
	if err := e.svc.Block(ctx, 2, 1, false); err != nil {
		t.Fatal(err)
	}
	e.sendDirect(1, 2, "d")
	if got := e.bodies(2, conv); fmt.Sprint(got) != "[from 2 d]" {
		t.Fatalf("user 2 has %v, want [from 2 d]", got)
	}
	// Unblocking someone never written to creates nothing.
	if err := e.svc.Block(ctx, 5, 6, false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Group(ctx, wire.DirectConv(5, 6)); !errors.Is(err, timeline.ErrNotFound) {
		t.Fatalf("unblock created a record: %v", err)
	}
}

// TestDirectFirstSendsRace sends the first message from both sides at once,
// many times over: each pair must end with one conversation holding both.
func TestDirectFirstSendsRace(t *testing.T) {
	e := newEnv(t, Config{})
	const pairs = 50
	var wg sync.WaitGroup
	for p := range uint64(pairs) {
		a, b := 100+2*p, 101+2*p
		wg.Go(func() { e.sendDirect(a, b, "hi from a") })
		wg.Go(func() { e.sendDirect(b, a, "hi from b") })
	}
	wg.Wait()
	for p := range uint64(pairs) {
		a, b := 100+2*p, 101+2*p
		for _, u := range []uint64{a, b} {
			cs := e.conversations(u)
			if len(cs) != 1 || cs[0].Conv != wire.DirectConv(a, b) || cs[0].Head != 2 {
				t.Fatalf("user %d: conversations %+v, want one direct conversation with 2 messages", u, cs)
			}
		}
	}
}

// TestDirectOpenedAfterSystemMessage: a system message posted into a
// direct conversation that has only its record (from a BLOCK) reaches
// nobody; the first message then opens the conversation after it, and the
// users' unread counts and inboxes agree.
func TestDirectOpenedAfterSystemMessage(t *testing.T) {
	e := newEnv(t, Config{})
	conv := wire.DirectConv(1, 2)
	if err := e.svc.Block(ctx, 1, 2, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SendSystemMessage(ctx, conv, "sys", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if r := e.sendDirect(1, 2, "a"); r.ConvSeq != 2 {
		t.Fatalf("first direct message at conv_seq %d, want 2", r.ConvSeq)
	}
	for _, u := range []uint64{1, 2} {
		c := e.conversation(u, conv)
		if c.JoinedAt != 2 || c.Head != 2 || c.Unread != map[uint64]uint64{1: 0, 2: 1}[u] || len(e.inbox(u)) != 1 {
			t.Errorf("user %d: joined at %d, head %d, unread %d, %d inbox rows", u, c.JoinedAt, c.Head, c.Unread, len(e.inbox(u)))
		}
	}
}
