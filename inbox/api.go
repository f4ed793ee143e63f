package inbox

import (
	"context"
	"fmt"

	"github.com/inboxd/inboxd/timeline"
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
	res, err := s.send(ctx, wire.SystemSender, conv, clientMsgID, wire.KindSystemMessage, body, func(tx *txn) (*group, error) {
		return tx.liveGroup(conv)
	})
	if err != nil {
		return SendResult{}, fmt.Errorf("inbox: system message to %d: %w", conv, err)
	}
	return res, nil
}

// RecallAsSystem recalls the message at convSeq of conv as Recall does, as
// wire.SystemSender: the application's backend, which is no member, may
// recall any message of a live group at any time. The recall entry's
// sender and actor are SystemSender. clientMsgID is the backend's
// idempotency key, in the system sender's namespace as in
// SendSystemMessage: a retry with it returns the first result and stores
// nothing.
func (s *Service) RecallAsSystem(ctx context.Context, conv, convSeq uint64, clientMsgID string) (SendResult, error) {
	if clientMsgID == "" {
		return SendResult{}, fmt.Errorf("inbox: system recall %d/%d: %w: no client msg id", conv, convSeq, ErrInvalid)
	}
	res, err := s.amend(ctx, wire.SystemSender, conv, convSeq, clientMsgID, wire.KindRecall, nil)
	if err != nil {
		return SendResult{}, fmt.Errorf("inbox: system recall %d/%d: %w", conv, convSeq, err)
	}
	return res, nil
}

// createKeyPrefix puts the keys of CreateGroupOnce apart from the client
// msg ids of the owner's messages, which share the owner's dedup records.
const createKeyPrefix = "create:"

// MaxCreateKey bounds a key of CreateGroupOnce, in bytes.
const MaxCreateKey = wire.MaxClientMsgID - len(createKeyPrefix)

// CreateGroupOnce is CreateGroup with an idempotency key of the owner's:
// a retry with the same key creates nothing and returns the group the first
// call created, reporting true.
func (s *Service) CreateGroupOnce(ctx context.Context, owner uint64, spec NewGroup, key string) (timeline.Group, bool, error) {
	if key == "" || len(key) > MaxCreateKey {
		return timeline.Group{}, false, fmt.Errorf("inbox: create group: %w: key must be 1–%d bytes", ErrInvalid, MaxCreateKey)
	}
	return s.createGroup(ctx, owner, spec, createKeyPrefix+key)
}

// createdBefore finds the group that owner created with key, if any. The
// dedup record of a creation points at the creation notice, conv_seq 1,
// which no message can have.
func (tx *txn) createdBefore(owner uint64, key string) (timeline.Group, bool, error) {
	d, ok, err := tx.dedup(owner, key)
	if err != nil || !ok {
		return timeline.Group{}, false, err
	}
	if d.ConvSeq != 1 {
		return timeline.Group{}, false, fmt.Errorf("%w: key %q already used for a message", ErrInvalid, key)
	}
	g, err := tx.group(d.Conv)
	if err != nil {
		return timeline.Group{}, false, err
	}
	return g.Group, true, nil
}

// remember records msg as what sender's key produced, as post does for a
// message's client msg id.
func (tx *txn) remember(sender uint64, key string, msg *timeline.Message) {
	d := timeline.Dedup{Sender: sender, ClientMsgID: key, Conv: msg.Conv, ConvSeq: msg.ConvSeq, MsgID: msg.ID, Time: tx.now}
	tx.dedups[dedupKey{sender, key}] = d
	tx.b.Dedups = append(tx.b.Dedups, d)
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
