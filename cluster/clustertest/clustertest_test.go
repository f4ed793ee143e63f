package clustertest

import "testing"

// TestChanges: the views of a ring share one channel until a Move closes
// it, so receivers that go away leave nothing behind.
func TestChanges(t *testing.T) {
	r := NewRing(4, 0, 1)
	a, b := r.View(0), r.View(1)
	first := a.Changes()
	if n := testing.AllocsPerRun(1000, func() { a.Changes(); b.Changes() }); n != 0 {
		t.Fatalf("a receiver of Changes costs %v allocations: each is kept", n)
	}
	r.Move(0, 1)
	if !closed(first) {
		t.Fatal("a Move did not close the receivers' channel")
	}
	next := b.Changes()
	if closed(next) {
		t.Fatal("the channel after a Move is closed before the next one")
	}
	r.Move(0, 0)
	if !closed(next) {
		t.Fatal("the second Move did not close the new channel")
	}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
