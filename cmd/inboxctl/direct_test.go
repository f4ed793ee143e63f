package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inboxd/inboxd/internal/gatewaytest"
	"github.com/inboxd/inboxd/wire"
)

// TestDirectAndProfileCommands runs send-direct, block, set-profile,
// conversations and group-info against a running gateway.
func TestDirectAndProfileCommands(t *testing.T) {
	withGateway(t, func(t *testing.T, addr string) {
		as := func(user uint64, args string) (int, string, string) {
			a, out, errOut := testApp(nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			line := append([]string{"--addr", addr, "--token", gatewaytest.Token(t, user, "cli", time.Hour)}, strings.Fields(args)...)
			status := run(ctx, line, a)
			return status, out.String(), errOut.String()
		}
		mustRun := func(user uint64, args string) string {
			t.Helper()
			status, out, errOut := as(user, args)
			if status != 0 {
				t.Fatalf("%d: %s: status %d: %s", user, args, status, errOut)
			}
			return out
		}

		mustRun(1, "send-direct 2 hello bob")
		out := mustRun(2, "conversations")
		if !strings.Contains(out, "direct with 1") || !strings.Contains(out, strconv.FormatUint(wire.DirectConv(1, 2), 10)) {
			t.Errorf("bob's conversations:\n%s", out)
		}
		mustRun(2, "block 1 on")
		if status, _, errOut := as(1, "send-direct 2 again"); status != 1 || !strings.Contains(errOut, "BLOCKED") {
			t.Errorf("send-direct to a user who blocked you: status %d, %s", status, errOut)
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
		if status, _, errOut := as(2, "set-profile --name mine "+conv); status != 1 || !strings.Contains(errOut, "FORBIDDEN") {
			t.Errorf("a member renames: status %d, %s", status, errOut)
		}
	})
}
