package inbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// Recall recalls the message at convSeq of conv: a new KindRecall entry,
// posted to every member like a message, names it, and from then on the
// message is served with Recalled set and no body, and so are the entries
// of its edits. Its sender may recall it within Config.RecallWindow of
// sending it, the group's owner and admins any time. A non-empty
// clientMsgID is the retry key, as in a send; without one a retry after a
// recall that succeeded is ErrInvalid (already recalled).
func (s *Service) Recall(ctx context.Context, actor, conv, convSeq uint64, clientMsgID string) (SendResult, error) {
	if actor == wire.SystemSender {
		return SendResult{}, fmt.Errorf("inbox: recall %d/%d: %w: zero actor", conv, convSeq, ErrInvalid)
	}
	res, err := s.amend(ctx, actor, conv, convSeq, clientMsgID, wire.KindRecall, nil)
	if err != nil {
		return SendResult{}, fmt.Errorf("inbox: recall %d/%d: %w", conv, convSeq, err)
	}
	return res, nil
}

// Edit replaces the body of the message at convSeq of conv: a new KindEdit
// entry, posted to every member like a message, names it and holds body,
// and from then on the message is served with body and Edited set. Its
// sender may edit it within Config.EditWindow of sending it (and while
// allowed to speak), the group's owner and admins any time. The message
// keeps its mentions. clientMsgID is as in Recall. The service keeps body.
func (s *Service) Edit(ctx context.Context, actor, conv, convSeq uint64, clientMsgID string, body []byte) (SendResult, error) {
	if actor == wire.SystemSender {
		return SendResult{}, fmt.Errorf("inbox: edit %d/%d: %w: zero actor", conv, convSeq, ErrInvalid)
	}
	res, err := s.amend(ctx, actor, conv, convSeq, clientMsgID, wire.KindEdit, body)
	if err != nil {
		return SendResult{}, fmt.Errorf("inbox: edit %d/%d: %w", conv, convSeq, err)
	}
	return res, nil
}

// amend posts a KindRecall or KindEdit entry for the message at convSeq and
// rewrites the message (and, for a recall, its edit entries) in the same
// batch, so that no reader sees the one without the other. The actor
// wire.SystemSender is the server API's, no member, who may amend any
// message of a live group.
func (s *Service) amend(ctx context.Context, actor, conv, convSeq uint64, clientMsgID string, kind wire.Kind, body []byte) (SendResult, error) {
	switch {
	case convSeq == 0:
		return SendResult{}, fmt.Errorf("%w: zero conv_seq", ErrInvalid)
	case len(clientMsgID) > wire.MaxClientMsgID:
		return SendResult{}, fmt.Errorf("%w: client msg id must be 0–%d bytes", ErrInvalid, wire.MaxClientMsgID)
	case len(body) > s.cfg.MaxBodySize:
		return SendResult{}, fmt.Errorf("%w: body of %d bytes exceeds %d", ErrInvalid, len(body), s.cfg.MaxBodySize)
	}
	var res SendResult
	err := s.doOnce(ctx, actor, clientMsgID, func(tx *txn) error {
		if err := tx.ownConv(conv); err != nil {
			return err
		}
		if d, ok, err := tx.firstResult(actor, conv, clientMsgID); err != nil || ok {
			res = dupResult(d)
			return err
		}
		g, m, err := tx.amender(conv, actor)
		if err != nil {
			return err
		}
		orig, err := tx.message(conv, convSeq)
		if err != nil {
			return err
		}
		if err := tx.mayAmend(g, m, &orig, kind); err != nil {
			return err
		}
		// Everything that can refuse the command comes before the post: a
		// command half applied would stay in the batch.
		var edits []timeline.Message
		if kind == wire.KindRecall {
			if edits, err = tx.editsOf(&orig); err != nil {
				return err
			}
		}
		a := wire.Amend{ConvSeq: convSeq, MsgID: orig.ID, Actor: actor}
		if kind == wire.KindEdit {
			a.Body, a.Prev = body, orig.LastEdit
		}
		entry, err := tx.postMessage(g, timeline.Message{Sender: actor, ClientMsgID: clientMsgID, Kind: kind, Body: a.Marshal()})
		if err != nil {
			return err
		}
		if kind == wire.KindEdit {
			orig.Body, orig.Edited, orig.LastEdit = body, tx.now, entry.ConvSeq
		} else {
			orig.Body, orig.Recalled = nil, true
		}
		tx.rewrite(orig)
		for _, e := range edits {
			tx.rewrite(e)
		}
		res = SendResult{MsgID: entry.ID, ConvSeq: entry.ConvSeq, Time: entry.Time}
		return nil
	})
	return res, err
}

