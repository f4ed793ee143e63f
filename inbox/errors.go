package inbox

import (
	"errors"
	"fmt"
)

// Errors a caller branches on. Each is returned wrapped with its context;
// test with errors.Is.
var (
	ErrInvalid     = errors.New("inbox: invalid argument")
	ErrNoGroup     = errors.New("inbox: no such group")
	ErrDismissed   = errors.New("inbox: group dismissed")
	ErrNotMember   = errors.New("inbox: not a member")
	ErrForbidden   = errors.New("inbox: not allowed")
	ErrMuted       = errors.New("inbox: muted")
	ErrGroupFull   = errors.New("inbox: group full")
	ErrBlocked     = errors.New("inbox: blocked by the recipient") // of a direct message: the recipient blocks its sender
	ErrUnavailable = errors.New("inbox: store unavailable")
	ErrClosed      = errors.New("inbox: service closed")
	// ErrTooLate: the sender's window to recall or edit the message passed
	// (Config.RecallWindow, Config.EditWindow).
	ErrTooLate = errors.New("inbox: too late")
	// ErrNotOwner: this node does not serve the shard of the conversation
	// or user the command is for (docs/cluster.md). It wraps
	// ErrUnavailable, so a client retries; a node forwards it to the
	// shard's owner.
	ErrNotOwner = fmt.Errorf("inbox: shard not served by this node: %w", ErrUnavailable)
	// ErrAlreadyMember: an invite of users who are all members already.
	// It wraps ErrInvalid, the protocol's answer; the server API answers
	// it as done, so that a retried invite succeeds.
	ErrAlreadyMember = fmt.Errorf("inbox: already members: %w", ErrInvalid)
	// ErrNoSuchMember: an owner or admin acts on a user who is not a
	// member. It wraps ErrNotMember, the protocol's answer; the server API
	// answers a kick of a non-member as done, so that a retried kick
	// succeeds.
	ErrNoSuchMember = fmt.Errorf("inbox: the user is not a member: %w", ErrNotMember)
)

// storeError marks an apply error that came from the store rather than from
// the command: it fails the whole batch, since the overlay may be half built.
type storeError struct{ err error }

func (e storeError) Error() string { return e.err.Error() }
func (e storeError) Unwrap() error { return e.err }

func storeErr(op string, err error) error {
	return storeError{fmt.Errorf("inbox: %s: %w", op, err)}
}
