package timeline

import (
	"context"
	"time"
)

// Restriction is a user's standing set through the server API: a ban, and
// the time before which the user's tokens are refused. Device "" holds the
// ban and the revocation of every device; a named device holds that
// device's own revocation (Banned is false there).
type Restriction struct {
	User   uint64
	Device string
	Banned bool
	// RevokedBefore refuses tokens issued (token iat) before it, at second
	// precision; the zero time revokes nothing.
	RevokedBefore time.Time
}

// Restrictions is the store's small key space of restrictions. Both
// backends implement it beside Store; there are few records (a user's ban,
// a device's revocation), and a server reads them all when it starts.
type Restrictions interface {
	// PutRestriction writes r durably, replacing the record of the same
	// user and device.
	PutRestriction(ctx context.Context, r Restriction) error
	// AllRestrictions returns every record, in no particular order.
	AllRestrictions(ctx context.Context) ([]Restriction, error)
}
