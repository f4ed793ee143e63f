package cluster

// Pause holds the node's renewal and balancing goroutines at their next
// step, as SIGSTOP would hold the process, until resume is called. Serving
// and Timestamp still answer, by the clock, as the process's callers would
// find once it runs again.
func (n *Node) Pause() (resume func()) {
	ch := make(chan struct{})
	n.pause.mu.Lock()
	n.pause.ch = ch
	n.pause.mu.Unlock()
	return func() {
		n.pause.mu.Lock()
		n.pause.ch = nil
		n.pause.mu.Unlock()
		close(ch)
	}
}
