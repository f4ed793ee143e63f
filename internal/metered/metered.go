// Package metered wraps a timeline.Store so that every operation is timed
// and its errors counted in Prometheus metrics labelled by backend and
// operation:
//
//	inboxd_store_operation_duration_seconds{backend, operation}
//	inboxd_store_operation_errors_total{backend, operation}
//
// The backends stay unaware of metrics; cmd/inboxd wraps whichever it opens.
// timeline.ErrNotFound is an answer, not a failure, and is not counted as an
// error. One wrapped store per registry: a second one registering the same
// metrics fails.
//
// It is internal to the server (README, "Layout").
package metered

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inboxd/inboxd/timeline"
)

// operation indexes the per-operation metrics.
type operation int

const (
	opCommit operation = iota
	opInbox
	opLastInboxSeq
	opMessages
	opLastConvSeq
	opMessagesByKey
	opGroup
	opMembers
	opConversation
	opConversations
	opRecentConversations
	opDedup
	opClock
	opPutRestriction
	opRestrictions
	opOutbox
	opOutboxLow
	opApplied
	opMentions
	numOps
)

var opNames = [numOps]string{
	"commit", "inbox", "last_inbox_seq", "messages", "last_conv_seq", "messages_by_key",
	"group", "members", "conversation", "conversations", "recent_conversations", "dedup", "clock",
	"put_restriction", "restrictions", "outbox", "outbox_low", "applied", "mentions",
}

// buckets span a Pebble point read from the block cache (microseconds) to
// a Cassandra write retried through a short outage.
var buckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Config configures Wrap.
type Config struct {
	// Backend names the wrapped store in the backend label ("pebble",
	// "cassandra").
	Backend string
	// Registerer gets the metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
}

// Store is a timeline.Store that measures the store it wraps.
type Store struct {
	next timeline.Store
	ops  [numOps]meter
}

var _ timeline.Store = (*Store)(nil)

type meter struct {
	duration prometheus.Observer
	errors   prometheus.Counter
}

// done records one operation that started at start and ended with *err.
func (m *meter) done(start time.Time, err *error) {
	m.duration.Observe(time.Since(start).Seconds())
	if *err != nil && !errors.Is(*err, timeline.ErrNotFound) {
		m.errors.Inc()
	}
}

// Measured is a store measured by Wrap.
type Measured interface {
	timeline.Store
	timeline.Restrictions
	// Unwrap returns the wrapped store.
	Unwrap() timeline.Store
}

// Wrap returns store measured under cfg.Backend. When store is a
// timeline.Applier, so is the wrapper: hiding Apply would turn a pipelining
// committer into a serial one.
func Wrap(store timeline.Store, cfg Config) (Measured, error) {
	if cfg.Backend == "" {
		return nil, errors.New("metered: Config.Backend is empty")
	}
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "inboxd", Subsystem: "store", Name: "operation_duration_seconds",
		Help:    "Time a store operation took, by backend and operation, failed ones included.",
		Buckets: buckets,
	}, []string{"backend", "operation"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "inboxd", Subsystem: "store", Name: "operation_errors_total",
		Help: "Store operations that failed (not found does not count), by backend and operation.",
	}, []string{"backend", "operation"})
	s := &Store{next: store}
	for i, name := range opNames {
		s.ops[i] = meter{duration: duration.WithLabelValues(cfg.Backend, name), errors: errs.WithLabelValues(cfg.Backend, name)}
	}
	if reg := cfg.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{duration, errs} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("metered: register metrics: %w", err)
			}
		}
	}
	if ap, ok := store.(timeline.Applier); ok {
		return &applyingStore{Store: s, next: ap}, nil
	}
	return s, nil
}

// applyingStore is the wrapper of an Applier. A batch handed over by Apply
// counts as one commit, timed from the hand-over to the end of its Wait,
// as Commit is.
type applyingStore struct {
	*Store
	next timeline.Applier
}

var _ timeline.Applier = (*applyingStore)(nil)

func (s *applyingStore) Apply(ctx context.Context, b *timeline.Batch) (_ timeline.Pending, err error) {
	start := time.Now()
	p, err := s.next.Apply(ctx, b)
	if err != nil {
		s.ops[opCommit].done(start, &err)
		return nil, err
	}
	return &pending{next: p, start: start, m: &s.ops[opCommit]}, nil
}

type pending struct {
	next  timeline.Pending
	start time.Time
	m     *meter
}

func (p *pending) Wait() (err error) {
	defer p.m.done(p.start, &err)
	return p.next.Wait()
}

// Unwrap returns the wrapped store.
func (s *Store) Unwrap() timeline.Store { return s.next }

func (s *Store) Commit(ctx context.Context, b *timeline.Batch) (err error) {
	defer s.ops[opCommit].done(time.Now(), &err)
	return s.next.Commit(ctx, b)
}

