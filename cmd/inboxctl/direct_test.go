package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/inboxd/inboxd/wire"
)

// TestDirectAndProfileCommands runs send-direct, block, set-profile,
// conversations and group-info against a running gateway.
func TestDirectAndProfileCommands(t *testing.T) {
	withGateway(t, func(t *testing.T, addr string) {
		mustRun := func(user uint64, args string) string {
			t.Helper()
			return ctl(t, addr, user, 0, strings.Fields(args)...)
		}
		refused := func(user uint64, args string) string {
			t.Helper()
			return ctl(t, addr, user, 1, strings.Fields(args)...)
		}

		mustRun(1, "send-direct 2 hello bob")
		out := mustRun(2, "conversations")
		if !strings.Contains(out, "direct with 1") || !strings.Contains(out, strconv.FormatUint(wire.DirectConv(1, 2), 10)) {
			t.Errorf("bob's conversations:\n%s", out)
		}
		mustRun(2, "block 1 on")
		if out := refused(1, "send-direct 2 again"); !strings.Contains(out, "BLOCKED") {
			t.Errorf("send-direct to a user who blocked you: %s", out)
		}
		mustRun(2, "block 1 off")
		mustRun(1, "send-direct 2 again")

		out = mustRun(1, "--json create-group 2")
		id := out[strings.Index(out, `"id":"`)+6:]
		conv := id[:strings.IndexByte(id, '"')]
		mustRun(1, "set-profile --name ops --announcement standup --avatar https://example.com/a.png "+conv)
		out = mustRun(2, "group-info "+conv)
		for _, want := range []string{`"ops"`, "announcement: standup", "avatar https://example.com/a.png"} {
			if !strings.Contains(out, want) {
				t.Errorf("group-info lacks %q:\n%s", want, out)
			}
		}
		if out := refused(2, "set-profile --name mine "+conv); !strings.Contains(out, "FORBIDDEN") {
			t.Errorf("a member renames: %s", out)
		}
	})
}
