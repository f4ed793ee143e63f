package inbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/inboxd/inboxd/sequencer"
	"github.com/inboxd/inboxd/timeline"
)

// errCrashed answers the commands left when a test's crash hook stopped the
// committer: to their callers it looks like a connection lost before the ack.
var errCrashed = errors.New("inbox: simulated crash")

// errAbandoned settles a command whose caller gave up before it ran; nobody
// reads it.
var errAbandoned = errors.New("inbox: caller gone before the command ran")

// txn is the state of one group commit while the committer builds it: the
// batch, the seqs assigned, and copies of whatever the batch changes, read
// in preference to the committed state.
type txn struct {
	ctx    context.Context
	s      *Service
	now    time.Time
	start  time.Time // when the committer began to build the batch
	seq    *sequencer.Txn
	b      timeline.Batch
	lastID uint64
	// bodyBytes sums the bodies of the batch's messages.
	bodyBytes int

	groups  map[uint64]*group                  // groups changed by this batch
	convs   map[userConv]timeline.Conversation // entries written by this batch
	markers map[userConv]uint64
	dedups  map[dedupKey]timeline.Dedup // written by this batch
	// read holds the dedup records read ahead of the commands that look
	// them up, found or not; dedups, the batch's own, come first.
	read   map[dedupKey]dedupRead
	active map[userConv]time.Time // activity index entries moved: where each stood before
	// activeAt holds where an entry moves when not to the batch's time (an
	// applied record's message time).
	activeAt map[userConv]time.Time
	out      txOut
	// msgs holds where each message the batch writes is, so that a recall
	// or an edit of it later in the batch rewrites that write.
	msgs     map[timeline.MessageKey]msgSlot
	rewrites int // of b.Messages, the rewrites of messages committed before

	deliveries []delivery
}

type userConv struct{ user, conv uint64 }

type dedupKey struct {
	sender uint64
	id     string
}

// delivery is one committed inbox entry on its way to the Notifier.
type delivery struct {
	Entry
	offline offlinePush // what the recipient gets when offline
}

// committed is the deliveries of one durable batch, with when it became so.
type committed struct {
	deliveries []delivery
	durable    time.Time
}

func (s *Service) commitLoop() {
	q := newQueues()
	crashed := false
	var inflight *flight
	for {
		if inflight != nil && s.poll(q) < len(inflight.applied) {
			// Fewer commands wait than the batch in flight holds: settle
			// it first, and let the next batch gather while it syncs. A
			// smaller batch handed over now would take a sync of its own
			// (a commit's fixed cost, about 100 µs of CPU here, most of
			// it the fdatasync) and the commands arriving meanwhile would
			// wait for both. A queue as long as the batch in flight means
			// the committer is behind: then it builds during the sync.
			crashed = !s.land(inflight, nil)
			inflight = nil
		}
		if !s.intake(q) {
			return
		}
		if crashed {
			for c := q.pop(); c != nil; c = q.pop() {
				c.done <- errCrashed
			}
			continue
		}
		tx := s.begin()
		var applied []*command
		var errs []error
		for !tx.full(len(applied)) {
			if inflight.durable() {
				// Its acks need not wait for this batch's hand-over.
				crashed = !s.land(inflight, nil)
				inflight = nil
				if crashed {
					break
				}
			}
			c := q.pop()
			if c == nil {
				break
			}
			if q.len() > 0 && tx.unread(c.dedup) {
				// Alone, the command reads its record itself.
				tx.readAhead(c, q.ahead(min(readAheadCommands, s.cfg.MaxBatchCommands-len(applied))-1))
			}
			applied = append(applied, c)
			errs = append(errs, tx.apply(c))
		}
		if crashed {
			for _, c := range applied {
				c.done <- errCrashed
			}
			continue
		}
		f := &flight{tx: tx, applied: applied, errs: errs}
		if s.applier != nil {
			var ok bool
			inflight, ok = s.pipeline(f, inflight)
			crashed = !ok
			continue
		}
		if !s.commit(tx, errs) {
			crashed = true
			f.abandon()
			continue
		}
		crashed = !s.answer(f)
	}
}

