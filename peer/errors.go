package peer

import (
	"context"
	"errors"
	"fmt"

	"github.com/inboxd/inboxd/wire"
)

// Errors of Pool.Call. Code maps each to the wire code a caller answers its
// own client with.
var (
	// ErrQueueFull: PoolConfig.MaxInFlight calls to the node are already in
	// flight. The call was not sent. UNAVAILABLE.
	ErrQueueFull = errors.New("peer: too many calls in flight to the node")
	// ErrUnavailable: the node could not be reached (dial or handshake
	// failed, or the pool is waiting out its backoff after such a failure).
	// The call was not sent. UNAVAILABLE.
	ErrUnavailable = errors.New("peer: node unreachable")
	// ErrConnLost: the connection died with the call in flight. The node
	// may or may not have run the request. UNAVAILABLE.
	ErrConnLost = errors.New("peer: connection lost")
	// ErrClosed: the Pool (or the Server) is closed. SHUTTING_DOWN.
	ErrClosed = errors.New("peer: closed")
	// ErrTooLarge: the request does not fit in one frame of the node's
	// max_frame. Not retryable: a caller must split it. INTERNAL.
	ErrTooLarge = errors.New("peer: frame too large for the node")
	// ErrCommand: the command is outside the handlers' range
	// [FirstCommand, 0xFFFF]. A bug of the caller. INTERNAL.
	ErrCommand = errors.New("peer: command outside the handlers' range")
	// ErrAuth: the handshake failed: the other side does not hold the
	// cluster's secret, or does not speak the peer protocol. It reaches a
	// caller wrapped in ErrUnavailable.
	ErrAuth = errors.New("peer: handshake refused")
	// ErrProtocol: the other side sent a frame that breaks the peer
	// protocol; the connection is closed.
	ErrProtocol = errors.New("peer: protocol violation")
)

// Error is an error answered by the node that ran a request, and what a
// Handler returns to answer with a particular code.
type Error struct {
	Code    wire.Code
	Message string // for people, not for branching
}

func (e *Error) Error() string {
	return fmt.Sprintf("peer: %v: %s", e.Code, e.Message)
}

// Code maps an error of Pool.Call to the wire code that a caller answers
// its own client with: UNAVAILABLE for an unreachable or overloaded node or
// a lost connection, the remote node's code for an *Error that answered the
// call, TIMEOUT when ctx's
// deadline passed, SHUTTING_DOWN when the pool is closed, INTERNAL for a
// caller's bug (ErrTooLarge, ErrCommand). Code(nil) is 0.
func Code(err error) wire.Code {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrClosed):
		return wire.CodeShuttingDown
	case errors.Is(err, ErrQueueFull), errors.Is(err, ErrUnavailable), errors.Is(err, ErrConnLost), errors.Is(err, context.Canceled):
		// Before *Error: a node's ERROR frame that closed the connection,
		// or refused the handshake, did not answer this call.
		return wire.CodeUnavailable
	case isError(err):
		e, _ := errors.AsType[*Error](err)
		return e.Code
	case errors.Is(err, context.DeadlineExceeded):
		return wire.CodeTimeout
	}
	return wire.CodeInternal
}

// Retryable reports whether a call that failed with err may succeed if made
// again unchanged: Code(err).Retryable(), except for the caller's own bugs
// (ErrTooLarge, ErrCommand), which no retry cures.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrCommand) {
		return false
	}
	return Code(err).Retryable()
}

// isError reports whether err holds an *Error.
func isError(err error) bool {
	_, ok := errors.AsType[*Error](err)
	return ok
}
