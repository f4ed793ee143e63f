package cassandra

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/gocql/gocql"

	"github.com/inboxd/inboxd/timeline"
)

// errCrashed is returned by a commit that a test's hook stopped as if the
// process died there.
var errCrashed = errors.New("simulated crash")

// Commit implements timeline.Writer: it writes b's entry into the batch log,
// applies b's writes, and clears the entry; the package doc gives the
// argument. It retries transient failures until they pass or ctx is done.
// When it fails after the entry may have been written, the batch is finished
// by the next call of any method, before that call reads or writes anything
// else, or by the next Open after a crash.
func (s *Store) Commit(ctx context.Context, b *timeline.Batch) error {
	if err := s.enter("commit"); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return opError("commit", err)
	}
	if b.Empty() {
		return nil
	}
	ctx, cancel := s.bind(ctx)
	defer cancel()
	if err := s.commit(ctx, b); err != nil {
		return opError("commit", err)
	}
	return nil
}

func (s *Store) commit(ctx context.Context, b *timeline.Batch) error {
	if err := s.settle(ctx); err != nil {
		return err
	}
	// Planning a fan-out batch takes milliseconds of CPU: done while the
	// log entry is encoded and written, it costs a commit no time.
	planned := make(chan *plan, 1)
	go func() { planned <- s.plan(b) }()
	p, err := s.logBatch(ctx, b, planned)
	if err != nil {
		return err
	}
	if s.hit("logged") {
		return errCrashed
	}
	if err := s.apply(ctx, p.plan, p.entry.ts); err != nil {
		if !errors.Is(err, errCrashed) {
			s.slots.unsettled(p.entry)
		}
		return err
	}
	s.buckets.add(p.plan.buckets)
	// The clear is off the commit's path: until it lands, a crash makes
	// the next Open replay a batch already applied, which changes nothing.
	// It gets a timeout of its own, so that Close lets it finish.
	s.writers.do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
		defer cancel()
		s.clearEntry(ctx, p.entry)
		s.slots.put(p.entry.slot)
	})
	return nil
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
