package inbox

import (
	"errors"
	"testing"
	"time"

	"github.com/inboxd/inboxd/wire"
)

// systemBodies returns the bodies of the user's system messages in conv.
func (e *env) systemBodies(user, conv uint64) []string {
	var out []string
	for _, en := range e.inbox(user) {
		if en.Row.Conv == conv && en.Row.Kind == wire.KindSystemMessage {
			if en.Msg.Sender != wire.SystemSender {
				e.t.Errorf("system message from %d", en.Msg.Sender)
			}
			out = append(out, string(en.Msg.Body))
		}
	}
	return out
}

func TestSendSystemMessage(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.create(1, 2, 3)
	first, err := e.svc.SendSystemMessage(ctx, conv, "order-1", []byte("your order shipped"))
	if err != nil || first.Duplicate {
		t.Fatalf("first: %+v %v", first, err)
	}
	again, err := e.svc.SendSystemMessage(ctx, conv, "order-1", []byte("your order shipped"))
	if err != nil || !again.Duplicate || again.MsgID != first.MsgID || again.ConvSeq != first.ConvSeq {
		t.Fatalf("retry: %+v %v, first %+v", again, err, first)
	}
	// A user's client msg id of the same text is the user's own key.
	e.send(1, conv, "order-1", "hi")
	for _, u := range []uint64{1, 2, 3} {
		if got := e.systemBodies(u, conv); len(got) != 1 || got[0] != "your order shipped" {
			t.Errorf("user %d has system messages %q, want one", u, got)
		}
		if c := e.conversation(u, conv); u != 1 && c.Unread != 3 {
			t.Errorf("user %d: %d unread, want 3 (creation, system, hi)", u, c.Unread)
		}
	}

	other := e.create(4)
	tests := []struct {
		name string
		conv uint64
		id   string
		want error
	}{
		{"no such group", 1 << 40, "x", ErrNoGroup},
		{"key used in another group", other, "order-1", ErrInvalid},
		{"no key", conv, "", ErrInvalid},
	}
	for _, tt := range tests {
		if _, err := e.svc.SendSystemMessage(ctx, tt.conv, tt.id, nil); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if err := e.svc.Dismiss(ctx, 4, other); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SendSystemMessage(ctx, other, "y", nil); !errors.Is(err, ErrDismissed) {
		t.Errorf("to a dismissed group: %v", err)
	}
}

func TestDescribe(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.create(1, 2)
	info, err := e.svc.Describe(ctx, conv)
	if err != nil || info.Owner != 1 || len(info.Members) != 2 {
		t.Fatalf("Describe: %+v %v", info, err)
	}
	if _, err := e.svc.Describe(ctx, conv+1000); !errors.Is(err, ErrNoGroup) {
		t.Errorf("unknown group: %v", err)
	}
}

func TestCreateGroupOnce(t *testing.T) {
	e := newEnv(t, Config{})
	first, dup, err := e.svc.CreateGroupOnce(ctx, 1, NewGroup{Members: []uint64{2, 3}}, "team-7")
	if err != nil || dup {
		t.Fatalf("first: %+v %v %v", first, dup, err)
	}
	again, dup, err := e.svc.CreateGroupOnce(ctx, 1, NewGroup{Members: []uint64{2, 3}}, "team-7")
	if err != nil || !dup || again.ID != first.ID {
		t.Fatalf("retry: %+v %v %v, first %d", again, dup, err, first.ID)
	}
	for _, u := range []uint64{1, 2, 3} {
		if convs := e.conversations(u); len(convs) != 1 || len(e.inbox(u)) != 1 {
			t.Errorf("user %d: %d conversations, %d entries; want one creation", u, len(convs), len(e.inbox(u)))
		}
	}
	// The key is the owner's: another owner's call creates its own group.
	other, dup, err := e.svc.CreateGroupOnce(ctx, 2, NewGroup{}, "team-7")
	if err != nil || dup || other.ID == first.ID {
		t.Errorf("another owner's key: %+v %v %v", other, dup, err)
	}
	// A message's client msg id that spells a creation key is told apart.
	e.send(1, first.ID, createKeyPrefix+"m", "hi")
	if _, _, err := e.svc.CreateGroupOnce(ctx, 1, NewGroup{}, "m"); !errors.Is(err, ErrInvalid) {
		t.Errorf("a key used by a message: %v", err)
	}
	if _, _, err := e.svc.CreateGroupOnce(ctx, 1, NewGroup{}, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("no key: %v", err)
	}
}

// TestRecallAsSystem: the system recalls a message of any member long
// after the sender's window, without being a member; every member's inbox
// gets one recall entry from SystemSender, HISTORY serves the message
// recalled, and a retry with the key stores nothing.
func TestRecallAsSystem(t *testing.T) {
	clk := newClock()
	e := newEnv(t, Config{Now: clk.Now, RecallWindow: time.Minute})
	conv := e.create(1, 2, 3)
	sent := e.send(2, conv, "m", "spam")
	clk.add(time.Hour)

	first, err := e.svc.RecallAsSystem(ctx, conv, sent.ConvSeq, "mod-1")
	if err != nil || first.Duplicate || first.ConvSeq != sent.ConvSeq+1 {
		t.Fatalf("RecallAsSystem = %+v, %v", first, err)
	}
	again, err := e.svc.RecallAsSystem(ctx, conv, sent.ConvSeq, "mod-1")
	if err != nil || !again.Duplicate || again.MsgID != first.MsgID || again.ConvSeq != first.ConvSeq {
		t.Fatalf("retry = %+v, %v; first %+v", again, err, first)
	}
	e.crash() // what is served comes from the store
	for _, u := range []uint64{1, 2, 3} {
		if m := at(t, e.history(u, conv), sent.ConvSeq); !m.Recalled || len(m.Body) != 0 {
			t.Fatalf("user %d: recalled message served as %+v", u, m)
		}
		var recalls []Entry
		for _, en := range e.inbox(u) {
			if en.Row.Conv == conv && en.Row.Kind == wire.KindRecall {
				recalls = append(recalls, en)
			}
		}
		if len(recalls) != 1 {
			t.Fatalf("user %d: %d recall entries, want 1", u, len(recalls))
		}
		a, err := wire.ParseAmend(recalls[0].Msg.Body)
		if recalls[0].Msg.Sender != wire.SystemSender || err != nil || a.Actor != wire.SystemSender || a.ConvSeq != sent.ConvSeq || a.MsgID != sent.MsgID {
			t.Fatalf("user %d: recall entry %+v (%+v, %v)", u, recalls[0].Msg, a, err)
		}
		if head := e.conversation(u, conv).Head; head != first.ConvSeq {
			t.Fatalf("user %d: head %d, want %d", u, head, first.ConvSeq)
		}
	}
}

// TestRecallAsSystemRejections: the refusals of Recall but membership and
// the window, each storing nothing; and the user commands still refuse
// the system actor.
func TestRecallAsSystemRejections(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.create(1, 2)
	msg := e.send(2, conv, "m", "hi")
	gone := e.send(2, conv, "g", "gone")
	if _, err := e.svc.RecallAsSystem(ctx, conv, gone.ConvSeq, "r-gone"); err != nil {
		t.Fatal(err)
	}
	other := e.create(5, 6)
	omsg := e.send(6, other, "o", "x")
	dismissed := e.create(3, 4)
	dmsg := e.send(4, dismissed, "d", "x")
	if err := e.svc.Dismiss(ctx, 3, dismissed); err != nil {
		t.Fatal(err)
	}
	head := e.conversation(2, conv).Head

	tests := []struct {
		name    string
		conv    uint64
		convSeq uint64
		key     string
		want    error
	}{
		{"a notice", conv, 1, "a", ErrInvalid},
		{"already recalled", conv, gone.ConvSeq, "b", ErrInvalid},
		{"a recall entry", conv, head, "c", ErrInvalid},
		{"conv_seq out of range", conv, head + 1, "d", ErrInvalid},
		{"conv_seq 0", conv, 0, "e", ErrInvalid},
		{"no key", conv, msg.ConvSeq, "", ErrInvalid},
		{"key of another group's recall", other, omsg.ConvSeq, "r-gone", ErrInvalid},
		{"no such group", 1 << 40, 2, "f", ErrNoGroup},
		{"a dismissed group", dismissed, dmsg.ConvSeq, "g", ErrDismissed},
	}
	for _, tt := range tests {
		if _, err := e.svc.RecallAsSystem(ctx, tt.conv, tt.convSeq, tt.key); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := e.svc.Recall(ctx, wire.SystemSender, conv, msg.ConvSeq, "h"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Recall by actor 0: %v", err)
	}
	if _, err := e.svc.Edit(ctx, wire.SystemSender, conv, msg.ConvSeq, "i", []byte("x")); !errors.Is(err, ErrInvalid) {
		t.Errorf("Edit by actor 0: %v", err)
	}
	if got := e.conversation(2, conv).Head; got != head {
		t.Fatalf("head moved from %d to %d: a refused recall stored something", head, got)
	}
	if m := at(t, e.history(2, conv), msg.ConvSeq); m.Recalled || string(m.Body) != "hi" {
		t.Fatalf("refused recalls changed the message: %+v", m)
	}
}
