// The client: one connection at a time over a list of addresses,
// reconnected with backoff, following REDIRECT; the sync algorithm of
// docs/protocol.md; requests with the retries the protocol allows.

import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { Conn } from "./conn.js";
import { ClosedError, Code, ConnectionLostError, InboxdError, ProtocolError } from "./errors.js";
import { Cmd, Kind } from "./frame.js";
import {
  AuthRequestSchema,
  AuthResponseSchema,
  BlockRequestSchema,
  ConvRequestSchema,
  ConversationsRequestSchema,
  ConversationsResponseSchema,
  CreateGroupRequestSchema,
  CreateGroupResponseSchema,
  EditRequestSchema,
  EmptySchema,
  GroupInfoResponseSchema,
  HistoryRequestSchema,
  HistoryResponseSchema,
  InviteRequestSchema,
  KickRequestSchema,
  MarkReadRequestSchema,
  MarkReadResponseSchema,
  MuteRequestSchema,
  PresenceRequestSchema,
  PresenceResponseSchema,
  ReadReceiptsRequestSchema,
  ReadReceiptsResponseSchema,
  RecallRequestSchema,
  SendAckSchema,
  SendDirectRequestSchema,
  SendRequestSchema,
  SetDNDRequestSchema,
  SetGroupProfileRequestSchema,
  SetRoleRequestSchema,
  SyncRequestSchema,
  SyncResponseSchema,
  TypingRequestSchema,
  type AuthResponse,
  type Conversation,
  type Entry,
  type Group,
  type GroupInfoResponse,
  type Message,
  type ReadReceiptsResponse,
  type SendAck,
} from "./gen/inboxd_pb.js";
import { MemorySeqStore, type SeqStore } from "./store.js";
import type { Dialer } from "./transport.js";

export interface ClientOptions {
  /** Node addresses, tried in a random order; one or a list. */
  addrs: string | string[];
  /** The connection token, or a function asked for one before each AUTH. */
  token: string | (() => string | Promise<string>);
  /** How to connect: tcpDialer (Node), webSocketDialer() (browsers), nodeWebSocketDialer(). */
  dialer: Dialer;
  /** Where last_seq lives; a MemorySeqStore by default. */
  store?: SeqStore;
  /** SYNC page size; 0 is the server's default (100). */
  syncLimit?: number;
  /** Reconnect backoff: the first wait and the cap, before jitter (200 ms, 30 s). */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** Consecutive redirects followed before backing off (5). */
  maxRedirects?: number;
  /** How long to wait for a connection to open (10 s). */
  dialTimeoutMs?: number;
  /** Attempts of a request that may be retried (send: resent under the same client msg id), 10. */
  maxAttempts?: number;
  /** Send a HEARTBEAT this often, if more often than the server's heartbeat_ms asks: a dead path is found sooner. 0: heartbeat_ms. */
  heartbeatMs?: number;
  /**
   * With nothing stored (last_seq 0), start at head_seq of the first AUTH
   * instead of taking the whole backlog entry by entry (rule 8 of the sync
   * algorithm): for an app that shows conversations() and history() and
   * keeps no state of its own.
   */
  fromHead?: boolean;
}

export type ConnectionState = "connecting" | "online" | "offline" | "closed";

/** The events of a client and what their listeners get. */
export interface ClientEvents {
  /** Every inbox entry, once, in seq order. A returned promise is awaited before the next entry and before last_seq is saved. */
  entry: (entry: Entry) => void | Promise<void>;
  /** An entry that carries a message (any kind but read and dnd), after the entry event. */
  message: (message: Message, entry: Entry) => void | Promise<void>;
  /** The user's read marker of conv moved to convSeq (on this device or another). */
  read: (conv: bigint, convSeq: bigint) => void | Promise<void>;
  /** Do-not-disturb of conv was set. */
  dnd: (conv: bigint, on: boolean) => void | Promise<void>;
  /**
   * user is typing in conv (a server-initiated TYPING): show it for
   * TYPING_SHOWN_MS after the latest event of that user, and stop at once
   * when a message of user in conv arrives. Best effort: events may be
   * lost, and none is sent again.
   */
  typing: (conv: bigint, user: bigint) => void;
  /** AUTH succeeded on a new connection. */
  online: (auth: AuthResponse) => void;
  /** Caught up: SYNC had no more after lastSeq. */
  synced: (lastSeq: bigint) => void;
  /** A connection ended; the client reconnects unless the error is final. */
  offline: (err: Error) => void;
  /** The server's head_seq is below last_seq: it lost data or is another server. last_seq is reset to 0; drop local state. */
  reset: (headSeq: bigint, lastSeq: bigint) => void | Promise<void>;
  /** The client stopped: close() was called (err undefined) or a final error came. */
  closed: (err?: Error) => void;
  state: (state: ConnectionState) => void;
}

