package inbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

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

// syncFirstRows is how many inbox rows a Sync reads first; the next read
// is sized by the page's byte budget at the mean entry size seen.
const syncFirstRows = 64

// Sync returns the user's inbox entries after afterSeq, oldest first, with
// their messages: at most limit entries and MaxReadBytes' worth. Reads see
// whole group commits, so a page never has a hole. It reads rows in rounds
// (syncFirstRows, then as many as the budget left holds), so that a page of
// a few large messages reads few rows as well as few bodies.
func (s *Service) Sync(ctx context.Context, user, afterSeq uint64, limit int) (SyncResult, error) {
	if err := s.ownUser(user); err != nil {
		return SyncResult{}, fmt.Errorf("inbox: sync %d: %w", user, err)
	}
	limit = clampLimit(limit, wire.DefaultSyncLimit, wire.MaxSyncLimit)
	if afterSeq == math.MaxUint64 {
		// No seq follows it, and afterSeq+1 would wrap to the first.
		head, err := s.Head(ctx, user)
		return SyncResult{Head: head}, err
	}
	var res SyncResult
	budget := timeline.NewBudget(s.cfg.MaxReadBytes)
	from, want := afterSeq+1, min(limit, syncFirstRows)
	for first := true; ; first = false {
		rows, err := s.store.Inbox(ctx, user, timeline.Range{From: from, Limit: want + 1})
		if err != nil {
			return SyncResult{}, fmt.Errorf("inbox: sync %d after %d: %w", user, from-1, err)
		}
		if first {
			// Read the committed head after the rows: rows past it belong
			// to a batch not yet durable, which the push will bring.
			if res.Head, err = s.Head(ctx, user); err != nil {
				return SyncResult{}, fmt.Errorf("inbox: sync %d: %w", user, err)
			}
		}
		rows = upTo(rows, res.Head, func(r timeline.Row) uint64 { return r.Seq })
		more := len(rows) > want
		rows = rows[:min(len(rows), want)]
		entries, err := s.withMessages(ctx, rows, &budget)
		if err != nil {
			return SyncResult{}, fmt.Errorf("inbox: sync %d: %w", user, err)
		}
		res.Entries = append(res.Entries, entries...)
		switch {
		case len(entries) < len(rows):
			res.HasMore = true
			return res, nil
		case !more || len(res.Entries) == limit || budget.Full():
			res.HasMore = more
			return res, nil
		}
		from = rows[len(rows)-1].Seq + 1
		want = budget.Next(limit - len(res.Entries))
	}
}

// upTo drops the entries of an ascending or descending list whose seq is
// beyond head.
func upTo[T any](list []T, head uint64, seq func(T) uint64) []T {
	return slices.DeleteFunc(list, func(v T) bool { return seq(v) > head })
}

