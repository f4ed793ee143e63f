package inbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/inboxd/inboxd/sequencer"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// SyncResult is one page of a user's inbox.
type SyncResult struct {
	Entries []Entry
	Head    uint64 // the user's newest seq when the page was read
	HasMore bool   // entries after the page exist: sync again after the last
}

// Sync returns the user's inbox entries after afterSeq, oldest first, with
// their messages. Reads see whole group commits, so a page never has a hole.
func (s *Service) Sync(ctx context.Context, user, afterSeq uint64, limit int) (SyncResult, error) {
	limit = clampLimit(limit, wire.DefaultSyncLimit, wire.MaxSyncLimit)
	if afterSeq == math.MaxUint64 {
		// No seq follows it, and afterSeq+1 would wrap to the first.
		head, err := s.Head(ctx, user)
		return SyncResult{Head: head}, err
	}
	rows, err := s.store.Inbox(ctx, user, timeline.Range{From: afterSeq + 1, Limit: limit + 1})
	if err != nil {
		return SyncResult{}, fmt.Errorf("inbox: sync %d after %d: %w", user, afterSeq, err)
	}
	head, err := s.store.LastInboxSeq(ctx, user)
	if err != nil {
		return SyncResult{}, fmt.Errorf("inbox: sync %d: head: %w", user, err)
	}
	// Read the committed head after the rows: rows past it belong to a
	// batch not yet durable, which the push will bring.
	if committed, ok := s.seq.Committed(sequencer.Key{Space: sequencer.Inbox, ID: user}); ok {
		head = min(head, committed)
		rows = upTo(rows, head, func(r timeline.Row) uint64 { return r.Seq })
	}
	res := SyncResult{Head: head, HasMore: len(rows) > limit}
	rows = rows[:min(len(rows), limit)]
	if res.Entries, err = s.withMessages(ctx, rows); err != nil {
		return SyncResult{}, fmt.Errorf("inbox: sync %d: %w", user, err)
	}
	return res, nil
}

// upTo drops the entries of an ascending or descending list whose seq is
// beyond head.
func upTo[T any](list []T, head uint64, seq func(T) uint64) []T {
	return slices.DeleteFunc(list, func(v T) bool { return seq(v) > head })
}

// capCommitted narrows r to conv's durable messages. It reports false when
// none is durable yet.
func (s *Service) capCommitted(r *timeline.Range, conv uint64) bool {
	head, ok := s.seq.Committed(sequencer.Key{Space: sequencer.Conv, ID: conv})
	switch {
	case !ok:
		return true
	case head == 0:
		return false
	case r.To == 0 || r.To > head:
		r.To = head
	}
	return true
}

// Head returns the user's newest inbox seq.
func (s *Service) Head(ctx context.Context, user uint64) (uint64, error) {
	n, err := s.store.LastInboxSeq(ctx, user)
	if err != nil {
		return 0, fmt.Errorf("inbox: head of %d: %w", user, err)
	}
	if committed, ok := s.seq.Committed(sequencer.Key{Space: sequencer.Inbox, ID: user}); ok {
		n = min(n, committed)
	}
	return n, nil
}

func clampLimit(n, def, max int) int {
	if n <= 0 {
		return def
	}
	return min(n, max)
}

// withMessages pairs rows with their messages, read in one batch.
func (s *Service) withMessages(ctx context.Context, rows []timeline.Row) ([]Entry, error) {
	keys := make([]timeline.MessageKey, 0, len(rows))
	for _, r := range rows {
		if r.Kind.HasMessage() {
			keys = append(keys, timeline.MessageKey{Conv: r.Conv, ConvSeq: r.ConvSeq})
		}
	}
	msgs, err := s.store.MessagesByKey(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("messages: %w", err)
	}
	entries := make([]Entry, len(rows))
	for i, r := range rows {
		entries[i].Row = r
		if r.Kind.HasMessage() {
			entries[i].Msg = &msgs[0]
			msgs = msgs[1:]
		}
	}
	return entries, nil
}