type Listener<K extends keyof ClientEvents> = ClientEvents[K];

/** The result of send: the ack, with the client msg id the message was sent under. */
export interface SendResult extends SendAck {
  clientMsgId: string;
}

/** Options of send. */
export interface SendOptions {
  /** 1–32767, the application's (default 1, text). */
  kind?: number;
  /** The retry key; a new random one by default. Give the stored one to resend a message of an earlier run of the app. */
  clientMsgId?: string;
  /** Members the message mentions ("@bob"): at most 50, each a current member. */
  mentions?: bigint[];
  /** The message mentions every member ("@all"): owner and admins only, unless the server allows everyone. */
  mentionAll?: boolean;
}

/** A change of a group's profile: an absent part stays as it is; "" clears the announcement or the avatar. */
export interface GroupProfile {
  name?: string;
  announcement?: string;
  avatarUrl?: string;
}

/** Options of readReceipts. */
export interface ReadReceiptsOptions {
  /** Page cursor: list user ids above it (nextAfter of the previous page); 0 for the first page. */
  afterUser?: bigint;
  /** Page size: 0 is the server's default (100), at most 1000. */
  limit?: number;
  /** List the members who have not read the message instead of those who have. */
  unread?: boolean;
}

/** How long to show "user is typing" after their latest typing event (docs/protocol.md, TYPING). */
export const TYPING_SHOWN_MS = 6000;
/** Call typing() at most this often while the user goes on typing. */
export const TYPING_INTERVAL_MS = 3000;
/** The most users one PRESENCE request may name; presence() splits longer lists. */
export const MAX_PRESENCE_USERS = 500;

const encodeBody = (body: string | Uint8Array) => (typeof body === "string" ? new TextEncoder().encode(body) : body);

/**
 * directConv returns the id of the direct conversation of users a and b,
 * as the server derives it (docs/protocol.md, "Direct conversations"):
 * known before its first message.
 */
export async function directConv(a: bigint, b: bigint): Promise<bigint> {
  const [lo, hi] = a < b ? [a, b] : [b, a];
  const pair = new DataView(new ArrayBuffer(16));
  pair.setBigUint64(0, lo);
  pair.setBigUint64(8, hi);
  const digest = new DataView(await globalThis.crypto.subtle.digest("SHA-256", pair.buffer));
  return digest.getBigUint64(0) | (1n << 63n);
}

