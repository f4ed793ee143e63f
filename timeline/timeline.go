// Package timeline defines inboxd's storage contract: the two kinds of
// append-only timelines and the group metadata kept beside them.
//
// A conversation timeline (key: conversation id) stores every message of a
// group once, at a contiguous conv_seq 1, 2, 3, …. An inbox (key: user id) is
// a user's sync timeline: a contiguous seq 1, 2, 3, … of small rows that
// reference a message by (conversation, conv_seq, msg id) and never copy its
// body. Beside them live groups, members, each user's conversation list with
// read markers, and the (sender, client message id) dedup records.
//
// A backend implements Store. Its one write path is Commit, which applies a
// Batch atomically and durably: after a crash a reopened store holds either
// all of a batch or none of it. The caller (package inbox) is the single
// writer of every sequence key and relies on that atomicity for its
// crash-recovery argument, so a backend that cannot write a batch atomically
// must make it so itself (a write-ahead record replayed on open).
//
// Kinds and roles are the protocol's (wire.Kind, wire.Role): a stored kind
// is the number clients see.
//
// Package timelinetest holds the conformance suite every backend passes.
//
// This package is the server's own (README, "Layout"): it has no
// compatibility promise. Clients use packages client, wire and token.
package timeline

import (
	"context"
	"errors"
	"time"

	"github.com/inboxd/inboxd/wire"
)

// ErrNotFound is returned by point lookups when the record does not exist.
var ErrNotFound = errors.New("timeline: not found")

// ErrClosed is returned by every method called after Close.
var ErrClosed = errors.New("timeline: store closed")

// MessageOverhead bounds what a message takes in a response beyond its body
// and client message id: its ids, kind and time, and the inbox entry and
// framing around it (see docs/protocol.md).
const MessageOverhead = 128

// Message is one entry of a conversation timeline.
type Message struct {
	Conv        uint64
	ConvSeq     uint64
	ID          uint64 // snowflake msg id, unique across conversations
	Sender      uint64
	ClientMsgID string // the sender's idempotency key; empty for notices
	Kind        wire.Kind
	Body        []byte
	Time        time.Time // server time, millisecond precision
	// Mentions names the members the message mentions, MentionAll that it
	// mentions every member (see Mention).
	Mentions   []uint64
	MentionAll bool
	// Recalled reports that a KindRecall entry recalled the message: its
	// Body is gone. Edited is the time of its newest KindEdit (zero: never
	// edited), whose body Body now is, and LastEdit that entry's conv_seq,
	// from which the edits chain back (wire.Amend.Prev).
	Recalled bool
	Edited   time.Time
	LastEdit uint64
}

// Size is what a read budget (Range.MaxBytes, MessagesByKey's maxBytes)
// charges for m: an upper bound of the bytes it takes in a response.
func (m *Message) Size() int {
	return MessageOverhead + len(m.Body) + len(m.ClientMsgID) + 8*len(m.Mentions)
}

// Row is one entry of a user's inbox. For the inbox-only kinds MsgID is zero
// and ConvSeq is the value (see wire.KindRead, wire.KindDND).
type Row struct {
	User    uint64
	Seq     uint64
	Conv    uint64
	ConvSeq uint64
	MsgID   uint64
	Kind    wire.Kind
}

// Group is a group conversation's metadata. Its id is the conversation id.
type Group struct {
	ID         uint64
	Name       string
	Owner      uint64
	Created    time.Time
	Open       bool      // anyone may Join without an invitation
	MutedUntil time.Time // whole-group mute: only owner and admins speak until then
	Dismissed  bool
	// Announcement and AvatarURL are the group's profile beside Name;
	// empty: none.
	Announcement string
	AvatarURL    string
	// Direct holds the two users of a direct conversation, the smaller id
	// first; zero for a group. A direct conversation has no owner and no
	// name.
	Direct [2]uint64
	// Blocked[i] is set while Direct[i] refuses the other's messages.
	Blocked [2]bool
}

// IsDirect reports whether g is a direct conversation.
func (g *Group) IsDirect() bool { return g.Direct[0] != 0 }

// Side returns the index of user, one of the two, in g.Direct.
func (g *Group) Side(user uint64) int {
	if g.Direct[0] == user {
		return 0
	}
	return 1
}

