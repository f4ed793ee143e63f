package cassandra

import (
	"context"

	"github.com/inboxd/inboxd/timeline"
)

// WithHook returns cfg with hook, called at each named step of a commit
// ("log chunks", "logged", "write", "phase 1" to "phase 3"); returning true
// stops the commit there as if the process died.
func WithHook(cfg Config, hook func(step string) bool) Config {
	cfg.hook = hook
	return cfg
}

// Crash stops s as if its process died: it finishes, clears and releases
// nothing, so the writer lease stays taken until it expires.
func Crash(s *Store) {
	s.cancel()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	<-s.renewed
	s.writers.close()
	s.session.Close()
}

// Renew renews s's writer lease now.
func Renew(s *Store) error { return s.lease.renew(context.Background()) }

// LastTimestamp returns the newest write timestamp s handed out.
func LastTimestamp(s *Store) int64 {
	s.lease.mu.Lock()
	defer s.lease.mu.Unlock()
	return s.lease.last
}

// EncodeBatch encodes b as a batch log entry.
func EncodeBatch(b *timeline.Batch) ([]byte, error) { return encodeBatch(b) }
