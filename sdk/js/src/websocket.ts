// The WebSocket transport: one inboxd frame per binary WebSocket message,
// header included (docs/protocol.md, "WebSocket").

import { InboxdError } from "./errors.js";
import { decodeFrame } from "./frame.js";
import type { Dialer, Transport, TransportHandlers } from "./transport.js";

/** The part of the WHATWG WebSocket API the transport uses; `ws` has it too. */
export interface WebSocketLike {
  binaryType: string;
  readyState: number;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** The path of inboxd's WebSocket listener. */
export const WS_PATH = "/ws";

/** The server's close codes for errors: this plus the error code (4017: REPLACED). */
export const WS_CLOSE_ERROR = 4000;

/** The subprotocol the client offers; the server selects it (or none). */
export const WS_SUBPROTOCOL = "inboxd.v1";

/**
 * wsURL turns an address of the list into a URL: ws:// and wss:// URLs are
 * taken as they are, host:port becomes ws://host:port/ws.
 */
export function wsURL(addr: string): string {
  return /^wss?:\/\//.test(addr) ? addr : `ws://${addr}${WS_PATH}`;
}

/**
 * webSocketDialer returns a Dialer over the given WebSocket class: the
 * browser's by default.
 */
export function webSocketDialer(WS: WebSocketConstructor | undefined = (globalThis as any).WebSocket): Dialer {
  if (!WS) {
    throw new Error("inboxd: no WebSocket class here: pass one (in Node, from the ws package or @inboxd/sdk/node)");
  }
  return (addr: string, h: TransportHandlers, signal: AbortSignal) =>
    new Promise<Transport>((resolve, reject) => {
      const ws = new WS(wsURL(addr), WS_SUBPROTOCOL);
      ws.binaryType = "arraybuffer";
      let open = false;
      let closed = false;
      const finish = (err?: Error) => {
        if (closed) return;
        closed = true;
        signal.removeEventListener("abort", onAbort);
        if (open) h.onClose(err);
        else reject(err ?? new Error(`inboxd: websocket ${addr} closed before it opened`));
      };
      const onAbort = () => {
        ws.close();
        finish(new Error("inboxd: dial aborted"));
      };
      signal.addEventListener("abort", onAbort);
      ws.onopen = () => {
        open = true;
        resolve({
          send: (frame) => ws.send(frame),
          close: () => {
            ws.close(1000);
            finish();
          },
        });
      };
      ws.onmessage = (ev) => {
        if (closed) return;
        try {
          if (!(ev.data instanceof ArrayBuffer)) {
            throw new Error("inboxd: a text WebSocket message, want binary");
          }
          h.onFrame(decodeFrame(new Uint8Array(ev.data), h.maxFrame()));
        } catch (err) {
          ws.close(1002);
          finish(err as Error);
        }
      };
      ws.onerror = () => {
        // The close event follows with the code: nothing to add here, and
        // browsers give an error event no detail to report.
      };
      // The server's close code is 4000 + the error code of the ERROR frame
      // before it; the frame, taken first, is the connection's end then.
      ws.onclose = (ev) =>
        finish(
          ev.code > WS_CLOSE_ERROR && ev.code < WS_CLOSE_ERROR + 1000
            ? new InboxdError(ev.code - WS_CLOSE_ERROR, ev.reason || "connection closed")
            : new Error(`inboxd: websocket closed: ${ev.code} ${ev.reason}`),
        );
    });
}
