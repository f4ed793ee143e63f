package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// Reads, SEND, SEND_DIRECT, RECALL and EDIT (deduplicated by their client
// msg id), MARK_READ (a marker never moves back), SET_DND, BLOCK and
// SET_GROUP_PROFILE (setting what is set changes nothing) are safe to
// repeat, so their methods retry
// on retryable codes and lost connections. Group changes are not: a retried
// INVITE that had been applied fails with INVALID, a retried CREATE_GROUP
// creates a second group. Their methods do not retry, and ErrConnLost leaves
// the outcome unknown (GroupInfo or Conversations tell).

// Send sends a message to conv and returns the server's ack once it is
// stored in every member's inbox. The message also reaches OnEntry, as an
// entry of the sender's own inbox.
//
// clientMsgID (1–64 bytes of UTF-8) is the message's idempotency key, unique
// among all of the user's messages: Send resends under it after a retryable
// error or a lost connection, and a resend of a stored message returns the
// first ack with Duplicate set. The same id sent to another conversation is
// refused with INVALID: that message was not stored. Empty means a
// new random id; an application that persists outgoing messages should
// store the id with them (NewClientMsgID) and pass it again after a restart.
// kind is 1–32767 (1: UTF-8 text).
func (c *Client) Send(ctx context.Context, conv uint64, clientMsgID string, kind uint32, body []byte) (*wirepb.SendAck, error) {
	return c.SendMessage(ctx, &wirepb.SendRequest{Conv: conv, ClientMsgId: clientMsgID, Kind: kind, Body: body})
}

// SendMessage is Send of a whole request, for a message that mentions
// members (req.Mentions, at most wire.MaxMentions) or everyone
// (req.MentionAll, owner and admins only by default). An empty
// req.ClientMsgId is set to a new random id, which req then holds.
func (c *Client) SendMessage(ctx context.Context, req *wirepb.SendRequest) (*wirepb.SendAck, error) {
	if req.ClientMsgId == "" {
		req.ClientMsgId = NewClientMsgID()
	}
	ack := new(wirepb.SendAck)
	if err := c.doRetry(ctx, wire.CmdSend, req, ack); err != nil {
		return nil, err
	}
	return ack, nil
}

// Recall recalls the message at convSeq of conv (RECALL): the sender within
// the server's recall window (2 minutes by default; later: ErrTooLate), the
// owner and admins any time. The ack is that of the recall entry, which
// also reaches OnEntry; from then on the server serves the message with
// Recalled set and no body. clientMsgID is the retry key as in Send (empty:
// a new random id), so Recall retries like Send.
func (c *Client) Recall(ctx context.Context, conv, convSeq uint64, clientMsgID string) (*wirepb.SendAck, error) {
	if clientMsgID == "" {
		clientMsgID = NewClientMsgID()
	}
	ack := new(wirepb.SendAck)
	req := &wirepb.RecallRequest{Conv: conv, ConvSeq: convSeq, ClientMsgId: clientMsgID}
	if err := c.doRetry(ctx, wire.CmdRecall, req, ack); err != nil {
		return nil, err
	}
	return ack, nil
}

// Edit replaces the body of the message at convSeq of conv (EDIT): the
// sender within the server's edit window (24 hours by default), the owner
// and admins any time. It is Recall's twin: the ack is that of the edit
// entry, and from then on the server serves the message with body and
// EditedMs set.
func (c *Client) Edit(ctx context.Context, conv, convSeq uint64, clientMsgID string, body []byte) (*wirepb.SendAck, error) {
	if clientMsgID == "" {
		clientMsgID = NewClientMsgID()
	}
	ack := new(wirepb.SendAck)
	req := &wirepb.EditRequest{Conv: conv, ConvSeq: convSeq, ClientMsgId: clientMsgID, Body: body}
	if err := c.doRetry(ctx, wire.CmdEdit, req, ack); err != nil {
		return nil, err
	}
	return ack, nil
}

// SendDirect sends a message to the user to, in their direct conversation
// with the user, which the first message creates; the ack's Conv names the
// conversation (wire.DirectConv(user, to)), and later messages may also go
// to it with Send. clientMsgID, kind and body and the retries are as Send's.
// It fails with ErrBlocked while to blocks the user, and with ErrInvalid
// for to = the user.
func (c *Client) SendDirect(ctx context.Context, to uint64, clientMsgID string, kind uint32, body []byte) (*wirepb.SendAck, error) {
	if clientMsgID == "" {
		clientMsgID = NewClientMsgID()
	}
	req := &wirepb.SendDirectRequest{To: to, ClientMsgId: clientMsgID, Kind: kind, Body: body}
	ack := new(wirepb.SendAck)
	if err := c.doRetry(ctx, wire.CmdSendDirect, req, ack); err != nil {
		return nil, err
	}
	return ack, nil
}

