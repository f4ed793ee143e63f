package cassandra

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gocql/gocql"

	"github.com/inboxd/inboxd/cluster"
	"github.com/inboxd/inboxd/timeline"
)

// Defaults of Config.
const (
	DefaultKeyspace          = "inboxd"
	DefaultTimeout           = 5 * time.Second
	DefaultWriters           = 32
	DefaultBucketSize        = 10_000
	DefaultMessageBucketSize = 1_000
	DefaultLeaseTTL          = 30 * time.Second
)

// Config configures Open. Zero values take the defaults named.
type Config struct {
	// Hosts are the contact points, "host" or "host:port".
	Hosts []string
	// Keyspace holds the tables (default "inboxd").
	Keyspace string
	// Consistency of every read and write (default LOCAL_QUORUM). It must
	// make an acknowledged write visible to the next read, as QUORUM,
	// LOCAL_QUORUM or, with one replica, ONE do: the batch log and the
	// readers rely on it. The zero value, ANY, is never meant.
	Consistency gocql.Consistency
	// Timeout bounds each request to Cassandra (default 5 s). Commit retries
	// a request that times out; it must stay below LeaseTTL/4.
	Timeout time.Duration
	// Writers bounds the partition writes in flight, over all commits
	// (default 32).
	Writers int
	// BucketSize is the number of inbox seqs per partition and
	// MessageBucketSize the number of conv_seqs per partition (defaults
	// 10,000 and 1,000: an inbox row is about 50 bytes, a message up to
	// 64 KiB). They are recorded in the keyspace when it is first opened;
	// zero means "as recorded", and a value that differs fails Open.
	BucketSize        uint64
	MessageBucketSize uint64
	// CreateSchema creates the keyspace (one replica, SimpleStrategy) and
	// its tables when missing: for development and tests. Otherwise Open
	// checks the schema and fails with ErrSchema naming what is missing.
	CreateSchema bool
	// Owner names this store in the writer lease (default host:pid:random).
	// Two stores must never share one.
	Owner string
	// LeaseTTL is how long the writer lease outlives its last renewal
	// (default 30 s, whole seconds). A store that crashed keeps the next one
	// out for at most this long.
	LeaseTTL time.Duration
	// Fence, when set, runs the store in cluster mode, as node NodeID of a
	// keyspace shared with other nodes (docs/cluster.md): it takes no writer
	// lease, writes every batch at a timestamp from Fence (ErrFenced when
	// there is none), and keeps its batch log in the partitions of NodeID.
	// The node's lease must be valid when Open is called. Nil: one store
	// writes the keyspace, under the writer lease (LeaseTTL, Owner).
	Fence  Fence
	NodeID int
	// Logger receives the driver's messages and the store's warnings (nil:
	// discard).
	Logger *slog.Logger

	// hook, set by tests, is called at each named step of a commit;
	// returning true stops the commit there as if the process died.
	hook func(step string) bool
}

