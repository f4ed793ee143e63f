// The web chat page: sign in with a token, the conversation list with
// unread counts, a conversation with history scroll-back, send, live
// pushes, new groups. It keeps no state across reloads: it starts at the
// inbox head and shows CONVERSATIONS (the SDK's ConversationList, which
// follows the entries from then on) and HISTORY (rule 8 of the sync
// algorithm).

import { Client, ClosedError, ConversationList, InboxdError, Kind, webSocketDialer, type Message } from "@inboxd/sdk";

const PAGE = 20;

/** The messages shown of a conversation: filled by history() when opened, and by pushes. */
interface Thread {
  messages: Map<bigint, Message>;
  /** history() has come back short: nothing older to show. */
  complete: boolean;
}

const el = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const text = (m: Message) => new TextDecoder().decode(m.body);

let client: Client | undefined;
let list: ConversationList | undefined;
let me = 0n;
let openConv: bigint | undefined;
const threads = new Map<bigint, Thread>();

function showError(err: unknown) {
  el("error").textContent = err instanceof Error ? err.message : String(err);
}

/** describe renders a message for the list and the conversation. */
function describe(m: Message): string {
  switch (m.kind) {
    case Kind.TEXT:
    case Kind.SYSTEM:
      return text(m);
    case Kind.NOTICE:
      try {
        return JSON.parse(text(m)).text ?? "(notice)";
      } catch {
        return "(notice)";
      }
    default:
      return "unsupported message";
  }
}

// --- state changes ---

function onMessage(m: Message) {
  threads.get(m.conv)?.messages.set(m.convSeq, m);
  if (openConv === m.conv) markRead(m.conv);
  render();
}

function markRead(conv: bigint) {
  if (document.visibilityState !== "hidden") list?.markRead(conv).catch(showError);
}

async function open(conv: bigint) {
  openConv = conv;
  if (!threads.has(conv) && client) {
    const page = await client.history(conv, 0n, PAGE);
    threads.set(conv, { messages: new Map(page.map((m) => [m.convSeq, m])), complete: page.length < PAGE });
  }
  markRead(conv);
  render();
  const box = el("messages");
  box.scrollTop = box.scrollHeight;
}

/** older scrolls back: the page before the oldest message shown. */
async function older() {
  const t = openConv !== undefined ? threads.get(openConv) : undefined;
  if (!client || !t || t.complete || t.messages.size === 0) return;
  const oldest = [...t.messages.keys()].reduce((a, b) => (a < b ? a : b));
  const page = await client.history(openConv!, oldest, PAGE);
  if (page.length < PAGE) t.complete = true;
  const box = el("messages");
  const fromBottom = box.scrollHeight - box.scrollTop;
  for (const m of page) t.messages.set(m.convSeq, m);
  render();
  box.scrollTop = box.scrollHeight - fromBottom;
}

// --- rendering ---

function render() {
  el("convs").replaceChildren(
    ...(list?.all() ?? []).map((v) => {
      const li = document.createElement("li");
      li.dataset.conv = v.conv.toString();
      li.className = v.conv === openConv ? "open" : "";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = v.name || `group ${v.conv}`;
      const unread = document.createElement("span");
      unread.className = "unread";
      unread.dataset.count = unread.textContent = v.unread.toString();
      const preview = document.createElement("span");
      preview.className = "preview";
      preview.textContent = v.last ? describe(v.last) : "";
      li.append(name, unread, preview);
      li.onclick = () => void open(v.conv).catch(showError);
      return li;
    }),
  );

  const t = openConv !== undefined ? threads.get(openConv) : undefined;
  el("conv").hidden = !t;
  if (!t) return;
  el("conv-title").textContent = list?.get(openConv!)?.name || `group ${openConv}`;
  el("older").hidden = t.complete;
  el("list").replaceChildren(
    ...[...t.messages.values()]
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
  // The list reads CONVERSATIONS after each catch-up, and then follows the entries.
  list = new ConversationList(c);
  list.onChange(() => render());
  c.on("message", (m) => onMessage(m));
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
  list = undefined;
  openConv = undefined;
  threads.clear();
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
  const c = client;
  const name = el<HTMLInputElement>("group-name").value.trim();
  const ids = el<HTMLInputElement>("group-members").value.split(/[\s,]+/).filter(Boolean);
  Promise.resolve()
    .then(() => {
      const bad = ids.find((s) => !/^\d+$/.test(s));
      if (bad !== undefined) throw new Error(`${JSON.stringify(bad)} is not a user id`);
      return c.createGroup({ name, members: ids.map((s) => BigInt(s)) });
    })
    .then(async (g) => {
      el<HTMLInputElement>("group-name").value = el<HTMLInputElement>("group-members").value = "";
      await open(g.id);
    })
    .catch(showError);
};
document.addEventListener("visibilitychange", () => {
  if (openConv !== undefined) markRead(openConv);
});
