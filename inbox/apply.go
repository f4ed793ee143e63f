package inbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// Apply applies outbox records from other nodes to the shards this node
// serves, in one batch: for each stream (source shard → destination shard)
// it skips the records already applied, applies the next ones in order, and
// stops at the first gap (a record whose predecessor it has not seen). It
// answers the applied mark of every stream the records name in a shard it
// serves, once the batch is durable; the parts for other shards are left
// out. The entries are then pushed as local deliveries are.
func (s *Service) Apply(ctx context.Context, records []timeline.OutboxRecord) ([]timeline.AppliedMark, error) {
	msgs, err := s.applyMessages(ctx, records)
	if err != nil {
		return nil, fmt.Errorf("inbox: apply: %w", err)
	}
	var marks []timeline.AppliedMark
	err = s.do(ctx, 0, func(tx *txn) error {
		var err error
		marks, err = tx.applyRecords(records, msgs)
		if err != nil && !errors.As(err, new(storeError)) {
			// The batch holds part of the records: none of it may land.
			err = storeErr("apply records", err)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("inbox: apply: %w", err)
	}
	return marks, nil
}

// applyMessages reads the messages of records, for the pushes, when there
// is anyone to push to: outside the committer, which reads nothing for them.
func (s *Service) applyMessages(ctx context.Context, records []timeline.OutboxRecord) (map[timeline.MessageKey]*timeline.Message, error) {
	if s.cfg.Notifier == nil && s.cfg.OfflinePusher == nil {
		return nil, nil
	}
	var keys []timeline.MessageKey
	for _, r := range records {
		if r.Kind.HasMessage() {
			keys = append(keys, timeline.MessageKey{Conv: r.Conv, ConvSeq: r.ConvSeq})
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	read, err := s.store.MessagesByKey(ctx, keys, 0)
	if err != nil {
		return nil, err
	}
	out := make(map[timeline.MessageKey]*timeline.Message, len(read))
	for i := range read {
		out[timeline.MessageKey{Conv: read[i].Conv, ConvSeq: read[i].ConvSeq}] = &read[i]
	}
	return out, nil
}

// applyRecords is Apply's command.
func (tx *txn) applyRecords(records []timeline.OutboxRecord, msgs map[timeline.MessageKey]*timeline.Message) ([]timeline.AppliedMark, error) {
	tx.out.init()
	refused := map[pair]bool{}
	named := map[pair]bool{}
	var order []pair
	for i := range records {
		r := &records[i]
		var msg *timeline.Message
		if r.Kind.HasMessage() {
			msg = msgs[timeline.MessageKey{Conv: r.Conv, ConvSeq: r.ConvSeq}]
			if msg == nil {
				msg = &timeline.Message{Conv: r.Conv, ConvSeq: r.ConvSeq, ID: r.MsgID, Kind: r.Kind, Time: r.Time}
			}
		}
		for _, d := range r.Dests {
			if !tx.servesShard(d.Shard) {
				continue
			}
			k := pair{r.Source, d.Shard}
			applied, err := tx.appliedMark(k)
			if err != nil {
				return nil, err
			}
			if !named[k] {
				named[k] = true
				order = append(order, k)
				tx.out.applied[k] = applied
			}
			switch {
			case refused[k] || d.Stream <= applied:
				continue
			case d.Stream != applied+1:
				refused[k] = true
				continue
			}
			tx.reserve(len(d.Recipients))
			for _, rc := range d.Recipients {
				if err := tx.applyRecipient(r, msg, rc); err != nil {
					return nil, err
				}
			}
			tx.out.applied[k] = d.Stream
		}
	}
	marks := make([]timeline.AppliedMark, 0, len(order))
	for _, k := range order {
		m := timeline.AppliedMark{Source: k.src, Dest: k.dst, Stream: tx.out.applied[k]}
		marks = append(marks, m)
		if m.Stream > tx.s.out.applied[k] {
			tx.b.Applied = append(tx.b.Applied, m)
		}
	}
	return marks, nil
}

// appliedMark returns how far the stream k is applied, as this batch sees
// it.
func (tx *txn) appliedMark(k pair) (uint64, error) {
	if n, ok := tx.out.applied[k]; ok {
		return n, nil
	}
	o := &tx.s.out
	if err := o.load(tx.ctx, tx.s.store, k.dst); err != nil {
		return 0, storeErr("read applied marks", err)
	}
	return o.applied[k], nil
}

// applyRecipient appends r's row to rc's inbox and does what rc's effects
// say: what the conversation's committer does for a member of its own
// shard.
func (tx *txn) applyRecipient(r *timeline.OutboxRecord, msg *timeline.Message, rc timeline.Recipient) error {
	user, conv := rc.User, r.Conv
	if !r.Kind.HasMessage() {
		// A conversation setting of the user's (KindDND): the entry takes
		// it, and the user's devices learn it from the row.
		c, err := tx.conversation(user, conv)
		if err != nil && !errors.Is(err, ErrNotMember) {
			return err
		}
		if r.Kind == wire.KindDND && err == nil {
			c.DND = r.ConvSeq != 0
			tx.putConversation(c)
		}
		return tx.deliverSetting(r.Kind, user, conv, r.ConvSeq)
	}
	if rc.Effects&timeline.EffectJoin != 0 {
		old, err := tx.conversation(user, conv)
		if err != nil && !errors.Is(err, ErrNotMember) {
			return err
		}
		prev, err := tx.rejoinPrev(user, conv, old)
		if err != nil {
			return err
		}
		tx.touchAt(user, conv, prev, r.Time)
		tx.putConversation(timeline.Conversation{User: user, Conv: conv, JoinedAt: r.ConvSeq, DND: old.DND})
		tx.setMarker(user, conv, r.ConvSeq-1)
	} else {
		tx.touchAt(user, conv, r.Prev, r.Time)
	}
	offline := offlineHook
	switch {
	case rc.Effects&timeline.EffectNoPush != 0:
		offline = offlineNone
	case rc.Effects&timeline.EffectDND != 0:
		offline = offlineDND
	}
	if err := tx.deliver(user, msg, offline); err != nil {
		return err
	}
	if rc.Effects&timeline.EffectSender != 0 {
		// A MARK_READ may have moved the marker past the send already.
		marker, err := tx.readSeq(user, conv)
		if err != nil && !errors.Is(err, ErrNotMember) {
			return err
		}
		if r.ConvSeq > marker {
			tx.setMarker(user, conv, r.ConvSeq)
		}
	}
	if rc.Effects&timeline.EffectLeave != 0 {
		c, err := tx.conversation(user, conv)
		if err != nil {
			return err
		}
		c.LeftAt = r.ConvSeq
		tx.putConversation(c)
	}
	return nil
}
