// Package bench is inboxd's load generator and delivery verifier. It drives
// simulated users over the real binary protocol (docs/protocol.md) against
// a running inboxd, or against one it builds and starts itself as a child
// process (so that it can measure the server's CPU and memory from /proc,
// and kill it with SIGKILL mid-run), and at the end proves the guarantees of
// docs/architecture.md for every device.
//
// A run, Run(ctx, Config):
//
//  1. Setup: every device of every user connects (one TCP connection each)
//     and authenticates; then the groups of the configured mix are created
//     by random owners, members drawn at random. Membership stays fixed, so
//     every member must receive every message of their groups. A create
//     whose outcome is unknown (UNAVAILABLE, TIMEOUT, a lost connection) is
//     made again: the group the first attempt may have left holds only its
//     create notice, which the verifier accepts in its members' inboxes
//     (Model.MaybeGroup). Direct
//     pairs (Config.DirectPairs) join the mix uncreated: their first
//     SEND_DIRECT, from either side, creates them.
//  2. Load: sends at the target rate for the duration (or up to a message
//     count), each from an online device of a random member of a random
//     group, with a client msg id unique to the run, and a body carrying the
//     send time so that receivers measure send-to-delivery latency. Meanwhile
//     devices churn, some users go offline until the end, everybody may
//     reconnect at once, MARK_READs move markers, and the started server may
//     be killed and restarted on the same data. Devices reconnect as
//     docs/protocol.md asks of a client: at once only to follow a REDIRECT,
//     else after a backoff of at least retry_after_ms, leaving a node that
//     answers SHUTTING_DOWN for another address. Config.Features makes a
//     share of the sends RECALLs and EDITs of messages their sender had
//     acknowledged, and messages that mention members: each under its own
//     client msg id, retried, and verified like a message.
//  3. Drain: every user comes back; every send whose answer was lost (a
//     dropped connection, a kill) is sent again with the same client msg id
//     until the server answers — the server stores it once and says
//     duplicate if the first attempt was stored.
//  4. Verify: every device catches up by SYNC; every user's inbox is read
//     from seq 1 and checked by the Verifier against the Model of what was
//     sent and acknowledged; the stream each device applied (from pushes and
//     SYNC pages, by the client sync algorithm) must equal that inbox. A
//     message is served recalled or edited exactly when a recall or an edit
//     of it is stored, and each conversation's unread mentions are what the
//     stored mentions after the user's read marker make them.
//
// Each device applies its stream by the sync algorithm and keeps only its
// last seq and a digest of what it applied (Digest), so a run of millions of
// deliveries costs the generator a few words per device; pushes are decoded
// field by field from the read buffer (proto.go) without allocating. The
// generator reports its own CPU time, so that a run limited by the client
// rather than the server is recognised as such.
//
// With ServerConfig.Nodes above one, Run starts that many inboxd processes
// as the nodes of a cluster on one Cassandra keyspace (docs/cluster.md); the
// devices are spread over their addresses and follow REDIRECT. Config.Chaos
// then kills -9 a random node, one kill after the other, and
// Config.Rolling stops each node with SIGTERM in turn; each is restarted
// once its users are served again, and before the next stop, while the
// load goes on (bounded per stop). The report's Outages give each stop's
// time from the signal to the first acknowledgement, by another node, of a
// send one of its users began after it.
//
// ServeBare is the baseline: a bare gnet server that speaks just enough of
// the protocol for the same load, with no storage. Compare runs inboxd and
// the baseline alternately on one load, pair after pair, and reports each
// pair's ratios with their median and spread: on a machine whose load
// drifts, a ratio taken within a pair is what stays usable.
//
// bench is the engine of cmd/inboxd-bench, not a library: it has no
// compatibility promise (README, "Layout"). It is on the client side of the
// line: it speaks the protocol through package wire and runs inboxd as a
// child process, never importing a server package.
package bench
