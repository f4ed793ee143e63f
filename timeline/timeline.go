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
}

// Member is one current member of a group.
type Member struct {
	Conv       uint64
	User       uint64
	Role       wire.Role
	JoinedAt   uint64 // conv_seq of the notice that made the user a member
	MutedUntil time.Time
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
	Dedups        []Dedup
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
		len(b.Markers) == 0 && len(b.Dedups) == 0 && b.Clock == 0
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
		Dedups:        b.Dedups[:0],
	}
}

// Range selects entries of one timeline by sequence number. From and To are
// inclusive; To == 0 means no upper bound. Desc returns the newest first.
// Limit <= 0 means no limit. To page, repeat with From (or To, when Desc)
// moved past the last entry returned; stop when a page is shorter than Limit
// or a Desc page ends at seq 1 (To = 0 would mean unbounded).
type Range struct {
	From, To uint64
	Limit    int
	Desc     bool
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
	// A missing message is an error wrapping ErrNotFound.
	MessagesByKey(ctx context.Context, keys []MessageKey) ([]Message, error)
}

// MetaReader reads the group metadata.
type MetaReader interface {
	Group(ctx context.Context, conv uint64) (Group, error)
	// Members returns the current members ordered by user id.
	Members(ctx context.Context, conv uint64) ([]Member, error)
	Conversation(ctx context.Context, user, conv uint64) (Conversation, error)
	// Conversations returns the user's conversation list ordered by conv id.
	Conversations(ctx context.Context, user uint64) ([]Conversation, error)
	Dedup(ctx context.Context, sender uint64, clientMsgID string) (Dedup, error)
	// Clock returns the value last committed as Batch.Clock for node, 0 if none.
	Clock(ctx context.Context, node int64) (uint64, error)
}

// Store is a complete backend.
type Store interface {
	Writer
	TimelineReader
	MetaReader
	Close() error
}
