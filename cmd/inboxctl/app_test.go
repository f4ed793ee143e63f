package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/inboxd/inboxd/client"
	"github.com/inboxd/inboxd/gateway"
	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/internal/gatewaytest"
	"github.com/inboxd/inboxd/token"
	"github.com/inboxd/inboxd/wire"
	"go.uber.org/goleak"
)

func testApp(env map[string]string) (*app, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	a := newApp(strings.NewReader(""), &out, &errOut, func(k string) string { return env[k] })
	a.now = func() time.Time { return time.Unix(1_893_456_000, 0) } // 2030-01-01
	return a, &out, &errOut
}

func TestParse(t *testing.T) {
	tests := []struct {
		args string
		want command
	}{
		{"token --secret s --user 42", &tokenCmd{secret: "s", user: 42, device: "inboxctl", ttl: 24 * time.Hour}},
		{"token --secret-file f --user 42 --device phone --ttl 1h", &tokenCmd{secretFile: "f", user: 42, device: "phone", ttl: time.Hour}},
		{"create-group", &createGroupCmd{members: []uint64{}}},
		{"create-group --name ops --open 43 44", &createGroupCmd{name: "ops", open: true, members: []uint64{43, 44}}},
		{"invite 7 43 44", &inviteCmd{conv: 7, users: []uint64{43, 44}}},
		{"leave 7", &convCmd{action: "leave", conv: 7}},
		{"send 7 hello world", &sendCmd{conv: 7, kind: 1, text: []string{"hello", "world"}}},
		{"send --kind 9 --id m-1 7", &sendCmd{conv: 7, kind: 9, id: "m-1"}},
		{"send --mention 43,44 --mention 45 --mention-all 7 hi", &sendCmd{conv: 7, kind: 1, text: []string{"hi"}, mentions: idList{43, 44, 45}, mentionAll: true}},
		{"recall 7 3", &amendCmd{conv: 7, convSeq: 3}},
		{"recall --id r-1 7 3", &amendCmd{conv: 7, convSeq: 3, id: "r-1"}},
		{"edit 7 3 new text", &amendCmd{edit: true, conv: 7, convSeq: 3, text: []string{"new", "text"}}},
		{"edit --id e-1 7 3", &amendCmd{edit: true, conv: 7, convSeq: 3, id: "e-1"}},
		{"sync", &syncCmd{}},
		{"sync --after 17 --limit 5", &syncCmd{after: 17, limit: 5}},
		{"tail", &tailCmd{fromHead: true}},
		{"tail --after 0", &tailCmd{}},
		{"tail --after 17", &tailCmd{after: 17}},
		{"history 7", &historyCmd{conv: 7, limit: 20}},
		{"history --before 21 --limit 5 7", &historyCmd{conv: 7, before: 21, limit: 5}},
		{"conversations", &conversationsCmd{}},
		{"read 7 3", &readCmd{conv: 7, convSeq: 3}},
		{"join 7", &convCmd{action: "join", conv: 7}},
		{"kick 7 43", &kickCmd{conv: 7, user: 43}},
		{"dismiss 7", &convCmd{action: "dismiss", conv: 7}},
		{"set-role 7 43 admin", &setRoleCmd{conv: 7, user: 43, role: wire.RoleAdmin}},
		{"set-role 7 43 3", &setRoleCmd{conv: 7, user: 43, role: wire.RoleOwner}},
		{"mute --for 1h 7 43", &muteCmd{conv: 7, user: 43, forDur: time.Hour}},
		{"mute --until 2030-01-01T12:00:00Z 7", &muteCmd{conv: 7, until: "2030-01-01T12:00:00Z"}},
		{"mute --off 7 43", &muteCmd{conv: 7, user: 43, off: true}},
		{"dnd 7 on", &dndCmd{conv: 7, on: true}},
		{"dnd 7 off", &dndCmd{conv: 7}},
		{"group-info 7", &groupInfoCmd{conv: 7}},
		{"typing 7", &convCmd{action: "typing", conv: 7}},
		{"send-direct 42 hi", &sendCmd{direct: true, conv: 42, kind: 1, text: []string{"hi"}}},
		{"block 42 on", &blockCmd{user: 42, on: true}},
		{"block 42 off", &blockCmd{user: 42}},
		{"set-profile --name ops 7", &setProfileCmd{conv: 7, profile: client.GroupProfile{Name: ptr("ops")}}},
		{"set-profile --announcement= --avatar u 7", &setProfileCmd{conv: 7, profile: client.GroupProfile{Announcement: ptr(""), AvatarURL: ptr("u")}}},
	}
	for _, tt := range tests {
		a, _, _ := testApp(nil)
		got, err := parse(strings.Fields(tt.args), a)
		if err != nil {
			t.Errorf("%s: %v", tt.args, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: parsed %#v, want %#v", tt.args, got, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, args := range []string{
		"",
		"nope",
		"--nope conversations",
		"token --user 42", // no secret
		"token --secret s --secret-file f --user 42", // both
		"token --secret s",                           // no user
		"token --secret s --user 42 --ttl -1h",       // negative ttl
		"token --secret s --user 42 extra",
		"invite 7",
		"invite 7 x",
		"leave",
		"leave 0",
		"leave 7 8",
		"send",
		"send --kind 0 7 hi",
		"send --kind 32768 7 hi",
		"send --id " + strings.Repeat("x", 65) + " 7 hi",
		"send --mention 0 7 hi",
		"send --mention x 7 hi",
		"send --mention " + strings.Repeat("1,", wire.MaxMentions) + "1 7 hi",
		"recall 7",
		"recall 7 3 4",
		"recall 7 x",
		"recall --id " + strings.Repeat("x", 65) + " 7 3",
		"edit 7",
		"edit x 3 hi",
		"sync 5",
		"tail --after x",
		"history",
		"history -1",
		"conversations x",
		"read 7",
		"read 7 x",
		"join",
		"join 7 8",
		"kick 7",
		"kick 7 x",
		"dismiss",
		"set-role 7 43",
		"set-role 7 43 king",
		"set-role 7 43 0",
		"mute 7 43",                // how long?
		"mute --for 1h --off 7 43", // two answers
		"mute --for -1h 7",         // negative
		"mute --until tomorrow 7",  // not RFC 3339
		"mute --off",               // no group
		"mute --off 7 43 44",       // two users
		"dnd 7",
		"dnd 7 maybe",
		"group-info",
		"group-info x",
		"send-direct",
		"send-direct x hi",
		"block 42",
		"block 42 maybe",
		"set-profile 7", // nothing to change
		"set-profile --name ops",
	} {
		a, _, _ := testApp(nil)
		if _, err := parse(strings.Fields(args), a); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

func TestSendBody(t *testing.T) {
	tests := []struct {
		cmd   sendCmd
		stdin string
		want  string
	}{
		{sendCmd{kind: 1, text: []string{"hello", "world"}}, "ignored", "hello world"},
		{sendCmd{kind: 1}, "from stdin\n", "from stdin"},
		{sendCmd{kind: 1}, "two\nlines\r\n", "two\nlines"},
		{sendCmd{kind: 1}, "kept\n\n", "kept\n"},
		{sendCmd{kind: 9}, "binary\n", "binary\n"},
	}
	for _, tt := range tests {
		got, err := tt.cmd.body(strings.NewReader(tt.stdin))
		if err != nil || string(got) != tt.want {
			t.Errorf("%+v with stdin %q: %q, %v; want %q", tt.cmd, tt.stdin, got, err, tt.want)
		}
	}
}

func TestGlobalFlags(t *testing.T) {
	env := map[string]string{"INBOXD_ADDR": "10.0.0.1:7600", "INBOXD_TOKEN": "from-env"}
	tests := []struct {
		args, addr, token string
		json              bool
	}{
		{"conversations", "10.0.0.1:7600", "from-env", false},
		{"--addr h:1 --json conversations", "h:1", "from-env", true},
		{"conversations --addr h:2 --token t", "h:2", "t", false},
		{"--addr h:1 conversations --json", "h:1", "from-env", true},
		{"--token a conversations --token b", "10.0.0.1:7600", "b", false},
	}
	for _, tt := range tests {
		a, _, _ := testApp(env)
		if _, err := parse(strings.Fields(tt.args), a); err != nil {
			t.Fatalf("%s: %v", tt.args, err)
		}
		if a.addr != tt.addr || a.token != tt.token || a.json != tt.json {
			t.Errorf("%s: addr %q token %q json %v", tt.args, a.addr, a.token, a.json)
		}
	}
	a, _, _ := testApp(nil)
	if _, err := parse([]string{"conversations"}, a); err != nil || a.addr != "127.0.0.1:7600" || a.token != "" {
		t.Errorf("defaults: addr %q token %q err %v", a.addr, a.token, err)
	}
}

func TestRunExitStatus(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		args   string
		status int
		stderr string
	}{
		{"help", 0, "commands:"},
		{"", 2, "no command"},
		{"nope", 2, `unknown command "nope"`},
		{"send --help", 0, "usage: inboxctl send"},
		{"conversations", 1, "no token"},
	}
	for _, tt := range tests {
		a, _, errOut := testApp(nil)
		if got := run(ctx, strings.Fields(tt.args), a); got != tt.status {
			t.Errorf("%q: status %d, want %d", tt.args, got, tt.status)
		}
		if !strings.Contains(errOut.String(), tt.stderr) {
			t.Errorf("%q: stderr %q lacks %q", tt.args, errOut, tt.stderr)
		}
	}
}

func TestTokenCommand(t *testing.T) {
	secret := "0123456789abcdef-secret"
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range []string{
		"token --secret " + secret + " --user 42 --device phone --ttl 1h",
		"token --secret-file " + file + " --user 42 --device phone --ttl 1h",
	} {
		a, out, errOut := testApp(nil)
		if status := run(context.Background(), strings.Fields(args), a); status != 0 {
			t.Fatalf("%s: status %d: %s", args, status, errOut)
		}
		tok := strings.TrimSpace(out.String())
		c, err := token.Verify([]byte(secret), tok, a.now())
		if err != nil {
			t.Fatalf("%s: %v", args, err)
		}
		if c.User != 42 || c.Device != "phone" || !c.Expiry.Equal(a.now().Add(time.Hour)) {
			t.Errorf("%s: claims %+v", args, c)
		}
	}
	a, out, _ := testApp(nil)
	run(context.Background(), strings.Fields("--json token --secret "+secret+" --user 7"), a)
	if !strings.HasPrefix(out.String(), `{"token":"`) || !strings.HasSuffix(out.String(), `"user":7,"device":"inboxctl","expires":"2030-01-02T00:00:00Z"}`+"\n") {
		t.Errorf("JSON token output %s", out)
	}
	a, _, errOut := testApp(nil)
	if status := run(context.Background(), strings.Fields("token --secret short --user 7"), a); status != 1 || !strings.Contains(errOut.String(), "secret") {
		t.Errorf("short secret: status %d, %s", status, errOut)
	}
}

func TestMuteDeadline(t *testing.T) {
	now := time.Unix(1_893_456_000, 0)
	tests := []struct {
		args string
		want time.Time
	}{
		{"mute --for 90m 7 43", now.Add(90 * time.Minute)},
		{"mute --until 2030-01-02T00:00:00Z 7", time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)},
		{"mute --off 7", time.Time{}},
	}
	for _, tt := range tests {
		a, _, _ := testApp(nil)
		cmd, err := parse(strings.Fields(tt.args), a)
		if err != nil {
			t.Fatalf("%s: %v", tt.args, err)
		}
		if got := cmd.(*muteCmd).deadline(now); !got.Equal(tt.want) {
			t.Errorf("%s: until %v, want %v", tt.args, got, tt.want)
		}
	}
}

func ptr(s string) *string { return &s }

// TestConvActionsKnown: every command made of convCmd names an action that
// convActions has, and only those commands do.
func TestConvActionsKnown(t *testing.T) {
	used := map[string]bool{}
	for _, ci := range commands() {
		if c, ok := ci.new().(*convCmd); ok {
			if _, known := convActions[c.action]; !known || c.action != ci.name {
				t.Errorf("command %s: action %q", ci.name, c.action)
			}
			used[c.action] = true
		}
	}
	if len(used) != len(convActions) {
		t.Errorf("commands use actions %v of %d", used, len(convActions))
	}
}

// ctl runs inboxctl with args as user against the gateway at addr, fails
// the test unless it exits with wantStatus, and returns what it printed,
// standard output then standard error.
func ctl(t *testing.T, addr string, user uint64, wantStatus int, args ...string) string {
	t.Helper()
	a, out, errOut := testApp(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	line := append([]string{"--addr", addr, "--token", gatewaytest.Token(t, user, "cli", time.Hour)}, args...)
	if status := run(ctx, line, a); status != wantStatus {
		t.Fatalf("%q as %d: status %d, want %d: %s", args, user, status, wantStatus, errOut)
	}
	return out.String() + errOut.String()
}

// withGateway runs f against a gateway on an in-memory inbox, listening at
// addr, and checks that nothing it started outlives it (ants' pool workers
// aside: they stop on their own).
func withGateway(t *testing.T, f func(t *testing.T, addr string)) {
	defer goleak.VerifyNone(t, goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"))
	t.Run("", func(t *testing.T) {
		gw, err := gateway.New(gateway.Config{Addr: gatewaytest.Addr, Secret: []byte(gatewaytest.Secret), SingleLoop: true})
		if err != nil {
			t.Fatal(err)
		}
		_, addr := gatewaytest.Start(t, gw, func(svc *inbox.Service) error { return gw.Serve(svc) })
		f(t, addr)
	})
}
