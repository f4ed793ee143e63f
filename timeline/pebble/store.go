package pebble

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/inboxd/inboxd/timeline"
)

// ErrLocked is wrapped by the error of Open when another process, or another
// Store of this process, holds the data directory.
var ErrLocked = errors.New("timeline/pebble: data directory locked")

// ErrUnknownFormat is wrapped by the error of Open when the data directory
// holds a store of a format version this build does not know, or data that
// is not an inboxd store at all.
var ErrUnknownFormat = errors.New("timeline/pebble: unknown store format")

// formatVersion is the version of the key layout and value encoding described
// in the package doc, stored under the 'v' key. Version 1 had no activity
// index and no DND flag on member records; version 2 keyed activity index
// entries by their exact time, with no value. Open upgrades both
// (upgrade.go).
const formatVersion = 3

// pebbleFormat pins Pebble's on-disk format, so that upgrading the Pebble
// module does not silently ratchet a data directory to a format that the
// previous inboxd release cannot open. Raise it deliberately.
const pebbleFormat = pebble.FormatValueSeparation

const defaultCacheSize = 64 << 20

// Options configures Open.
type Options struct {
	Dir       string       // data directory, created if missing (0700; its files 0600 on the OS filesystem)
	FS        vfs.FS       // nil: the OS filesystem; tests pass vfs.NewMem() or vfs.NewCrashableMem()
	CacheSize int64        // block cache bytes; 0: 64 MiB
	NoSync    bool         // only for tests and benchmarks that say so: Commit without fsync
	Logger    *slog.Logger // nil: discard; Pebble's own messages go to it at Warn level or quieter
}

// Store is a timeline.Store in a Pebble database. It is safe for concurrent
// use; Close waits for the calls in progress.
type Store struct {
	// mu is held shared by every call and exclusively by Close, so that Close
	// never pulls the database out from under a call in progress.
	mu     sync.RWMutex
	closed bool
	db     *pebble.DB
	lock   *pebble.Lock
	sync   *pebble.WriteOptions
	// syncs counts the batches of Apply whose sync nobody has waited for.
	syncs sync.WaitGroup
	// failed holds the first failed sync. Pebble keeps that batch, and the
	// ones after it, in its memtable, readable, though a restart takes them
	// back: from then on the store refuses every call until it is reopened,
	// so that nobody shows what is not durable or builds on it.
	failed atomic.Pointer[error]
	// orders holds fill's *[]sortKey scratch, which grows to the rows of
	// the largest batch: one allocation per Apply fewer.
	orders sync.Pool
}

var _ timeline.Store = (*Store)(nil)

// Open opens the store in opts.Dir, creating it if needed.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("timeline/pebble: open: no data directory")
	}
	fsys := opts.FS
	if fsys == nil {
		fsys = privateFS{vfs.Default}
	}
	if err := fsys.MkdirAll(opts.Dir, dirMode); err != nil {
		return nil, fmt.Errorf("timeline/pebble: open: %w", err)
	}
	// Taking the lock ourselves, rather than letting pebble.Open do it, tells
	// a held lock apart from every other reason Open can fail.
	lock, err := pebble.LockDirectory(opts.Dir, fsys)
	if err != nil {
		if lockHeld(err) {
			return nil, fmt.Errorf("%w: %q is in use by another inboxd process: %w", ErrLocked, opts.Dir, err)
		}
		return nil, fmt.Errorf("timeline/pebble: open: lock %q: %w", opts.Dir, err)
	}
	db, err := pebble.Open(opts.Dir, pebbleOptions(opts, fsys, lock))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("timeline/pebble: open %q: %w", opts.Dir, err), lock.Close())
	}
	s := &Store{db: db, lock: lock, sync: pebble.Sync}
	if opts.NoSync {
		s.sync = pebble.NoSync
	}
	if err := s.checkFormat(opts.Dir); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