// Blocks reports whether g is a direct conversation whose other user
// refuses the messages of sender, one of its two.
func (g *Group) Blocks(sender uint64) bool {
	return g.IsDirect() && g.Blocked[1-g.Side(sender)]
}

// Peer returns the user of direct conversation g who is not user.
func (g *Group) Peer(user uint64) uint64 {
	if g.Direct[0] == user {
		return g.Direct[1]
	}
	return g.Direct[0]
}

// Member is one current member of a group.
type Member struct {
	Conv       uint64
	User       uint64
	Role       wire.Role
	JoinedAt   uint64 // conv_seq of the notice that made the user a member
	MutedUntil time.Time
	// DND copies the member's Conversation.DND, so that loading a group
	// for a fan-out reads its members and nothing per member.
	DND bool
}

// MemberKey names a member record to delete.
type MemberKey struct {
	Conv, User uint64
}

// Conversation is an entry of a user's conversation list. It outlives the
// membership (LeftAt set) so that a user keeps what they were sent.
type Conversation struct {
	User     uint64
	Conv     uint64
	JoinedAt uint64 // first conv_seq the user receives
	LeftAt   uint64 // last conv_seq the user received; 0 while a member
	ReadSeq  uint64 // read marker: conv_seqs up to it are read (see Marker)
	DND      bool   // do not disturb: no offline push for this conversation
}

// Marker moves a user's read marker of a conversation. The writer only ever
// moves markers forward; a store may overwrite blindly. A marker without a
// Conversation entry stays invisible until the entry is written.
type Marker struct {
	User, Conv, ReadSeq uint64
}

// Activity moves a user's conversation in the user's activity index, the
// conversation list ordered by last activity: from Prev (zero: not listed
// yet) to At, the server time of the newest message the user has in it.
// The writer never writes an Activity whose At equals its Prev, nor two of
// one (User, Conv) in a batch.
type Activity struct {
	User, Conv uint64
	At, Prev   time.Time
}

// Mention records that the message at ConvSeq of Conv mentions User, a
// member; User 0 (no user has it) stands for a message that mentions every
// member. The conversation's writer records them with the message, so that
// a user's unread mentions are the records of (Conv, User) and of (Conv, 0)
// after the user's read marker.
type Mention struct {
	Conv, User, ConvSeq uint64
}

// Dedup records the first result of a (sender, client message id) pair.
type Dedup struct {
	Sender      uint64
	ClientMsgID string
	Conv        uint64
	ConvSeq     uint64
	MsgID       uint64
	Time        time.Time
}

// Batch is a set of writes applied together by Store.Commit. Every write is
// an upsert by primary key, so committing the same batch twice leaves the
// store as committing it once. Within a batch the last write of a key wins
// (a backend may keep only the last), and no member is both in Members and
// in RemoveMembers.
type Batch struct {
	Messages      []Message
	Rows          []Row
	Groups        []Group
	Members       []Member
	RemoveMembers []MemberKey
	Conversations []Conversation // whole entries but ReadSeq, which only Markers write
	Markers       []Marker
	Activities    []Activity
	Dedups        []Dedup
	Mentions      []Mention
	// Outbox, OutboxLows and Applied carry the cluster's fan-out between
	// shards (docs/cluster.md, "The write path in a cluster"). A node that
	// serves every shard writes none of them.
	Outbox     []OutboxRecord
	OutboxLows []OutboxLow
	Applied    []AppliedMark
	// Clock, when non-zero, records the highest msg id issued by snowflake
	// node ClockNode, so that a restarted node with its clock set back can
	// wait instead of reissuing ids.
	ClockNode int64
	Clock     uint64
}

// Empty reports whether b writes nothing.
func (b *Batch) Empty() bool {
	return len(b.Messages) == 0 && len(b.Rows) == 0 && len(b.Groups) == 0 &&
		len(b.Members) == 0 && len(b.RemoveMembers) == 0 && len(b.Conversations) == 0 &&
		len(b.Markers) == 0 && len(b.Activities) == 0 && len(b.Dedups) == 0 && b.Clock == 0 && len(b.Mentions) == 0 &&
		len(b.Outbox) == 0 && len(b.OutboxLows) == 0 && len(b.Applied) == 0
}

