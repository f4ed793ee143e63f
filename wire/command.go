package wire

import "fmt"

// Command says what a frame asks for or answers. docs/protocol.md lists the
// request and response body of each.
type Command uint16

const (
	CmdAuth          Command = 1   // AuthRequest → AuthResponse
	CmdHeartbeat     Command = 2   // Empty → Empty
	CmdSend          Command = 3   // SendRequest → SendAck
	CmdPush          Command = 4   // server-initiated Push
	CmdSync          Command = 5   // SyncRequest → SyncResponse
	CmdHistory       Command = 6   // HistoryRequest → HistoryResponse
	CmdConversations Command = 7   // ConversationsRequest → ConversationsResponse
	CmdMarkRead      Command = 8   // MarkReadRequest → MarkReadResponse
	CmdCreateGroup   Command = 16  // CreateGroupRequest → CreateGroupResponse
	CmdInvite        Command = 17  // InviteRequest → Empty
	CmdJoin          Command = 18  // ConvRequest → Empty
	CmdLeave         Command = 19  // ConvRequest → Empty
	CmdKick          Command = 20  // KickRequest → Empty
	CmdDismiss       Command = 21  // ConvRequest → Empty
	CmdSetRole       Command = 22  // SetRoleRequest → Empty
	CmdMute          Command = 23  // MuteRequest → Empty
	CmdSetDND        Command = 24  // SetDNDRequest → Empty
	CmdGroupInfo     Command = 25  // ConvRequest → GroupInfoResponse
	CmdError         Command = 255 // server-initiated Error, then the server closes
)

// Direct conversations and group profiles (docs/protocol.md, "Direct
// conversations" and SET_GROUP_PROFILE).
const (
	CmdSendDirect      Command = 9  // SendDirectRequest → SendAck
	CmdBlock           Command = 10 // BlockRequest → Empty
	CmdSetGroupProfile Command = 26 // SetGroupProfileRequest → Empty
)

// CmdPeerFirst is the first of the commands 0x8000–0xFFFF, reserved for
// the traffic between inboxd nodes (package peer, docs/cluster.md). No
// client command is ever numbered in that range, and a client never sends
// one: a server answers it UNKNOWN_COMMAND on a client connection.
const CmdPeerFirst Command = 0x8000

var commandNames = map[Command]string{
	CmdAuth: "AUTH", CmdHeartbeat: "HEARTBEAT", CmdSend: "SEND", CmdPush: "PUSH",
	CmdSync: "SYNC", CmdHistory: "HISTORY", CmdConversations: "CONVERSATIONS",
	CmdMarkRead: "MARK_READ", CmdCreateGroup: "CREATE_GROUP", CmdInvite: "INVITE",
	CmdJoin: "JOIN", CmdLeave: "LEAVE", CmdKick: "KICK", CmdDismiss: "DISMISS",
	CmdSetRole: "SET_ROLE", CmdMute: "MUTE", CmdSetDND: "SET_DND",
	CmdGroupInfo: "GROUP_INFO", CmdError: "ERROR",
	CmdSendDirect: "SEND_DIRECT", CmdBlock: "BLOCK", CmdSetGroupProfile: "SET_GROUP_PROFILE",
}

func (c Command) String() string {
	if s, ok := commandNames[c]; ok {
		return s
	}
	return fmt.Sprintf("COMMAND(%d)", uint16(c))
}

// Known reports whether c is a command of this protocol version.
func (c Command) Known() bool {
	_, ok := commandNames[c]
	return ok
}

// Code is an error code carried in an Error body.
type Code uint32

const (
	CodeBadRequest      Code = 1  // a body that does not decode
	CodeUnauthenticated Code = 2  // no AUTH yet, or a bad or forged token; the server closes
	CodeTokenExpired    Code = 3  // the token's expiry passed; the server closes
	CodeForbidden       Code = 4  // the user's role does not allow it
	CodeNotMember       Code = 5  // not a member of the conversation
	CodeNoGroup         Code = 6  // no such group
	CodeDismissed       Code = 7  // the group was dismissed
	CodeMuted           Code = 8  // the sender or the group is muted
	CodeGroupFull       Code = 9  // the group would exceed its maximum size
	CodeInvalid         Code = 10 // an argument out of range (kind, sizes, ids)
	CodeUnknownCommand  Code = 11 // a command this server does not know
	CodeFrameTooLarge   Code = 12 // the frame exceeds max_frame; the server closes
	CodeRateLimited     Code = 13 // retry after retry_after_ms
	CodeUnavailable     Code = 14 // storage unavailable; retry (same client_msg_id)
	CodeTimeout         Code = 15 // the server did not finish in time; retry (same client_msg_id)
	CodeSlowReader      Code = 16 // the client did not read its pushes; the server closes
	CodeReplaced        Code = 17 // the same device connected again; the server closes this one
	CodeShuttingDown    Code = 18 // the server is stopping; reconnect later
	CodeVersion         Code = 19 // unsupported protocol version; the server closes
	CodeInternal        Code = 20 // a server bug; retry may help
	CodeIdle            Code = 21 // no frame within the idle timeout; the server closes
	CodeRedirect        Code = 22 // another node serves the user: reconnect to Error.redirect
	CodeBanned          Code = 23 // the user is banned (server API); the server closes
	CodeRevoked         Code = 24 // the token was revoked (server API): a new one is needed; the server closes
	CodeBlocked         Code = 25 // the recipient of a direct message blocked the sender
)

var codeNames = map[Code]string{
	CodeBadRequest: "BAD_REQUEST", CodeUnauthenticated: "UNAUTHENTICATED", CodeTokenExpired: "TOKEN_EXPIRED",
	CodeForbidden: "FORBIDDEN", CodeNotMember: "NOT_MEMBER", CodeNoGroup: "NO_GROUP",
	CodeDismissed: "DISMISSED", CodeMuted: "MUTED", CodeGroupFull: "GROUP_FULL",
	CodeInvalid: "INVALID", CodeUnknownCommand: "UNKNOWN_COMMAND", CodeFrameTooLarge: "FRAME_TOO_LARGE",
	CodeRateLimited: "RATE_LIMITED", CodeUnavailable: "UNAVAILABLE", CodeTimeout: "TIMEOUT",
	CodeSlowReader: "SLOW_READER", CodeReplaced: "REPLACED", CodeShuttingDown: "SHUTTING_DOWN",
	CodeVersion: "VERSION", CodeInternal: "INTERNAL", CodeIdle: "IDLE",
	CodeRedirect: "REDIRECT", CodeBanned: "BANNED", CodeRevoked: "REVOKED",
	CodeBlocked: "BLOCKED",
}

// String is the name docs/protocol.md gives the code.
func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("CODE_%d", uint32(c))
}

// Retryable reports whether a request that failed with c may succeed if
// sent again unchanged.
func (c Code) Retryable() bool {
	switch c {
	case CodeRateLimited, CodeUnavailable, CodeTimeout, CodeShuttingDown, CodeInternal:
		return true
	}
	return false
}
