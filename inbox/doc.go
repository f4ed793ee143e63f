// Package inbox is inboxd's chat service: groups, their members and
// messages, and each user's inbox with its contiguous seqs.
//
// Every change goes through one committer goroutine, which makes the
// service the single writer of every sequence key. A call such as
// SendGroupMessage becomes a command; the committer takes the commands
// waiting, in turns between the users they act for (a user's backlog never
// holds another user's command back), applies each to an overlay of the
// state (validate, dedup, assign
// conv_seq and msg id, fan out one inbox row per member with that member's
// next seq), and writes everything the commands produced in one atomic
// timeline.Batch (group commit). Only when the store reports the batch
// durable does a caller get its result — the ACK of a send means the message
// is in every member's inbox. Then each user's new rows go to the Notifier,
// and members with no online device to the OfflinePusher.
//
// The duties this gives the rest of inboxd, in order:
//
//  1. Open the store and call New; New waits out a clock set back behind the
//     last msg id issued by this snowflake node.
//  2. Call the service from any number of goroutines; a call that returns
//     an error wrapping ErrUnavailable (or a context error) may or may not
//     have been applied: retry a send with the same client msg id, and the
//     dedup record returns the first result instead of storing it twice.
//  3. Keep Notifier and OfflinePusher non-blocking: they run in commit order
//     on one goroutine, and a slow one holds back every push.
//  4. Close the service before the store.
//
// In a cluster (Config.Ownership names the shards this node serves; nil:
// all of them, the embedded mode) the same committer writes inbox rows only
// for the members of served shards, and one timeline.OutboxRecord per
// message for the others, in the same batch. Then the caller's duties grow:
//
//  5. Route each call to the node serving its shard: conversation commands
//     (sends, recalls and edits, group changes, SetDND, History, Group;
//     SendDirect and Block to the pair's, wire.DirectConv) to the
//     conversation's, user commands (Sync, Head, MarkRead, Conversations)
//     to the user's;
//     elsewhere they fail with ErrNotOwner, which is retryable.
//  6. Provide a Deliverer, which carries records to the node serving their
//     destination shards and calls Apply there; Apply is idempotent and
//     refuses records out of stream order, so a Deliverer may repeat a
//     request or lose one.
//
// docs/cluster.md, "The write path in a cluster", gives the design and the
// argument.
//
// There is no recovery step at start-up: a batch is atomic, so after a crash
// the store holds whole commands or nothing of them, and the sequencer reads
// each key's head from the newest row the store has. docs/architecture.md
// gives the whole argument.
//
// This package is the server's own (README, "Layout"): it has no
// compatibility promise. Clients use packages client, wire and token.
package inbox