func (s *Store) Inbox(ctx context.Context, user uint64, r timeline.Range) (_ []timeline.Row, err error) {
	defer s.ops[opInbox].done(time.Now(), &err)
	return s.next.Inbox(ctx, user, r)
}

func (s *Store) LastInboxSeq(ctx context.Context, user uint64) (_ uint64, err error) {
	defer s.ops[opLastInboxSeq].done(time.Now(), &err)
	return s.next.LastInboxSeq(ctx, user)
}

func (s *Store) Messages(ctx context.Context, conv uint64, r timeline.Range) (_ []timeline.Message, err error) {
	defer s.ops[opMessages].done(time.Now(), &err)
	return s.next.Messages(ctx, conv, r)
}

func (s *Store) LastConvSeq(ctx context.Context, conv uint64) (_ uint64, err error) {
	defer s.ops[opLastConvSeq].done(time.Now(), &err)
	return s.next.LastConvSeq(ctx, conv)
}

func (s *Store) MessagesByKey(ctx context.Context, keys []timeline.MessageKey, maxBytes int) (_ []timeline.Message, err error) {
	defer s.ops[opMessagesByKey].done(time.Now(), &err)
	return s.next.MessagesByKey(ctx, keys, maxBytes)
}

func (s *Store) Group(ctx context.Context, conv uint64) (_ timeline.Group, err error) {
	defer s.ops[opGroup].done(time.Now(), &err)
	return s.next.Group(ctx, conv)
}

func (s *Store) Members(ctx context.Context, conv uint64) (_ []timeline.Member, err error) {
	defer s.ops[opMembers].done(time.Now(), &err)
	return s.next.Members(ctx, conv)
}

func (s *Store) Conversation(ctx context.Context, user, conv uint64) (_ timeline.Conversation, err error) {
	defer s.ops[opConversation].done(time.Now(), &err)
	return s.next.Conversation(ctx, user, conv)
}

func (s *Store) Conversations(ctx context.Context, user uint64) (_ []timeline.Conversation, err error) {
	defer s.ops[opConversations].done(time.Now(), &err)
	return s.next.Conversations(ctx, user)
}

func (s *Store) RecentConversations(ctx context.Context, user uint64, offset, limit int) (_ []timeline.Conversation, err error) {
	defer s.ops[opRecentConversations].done(time.Now(), &err)
	return s.next.RecentConversations(ctx, user, offset, limit)
}

func (s *Store) Dedup(ctx context.Context, sender uint64, clientMsgID string) (_ timeline.Dedup, err error) {
	defer s.ops[opDedup].done(time.Now(), &err)
	return s.next.Dedup(ctx, sender, clientMsgID)
}

func (s *Store) Mentions(ctx context.Context, conv, user uint64, r timeline.Range) (_ []uint64, err error) {
	defer s.ops[opMentions].done(time.Now(), &err)
	return s.next.Mentions(ctx, conv, user, r)
}

func (s *Store) Clock(ctx context.Context, node int64) (_ uint64, err error) {
	defer s.ops[opClock].done(time.Now(), &err)
	return s.next.Clock(ctx, node)
}

// errNoRestrictions is the answer of a wrapped store that keeps no
// restrictions.
var errNoRestrictions = errors.New("metered: the store keeps no restrictions")

// PutRestriction implements timeline.Restrictions when the wrapped store does.
func (s *Store) PutRestriction(ctx context.Context, r timeline.Restriction) (err error) {
	defer s.ops[opPutRestriction].done(time.Now(), &err)
	rs, ok := s.next.(timeline.Restrictions)
	if !ok {
		return errNoRestrictions
	}
	return rs.PutRestriction(ctx, r)
}

// AllRestrictions implements timeline.Restrictions when the wrapped store does.
func (s *Store) AllRestrictions(ctx context.Context) (_ []timeline.Restriction, err error) {
	defer s.ops[opRestrictions].done(time.Now(), &err)
	rs, ok := s.next.(timeline.Restrictions)
	if !ok {
		return nil, errNoRestrictions
	}
	return rs.AllRestrictions(ctx)
}

func (s *Store) Outbox(ctx context.Context, source int, after uint64, limit int) (_ []timeline.OutboxRecord, err error) {
	defer s.ops[opOutbox].done(time.Now(), &err)
	return s.next.Outbox(ctx, source, after, limit)
}

func (s *Store) OutboxLow(ctx context.Context, source int) (_ uint64, err error) {
	defer s.ops[opOutboxLow].done(time.Now(), &err)
	return s.next.OutboxLow(ctx, source)
}

func (s *Store) Applied(ctx context.Context, dest int) (_ []timeline.AppliedMark, err error) {
	defer s.ops[opApplied].done(time.Now(), &err)
	return s.next.Applied(ctx, dest)
}

// Close closes the wrapped store.
func (s *Store) Close() error { return s.next.Close() }
