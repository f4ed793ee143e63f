package wire

import "time"

// Limits of the protocol, as docs/protocol.md's "Limits" table gives them.
// The Default… values are the server's defaults, which a deployment may
// change; a client learns the frame limit and the heartbeat of its server
// from AuthResponse. DefaultMaxFrame is beside the frame header.
const (
	// MaxClientMsgID bounds a SendRequest's client_msg_id, in bytes.
	MaxClientMsgID = 64
	// MaxGroupName bounds a group name, in bytes of UTF-8.
	MaxGroupName = 128
	// MaxAnnouncement bounds a group's announcement, in bytes of UTF-8.
	MaxAnnouncement = 4096
	// MaxAvatarURL bounds a group's avatar URL, in bytes.
	MaxAvatarURL = 1024
	// DefaultMaxBody bounds a message body, in bytes.
	DefaultMaxBody = 64 << 10
	// DefaultMaxGroupSize bounds a group's members, the owner included.
	DefaultMaxGroupSize = 500
	// MaxMentions bounds a SendRequest's mentions list (mention_all names
	// everyone in one flag).
	MaxMentions = 50
	// MaxMentionUnread caps Conversation.mention_unread: a client shows
	// more as "999+".
	MaxMentionUnread = 1000
	// DefaultRecallWindow and DefaultEditWindow are how long after sending
	// a sender may recall or edit a message; owner and admins may any time.
	DefaultRecallWindow = 2 * time.Minute
	DefaultEditWindow   = 24 * time.Hour

	// A SYNC or HISTORY request with limit 0 gets the default page; one
	// asking for more than the maximum gets the maximum.
	DefaultSyncLimit    = 100
	MaxSyncLimit        = 1000
	DefaultHistoryLimit = 20
	MaxHistoryLimit     = 100
	// A CONVERSATIONS page holds at most MaxConversationsLimit entries
	// (and at most a frame's worth).
	DefaultConversationsLimit = 100
	MaxConversationsLimit     = 100

	// A READ_RECEIPTS page lists at most MaxReceiptsLimit users.
	DefaultReceiptsLimit = 100
	MaxReceiptsLimit     = 1000
	// MaxPresenceUsers bounds the users of one PRESENCE request: a group
	// of the default size in one call.
	MaxPresenceUsers = 500

	// TypingInterval is how often a client repeats TYPING while its user
	// keeps typing in a conversation; TypingShown is how long a receiver
	// shows a typing event that no later one renews.
	TypingInterval = 3 * time.Second
	TypingShown    = 6 * time.Second
	// DefaultTypingRate and DefaultTypingBurst shape each connection's
	// TYPING requests (per second, a token bucket): room for a client that
	// follows TypingInterval in a few conversations at once. Past them the
	// answer is RATE_LIMITED and nothing is pushed.
	DefaultTypingRate  = 1
	DefaultTypingBurst = 5

	// DefaultHeartbeat is the interval a client sends HEARTBEAT at; a
	// connection silent for IdleHeartbeats of them is closed with IDLE.
	DefaultHeartbeat = 30 * time.Second
	IdleHeartbeats   = 3
	// DefaultAuthTimeout is the time from connect to AUTH before the server
	// closes with UNAUTHENTICATED.
	DefaultAuthTimeout = 10 * time.Second
	// DefaultRequestTimeout bounds one request; past it the answer is
	// TIMEOUT (retryable).
	DefaultRequestTimeout = 10 * time.Second
	// PreAuthMaxFrame bounds a frame, header included, until the AUTH
	// response: a token is small, and an unauthenticated connection must be
	// cheap to hold.
	PreAuthMaxFrame = 4 << 10
	// DefaultRateLimit and DefaultRateBurst shape a connection's frames,
	// whatever their command (per second, a token bucket); past them the
	// answer is RATE_LIMITED, and a connection refused a further burst is
	// closed.
	DefaultRateLimit = 100
	DefaultRateBurst = 200
	// DefaultUserRateLimit and DefaultUserRateBurst shape each user's SEND,
	// SYNC, HISTORY and CONVERSATIONS across all their connections.
	DefaultUserRateLimit = 100
	DefaultUserRateBurst = 200
	// DefaultMaxInFlight bounds a connection's requests waiting for their
	// responses; past it the answer is RATE_LIMITED.
	DefaultMaxInFlight = 256
	// DefaultMaxOutbound bounds the bytes a client leaves unread before the
	// server closes with SLOW_READER.
	DefaultMaxOutbound = 4 << 20
)