// amender returns the live group conv and actor's membership of it; the
// system actor, no member, is a zero Member with the User SystemSender.
func (tx *txn) amender(conv, actor uint64) (*group, timeline.Member, error) {
	if actor != wire.SystemSender {
		return tx.memberOf(conv, actor)
	}
	g, err := tx.liveGroup(conv)
	return g, timeline.Member{User: wire.SystemSender}, err
}

// mayAmend checks that member m may recall or edit orig now.
func (tx *txn) mayAmend(g *group, m timeline.Member, orig *timeline.Message, kind wire.Kind) error {
	switch {
	case !orig.Kind.Amendable():
		return fmt.Errorf("%w: conv_seq %d is a %#x entry of the server, not a message", ErrInvalid, orig.ConvSeq, uint16(orig.Kind))
	case orig.Recalled:
		return fmt.Errorf("%w: conv_seq %d is already recalled", ErrInvalid, orig.ConvSeq)
	case m.User == wire.SystemSender:
		return nil
	case kind == wire.KindEdit && !g.speaks(m, tx.now):
		return ErrMuted
	case m.Role >= wire.RoleAdmin:
		return nil
	case orig.Sender != m.User:
		return fmt.Errorf("%w: only the sender, the owner and admins change a message", ErrForbidden)
	}
	window := tx.s.cfg.RecallWindow
	if kind == wire.KindEdit {
		window = tx.s.cfg.EditWindow
	}
	if tx.now.Sub(orig.Time) > window {
		return fmt.Errorf("%w: sent more than %v ago", ErrTooLate, window.Round(time.Second))
	}
	return nil
}

// editsOf returns the edit entries of orig, which chain back from
// orig.LastEdit, as a recall of orig leaves them: marked recalled, without
// the text.
func (tx *txn) editsOf(orig *timeline.Message) ([]timeline.Message, error) {
	var edits []timeline.Message
	for seq := orig.LastEdit; seq != 0; {
		e, err := tx.message(orig.Conv, seq)
		if err != nil {
			return nil, err
		}
		a, err := wire.ParseAmend(e.Body)
		if err != nil {
			return nil, storeErr(fmt.Sprintf("edit entry %d/%d", e.Conv, e.ConvSeq), err)
		}
		seq, a.Body = a.Prev, nil
		e.Body, e.Recalled = a.Marshal(), true
		edits = append(edits, e)
	}
	return edits, nil
}

// msgSlot is where the batch holds a message it writes: its place in the
// batch and the copy its deliveries carry.
type msgSlot struct {
	i      int
	shared *timeline.Message
}

// posted notes the message the batch wrote at b.Messages[i].
func (tx *txn) posted(i int, shared *timeline.Message) {
	if tx.msgs == nil {
		tx.msgs = make(map[timeline.MessageKey]msgSlot)
	}
	m := &tx.b.Messages[i]
	tx.msgs[timeline.MessageKey{Conv: m.Conv, ConvSeq: m.ConvSeq}] = msgSlot{i, shared}
}

// message returns the message at convSeq of conv as this batch sees it;
// ErrInvalid if there is none.
func (tx *txn) message(conv, convSeq uint64) (timeline.Message, error) {
	if slot, ok := tx.msgs[timeline.MessageKey{Conv: conv, ConvSeq: convSeq}]; ok {
		return tx.b.Messages[slot.i], nil
	}
	msgs, err := tx.s.store.MessagesByKey(tx.ctx, []timeline.MessageKey{{Conv: conv, ConvSeq: convSeq}}, 0)
	switch {
	case errors.Is(err, timeline.ErrNotFound):
		return timeline.Message{}, fmt.Errorf("%w: conversation %d has no conv_seq %d", ErrInvalid, conv, convSeq)
	case err != nil:
		return timeline.Message{}, storeErr("read message", err)
	}
	return msgs[0], nil
}

// rewrite writes m over the message of its key: over the batch's own write
// of it when there is one (a batch writes each message once, and a
// delivery of it not yet pushed shows the new state), else as a new write.
func (tx *txn) rewrite(m timeline.Message) {
	k := timeline.MessageKey{Conv: m.Conv, ConvSeq: m.ConvSeq}
	if slot, ok := tx.msgs[k]; ok {
		tx.b.Messages[slot.i] = m
		if slot.shared != nil {
			*slot.shared = m
		}
		return
	}
	tx.b.Messages = append(tx.b.Messages, m)
	tx.posted(len(tx.b.Messages)-1, nil)
	tx.rewrites++
}
