package wire_test

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inboxd/inboxd/token"
	"github.com/inboxd/inboxd/wire"
)

// The tests of this file hold docs/protocol.md to the code beside the frame
// examples (TestProtocolDocFrames): its tables of commands, error codes,
// kinds, notice types and limits, and its worked token example.

func readDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tableRows returns the cells of the markdown table rows whose first cell
// is a number.
func tableRows(doc, header string) [][]string {
	_, after, _ := strings.Cut(doc, header)
	var rows [][]string
	for _, line := range strings.Split(after, "\n")[2:] {
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, cells)
	}
	return rows
}

func TestProtocolDocCommands(t *testing.T) {
	rows := tableRows(readDoc(t), "| command | name | request body | response body | notes |")
	seen := 0
	for _, r := range rows {
		n, err := strconv.ParseUint(r[0], 10, 16)
		if err != nil {
			t.Fatalf("command row %q: %v", r, err)
		}
		c := wire.Command(n)
		if name := strings.Trim(r[1], "`"); !c.Known() || c.String() != name {
			t.Errorf("doc lists command %d as %s; the code knows it as %v", n, name, c)
		}
		if bt, ok := bodyTypes[c]; ok && bt[1] != "" && (strings.Trim(r[2], "`") != bt[0] || strings.Trim(r[3], "`") != bt[1]) {
			t.Errorf("doc gives %v bodies %s → %s, want %s → %s", c, r[2], r[3], bt[0], bt[1])
		}
		seen++
	}
	if seen != 27 {
		t.Errorf("doc lists %d commands, want 27", seen)
	}
}

func TestProtocolDocErrors(t *testing.T) {
	rows := tableRows(readDoc(t), "| code | name | meaning | retry | closes |")
	var last wire.Code
	listed := 0
	for _, r := range rows {
		n, err := strconv.ParseUint(r[0], 10, 32)
		c := wire.Code(n)
		if err != nil || c <= last || c.String() != strings.Trim(r[1], "`") {
			t.Fatalf("error row %q: want a code above %d, named as the code names it", r, last)
		}
		if yes := strings.HasPrefix(r[3], "yes"); yes != c.Retryable() {
			t.Errorf("doc says code %d retry %q; Retryable() = %v", n, r[3], c.Retryable())
		}
		last = c
		listed++
	}
	// Every code the package names is listed (codes may be left unused).
	named := 0
	for c := wire.Code(1); c <= last+8; c++ {
		if !strings.HasPrefix(c.String(), "CODE_") {
			named++
		}
	}
	if named != listed {
		t.Errorf("doc lists %d codes; package wire names %d", listed, named)
	}
}

// TestProtocolDocToken checks the worked example of "Tokens".
func TestProtocolDocToken(t *testing.T) {
	const (
		secret  = "inboxd-example-secret"
		payload = `{"u":42,"d":"phone","exp":1893456000}`
		encoded = "eyJ1Ijo0MiwiZCI6InBob25lIiwiZXhwIjoxODkzNDU2MDAwfQ"
		macHex  = "86a0c1844a103b35d81afcbba6ad0582aaa9ad9a84ffaa719e3882e598910899"
		mac     = "hqDBhEoQOzXYGvy7pq0FgqqprZqE_6pxnjiC5ZiRCJk"
		tok     = encoded + "." + mac
	)
	doc := readDoc(t)
	for _, s := range []string{secret, payload, encoded, macHex, mac, tok} {
		if !strings.Contains(doc, s) {
			t.Errorf("docs/protocol.md lacks %q", s)
		}
	}
	exp := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	got, err := token.Sign([]byte(secret), token.Claims{User: 42, Device: "phone", Expiry: exp})
	if err != nil || got != tok {
		t.Errorf("Sign = %q, %v; the doc says %q", got, err, tok)
	}
	c, err := token.Verify([]byte(secret), tok, exp.Add(-time.Second))
	if err != nil || c.User != 42 || c.Device != "phone" || !c.Expiry.Equal(exp) {
		t.Errorf("Verify = %+v, %v", c, err)
	}
	if _, err := token.Verify([]byte(secret), tok, exp); err == nil {
		t.Error("the token is valid at its expiry; the doc says it is refused from that second on")
	}
}

// TestProtocolDocKinds holds the table of kinds and the notice types to
// the constants of package wire.
func TestProtocolDocKinds(t *testing.T) {
	doc := readDoc(t)
	named := map[string]wire.Kind{"text": wire.KindText, "notice": wire.KindNotice, "read": wire.KindRead, "dnd": wire.KindDND, "system": wire.KindSystemMessage,
		"recall": wire.KindRecall, "edit": wire.KindEdit}
	seen := map[string]bool{}
	for _, r := range tableRows(doc, "| kind | name | body |") {
		if lo, hi, ok := strings.Cut(r[0], "–"); ok {
			if lo != "2" || hi != strconv.Itoa(int(wire.KindSystem-1)) {
				t.Errorf("doc gives application kinds %s; wire reserves from %d", r[0], wire.KindSystem)
			}
			continue
		}
		n, err := strconv.ParseUint(strings.Fields(r[0])[0], 10, 16)
		want, ok := named[r[1]]
		if err != nil || !ok || wire.Kind(n) != want {
			t.Errorf("doc lists kind %s as %q; wire has %q = %d", r[0], r[1], r[1], want)
		}
		seen[r[1]] = true
	}
	for name := range named {
		if !seen[name] {
			t.Errorf("doc lacks kind %q", name)
		}
	}

	var types []wire.NoticeType
	for _, r := range tableRows(doc, "| field | type | present for | meaning |") {
		if r[0] == "`type`" {
			for _, s := range strings.Split(r[3], ",") {
				types = append(types, wire.NoticeType(strings.Trim(strings.TrimSpace(s), "`")))
			}
		}
	}
	want := []wire.NoticeType{wire.NoticeCreate, wire.NoticeInvite, wire.NoticeJoin, wire.NoticeLeave, wire.NoticeKick,
		wire.NoticeDismiss, wire.NoticeRole, wire.NoticeMute, wire.NoticeMuteGroup, wire.NoticeRename, wire.NoticeAnnounce, wire.NoticeAvatar}
	if !slices.Equal(types, want) {
		t.Errorf("doc lists notice types %q, wire %q", types, want)
	}
}

