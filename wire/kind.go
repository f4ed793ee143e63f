package wire

import "strconv"

// Kind says what a message or an inbox entry is (docs/protocol.md,
// "Messages, entries and kinds"). Kinds below KindSystem are chosen by
// applications (text, image, …); the rest are the server's, and a client
// cannot send them. The wire carries a kind as a uint32 field; every kind
// fits in 16 bits, which is also how the server stores it.
type Kind uint16

const (
	// KindText is a plain UTF-8 text message.
	KindText Kind = 1
	// KindSystem is the first kind reserved for the server.
	KindSystem Kind = 0x8000
	// KindNotice is a group notification written by the server: creation,
	// invitations, joins, leaves, kicks, role and mute changes, dismissal.
	// Its body is a JSON Notice.
	KindNotice Kind = 0x8001
	// KindRead is an inbox-only entry (no message) telling a user's devices
	// that the user's read marker of the entry's conv moved to its conv_seq.
	KindRead Kind = 0x8002
	// KindDND is an inbox-only entry (no message) telling a user's devices
	// that the user turned do-not-disturb of the entry's conv on (conv_seq 1)
	// or off (0).
	KindDND Kind = 0x8003
	// KindSystemMessage is a message the application's backend posted into
	// a group through the server API (docs/api.md): a system or bot
	// message, from SystemSender, that needs no membership. Its body is
	// what the backend sent.
	KindSystemMessage Kind = 0x8004
	// KindRecall records that a message of the conversation was recalled:
	// its body is a JSON Amend naming it. From then on the server serves
	// the recalled message with Message.recalled set and no body.
	KindRecall Kind = 0x8005
	// KindEdit records that a message of the conversation was edited: its
	// body is a JSON Amend naming it, with the new body. From then on the
	// server serves the edited message with the new body and
	// Message.edited_ms set.
	KindEdit Kind = 0x8006
)

// SystemSender is the sender of KindSystemMessage messages: no user has id 0.
const SystemSender uint64 = 0

// HasMessage reports whether entries of kind k carry a message. The
// inbox-only kinds (KindRead, KindDND) carry their value in conv_seq instead.
func (k Kind) HasMessage() bool { return k != KindRead && k != KindDND }

// Amendable reports whether a message of kind k may be recalled or
// edited: the application kinds, not the server's.
func (k Kind) Amendable() bool { return k != 0 && k < KindSystem }

// Role is a member's rank in a group: the role field of SetRoleRequest and
// Member, and the role of a "role" notice by its String.
type Role uint8

const (
	RoleMember Role = 1
	RoleAdmin  Role = 2
	RoleOwner  Role = 3
)

// String is the role's name in notices: member, admin or owner.
func (r Role) String() string {
	switch r {
	case RoleMember:
		return "member"
	case RoleAdmin:
		return "admin"
	case RoleOwner:
		return "owner"
	}
	return "role(" + strconv.Itoa(int(r)) + ")"
}
