package cassandra

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/gocql/gocql"

	"github.com/inboxd/inboxd/timeline"
)

// errCrashed is returned by a commit that a test's hook stopped as if the
// process died there.
var errCrashed = errors.New("simulated crash")

// Commit implements timeline.Writer: Apply, then Wait. It retries
// transient failures until they pass or ctx is done. When it fails after the
// entry may have been written, the batch is finished by the next call of any
// method, before that call reads or writes anything else, or by the next
// Open after a crash.
func (s *Store) Commit(ctx context.Context, b *timeline.Batch) error {
	p, err := s.Apply(ctx, b)
	if err != nil {
		return err
	}
	return p.Wait()
}

var _ timeline.Applier = (*Store)(nil)

// Apply implements timeline.Applier: it writes b's entry into the batch log,
// b's commit point (package doc), and returns while b's writes are applied
// in the background, after those of the batches applied before it. Until
// they have landed, every read of the store waits for them, except Dedup,
// which answers from the records of the batches in flight: a caller builds
// its next batch meanwhile on a store that shows b. ctx bounds the apply as
// it bounds a Commit; Wait reports its outcome, and a batch whose writes did
// not all land is finished as a failed Commit's is.
func (s *Store) Apply(ctx context.Context, b *timeline.Batch) (timeline.Pending, error) {
	if err := s.enter("commit"); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		s.mu.RUnlock()
		return nil, opError("commit", err)
	}
	if b.Empty() {
		s.mu.RUnlock()
		return landed{}, nil
	}
	ctx, cancel := s.bind(ctx)
	f, err := s.launch(ctx, b)
	if err != nil {
		cancel()
		s.mu.RUnlock()
		return nil, opError("commit", err)
	}
	// The read lock, held until the batch has landed, keeps Close waiting
	// for it.
	go func() {
		defer s.mu.RUnlock()
		defer cancel()
		s.land(ctx, f)
	}()
	return f, nil
}

// commit is Commit in the caller's goroutine, without the checks of a call,
// for Open.
func (s *Store) commit(ctx context.Context, b *timeline.Batch) error {
	f, err := s.launch(ctx, b)
	if err != nil {
		return err
	}
	s.land(ctx, f)
	return f.err
}

// launch writes b's entry into the log and puts b in flight behind the
// batches in flight already.
func (s *Store) launch(ctx context.Context, b *timeline.Batch) (*flight, error) {
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	// Planning a fan-out batch takes milliseconds of CPU: done while the
	// log entry is encoded and written, it costs a commit no time.
	planned := make(chan *plan, 1)
	go func() { planned <- s.plan(b) }()
	l, err := s.logBatch(ctx, b, planned)
	if err != nil {
		return nil, err
	}
	if s.hit("logged") {
		return nil, errCrashed
	}
	f := &flight{logged: l, dedups: make(map[dedupKey]timeline.Dedup, len(b.Dedups)), done: make(chan struct{})}
	for _, d := range b.Dedups {
		f.dedups[dedupKey{d.Sender, d.ClientMsgID}] = d
	}
	s.flights.push(f)
	return f, nil
}

// land applies f's writes once the batch before it has landed, and
// finishes f: it clears f's entry, or leaves it to settle when a write
// failed.
func (s *Store) land(ctx context.Context, f *flight) {
	defer close(f.done)
	// Out of the flights once its writes landed, or once it waits for
	// settle: Dedup looks there first and then, through settle, in the
	// table.
	defer s.flights.remove(f)
	if f.prev != nil {
		<-f.prev.done
		if errors.Is(f.prev.err, errCrashed) {
			f.err = errCrashed
			return
		}
		f.prev = nil
	}
	// f was built on the batches before it: one that failed is finished
	// first.
	err := s.settle(ctx)
	if err == nil {
		err = s.apply(ctx, f.plan, f.entry.ts)
	}
	if err != nil {
		if !errors.Is(err, errCrashed) {
			s.slots.unsettled(f.entry)
		}
		f.err = err
		return
	}
	s.buckets.add(f.plan.buckets)
	// The clear is off the commit's path: until it lands, a crash makes
	// the next Open replay a batch already applied, which changes nothing.
	// It gets a timeout of its own, so that Close lets it finish.
	s.writers.do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
		defer cancel()
		s.clearEntry(ctx, f.entry)
		s.slots.put(f.entry.slot)
	})
}

// landed is the outcome of an empty batch.
type landed struct{}

func (landed) Wait() error { return nil }

// flight is a batch whose entry is in the log and whose writes are applied
// in the background.
type flight struct {
	logged
	prev   *flight // in flight before it, when it was put in flight
	dedups map[dedupKey]timeline.Dedup
	done   chan struct{} // closed when it has landed or failed
	err    error         // set before done is closed
}

type dedupKey struct {
	sender uint64
	id     string
}

// Wait implements timeline.Pending.
func (f *flight) Wait() error {
	<-f.done
	if f.err != nil {
		return opError("commit", f.err)
	}
	return nil
}

// flights are the batches in flight, oldest first, each applied once the
// one before it has landed.
type flights struct {
	mu   sync.Mutex
	list []*flight
}