// capCommitted narrows r to conv's durable messages. It reports false when
// none is durable yet.
func (s *Service) capCommitted(r *timeline.Range, conv uint64) bool {
	head, ok := s.committed(sequencer.Key{Space: sequencer.Conv, ID: conv})
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
	if err := s.ownUser(user); err != nil {
		return 0, fmt.Errorf("inbox: head of %d: %w", user, err)
	}
	n, err := s.store.LastInboxSeq(ctx, user)
	if err != nil {
		return 0, fmt.Errorf("inbox: head of %d: %w", user, err)
	}
	if committed, ok := s.committed(sequencer.Key{Space: sequencer.Inbox, ID: user}); ok {
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

// withMessages pairs rows with their messages, read in one batch, and
// returns the longest prefix of entries that budget takes: an entry without
// a message counts as an empty message would.
func (s *Service) withMessages(ctx context.Context, rows []timeline.Row, budget *timeline.Budget) ([]Entry, error) {
	keys := make([]timeline.MessageKey, 0, len(rows))
	for _, r := range rows {
		if r.Kind.HasMessage() {
			keys = append(keys, timeline.MessageKey{Conv: r.Conv, ConvSeq: r.ConvSeq})
		}
	}
	msgs, err := s.store.MessagesByKey(ctx, keys, budget.Left())
	if err != nil {
		return nil, fmt.Errorf("messages: %w", err)
	}
	entries := make([]Entry, 0, len(rows))
	var none timeline.Message
	for _, r := range rows {
		var m *timeline.Message
		if r.Kind.HasMessage() {
			if len(msgs) == 0 {
				break // the store stopped at the budget
			}
			m, msgs = &msgs[0], msgs[1:]
		}
		if !budget.Take(cmp.Or(m, &none)) {
			break
		}
		entries = append(entries, Entry{Row: r, Msg: m})
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
	r := timeline.Range{From: c.JoinedAt, Desc: true, Limit: clampLimit(limit, wire.DefaultHistoryLimit, wire.MaxHistoryLimit),
		MaxBytes: s.cfg.MaxReadBytes}
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
	g, err := s.liveStoredGroup(ctx, conv)
	if err != nil {
		return g, timeline.Conversation{}, err
	}
	c, err := s.store.Conversation(ctx, user, conv)
	if errors.Is(err, timeline.ErrNotFound) || err == nil && c.LeftAt != 0 {
		// In a cluster the user's entry is written in the user's shard
		// after the group's commit, by a delivery that may still be on its
		// way: the member records, written with the commit here, decide.
		ms, err := s.store.Members(ctx, conv)
		if err != nil {
			return g, c, err
		}
		for _, m := range ms {
			if m.User == user {
				return g, timeline.Conversation{User: user, Conv: conv, JoinedAt: m.JoinedAt, DND: m.DND}, nil
			}
		}
		return g, c, ErrNotMember
	}
	return g, c, err
}

// liveStoredGroup reads conv's metadata from the store: ErrNotOwner if
// this node does not serve the conversation, ErrNoGroup if there is no such
// group, ErrDismissed if it was dismissed.
func (s *Service) liveStoredGroup(ctx context.Context, conv uint64) (timeline.Group, error) {
	if err := s.ownConv(conv); err != nil {
		return timeline.Group{}, err
	}
	g, err := s.store.Group(ctx, conv)
	switch {
	case errors.Is(err, timeline.ErrNotFound):
		return g, ErrNoGroup
	case err != nil:
		return g, err
	case g.Dismissed:
		return g, ErrDismissed
	}
	return g, nil
}

// ConversationInfo is an entry of a user's conversation list.
type ConversationInfo struct {
	timeline.Conversation
	Name   string
	Peer   uint64            // a direct conversation's other user; 0 for a group
	Head   uint64            // the newest conv_seq the user has
	Unread uint64            // Head − ReadSeq
	Last   *timeline.Message // the newest message the user has
	// MentionUnread counts the unread messages (after ReadSeq, up to Head)
	// that mention the user or everyone, up to wire.MaxMentionUnread.
	MentionUnread uint64
}

// size is what a conversation charges to a page's read budget: its last
// message, and as much again for its own fields.
func (c *ConversationInfo) size() int {
	n := timeline.MessageOverhead + len(c.Name)
	if c.Last != nil {
		n += c.Last.Size()
	}
	return n
}

// ConversationsPage is one page of a user's conversation list.
type ConversationsPage struct {
	Conversations []ConversationInfo
	HasMore       bool // the list goes on after the page
}

// Conversations returns a page of the user's conversations, former groups
// included, latest activity first (ties: the higher conv id first), from the
// offset-th on: at most limit of them and MaxReadBytes' worth. It reads the
// user's activity index, so a page costs what it holds whatever the length
// of the list.
func (s *Service) Conversations(ctx context.Context, user uint64, offset, limit int) (ConversationsPage, error) {
	if err := s.ownUser(user); err != nil {
		return ConversationsPage{}, fmt.Errorf("inbox: conversations of %d: %w", user, err)
	}
	limit = clampLimit(limit, wire.DefaultConversationsLimit, wire.MaxConversationsLimit)
	convs, err := s.store.RecentConversations(ctx, user, max(offset, 0), limit+1)
	if err != nil {
		return ConversationsPage{}, fmt.Errorf("inbox: conversations of %d: %w", user, err)
	}
	page := ConversationsPage{HasMore: len(convs) > limit}
	convs = convs[:min(len(convs), limit)]
	// Each entry takes two reads (group, newest message): a few entries at
	// a time in parallel, as many as the budget left holds.
	budget := timeline.NewBudget(s.cfg.MaxReadBytes)
	for len(convs) > 0 {
		if budget.Full() {
			page.HasMore = true
			break
		}
		n := min(budget.Next(len(convs)), conversationReaders)
		infos := make([]ConversationInfo, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { infos[i], errs[i] = s.conversationInfo(ctx, convs[i]) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return ConversationsPage{}, fmt.Errorf("inbox: conversations of %d: %w", user, err)
		}
		for i := range infos {
			if !budget.TakeSize(infos[i].size()) {
				page.HasMore = true
				return page, nil
			}
			page.Conversations = append(page.Conversations, infos[i])
		}
		convs = convs[n:]
	}
	return page, nil
}

// conversationReaders bounds the conversations of a page read at once.
const conversationReaders = 8

func (s *Service) conversationInfo(ctx context.Context, c timeline.Conversation) (ConversationInfo, error) {
	info := ConversationInfo{Conversation: c, Head: c.LeftAt}
	g, err := s.store.Group(ctx, c.Conv)
	if err != nil {
		return info, fmt.Errorf("group %d: %w", c.Conv, err)
	}
	info.Name = g.Name
	if g.IsDirect() {
		info.Peer = g.Peer(c.User)
	}
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
		if info.MentionUnread, err = s.mentionUnread(ctx, &info); err != nil {
			return info, fmt.Errorf("mentions in %d: %w", c.Conv, err)
		}
	}
	return info, nil
}

// mentionUnread counts the messages of c's unread range that mention its
// user: the records of the user's and of @all (a message that mentions
// everyone has only the latter), two reads bounded by the cap.
func (s *Service) mentionUnread(ctx context.Context, c *ConversationInfo) (uint64, error) {
	r := timeline.Range{From: max(c.ReadSeq+1, c.JoinedAt), To: c.Head, Limit: wire.MaxMentionUnread}
	if r.From > r.To {
		return 0, nil
	}
	var n int
	for _, u := range []uint64{c.User, 0} {
		seqs, err := s.store.Mentions(ctx, c.Conv, u, r)
		if err != nil {
			return 0, err
		}
		n += len(seqs)
	}
	return uint64(min(n, wire.MaxMentionUnread)), nil
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
