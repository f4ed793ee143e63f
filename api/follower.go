package api

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// SyncInterval is how often a Follower re-reads the restrictions by
// default: a node that missed a change's announcement (a peer link down, a
// node busy past the announcement's deadline) enforces it within this
// long.
const SyncInterval = time.Second

// Rechecker closes the connections of a user that the Gate refuses now;
// *gateway.Server has it.
type Rechecker interface {
	Recheck(user uint64) int
}

// Announcer tells the other nodes of a cluster at once that the
// restrictions changed, so that their Followers Sync; *relay.Relay has it.
type Announcer interface {
	AnnounceRestrictions(ctx context.Context) error
}

// FollowerConfig configures a Follower.
type FollowerConfig struct {
	Moderation *Moderation
	Sessions   Rechecker
	// Interval between two re-reads of the store (default SyncInterval).
	Interval time.Duration
	Logger   *slog.Logger
}

// Follower keeps a cluster node's Moderation in step with the bans and
// revocations the other nodes' APIs write: it re-reads them when a node
// announces a change (relay.CmdRestrictions) and every Interval, and
// closes the connections here that a change refuses.
type Follower struct {
	cfg FollowerConfig
}

// NewFollower returns a Follower; Run starts its re-reads.
func NewFollower(cfg FollowerConfig) (*Follower, error) {
	if cfg.Moderation == nil || cfg.Sessions == nil {
		return nil, errors.New("api: FollowerConfig needs Moderation and Sessions")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = SyncInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Follower{cfg: cfg}, nil
}

// Sync re-reads the restrictions now, and closes the connections of each
// user whose record changed that the Gate refuses now.
func (f *Follower) Sync(ctx context.Context) error {
	changed, err := f.cfg.Moderation.Sync(ctx)
	if err != nil {
		return err
	}
	for _, user := range changed {
		if n := f.cfg.Sessions.Recheck(user); n > 0 {
			f.cfg.Logger.Info("api: connections closed by a restriction set on another node", "user", user, "disconnected", n)
		}
	}
	return nil
}

// Run calls Sync every Interval until ctx ends. A failed re-read is logged
// and tried again at the next tick; the restrictions last read stay.
func (f *Follower) Run(ctx context.Context) {
	tick := time.NewTicker(f.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := f.Sync(ctx); err != nil && ctx.Err() == nil {
			f.cfg.Logger.Warn("api: re-read of the restrictions failed", "err", err)
		}
	}
}
