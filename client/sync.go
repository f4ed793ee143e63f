package client

import (
	"errors"
	"fmt"

	"github.com/inboxd/inboxd/internal/backoff"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// serve runs the sync algorithm of docs/protocol.md on one connection until
// it ends:
//
//  1. SYNC after the last applied seq until has_more is false;
//  2. for each pushed entry: seq == last+1, apply it; seq <= last, ignore
//     it (already applied); seq > last+1, SYNC to fill the gap (which
//     applies the entry too);
//  3. after pushes were dropped for a slow application, SYNC.
//
// Only this goroutine applies entries, so they reach OnEntry once and in
// order whatever the server pushes.
func (c *Client) serve(cn *conn) error {
	if err := c.catchUp(cn); err != nil {
		return err
	}
	c.markSynced(cn)
	for {
		select {
		case <-cn.done:
			return cn.cause()
		case <-c.life.Done():
			return ErrClosed
		case <-cn.pushed:
			entries, dropped := cn.takePushes()
			if err := c.applyPushes(cn, entries); err != nil {
				return err
			}
			for _, ev := range cn.takeTyping() {
				c.cfg.OnTyping(ev)
			}
			if dropped {
				if err := c.catchUp(cn); err != nil {
					return err
				}
			}
		}
	}
}

func (c *Client) applyPushes(cn *conn, entries []*wirepb.Entry) error {
	for _, e := range entries {
		last := c.last.Load()
		switch {
		case e.GetSeq() <= last:
			continue
		case e.GetSeq() == last+1:
			c.deliver(e)
			continue
		}
		if err := c.catchUp(cn); err != nil {
			return err
		}
		// The SYNC read everything durable, and a push is sent only once
		// its entry is: the gap must be filled now.
		if last := c.last.Load(); e.GetSeq() > last {
			return fmt.Errorf("%w: pushed seq %d, but SYNC ends at %d", ErrProtocol, e.GetSeq(), last)
		}
	}
	return nil
}

// catchUp syncs after the last applied seq until the server has no more.
// A retryable error is retried on the same connection after a backoff.
func (c *Client) catchUp(cn *conn) error {
	for attempt := 0; ; {
		last := c.last.Load()
		var resp wirepb.SyncResponse
		err := cn.roundTrip(c.life, wire.CmdSync, &wirepb.SyncRequest{AfterSeq: last, Limit: c.cfg.SyncLimit}, &resp)
		if err != nil {
			// A connection closed with a retryable code in its ERROR frame
			// (UNAVAILABLE, SHUTTING_DOWN) is gone all the same: only a
			// new one can answer.
			var e *Error
			if errors.Is(err, ErrConnLost) || !errors.As(err, &e) || !e.Retryable() {
				return fmt.Errorf("client: sync after %d: %w", last, err)
			}
			if !backoff.Sleep(c.life, max(c.backoff(attempt), e.RetryAfter)) {
				return ErrClosed
			}
			attempt++
			continue
		}
		attempt = 0
		before := last
		for _, e := range resp.Entries {
			switch {
			case e.GetSeq() <= last:
				continue
			case e.GetSeq() != last+1:
				return fmt.Errorf("%w: SYNC after %d returned seq %d next", ErrProtocol, last, e.GetSeq())
			}
			c.deliver(e)
			last = e.GetSeq()
		}
		if !resp.GetHasMore() {
			return nil
		}
		if last == before {
			return fmt.Errorf("%w: SYNC after %d has more but returned nothing new", ErrProtocol, last)
		}
	}
}

// deliver hands one entry to the application and moves last past it.
func (c *Client) deliver(e *wirepb.Entry) {
	if c.cfg.OnEntry != nil {
		c.cfg.OnEntry(e)
	}
	c.last.Store(e.GetSeq())
}

// markSynced tells WaitSynced that cn has caught up, unless cn has been
// replaced meanwhile.
func (c *Client) markSynced(cn *conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == cn && !c.caught {
		close(c.synced)
		c.caught = true
	}
}