// flight is a built batch with the commands it answers: with a pipelining
// committer, handed to the store and maybe not durable yet.
type flight struct {
	tx      *txn
	applied []*command
	errs    []error
	// synced is closed once the store has settled the handed-over batch,
	// with its outcome in werr; nil when nothing was handed over.
	synced chan struct{}
	werr   error
	err    error // the batch's failure, once landed
}

// durable reports whether f is a batch in flight that the store made
// durable, or that had nothing to write: it can be answered while the next
// batch is built (a failed one fails the next, so it waits for that).
func (f *flight) durable() bool {
	if f == nil {
		return false
	}
	if f.synced == nil {
		return true
	}
	select {
	case <-f.synced:
		return f.werr == nil
	default:
		return false
	}
}

// abandon answers the batch's commands as a crash would leave them, after
// the store has settled the batch (it must not outlive the store).
func (f *flight) abandon() {
	if f.synced != nil {
		<-f.synced // whatever it became, nobody is told
	}
	for _, c := range f.applied {
		c.done <- errCrashed
	}
}

// answer settles the commands of a committed or failed batch and hands its
// deliveries on. It reports false when a test's crash hook stopped the
// committer.
func (s *Service) answer(f *flight) bool {
	for i, c := range f.applied {
		c.done <- f.errs[i]
	}
	if s.hit(stepAfterAck) {
		return false
	}
	if len(f.tx.deliveries) > 0 {
		s.deliveries <- committed{f.tx.deliveries, time.Now()}
	}
	return true
}

// pipeline hands f's batch to the store and then settles prev, the batch
// handed over before it, so that f's write queues behind prev's sync and
// the next batch is built while f's syncs. It returns f still in flight,
// or nil when f is settled already; it reports false when a test's crash
// hook stopped the committer.
//
// f was built on prev's state (the store shows prev's writes, the group
// cache and the sequencer continue from them), so a failed prev fails f.
func (s *Service) pipeline(f, prev *flight) (*flight, bool) {
	tx := f.tx
	if s.hit(stepBeforeCommit) {
		if prev != nil {
			prev.abandon()
		}
		f.abandon()
		return nil, false
	}
	tx.seal()
	err := tx.batchErr()
	if !tx.failed() {
		err = nil
		if !tx.b.Empty() {
			err = s.handOver(f)
		}
	}
	if err != nil {
		// Settle prev first: f's abort reloads heads from the store, which
		// must not meet prev's batch undecided.
		if prev != nil {
			if !s.land(prev, nil) {
				f.abandon()
				return nil, false
			}
		}
		s.failed(tx, f.errs, err)
		return nil, s.answer(f)
	}
	tx.seq.Seal()
	s.cacheGroups(tx)
	if prev == nil {
		return f, true
	}
	if !s.land(prev, nil) {
		f.abandon()
		return nil, false
	}
	if prev.err != nil {
		return nil, s.land(f, prev.err)
	}
	return f, true
}

// handOver hands f's batch to the store. A goroutine waits for the batch
// to become durable, so that the commit duration is the store's, however
// long the committer takes over the next batch before it looks.
func (s *Service) handOver(f *flight) error {
	start := s.built(f.tx)
	p, err := s.applier.Apply(f.tx.ctx, &f.tx.b)
	if err != nil {
		s.metrics.commits.Observe(time.Since(start).Seconds())
		return fmt.Errorf("%w: commit: %w", ErrUnavailable, err)
	}
	f.synced = make(chan struct{})
	go func() {
		f.werr = p.Wait()
		d := time.Since(start)
		close(f.synced)
		s.metrics.commits.Observe(d.Seconds())
	}()
	return nil
}

// built records how long tx took to build and returns the time it is
// handed to the store.
func (s *Service) built(tx *txn) time.Time {
	now := time.Now()
	s.metrics.builds.Observe(now.Sub(tx.start).Seconds())
	return now
}

// land waits until f's batch is durable or failed, fails it anyway when
// cause (its predecessor's failure) is not nil, answers its commands and
// sets f.err. It reports false when a test's crash hook stopped the
// committer.
func (s *Service) land(f *flight, cause error) bool {
	var err error
	if f.synced != nil {
		<-f.synced
		if f.werr != nil {
			err = fmt.Errorf("%w: commit: %w", ErrUnavailable, f.werr)
		}
	}
	if err == nil && cause != nil {
		err = fmt.Errorf("%w: built on a batch that failed: %w", ErrUnavailable, cause)
	}
	if err != nil {
		f.err = err
		s.failed(f.tx, f.errs, err)
		return s.answer(f)
	}
	f.tx.seq.Commit()
	s.committedMetrics(f.tx, len(f.errs))
	if s.hit(stepAfterCommit) {
		f.abandon()
		return false
	}
	return s.answer(f)
}

