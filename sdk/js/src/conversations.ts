// The user's conversation list with unread counts, kept live: read once
// with CONVERSATIONS, then moved by the entries the client applies
// (docs/protocol.md, "Read markers and unread counts").

import type { Client } from "./client.js";
import { Kind } from "./frame.js";
import type { Conversation, Message } from "./gen/inboxd_pb.js";

/** One conversation as the list shows it. */
export interface ConversationView {
  conv: bigint;
  name: string;
  /** The newest conv_seq the user has. */
  head: bigint;
  /** The user's read marker. */
  readSeq: bigint;
  /** head − readSeq. */
  unread: bigint;
  dnd: boolean;
  /** Unread messages that mention the user or everyone (the server counts at most 1000). */
  mentionUnread: bigint;
  /** A direct conversation of two users: name is empty, show the peer's. */
  direct: boolean;
  /** For a direct conversation, the other user (0n until known); 0n for a group. */
  peer: bigint;
  /** The newest message the user has, if known. */
  last?: Message;
}

/**
 * What mentionUnread is made of: the server's count at the latest
 * CONVERSATIONS, which covers conv_seqs up to its head, and the mentions
 * applied since, above that head.
 */
interface Mentions {
  /** The server's mention_unread, with its head and read_seq. */
  count: bigint;
  head: bigint;
  read: bigint;
  /** conv_seqs of the unread mentions of the user applied after that head. */
  since: Set<bigint>;
}

/** Direct conversation ids have the top bit set; group ids are below 2^63. */
const DIRECT_BIT = 1n << 63n;

const max = (a: bigint, b: bigint) => (a > b ? a : b);

/** The notices after which the actor is no longer a member: they do not move the actor's marker. */
const leaving = new Set(["leave", "dismiss"]);

function noticeType(m: Message): string | undefined {
  try {
    return JSON.parse(new TextDecoder().decode(m.body)).type;
  } catch {
    return undefined;
  }
}

/**
 * ConversationList keeps the conversations and their unread counts up to
 * date from the client's entries, and reads CONVERSATIONS again after
 * each catch-up and for a conversation it has not seen (its name). Create
 * it before client.connect(), so that it sees every entry.
 */
export class ConversationList {
  private convs = new Map<bigint, ConversationView>();
  private mentions = new Map<bigint, Mentions>();
  private listeners = new Set<(conv?: bigint) => void>();
  private refreshing?: Promise<void>;

  constructor(private client: Client) {
    client.on("message", (m) => this.onMessage(m));
    client.on("read", (conv, convSeq) => {
      const v = this.view(conv);
      v.readSeq = max(v.readSeq, convSeq);
      this.changed(v);
      // A marker between the server's read_seq and head passed an unknown part of its count.
      const m = this.mentions.get(conv);
      if (m && m.count > 0n && v.readSeq > m.read && v.readSeq < m.head) void this.refresh().catch(() => {});
    });
    client.on("dnd", (conv, on) => {
      const v = this.view(conv);
      v.dnd = on;
      this.changed(v);
    });
    client.on("synced", () => void this.refresh().catch(() => {}));
  }

  /** onChange calls fn after each change, with the conversation changed (undefined: several). */
  onChange(fn: (conv?: bigint) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  get(conv: bigint): ConversationView | undefined {
    return this.convs.get(conv);
  }

  /** all returns the conversations, latest activity first (ties: the higher id first), as CONVERSATIONS orders them. */
  all(): ConversationView[] {
    return [...this.convs.values()].sort((a, b) => {
      const ta = a.last?.timeMs ?? 0n;
      const tb = b.last?.timeMs ?? 0n;
      if (ta !== tb) return ta > tb ? -1 : 1;
      return a.conv > b.conv ? -1 : 1;
    });
  }

  /** refresh reads CONVERSATIONS and merges it: counts only move forward, so entries applied meanwhile are kept. */
  refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        for (const c of await this.client.conversations()) this.merge(c);
        this.changed();
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  /** markRead moves the marker of conv to its head, here and on the server; a no-op if all is read. */
  async markRead(conv: bigint): Promise<void> {
    const v = this.convs.get(conv);
    if (!v || v.readSeq >= v.head) return;
    const head = v.head;
    v.readSeq = head;
    this.changed(v);
    await this.client.markRead(conv, head);
  }

  private merge(c: Conversation): void {
    const v = this.view(c.conv);
    v.name = c.name;
    v.head = max(v.head, c.head);
    v.readSeq = max(v.readSeq, c.readSeq);
    v.dnd = c.dnd;
    v.direct = c.direct;
    v.peer = c.peer;
    const m = this.mention(c.conv);
    m.count = c.mentionUnread;
    m.head = c.head;
    m.read = c.readSeq;
    for (const s of m.since) if (s <= c.head) m.since.delete(s);
    if (c.last && (!v.last || c.last.convSeq > v.last.convSeq)) v.last = c.last;
  }

  private onMessage(m: Message): void {
    const known = this.convs.has(m.conv);
    const v = this.view(m.conv);
    v.head = max(v.head, m.convSeq);
    if (!v.last || m.convSeq > v.last.convSeq) v.last = m;
    const me = this.client.auth?.userId ?? 0n;
    if (v.direct && m.sender !== me && m.sender !== 0n) v.peer = m.sender;
    // Only messages sent with SEND count (kinds below 0x8000), and never the user's own.
    if (m.kind < 0x8000 && m.sender !== me && (m.mentionAll || m.mentions.includes(me))) {
      const ms = this.mention(m.conv);
      if (m.convSeq > ms.head) ms.since.add(m.convSeq);
    }
    // Sending moves the sender's own marker, with no read entry of its own.
    if (m.sender === this.client.auth?.userId && m.sender !== 0n && !(m.kind === Kind.NOTICE && leaving.has(noticeType(m) ?? ""))) {
      v.readSeq = max(v.readSeq, m.convSeq);
    }
    this.changed(v);
    if (!known) void this.refresh().catch(() => {});
  }

  private view(conv: bigint): ConversationView {
    let v = this.convs.get(conv);
    if (!v) {
      v = { conv, name: "", head: 0n, readSeq: 0n, unread: 0n, dnd: false, mentionUnread: 0n, direct: conv >= DIRECT_BIT, peer: 0n };
      this.convs.set(conv, v);
    }
    return v;
  }

  private mention(conv: bigint): Mentions {
    let m = this.mentions.get(conv);
    if (!m) this.mentions.set(conv, (m = { count: 0n, head: 0n, read: 0n, since: new Set() }));
    return m;
  }

  private changed(v?: ConversationView): void {
    for (const c of v ? [v] : this.convs.values()) this.count(c);
    for (const fn of this.listeners) fn(v?.conv);
  }

  /** count derives the counts of v from its head, its marker and the mentions known. */
  private count(v: ConversationView): void {
    v.unread = v.head > v.readSeq ? v.head - v.readSeq : 0n;
    const m = this.mention(v.conv);
    let n = v.readSeq >= m.head ? 0n : m.count;
    for (const s of m.since) if (s > v.readSeq) n++;
    v.mentionUnread = n;
  }
}
