package inbox

import (
	"errors"
	"testing"

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
