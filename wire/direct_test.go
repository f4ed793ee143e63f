package wire_test

import (
	"testing"

	"github.com/inboxd/inboxd/wire"
)

// The vectors were computed outside Go (Python's hashlib), as a third-party
// client following docs/protocol.md would.
func TestDirectConv(t *testing.T) {
	for _, c := range []struct{ a, b, want uint64 }{
		{1, 2, 10121370589403482978},
		{42, 7, 10975061129255072772},
		{1<<64 - 1, 1, 11041359489232385070},
		{42, 43, 9663280722357917017}, // docs/protocol.md's frame example
	} {
		if got := wire.DirectConv(c.a, c.b); got != c.want {
			t.Errorf("DirectConv(%d, %d) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := wire.DirectConv(c.b, c.a); got != c.want {
			t.Errorf("DirectConv(%d, %d) = %d, want %d (the order must not matter)", c.b, c.a, got, c.want)
		}
		if !wire.IsDirect(c.want) {
			t.Errorf("IsDirect(%d) = false", c.want)
		}
	}
	if wire.IsDirect(1<<63 - 1) {
		t.Error("IsDirect of a snowflake-range id = true")
	}
}
