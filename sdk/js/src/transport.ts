// Transports carry frames: TCP (node.ts) splits a byte stream into them,
// a WebSocket (websocket.ts) carries one frame per binary message.

import type { Frame } from "./frame.js";

/** What a transport calls back into. */
export interface TransportHandlers {
  /** A whole frame arrived. An exception thrown here closes the transport. */
  onFrame(frame: Frame): void;
  /** The transport closed, by either side; err says why, if not by close(). Called once. */
  onClose(err?: Error): void;
  /** The largest frame to accept now: 4 KiB until AUTH's response, max_frame after it. */
  maxFrame(): number;
}

/** Transport is one open connection to a server. */
export interface Transport {
  /** Queue a whole frame for sending. */
  send(frame: Uint8Array): void;
  /** Close the connection; onClose follows. */
  close(): void;
}

/**
 * Dialer opens a connection to addr (host:port for TCP, a ws:// or wss://
 * URL or host:port for WebSocket) and resolves once it is open.
 */
export type Dialer = (addr: string, handlers: TransportHandlers, signal: AbortSignal) => Promise<Transport>;
