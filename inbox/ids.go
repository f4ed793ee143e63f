package inbox

import (
	"context"
	"fmt"
	"time"

	"github.com/bwmarrin/snowflake"
)

// idGen issues snowflake msg ids. snowflake cannot go backwards while the
// process runs, but a restarted node whose clock was set back could reissue
// ids: newIDGen waits until the clock passes the last id this node stored.
type idGen struct {
	node *snowflake.Node
}

func newIDGen(ctx context.Context, cfg Config) (*idGen, error) {
	last, err := cfg.Store.Clock(ctx, cfg.Node)
	if err != nil {
		return nil, fmt.Errorf("inbox: read clock of node %d: %w", cfg.Node, err)
	}
	lastTime := time.UnixMilli(snowflake.ID(last).Time())
	if behind := lastTime.Sub(cfg.Now()); behind >= 0 && last != 0 {
		if behind > cfg.MaxClockWait {
			return nil, fmt.Errorf("inbox: clock is %v behind the last msg id of node %d; refusing to reissue ids", behind, cfg.Node)
		}
		cfg.Logger.Warn("inbox: clock behind the last issued msg id; waiting", "node", cfg.Node, "wait", behind)
		t := time.NewTimer(behind + time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	// The node takes its epoch from the wall clock now, so only after the wait.
	node, err := snowflake.NewNode(cfg.Node)
	if err != nil {
		return nil, fmt.Errorf("%w: snowflake node %d: %w", ErrInvalid, cfg.Node, err)
	}
	return &idGen{node: node}, nil
}

func (g *idGen) next() uint64 { return uint64(g.node.Generate()) }
