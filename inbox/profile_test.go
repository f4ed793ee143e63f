package inbox

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/inboxd/inboxd/wire"
)

func TestSetGroupProfile(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.create(1, 2, 3)
	if err := e.svc.SetRole(ctx, 1, conv, 2, wire.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	notices := func() int { return len(e.inbox(3)) }
	before := notices()
	tests := []struct {
		name  string
		actor uint64
		p     Profile
		want  error
	}{
		{"plain member", 3, Profile{Name: ptr("x")}, ErrForbidden},
		{"non-member", 9, Profile{Name: ptr("x")}, ErrNotMember},
		{"nothing to change", 1, Profile{}, ErrInvalid},
		{"empty name", 1, Profile{Name: ptr("")}, ErrInvalid},
		{"long name", 1, Profile{Name: ptr(strings.Repeat("n", wire.MaxGroupName+1))}, ErrInvalid},
		{"long announcement", 1, Profile{Announcement: ptr(strings.Repeat("a", wire.MaxAnnouncement+1))}, ErrInvalid},
		{"long avatar", 1, Profile{AvatarURL: ptr(strings.Repeat("u", wire.MaxAvatarURL+1))}, ErrInvalid},
		{"not UTF-8", 1, Profile{Announcement: ptr("\xff")}, ErrInvalid},
		// A valid field does not carry an invalid one through.
		{"one bad of two", 1, Profile{Name: ptr("ok"), AvatarURL: ptr(strings.Repeat("u", wire.MaxAvatarURL+1))}, ErrInvalid},
	}
	for _, tt := range tests {
		if err := e.svc.SetGroupProfile(ctx, tt.actor, conv, tt.p); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if n := notices(); n != before {
		t.Fatalf("refused changes posted %d notices", n-before)
	}

	// The admin sets all three at the limits: three notices, in order.
	name, ann, url := strings.Repeat("n", wire.MaxGroupName), strings.Repeat("a", wire.MaxAnnouncement), strings.Repeat("u", wire.MaxAvatarURL)
	if err := e.svc.SetGroupProfile(ctx, 2, conv, Profile{Name: &name, Announcement: &ann, AvatarURL: &url}); err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, en := range e.inbox(3)[before:] {
		var n wire.Notice
		if err := json.Unmarshal(en.Msg.Body, &n); err != nil {
			t.Fatal(err)
		}
		types = append(types, string(n.Type))
	}
	if strings.Join(types, ",") != "rename,announcement,avatar" {
		t.Fatalf("notices %v, want rename, announcement, avatar", types)
	}
	info, err := e.svc.Group(ctx, 3, conv)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != name || info.Announcement != ann || info.AvatarURL != url {
		t.Fatalf("GROUP_INFO after the change: %q %q %q", info.Name, info.Announcement, info.AvatarURL)
	}
	// Setting the same again changes nothing and posts nothing; the
	// profile survives a restart.
	e.close()
	e.open()
	before = notices()
	if err := e.svc.SetGroupProfile(ctx, 1, conv, Profile{Name: &name, AvatarURL: &url}); err != nil {
		t.Fatal(err)
	}
	if n := notices(); n != before {
		t.Fatalf("an unchanged profile posted %d notices", n-before)
	}
	if c := e.conversation(3, conv); c.Name != name {
		t.Fatalf("conversation list name %q", c.Name)
	}
}
