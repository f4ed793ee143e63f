// Transports for Node: TCP, and WebSocket with Node's global WebSocket
// where it has one, else the ws package.

import { connect, type Socket } from "node:net";
import { WebSocket as WS } from "ws";
import { FrameReader } from "./frame.js";
import type { Dialer, Transport, TransportHandlers } from "./transport.js";
import { webSocketDialer, type WebSocketConstructor } from "./websocket.js";

export * from "./index.js";

/** splitHostPort parses host:port, [v6]:port included. */
function splitHostPort(addr: string): { host: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(addr);
  if (!m) throw new Error(`inboxd: address ${JSON.stringify(addr)} is not host:port`);
  return { host: m[1], port: Number(m[2]) };
}

/** tcpDialer connects over TCP to host:port. */
export const tcpDialer: Dialer = (addr: string, h: TransportHandlers, signal: AbortSignal) =>
  new Promise<Transport>((resolve, reject) => {
    const { host, port } = splitHostPort(addr);
    const sock: Socket = connect({ host, port, noDelay: true });
    const reader = new FrameReader(h.maxFrame());
    let open = false;
    let closed = false;
    let cause: Error | undefined;
    const onAbort = () => sock.destroy(new Error("inboxd: dial aborted"));
    signal.addEventListener("abort", onAbort);
    sock.once("connect", () => {
      open = true;
      signal.removeEventListener("abort", onAbort);
      resolve({
        send: (frame) => {
          sock.write(frame);
        },
        close: () => {
          sock.destroy();
        },
      });
    });
    sock.on("data", (chunk: Buffer) => {
      if (closed) return;
      try {
        reader.maxFrame = h.maxFrame();
        for (const f of reader.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length))) {
          if (closed) return;
          h.onFrame(f);
        }
      } catch (err) {
        sock.destroy(err as Error);
      }
    });
    sock.on("error", (err) => {
      cause = err;
    });
    sock.on("close", () => {
      closed = true;
      signal.removeEventListener("abort", onAbort);
      if (open) h.onClose(cause);
      else reject(cause ?? new Error(`inboxd: ${addr} closed before it connected`));
    });
  });

/**
 * nodeWebSocketDialer is the WebSocket dialer for Node: Node's global
 * WebSocket where there is one (Node 22, or 20 with
 * --experimental-websocket), else the ws package's.
 */
export function nodeWebSocketDialer(): Dialer {
  return webSocketDialer(((globalThis as any).WebSocket as WebSocketConstructor | undefined) ?? (WS as unknown as WebSocketConstructor));
}
