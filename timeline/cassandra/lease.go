package cassandra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gocql/gocql"
)

// ErrLeaseHeld is wrapped by the error of Open when another store holds the
// keyspace's writer lease. The error names the holder and when the lease
// expires unless renewed.
var ErrLeaseHeld = errors.New("timeline/cassandra: writer lease held by another store")

// ErrLeaseLost is wrapped by the error of every Commit, and of a read that
// would first have to finish an interrupted commit, once another store has
// taken the writer lease. Nothing cures it but opening a new store.
var ErrLeaseLost = errors.New("timeline/cassandra: writer lease lost")

// errLeaseExpired means the lease was not renewed in time, so this store may
// no longer write, though nobody else is known to have taken the lease: a
// transient error, retried until a renewal gets through.
var errLeaseExpired = errors.New("writer lease not renewed in time")

// leaseName is the key of the one lease row of a keyspace.
const leaseName = "writer"

// lease is the keyspace's writer lease, and the source of the write
// timestamps it entitles its holder to.
//
// The row holds the owner, which expires with the lease's TTL, and two
// values that outlive it: the epoch, raised by every new holder, and
// ts_limit, above every write timestamp the holder uses. A new holder's
// timestamps start above ts_limit, so its writes supersede the previous
// holder's whatever their clocks say; and a holder whose owner cell expired
// while the cluster was out of reach takes the lease back only if the epoch
// shows that nobody held it in between.
type lease struct {
	session *gocql.Session
	q       *queries
	ks      string
	owner   string
	ttl     time.Duration
	serial  gocql.Consistency
	log     *slog.Logger

	mu    sync.Mutex
	epoch int64     // 0 until taken
	valid time.Time // this store may write until then, unless renewed
	limit int64     // write timestamps stay below it (Unix µs)
	last  int64     // the newest write timestamp handed out
	lost  error     // wraps ErrLeaseLost once another store took the lease
}

func newLease(session *gocql.Session, q *queries, cfg Config, log *slog.Logger) *lease {
	return &lease{session: session, q: q, ks: cfg.Keyspace, owner: cfg.Owner, ttl: cfg.LeaseTTL,
		serial: gocql.Consistency(serialConsistency(cfg.Consistency)), log: log}
}

// leaseRow is the lease row as read.
type leaseRow struct {
	owner string // "" once expired or released
	epoch int64  // 0 if never taken
	limit int64
	ttl   time.Duration // left of the owner's lease
}

// read reads the lease row at serial consistency, which sees every
// conditional write that completed.
func (l *lease) read(ctx context.Context) (leaseRow, error) {
	var owner *string
	var epoch, limit *int64
	var ttl *int
	err := l.session.Query(l.q.readLease, leaseName).WithContext(ctx).
		Consistency(l.serial).Scan(&owner, &epoch, &limit, &ttl)
	var r leaseRow
	if errors.Is(err, gocql.ErrNotFound) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("read writer lease: %w", err)
	}
	if owner != nil {
		r.owner = *owner
	}
	if epoch != nil {
		r.epoch = *epoch
	}
	if limit != nil {
		r.limit = *limit
	}
	if ttl != nil {
		r.ttl = time.Duration(*ttl) * time.Second
	}
	return r, nil
}

func (l *lease) heldError(r leaseRow) error {
	return fmt.Errorf("%w: keyspace %q is held by %q until %s (%v from now) unless renewed",
		ErrLeaseHeld, l.ks, r.owner, time.Now().Add(r.ttl).UTC().Format(time.RFC3339), r.ttl)
}

// cas sets the owner (with the TTL), the epoch and ts_limit if the row holds
// owner and epoch (nil: null), and reports whether it did.
func (l *lease) cas(ctx context.Context, owner, epoch any, newEpoch, limit int64) (bool, error) {
	b := l.session.NewBatch(gocql.LoggedBatch).WithContext(ctx)
	b.Entries = []gocql.BatchEntry{
		{Stmt: l.q.takeLease, Args: []any{int(l.ttl / time.Second), l.owner, leaseName, owner, epoch}},
		{Stmt: l.q.extendLease, Args: []any{newEpoch, limit, leaseName}},
	}
	// A conditional write that timed out may have landed: the callers read
	// the row to find out rather than let the driver repeat it.
	b.RetryPolicy(nil)
	applied, iter, err := l.session.MapExecuteBatchCAS(b, make(map[string]any))
	if err == nil {
		err = iter.Close()
	}
	return applied, err
}

// acquire takes the lease, or fails with ErrLeaseHeld.
func (l *lease) acquire(ctx context.Context) error {
	prev, err := l.read(ctx)
	if err != nil {
		return err
	}
	if prev.owner == l.owner {
		// An earlier attempt timed out but took the lease: it set ts_limit
		// a TTL above the previous holder's.
		return l.took(prev.epoch, prev.limit, prev.limit-l.ttl.Microseconds(), time.Now().Add(prev.ttl-l.ttl/4))
	}
	if prev.owner != "" {
		return l.heldError(prev)
	}
	var prevEpoch any // null for a lease never taken
	if prev.epoch != 0 {
		prevEpoch = prev.epoch
	}
	epoch := prev.epoch + 1
	sent := time.Now()
	limit := max(sent.UnixMicro(), prev.limit) + l.ttl.Microseconds()
	applied, err := l.cas(ctx, nil, prevEpoch, epoch, limit)
	if err != nil || !applied {
		// Another store won a race, or the outcome is unknown: the row
		// tells.
		now, rerr := l.read(ctx)
		switch {
		case rerr != nil:
			return errors.Join(err, rerr)
		case now.owner == l.owner && now.epoch == epoch:
		case now.owner != "":
			return l.heldError(now)
		case err != nil:
			return fmt.Errorf("take writer lease: %w", err)
		default:
			return fmt.Errorf("take writer lease: the lease changed while it was taken; try again")
		}
	}
	return l.took(epoch, limit, prev.limit, sent.Add(l.validFor()))
}

