package wire_test

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inboxd/inboxd/token"
	"github.com/inboxd/inboxd/wire"
)

// The tests of this file hold docs/protocol.md to the code beside the frame
// examples (TestProtocolDocFrames): its tables of commands and error codes,
// and its worked token example.

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
	if seen != 19 {
		t.Errorf("doc lists %d commands, want 19", seen)
	}
}

func TestProtocolDocErrors(t *testing.T) {
	rows := tableRows(readDoc(t), "| code | name | meaning | retry | closes |")
	want := wire.Code(1)
	for _, r := range rows {
		n, err := strconv.ParseUint(r[0], 10, 32)
		if err != nil || wire.Code(n) != want {
			t.Fatalf("error row %q: want code %d next", r, want)
		}
		if yes := strings.HasPrefix(r[3], "yes"); yes != want.Retryable() {
			t.Errorf("doc says code %d retry %q; Retryable() = %v", n, r[3], want.Retryable())
		}
		want++
	}
	if want != wire.CodeIdle+1 {
		t.Errorf("doc lists codes up to %d, want %d", want-1, wire.CodeIdle)
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