// intake moves the commands waiting in s.cmds into q, first waiting for one
// when q is empty. It holds at most cap(s.cmds) commands in q, so that
// callers beyond that wait on the channel as before. It reports false once
// s.cmds is closed and q is empty: the committer is done.
func (s *Service) intake(q *queues) bool {
	if q.len() == 0 {
		c, ok := <-s.cmds
		if !ok {
			return false
		}
		q.push(c)
	}
	for q.len() < cap(s.cmds) {
		select {
		case c, ok := <-s.cmds:
			if !ok {
				return true
			}
			q.push(c)
		default:
			return true
		}
	}
	return true
}

// poll moves the commands waiting in s.cmds into q without waiting, and
// returns how many q holds.
func (s *Service) poll(q *queues) int {
	for q.len() < cap(s.cmds) {
		select {
		case c, ok := <-s.cmds:
			if !ok {
				return q.len()
			}
			q.push(c)
		default:
			return q.len()
		}
	}
	return q.len()
}

// full reports whether the batch, with n commands, takes no more.
func (tx *txn) full(n int) bool {
	cfg := &tx.s.cfg
	return n >= cfg.MaxBatchCommands || len(tx.b.Rows) >= cfg.MaxBatchRows || tx.bodyBytes >= cfg.MaxBatchBytes
}

func (s *Service) begin() *txn {
	tx := &txn{
		ctx:     s.ctx,
		s:       s,
		now:     s.cfg.Now().Truncate(time.Millisecond),
		start:   time.Now(),
		seq:     s.seq.Begin(),
		groups:  make(map[uint64]*group),
		convs:   make(map[userConv]timeline.Conversation),
		markers: make(map[userConv]uint64),
		dedups:  make(map[dedupKey]timeline.Dedup),
		read:    make(map[dedupKey]dedupRead),
		active:  make(map[userConv]time.Time),
	}
	if !s.local {
		s.checkEpochs()
		s.sender.settle(tx)
	}
	return tx
}