func pebbleOptions(opts Options, fsys vfs.FS, lock *pebble.Lock) *pebble.Options {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	po := &pebble.Options{
		FS:                 fsys,
		Lock:               lock,
		CacheSize:          opts.CacheSize,
		FormatMajorVersion: pebbleFormat,
		Logger:             pebbleLogger{logger.With("component", "pebble")},
		// Fan-out writes inbox rows of many users at once, so every flush
		// overlaps most of the tree. Pebble's default 4 MiB memtable flushes
		// every few group commits and leaves compactions a third of the
		// throughput; 64 MiB ones, four of which may queue before writes
		// stall, absorb bursts and more than double sustained rows/s.
		// (Memtables start small and grow, so an idle store stays small.)
		MemTableSize:                64 << 20,
		MemTableStopWritesThreshold: 4,
	}
	if po.CacheSize <= 0 {
		po.CacheSize = defaultCacheSize
	}
	// Every send looks up a dedup record that usually does not exist; a
	// filter answers that without reading a block.
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	return po
}

// lockHeld reports whether err, from pebble.LockDirectory, means that the lock
// is taken: by another process (fcntl's EAGAIN or EACCES) or by this one
// (Pebble's own check, which has no sentinel to match).
func lockHeld(err error) bool {
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		return false // the lock file could not even be created
	}
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) ||
		strings.Contains(err.Error(), "lock held by current process")
}

// checkFormat writes the format version into a new store and refuses a store
// of another version.
func (s *Store) checkFormat(dir string) error {
	val, closer, err := s.db.Get([]byte{prefixVersion})
	if errors.Is(err, pebble.ErrNotFound) {
		return s.initFormat(dir)
	}
	if err != nil {
		return fmt.Errorf("timeline/pebble: open %q: read format version: %w", dir, err)
	}
	defer closer.Close()
	var v uint64
	if err := decodeUint64Value(val, &v); err != nil {
		return fmt.Errorf("%w: %q: format version: %w", ErrUnknownFormat, dir, err)
	}
	if v == 1 || v == 2 {
		return s.upgrade(dir, v)
	}
	if v != formatVersion {
		return fmt.Errorf("%w: %q holds format version %d, this inboxd reads version %d", ErrUnknownFormat, dir, v, formatVersion)
	}
	return nil
}

func (s *Store) initFormat(dir string) error {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return fmt.Errorf("timeline/pebble: open %q: %w", dir, err)
	}
	empty := !it.First()
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("timeline/pebble: open %q: %w", dir, err)
	}
	if !empty {
		return fmt.Errorf("%w: %q holds a Pebble database without an inboxd format version", ErrUnknownFormat, dir)
	}
	if err := s.db.Set([]byte{prefixVersion}, appendUint64Value(nil, formatVersion), pebble.Sync); err != nil {
		return fmt.Errorf("timeline/pebble: open %q: write format version: %w", dir, err)
	}
	return nil
}

// Close closes the store after the calls in progress have returned. Calls
// after Close, Close included, return an error wrapping timeline.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return closedError("close")
	}
	s.closed = true
	s.syncs.Wait()
	if err := errors.Join(s.db.Close(), s.lock.Close()); err != nil {
		return fmt.Errorf("timeline/pebble: close: %w", err)
	}
	return nil
}

// enter admits a call unless the store is closed or a sync failed; the caller must call
// s.mu.RUnlock when enter returns nil.
func (s *Store) enter(op string) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return closedError(op)
	}
	if err := s.failed.Load(); err != nil {
		s.mu.RUnlock()
		return fmt.Errorf("timeline/pebble: %s: refused since a sync failed (reopen the store): %w", op, *err)
	}
	return nil
}

func closedError(op string) error {
	return fmt.Errorf("timeline/pebble: %s: %w", op, timeline.ErrClosed)
}

// pebbleLogger routes Pebble's log to slog, one level quieter than Pebble
// means it: its Infof is routine, its Errorf (background errors, slow disks)
// is worth a warning that inboxd's own errors do not drown.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.log(slog.LevelDebug, format, args)
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.log(slog.LevelWarn, format, args)
}

// Fatalf is called for corruption Pebble cannot go on from, and must not
// return.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg)
	panic("timeline/pebble: fatal: " + msg)
}

func (p pebbleLogger) log(level slog.Level, format string, args []any) {
	if p.l.Enabled(context.Background(), level) {
		p.l.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}
