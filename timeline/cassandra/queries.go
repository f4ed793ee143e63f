package cassandra

import "fmt"

// queries holds every statement of the store, with the keyspace spliced in
// (statements name their tables in full, so the session needs no keyspace
// and Open can create it). The driver prepares each on first use.
type queries struct {
	inbox, messages timelineQueries

	insertMessage, insertRow                string
	insertGroup, insertMember, deleteMember string
	insertConversation, updateMarker        string
	insertActivity, deleteActivity          string
	insertDedup, insertClock                string

	messagesIn, group, members                string
	conversation, conversations, dedup, clock string
	recent, conversationsIn                   string
	allConversations, member, messageTime     string
	insertMention, mentions                   string

	insertOutbox, dropOutbox, insertOutboxLow, insertApplied string
	outbox, outboxLow, applied                               string

	insertLog, scanLog           string
	insertNodeLog, scanNodeLog   string
	insertSetting, updateSetting string

	readLease, takeLease, extendLease, dropLease string
}

// timelineQueries are the statements of one kind of timeline: an entries
// table partitioned by (key, bucket) and its bucket index, partitioned by key.
type timelineQueries struct {
	bucketSize   uint64 // seqs per partition, set by Open from the settings
	insertBucket string
	// buckets lists the key's buckets in [lo, hi], rows its entries of one
	// bucket in [from, to]; index 0 ascending, 1 descending.
	buckets [2]string
	rows    [2]string
	last    string // the newest seq of one bucket
}

func newTimelineQueries(ks, table, bucketTable, key, seq, columns string) timelineQueries {
	var q timelineQueries
	q.insertBucket = fmt.Sprintf("INSERT INTO %s.%s (%s, bucket) VALUES (?, ?)", ks, bucketTable, key)
	for i, dir := range []string{"ASC", "DESC"} {
		q.buckets[i] = fmt.Sprintf("SELECT bucket FROM %s.%s WHERE %s = ? AND bucket >= ? AND bucket <= ? ORDER BY bucket %s",
			ks, bucketTable, key, dir)
		q.rows[i] = fmt.Sprintf("SELECT %s FROM %s.%s WHERE %s = ? AND bucket = ? AND %s >= ? AND %s <= ? ORDER BY %s %s",
			columns, ks, table, key, seq, seq, seq, dir)
	}
	q.last = fmt.Sprintf("SELECT %s FROM %s.%s WHERE %s = ? AND bucket = ? ORDER BY %s DESC LIMIT 1", seq, ks, table, key, seq)
	return q
}

// The columns read for an inbox row and for a message, in the order the
// scanners take them.
const (
	rowColumns     = "seq, conv, conv_seq, msg_id, kind"
	messageColumns = "conv_seq, msg_id, sender, client_msg_id, kind, body, time, mentions, mention_all, recalled, edited, last_edit"
)