// TestProtocolDocLimits holds the table of limits to the constants of
// package wire: each row must give the value wire has.
func TestProtocolDocLimits(t *testing.T) {
	rows := tableRows(readDoc(t), "| limit | value | when crossed |")
	tests := []struct {
		limit string // the start of the row's first cell
		want  []string
	}{
		{"frame", []string{strconv.Itoa(wire.DefaultMaxFrame)}},
		{"message body", []string{strconv.Itoa(wire.DefaultMaxBody)}},
		{"`client_msg_id`", []string{strconv.Itoa(wire.MaxClientMsgID)}},
		{"device id in a token", []string{"1–" + strconv.Itoa(token.MaxDevice)}},
		{"kind", []string{"1–" + strconv.Itoa(int(wire.KindSystem-1))}},
		{"group name", []string{strconv.Itoa(wire.MaxGroupName)}},
		{"group announcement", []string{strconv.Itoa(wire.MaxAnnouncement)}},
		{"group avatar URL", []string{strconv.Itoa(wire.MaxAvatarURL)}},
		{"group size", []string{strconv.Itoa(wire.DefaultMaxGroupSize)}},
		{"time to AUTH", []string{seconds(wire.DefaultAuthTimeout)}},
		{"heartbeat interval", []string{seconds(wire.DefaultHeartbeat)}},
		{"idle timeout", []string{strconv.Itoa(wire.IdleHeartbeats) + " × heartbeat", seconds(wire.IdleHeartbeats * wire.DefaultHeartbeat)}},
		{"frame before the AUTH response", []string{strconv.Itoa(wire.PreAuthMaxFrame)}},
		{"frame rate per connection", []string{strconv.Itoa(wire.DefaultRateLimit) + " per second", "bursts of " + strconv.Itoa(wire.DefaultRateBurst)}},
		{"flood", []string{strconv.Itoa(wire.DefaultRateBurst) + " frames"}},
		{"`mentions` of a SEND", []string{strconv.Itoa(wire.MaxMentions)}},
		{"recall window", []string{strconv.Itoa(int(wire.DefaultRecallWindow.Minutes())) + " minutes"}},
		{"edit window", []string{strconv.Itoa(int(wire.DefaultEditWindow.Hours())) + " hours"}},
		{"SEND, RECALL, EDIT, SYNC, HISTORY, CONVERSATIONS per user", []string{strconv.Itoa(wire.DefaultUserRateLimit) + " per second", "bursts of " + strconv.Itoa(wire.DefaultUserRateBurst)}},
		{"requests in flight", []string{strconv.Itoa(wire.DefaultMaxInFlight)}},
		{"request time", []string{seconds(wire.DefaultRequestTimeout)}},
		{"unread output", []string{strconv.Itoa(wire.DefaultMaxOutbound>>20) + " MiB"}},
		{"SYNC page", []string{"default " + strconv.Itoa(wire.DefaultSyncLimit), "at most " + strconv.Itoa(wire.MaxSyncLimit)}},
		{"HISTORY page", []string{"default " + strconv.Itoa(wire.DefaultHistoryLimit), "at most " + strconv.Itoa(wire.MaxHistoryLimit)}},
		{"CONVERSATIONS page", []string{"at most " + strconv.Itoa(wire.MaxConversationsLimit)}},
		{"READ_RECEIPTS page", []string{"default " + strconv.Itoa(wire.DefaultReceiptsLimit), "at most " + strconv.Itoa(wire.MaxReceiptsLimit)}},
		{"users of a PRESENCE request", []string{strconv.Itoa(wire.MaxPresenceUsers)}},
		{"TYPING per connection", []string{strconv.Itoa(wire.DefaultTypingRate) + " per second", "bursts of " + strconv.Itoa(wire.DefaultTypingBurst)}},
	}
	for _, tt := range tests {
		i := slices.IndexFunc(rows, func(r []string) bool { return strings.HasPrefix(r[0], tt.limit) })
		if i < 0 {
			t.Errorf("doc has no limit %q", tt.limit)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(rows[i][1], w) {
				t.Errorf("doc gives limit %q as %q; wire has %q", tt.limit, rows[i][1], w)
			}
		}
	}
}

func seconds(d time.Duration) string { return strconv.Itoa(int(d.Seconds())) + " s" }

// TestProtocolDocTyping holds the TYPING and PRESENCE sections' numbers to
// the constants that name them.
func TestProtocolDocTyping(t *testing.T) {
	doc := readDoc(t)
	for _, s := range []string{
		"every " + seconds(wire.TypingInterval) + " (`TypingInterval`)",
		"for " + seconds(wire.TypingShown) + " (`TypingShown`)",
		strconv.Itoa(wire.MaxPresenceUsers) + " users (`MaxPresenceUsers`)",
	} {
		if !strings.Contains(doc, s) {
			t.Errorf("docs/protocol.md lacks %q", s)
		}
	}
}
