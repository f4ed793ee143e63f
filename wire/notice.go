package wire

// Notice is the JSON body of a KindNotice message: what happened to the
// group, for clients to render (docs/protocol.md, "Notices"). Fields may be
// added; a client ignores those it does not know.
type Notice struct {
	Type  NoticeType `json:"type"`
	Actor uint64     `json:"actor"` // the user who acted, also the message's sender
	Users []uint64   `json:"users,omitempty"`
	Role  string     `json:"role,omitempty"`  // role: the new role, a Role's String
	Until int64      `json:"until,omitempty"` // mute, mute_group: unix ms; 0 lifts the mute
	Owner uint64     `json:"owner,omitempty"` // leave: the new owner when the owner left
	Name  string     `json:"name,omitempty"`  // create, rename: the group name

	// Announcement and AvatarURL are the new values of an "announcement"
	// or "avatar" notice; the empty string clears them, so they are always
	// present in those notices.
	Announcement *string `json:"announcement,omitempty"`
	AvatarURL    *string `json:"avatar_url,omitempty"`

	Text string `json:"text"` // an English rendering, for clients that show it as is
}

// NoticeType says what a notice reports.
type NoticeType string

const (
	NoticeCreate    NoticeType = "create"     // Users: the members invited
	NoticeInvite    NoticeType = "invite"     // Users: the users invited
	NoticeJoin      NoticeType = "join"       // Actor joined an open group
	NoticeLeave     NoticeType = "leave"      // Actor left; Owner: the new owner, if Actor owned the group
	NoticeKick      NoticeType = "kick"       // Users: the user removed
	NoticeDismiss   NoticeType = "dismiss"    // the group is dismissed
	NoticeRole      NoticeType = "role"       // Users: the user given Role
	NoticeMute      NoticeType = "mute"       // Users: the user muted until Until
	NoticeMuteGroup NoticeType = "mute_group" // the whole group muted until Until

	NoticeRename   NoticeType = "rename"       // Name: the group's new name
	NoticeAnnounce NoticeType = "announcement" // Announcement: the new announcement, "" when cleared
	NoticeAvatar   NoticeType = "avatar"       // AvatarURL: the new avatar URL, "" when cleared
)