// Block makes the user refuse direct messages from user (on), or accept
// them again (off). Setting what is set changes nothing, so it is retried.
func (c *Client) Block(ctx context.Context, user uint64, on bool) error {
	return c.doRetry(ctx, wire.CmdBlock, &wirepb.BlockRequest{User: user, On: on}, new(wirepb.Empty))
}

// GroupProfile is a change of a group's profile for SetGroupProfile: nil
// fields stay as they are; an empty announcement or avatar URL clears it.
type GroupProfile struct {
	Name, Announcement, AvatarURL *string
}

// SetGroupProfile changes conv's name, announcement or avatar URL (owner and
// admins), each change a notice in the group. Setting what is set changes
// nothing, so it is retried.
func (c *Client) SetGroupProfile(ctx context.Context, conv uint64, p GroupProfile) error {
	req := &wirepb.SetGroupProfileRequest{Conv: conv, Name: p.Name, Announcement: p.Announcement, AvatarUrl: p.AvatarURL}
	return c.doRetry(ctx, wire.CmdSetGroupProfile, req, new(wirepb.Empty))
}

// NewClientMsgID returns a random client msg id: 32 hex digits.
func NewClientMsgID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// Sync returns one page of the user's inbox after afterSeq (limit 0: the
// server's default of 100, at most 1000). It is the raw request: the
// client's own sync loop, which feeds OnEntry, does not need it.
func (c *Client) Sync(ctx context.Context, afterSeq uint64, limit uint32) (*wirepb.SyncResponse, error) {
	resp := new(wirepb.SyncResponse)
	if err := c.doRetry(ctx, wire.CmdSync, &wirepb.SyncRequest{AfterSeq: afterSeq, Limit: limit}, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// History returns up to limit messages of conv before conv_seq before
// (0: the newest), newest first (limit 0: 20, at most 100). Open a
// conversation with History(ctx, conv, 0, 20), and scroll up with before
// set to the oldest conv_seq shown.
func (c *Client) History(ctx context.Context, conv, before uint64, limit uint32) ([]*wirepb.Message, error) {
	resp := new(wirepb.HistoryResponse)
	req := &wirepb.HistoryRequest{Conv: conv, BeforeConvSeq: before, Limit: limit}
	if err := c.doRetry(ctx, wire.CmdHistory, req, resp); err != nil {
		return nil, err
	}
	return resp.Messages, nil
}

// Conversations returns the user's conversations with their unread counts,
// latest activity first, asking for as many pages as the server's frame
// limit makes it send.
func (c *Client) Conversations(ctx context.Context) ([]*wirepb.Conversation, error) {
	var all []*wirepb.Conversation
	for {
		resp := new(wirepb.ConversationsResponse)
		req := &wirepb.ConversationsRequest{Offset: uint32(len(all))}
		if err := c.doRetry(ctx, wire.CmdConversations, req, resp); err != nil {
			return nil, err
		}
		all = append(all, resp.Conversations...)
		if !resp.HasMore || len(resp.Conversations) == 0 {
			return dedupConversations(all), nil
		}
	}
}

// dedupConversations keeps the first of each conversation: one that moved
// up the list between two pages (new activity) comes twice.
func dedupConversations(cs []*wirepb.Conversation) []*wirepb.Conversation {
	seen := make(map[uint64]bool, len(cs))
	out := cs[:0]
	for _, c := range cs {
		if !seen[c.Conv] {
			seen[c.Conv] = true
			out = append(out, c)
		}
	}
	return out
}

// MarkRead moves the user's read marker of conv to convSeq and returns the
// marker, which never moves back. The user's other devices learn it from a
// KindRead entry.
func (c *Client) MarkRead(ctx context.Context, conv, convSeq uint64) (uint64, error) {
	resp := new(wirepb.MarkReadResponse)
	if err := c.doRetry(ctx, wire.CmdMarkRead, &wirepb.MarkReadRequest{Conv: conv, ConvSeq: convSeq}, resp); err != nil {
		return 0, err
	}
	return resp.GetReadSeq(), nil
}

// GroupInfo returns a group and its members; only members may ask.
func (c *Client) GroupInfo(ctx context.Context, conv uint64) (*wirepb.GroupInfoResponse, error) {
	resp := new(wirepb.GroupInfoResponse)
	if err := c.doRetry(ctx, wire.CmdGroupInfo, &wirepb.ConvRequest{Conv: conv}, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// SetDND turns do-not-disturb (no offline pushes) of conv on or off.
func (c *Client) SetDND(ctx context.Context, conv uint64, on bool) error {
	return c.doRetry(ctx, wire.CmdSetDND, &wirepb.SetDNDRequest{Conv: conv, On: on}, new(wirepb.Empty))
}

// CreateGroup creates a group owned by the user, with the members listed,
// and returns it. It is not retried.
func (c *Client) CreateGroup(ctx context.Context, req *wirepb.CreateGroupRequest) (*wirepb.Group, error) {
	resp := new(wirepb.CreateGroupResponse)
	if err := c.Do(ctx, wire.CmdCreateGroup, req, resp); err != nil {
		return nil, err
	}
	return resp.GetGroup(), nil
}

// Invite adds users to conv. It is not retried.
func (c *Client) Invite(ctx context.Context, conv uint64, users ...uint64) error {
	return c.Do(ctx, wire.CmdInvite, &wirepb.InviteRequest{Conv: conv, Users: users}, new(wirepb.Empty))
}

// Join makes the user a member of an open group. It is not retried.
func (c *Client) Join(ctx context.Context, conv uint64) error {
	return c.Do(ctx, wire.CmdJoin, &wirepb.ConvRequest{Conv: conv}, new(wirepb.Empty))
}

// Leave ends the user's membership of conv. It is not retried.
func (c *Client) Leave(ctx context.Context, conv uint64) error {
	return c.Do(ctx, wire.CmdLeave, &wirepb.ConvRequest{Conv: conv}, new(wirepb.Empty))
}

// Kick removes user from conv. It is not retried.
func (c *Client) Kick(ctx context.Context, conv, user uint64) error {
	return c.Do(ctx, wire.CmdKick, &wirepb.KickRequest{Conv: conv, User: user}, new(wirepb.Empty))
}

// Dismiss ends the group; only its owner may. It is not retried.
func (c *Client) Dismiss(ctx context.Context, conv uint64) error {
	return c.Do(ctx, wire.CmdDismiss, &wirepb.ConvRequest{Conv: conv}, new(wirepb.Empty))
}

// SetRole gives user a role in conv: 1 member, 2 admin, 3 owner (which hands
// the group over). It is not retried.
func (c *Client) SetRole(ctx context.Context, conv, user uint64, role uint32) error {
	return c.Do(ctx, wire.CmdSetRole, &wirepb.SetRoleRequest{Conv: conv, User: user, Role: role}, new(wirepb.Empty))
}

// Mute stops user (0: the whole group but its owner and admins) from
// sending to conv until until; the zero time lifts the mute. It is not
// retried.
func (c *Client) Mute(ctx context.Context, conv, user uint64, until time.Time) error {
	var ms int64
	if !until.IsZero() {
		ms = until.UnixMilli()
	}
	return c.Do(ctx, wire.CmdMute, &wirepb.MuteRequest{Conv: conv, User: user, UntilMs: ms}, new(wirepb.Empty))
}

// ReadReceipts returns one page of who has read message convSeq of conv:
// counts of the members who received it (its sender left out) and of those
// who have read it, and a page of the readers' ids, ascending (with
// req.Unread: of the others). Ask again with AfterUser set to the answer's
// NextAfter until it is 0. Only members may ask. It is a read: retried.
func (c *Client) ReadReceipts(ctx context.Context, req *wirepb.ReadReceiptsRequest) (*wirepb.ReadReceiptsResponse, error) {
	resp := new(wirepb.ReadReceiptsResponse)
	if err := c.doRetry(ctx, wire.CmdReadReceipts, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// Typing tells the other members of conv who are online that the user is
// typing there. Call it at most every wire.TypingInterval while the user
// types. It is not retried: a refused or lost event is replaced by the
// next one, and past the server's rate it fails with ErrRateLimited.
func (c *Client) Typing(ctx context.Context, conv uint64) error {
	return c.Do(ctx, wire.CmdTyping, &wirepb.TypingRequest{Conv: conv}, new(wirepb.Empty))
}

// Presence returns which of users (at most wire.MaxPresenceUsers) have a
// device connected, ascending. It is a read: retried.
func (c *Client) Presence(ctx context.Context, users ...uint64) ([]uint64, error) {
	resp := new(wirepb.PresenceResponse)
	if err := c.doRetry(ctx, wire.CmdPresence, &wirepb.PresenceRequest{Users: users}, resp); err != nil {
		return nil, err
	}
	return resp.Online, nil
}
