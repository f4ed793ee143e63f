package inbox

import (
	"context"
	"fmt"
	"time"
)

// DrainTimeout bounds Drain when its context has no deadline: a batch
// holds at most one store commit, well under it.
const DrainTimeout = time.Second

// Drain waits until no batch that may write for shard is in flight, for
// cluster.Config.Drain: the node's Ownership already answers that it does
// not serve shard, so every command for the shard that the committer takes
// from now on fails with ErrNotOwner (retryable: the client is redirected,
// a forward looks the owner up again), and Drain waits for the batch being
// built or committed to be done — it sends the committer a command of its
// own and waits for its answer, which comes after every batch before it.
// Commands for shard that wait in the queue meanwhile are refused, not
// committed. An error (the context ended, the batch failed and may have
// landed, the service closed) means the shard may not be handed over yet.
func (s *Service) Drain(ctx context.Context, shard int) error {
	if _, ok := s.own.Serving(shard); ok {
		return fmt.Errorf("inbox: drain shard %d: %w: still served here", shard, ErrInvalid)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DrainTimeout)
		defer cancel()
	}
	if err := s.do(ctx, 0, func(*txn) error { return nil }); err != nil {
		return fmt.Errorf("inbox: drain shard %d: %w", shard, err)
	}
	return nil
}
