package main

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// TestGroupCommands runs join, kick, set-role, mute, dnd, group-info and
// dismiss against a gateway and checks what each did to the group.
func TestGroupCommands(t *testing.T) {
	withGateway(t, func(t *testing.T, addr string) {
		var g struct {
			ID uint64 `json:"id,string"`
		}
		if err := json.Unmarshal([]byte(ctl(t, addr, 1, 0, "--json", "create-group", "--open", "2", "3")), &g); err != nil {
			t.Fatal(err)
		}
		conv := strconv.FormatUint(g.ID, 10)
		ctl(t, addr, 4, 0, "join", conv)
		ctl(t, addr, 1, 0, "kick", conv, "3")
		ctl(t, addr, 1, 0, "set-role", conv, "2", "admin")
		ctl(t, addr, 1, 0, "mute", "--for", "1h", conv, "4")
		ctl(t, addr, 1, 0, "mute", "--for", "2h", conv)
		ctl(t, addr, 2, 0, "dnd", conv, "on")

		type member struct {
			User       uint64 `json:"user"`
			Role       string `json:"role"`
			JoinedAt   uint64 `json:"joined_at"`
			MutedUntil string `json:"muted_until"`
		}
		type groupInfo struct {
			Group struct {
				Owner      uint64 `json:"owner"`
				MutedUntil string `json:"muted_until"`
			} `json:"group"`
			Members []member `json:"members"`
		}
		var got groupInfo
		if err := json.Unmarshal([]byte(ctl(t, addr, 2, 0, "--json", "group-info", conv)), &got); err != nil {
			t.Fatal(err)
		}
		// testApp's clock is 2030-01-01T00:00:00Z.
		want := groupInfo{Members: []member{{1, "owner", 1, ""}, {2, "admin", 1, ""}, {4, "member", 2, "2030-01-01T01:00:00.000Z"}}}
		want.Group.Owner, want.Group.MutedUntil = 1, "2030-01-01T02:00:00.000Z"
		if !reflect.DeepEqual(got, want) {
			t.Errorf("group-info %+v, want %+v", got, want)
		}

		var c struct {
			Conv uint64 `json:"conv,string"`
			DND  bool   `json:"dnd"`
		}
		if err := json.Unmarshal([]byte(ctl(t, addr, 2, 0, "--json", "conversations")), &c); err != nil || c.Conv != g.ID || !c.DND {
			t.Errorf("user 2's conversation after dnd on: %+v, %v", c, err)
		}

		ctl(t, addr, 1, 0, "dismiss", conv)
		if out := ctl(t, addr, 1, 1, "group-info", conv); !strings.Contains(out, "DISMISSED") {
			t.Errorf("group-info after dismiss: %s", out)
		}
	})
}
