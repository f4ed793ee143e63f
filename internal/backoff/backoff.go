// Package backoff computes the waits of inboxd's retry loops (client
// reconnections and retries, storage write retries, webhook deliveries,
// bench devices): exponential, capped, and jittered the same way everywhere.
//
// It is internal (README, "Layout"): the client side of the public API line
// uses it, but no user outside the module imports it.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is an exponential backoff: Min doubled per attempt, capped at Max.
type Policy struct {
	Min, Max time.Duration
}

// Delay returns the wait before retry n (0 for the first retry): Min doubled
// n times, capped at Max, then jittered down by up to half (a wait between
// d/2 and d), so that clients cut off together do not come back together.
// Safe for concurrent use.
func (p Policy) Delay(n int) time.Duration {
	return p.delay(n, rand.Int64N)
}

func (p Policy) delay(n int, randN func(int64) int64) time.Duration {
	d := max(p.Max, p.Min)
	if n >= 0 && n < 62 && p.Min<<n > 0 && p.Min<<n < d {
		d = p.Min << n
	}
	if d <= 0 {
		return 0
	}
	half := d / 2
	return half + time.Duration(randN(int64(d-half)+1))
}

// Sleep waits for d and reports whether ctx is still live afterwards; it
// returns false as soon as ctx is done.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return ctx.Err() == nil
	case <-ctx.Done():
		return false
	}
}
