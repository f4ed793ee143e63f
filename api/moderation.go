package api

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// Moderation holds the bans and token revocations the API sets: durable in
// the store's restrictions (so they hold across restarts), and cached in
// memory, where the gateway asks it at every AUTH and SEND (it is a
// gateway.Gate).
type Moderation struct {
	store timeline.Restrictions

	write sync.Mutex // serializes read-modify-writes of a record

	mu    sync.RWMutex
	cache map[restrictionKey]timeline.Restriction
}

type restrictionKey struct {
	user   uint64
	device string
}

// LoadModeration reads every restriction from store.
func LoadModeration(ctx context.Context, store timeline.Restrictions) (*Moderation, error) {
	all, err := store.AllRestrictions(ctx)
	if err != nil {
		return nil, fmt.Errorf("api: load restrictions: %w", err)
	}
	m := &Moderation{store: store, cache: make(map[restrictionKey]timeline.Restriction, len(all))}
	for _, r := range all {
		m.cache[restrictionKey{r.User, r.Device}] = r
	}
	return m, nil
}

func (m *Moderation) get(user uint64, device string) timeline.Restriction {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r, ok := m.cache[restrictionKey{user, device}]
	if !ok {
		r = timeline.Restriction{User: user, Device: device}
	}
	return r
}

// Banned reports whether user is banned.
func (m *Moderation) Banned(user uint64) bool { return m.get(user, "").Banned }

// Admit refuses a banned user (wire.CodeBanned), and a token issued before
// the revocation of the user's devices or of this device, or without an
// issue time once there is one (wire.CodeRevoked).
func (m *Moderation) Admit(user uint64, device string, issued time.Time) wire.Code {
	all := m.get(user, "")
	if all.Banned {
		return wire.CodeBanned
	}
	one := m.get(user, device)
	for _, before := range []time.Time{all.RevokedBefore, one.RevokedBefore} {
		if !before.IsZero() && issued.Before(before) {
			return wire.CodeRevoked
		}
	}
	return 0
}

// Sync re-reads every restriction from the store, for the changes other
// nodes' APIs made, and returns the users whose records changed here. It
// holds the write lock, so that a change made here meanwhile is not
// replaced by an older read.
func (m *Moderation) Sync(ctx context.Context) ([]uint64, error) {
	m.write.Lock()
	defer m.write.Unlock()
	all, err := m.store.AllRestrictions(ctx)
	if err != nil {
		return nil, fmt.Errorf("api: re-read restrictions: %w", err)
	}
	cache := make(map[restrictionKey]timeline.Restriction, len(all))
	var changed []uint64
	m.mu.RLock()
	for _, r := range all {
		k := restrictionKey{r.User, r.Device}
		cache[k] = r
		if old, ok := m.cache[k]; (!ok || !sameRestriction(old, r)) && !slices.Contains(changed, r.User) {
			changed = append(changed, r.User)
		}
	}
	m.mu.RUnlock()
	m.mu.Lock()
	m.cache = cache
	m.mu.Unlock()
	return changed, nil
}

func sameRestriction(a, b timeline.Restriction) bool {
	return a.Banned == b.Banned && a.RevokedBefore.Equal(b.RevokedBefore)
}

// update changes the record of user's device by fn, durably, then in the
// cache: once it returns, every AUTH sees the change.
func (m *Moderation) update(ctx context.Context, user uint64, device string, fn func(r *timeline.Restriction)) (timeline.Restriction, error) {
	m.write.Lock()
	defer m.write.Unlock()
	r := m.get(user, device)
	fn(&r)
	if err := m.store.PutRestriction(ctx, r); err != nil {
		return r, fmt.Errorf("api: store restriction of %d: %w", user, err)
	}
	m.mu.Lock()
	m.cache[restrictionKey{user, device}] = r
	m.mu.Unlock()
	return r, nil
}

// SetBanned bans or unbans user.
func (m *Moderation) SetBanned(ctx context.Context, user uint64, banned bool) error {
	_, err := m.update(ctx, user, "", func(r *timeline.Restriction) { r.Banned = banned })
	return err
}

// Revoke refuses the tokens of user's device (every device when device is
// empty) issued before the second after now, and returns that second: a
// token's iat has second precision, so a token issued in the second of
// the revocation may be the old one. A later revocation of the same device
// may only move the time forward.
func (m *Moderation) Revoke(ctx context.Context, user uint64, device string, now time.Time) (time.Time, error) {
	before := now.Truncate(time.Second).Add(time.Second)
	r, err := m.update(ctx, user, device, func(r *timeline.Restriction) {
		if before.After(r.RevokedBefore) {
			r.RevokedBefore = before
		}
	})
	return r.RevokedBefore, err
}
