package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// gnet, imported for the baseline server, starts ants' default pool at
// init; its two goroutines live as long as the process.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"))
}

// TestSmoke runs the smoke preset against the real inboxd binary on the
// embedded store, killing it with SIGKILL once and restarting it on the same
// data, and asserts on the verifier's verdict — never on speed. It runs
// once with the devices on TCP and once on WebSocket (the -ws listener).
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs inboxd")
	}
	for _, transport := range []string{"tcp", "ws"} {
		t.Run(transport, func(t *testing.T) {
			cfg, err := Preset("smoke")
			if err != nil {
				t.Fatal(err)
			}
			cfg.Server.Dir = t.TempDir()
			cfg.Server.WS = transport == "ws"
			cfg.Chaos = 1
			smoke(t, cfg)
		})
	}
}

func smoke(t *testing.T, cfg Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.WS && !strings.HasPrefix(rep.Addr, "ws://") {
		t.Fatalf("the devices connected to %s, not the WebSocket listener", rep.Addr)
	}
	t.Logf("seed %d: %d sends (%d direct), %d acked (%d recalls, %d edits, %d mentioning), %d pushed, %d synced, %d reconnects, %d retries, %d duplicate acks",
		rep.Seed, rep.Sends, rep.DirectSends, rep.Acked, rep.AckedRecalls, rep.AckedEdits, rep.AckedMentions, rep.Pushed, rep.Synced, rep.Reconnects, rep.Retries, rep.DuplicateAcks)
	for _, v := range rep.Violations {
		t.Error(v)
	}
	switch {
	case !rep.Verified || rep.VerifyError != "":
		t.Fatalf("not verified: %s", rep.VerifyError)
	case rep.ServerKills != 1:
		t.Fatalf("%d kills, want 1", rep.ServerKills)
	case rep.Acked == 0:
		t.Fatal("nothing was acknowledged")
	case rep.AckedRecalls == 0 || rep.AckedEdits == 0 || rep.AckedMentions == 0:
		t.Fatalf("the feature mix stored %d recalls, %d edits, %d mentioning messages: too few to check", rep.AckedRecalls, rep.AckedEdits, rep.AckedMentions)
	case rep.DirectSends == 0:
		t.Fatal("no direct message was sent")
	case rep.CheckedDevices != cfg.Users*cfg.Devices:
		t.Fatalf("%d device streams checked, want %d", rep.CheckedDevices, cfg.Users*cfg.Devices)
	case rep.CheckedEntries < int(rep.Acked):
		t.Fatalf("%d inbox entries checked, fewer than the %d acknowledged sends", rep.CheckedEntries, rep.Acked)
	case !rep.OK():
		t.Fatalf("verdict not clean: %d violations (+%d), %d unresolved", len(rep.Violations), rep.MoreViolations, rep.Unresolved)
	}
}
