package inbox

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/inboxd/inboxd/timeline"
)

// The committer reads the dedup records of the commands it is about to
// apply together rather than each as its command comes: on Cassandra a read
// is a round trip of 0.4–2.5 ms, and one after another they took most of a
// batch's build.
const (
	// readAheadCommands bounds the commands whose records are read at
	// once: more would be read in vain when the batch fills on rows
	// before it takes them.
	readAheadCommands = 64
	// readAheadReaders bounds the reads in flight.
	readAheadReaders = 16
)

// dedupRead is a dedup record read ahead: found reports whether there is
// one.
type dedupRead struct {
	d     timeline.Dedup
	found bool
}

// unread reports whether k names a dedup record the batch knows nothing of
// yet.
func (tx *txn) unread(k dedupKey) bool {
	if k.id == "" {
		return false
	}
	if _, ok := tx.dedups[k]; ok {
		return false
	}
	_, ok := tx.read[k]
	return !ok
}

// readAhead reads the dedup records of c and of next, the commands the
// batch takes after it if it has room, that the batch knows nothing of,
// readAheadReaders at a time. The store shows the same state as a read in
// apply would: the batches handed over before, whose writes are visible to
// this one's build, and none of this batch's own, which tx.dedups holds
// and answers first. A read that fails is not kept: the command reads the
// record again itself and fails on the store's error as it always did.
func (tx *txn) readAhead(c *command, next []*command) {
	keys := []dedupKey{c.dedup}
	seen := map[dedupKey]bool{c.dedup: true}
	for _, n := range next {
		if k := n.dedup; !seen[k] && tx.unread(k) {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	reads := make([]dedupRead, len(keys))
	errs := make([]error, len(keys))
	var i atomic.Int64
	read := func() {
		for j := int(i.Add(1) - 1); j < len(keys); j = int(i.Add(1) - 1) {
			k := keys[j]
			reads[j].d, errs[j] = tx.s.store.Dedup(tx.ctx, k.sender, k.id)
			reads[j].found = errs[j] == nil
		}
	}
	// The committer reads too: a single record takes no goroutine.
	var wg sync.WaitGroup
	for range min(len(keys), readAheadReaders) - 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			read()
		}()
	}
	read()
	wg.Wait()
	for j, k := range keys {
		if errs[j] == nil || errors.Is(errs[j], timeline.ErrNotFound) {
			tx.read[k] = reads[j]
		}
	}
}