var keyspaceName = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]{0,47}$`)

func (c *Config) setDefaults() error {
	if len(c.Hosts) == 0 {
		return errors.New("no hosts")
	}
	if c.Keyspace == "" {
		c.Keyspace = DefaultKeyspace
	}
	// The name is spliced into every statement: it must be an identifier.
	if !keyspaceName.MatchString(c.Keyspace) {
		return fmt.Errorf("keyspace %q is not a valid Cassandra identifier", c.Keyspace)
	}
	if c.Consistency == gocql.Any {
		c.Consistency = gocql.LocalQuorum
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Writers <= 0 {
		c.Writers = DefaultWriters
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	c.LeaseTTL = c.LeaseTTL.Round(time.Second)
	if c.LeaseTTL < time.Second || c.Timeout > c.LeaseTTL/4 {
		return fmt.Errorf("lease TTL %v must be at least 1 s and 4 times the timeout %v", c.LeaseTTL, c.Timeout)
	}
	if c.Owner == "" {
		host, _ := os.Hostname()
		c.Owner = host + ":" + strconv.Itoa(os.Getpid()) + ":" + strconv.FormatUint(rand.Uint64(), 36)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Fence != nil && (c.NodeID < 0 || c.NodeID > cluster.MaxNodeID) {
		return fmt.Errorf("node id %d is not in [0, %d]", c.NodeID, cluster.MaxNodeID)
	}
	return nil
}

// Store is a timeline.Store in a Cassandra keyspace. It is safe for
// concurrent use; Close waits for the calls in progress.
type Store struct {
	cfg     Config
	session *gocql.Session
	q       queries
	log     *slog.Logger

	// mu is held shared by every call and exclusively by Close.
	mu     sync.RWMutex
	closed bool
	// closing is canceled by Close first, so that a call retrying through
	// an outage gives up instead of holding Close.
	closing context.Context
	cancel  context.CancelFunc

	lease   *lease
	writers *pool
	slots   *slots
	buckets bucketCache
	format  uint64        // the keyspace's format version, as Open found it
	renewed chan struct{} // closed when the lease renewal goroutine is gone
}

var _ timeline.Store = (*Store)(nil)

// Open connects to the cluster, creates or checks the schema, takes the
// keyspace's writer lease (none in cluster mode), and finishes every commit
// an earlier store (of the same node id, in cluster mode) left in the batch
// log, before it returns. ctx bounds all of that.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("timeline/cassandra: open: %w", err)
	}
	session, err := newSession(cfg)
	if err != nil {
		return nil, fmt.Errorf("timeline/cassandra: open: connect to %v: %w", cfg.Hosts, err)
	}
	s := &Store{
		cfg:     cfg,
		session: session,
		q:       newQueries(cfg.Keyspace),
		log:     cfg.Logger,
		slots:   newSlots(),
		buckets: bucketCache{max: 1 << 20},
	}
	s.closing, s.cancel = context.WithCancel(context.Background())
	if err := s.open(ctx); err != nil {
		s.cancel()
		if s.renewed != nil {
			<-s.renewed
		}
		if s.writers != nil {
			s.writers.close()
		}
		if s.lease != nil {
			err = errors.Join(err, s.lease.release(context.WithoutCancel(ctx)))
		}
		session.Close()
		return nil, opError("open", err)
	}
	return s, nil
}

func newSession(cfg Config) (*gocql.Session, error) {
	c := gocql.NewCluster(cfg.Hosts...)
	c.Consistency = cfg.Consistency
	c.SerialConsistency = serialConsistency(cfg.Consistency)
	c.Timeout = cfg.Timeout
	c.ConnectTimeout = cfg.Timeout
	c.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.RoundRobinHostPolicy())
	// The driver holds each request back up to 200 µs to write it with
	// others, and on a busy machine its timer fires far later: a lone read,
	// as the committer's dedup lookups are, took 1.8–2.0 ms with it and
	// 0.4–0.5 ms without (docs/benchmarks.md, issue 14).
	c.WriteCoalesceWaitTime = 0
	// Every data write carries the batch's own timestamp and every read is
	// a read: all may be retried. The lease's conditional writes opt out.
	c.DefaultIdempotence = true
	c.RetryPolicy = &gocql.SimpleRetryPolicy{NumRetries: 2}
	// A store is one writer that waits for its cluster: look for a node that
	// came back every few seconds, not the driver's default minute.
	c.ReconnectInterval = 2 * time.Second
	c.Logger = driverLogger{cfg.Logger.With("component", "gocql")}
	return c.CreateSession()
}

// serialConsistency is the consistency of the lease's conditional writes:
// local to the data centre when the data's is.
func serialConsistency(c gocql.Consistency) gocql.SerialConsistency {
	if c == gocql.LocalQuorum || c == gocql.LocalOne {
		return gocql.LocalSerial
	}
	return gocql.Serial
}

// open runs the steps of Open, each retried while it fails transiently (a
// node starting up times out schema changes and lightweight transactions);
// each can be repeated.
func (s *Store) open(ctx context.Context) error {
	step := func(f func() error) error { return s.retry(ctx, "open", f) }
	if s.cfg.CreateSchema {
		if err := step(func() error { return createSchema(ctx, s.session, s.cfg.Keyspace) }); err != nil {
			return err
		}
	}
	if err := step(func() error { return checkSchema(ctx, s.session, s.cfg.Keyspace) }); err != nil {
		return err
	}
	if err := step(func() error { return s.loadSettings(ctx) }); err != nil {
		return err
	}
	if s.cfg.Fence != nil {
		s.renewed = make(chan struct{})
		close(s.renewed) // the node renews its own lease
		if s.format == 1 {
			return fmt.Errorf("%w: keyspace %q has format 1: open it once without a fence to upgrade it", ErrSchema, s.cfg.Keyspace)
		}
		s.writers = newPool(s.cfg.Writers)
		return step(func() error { return s.recoverNode(ctx) })
	}
	s.lease = newLease(s.session, &s.q, s.cfg, s.log)
	if err := step(func() error { return s.lease.acquire(ctx) }); err != nil {
		return err
	}
	// Renewals start now: replaying a long log must not outlast the lease.
	s.renewed = make(chan struct{})
	go func() {
		defer close(s.renewed)
		s.lease.keep(s.closing)
	}()
	s.writers = newPool(s.cfg.Writers)
	if err := step(func() error { return s.recover(ctx) }); err != nil {
		return err
	}
	if s.format == 1 {
		return step(func() error { return s.upgrade(ctx) })
	}
	return nil
}

// loadSettings records the store format and the bucket sizes in a new
// keyspace, or reads those of an existing one: rows written under one bucket
// size are found only under it.
func (s *Store) loadSettings(ctx context.Context) error {
	var format uint64 // whatever the keyspace has: an older one is upgraded
	settings := []struct {
		name   string
		value  *uint64 // zero: take what the keyspace has
		preset uint64
	}{
		{"format", &format, storeFormat},
		{"inbox_bucket_size", &s.cfg.BucketSize, DefaultBucketSize},
		{"message_bucket_size", &s.cfg.MessageBucketSize, DefaultMessageBucketSize},
	}
	for _, st := range settings {
		want := cmp.Or(*st.value, st.preset)
		have := make(map[string]any)
		_, err := s.session.Query(s.q.insertSetting, st.name, int64(want)).WithContext(ctx).
			Idempotent(false).MapScanCAS(have)
		if err != nil {
			return fmt.Errorf("read setting %s: %w", st.name, err)
		}
		got := want
		if v, ok := have["value"].(int64); ok { // the row existed
			got = uint64(v)
		}
		if got == 0 || *st.value != 0 && got != *st.value {
			return fmt.Errorf("%w: keyspace %q has %s %d, this store wants %d", ErrSchema, s.cfg.Keyspace, st.name, got, *st.value)
		}
		*st.value = got
	}
	if format != 1 && format != storeFormat {
		return fmt.Errorf("%w: keyspace %q has format %d, this store reads %d", ErrSchema, s.cfg.Keyspace, format, storeFormat)
	}
	s.format = format
	s.q.inbox.bucketSize = s.cfg.BucketSize
	s.q.messages.bucketSize = s.cfg.MessageBucketSize
	return nil
}

// storeFormat is the version of the table layout and of the batch log
// entries, recorded in the settings table. Format 1 had no activity index
// and no dnd on members; Open upgrades it (upgrade.go).
const storeFormat = 2

// Close releases the writer lease, if any, and closes the session after the calls in
// progress have returned; a call waiting out an outage gives up with
// ErrClosed. Calls after Close, Close included, return an error wrapping
// timeline.ErrClosed.
func (s *Store) Close() error {
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return opError("close", timeline.ErrClosed)
	}
	s.closed = true
	<-s.renewed
	s.writers.close()
	// The lease was the promise that nobody else writes; a commit left
	// unsettled is finished by the next store's Open.
	var err error
	if s.lease != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.Timeout)
		defer cancel()
		err = s.lease.release(ctx)
	}
	s.session.Close()
	if err != nil {
		return opError("close", err)
	}
	return nil
}

// enter admits a call unless the store is closed; the caller must call
// s.mu.RUnlock when enter returns nil.
func (s *Store) enter(op string) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return opError(op, timeline.ErrClosed)
	}
	return nil
}

// bind returns ctx, canceled also, with cause timeline.ErrClosed, when the
// store starts closing.
func (s *Store) bind(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.closing, func() { cancel(timeline.ErrClosed) })
	return ctx, func() {
		stop()
		cancel(nil)
	}
}

// opError wraps err with the package's and the operation's names, unless
// it begins with the package's name already, as the errors that wrap this
// package's sentinel errors do.
func opError(op string, err error) error {
	if strings.HasPrefix(err.Error(), "timeline/cassandra: ") {
		return err
	}
	return fmt.Errorf("timeline/cassandra: %s: %w", op, err)
}

// driverLogger routes gocql's messages to slog at debug level: they are
// about connections coming and going, repeated every second of an outage,
// and the store warns of what they cost (retried writes, a lease not
// renewed) itself.
type driverLogger struct{ l *slog.Logger }

func (d driverLogger) Print(v ...any) { d.l.Debug(strings.TrimSpace(fmt.Sprint(v...))) }
func (d driverLogger) Printf(format string, v ...any) {
	d.l.Debug(strings.TrimSpace(fmt.Sprintf(format, v...)))
}
func (d driverLogger) Println(v ...any) { d.l.Debug(strings.TrimSpace(fmt.Sprint(v...))) }
