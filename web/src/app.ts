// The web chat page: sign in with a token, the conversation list with
// unread counts, a conversation with history scroll-back, send, live
// pushes, new groups. It keeps no state across reloads: it starts at the
// inbox head and shows CONVERSATIONS and HISTORY (rule 8 of the sync
// algorithm), then applies what the SDK hands it.

import { Client, ClosedError, InboxdError, Kind, webSocketDialer, type Conversation, type Message } from "@inboxd/sdk";

const PAGE = 20;

interface ConvView {
  conv: bigint;
  name: string;
  head: bigint;
  readSeq: bigint;
  last?: Message;
  /** Messages shown, by conv_seq: filled by history() when opened, and by pushes. */
  messages: Map<bigint, Message>;
  loaded: boolean;
  /** history() has come back empty: nothing older to show. */
  complete: boolean;
}

const el = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const max = (a: bigint, b: bigint) => (a > b ? a : b);
const text = (m: Message) => new TextDecoder().decode(m.body);

let client: Client | undefined;
let me = 0n;
let openConv: bigint | undefined;
const convs = new Map<bigint, ConvView>();

function view(conv: bigint): ConvView {
  let v = convs.get(conv);
  if (!v) {
    v = { conv, name: `group ${conv}`, head: 0n, readSeq: 0n, messages: new Map(), loaded: false, complete: false };
    convs.set(conv, v);
  }
  return v;
}

function showError(err: unknown) {
  el("error").textContent = err instanceof Error ? err.message : String(err);
}

function notice(m: Message): { type?: string; name?: string; text?: string } {
  try {
    return JSON.parse(text(m));
  } catch {
    return {};
  }
}

/** describe renders a message for the list and the conversation. */
function describe(m: Message): string {
  switch (m.kind) {
    case Kind.TEXT:
    case Kind.SYSTEM:
      return text(m);
    case Kind.NOTICE:
      return notice(m).text ?? "(notice)";
    default:
      return "unsupported message";
  }
}

// --- state changes ---

function merge(c: Conversation) {
  const v = view(c.conv);
  v.name = c.name;
  v.head = max(v.head, c.head);
  v.readSeq = max(v.readSeq, c.readSeq);
  if (c.last && (!v.last || c.last.convSeq > v.last.convSeq)) v.last = c.last;
}

async function refreshConversations() {
  if (!client) return;
  for (const c of await client.conversations()) merge(c);
  render();
}

function onMessage(m: Message) {
  const known = convs.has(m.conv);
  const v = view(m.conv);
  if (m.kind === Kind.NOTICE && notice(m).type === "create" && notice(m).name) v.name = notice(m).name!;
  v.head = max(v.head, m.convSeq);
  if (!v.last || m.convSeq > v.last.convSeq) v.last = m;
  // Sending moves the sender's own marker (docs/protocol.md, "Read markers").
  if (m.sender === me) v.readSeq = max(v.readSeq, m.convSeq);
  if (v.loaded) v.messages.set(m.convSeq, m);
  if (!known) void refreshConversations().catch(showError);
  if (openConv === m.conv) markRead(v);
  render();
}

function markRead(v: ConvView) {
  if (!client || v.readSeq >= v.head || document.visibilityState === "hidden") return;
  v.readSeq = v.head;
  client.markRead(v.conv, v.head).catch(showError);
}

async function open(conv: bigint) {
  openConv = conv;
  const v = view(conv);
  if (!v.loaded && client) {
    const page = await client.history(conv, 0n, PAGE);
    for (const m of page) v.messages.set(m.convSeq, m);
    v.loaded = true;
    v.complete = page.length < PAGE;
  }
  markRead(v);
  render();
  const box = el("messages");
  box.scrollTop = box.scrollHeight;
}

/** older scrolls back: the page before the oldest message shown. */
async function older() {
  const v = openConv !== undefined ? convs.get(openConv) : undefined;
  if (!client || !v || v.complete) return;
  const oldest = [...v.messages.keys()].reduce((a, b) => (a < b ? a : b), v.head + 1n);
  const page = await client.history(v.conv, oldest, PAGE);
  if (page.length < PAGE) v.complete = true;
  const box = el("messages");
  const fromBottom = box.scrollHeight - box.scrollTop;
  for (const m of page) v.messages.set(m.convSeq, m);
  render();
  box.scrollTop = box.scrollHeight - fromBottom;
}

// --- rendering ---

