// Package relay carries inboxd's node-to-node commands over package peer
// (docs/cluster.md, "Routing" and "The write path in a cluster"): the
// deliveries of outbox records to the node serving their destination
// shards, the forwarding of a device's conversation command to the node
// serving the conversation, the announcement of a change of the bans and
// token revocations made through a node's server API, and the typing events
// and presence questions for users of other nodes. It assembles inbox,
// gateway, api and peer into a cluster node; what a command means stays in
// those packages.
//
// # Assembling a node
//
//	pool, _ := peer.NewPool(peer.PoolConfig{Node: id, Secret: secret, Registerer: reg})
//	r, _ := relay.New(relay.Config{Ownership: node, Pool: pool, Registerer: reg})
//	mod, _ := api.LoadModeration(ctx, store)
//	gw, _ := gateway.New(gateway.Config{..., Ownership: node, Forwarder: r, Peers: r, Gate: mod})
//	svc, _ := inbox.New(ctx, inbox.Config{..., Ownership: node, Deliverer: r})
//	follow, _ := api.NewFollower(api.FollowerConfig{Moderation: mod, Sessions: gw})
//	go follow.Run(ctx) // re-reads every api.SyncInterval until ctx ends
//	srv, _ := peer.Listen(peer.ServerConfig{Addr: peerAddr, Node: id, Secret: secret, Registerer: reg},
//		relay.WithRestrictions(follow, relay.Handler(svc, gw)))
//	// cluster.Config.Drain: svc.Drain; api.Config.Peers: r
//
// and at shutdown, in this order: the gateway, the peer server, the inbox
// service, the pool.
//
// # Commands
//
// CmdDeliver's body is a uvarint count, then each record as a uvarint
// length and timeline.OutboxRecord's binary encoding (the form the stores
// keep); its answer is a uvarint count, then each applied mark as three
// uvarints (source shard, destination shard, stream). The destination
// applies with inbox.Service.Apply, which skips what it applied before and
// stops at a gap: a delivery repeated, reordered or lost costs a retry,
// never a duplicate. An Apply that fails is answered UNAVAILABLE and the
// records are sent again.
//
// CmdForward's body is the acting user (8 bytes, big-endian), the client's
// command (2 bytes, big-endian) and the client's request body, unchanged;
// its answer is the command's response body, or an error frame with the
// code the client is answered with. The owner runs the gateway's own
// handler for the command (gateway.Server.ServeForwarded); a command the
// owner does not serve either (the shard moved again) is answered
// UNAVAILABLE, never forwarded twice. A forward that finds no owner, cannot
// reach it or times out is answered UNAVAILABLE or TIMEOUT, retryable; a
// SEND retried with its client msg id is stored once.
//
// CmdRestrictions tells a node that the bans or revocations in the store
// changed (the server API of the sender stored one); both bodies are
// empty. The node re-reads them (api.Follower.Sync) and closes the
// connections they now refuse before it answers, so that when the API call
// that made the change answers, every node reached enforces it. The sender
// tells every node serving a shard (Relay.AnnounceRestrictions); one not
// reached re-reads them on its own within api.SyncInterval.
//
// CmdTyping's body is the conversation, the typist and a count of
// recipients followed by their user ids, each a uvarint; the node serving
// the recipients pushes the event to their devices there
// (gateway.Server.PushTyping) and answers an empty body. CmdPresence's body
// and answer are a uvarint count followed by user ids as uvarints: the
// users asked about, and those of them with a device connected there
// (gateway.Server.Online). Both go to each node concerned at once, one
// call per node, through the pool with its timeouts and bounded queues;
// neither is retried: a typing event is renewed every few seconds, and a
// presence question that fails is answered UNAVAILABLE (retryable).
//
// # Metrics
//
// Registered on Config.Registerer, so only on a node that runs in a
// cluster (inboxd -cluster; docs/operations.md lists them under "Cluster
// mode"). Results: ok, error (the other node answered an error code),
// no_owner (forwards: no other node serves the shard now), unavailable (not
// answered: unreachable, overloaded, connection lost), timeout, failed.
//
//	inboxd_relay_deliveries_total{result}       counter   CmdDeliver calls
//	inboxd_relay_delivery_duration_seconds      histogram CmdDeliver call to answer or failure
//	inboxd_relay_delivered_records_total        counter   outbox records in answered deliveries
//	inboxd_relay_forwards_total{result}         counter   CmdForward calls
//	inboxd_relay_forward_duration_seconds       histogram CmdForward call to answer or failure
//	inboxd_relay_announcements_total{result}    counter   CmdRestrictions calls
//	inboxd_relay_announcement_duration_seconds  histogram CmdRestrictions call to answer or failure
//	inboxd_relay_typing_events_total{result}    counter   CmdTyping calls
//	inboxd_relay_typing_duration_seconds        histogram CmdTyping call to answer or failure
//	inboxd_relay_presence_queries_total{result} counter   CmdPresence calls
//	inboxd_relay_presence_duration_seconds      histogram CmdPresence call to answer or failure
//
// The peer transport's own metrics (inboxd_peer_*) count the same calls by
// command number: CmdDeliver is 33024 (0x8100), CmdForward 33025,
// CmdRestrictions 33026, CmdTyping 33056 (0x8120), CmdPresence 33057 (0x8121).
//
// This package is the server's own (README, "Layout"): it has no
// compatibility promise.
package relay
