package inbox

import (
	"context"
	"fmt"
	"time"

	"github.com/inboxd/inboxd/wire"
)

// SendSystemMessage posts a message of kind wire.KindSystemMessage from
// wire.SystemSender into conv: the application's backend speaking in a
// group it is no member of. Like any message it takes one conv_seq and one
// inbox row per member. clientMsgID is the backend's idempotency key,
// scoped to the system sender: a resend with it returns the first result
// and stores nothing. The service keeps body.
func (s *Service) SendSystemMessage(ctx context.Context, conv uint64, clientMsgID string, body []byte) (SendResult, error) {
	switch {
	case conv == 0:
		return SendResult{}, fmt.Errorf("inbox: system message: %w: zero conversation", ErrInvalid)
	case clientMsgID == "" || len(clientMsgID) > wire.MaxClientMsgID:
		return SendResult{}, fmt.Errorf("inbox: system message: %w: client msg id must be 1–%d bytes", ErrInvalid, wire.MaxClientMsgID)
	case len(body) > s.cfg.MaxBodySize:
		return SendResult{}, fmt.Errorf("inbox: system message: %w: body of %d bytes exceeds %d", ErrInvalid, len(body), s.cfg.MaxBodySize)
	}
	start := time.Now()
	var res SendResult
	err := s.do(ctx, wire.SystemSender, func(tx *txn) error {
		if d, ok, err := tx.dedup(wire.SystemSender, clientMsgID); err != nil || ok {
			if err == nil && d.Conv != conv {
				return fmt.Errorf("%w: client msg id %q already used in conversation %d", ErrInvalid, clientMsgID, d.Conv)
			}
			res = dupResult(d)
			return err
		}
		g, err := tx.liveGroup(conv)
		if err != nil {
			return err
		}
		msg, err := tx.post(g, wire.SystemSender, clientMsgID, wire.KindSystemMessage, body)
		if err != nil {
			return err
		}
		res = SendResult{MsgID: msg.ID, ConvSeq: msg.ConvSeq, Time: msg.Time}
		return nil
	})
	s.metrics.sendAck.Observe(time.Since(start).Seconds())
	s.metrics.sends[classifySend(res, err)].Inc()
	if err != nil {
		return SendResult{}, fmt.Errorf("inbox: system message to %d: %w", conv, err)
	}
	return res, nil
}

// Describe returns conv's metadata and current members, whoever asks: it
// is the server API's view, which needs no membership. A dismissed group
// answers ErrDismissed, an unknown one ErrNoGroup.
func (s *Service) Describe(ctx context.Context, conv uint64) (GroupInfo, error) {
	g, err := s.liveStoredGroup(ctx, conv)
	if err != nil {
		return GroupInfo{}, fmt.Errorf("inbox: group %d: %w", conv, err)
	}
	ms, err := s.store.Members(ctx, conv)
	if err != nil {
		return GroupInfo{}, fmt.Errorf("inbox: members of %d: %w", conv, err)
	}
	return GroupInfo{Group: g, Members: ms}, nil
}
