// One connection: request ids, responses matched to their requests, pushes
// handed on, and the reason it ended.

import { fromBinary } from "@bufbuild/protobuf";
import {
  Cmd,
  DEFAULT_MAX_FRAME,
  encodeFrame,
  FLAG_ERROR,
  FLAG_RESPONSE,
  HEADER_SIZE,
  PRE_AUTH_MAX_FRAME,
  type Frame,
} from "./frame.js";
import { Code, ConnectionLostError, InboxdError } from "./errors.js";
import { ErrorSchema, PushSchema, TypingEventSchema, type Entry, type TypingEvent } from "./gen/inboxd_pb.js";
import type { Dialer, Transport } from "./transport.js";

interface Pending {
  resolve(body: Uint8Array): void;
  reject(err: Error): void;
}

export class Conn {
  maxFrame = PRE_AUTH_MAX_FRAME;
  /** Resolves, never rejects, when the connection has ended, with why. */
  readonly ended: Promise<Error>;
  private endedResolve!: (err: Error) => void;
  private transport?: Transport;
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private cause?: Error;
  /** Pushes are held until someone takes them: the AUTH response comes first. */
  private held: Entry[][] = [];
  private pushHandler?: (entries: Entry[]) => void;
  private typingHandler?: (ev: TypingEvent) => void;

  private constructor(readonly addr: string) {
    this.ended = new Promise((resolve) => (this.endedResolve = resolve));
  }

  static async dial(dialer: Dialer, addr: string, timeoutMs: number): Promise<Conn> {
    const c = new Conn(addr);
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), timeoutMs);
    try {
      c.transport = await dialer(
        addr,
        {
          onFrame: (f) => c.onFrame(f),
          onClose: (err) => c.finish(err ?? new ConnectionLostError()),
          maxFrame: () => c.maxFrame,
        },
        ac.signal,
      );
    } finally {
      clearTimeout(timer);
    }
    return c;
  }

  get closed(): boolean {
    return this.cause !== undefined;
  }

  /** The server's AUTH response came: allow its max_frame. */
  authenticated(maxFrame: number): void {
    this.maxFrame = maxFrame || DEFAULT_MAX_FRAME;
  }

  /** Hand pushes, those held so far first, to fn. */
  onPush(fn: (entries: Entry[]) => void): void {
    this.pushHandler = fn;
    for (const entries of this.held.splice(0)) fn(entries);
  }

  /** Hand typing events to fn. Unlike pushes none is held: they are best effort, and the server sends them only after AUTH's response. */
  onTyping(fn: (ev: TypingEvent) => void): void {
    this.typingHandler = fn;
  }

  request(command: number, body: Uint8Array): Promise<Uint8Array> {
    if (this.cause) return Promise.reject(this.lost());
    if (body.length + HEADER_SIZE > this.maxFrame) {
      // The server would close the connection on its header; and a resend would do it again.
      return Promise.reject(new InboxdError(Code.FRAME_TOO_LARGE, `a frame of ${body.length + HEADER_SIZE} bytes exceeds max_frame ${this.maxFrame}`));
    }
    const id = this.nextId;
    // 0 is the id of server-initiated frames.
    this.nextId = this.nextId === 0xffffffff ? 1 : this.nextId + 1;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.transport!.send(encodeFrame(command, 0, id, body));
    });
  }

  close(err: Error = new ConnectionLostError()): void {
    this.finish(err);
    this.transport?.close();
  }

  private lost(): Error {
    return this.cause instanceof InboxdError ? this.cause : new ConnectionLostError(this.cause);
  }

  private onFrame(f: Frame): void {
    if (f.flags & FLAG_RESPONSE) {
      const p = this.pending.get(f.requestId);
      if (!p) return; // an answer to nothing we asked: ignore, as unknown data
      this.pending.delete(f.requestId);
      if (f.flags & FLAG_ERROR) {
        const e = fromBinary(ErrorSchema, f.body);
        p.reject(new InboxdError(e.code, e.message, e.retryAfterMs, e.redirect));
      } else {
        p.resolve(f.body);
      }
      return;
    }
    switch (f.command) {
      case Cmd.PUSH: {
        const entries = fromBinary(PushSchema, f.body).entries;
        if (this.pushHandler) this.pushHandler(entries);
        else this.held.push(entries);
        return;
      }
      case Cmd.TYPING: {
        // A request id 0 without the response flag: the server's event, not an answer.
        const ev = fromBinary(TypingEventSchema, f.body);
        this.typingHandler?.(ev);
        return;
      }
      case Cmd.ERROR: {
        // The server closes right after it: the code is why.
        const e = fromBinary(ErrorSchema, f.body);
        this.close(new InboxdError(e.code, e.message, e.retryAfterMs, e.redirect));
        return;
      }
    }
    // Another server-initiated frame of a later version: ignore it.
  }

  private finish(err: Error): void {
    if (this.cause) return;
    this.cause = err;
    const lost = this.lost();
    for (const p of this.pending.values()) p.reject(lost);
    this.pending.clear();
    this.endedResolve(err);
  }
}
