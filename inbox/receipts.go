package inbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// Group read receipts are pulled, not pushed (docs/architecture.md, "Read
// receipts"): they are computed on request from the read markers that
// MARK_READ and SEND already write, so reading a message costs no write
// beyond the marker, whatever the size of the group.

// ReceiptsQuery asks who of a group has read one of its messages.
type ReceiptsQuery struct {
	Conv, ConvSeq uint64
	// AfterUser is the page cursor: the list goes on from the user ids
	// above it (0: from the first).
	AfterUser uint64
	// Limit bounds the page (0: wire.DefaultReceiptsLimit, at most
	// wire.MaxReceiptsLimit).
	Limit int
	// Unread lists the members who have not read the message instead of
	// those who have.
	Unread bool
}

// Receipts is the answer to a ReceiptsQuery.
type Receipts struct {
	// Members counts the current members who received the message (they
	// joined at or before it), its sender excluded.
	Members int
	// Read counts those of them whose read marker is at or past it.
	Read int
	// Users is a page of the readers (with Unread: of the others), by
	// ascending user id.
	Users []uint64
	// NextAfter is the AfterUser of the next page; 0 when Users ends the
	// list.
	NextAfter uint64
}

// receiptReaders bounds the read markers of one query read at once.
const receiptReaders = 8

// ReadReceipts answers q for user, who must be a current member of the live
// group q.Conv and have received q.ConvSeq: a conv_seq of 0, beyond the
// group's newest message or before the user's join is ErrInvalid. Every
// call reads the group, the members, the message and each eligible
// member's read marker, whatever the page: the counts need them all.
func (s *Service) ReadReceipts(ctx context.Context, user uint64, q ReceiptsQuery) (Receipts, error) {
	if _, err := s.liveStoredGroup(ctx, q.Conv); err != nil {
		return Receipts{}, fmt.Errorf("inbox: read receipts of %d: %w", q.Conv, err)
	}
	// The member records, not the asker's conversation entry: in a
	// cluster they are the conversation owner's, and an entry may still be
	// on its way to the asker's shard.
	members, err := s.store.Members(ctx, q.Conv)
	if err != nil {
		return Receipts{}, fmt.Errorf("inbox: read receipts of %d: members: %w", q.Conv, err)
	}
	i, ok := slices.BinarySearchFunc(members, user, func(m timeline.Member, u uint64) int { return cmp.Compare(m.User, u) })
	if !ok {
		return Receipts{}, fmt.Errorf("inbox: read receipts of %d: %w", q.Conv, ErrNotMember)
	}
	if joined := members[i].JoinedAt; q.ConvSeq == 0 || q.ConvSeq < joined {
		return Receipts{}, fmt.Errorf("inbox: read receipts of %d: %w: conv_seq %d is not one of yours (you joined at %d)",
			q.Conv, ErrInvalid, q.ConvSeq, joined)
	}
	msg, err := s.committedMessage(ctx, q.Conv, q.ConvSeq)
	if err != nil {
		return Receipts{}, fmt.Errorf("inbox: read receipts of %d: %w", q.Conv, err)
	}
	eligible := make([]timeline.Member, 0, len(members))
	for _, m := range members {
		if m.JoinedAt <= q.ConvSeq && m.User != msg.Sender {
			eligible = append(eligible, m)
		}
	}
	read, err := s.haveRead(ctx, q.Conv, q.ConvSeq, eligible)
	if err != nil {
		return Receipts{}, fmt.Errorf("inbox: read receipts of %d: %w", q.Conv, err)
	}
	limit := clampLimit(q.Limit, wire.DefaultReceiptsLimit, wire.MaxReceiptsLimit)
	r := Receipts{Members: len(eligible)}
	for i, m := range eligible {
		if read[i] {
			r.Read++
		}
		if read[i] == q.Unread || m.User <= q.AfterUser {
			continue
		}
		if len(r.Users) == limit {
			r.NextAfter = r.Users[limit-1]
			continue
		}
		r.Users = append(r.Users, m.User)
	}
	return r, nil
}

// committedMessage reads message convSeq of conv, ErrInvalid when it is
// beyond the conversation's durable head.
func (s *Service) committedMessage(ctx context.Context, conv, convSeq uint64) (timeline.Message, error) {
	r := timeline.Range{From: convSeq, To: convSeq, Limit: 1}
	var msgs []timeline.Message
	if s.capCommitted(&r, conv) && r.To >= r.From {
		var err error
		if msgs, err = s.store.Messages(ctx, conv, r); err != nil {
			return timeline.Message{}, fmt.Errorf("message %d: %w", convSeq, err)
		}
	}
	if len(msgs) == 0 {
		return timeline.Message{}, fmt.Errorf("%w: conv_seq %d is beyond the conversation's newest message", ErrInvalid, convSeq)
	}
	return msgs[0], nil
}

// haveRead reports, for each of members, whether their read marker of conv
// is at convSeq or past it. It reads the markers receiptReaders at a time:
// on Cassandra each is a round trip. A member without a conversation entry
// (in a cluster, a join whose record is still on its way) has read nothing.
func (s *Service) haveRead(ctx context.Context, conv, convSeq uint64, members []timeline.Member) ([]bool, error) {
	read := make([]bool, len(members))
	errs := make([]error, receiptReaders)
	var wg sync.WaitGroup
	for w := range min(receiptReaders, len(members)) {
		wg.Go(func() {
			for i := w; i < len(members); i += receiptReaders {
				c, err := s.store.Conversation(ctx, members[i].User, conv)
				switch {
				case errors.Is(err, timeline.ErrNotFound):
				case err != nil:
					errs[w] = fmt.Errorf("read marker of %d: %w", members[i].User, err)
					return
				default:
					read[i] = c.ReadSeq >= convSeq
				}
			}
		})
	}
	wg.Wait()
	return read, errors.Join(errs...)
}
