package inbox

import (
	"errors"
	"slices"
	"testing"

	"github.com/inboxd/inboxd/wire"
)

func (e *env) sendMentions(sender, conv uint64, cmid string, mentions []uint64, all bool) (SendResult, error) {
	return e.svc.SendMessage(ctx, sender, conv, Outgoing{ClientMsgID: cmid, Kind: wire.KindText, Body: []byte(cmid),
		Mentions: mentions, MentionAll: all})
}

// TestMentions: a message carries its mentions; the conversation list
// counts the unread ones until MARK_READ passes them; a mention reaches
// the offline push under do-not-disturb.
func TestMentions(t *testing.T) {
	rec := newRecorder()
	e := newEnv(t, Config{Notifier: rec, OfflinePusher: rec})
	conv := e.create(1, 2, 3, 4)
	for _, u := range []uint64{2, 3} {
		if err := e.svc.SetDND(ctx, u, conv, true); err != nil {
			t.Fatal(err)
		}
	}
	m1, err := e.sendMentions(4, conv, "a", []uint64{3, 2, 3}, false)
	if err != nil {
		t.Fatal(err)
	}
	e.send(4, conv, "b", "no mention")
	m3, err := e.sendMentions(1, conv, "c", []uint64{2}, true) // @all by the owner
	if err != nil {
		t.Fatal(err)
	}
	if m := at(t, e.history(2, conv), m1.ConvSeq); !slices.Equal(m.Mentions, []uint64{2, 3}) || m.MentionAll {
		t.Fatalf("message served with mentions %v, all %v; want [2 3]", m.Mentions, m.MentionAll)
	}
	if m := at(t, e.history(2, conv), m3.ConvSeq); !m.MentionAll {
		t.Fatalf("@all message served as %+v", m)
	}
	want := map[uint64]uint64{1: 0, 2: 2, 3: 2, 4: 1}
	for u, n := range want {
		if c := e.conversation(u, conv); c.MentionUnread != n {
			t.Errorf("user %d: mention_unread %d, want %d (unread %d)", u, c.MentionUnread, n, c.Unread)
		}
	}
	// Reading past the first mention leaves the @all one.
	if _, err := e.svc.MarkRead(ctx, 2, conv, m1.ConvSeq); err != nil {
		t.Fatal(err)
	}
	if c := e.conversation(2, conv); c.MentionUnread != 1 {
		t.Fatalf("after reading past the first mention: mention_unread %d, want 1", c.MentionUnread)
	}
	if _, err := e.svc.MarkRead(ctx, 2, conv, m3.ConvSeq); err != nil {
		t.Fatal(err)
	}
	if c := e.conversation(2, conv); c.MentionUnread != 0 {
		t.Fatalf("after reading all: mention_unread %d", c.MentionUnread)
	}
	// Users 2 and 3 set do-not-disturb: only the messages that mention
	// them reached the offline push (2: both; 3: both; 4, not on DND,
	// everything but its own).
	waitFor(t, "offline pushes", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return slices.ContainsFunc(rec.offline[3], func(en Entry) bool { return en.Row.ConvSeq == m3.ConvSeq })
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, u := range []uint64{2, 3} {
		var got []uint64
		for _, en := range rec.offline[u] {
			if en.Row.ConvSeq > 1 {
				got = append(got, en.Row.ConvSeq)
			}
		}
		if want := []uint64{m1.ConvSeq, m3.ConvSeq}; !slices.Equal(got, want) {
			t.Errorf("user %d on do-not-disturb got offline pushes of %v, want the mentions %v", u, got, want)
		}
	}
}

// TestMentionRejections: mentions of non-members, too many, and @all by a
// plain member are refused and store nothing; Config.MentionAllAnyone
// lets a member mention everyone.
func TestMentionRejections(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.create(1, 2, 3)
	head := e.conversation(2, conv).Head
	tooMany := make([]uint64, wire.MaxMentions+1)
	for i := range tooMany {
		tooMany[i] = uint64(i + 1)
	}
	cases := []struct {
		name     string
		sender   uint64
		mentions []uint64
		all      bool
		want     error
	}{
		{"non-member", 2, []uint64{3, 9}, false, ErrInvalid},
		{"user 0", 2, []uint64{0, 3}, false, ErrInvalid},
		{"oversized list", 1, tooMany, false, ErrInvalid},
		{"@all by a member", 2, nil, true, ErrForbidden},
	}
	for _, c := range cases {
		if _, err := e.sendMentions(c.sender, conv, c.name, c.mentions, c.all); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	if got := e.conversation(2, conv).Head; got != head {
		t.Fatalf("head moved from %d to %d", head, got)
	}

	anyone := newEnv(t, Config{MentionAllAnyone: true})
	conv = anyone.create(1, 2)
	if _, err := anyone.sendMentions(2, conv, "all", nil, true); err != nil {
		t.Fatalf("@all by a member with MentionAllAnyone: %v", err)
	}
	if c := anyone.conversation(1, conv); c.MentionUnread != 1 {
		t.Fatalf("owner's mention_unread %d, want 1", c.MentionUnread)
	}
}
