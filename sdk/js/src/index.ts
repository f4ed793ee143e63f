// Package @inboxd/sdk: a client of inboxd's protocol (docs/protocol.md) for
// browsers and Node. This entry has no Node imports, so that bundlers can
// take it into a web page; @inboxd/sdk/node adds the TCP transport.

export * from "./client.js";
export * from "./conversations.js";
export * from "./errors.js";
export * from "./frame.js";
export * from "./store.js";
export * from "./transport.js";
export * from "./websocket.js";
export * as pb from "./gen/inboxd_pb.js";
export type { AuthResponse, Conversation, Entry, Group, GroupInfoResponse, Member, Message, ReadReceiptsResponse, SendAck } from "./gen/inboxd_pb.js";
