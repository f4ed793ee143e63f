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
  /** The newest message the user has, if known. */
  last?: Message;
}

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
  private listeners = new Set<(conv?: bigint) => void>();
  private refreshing?: Promise<void>;

  constructor(private client: Client) {
    client.on("message", (m) => this.onMessage(m));
    client.on("read", (conv, convSeq) => {
      const v = this.view(conv);
      v.readSeq = max(v.readSeq, convSeq);
      this.changed(v);
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
    if (c.last && (!v.last || c.last.convSeq > v.last.convSeq)) v.last = c.last;
    v.unread = v.head - v.readSeq;
  }

  private onMessage(m: Message): void {
    const known = this.convs.has(m.conv);
    const v = this.view(m.conv);
    v.head = max(v.head, m.convSeq);
    if (!v.last || m.convSeq > v.last.convSeq) v.last = m;
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
      v = { conv, name: "", head: 0n, readSeq: 0n, unread: 0n, dnd: false };
      this.convs.set(conv, v);
    }
    return v;
  }

  private changed(v?: ConversationView): void {
    if (v) v.unread = v.head > v.readSeq ? v.head - v.readSeq : 0n;
    for (const fn of this.listeners) fn(v?.conv);
  }
}