function render() {
  const list = el("convs");
  const sorted = [...convs.values()].sort((a, b) => Number((b.last?.timeMs ?? 0n) - (a.last?.timeMs ?? 0n)) || (b.conv > a.conv ? 1 : -1));
  list.replaceChildren(
    ...sorted.map((v) => {
      const li = document.createElement("li");
      li.dataset.conv = v.conv.toString();
      li.className = v.conv === openConv ? "open" : "";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = v.name;
      const unread = document.createElement("span");
      unread.className = "unread";
      unread.dataset.count = unread.textContent = (v.head - v.readSeq).toString();
      const preview = document.createElement("span");
      preview.className = "preview";
      preview.textContent = v.last ? describe(v.last) : "";
      li.append(name, unread, preview);
      li.onclick = () => void open(v.conv).catch(showError);
      return li;
    }),
  );

  const v = openConv !== undefined ? convs.get(openConv) : undefined;
  el("conv").hidden = !v;
  if (!v) return;
  el("conv-title").textContent = v.name;
  el("older").hidden = v.complete;
  el("list").replaceChildren(
    ...[...v.messages.values()]
      .sort((a, b) => (a.convSeq < b.convSeq ? -1 : 1))
      .map((m) => {
        const div = document.createElement("div");
        div.dataset.seq = m.convSeq.toString();
        if (m.kind === Kind.NOTICE) {
          div.className = "notice";
          div.textContent = describe(m);
          return div;
        }
        div.className = m.sender === me ? "msg mine" : "msg";
        const who = document.createElement("span");
        who.className = "sender";
        who.textContent = m.sender === me ? "me" : m.sender === 0n ? "system" : `user ${m.sender}`;
        const body = document.createElement("span");
        body.className = "body";
        body.textContent = describe(m);
        div.append(who, body);
        return div;
      }),
  );
}

// --- sign in and out ---

async function signIn(addr: string, token: string) {
  void client?.close(); // an earlier attempt still trying
  const c = new Client({ addrs: addr, token, dialer: webSocketDialer(), fromHead: true });
  c.on("state", (s) => (el("state").textContent = s));
  c.on("online", (auth) => {
    me = auth.userId;
    el("me").textContent = `user ${auth.userId} (${auth.deviceId})`;
  });
  c.on("message", (m) => onMessage(m));
  c.on("read", (conv, seq) => {
    const v = view(conv);
    v.readSeq = max(v.readSeq, seq);
    render();
  });
  // After a reconnect the SYNC brought what was missed; the list is read again for names and groups joined meanwhile.
  c.on("synced", () => void refreshConversations().catch(showError));
  c.on("closed", (err) => {
    if (err && client === c) signOut(err);
  });
  client = c;
  // connect() keeps trying; say why it may not get through meanwhile.
  const slow = setTimeout(() => {
    el("signin-error").textContent = `still trying ${addr}: is inboxd running with -ws, and -ws-origins admitting ${location.origin}?`;
  }, 5000);
  try {
    await c.connect();
  } finally {
    clearTimeout(slow);
  }
  el("signin-error").textContent = "";
  localStorage.setItem("inboxd.addr", addr);
  localStorage.setItem("inboxd.token", token);
  el("signin").hidden = true;
  el("chat").hidden = false;
}

function signOut(err?: unknown) {
  void client?.close();
  client = undefined;
  openConv = undefined;
  convs.clear();
  localStorage.removeItem("inboxd.token");
  el("chat").hidden = true;
  el("signin").hidden = false;
  const e = err instanceof ClosedError && err.cause ? err.cause : err;
  el("signin-error").textContent = e ? (e instanceof InboxdError ? `${e.codeName}: ${e.serverMessage}` : String(e)) : "";
}

el<HTMLInputElement>("addr").value = new URLSearchParams(location.search).get("addr") ?? localStorage.getItem("inboxd.addr") ?? "ws://127.0.0.1:7603/ws";
el<HTMLTextAreaElement>("token").value = localStorage.getItem("inboxd.token") ?? "";

el("signin").onsubmit = (ev) => {
  ev.preventDefault();
  el("signin-error").textContent = "";
  const addr = el<HTMLInputElement>("addr").value.trim();
  const token = el<HTMLTextAreaElement>("token").value.trim();
  signIn(addr, token).catch((err) => {
    // A newer attempt, or sign out, closed this one: nothing to report.
    if (!(err instanceof ClosedError) || err.cause) signOut(err);
  });
};
el("signout").onclick = () => signOut();
el("older").onclick = () => void older().catch(showError);
el("messages").onscroll = () => {
  if (el("messages").scrollTop === 0) void older().catch(showError);
};
el("composer").onsubmit = (ev) => {
  ev.preventDefault();
  const input = el<HTMLInputElement>("text");
  const body = input.value.trim();
  if (!client || openConv === undefined || body === "") return;
  input.value = "";
  client.send(openConv, body).catch(showError);
};
el("newgroup").onsubmit = (ev) => {
  ev.preventDefault();
  if (!client) return;
  const name = el<HTMLInputElement>("group-name").value.trim();
  const members = el<HTMLInputElement>("group-members")
    .value.split(/[\s,]+/)
    .filter(Boolean)
    .map((s) => BigInt(s));
  client
    .createGroup({ name, members })
    .then(async (g) => {
      el<HTMLInputElement>("group-name").value = el<HTMLInputElement>("group-members").value = "";
      view(g.id).name = g.name;
      await open(g.id);
    })
    .catch(showError);
};
document.addEventListener("visibilitychange", () => {
  const v = openConv !== undefined ? convs.get(openConv) : undefined;
  if (v) markRead(v);
});
