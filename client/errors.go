package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// Error is an error the server reported: the body of an error response, or
// of an ERROR frame sent before the server closed the connection.
//
// errors.Is matches an *Error by Code alone, so the sentinels below (or any
// &Error{Code: c}) test for a code:
//
//	if errors.Is(err, client.ErrNotMember) { … }
type Error struct {
	Code    wire.Code
	Message string // for people, not for branching
	// RetryAfter is how long to wait before sending again (CodeRateLimited
	// and other retryable codes), zero when the server did not say.
	RetryAfter time.Duration
	// Redirect is the address of the node that serves the user
	// (CodeRedirect); the client follows it by itself.
	Redirect string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("inboxd: %s (code %d)", e.Code, e.Code)
	}
	return fmt.Sprintf("inboxd: %s (code %d): %s", e.Code, e.Code, e.Message)
}

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Retryable reports whether the request may succeed if sent again
// unchanged (for a SEND: with the same client msg id).
func (e *Error) Retryable() bool { return e.Code.Retryable() }

func errorFromBody(b *wirepb.Error) *Error {
	return &Error{
		Code:       wire.Code(b.GetCode()),
		Message:    b.GetMessage(),
		RetryAfter: time.Duration(b.GetRetryAfterMs()) * time.Millisecond,
		Redirect:   b.GetRedirect(),
	}
}

// Sentinels for errors.Is, one per code. They match by code only; the error
// a call returns carries the server's message.
var (
	ErrBadRequest      = &Error{Code: wire.CodeBadRequest}
	ErrUnauthenticated = &Error{Code: wire.CodeUnauthenticated}
	ErrTokenExpired    = &Error{Code: wire.CodeTokenExpired}
	ErrForbidden       = &Error{Code: wire.CodeForbidden}
	ErrNotMember       = &Error{Code: wire.CodeNotMember}
	ErrNoGroup         = &Error{Code: wire.CodeNoGroup}
	ErrDismissed       = &Error{Code: wire.CodeDismissed}
	ErrMuted           = &Error{Code: wire.CodeMuted}
	ErrGroupFull       = &Error{Code: wire.CodeGroupFull}
	ErrInvalid         = &Error{Code: wire.CodeInvalid}
	ErrUnknownCommand  = &Error{Code: wire.CodeUnknownCommand}
	ErrFrameTooLarge   = &Error{Code: wire.CodeFrameTooLarge}
	ErrRateLimited     = &Error{Code: wire.CodeRateLimited}
	ErrUnavailable     = &Error{Code: wire.CodeUnavailable}
	ErrTimeout         = &Error{Code: wire.CodeTimeout}
	ErrSlowReader      = &Error{Code: wire.CodeSlowReader}
	ErrReplaced        = &Error{Code: wire.CodeReplaced}
	ErrShuttingDown    = &Error{Code: wire.CodeShuttingDown}
	ErrVersion         = &Error{Code: wire.CodeVersion}
	ErrInternal        = &Error{Code: wire.CodeInternal}
	ErrIdle            = &Error{Code: wire.CodeIdle}
	ErrRedirect        = &Error{Code: wire.CodeRedirect}
	ErrBanned          = &Error{Code: wire.CodeBanned}
	ErrRevoked         = &Error{Code: wire.CodeRevoked}
	ErrBlocked         = &Error{Code: wire.CodeBlocked}
	ErrTooLate         = &Error{Code: wire.CodeTooLate}
)

// Errors of the client itself.
var (
	// ErrClosed is returned by calls on a closed Client.
	ErrClosed = errors.New("client: closed")
	// ErrConnLost wraps the cause when the connection ended before a
	// response arrived: the request may or may not have been applied.
	ErrConnLost = errors.New("client: connection lost")
	// ErrProtocol reports a server that broke the protocol (a gap inside a
	// SYNC page, a response to another command); the client reconnects.
	ErrProtocol = errors.New("client: protocol violation")
	// ErrSeqAhead reports a LastSeq beyond the server's head: the server
	// lost data or is another server. The client stops; the application
	// must decide what its local state is worth.
	ErrSeqAhead = errors.New("client: last seq ahead of the server's head")
	// ErrTooManyRedirects reports nodes that sent the client on more than
	// Config.MaxRedirects times in a row: their views of who serves the
	// user disagree. A running client backs off and tries again; Dial
	// returns it.
	ErrTooManyRedirects = errors.New("client: too many redirects")
)

// retryable reports whether a failed request may be sent again: the server
// said so, or the connection dropped before the answer (a SEND is then
// resent with its client msg id, and the server's dedup returns the first
// result if it had been stored).
func retryable(err error) bool {
	if errors.Is(err, ErrConnLost) {
		return true
	}
	var e *Error
	return errors.As(err, &e) && e.Retryable()
}

// permanent reports whether reconnecting cannot help: the server said
// this device has no business here (any more), or speaks another protocol.
func permanent(err error, canRenewToken bool) bool {
	var e *Error
	if errors.As(err, &e) {
		switch e.Code {
		case wire.CodeReplaced, wire.CodeVersion, wire.CodeBanned:
			return true
		case wire.CodeUnauthenticated, wire.CodeTokenExpired, wire.CodeRevoked:
			return !canRenewToken
		}
	}
	return errors.Is(err, ErrSeqAhead)
}
