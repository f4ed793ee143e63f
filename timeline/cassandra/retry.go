package cassandra

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/gocql/gocql"

	"github.com/inboxd/inboxd/internal/backoff"
)

// retry runs op until it succeeds, fails with an error that retrying cannot
// cure, or ctx is done. Every write of the store is idempotent (an upsert or
// delete by primary key at the batch's own timestamp), so repeating one that
// may have landed changes nothing. The driver's retry policy has retried each
// attempt already; this loop outlasts an outage.
// Each attempt is bounded by the driver's timeout.
func (s *Store) retry(ctx context.Context, what string, op func() error) error {
	wait := backoff.Policy{Min: 50 * time.Millisecond, Max: 2 * time.Second}
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil || !transient(err) {
			return err
		}
		// The first failure, then every 20th: a retry that never ends must
		// show which error it keeps meeting.
		if attempt%20 == 1 {
			s.log.Warn("timeline/cassandra: retrying", "op", what, "attempt", attempt, "err", err)
		}
		if !backoff.Sleep(ctx, wait.Delay(attempt-1)) {
			return fmt.Errorf("%w (last error: %w)", context.Cause(ctx), err)
		}
	}
}

// transient reports whether err may go away when the request is repeated:
// timeouts, unavailable replicas, lost connections, and a writer lease that
// could not be renewed yet. Syntax, schema and authorization errors do not.
func transient(err error) bool {
	if errors.Is(err, errLeaseExpired) {
		return true
	}
	var re gocql.RequestError
	if errors.As(err, &re) {
		switch re.Code() {
		case gocql.ErrCodeUnavailable, gocql.ErrCodeOverloaded, gocql.ErrCodeBootstrapping,
			gocql.ErrCodeWriteTimeout, gocql.ErrCodeReadTimeout, gocql.ErrCodeWriteFailure,
			gocql.ErrCodeReadFailure, gocql.ErrCodeCASWriteUnknown, gocql.ErrCodeServer:
			return true
		}
		return false
	}
	for _, e := range []error{gocql.ErrTimeoutNoResponse, gocql.ErrNoConnections, gocql.ErrConnectionClosed,
		gocql.ErrTooManyTimeouts, gocql.ErrNoStreams, gocql.ErrUnavailable, io.EOF, io.ErrUnexpectedEOF,
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// pool is the bounded set of goroutines that run partition writes, shared by
// all commits so that Writers bounds the writes in flight.
type pool struct {
	work chan func()
	done sync.WaitGroup
}

func newPool(n int) *pool {
	p := &pool{work: make(chan func())}
	for range n {
		p.done.Go(func() {
			for f := range p.work {
				f()
			}
		})
	}
	return p
}

// do runs f on a writer, waiting for one to be free.
func (p *pool) do(f func()) { p.work <- f }

// close stops the writers after the work handed to them.
func (p *pool) close() {
	close(p.work)
	p.done.Wait()
}