// History returns up to limit messages of conv before conv_seq before (0:
// the newest), newest first, never reaching back before the user's latest
// join (a member who left and came back reads from the notice that let them
// back in). Only current members of a live group read history.
func (s *Service) History(ctx context.Context, user, conv, before uint64, limit int) ([]timeline.Message, error) {
	_, c, err := s.currentMember(ctx, user, conv)
	if err != nil {
		return nil, fmt.Errorf("inbox: history of %d: %w", conv, err)
	}
	r := timeline.Range{From: c.JoinedAt, Desc: true, Limit: clampLimit(limit, wire.DefaultHistoryLimit, wire.MaxHistoryLimit)}
	if before != 0 {
		if before <= c.JoinedAt {
			return nil, nil
		}
		r.To = before - 1
	}
	if !s.capCommitted(&r, conv) {
		return nil, nil
	}
	msgs, err := s.store.Messages(ctx, conv, r)
	if err != nil {
		return nil, fmt.Errorf("inbox: history of %d: %w", conv, err)
	}
	return msgs, nil
}

// currentMember returns user's entry of conv if conv is a live group and
// user a member of it. A dismissed group answers ErrDismissed to everyone,
// its former members included, as the group commands do.
func (s *Service) currentMember(ctx context.Context, user, conv uint64) (timeline.Group, timeline.Conversation, error) {
	g, err := s.store.Group(ctx, conv)
	switch {
	case errors.Is(err, timeline.ErrNotFound):
		return g, timeline.Conversation{}, ErrNoGroup
	case err != nil:
		return g, timeline.Conversation{}, err
	case g.Dismissed:
		return g, timeline.Conversation{}, ErrDismissed
	}
	c, err := s.store.Conversation(ctx, user, conv)
	if errors.Is(err, timeline.ErrNotFound) || err == nil && c.LeftAt != 0 {
		return g, c, ErrNotMember
	}
	return g, c, err
}

// ConversationInfo is an entry of a user's conversation list.
type ConversationInfo struct {
	timeline.Conversation
	Name   string
	Head   uint64            // the newest conv_seq the user has
	Unread uint64            // Head − ReadSeq
	Last   *timeline.Message // the newest message the user has
}

// Conversations returns the user's conversations, latest activity first.
func (s *Service) Conversations(ctx context.Context, user uint64) ([]ConversationInfo, error) {
	convs, err := s.store.Conversations(ctx, user)
	if err != nil {
		return nil, fmt.Errorf("inbox: conversations of %d: %w", user, err)
	}
	out := make([]ConversationInfo, 0, len(convs))
	for _, c := range convs {
		info, err := s.conversationInfo(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("inbox: conversations of %d: %w", user, err)
		}
		out = append(out, info)
	}
	// A total order, so that pages cut at an offset neither repeat nor skip
	// a conversation whose last message shares its millisecond with another.
	slices.SortFunc(out, func(a, b ConversationInfo) int {
		return cmp.Or(cmp.Compare(lastTime(b), lastTime(a)), cmp.Compare(b.Conv, a.Conv))
	})
	return out, nil
}

func lastTime(c ConversationInfo) int64 {
	if c.Last == nil {
		return 0
	}
	return c.Last.Time.UnixMilli()
}

func (s *Service) conversationInfo(ctx context.Context, c timeline.Conversation) (ConversationInfo, error) {
	info := ConversationInfo{Conversation: c, Head: c.LeftAt}
	g, err := s.store.Group(ctx, c.Conv)
	if err != nil {
		return info, fmt.Errorf("group %d: %w", c.Conv, err)
	}
	info.Name = g.Name
	// The newest message the user has: the conversation's, or the one they
	// left with.
	r := timeline.Range{From: c.JoinedAt, To: c.LeftAt, Desc: true, Limit: 1}
	var last []timeline.Message
	if s.capCommitted(&r, c.Conv) {
		last, err = s.store.Messages(ctx, c.Conv, r)
	}
	if err != nil {
		return info, fmt.Errorf("last message of %d: %w", c.Conv, err)
	}
	if len(last) == 1 {
		info.Last = &last[0]
		info.Head = last[0].ConvSeq
	}
	if info.Head > c.ReadSeq {
		info.Unread = info.Head - c.ReadSeq
	}
	return info, nil
}

// GroupInfo is a group with its current members.
type GroupInfo struct {
	timeline.Group
	Members []timeline.Member
}

// Group returns conv's metadata and members; only current members of a live
// group may ask.
func (s *Service) Group(ctx context.Context, user, conv uint64) (GroupInfo, error) {
	g, _, err := s.currentMember(ctx, user, conv)
	if err != nil {
		return GroupInfo{}, fmt.Errorf("inbox: group %d: %w", conv, err)
	}
	ms, err := s.store.Members(ctx, conv)
	if err != nil {
		return GroupInfo{}, fmt.Errorf("inbox: members of %d: %w", conv, err)
	}
	return GroupInfo{Group: g, Members: ms}, nil
}