/** newClientMsgId returns a random 128-bit id in hex. */
export function newClientMsgId(): string {
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** Which failures a request may be sent again after. */
type Retry =
  // refused unapplied (RATE_LIMITED): the group commands, which may not be repeated once applied
  | "refused"
  // any retryable code or a lost connection: idempotent requests, and SEND under its client msg id
  | "idempotent"
  // nothing: TYPING, which the next keystroke replaces
  | "never";

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class Client {
  private readonly opts: Required<Omit<ClientOptions, "store">> & { store: SeqStore };
  private readonly addrs: string[];
  private listeners = new Map<keyof ClientEvents, Set<Function>>();
  /** The connection being set up or in use: the one stop() closes. */
  private conn?: Conn;
  /** The connection whose AUTH succeeded: the one requests go on. */
  private authed?: Conn;
  private lastSeq = 0n;
  private stopped?: Error | null; // undefined: running; null: close(); an Error: final
  private running?: Promise<void>;
  private waiters: Array<{ resolve(c: Conn): void; reject(e: Error): void }> = [];
  private syncWaiters: Array<{ resolve(): void; reject(e: Error): void }> = [];
  private synced = false;
  private everSynced = false;
  /** Entries are applied one step at a time, in this chain. */
  private chain: Promise<void> = Promise.resolve();
  private wake?: () => void;
  private _auth?: AuthResponse;

  constructor(options: ClientOptions) {
    this.opts = {
      syncLimit: 0,
      backoffMinMs: 200,
      backoffMaxMs: 30_000,
      maxRedirects: 5,
      dialTimeoutMs: 10_000,
      maxAttempts: 10,
      fromHead: false,
      heartbeatMs: 0,
      store: new MemorySeqStore(),
      ...options,
    };
    this.addrs = (typeof options.addrs === "string" ? options.addrs.split(",") : options.addrs).map((a) => a.trim()).filter(Boolean);
    if (this.addrs.length === 0) throw new Error("inboxd: no address to connect to");
  }

  /** The AUTH response of the current connection: user id, device, limits. */
  get auth(): AuthResponse | undefined {
    return this._auth;
  }

  /** The seq of the last entry handed to the app. */
  get lastAppliedSeq(): bigint {
    return this.lastSeq;
  }

  on<K extends keyof ClientEvents>(event: K, fn: Listener<K>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => set!.delete(fn);
  }

  /**
   * connect loads last_seq and starts connecting; it resolves once the
   * first connection has caught up, and rejects if the client stops first
   * (a final error such as UNAUTHENTICATED, or close()).
   */
  async connect(): Promise<void> {
    if (!this.running) {
      this.lastSeq = await this.opts.store.load();
      this.running = this.run();
    }
    return this.waitSynced();
  }

  /** waitSynced resolves once the current connection has caught up. */
  waitSynced(): Promise<void> {
    if (this.stopped !== undefined) return Promise.reject(new ClosedError(this.stopped ?? undefined));
    if (this.synced) return Promise.resolve();
    return new Promise((resolve, reject) => this.syncWaiters.push({ resolve, reject }));
  }

  /** close stops the client: the connection is closed, and waiting requests fail with ClosedError. */
  async close(): Promise<void> {
    this.stop(null);
    await this.running;
    await this.chain;
  }

  // --- requests ---

  /**
   * send sends a message to conv (a group or a direct conversation),
   * resending under the same client msg id after a retryable error or a
   * lost connection, so that the conversation gets it once.
   */
  async send(conv: bigint, body: string | Uint8Array, opt: SendOptions = {}): Promise<SendResult> {
    return this.sendOnce(Cmd.SEND, SendRequestSchema, opt.clientMsgId, (clientMsgId) => ({
      conv,
      clientMsgId,
      kind: opt.kind ?? Kind.TEXT,
      body: encodeBody(body),
      mentions: opt.mentions,
      mentionAll: opt.mentionAll,
    }));
  }

  /**
   * sendDirect sends a message to the user to, in their direct
   * conversation with this user, which the first message creates; the
   * result's conv names it (see directConv), and send to it works as well.
   * Retried as send is. While to blocks this user it fails with BLOCKED.
   */
  async sendDirect(to: bigint, body: string | Uint8Array, opt: Omit<SendOptions, "mentions" | "mentionAll"> = {}): Promise<SendResult> {
    return this.sendOnce(Cmd.SEND_DIRECT, SendDirectRequestSchema, opt.clientMsgId, (clientMsgId) => ({
      to,
      clientMsgId,
      kind: opt.kind ?? Kind.TEXT,
      body: encodeBody(body),
    }));
  }

  /**
   * recall recalls the message at convSeq of conv: its sender within the
   * server's window (2 minutes by default; later TOO_LATE), the owner and
   * admins any time. The result is the ack of the recall entry; from then
   * on the server serves the message recalled, with no body. Retried as
   * send is, under its own client msg id.
   */
  async recall(conv: bigint, convSeq: bigint, opt: { clientMsgId?: string } = {}): Promise<SendResult> {
    return this.sendOnce(Cmd.RECALL, RecallRequestSchema, opt.clientMsgId, (clientMsgId) => ({ conv, convSeq, clientMsgId }));
  }

  /**
   * edit replaces the body of the message at convSeq of conv: its sender
   * within the server's window (24 hours by default) while not muted, the
   * owner and admins any time. The result is the ack of the edit entry;
   * from then on the server serves the message with the new body and
   * editedMs. Retried as send is.
   */
  async edit(conv: bigint, convSeq: bigint, body: string | Uint8Array, opt: { clientMsgId?: string } = {}): Promise<SendResult> {
    return this.sendOnce(Cmd.EDIT, EditRequestSchema, opt.clientMsgId, (clientMsgId) => ({ conv, convSeq, clientMsgId, body: encodeBody(body) }));
  }

  /** sendOnce makes a request keyed by a client msg id (a new one unless given), which makes every resend of it safe. */
  private async sendOnce<I extends DescMessage>(
    command: number,
    schema: I,
    clientMsgId: string | undefined,
    req: (clientMsgId: string) => MessageInitShape<I>,
  ): Promise<SendResult> {
    const id = clientMsgId ?? newClientMsgId();
    const ack = await this.call(command, schema, req(id), SendAckSchema, "idempotent");
    return { ...ack, clientMsgId: id };
  }

  /** history returns up to limit messages of conv below beforeConvSeq (0: the newest), newest first; empty: nothing older. */
  async history(conv: bigint, beforeConvSeq = 0n, limit = 20): Promise<Message[]> {
    const r = await this.call(Cmd.HISTORY, HistoryRequestSchema, { conv, beforeConvSeq, limit }, HistoryResponseSchema, "idempotent");
    return r.messages;
  }

  /** conversations returns the user's conversations, latest activity first, every page. */
  async conversations(): Promise<Conversation[]> {
    const out: Conversation[] = [];
    const seen = new Set<bigint>();
    for (let offset = 0; ; ) {
      const r = await this.call(Cmd.CONVERSATIONS, ConversationsRequestSchema, { offset }, ConversationsResponseSchema, "idempotent");
      for (const c of r.conversations) {
        // A conversation active between two pages comes again: keep the first.
        if (!seen.has(c.conv)) {
          seen.add(c.conv);
          out.push(c);
        }
      }
      if (!r.hasMore || r.conversations.length === 0) return out;
      offset += r.conversations.length;
    }
  }

  /** markRead moves the read marker of conv to convSeq and returns the marker. */
  async markRead(conv: bigint, convSeq: bigint): Promise<bigint> {
    const r = await this.call(Cmd.MARK_READ, MarkReadRequestSchema, { conv, convSeq }, MarkReadResponseSchema, "idempotent");
    return r.readSeq;
  }

  async createGroup(g: { name?: string; members?: bigint[]; open?: boolean }): Promise<Group> {
    const r = await this.call(Cmd.CREATE_GROUP, CreateGroupRequestSchema, g, CreateGroupResponseSchema, "refused");
    return r.group!;
  }

  async invite(conv: bigint, users: bigint[]): Promise<void> {
    await this.call(Cmd.INVITE, InviteRequestSchema, { conv, users }, EmptySchema, "refused");
  }

  async join(conv: bigint): Promise<void> {
    await this.call(Cmd.JOIN, ConvRequestSchema, { conv }, EmptySchema, "refused");
  }

  async leave(conv: bigint): Promise<void> {
    await this.call(Cmd.LEAVE, ConvRequestSchema, { conv }, EmptySchema, "refused");
  }

  async kick(conv: bigint, user: bigint): Promise<void> {
    await this.call(Cmd.KICK, KickRequestSchema, { conv, user }, EmptySchema, "refused");
  }

  async dismiss(conv: bigint): Promise<void> {
    await this.call(Cmd.DISMISS, ConvRequestSchema, { conv }, EmptySchema, "refused");
  }

  /** setRole: 1 member, 2 admin, 3 owner (hands the group over). */
  async setRole(conv: bigint, user: bigint, role: 1 | 2 | 3): Promise<void> {
    await this.call(Cmd.SET_ROLE, SetRoleRequestSchema, { conv, user, role }, EmptySchema, "refused");
  }

  /** mute mutes user (0n: the whole group) until untilMs, server time; 0n lifts it. */
  async mute(conv: bigint, user: bigint, untilMs: bigint): Promise<void> {
    await this.call(Cmd.MUTE, MuteRequestSchema, { conv, user, untilMs }, EmptySchema, "refused");
  }

  async setDND(conv: bigint, on: boolean): Promise<void> {
    await this.call(Cmd.SET_DND, SetDNDRequestSchema, { conv, on }, EmptySchema, "idempotent");
  }

  async groupInfo(conv: bigint): Promise<GroupInfoResponse> {
    return this.call(Cmd.GROUP_INFO, ConvRequestSchema, { conv }, GroupInfoResponseSchema, "idempotent");
  }

  /** block makes this user refuse direct messages from user (on), or accept them again (off). Setting what is set changes nothing: retried. */
  async block(user: bigint, on = true): Promise<void> {
    await this.call(Cmd.BLOCK, BlockRequestSchema, { user, on }, EmptySchema, "idempotent");
  }

  /**
   * setGroupProfile changes the name, announcement or avatar URL of conv
   * (owner and admins); each part that changes posts its notice. Setting
   * what is set changes nothing: retried.
   */
  async setGroupProfile(conv: bigint, p: GroupProfile): Promise<void> {
    await this.call(Cmd.SET_GROUP_PROFILE, SetGroupProfileRequestSchema, { conv, ...p }, EmptySchema, "idempotent");
  }

  /**
   * readReceipts returns one page of who has read the message at convSeq
   * of conv: members (who received it, its sender left out), read (how
   * many of them have read it), and users, a page of the readers' ids
   * ascending (with unread: of the others); nextAfter is the cursor of the
   * next page, 0 at the end. The counts need only the first page.
   */
  async readReceipts(conv: bigint, convSeq: bigint, opt: ReadReceiptsOptions = {}): Promise<ReadReceiptsResponse> {
    return this.call(Cmd.READ_RECEIPTS, ReadReceiptsRequestSchema, { conv, convSeq, ...opt }, ReadReceiptsResponseSchema, "idempotent");
  }

  /**
   * readReceiptPages pages through readReceipts from the first page to the
   * last. Each page is computed afresh: a member who reads the message
   * meanwhile may move from one list to the other.
   */
  async *readReceiptPages(conv: bigint, convSeq: bigint, opt: Omit<ReadReceiptsOptions, "afterUser"> = {}): AsyncGenerator<ReadReceiptsResponse> {
    for (let afterUser = 0n; ; ) {
      const page = await this.readReceipts(conv, convSeq, { ...opt, afterUser });
      yield page;
      if (page.nextAfter === 0n) return;
      afterUser = page.nextAfter;
    }
  }

  /**
   * presence returns those of users who have a device connected, each
   * once, ascending. Ask again while they are on screen (every 30 s or
   * so): the server tells nobody when someone comes or goes.
   */
  async presence(users: bigint[]): Promise<bigint[]> {
    const online: bigint[] = [];
    for (let i = 0; i < users.length; i += MAX_PRESENCE_USERS) {
      const r = await this.call(Cmd.PRESENCE, PresenceRequestSchema, { users: users.slice(i, i + MAX_PRESENCE_USERS) }, PresenceResponseSchema, "idempotent");
      online.push(...r.online);
    }
    // A user named in two chunks comes back from each.
    return [...new Set(online)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /**
   * typing tells the other online members of conv that this user is
   * typing there: call it when the user starts and every
   * TYPING_INTERVAL_MS while they go on. It is never resent: the next
   * keystroke replaces a refused or lost one.
   */
  async typing(conv: bigint): Promise<void> {
    await this.call(Cmd.TYPING, TypingRequestSchema, { conv }, EmptySchema, "never");
  }

  private async call<I extends DescMessage, O extends DescMessage>(
    command: number,
    reqSchema: I,
    req: MessageInitShape<I>,
    respSchema: O,
    retry: Retry,
  ): Promise<MessageShape<O>> {
    const body = toBinary(reqSchema, create(reqSchema, req));
    for (let attempt = 1; ; attempt++) {
      const conn = await this.online();
      try {
        return fromBinary(respSchema, await conn.request(command, body));
      } catch (err) {
        if (attempt >= this.opts.maxAttempts || !this.mayRetry(err, retry)) throw err;
        // A lost connection is waited out by online(); an error answer waits here.
        if (err instanceof InboxdError) await sleep(Math.max(this.backoff(attempt - 1), err.retryAfterMs));
      }
    }
  }

  private mayRetry(err: unknown, retry: Retry): boolean {
    if (this.stopped !== undefined) return false;
    switch (retry) {
      case "refused":
        return err instanceof InboxdError && err.code === Code.RATE_LIMITED;
      case "idempotent":
        return err instanceof ConnectionLostError || (err instanceof InboxdError && (err.retryable || this.connectionError(err)));
      case "never":
        return false;
    }
  }

  /** A code in an ERROR frame that ended the connection (a request in flight gets it): the request never got its answer. */
  private connectionError(err: InboxdError): boolean {
    return err.code === Code.REDIRECT || err.code === Code.SLOW_READER || err.code === Code.IDLE;
  }

  /** online resolves with the authenticated connection, waiting for one if needed. */
  private online(): Promise<Conn> {
    if (this.stopped !== undefined) return Promise.reject(new ClosedError(this.stopped ?? undefined));
    if (this.authed && !this.authed.closed) return Promise.resolve(this.authed);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  // --- the connection loop ---

  private async run(): Promise<void> {
    const list = [...this.addrs].sort(() => Math.random() - 0.5);
    let next = 0;
    let failures = 0;
    let redirects = 0;
    let redirect: string | undefined;
    while (this.stopped === undefined) {
      const addr = redirect ?? list[next++ % list.length];
      redirect = undefined;
      this.emit("state", "connecting");
      let cause: Error;
      try {
        cause = await this.session(addr, () => {
          failures = 0;
          redirects = 0;
        });
      } catch (err) {
        cause = err as Error;
      }
      if (this.stopped !== undefined) break;
      this.synced = false;
      this._auth = undefined;
      this.emit("offline", cause);
      this.emit("state", "offline");
      if (cause instanceof InboxdError) {
        if (cause.code === Code.REDIRECT && cause.redirect) {
          if (++redirects <= this.opts.maxRedirects) {
            redirect = cause.redirect;
            continue;
          }
          redirects = 0;
        } else if (cause.final) {
          this.stop(cause);
          break;
        }
      }
      const wait = Math.max(this.backoff(failures++), cause instanceof InboxdError ? cause.retryAfterMs : 0);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  /** backoff: the wait before attempt n (0-based), doubling from the minimum to the cap, each randomised between half and all of it. */
  private backoff(n: number): number {
    const full = Math.min(this.opts.backoffMaxMs, this.opts.backoffMinMs * 2 ** Math.min(n, 20));
    return full / 2 + (Math.random() * full) / 2;
  }

  /** session runs one connection until it ends and returns why. */
  private async session(addr: string, authenticated: () => void): Promise<Error> {
    const conn = await Conn.dial(this.opts.dialer, addr, this.opts.dialTimeoutMs);
    this.conn = conn;
    if (this.stopped !== undefined) {
      conn.close(new ClosedError());
      return new ClosedError();
    }
    let auth: AuthResponse;
    try {
      const token = typeof this.opts.token === "function" ? await this.opts.token() : this.opts.token;
      auth = fromBinary(AuthResponseSchema, await conn.request(Cmd.AUTH, toBinary(AuthRequestSchema, create(AuthRequestSchema, { token }))));
    } catch (err) {
      conn.close(err as Error);
      throw err;
    }
    conn.authenticated(auth.maxFrame);
    authenticated();
    this._auth = auth;
    this.authed = conn;
    const serverMs = auth.heartbeatMs || 30_000;
    const heartbeat = this.heartbeat(conn, this.opts.heartbeatMs > 0 ? Math.min(this.opts.heartbeatMs, serverMs) : serverMs);
    try {
      this.emit("online", auth);
      this.emit("state", "online");
      for (const w of this.waiters.splice(0)) w.resolve(conn);
      // Catch up first; pushes that came meanwhile are taken after it.
      this.step(conn, async () => {
        if (this.opts.fromHead && this.lastSeq === 0n && !this.everSynced) {
          await this.setLast(auth.headSeq);
        } else if (auth.headSeq < this.lastSeq) {
          const last = this.lastSeq;
          await this.setLast(0n);
          await this.emitAsync("reset", auth.headSeq, last);
        }
        await this.catchUp(conn);
        this.synced = true;
        this.everSynced = true;
        this.emit("synced", this.lastSeq);
        for (const w of this.syncWaiters.splice(0)) w.resolve();
      });
      conn.onPush((entries) => this.step(conn, () => this.applyPushes(conn, entries)));
      conn.onTyping((ev) => this.emit("typing", ev.conv, ev.user));
      return await conn.ended;
    } finally {
      clearInterval(heartbeat);
    }
  }

  /** heartbeat sends a HEARTBEAT every interval and drops the connection when one goes unanswered for an interval. */
  private heartbeat(conn: Conn, intervalMs: number): ReturnType<typeof setInterval> {
    let answered = true;
    const t = setInterval(() => {
      if (!answered) {
        conn.close(new ConnectionLostError(new Error(`no answer to a heartbeat in ${intervalMs} ms`)));
        return;
      }
      answered = false;
      conn.request(Cmd.HEARTBEAT, new Uint8Array(0)).then(
        () => (answered = true),
        () => {},
      );
    }, intervalMs);
    (t as any).unref?.();
    return t;
  }

  /** step queues fn behind the entries being applied; a failure ends the connection, and the next one catches up. */
  private step(conn: Conn, fn: () => Promise<void>): void {
    this.chain = this.chain.then(async () => {
      if (conn.closed || this.stopped !== undefined) return;
      try {
        await fn();
      } catch (err) {
        conn.close(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }

  /** applyPushes takes pushed entries by rules 2–4 of the sync algorithm. */
  private async applyPushes(conn: Conn, entries: Entry[]): Promise<void> {
    for (const e of entries) {
      if (e.seq <= this.lastSeq) continue;
      if (e.seq === this.lastSeq + 1n) {
        await this.deliver(e);
        continue;
      }
      await this.catchUp(conn);
      // The SYNC read everything durable, and a push is sent only once its entry is.
      if (e.seq > this.lastSeq) throw new ProtocolError(`pushed seq ${e.seq}, but SYNC ends at ${this.lastSeq}`);
    }
  }

  /** catchUp syncs after last_seq until the server has no more; retryable answers are retried on the same connection. */
  private async catchUp(conn: Conn): Promise<void> {
    for (let attempt = 0; ; ) {
      const before = this.lastSeq;
      let r;
      try {
        r = fromBinary(
          SyncResponseSchema,
          await conn.request(Cmd.SYNC, toBinary(SyncRequestSchema, create(SyncRequestSchema, { afterSeq: before, limit: this.opts.syncLimit }))),
        );
      } catch (err) {
        if (!(err instanceof InboxdError) || !err.retryable || conn.closed) throw err;
        await sleep(Math.max(this.backoff(attempt++), err.retryAfterMs));
        continue;
      }
      attempt = 0;
      for (const e of r.entries) {
        if (e.seq <= this.lastSeq) continue;
        if (e.seq !== this.lastSeq + 1n) throw new ProtocolError(`SYNC after ${before} returned seq ${e.seq} after ${this.lastSeq}`);
        await this.deliver(e);
      }
      if (!r.hasMore) return;
      if (this.lastSeq === before) throw new ProtocolError(`SYNC after ${before} has more but returned nothing new`);
    }
  }

  /** deliver hands one entry to the app, then moves last_seq past it. */
  private async deliver(e: Entry): Promise<void> {
    await this.emitAsync("entry", e);
    switch (e.kind) {
      case Kind.READ:
        await this.emitAsync("read", e.conv, e.convSeq);
        break;
      case Kind.DND:
        await this.emitAsync("dnd", e.conv, e.convSeq !== 0n);
        break;
      default:
        if (e.message) await this.emitAsync("message", e.message, e);
    }
    await this.setLast(e.seq);
  }

  private async setLast(seq: bigint): Promise<void> {
    this.lastSeq = seq;
    await this.opts.store.save(seq);
  }

  private stop(err: Error | null): void {
    if (this.stopped !== undefined) return;
    this.stopped = err;
    this.conn?.close(new ClosedError(err ?? undefined));
    this.wake?.();
    const closed = new ClosedError(err ?? undefined);
    for (const w of this.waiters.splice(0)) w.reject(closed);
    for (const w of this.syncWaiters.splice(0)) w.reject(closed);
    this.emit("state", "closed");
    this.emit("closed", err ?? undefined);
  }

  private emit<K extends keyof ClientEvents>(event: K, ...args: Parameters<Listener<K>>): void {
    for (const fn of this.listeners.get(event) ?? []) {
      try {
        (fn as (...a: unknown[]) => unknown)(...args);
      } catch {
        // A listener of a notification event cannot stop the client.
      }
    }
  }

  private async emitAsync<K extends keyof ClientEvents>(event: K, ...args: Parameters<Listener<K>>): Promise<void> {
    for (const fn of this.listeners.get(event) ?? []) {
      await (fn as (...a: unknown[]) => unknown)(...args);
    }
  }
}