// took records the lease taken at epoch, valid until valid, with timestamps
// to stay above floor and below limit.
func (l *lease) took(epoch, limit, floor int64, valid time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.epoch, l.limit, l.valid = epoch, limit, valid
	l.last = max(l.last, floor)
	l.log.Info("timeline/cassandra: took the writer lease", "keyspace", l.ks, "owner", l.owner, "epoch", epoch)
	return nil
}

// validFor is how long after sending a successful renewal the store may
// write: three quarters of the TTL, so that it stops well before the lease
// can expire, with its last requests (at most Config.Timeout, a quarter of
// the TTL) done by then.
func (l *lease) validFor() time.Duration { return l.ttl * 3 / 4 }

// keep renews the lease every quarter TTL, and every second while renewals
// fail, until ctx is done or the lease is lost.
func (l *lease) keep(ctx context.Context) {
	t := time.NewTimer(l.ttl / 4)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wait := l.ttl / 4
		err := l.renew(ctx)
		switch {
		case errors.Is(err, ErrLeaseLost):
			l.log.Error("timeline/cassandra: commits stop", "err", err)
			return
		case err != nil && ctx.Err() == nil:
			// Once per outage: the retries of commits say the rest.
			if failures == 0 {
				l.log.Warn("timeline/cassandra: writer lease not renewed; retrying every second", "err", err)
			}
			failures++
			wait = min(wait, time.Second)
		case err == nil && failures > 0:
			l.log.Info("timeline/cassandra: writer lease renewed", "failed_attempts", failures)
			failures = 0
		}
		t.Reset(wait)
	}
}

// renew extends the lease. A lease that expired while the cluster was out of
// reach is taken back if nobody held it since; one that another store took is
// lost for good.
func (l *lease) renew(ctx context.Context) error {
	l.mu.Lock()
	epoch, last := l.epoch, l.last
	l.mu.Unlock()
	sent := time.Now()
	limit := max(sent.UnixMicro(), last) + l.ttl.Microseconds()
	applied, err := l.cas(ctx, l.owner, epoch, epoch, limit)
	if err != nil {
		return err
	}
	if !applied {
		cur, err := l.read(ctx)
		if err != nil {
			return err
		}
		if cur.owner != "" || cur.epoch != epoch {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.lost = fmt.Errorf("%w: keyspace %q was taken by %q (epoch %d, this store had epoch %d)",
				ErrLeaseLost, l.ks, cur.owner, cur.epoch, epoch)
			return l.lost
		}
		if applied, err = l.cas(ctx, nil, epoch, epoch, limit); err != nil {
			return err
		}
		if !applied {
			return errors.New("the writer lease changed while it was taken back")
		}
		l.log.Warn("timeline/cassandra: took the expired writer lease back", "keyspace", l.ks, "epoch", epoch)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.limit, l.valid = max(l.limit, limit), sent.Add(l.validFor())
	return nil
}

// release gives the lease up, lowering ts_limit to the timestamps used, so
// that the next holder can start right away. It writes nothing if the lease
// was lost.
func (l *lease) release(ctx context.Context) error {
	l.mu.Lock()
	epoch, last, lost := l.epoch, l.last, l.lost
	l.valid = time.Time{}
	l.mu.Unlock()
	if lost != nil || epoch == 0 {
		return nil
	}
	b := l.session.NewBatch(gocql.LoggedBatch).WithContext(ctx)
	b.Entries = []gocql.BatchEntry{
		{Stmt: l.q.dropLease, Args: []any{leaseName, l.owner, epoch}},
		{Stmt: l.q.extendLease, Args: []any{epoch, last + 1, leaseName}},
	}
	b.RetryPolicy(nil)
	_, iter, err := l.session.MapExecuteBatchCAS(b, make(map[string]any))
	if err == nil {
		err = iter.Close()
	}
	if err != nil {
		return fmt.Errorf("release writer lease: %w", err)
	}
	return nil
}

// check reports whether this store may write now.
func (l *lease) check() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.checkLocked()
}

func (l *lease) checkLocked() error {
	if l.lost != nil {
		return l.lost
	}
	if !time.Now().Before(l.valid) {
		return errLeaseExpired
	}
	return nil
}

// timestamp returns a write timestamp (Unix µs) above every one handed out
// before, by this store or an earlier holder.
func (l *lease) timestamp() (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.checkLocked(); err != nil {
		return 0, err
	}
	t := max(time.Now().UnixMicro(), l.last+1)
	if t >= l.limit {
		return 0, errLeaseExpired
	}
	l.last = t
	return t, nil
}
