// Package client is the Go client of inboxd's binary protocol
// (docs/protocol.md): one long-lived, authenticated TCP connection to a
// gateway (or a WebSocket connection, given a ws:// address), kept up across failures, and the sync loop that turns pushes and
// SYNC pages into one gap-free, duplicate-free stream of inbox entries.
//
// A program keeps one number, the seq of the last entry it applied:
//
//	c, err := client.Dial(ctx, client.Config{
//		Addr:    "127.0.0.1:7600",
//		Token:   tok,
//		LastSeq: stored,           // 0 the first time
//		OnEntry: func(e *wirepb.Entry) {
//			apply(e)               // then persist e.Seq
//		},
//	})
//	if err != nil { … }
//	defer c.Close()
//	ack, err := c.Send(ctx, conv, "", 1, []byte("hello")) // kind 1: text
//
// The client's duties, which it does so that its user need not:
//
//  1. Authenticate first; send a HEARTBEAT every heartbeat interval the
//     server announces, and drop a connection whose heartbeat goes
//     unanswered.
//  2. Match responses to requests by request id; many requests may be in
//     flight, each bounded by its own context.
//  3. Deliver entries in seq order, exactly once: SYNC after the last seq on
//     every connection until has_more is false; apply a pushed entry whose
//     seq is last+1, ignore one at or below last, and SYNC to fill the gap
//     before one beyond last+1.
//  4. Reconnect after any loss with exponential backoff and jitter, except
//     after REPLACED (the same device connected elsewhere), VERSION,
//     BANNED, or an authentication error (REVOKED too) without
//     Config.TokenSource: then the client
//     stops and Err says why. With several Config.Addrs (the nodes of a
//     cluster), try them in turn; follow a REDIRECT, at AUTH or closing
//     the connection, at once to the node it names, at most
//     Config.MaxRedirects in a row.
//  5. Retry what is safe to repeat (reads, SEND under its client msg id,
//     MARK_READ) on retryable codes and lost connections, and nothing else.
//
// Errors the server reports are *Error values; test them with errors.Is
// against the Err* sentinels, which match by code.
//
// This package is part of inboxd's public API (README, "Layout"): its
// exported names keep their meaning across releases, and it imports nothing
// of the server.
package client
