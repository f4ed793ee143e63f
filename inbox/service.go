package inbox

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inboxd/inboxd/cluster"
	"github.com/inboxd/inboxd/sequencer"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// Config configures a Service. Zero values take the defaults named.
type Config struct {
	Store timeline.Store
	// Node is this server's snowflake node id, 0–1023. No two servers
	// sharing a store may use the same one.
	Node int64
	// MaxGroupSize bounds the members of a group (default 500).
	MaxGroupSize int
	// MaxBodySize bounds a message body in bytes (default 64 KiB).
	MaxBodySize int
	// RecallWindow and EditWindow are how long after sending a message its
	// sender may recall or edit it (defaults 2 minutes and 24 hours); the
	// group's owner and admins may any time.
	RecallWindow time.Duration
	EditWindow   time.Duration
	// MentionAllAnyone lets every member mention @all; by default only the
	// owner and admins may.
	MentionAllAnyone bool
	// MaxBatchRows ends a group commit once its inbox rows reach it
	// (default 16384), MaxBatchBytes once its message bodies reach it
	// (default 1 MiB); MaxBatchCommands bounds its commands (default
	// 1024). Commands join a batch round-robin between users: see
	// docs/architecture.md for the bound on a command's wait.
	MaxBatchRows     int
	MaxBatchBytes    int
	MaxBatchCommands int
	// GroupCacheBytes bounds the memory, estimated, of the groups the
	// committer keeps loaded (default 64 MiB); the least recently used go
	// first.
	GroupCacheBytes int
	// MaxReadBytes bounds a page of Sync or History by the Size of its
	// messages (timeline.Message.Size; default 255 KiB, a page that fits
	// the gateway's default frame): the store stops reading there.
	MaxReadBytes int
	// Ownership says which shards of users and conversations this node
	// serves (docs/cluster.md). Nil: every shard, always (the embedded
	// mode), with no outbox written.
	Ownership cluster.Ownership
	// Deliverer sends outbox records to the nodes serving their
	// destination shards; required unless every shard is served here.
	Deliverer Deliverer
	// Notifier and OfflinePusher receive committed entries; nil means none.
	Notifier      Notifier
	OfflinePusher OfflinePusher
	Logger        *slog.Logger
	// Now returns the server time (default time.Now); tests inject a clock.
	Now func() time.Time
	// MaxClockWait bounds how long New waits for a clock that runs behind
	// the last issued msg id before it fails (default 10 s).
	MaxClockWait time.Duration
	// Registerer gets the metrics of the service and of its sequencer
	// (inboxd_inbox_*, inboxd_sequencer_*). Nil leaves them unregistered:
	// they are still counted, and nobody reads them.
	Registerer prometheus.Registerer

	// stepHook, set by tests, is called at each named step of a group
	// commit; returning true stops the committer there as if the process
	// died. A hook may also block to hold the committer.
	stepHook func(step commitStep) bool
	// outboxLimits, set by tests, replaces the delivery loop's bounds.
	outboxLimits outboxLimits
}

