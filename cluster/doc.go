// Package cluster makes several inboxd processes share one Cassandra
// keyspace: node leases, and the ownership of shards by nodes, with
// fencing, so that at any instant at most one node serves a shard and a
// deposed owner's late writes lose to its successor's.
//
// # Contract
//
// Users and conversations map to a fixed number of shards (ShardOf),
// recorded in the keyspace's settings table by the first node. Callers
// (the gateway and the service) use the Ownership interface, implemented
// by *Node for a cluster and by *Local for the embedded single-node mode,
// which serves every shard always. For each write to a shard's rows the
// caller:
//
//  1. takes a timestamp with Timestamp(shard), which fails unless this node
//     serves the shard now, and writes with it (USING TIMESTAMP);
//  2. on ErrNotServing asks Owner(shard) where to send the request, and on
//     ErrExpired retries shortly (a renewal is late);
//  3. in Config.Drain stops taking work for the shard and waits for the
//     writes in flight, before the node hands the shard over;
//  4. in Config.OnNodeDead finishes what a dead node left half done, before
//     anyone serves its shards;
//  5. watches Changes to learn of shards gained and lost, and Lost for the
//     end of the node's lease (after which it must Join anew).
//
// Rows that belong to the node rather than to a shard (its batch log) are
// written with LogTimestamp: a new incarnation of a node id starts above
// its predecessor's ts_limit, at which the settler cleared them.
//
// Leave hands every shard over and frees the node id (SIGTERM); Close
// stops as a crash would.
//
// # Tables
//
// nodes has one partition per node id (0 to 1023, the id is also the
// node's snowflake id): its incarnation (raised each time the id is
// claimed), addresses, beat (changed by every renewal), ts_limit (above
// every write timestamp of the incarnation, Unix µs) and state (live,
// leaving, dead, settled). shards has one partition with a row per shard:
// the owner (node and incarnation), an epoch raised by every change and
// ts_floor, at or below every timestamp the next owner uses. Both are
// written only with lightweight transactions; renewals cost one per node
// per quarter TTL, whatever the number of shards or messages. They are
// part of deploy/cassandra/schema.cql and of the schema timeline/cassandra
// creates (Config.CreateSchema) and checks at Open: this package neither
// creates nor checks them.
//
// # Leases without trusted clocks
//
// A node renews by a transaction that raises its beat (and ts_limit to
// about now + TTL), conditional on its incarnation, beat and state. It
// serves until the monotonic instant it SENT its last renewal that
// succeeded, plus 3/4 TTL. An observer declares a node dead only after
// reading the same (incarnation, beat) for longer than TTL + TTL/8 on its
// own monotonic clock, counted from the first read that returned it, and
// then with a transaction conditional on that beat (WeChat seqsvr's rule:
// the holder gives up before the arbiter moves its work).
//
// Why the holder has stopped by then: the kill applies only if the beat is
// still b, so the holder's last successful renewal is the one that wrote b
// (or the claim of its id). That write was sent at some instant s, before
// it took effect, which was before any read returned b — in particular
// before the observer's first read r0 of b. The holder serves until at
// most s + 3/4 TTL ≤ r0 + 3/4 TTL, while the kill is sent after
// r0 + TTL + TTL/8: the holder stopped at least 3/8 TTL (over a second at
// the default 3 s) before, a margin that covers the difference in the rates
// of the two clocks many times over. Only the rates matter: no instant is
// compared across machines. A renewal sent after the kill finds the state
// dead and does not apply: the node reports Lost and serves nothing more.
//
// A shard moves in one of three ways, and in each the old owner has stopped
// before the new one starts:
//
//   - Handover (balancing, Leave): the owner stops serving the shard and
//     drains it, then sets the row to the target with ts_floor above every
//     timestamp it handed out; the target serves it from its next read. A
//     handover whose reply was lost is sent again until the reply says,
//     and the shard is not served meanwhile: the coordinator may still be
//     at work on it.
//   - Takeover: a shard naming a dead incarnation is claimable only once
//     the row is settled (after OnNodeDead returned nil), so after the
//     argument above; the claimant's ts_floor is at least the dead
//     incarnation's ts_limit.
//   - Claim of a released, never owned, or superseded row.
//
// Every claim and handover is conditional on the shard's epoch as read, so
// two nodes racing for a shard cannot both win. Reads run at the configured
// consistency, which must show every transaction that completed before
// them (QUORUM, LOCAL_QUORUM, or ONE with one replica); a read that is a
// little old only delays a move: states only move forward (live, leaving,
// dead, settled; incarnations only rise), and a shard naming a newer
// incarnation than the nodes read knows is left alone.
//
// Timestamps are per shard (Timestamp(shard)), not per node: the node
// refuses a timestamp for a shard it has stopped serving, so a handover's
// ts_floor, taken after Drain, is above every timestamp ever handed out
// for the shard, without relying on the caller to have stopped asking.
//
// # Fencing late writes
//
// A node paused (GC, SIGSTOP) between Timestamp and its write may wake
// after its lease and write. Its timestamp is below its ts_limit (for a
// takeover) or below the handover's ts_floor, and the new owner's
// timestamps are at or above them: Cassandra keeps the newest timestamp of
// each cell, so the late write never wins over the new owner's. This holds
// whatever the machines' wall clocks say, since timestamps only have to
// rise along the chain of owners of a shard.
//
// # Balancing
//
// Every node runs a round every Interval plus jitter: it reads the nodes
// (declaring dead those that stopped renewing) and the shards partition in
// one query, computes each shard's target by rendezvous hashing with
// bounded loads over the live node ids (every node gets ⌊S/n⌋ or ⌈S/n⌉
// shards; a join or a leave moves little more than the share that must
// move), claims the claimable shards whose target it is, and hands over up
// to MaxMoves shards whose target is another node whose beat it saw
// change lately.
//
// This package is the server's own (README, "Layout"): it has no
// compatibility promise.
package cluster