// Reset empties b, keeping its slices' capacity.
func (b *Batch) Reset() {
	*b = Batch{
		Messages:      b.Messages[:0],
		Rows:          b.Rows[:0],
		Groups:        b.Groups[:0],
		Members:       b.Members[:0],
		RemoveMembers: b.RemoveMembers[:0],
		Conversations: b.Conversations[:0],
		Markers:       b.Markers[:0],
		Activities:    b.Activities[:0],
		Dedups:        b.Dedups[:0],
		Mentions:      b.Mentions[:0],
		Outbox:        b.Outbox[:0],
		OutboxLows:    b.OutboxLows[:0],
		Applied:       b.Applied[:0],
	}
}

// Range selects entries of one timeline by sequence number. From and To are
// inclusive; To == 0 means no upper bound. Desc returns the newest first.
// Limit <= 0 means no limit. To page, repeat with From (or To, when Desc)
// moved past the last entry returned; stop when a page is shorter than Limit
// or a Desc page ends at seq 1 (To = 0 would mean unbounded).
//
// MaxBytes > 0 bounds a Messages read by the messages' Size: it returns the
// longest run whose sizes add up to at most MaxBytes, but always the first
// message, and reads little past it (a page that stops at MaxBytes is
// shorter than Limit: page on from its last entry). Inbox ignores it: rows
// are small and fixed-size.
type Range struct {
	From, To uint64
	Limit    int
	Desc     bool
	MaxBytes int
}

// MessageKey names one message.
type MessageKey struct {
	Conv, ConvSeq uint64
}

// Writer applies batches.
type Writer interface {
	// Commit applies b atomically and durably: when it returns nil every
	// write of b survives a crash; when the process dies during Commit, a
	// reopened store holds all of b or none of it. After an error the
	// batch may or may not have been applied, but it is settled: no part of
	// it lands later, so a read that follows sees the final state. (The
	// writer reloads its sequence numbers from the store after an error and
	// must not be overtaken by a late write.) Committing b again is safe.
	// A Commit whose ctx is already done returns an error wrapping ctx.Err().
	// Commit does not retain b.
	Commit(ctx context.Context, b *Batch) error
}

// Applier is a Writer that can hand a batch over without waiting for it to
// become durable, so that its caller builds the next batch meanwhile.
type Applier interface {
	// Apply hands b over as Commit does and returns before b is durable.
	// Readers may see b as soon as Apply returns; a caller that must not
	// show what a crash could take back caps its reads at the batches
	// whose Wait returned nil. Batches are made durable in the order they
	// were applied, and a failed one fails those applied after it. The
	// caller calls Wait exactly once (Close waits for that).
	Apply(ctx context.Context, b *Batch) (Pending, error)
}

// Pending is a batch handed over by Apply.
type Pending interface {
	// Wait returns nil once the batch is durable, or the error that kept
	// it from becoming so (it may still be visible and may land).
	Wait() error
}

// TimelineReader reads the two kinds of timelines. Returned slices belong to
// the caller.
type TimelineReader interface {
	// Inbox returns the user's inbox rows in r.
	Inbox(ctx context.Context, user uint64, r Range) ([]Row, error)
	// LastInboxSeq returns the seq of the user's newest inbox row, 0 if none.
	LastInboxSeq(ctx context.Context, user uint64) (uint64, error)
	// Messages returns the conversation's messages in r.
	Messages(ctx context.Context, conv uint64, r Range) ([]Message, error)
	// LastConvSeq returns the conv_seq of the conversation's newest message,
	// 0 if none.
	LastConvSeq(ctx context.Context, conv uint64) (uint64, error)
	// MessagesByKey returns the messages named by keys, in the order of keys.
	// A missing message is an error wrapping ErrNotFound. With maxBytes > 0
	// it returns only the longest prefix whose sizes add up to at most
	// maxBytes (the first message always), and reads little past it.
	MessagesByKey(ctx context.Context, keys []MessageKey, maxBytes int) ([]Message, error)
}