func (fs *flights) push(f *flight) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if n := len(fs.list); n > 0 {
		f.prev = fs.list[n-1]
	}
	fs.list = append(fs.list, f)
}

func (fs *flights) remove(f *flight) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.list = slices.DeleteFunc(fs.list, func(g *flight) bool { return g == f })
}

// wait waits until the batches in flight now have landed or failed.
func (fs *flights) wait(ctx context.Context) error {
	fs.mu.Lock()
	var last *flight
	if n := len(fs.list); n > 0 {
		last = fs.list[n-1]
	}
	fs.mu.Unlock()
	if last == nil {
		return nil
	}
	select {
	case <-last.done:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// dedup returns the dedup record of (sender, id) that a batch in flight
// writes.
func (fs *flights) dedup(sender uint64, id string) (timeline.Dedup, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, f := range slices.Backward(fs.list) {
		if d, ok := f.dedups[dedupKey{sender, id}]; ok {
			return d, true
		}
	}
	return timeline.Dedup{}, false
}

// logged is a batch whose entry is in the log, and its plan.
type logged struct {
	entry entry
	plan  *plan
}

// logBatch writes b's entry into a free slot of the batch log and returns
// it with b's plan, received from planned. When it fails after the entry's
// head was sent, it leaves the entry to settle.
func (s *Store) logBatch(ctx context.Context, b *timeline.Batch, planned <-chan *plan) (logged, error) {
	l := logged{}
	defer func() {
		if l.plan == nil {
			<-planned // the planner reads b, which the caller may reuse after Commit
		}
	}()
	data, err := encodeBatch(b)
	if err != nil {
		return l, err
	}
	slot, err := s.slots.take(ctx)
	if err != nil {
		return l, err
	}
	l.entry = entry{slot: slot, data: data}
	err = s.retry(ctx, "commit", func() (err error) {
		l.entry.ts, err = s.batchTimestamp(b)
		return err
	})
	if err != nil {
		s.slots.put(slot)
		return l, err
	}
	if sent, err := s.writeEntry(ctx, l.entry); err != nil {
		switch {
		case errors.Is(err, errCrashed):
		case sent:
			s.slots.unsettled(l.entry)
		default:
			s.slots.put(slot)
		}
		return l, err
	}
	l.plan = <-planned
	return l, nil
}

// settle finishes the commits that failed after their log entry may have
// been written, oldest first: it writes each entry again (the same bytes at
// the same timestamp, so a copy that landed late changes nothing), applies
// it and clears it. Until it succeeds the store returns errors rather than
// show a state that a late part of such a batch could still change.
func (s *Store) settle(ctx context.Context) error {
	if !s.slots.pending() {
		return nil
	}
	s.slots.settling.Lock()
	defer s.slots.settling.Unlock()
	for {
		e, ok := s.slots.oldest()
		if !ok {
			return nil
		}
		b, err := decodeBatch(e.data)
		if err != nil {
			return err
		}
		if _, err := s.writeEntry(ctx, e); err != nil {
			return err
		}
		if err := s.apply(ctx, s.plan(b), e.ts); err != nil {
			return err
		}
		s.clearEntry(ctx, e)
		s.slots.settled(e)
	}
}

// apply runs p's phases in order at timestamp ts.
func (s *Store) apply(ctx context.Context, p *plan, ts int64) error {
	for i, phase := range p.phases {
		if err := s.run(ctx, phase, ts); err != nil {
			return err
		}
		if s.hit(fmt.Sprintf("phase %d", i+1)) {
			return errCrashed
		}
	}
	return nil
}

// run applies chains in parallel on the writer pool and returns the first
// error, after stopping the other chains.
func (s *Store) run(ctx context.Context, chains []chain, ts int64) error {
	if len(chains) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, c := range chains {
		wg.Add(1)
		s.writers.do(func() {
			defer wg.Done()
			for _, w := range c {
				err := s.exec(ctx, w, ts)
				if err == nil && s.hit("write") {
					err = errCrashed
				}
				if err != nil {
					once.Do(func() {
						first = err
						cancel()
					})
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// exec applies one write at timestamp ts, retrying transient failures, and
// only while this store holds the writer lease (in cluster mode, ts is the
// fence).
func (s *Store) exec(ctx context.Context, w write, ts int64) error {
	return s.retry(ctx, "write", func() error {
		if err := s.check(); err != nil {
			return err
		}
		if len(w) == 1 {
			return s.session.Query(w[0].cql, w[0].args...).WithContext(ctx).WithTimestamp(ts).Exec()
		}
		// A fresh batch for each attempt: the driver's batches are not
		// meant to be executed twice.
		b := s.session.NewBatch(gocql.UnloggedBatch).WithContext(ctx).WithTimestamp(ts)
		b.Entries = make([]gocql.BatchEntry, len(w))
		for i, st := range w {
			b.Entries[i] = gocql.BatchEntry{Stmt: st.cql, Args: st.args, Idempotent: true}
		}
		return s.session.ExecuteBatch(b)
	})
}

// hit reports whether a test's hook stops the commit at step.
func (s *Store) hit(step string) bool {
	return s.cfg.hook != nil && s.cfg.hook(step)
}
