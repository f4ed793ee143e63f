package inbox

import "github.com/inboxd/inboxd/timeline"

// Entry is a committed inbox row with the message it references. Msg is nil
// for KindRead rows. Entries handed out share their Msg: treat it as read-only.
type Entry struct {
	Row timeline.Row
	Msg *timeline.Message
}

// Notifier learns of every inbox entry once it is durable, so that it can
// push it to the user's online devices. Notify is called on one goroutine,
// in commit order (a user's entries arrive in seq order), and must not
// block. It reports whether the user has an online device.
type Notifier interface {
	Notify(user uint64, entries []Entry) (online bool)
}

// OfflinePusher receives the messages of members with no online device,
// except their own messages and those of conversations they set to
// do-not-disturb. It is called on the Notifier's goroutine and must not block.
type OfflinePusher interface {
	PushOffline(user uint64, e Entry)
}