func (c *Config) setDefaults() error {
	if c.Store == nil {
		return fmt.Errorf("%w: Config.Store is nil", ErrInvalid)
	}
	if c.Node < 0 || c.Node > 1023 {
		return fmt.Errorf("%w: snowflake node %d outside 0–1023", ErrInvalid, c.Node)
	}
	setDefault(&c.MaxGroupSize, wire.DefaultMaxGroupSize)
	setDefault(&c.MaxBodySize, wire.DefaultMaxBody)
	setDefault(&c.MaxBatchRows, 16384)
	setDefault(&c.MaxBatchCommands, 1024)
	setDefault(&c.MaxBatchBytes, 1<<20)
	setDefault(&c.MaxReadBytes, 255<<10)
	setDefault(&c.GroupCacheBytes, 64<<20)
	setDefault(&c.MaxClockWait, 10*time.Second)
	setDefault(&c.RecallWindow, wire.DefaultRecallWindow)
	setDefault(&c.EditWindow, wire.DefaultEditWindow)
	if c.Ownership == nil {
		c.Ownership = cluster.NewLocal(1)
	}
	if _, local := c.Ownership.(*cluster.Local); !local && c.Deliverer == nil {
		return fmt.Errorf("%w: Config.Deliverer is nil and not every shard is served here", ErrInvalid)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Service is the chat service. It is safe for concurrent use.
type Service struct {
	cfg   Config
	store timeline.Store
	// applier is the store when the committer pipelines its batches: a
	// single node's, on a store that can hand a batch over before it is
	// durable. Nil otherwise.
	applier timeline.Applier
	seq     *sequencer.Sequencer
	ids     *idGen
	log     *slog.Logger
	metrics *metrics

	// groups caches committed group state; only the committer touches it.
	groups *groupCache

	// own answers which shards this node serves; local is true when it
	// serves all, always, which skips every per-recipient check.
	own   cluster.Ownership
	local bool
	// out is the committer's state of the streams it writes and applies;
	// sender delivers the outbox (nil when local).
	out    outState
	sender *outbound
	// fresh is, per shard, the epoch under which the committer's cached
	// heads of the shard's keys were loaded (set after it forgot those of
	// an earlier epoch): readers trust a cached head only under it.
	fresh []atomic.Uint64

	// ctx is the committer's context for store calls; Close cancels it when
	// the store does not take the last batches within closeGrace.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.RWMutex // guards closed against sends on cmds
	closed bool
	cmds   chan *command

	deliveries chan committed
	done       chan struct{} // closed when the committer and dispatcher are gone
}

// New starts a Service on cfg.Store. It blocks while this node's clock is
// behind the newest msg id it issued before (at most cfg.MaxClockWait).
func New(ctx context.Context, cfg Config) (*Service, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	ids, err := newIDGen(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg:        cfg,
		store:      cfg.Store,
		ids:        ids,
		log:        cfg.Logger,
		cmds:       make(chan *command, 4096),
		deliveries: make(chan committed, 256),
		done:       make(chan struct{}),
		own:        cfg.Ownership,
		out:        newOutState(),
	}
	_, s.local = cfg.Ownership.(*cluster.Local)
	if ap, ok := cfg.Store.(timeline.Applier); ok && s.local {
		s.applier = ap
	}
	if s.metrics, err = newMetrics(s); err != nil {
		return nil, err
	}
	s.groups = newGroupCache(cfg.GroupCacheBytes, s.metrics.groupCache)
	if s.seq, err = sequencer.New(sequencer.Config{Last: s.lastSeq, Registerer: cfg.Registerer}); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if !s.local {
		s.fresh = make([]atomic.Uint64, s.own.ShardCount())
		s.sender = newOutbound(s)
	}
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		s.dispatch()
	}()
	go func() {
		s.commitLoop()
		close(s.deliveries)
		<-dispatched
		if s.sender != nil {
			s.sender.stop()
		}
		close(s.done)
	}()
	return s, nil
}

func (s *Service) lastSeq(ctx context.Context, k sequencer.Key) (uint64, error) {
	if k.Space == sequencer.Conv {
		return s.store.LastConvSeq(ctx, k.ID)
	}
	return s.store.LastInboxSeq(ctx, k.ID)
}

// Close stops accepting calls, finishes the commands already taken, delivers
// their entries to the Notifier, and returns. It does not close the store.
func (s *Service) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.cmds)
	}
	s.mu.Unlock()
	select {
	case <-s.done:
	case <-time.After(closeGrace):
		// The store is down and would hold Close for the whole outage:
		// fail the batches left instead (their callers may retry).
		s.log.Warn("inbox: store slow to take the last batches; failing them")
		s.cancel()
		<-s.done
	}
	s.cancel()
	return nil
}

// closeGrace is how long Close lets the store take the last batches.
const closeGrace = 10 * time.Second

// command is one call waiting for the committer.
type command struct {
	user uint64 // whom the command acts for: the committer's turns go by it
	// dedup, when its id is set, is the dedup record apply reads first:
	// the committer reads it ahead, with those of the commands after it.
	dedup dedupKey
	// apply runs on the committer goroutine against the batch being built.
	// It validates before it writes anything to tx; an error that is not a
	// storeError fails this command only.
	apply func(tx *txn) error
	done  chan error

	// mu keeps apply and a caller that gives up apart: once the caller has
	// returned, apply must not write the results it captured, so a command
	// abandoned before it ran never runs, and a caller whose command is
	// running waits for apply (not for the commit) before it returns.
	mu        sync.Mutex
	abandoned bool
}

// do hands apply, acting for user, to the committer and waits until its
// batch is durable.
func (s *Service) do(ctx context.Context, user uint64, apply func(tx *txn) error) error {
	return s.doOnce(ctx, user, "", apply)
}

// doOnce is do of a command that first looks up user's dedup record of
// key, unless key is empty.
func (s *Service) doOnce(ctx context.Context, user uint64, key string, apply func(tx *txn) error) error {
	c := &command{user: user, dedup: dedupKey{user, key}, apply: apply, done: make(chan error, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	select {
	case s.cmds <- c:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		// A command the committer has taken may still commit; a retry
		// finds what it wrote.
		c.mu.Lock()
		c.abandoned = true
		c.mu.Unlock()
		return ctx.Err()
	}
}
