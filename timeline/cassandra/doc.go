// Package cassandra is inboxd's production storage backend: a
// timeline.Store in a Cassandra keyspace, written by one store at a time
// (the writer lease), or by the stores of the nodes of a cluster, each
// fenced per shard (Config.Fence).
//
// deploy/cassandra/schema.cql holds the tables, with the reason for each key
// and compaction strategy; the Cassandra section of docs/operations.md is
// the operators' guide. This comment says how the store keeps the contract of
// timeline.Store on a database that is atomic only within a partition.
//
// # Buckets
//
// A timeline is split into partitions by seq range: the inbox rows of a user
// with seqs in [b·BucketSize, (b+1)·BucketSize) live in partition (user, b),
// and a conversation's messages likewise by MessageBucketSize, so that no
// partition grows without bound. The contract does not make seqs contiguous
// (the conformance suite writes seqs up to 2^64−1), so the buckets in use are
// listed in an index table per kind of timeline, one row per bucket, written
// when a batch first writes into the bucket. A scan lists the buckets of its
// range from the index, in its direction, and reads them one after another a
// page at a time until its limit; the newest seq is the last row of the
// newest non-empty bucket. The bucket sizes are recorded in the keyspace when
// it is created, because rows are found only under the size they were
// written with.
//
// # Atomic commits: the batch log
//
// Commit makes a Batch atomic with a log in the keyspace:
//
//  1. It encodes the batch and writes it into a free slot of batch_log (a
//     partition per slot, in chunks of at most 512 KiB; in cluster mode
//     batch_log_nodes, a partition per node id and slot), the head row last.
//     The head's landing is the commit point.
//  2. It applies the batch's writes: each an upsert, or a delete, by primary
//     key, grouped per partition into unlogged batches and run on a bounded
//     pool of writers.
//  3. It clears the slot by overwriting it.
//
// Every write of the batch, the log entry included, carries one explicit
// timestamp T, the batch's, and every later write a higher one (the writer
// lease below keeps that true across stores). A crash before the head lands
// leaves nothing of the batch: nothing is applied before the head is
// acknowledged. A crash after it leaves the entry, and Open replays every
// entry left, in order of T, before it returns; replaying writes the same
// cells at the same T, so replaying a batch that was applied already, wholly
// or in part, changes nothing, and a later batch's writes still win.
//
// A Commit that fails without a crash retries timeouts, unavailable replicas
// and lost connections with backoff until they pass or ctx is done. If it
// gives up after the head was sent, whether the head landed is unknown. The
// store then keeps the entry in memory and every later call, read or write,
// first finishes it (writes the head again, applies the batch, clears the
// slot) and fails until it can. No read therefore returns a state that a part
// of the batch could still change, and the sequencer, which reloads its heads
// with LastInboxSeq and LastConvSeq after a failed commit, never reuses a seq
// that the batch holds: the batch is settled when Commit returns.
//
// A write that timed out may still land later, replayed by a replica's queue
// or by a hint. The apply writes are copies, at the same T, of what settle
// and replay write anyway. The one late write that could matter is a head
// found by no replay: were it to land after its slot was cleared, the next
// Open would apply a batch that was never committed, over seqs reused since.
// Timestamps forbid it: a slot is cleared at a timestamp above its entry's,
// and Open clears (fences) every slot at timestamps above every one the
// previous store could have used, so a late head is older than the row it
// lands on and is never read.
//
// Slots are overwritten, never deleted, so the log leaves no tombstones and
// reading it at Open stays cheap whatever passed through it. (A log that
// appended and deleted entries would pile up a tombstone per commit in its
// partition, to be bounded with a partition per epoch or a TTL; a fixed
// set of slots makes neither necessary.)
//
// Because the writes of one batch share T, two writes of one key in one
// batch would tie, and Cassandra keeps the larger value, not the later one:
// the store keeps only the last write of each metadata key. A member write
// and its removal in one batch tie too, and the deletion wins, as in Pebble,
// where removals are written last.
//
// # Gap-free reads
//
// Other readers see a batch while it is applied, so the apply is ordered:
//
//   - An inbox's rows in one bucket are one unlogged batch on one partition,
//     which Cassandra applies atomically and in isolation: a reader sees all
//     of them or none. Rows of a batch that span two buckets are written
//     lower bucket first, each write once the one before landed, and so is a
//     bucket's index row before its rows. Writes are split at 256 KiB, in seq
//     order, the same way. A reader therefore sees a prefix of the batch's
//     rows of a user, never seq N+1 without N; conversation timelines alike.
//     The small writes of a phase that have no such order, a partition's
//     alone, go packed, up to ten statements of several partitions in one
//     unlogged batch: Cassandra applies each partition's part of it
//     atomically and in isolation all the same, and the node answers one
//     request instead of ten.
//   - The writes run in three phases: messages, groups, members and
//     conversation entries, which inbox rows refer to or their readers look
//     up next; then inbox rows, read markers (a KindRead row carries its
//     marker's value), activity index moves (a delete and an insert in the
//     user's partition, one unlogged batch) and the clock; then dedup records, which tell a resend
//     that its message is stored, so that a resend is acknowledged only
//     once its message is in every inbox.
//
// Read and write consistency are the same (LOCAL_QUORUM by default), so a
// write that was acknowledged is seen by every later read.
//
// # One writer: the lease
//
// Without a fence, the inbox service is the single writer of every
// sequence key, and the store must be too: Open takes the keyspace's writer lease, a row of the
// lease table whose owner cell has a TTL, with a lightweight transaction
// (LWT), and a goroutine renews it every quarter TTL. A second store fails
// Open with ErrLeaseHeld, which names the holder and when its lease ends.
// The holder writes only while its last renewal is less than three quarters
// of the TTL old, so that it stops before the lease can expire; another
// store's taking the lease makes every later Commit fail with ErrLeaseLost.
// Close releases the lease. LWTs are used only here, never per message.
//
// Beside the owner, the lease row keeps two values without a TTL: the epoch,
// raised by each new holder, and ts_limit, above every timestamp the holder
// may use. A new holder starts its timestamps above ts_limit, so its writes
// supersede the last holder's, whatever the two clocks say. A holder whose
// lease expired while the cluster was unreachable takes it back when the
// cluster returns, if the epoch shows that nobody held it in between.
//
// # Many writers: cluster mode
//
// With Config.Fence (a *cluster.Node) the store is one of several on the
// keyspace, each serving the shards its node owns (docs/cluster.md). It
// takes no writer lease. Each batch's timestamp T comes from the fence: the
// last of Timestamp(s) for every shard s the batch writes, each earlier
// shard asked once more after T (fence.go gives the argument: T is above the
// ts_floor of every shard of the batch, and below the floor each will get
// when handed over). A shard not served fails the commit with ErrFenced
// before anything is written; the caller retries, here or on the shard's
// owner. A deposed node's write that lands late has a lower timestamp than
// the next owner's on every cell the next owner wrote, and readers cut the
// others at the committed heads.
//
// The batch log is per node (partitions (node id, slot)), its rows written
// at the node's own timestamps (LogTimestamp). Open replays the node's own
// log, as above. A dead node's log is replayed by SettleNode, called by
// whichever node settles it (cluster.Config.OnNodeDead): the same bytes at
// the same timestamps, harmless if two nodes do it at once; then its slots
// are cleared at the dead incarnation's ts_limit, above all its timestamps,
// so that a late head loses to the clear. The id's next incarnation starts
// its timestamps above that ts_limit, so its own entries win over the clear.
//
// This package is the server's own (README, "Layout"): it has no
// compatibility promise. Clients use packages client, wire and token.
package cassandra
