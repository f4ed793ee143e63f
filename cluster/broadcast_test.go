package cluster

import "testing"

// TestBroadcast: every receiver between two changes shares one channel,
// so receivers that go away leave nothing behind, and each change closes
// it for all of them and starts a new one.
func TestBroadcast(t *testing.T) {
	var b Broadcast
	b.Notify() // nobody waits: nothing to close
	first := b.Wait()
	if n := testing.AllocsPerRun(1000, func() { b.Wait() }); n != 0 {
		t.Fatalf("a receiver of Changes costs %v allocations: each is kept", n)
	}
	b.Notify()
	if !closed(first) {
		t.Fatal("a change did not close the receivers' channel")
	}
	next := b.Wait()
	if closed(next) {
		t.Fatal("the channel after a change is closed before the next one")
	}
	b.Notify()
	if !closed(next) {
		t.Fatal("the second change did not close the new channel")
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
