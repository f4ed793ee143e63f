package inbox

import (
	"bufio"
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// TestNoticesAsDocumented runs every kind of group event and checks that the
// notice bodies listed in docs/protocol.md are exactly the ones written.
func TestNoticesAsDocumented(t *testing.T) {
	now := time.Date(2029, 12, 31, 23, 0, 0, 0, time.UTC)
	e := newEnv(t, Config{Now: func() time.Time { return now }})
	until := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	g, err := e.svc.CreateGroup(ctx, 1, NewGroup{Members: []uint64{2, 3}, Open: true})
	if err != nil {
		t.Fatal(err)
	}
	conv, alone := g.ID, e.create(1)
	steps := []func() error{
		func() error { return e.svc.Invite(ctx, 1, conv, []uint64{4}) },
		func() error { return e.svc.Join(ctx, 5, conv) },
		func() error { return e.svc.SetRole(ctx, 1, conv, 2, wire.RoleAdmin) },
		func() error { return e.svc.MuteMember(ctx, 1, conv, 3, until) },
		func() error { return e.svc.MuteMember(ctx, 1, conv, 3, time.Time{}) },
		func() error { return e.svc.MuteGroup(ctx, 1, conv, until) },
		func() error { return e.svc.MuteGroup(ctx, 1, conv, time.Time{}) },
		func() error { return e.svc.SetGroupProfile(ctx, 1, conv, Profile{Name: ptr("ops")}) },
		func() error {
			return e.svc.SetGroupProfile(ctx, 2, conv, Profile{Announcement: ptr("standup at 10"), AvatarURL: ptr("https://example.com/ops.png")})
		},
		func() error {
			return e.svc.SetGroupProfile(ctx, 2, conv, Profile{Announcement: ptr(""), AvatarURL: ptr("")})
		},
		func() error { return e.svc.Kick(ctx, 1, conv, 4) },
		func() error { return e.svc.Leave(ctx, 3, conv) },
		func() error { return e.svc.Leave(ctx, 1, conv) },
		func() error { return e.svc.Dismiss(ctx, 2, conv) },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	var written []string
	for _, c := range []uint64{conv, alone} {
		msgs, err := e.store.Messages(ctx, c, timeline.Range{})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			written = append(written, string(m.Body))
		}
	}
	documented := documentedNotices(t)
	slices.Sort(written)
	slices.Sort(documented)
	if !slices.Equal(written, documented) {
		t.Fatalf("notices written:\n%s\ndocumented:\n%s", strings.Join(written, "\n"), strings.Join(documented, "\n"))
	}
}

// documentedNotices returns the lines of the json block of the Notices
// section of docs/protocol.md.
func documentedNotices(t *testing.T) []string {
	b, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := bytes.Cut(b, []byte("\n### Notices\n"))
	if !ok {
		t.Fatal("docs/protocol.md has no Notices section")
	}
	_, block, ok := bytes.Cut(section, []byte("```json\n"))
	if !ok {
		t.Fatal("the Notices section has no json block")
	}
	block, _, _ = bytes.Cut(block, []byte("```"))
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(block))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			out = append(out, line)
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }
