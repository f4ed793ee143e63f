// Package pebble is inboxd's embedded storage backend: a timeline.Store kept
// in one Pebble database in one data directory, used by one process.
//
// Commit writes a whole timeline.Batch as one Pebble batch, synced to the
// write-ahead log before it returns, so a batch survives a crash whole or not
// at all. Pebble's directory lock keeps a second process (or a second Open in
// this one) out; Open reports that as ErrLocked.
//
// # Key layout
//
// Every key starts with one byte naming the record type, followed by
// fixed-width big-endian ids and seqs, so that byte order is numeric order and
// each timeline, member list and conversation list is one contiguous key range:
//
//	'i' user(8) seq(8)          inbox row
//	'c' conv(8) conv_seq(8)     message of a conversation timeline
//	'g' conv(8)                 group
//	'm' conv(8) user(8)         member
//	'u' user(8) conv(8)         conversation list entry, without its read marker
//	'r' user(8) conv(8)         read marker
//	'a' user(8) ^window(8) ^conv(8) activity index entry (value: the exact time)
//	'd' sender(8) client_msg_id dedup record (client_msg_id is the rest of the key)
//	'k' node(8)                 snowflake clock of a node (int64 as two's complement)
//	'n' conv(8) user(8) conv_seq(8) mention (value: the version byte; user 0: @all)
//	'b' user(8) device          restriction: a ban, a revocation (restrictions.go)
//	'v'                         format version of the whole store (uvarint)
//
// The activity index lists a user's conversations by last activity: window
// is the Unix milliseconds of the start of the tenth of a second
// (activityWindow) in which the newest message the user has in conv falls,
// sign bit flipped, and both it and conv are inverted (^), so that a
// forward scan yields the latest window first; the value holds the
// message's exact time, by which a read orders the entries of one window.
// Commit rewrites an entry in place while its window stays the same and
// moves it (deleting the old key) when it changes: a busy conversation costs each member one record a
// commit, not a delete and a set, and leaves no tombstone.
//
// Read markers are kept apart from conversation entries so that writing an
// entry (on join, leave, DND change) can never move a marker back: the two
// writers touch different keys and Conversations merges them on read.
//
// # Values
//
// Every value starts with a version byte (currently 1) and then holds the
// record's remaining fields in a fixed order: integers as uvarints, signed
// ones (times, in Unix milliseconds) as zigzag varints, strings and bytes
// length-prefixed, booleans as bits of one flags byte. Decoders reject
// unknown versions, truncated or trailing bytes and out-of-range fields with
// an error; they never panic on corrupt input. A message value may end with
// an amendment section (flags, edit time, newest edit, mentions) that only a
// message mentioning someone, recalled or edited has: values written before
// it existed read as messages without any of these.
//
// The store's format version ('v') is written when a directory is first
// opened; Open upgrades the versions before it (format 2 keyed activity
// entries by their exact time, without a value) and refuses a directory
// whose format it does not know.
//
// This package is the server's own (README, "Layout"): it has no
// compatibility promise. Clients use packages client, wire and token.
package pebble
