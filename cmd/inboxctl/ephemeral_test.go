package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// TestReceiptsTypingPresence runs the receipts, typing and presence
// commands against a gateway: their JSON output, and a refusal's exit
// status and message.
func TestReceiptsTypingPresence(t *testing.T) {
	withGateway(t, func(t *testing.T, addr string) {
		as := func(user uint64, wantStatus int, args ...string) string {
			t.Helper()
			return ctl(t, addr, user, wantStatus, append([]string{"--json"}, args...)...)
		}
		var g struct {
			ID uint64 `json:"id,string"`
		}
		if err := json.Unmarshal([]byte(as(42, 0, "create-group", "43", "44")), &g); err != nil {
			t.Fatal(err)
		}
		conv := strconv.FormatUint(g.ID, 10)
		as(42, 0, "send", conv, "hi") // conv_seq 2
		as(43, 0, "read", conv, "2")

		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{"receipts", conv, "2"}, `{"conv":"` + conv + `","conv_seq":2,"members":2,"read":1,"users":[43]}`},
			{[]string{"receipts", "--unread", conv, "2"}, `{"conv":"` + conv + `","conv_seq":2,"members":2,"read":1,"unread":true,"users":[44]}`},
			{[]string{"presence", "43", "42"}, `{"online":[42]}`}, // the asker's own connection
			{[]string{"typing", conv}, ``},
		} {
			if got := strings.TrimSpace(as(42, 0, tt.args...)); got != tt.want {
				t.Errorf("%q: %s, want %s", tt.args, got, tt.want)
			}
		}
		if out := as(45, 1, "typing", conv); !strings.Contains(out, "NOT_MEMBER") {
			t.Errorf("typing by a non-member: %q", out)
		}
		if out := as(42, 1, "receipts", conv, "3"); !strings.Contains(out, "INVALID") {
			t.Errorf("receipts beyond the head: %q", out)
		}
	})
}