func newQueries(ks string) queries {
	f := func(format string) string { return fmt.Sprintf(format, ks) }
	return queries{
		inbox:    newTimelineQueries(ks, "inbox", "inbox_buckets", "user", "seq", rowColumns),
		messages: newTimelineQueries(ks, "messages", "message_buckets", "conv", "conv_seq", messageColumns),

		insertRow: f("INSERT INTO %s.inbox (user, bucket, seq, conv, conv_seq, msg_id, kind) VALUES (?, ?, ?, ?, ?, ?, ?)"),
		insertMessage: f("INSERT INTO %s.messages (conv, bucket, conv_seq, msg_id, sender, client_msg_id, kind, body, time, " +
			"mentions, mention_all, recalled, edited, last_edit) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
		insertGroup: f("INSERT INTO %s.groups (conv, name, owner, created, open, muted_until, dismissed, " +
			"announcement, avatar_url, direct_a, direct_b, blocked_a, blocked_b) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
		insertMember:       f("INSERT INTO %s.members (conv, user, role, joined_at, muted_until, dnd) VALUES (?, ?, ?, ?, ?, ?)"),
		deleteMember:       f("DELETE FROM %s.members WHERE conv = ? AND user = ?"),
		insertConversation: f("INSERT INTO %s.conversations (user, conv, joined_at, left_at, dnd) VALUES (?, ?, ?, ?, ?)"),
		// The read marker is a column of its own, written alone: a blind
		// write that an entry's INSERT, which leaves it out, never touches.
		updateMarker:   f("UPDATE %s.conversations SET read_seq = ? WHERE user = ? AND conv = ?"),
		insertActivity: f("INSERT INTO %s.conversation_activity (user, active, conv) VALUES (?, ?, ?)"),
		deleteActivity: f("DELETE FROM %s.conversation_activity WHERE user = ? AND active = ? AND conv = ?"),
		insertDedup:    f("INSERT INTO %s.dedups (sender, client_msg_id, conv, conv_seq, msg_id, time) VALUES (?, ?, ?, ?, ?, ?)"),
		insertClock:    f("INSERT INTO %s.clocks (node, clock) VALUES (?, ?)"),
		insertMention:  f("INSERT INTO %s.mentions (conv, user, conv_seq) VALUES (?, ?, ?)"),

		messagesIn: f("SELECT " + messageColumns + " FROM %s.messages WHERE conv = ? AND bucket = ? AND conv_seq IN ?"),
		group: f("SELECT name, owner, created, open, muted_until, dismissed, " +
			"announcement, avatar_url, direct_a, direct_b, blocked_a, blocked_b FROM %s.groups WHERE conv = ?"),
		members:       f("SELECT user, role, joined_at, muted_until, dnd FROM %s.members WHERE conv = ?"),
		conversation:  f("SELECT joined_at, left_at, dnd, read_seq FROM %s.conversations WHERE user = ? AND conv = ?"),
		conversations: f("SELECT conv, joined_at, left_at, dnd, read_seq FROM %s.conversations WHERE user = ?"),
		dedup:         f("SELECT conv, conv_seq, msg_id, time FROM %s.dedups WHERE sender = ? AND client_msg_id = ?"),
		clock:         f("SELECT clock FROM %s.clocks WHERE node = ?"),
		mentions:      f("SELECT conv_seq FROM %s.mentions WHERE conv = ? AND user = ? AND conv_seq >= ? AND conv_seq <= ?"),

		recent:          f("SELECT conv FROM %s.conversation_activity WHERE user = ? ORDER BY active DESC, conv DESC"),
		conversationsIn: f("SELECT conv, joined_at, left_at, dnd, read_seq FROM %s.conversations WHERE user = ? AND conv IN ?"),

		// The upgrade from format 1 (upgrade.go).
		allConversations: f("SELECT user, conv, joined_at, left_at, dnd, read_seq FROM %s.conversations"),
		member:           f("SELECT role, joined_at, muted_until FROM %s.members WHERE conv = ? AND user = ?"),
		messageTime:      f("SELECT time FROM %s.messages WHERE conv = ? AND bucket = ? AND conv_seq = ?"),

		insertOutbox:    f("INSERT INTO %s.outbox (source, seq, data) VALUES (?, ?, ?)"),
		dropOutbox:      f("DELETE FROM %s.outbox WHERE source = ? AND seq <= ?"),
		insertOutboxLow: f("INSERT INTO %s.outbox_low (source, low) VALUES (?, ?)"),
		insertApplied:   f("INSERT INTO %s.applied (dest, source, stream) VALUES (?, ?, ?)"),
		outbox:          f("SELECT data FROM %s.outbox WHERE source = ? AND seq > ? ORDER BY seq LIMIT ?"),
		outboxLow:       f("SELECT low FROM %s.outbox_low WHERE source = ?"),
		applied:         f("SELECT source, stream FROM %s.applied WHERE dest = ?"),

		insertLog: f("INSERT INTO %s.batch_log (slot, chunk, ts, chunks, data) VALUES (?, ?, ?, ?, ?)"),
		scanLog:   f("SELECT slot, chunk, ts, chunks, data FROM %s.batch_log"),
		// The slots are the last column of the partition key: IN lists
		// them, so that a node's log is read in one query.
		insertNodeLog: f("INSERT INTO %s.batch_log_nodes (node, slot, chunk, ts, chunks, data) VALUES (?, ?, ?, ?, ?, ?)"),
		scanNodeLog:   f("SELECT slot, chunk, ts, chunks, data FROM %s.batch_log_nodes WHERE node = ? AND slot IN ?"),

		insertSetting: f("INSERT INTO %s.settings (name, value) VALUES (?, ?) IF NOT EXISTS"),
		updateSetting: f("UPDATE %s.settings SET value = ? WHERE name = ? IF value = ?"),

		readLease: f("SELECT owner, epoch, ts_limit, TTL(owner) FROM %s.lease WHERE name = ?"),
		// The owner expires with the lease; the epoch and the timestamp
		// limit outlive it, for the next holder. Hence two statements, in
		// one conditional batch.
		takeLease:   f("UPDATE %s.lease USING TTL ? SET owner = ? WHERE name = ? IF owner = ? AND epoch = ?"),
		extendLease: f("UPDATE %s.lease SET epoch = ?, ts_limit = ? WHERE name = ?"),
		dropLease:   f("DELETE owner FROM %s.lease WHERE name = ? IF owner = ? AND epoch = ?"),
	}
}