// MetaReader reads the group metadata.
type MetaReader interface {
	Group(ctx context.Context, conv uint64) (Group, error)
	// Members returns the current members ordered by user id.
	Members(ctx context.Context, conv uint64) ([]Member, error)
	Conversation(ctx context.Context, user, conv uint64) (Conversation, error)
	// Conversations returns the user's conversation list ordered by conv id.
	Conversations(ctx context.Context, user uint64) ([]Conversation, error)
	// RecentConversations returns up to limit entries of the user's
	// conversation list in the order of the activity index (see Activity):
	// the latest activity first, on equal times the higher conv id first,
	// skipping the first offset. Its cost grows with offset+limit, not with
	// the length of the list.
	RecentConversations(ctx context.Context, user uint64, offset, limit int) ([]Conversation, error)
	Dedup(ctx context.Context, sender uint64, clientMsgID string) (Dedup, error)
	// Mentions returns the conv_seqs of the Mention records of (conv, user)
	// in r, ascending; r.Desc and r.MaxBytes are ignored.
	Mentions(ctx context.Context, conv, user uint64, r Range) ([]uint64, error)
	// Clock returns the value last committed as Batch.Clock for node, 0 if none.
	Clock(ctx context.Context, node int64) (uint64, error)
}

// OutboxReader reads the fan-out owed between shards.
type OutboxReader interface {
	// Outbox returns up to limit records of source's outbox with Seq above
	// after, in Seq order. Records at or below the low-water mark may be
	// gone: read from OutboxLow on.
	Outbox(ctx context.Context, source int, after uint64, limit int) ([]OutboxRecord, error)
	// OutboxLow returns source's low-water mark, 0 if none.
	OutboxLow(ctx context.Context, source int) (uint64, error)
	// Applied returns the applied marks of every stream into dest, by
	// source ascending.
	Applied(ctx context.Context, dest int) ([]AppliedMark, error)
}

// Store is a complete backend.
type Store interface {
	Writer
	TimelineReader
	MetaReader
	OutboxReader
	Close() error
}

// Budget counts the sizes of messages against a read budget of max bytes
// (max <= 0: unbounded). Backends use it to stop a read at the budget.
type Budget struct {
	max, used, n int
}

// NewBudget returns a budget of max bytes; max <= 0 is unbounded.
func NewBudget(max int) Budget { return Budget{max: max} }

// Take charges m and reports whether it is part of the answer: the first
// message always is, a later one if the total stays within the budget.
func (b *Budget) Take(m *Message) bool { return b.TakeSize(m.Size()) }

// TakeSize is Take for an entry of size bytes.
func (b *Budget) TakeSize(size int) bool {
	if b.max > 0 && b.n > 0 && b.used+size > b.max {
		return false
	}
	b.used += size
	b.n++
	return true
}

// Left returns the bytes left to take, as a maxBytes argument: 0 when the
// budget is unbounded, at least 1 otherwise.
func (b *Budget) Left() int {
	if b.max <= 0 {
		return 0
	}
	return max(b.max-b.used, 1)
}

// Full reports whether no further message can be part of the answer.
func (b *Budget) Full() bool {
	return b.max > 0 && b.n > 0 && b.used+MessageOverhead > b.max
}

// Next returns how many of the left keys to read next: all of them when the
// budget is unbounded, else as many as the budget left holds at the mean
// size seen so far (first, a few), so that a read in rounds fetches about
// what the budget takes.
func (b *Budget) Next(left int) int {
	const first = 4
	switch {
	case b.max <= 0:
		return left
	case b.n == 0:
		return min(left, first)
	}
	mean := max(b.used/b.n, MessageOverhead)
	return min(left, max(1, (b.max-b.used)/mean))
}

// ByKeyInRounds implements MessagesByKey's budget over read, which returns
// the messages of keys in order: it reads keys in rounds sized by
// Budget.Next and stops at the budget. A backend that reads keys in any
// order (sorted, or in parallel) so stays within a round of the budget.
func ByKeyInRounds(keys []MessageKey, maxBytes int, read func(keys []MessageKey) ([]Message, error)) ([]Message, error) {
	if maxBytes <= 0 {
		return read(keys)
	}
	budget := NewBudget(maxBytes)
	var out []Message
	for len(keys) > 0 && !budget.Full() {
		n := budget.Next(len(keys))
		msgs, err := read(keys[:n])
		if err != nil {
			return nil, err
		}
		for i := range msgs {
			if !budget.Take(&msgs[i]) {
				return out, nil
			}
			out = append(out, msgs[i])
		}
		keys = keys[n:]
	}
	return out, nil
}
