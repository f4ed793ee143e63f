package wire_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/inboxd/inboxd/wire"
)

// TestProtocolDocResendCodes holds the two lists of codes after which a
// SEND is resent (in "SEND" and in "Sending and retries") to the codes the
// code calls retryable: they once disagreed.
func TestProtocolDocResendCodes(t *testing.T) {
	var want []string
	for c := wire.CodeBadRequest; c <= wire.CodeRevoked; c++ {
		if c.Retryable() {
			want = append(want, c.String())
		}
	}
	slices.Sort(want)
	doc := readDoc(t)
	for _, list := range []struct{ where, from, to string }{
		{"SEND", "The retryable codes,", "resend with the same"},
		{"Sending and retries", "3. On ", "or when the connection drops"},
	} {
		_, after, ok := strings.Cut(doc, list.from)
		text, _, ok2 := strings.Cut(after, list.to)
		if !ok || !ok2 {
			t.Errorf("%s: no list between %q and %q", list.where, list.from, list.to)
			continue
		}
		var got []string
		for _, m := range regexp.MustCompile("`([A-Z_]+)`").FindAllStringSubmatch(text, -1) {
			got = append(got, m[1])
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s lists %v as resendable; the retryable codes are %v", list.where, got, want)
		}
	}
}
