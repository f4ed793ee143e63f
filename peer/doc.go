// Package peer is inboxd's node-to-node transport (docs/cluster.md,
// "Node-to-node traffic"): generic requests and responses between the nodes
// of one cluster, over one TCP connection per pair of nodes, in package
// wire's frames. It carries bytes; what the commands mean (forwarding a
// device's conversation commands, fan-out deliveries) is its users'.
//
// # Frames and commands
//
// Every frame is a wire frame: the 12-byte header, the same request ids,
// the same limits (a frame, header included, is at most max_frame bytes,
// wire.DefaultMaxFrame by default; a header announcing more, or another
// protocol version, makes the receiver answer an ERROR frame
// FRAME_TOO_LARGE or VERSION and close, as the gateway does). Commands are
// in the range wire reserves for node-to-node traffic, 0x8000–0xFFFF, so a
// peer frame is never mistaken for a client's: 0x8000–0x80FF are the
// transport's own (CmdHello, CmdProof, CmdPing), FirstCommand (0x8100) to 0xFFFF are
// the handlers'. A request has flags 0; its response has RESPONSE and the
// request's command and id, or RESPONSE|ERROR and a wirepb.Error body with a
// wire code. Requests are pipelined: a node may have many in flight on one
// connection and the answers come back in any order.
//
// # The handshake
//
// Every node of a cluster holds the cluster's token secret. The handshake
// proves it, both ways, without sending it:
//
//	key = HMAC-SHA256(secret, "inboxd peer key v1")
//	dialler → listener  HELLO  Hello{node, nonce_d (32 random bytes), max_frame}
//	listener → dialler  HELLO response  HelloReply{node, nonce_l, max_frame,
//	        mac = HMAC-SHA256(key, "inboxd peer listener" ‖ nonce_d ‖ nonce_l ‖ be32(listener) ‖ be32(dialler))}
//	dialler → listener  PROOF  Proof{mac = HMAC-SHA256(key, "inboxd peer dialler" ‖ nonce_d ‖ nonce_l ‖ be32(dialler) ‖ be32(listener))}
//	listener → dialler  PROOF response, empty; or RESPONSE|ERROR UNAUTHENTICATED, and close
//
// The dialler checks the listener's mac before it proves anything; the
// listener serves nothing before the dialler's proof checks. Fresh nonces on
// both sides make a recorded handshake useless, the two labels make one
// side's mac useless as the other's, and the key is derived with a label
// holding spaces, which base64url text never does: no client token (an HMAC
// under the secret itself over base64url text) is ever a peer credential,
// and no peer mac is ever a token. The secret appears in no frame and no
// log. The handshake must finish within the listener's HandshakeTimeout.
// Each side learns the other's id and max_frame: Pool.Call refuses a
// request larger than the listener accepts with ErrTooLarge instead of
// sending it.
//
// # Serving
//
// Server accepts connections, runs the handshake, then hands each request
// to the Handler on a pool of ServerConfig.Workers goroutines, through a
// queue of ServerConfig.QueueSize requests; a request that finds the queue
// full is answered UNAVAILABLE at once, without running. A handler runs with
// a context that ends at RequestTimeout or when the server closes. A command
// outside the handlers' range is answered UNKNOWN_COMMAND; a frame that is
// not a request closes the connection with an ERROR frame.
//
// # Calling, and what to do with each error
//
// Pool.Call(ctx, addr, cmd, body) sends one request to the node at addr and
// waits for its answer. The pool keeps one connection per address, dials it
// at the first call, pipelines every call on it, and writes the requests
// queued since its writer's last wakeup in one write. Code maps every error
// of Call to the wire code a caller answers its own client with, and
// Retryable says whether trying again may help:
//
//   - *Error: the node ran the request (or refused it) and answered this
//     code. Act on the code as a client would (docs/protocol.md): a
//     retryable code (UNAVAILABLE, TIMEOUT, SHUTTING_DOWN…) may be retried.
//   - ErrQueueFull: PoolConfig.MaxInFlight calls to that node were in
//     flight; this one was not sent. Answer UNAVAILABLE (retryable): the
//     node is slow or unreachable, and queueing more would only make every
//     call later.
//   - ErrUnavailable: the node could not be reached or refused the
//     handshake; the call was not sent. After a failed dial the pool fails
//     calls at once until its backoff wait (PoolConfig.Backoff) is over, then
//     the next call dials again. Answer UNAVAILABLE; the owner of a shard may
//     have changed, so look it up again before retrying. A wrapped ErrAuth
//     means the nodes do not share the secret: a configuration error.
//   - ErrConnLost: the connection died with the call in flight; the node
//     may or may not have run it. Retry only a request that is idempotent
//     (every inboxd command sent over peer is: a SEND carries its client msg
//     id, a delivery is applied by cursor). The next call dials again.
//   - context.DeadlineExceeded: ctx's deadline (PoolConfig.Timeout if ctx
//     had none) passed first; the node may still run the request. Answer
//     TIMEOUT. The pool then pings the connection (the listener's reader
//     answers pings itself, whatever its handlers do); with no answer
//     within PingTimeout it closes the connection, so a node lost without
//     closing its connections costs seconds, not TCP's minutes.
//     context.Canceled: the caller gave up; answer UNAVAILABLE.
//   - ErrClosed: the pool is closed (the node is stopping). SHUTTING_DOWN.
//   - ErrTooLarge, ErrCommand: a bug of the caller (split the request; use a
//     handler's command). INTERNAL, not retryable.
//
// A call never blocks past its deadline and is never dropped silently:
// every call ends with a response or one of these errors.
//
// # Metrics
//
// Registered on PoolConfig.Registerer and ServerConfig.Registerer (cmd/inboxd
// does not use this package yet, so docs/operations.md does not list them).
// Commands are labelled by number ("other" for those below FirstCommand);
// a command's series appear, every result at zero, with its first use.
//
//	inboxd_peer_calls_total{command,result}       counter   calls made: ok, error (the node answered an error), queue_full, unavailable, timeout, canceled, closed, invalid
//	inboxd_peer_call_duration_seconds{command}     histogram call start to answer or failure (calls refused at once excluded)
//	inboxd_peer_calls_in_flight                    gauge     calls started and not ended, waiting for a dial included: the queue depth
//	inboxd_peer_connections_outbound               gauge     authenticated connections the pool holds
//	inboxd_peer_dials_total{result}                counter   dials: ok, failed
//	inboxd_peer_requests_total{command,result}    counter   requests served: ok, error, busy (queue full), unknown (not a handler's command)
//	inboxd_peer_request_duration_seconds{command}  histogram arrival to response queued: the queue wait and the handler
//	inboxd_peer_request_queue_length               gauge     requests waiting for a worker
//	inboxd_peer_connections_inbound                gauge     authenticated connections other nodes dialled here
//	inboxd_peer_handshake_failures_total{reason}   counter   incoming handshakes refused: bad_proof, protocol, io
//
// This package is the server's own (README, "Layout"): it has no
// compatibility promise. Clients use packages client, wire and token.
package peer