// apply runs one command. A store error poisons the batch: the overlay may
// hold half of the command, so nothing of the batch may be written.
func (tx *txn) apply(c *command) error {
	if tx.failed() {
		return tx.batchErr()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.abandoned {
		return errAbandoned
	}
	err := c.apply(tx)
	if se := (storeError{}); errors.As(err, &se) {
		tx.fail(err)
	}
	return err
}

func (tx *txn) failed() bool { return tx.ctx.Err() != nil }

func (tx *txn) batchErr() error {
	return fmt.Errorf("%w: %w", ErrUnavailable, context.Cause(tx.ctx))
}

func (tx *txn) fail(err error) {
	ctx, cancel := context.WithCancelCause(tx.ctx)
	cancel(err)
	tx.ctx = ctx
}

// commit writes the batch and settles errs: on a failed write every
// command of the batch fails with ErrUnavailable. It reports false when a
// test's crash hook stopped the committer.
func (s *Service) commit(tx *txn, errs []error) bool {
	if s.hit(stepBeforeCommit) {
		return false
	}
	tx.seal()
	var err error
	if tx.failed() {
		err = tx.batchErr()
	} else if !tx.b.Empty() {
		start := s.built(tx)
		cerr := s.store.Commit(tx.ctx, &tx.b)
		s.metrics.commits.Observe(time.Since(start).Seconds())
		if cerr != nil {
			err = fmt.Errorf("%w: commit: %w", ErrUnavailable, cerr)
		}
	}
	if err != nil {
		s.failed(tx, errs, err)
		return true
	}
	tx.seq.Commit()
	if !s.local {
		s.commitOut(tx)
		s.sender.push(tx.b.Outbox)
	}
	s.committedMetrics(tx, len(errs))
	s.cacheGroups(tx)
	return !s.hit(stepAfterCommit)
}

// seal completes the batch with what is known only once it is built.
func (tx *txn) seal() {
	if tx.lastID != 0 {
		tx.b.ClockNode, tx.b.Clock = tx.s.cfg.Node, tx.lastID
	}
	tx.b.Activities = tx.activities()
}

// failed settles a batch whose write failed or may have: every command of
// it that had succeeded, or failed on the store, fails with err.
func (s *Service) failed(tx *txn, errs []error, err error) {
	s.metrics.commitFails.Inc()
	tx.seq.Abort()
	// The batch may have landed: what is cached of the groups it changed
	// or posted to cannot be trusted. The others are as they were.
	for id := range tx.groups {
		s.groups.remove(id)
	}
	for _, msg := range tx.b.Messages {
		s.groups.remove(msg.Conv)
	}
	s.log.Error("inbox: group commit failed", "commands", len(errs), "err", err)
	for i := range errs {
		if errs[i] == nil || errors.As(errs[i], new(storeError)) {
			errs[i] = err
		}
	}
	tx.deliveries = nil
	s.abortOut(tx)
}

func (s *Service) committedMetrics(tx *txn, commands int) {
	m := s.metrics
	m.messages.Add(float64(len(tx.b.Messages) - tx.rewrites))
	m.rows.Add(float64(len(tx.b.Rows)))
	m.batchRows.Observe(float64(len(tx.b.Rows)))
	m.batchCmds.Observe(float64(commands))
}

// cacheGroups puts the groups the batch changed into the cache: the next
// batch builds on them.
func (s *Service) cacheGroups(tx *txn) {
	for _, g := range tx.groups {
		s.groups.put(g)
	}
	for _, msg := range tx.b.Messages {
		if g, ok := s.groups.peek(msg.Conv); ok {
			g.last = tx.now
		}
	}
}

// commitStep names a point of a group commit at which a test's hook may
// stop the committer as if the process died there, or hold it. A set of
// constants rather than strings, so that a test cannot name a step that
// does not exist.
type commitStep uint8

const (
	stepBeforeCommit commitStep = iota + 1 // the batch is built, nothing written
	stepAfterCommit                        // the batch is durable, nobody acknowledged
	stepAfterAck                           // the commands are answered, nothing pushed
)

func (s commitStep) String() string {
	switch s {
	case stepBeforeCommit:
		return "before-commit"
	case stepAfterCommit:
		return "after-commit"
	case stepAfterAck:
		return "after-ack"
	}
	return fmt.Sprintf("step(%d)", uint8(s))
}

func (s *Service) hit(step commitStep) bool {
	return s.cfg.stepHook != nil && s.cfg.stepHook(step)
}

// dispatch hands committed entries to the Notifier, one user at a time in
// commit order, and the entries of users with no online device to the
// OfflinePusher.
func (s *Service) dispatch() {
	m := s.metrics
	byUser := make(map[uint64][]Entry)
	var order []uint64
	pushable := make(map[uint64][]Entry)
	dnd := make(map[uint64]int)
	for batch := range s.deliveries {
		if s.cfg.Notifier == nil && s.cfg.OfflinePusher == nil {
			continue
		}
		for _, d := range batch.deliveries {
			if _, ok := byUser[d.Row.User]; !ok {
				order = append(order, d.Row.User)
			}
			byUser[d.Row.User] = append(byUser[d.Row.User], d.Entry)
			switch d.offline {
			case offlineHook:
				pushable[d.Row.User] = append(pushable[d.Row.User], d.Entry)
			case offlineDND:
				dnd[d.Row.User]++
			}
		}
		for _, u := range order {
			entries := byUser[u]
			if s.cfg.Notifier != nil && s.cfg.Notifier.Notify(u, entries) {
				m.pushes[pushedOnline].Add(float64(len(entries)))
			} else {
				hooked := 0
				if s.cfg.OfflinePusher != nil {
					for _, e := range pushable[u] {
						s.cfg.OfflinePusher.PushOffline(u, e)
					}
					hooked = len(pushable[u])
				}
				m.pushes[pushedOffline].Add(float64(hooked))
				m.pushes[skippedDND].Add(float64(dnd[u]))
				m.pushes[skippedOther].Add(float64(len(entries) - hooked - dnd[u]))
			}
			m.pushDelay.Observe(time.Since(batch.durable).Seconds())
		}
		clear(byUser)
		clear(pushable)
		clear(dnd)
		order = order[:0]
	}
}
