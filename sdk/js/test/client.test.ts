// The SDK against a real inboxd, over each transport the server has.

import assert from "node:assert/strict";
import { createServer, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import {
  Client,
  Cmd,
  ConversationList,
  Code,
  directConv,
  encodeFrame,
  FLAG_ERROR,
  FLAG_RESPONSE,
  FrameReader,
  InboxdError,
  Kind,
  MemorySeqStore,
  nodeWebSocketDialer,
  pb,
  tcpDialer,
  type ClientOptions,
  type Dialer,
  type Entry,
  type Frame,
  type SendResult,
} from "../src/node.js";
import { create, toBinary } from "@bufbuild/protobuf";
import { WebSocketServer } from "ws";
import { Inboxd } from "./server.js";

interface Transport {
  name: string;
  dialer: Dialer;
  addr(s: Inboxd): string;
}

const transports: Transport[] = [
  { name: "tcp", dialer: tcpDialer, addr: (s) => s.addr },
  { name: "websocket", dialer: nodeWebSocketDialer(), addr: (s) => s.wsAddr },
];

/** waitFor polls cond until it holds, failing after limitMs: a bound on a wait, not a measure of speed. */
async function waitFor(what: string, cond: () => boolean | Promise<boolean>, limitMs = 30_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A client with what it handed the app recorded. */
class Recorded {
  entries: Entry[] = [];
  reads = new Map<bigint, bigint>();
  client: Client;
  constructor(opts: ClientOptions) {
    this.client = new Client({ backoffMinMs: 50, backoffMaxMs: 500, ...opts });
    this.client.on("entry", (e) => {
      this.entries.push(e);
    });
    this.client.on("read", (conv, seq) => {
      this.reads.set(conv, seq);
    });
  }
  messages(conv: bigint, kind: number = Kind.TEXT) {
    return this.entries.filter((e) => e.conv === conv && e.kind === kind).map((e) => e.message!);
  }
  texts(conv: bigint): string[] {
    return this.messages(conv).map((m) => new TextDecoder().decode(m.body));
  }
}

/** assertGapFree checks that what a client handed the app is seq 1, 2, 3, … once each. */
function assertGapFree(entries: Entry[], from = 1n) {
  entries.forEach((e, i) => assert.equal(e.seq, from + BigInt(i), `entry ${i} has seq ${e.seq}`));
}

interface Faults {
  /** Called for each frame from the server: "drop" loses it, "close" drops the connection instead. */
  incoming?(f: Frame): "drop" | "close" | undefined;
  /** Called with the command of each frame the client sends. */
  outgoing?(command: number): void;
  /** Called when the client closes a connection. */
  closed?(): void;
}

/** faulty wraps a dialer to lose frames and count requests, as a bad network or a slow reader would. */
function faulty(inner: Dialer, faults: Faults): Dialer {
  return async (addr, h, signal) => {
    let t: { send(f: Uint8Array): void; close(): void } | undefined;
    t = await inner(
      addr,
      {
        ...h,
        onFrame(f) {
          const what = faults.incoming?.(f);
          if (what === "close") t?.close();
          else if (what !== "drop") h.onFrame(f);
        },
      },
      signal,
    );
    const tt = t;
    return {
      send(frame) {
        faults.outgoing?.(new DataView(frame.buffer, frame.byteOffset).getUint16(6));
        tt.send(frame);
      },
      close: () => {
        faults.closed?.();
        tt.close();
      },
    };
  };
}

for (const tr of transports) {
  describe(`over ${tr.name}`, () => {
    let srv: Inboxd;
    const open: Client[] = [];
    const client = (user: number, opts: Partial<ClientOptions> = {}) => {
      const r = new Recorded({ addrs: tr.addr(srv), token: srv.token(user, opts.dialer ? "faulty" : "main"), dialer: tr.dialer, ...opts });
      open.push(r.client);
      return r;
    };
    before(async () => {
      srv = await Inboxd.start();
    });
    after(async () => {
      await Promise.all(open.map((c) => c.close()));
      await srv.stop();
    });

    test("two users chat: pushes, history pages, unread, mark read", async () => {
      const alice = client(101);
      const bob = client(102);
      await Promise.all([alice.client.connect(), bob.client.connect()]);
      const g = await alice.client.createGroup({ name: "lunch", members: [102n] });
      assert.equal(g.name, "lunch");
      for (let i = 0; i < 25; i++) await alice.client.send(g.id, `m${i}`);
      const want = Array.from({ length: 25 }, (_, i) => `m${i}`);
      await waitFor("bob's pushes", () => bob.texts(g.id).length === 25);
      assert.deepEqual(bob.texts(g.id), want);
      assertGapFree(bob.entries);

      const [conv] = await bob.client.conversations();
      assert.equal(conv.conv, g.id);
      assert.equal(conv.head, 26n); // the create notice and 25 messages
      assert.equal(conv.unread, 26n);
      const [aliceConv] = await alice.client.conversations();
      assert.equal(aliceConv.unread, 0n, "sending moves the sender's marker");

      const page1 = await bob.client.history(g.id);
      assert.equal(page1.length, 20);
      assert.equal(page1[0].convSeq, 26n);
      const page2 = await bob.client.history(g.id, page1[page1.length - 1].convSeq);
      assert.deepEqual(
        page2.map((m) => m.convSeq),
        [6n, 5n, 4n, 3n, 2n, 1n],
      );
      assert.equal(page2[5].kind, Kind.NOTICE);
      assert.deepEqual(await bob.client.history(g.id, 1n), []);

      assert.equal(await bob.client.markRead(g.id, 20n), 20n);
      await waitFor("bob's read entry", () => bob.reads.get(g.id) === 20n);
      assert.equal((await bob.client.conversations())[0].unread, 6n);
    });

    test("group commands", async () => {
      const owner = client(201);
      const carol = client(202);
      await Promise.all([owner.client.connect(), carol.client.connect()]);
      const g = await owner.client.createGroup({ members: [] });
      assert.equal(g.name, "201");
      await owner.client.invite(g.id, [202n, 203n]);
      await owner.client.setRole(g.id, 202n, 2);
      await owner.client.kick(g.id, 203n);
      // A whole-group mute: lifting one that was never set posts nothing.
      await owner.client.mute(g.id, 0n, BigInt(Date.now() + 60_000));
      await carol.client.setDND(g.id, true);
      const info = await carol.client.groupInfo(g.id);
      assert.deepEqual(
        info.members.map((m) => [m.user, m.role]).sort(),
        [
          [201n, 3],
          [202n, 2],
        ],
      );
      const open = await carol.client.createGroup({ name: "open", open: true });
      await owner.client.join(open.id);
      await owner.client.leave(open.id);
      await carol.client.dismiss(open.id);
      await assert.rejects(owner.client.send(open.id, "late"), (e: unknown) => e instanceof InboxdError && e.code === Code.DISMISSED);
      await assert.rejects(owner.client.join(open.id), (e: unknown) => e instanceof InboxdError && e.codeName === "DISMISSED");
      await waitFor("the notices", () => owner.messages(g.id, Kind.NOTICE).length === 5);
      assert.deepEqual(
        owner.messages(g.id, Kind.NOTICE).map((m) => JSON.parse(new TextDecoder().decode(m.body)).type),
        ["create", "invite", "role", "kick", "mute_group"],
      );
      await waitFor("carol's dnd entry", () => carol.entries.some((e) => e.kind === Kind.DND && e.conv === g.id && e.convSeq === 1n));
    });

    test("a client that starts again resumes after its stored seq", async () => {
      const sender = client(301);
      const store = new MemorySeqStore();
      const first = client(302, { store });
      await Promise.all([sender.client.connect(), first.client.connect()]);
      const g = await sender.client.createGroup({ members: [302n] });
      await sender.client.send(g.id, "before");
      await waitFor("the first message", () => first.texts(g.id).length === 1);
      await first.client.close();
      assert.equal(store.seq, 2n);
      await sender.client.send(g.id, "while away 1");
      await sender.client.send(g.id, "while away 2");
      let syncs = 0;
      const dialer = faulty(tr.dialer, { outgoing: (c) => void (c === Cmd.SYNC && syncs++) });
      const second = client(302, { store, dialer, syncLimit: 1 });
      await second.client.connect();
      assert.equal(syncs, 2, "two SYNC pages of one entry: the first said has_more");
      assert.deepEqual(second.texts(g.id), ["while away 1", "while away 2"]);
      assertGapFree(second.entries, 3n);
    });

    test("fromHead: a client without state starts at the head and takes only what comes after", async () => {
      const sender = client(351);
      await sender.client.connect();
      const g = await sender.client.createGroup({ members: [352n] });
      await sender.client.send(g.id, "old");
      const rcv = client(352, { fromHead: true });
      await rcv.client.connect();
      assert.equal(rcv.client.lastAppliedSeq, 2n);
      await sender.client.send(g.id, "new");
      await waitFor("the new message", () => rcv.entries.length === 1);
      assert.deepEqual(rcv.texts(g.id), ["new"]);
      assert.equal(rcv.entries[0].seq, 3n);
    });

    test("ConversationList keeps unread counts live, as CONVERSATIONS would say them", async () => {
      const alice = client(371);
      const bob = client(372);
      const bobPhone = client(372, { token: srv.token(372, "phone") });
      const list = new ConversationList(bob.client);
      await Promise.all([alice.client.connect(), bob.client.connect(), bobPhone.client.connect()]);
      const g = await alice.client.createGroup({ name: "live", members: [372n] });
      for (let i = 0; i < 3; i++) await alice.client.send(g.id, `m${i}`);
      await waitFor("bob's list", () => list.get(g.id)?.unread === 4n && list.get(g.id)?.name === "live");
      await bob.client.send(g.id, "mine");
      await waitFor("his own message read", () => list.get(g.id)?.unread === 0n);
      await alice.client.send(g.id, "one more");
      await waitFor("one more unread", () => list.get(g.id)?.unread === 1n);
      await bobPhone.client.markRead(g.id, 6n); // on his other device
      await waitFor("the read entry", () => list.get(g.id)?.unread === 0n);
      const h = await alice.client.createGroup({ name: "second", members: [372n] });
      await waitFor("the second group", () => list.all()[0]?.conv === h.id && list.all()[0]?.name === "second");
      const server = await bob.client.conversations();
      assert.deepEqual(
        list.all().map((v) => [v.conv, v.name, v.head, v.readSeq, v.unread]),
        server.map((c) => [c.conv, c.name, c.head, c.readSeq, c.unread]),
      );
      await list.markRead(h.id);
      assert.equal((await bob.client.conversations())[0].unread, 0n);
    });

    test("a lost push is a gap, filled by SYNC", async () => {
      const sender = client(401);
      let pushes = 0;
      let syncs = 0;
      const dialer = faulty(tr.dialer, {
        incoming: (f) => (f.command === Cmd.PUSH && ++pushes === 2 ? "drop" : undefined),
        outgoing: (c) => void (c === Cmd.SYNC && syncs++),
      });
      const rcv = client(402, { dialer });
      await Promise.all([sender.client.connect(), rcv.client.connect()]);
      assert.equal(syncs, 1);
      const g = await sender.client.createGroup({ members: [402n] });
      for (let i = 0; i < 6; i++) await sender.client.send(g.id, `m${i}`);
      await waitFor("every message", () => rcv.texts(g.id).length === 6);
      assert.deepEqual(rcv.texts(g.id), ["m0", "m1", "m2", "m3", "m4", "m5"]);
      assertGapFree(rcv.entries);
      assert.equal(syncs, 2, "the gap was filled by a second SYNC");
    });

    // Each request keyed by a client msg id, whose answer is lost once: resent under that id, it is applied once.
    const keyed: Array<{ name: string; command: number; make(c: Client, g: bigint, clientMsgId: string): Promise<SendResult>; kind: number }> = [
      { name: "a send", command: Cmd.SEND, make: (c, g, id) => c.send(g, "once", { clientMsgId: id }), kind: Kind.TEXT },
      { name: "a direct send", command: Cmd.SEND_DIRECT, make: (c, _g, id) => c.sendDirect(1n, "once", { clientMsgId: id }), kind: Kind.TEXT },
      { name: "a recall", command: Cmd.RECALL, make: (c, g, id) => c.recall(g, 2n, { clientMsgId: id }), kind: Kind.RECALL },
      { name: "an edit", command: Cmd.EDIT, make: (c, g, id) => c.edit(g, 2n, "twice", { clientMsgId: id }), kind: Kind.EDIT },
    ];
    keyed.forEach((k, i) => {
      test(`${k.name} whose ack is lost is resent under the same client msg id and stored once`, async () => {
        let dropped = false;
        const dialer = faulty(tr.dialer, {
          incoming: (f) => {
            if (f.command === k.command && f.flags & FLAG_RESPONSE && !dropped) {
              dropped = true;
              return "close";
            }
          },
        });
        const alice = client(501 + i, { dialer });
        await alice.client.connect();
        const g = await alice.client.createGroup({});
        if (k.kind !== Kind.TEXT) await alice.client.send(g.id, "to change");
        const ack = await k.make(alice.client, g.id, `retry-${i}`);
        assert.ok(dropped);
        assert.equal(ack.duplicate, true, "the resend found the first one");
        assert.equal(ack.clientMsgId, `retry-${i}`);
        const conv = k.command === Cmd.SEND_DIRECT ? ack.conv : g.id;
        const hist = await alice.client.history(conv);
        assert.deepEqual(
          hist.filter((m) => m.kind === k.kind).map((m) => m.clientMsgId),
          [`retry-${i}`],
        );
      });
    });

    test("a frame over max_frame is refused before it is sent, and the connection stays", async () => {
      const alice = client(551);
      let offline = 0;
      alice.client.on("offline", () => void offline++);
      await alice.client.connect();
      const g = await alice.client.createGroup({});
      const big = new Uint8Array(alice.client.auth!.maxFrame);
      await assert.rejects(alice.client.send(g.id, big), (e: unknown) => e instanceof InboxdError && e.code === Code.FRAME_TOO_LARGE);
      await assert.rejects(alice.client.send(g.id, big.subarray(0, 65537)), (e: unknown) => e instanceof InboxdError && e.code === Code.INVALID);
      assert.equal((await alice.client.send(g.id, "small")).convSeq, 2n);
      assert.equal(offline, 0);
    });

    test("REPLACED: the old connection of a device stops for good", async () => {
      const first = client(561);
      await first.client.connect();
      let closedWith: Error | undefined;
      first.client.on("closed", (err) => void (closedWith = err));
      const second = client(561);
      await second.client.connect();
      await waitFor("the first client to stop", () => closedWith !== undefined);
      assert.ok(closedWith instanceof InboxdError && closedWith.code === Code.REPLACED);
      await assert.rejects(first.client.conversations(), /client closed/);
      assert.deepEqual(await second.client.conversations(), []);
    });

    test("a server behind the stored seq: reset, then everything from seq 1", async () => {
      const sender = client(571);
      await sender.client.connect();
      const g = await sender.client.createGroup({ members: [572n] });
      const resets: bigint[][] = [];
      const rcv = client(572, { store: new MemorySeqStore(1000n) });
      rcv.client.on("reset", (head, last) => void resets.push([head, last]));
      await rcv.client.connect();
      assert.deepEqual(resets, [[1n, 1000n]]);
      assertGapFree(rcv.entries);
      assert.equal(rcv.entries.length, 1);
      assert.equal(rcv.entries[0].conv, g.id);
    });

    test("a request made while the connection authenticates waits for AUTH's answer, and its larger limit", async () => {
      const owner = client(581);
      await owner.client.connect();
      const g = await owner.client.createGroup({ members: [582n] });
      let sending: Promise<unknown> | undefined;
      const big = new Uint8Array(5000); // over the 4 KiB allowed before the AUTH response
      // The token is asked for on the open connection, right before AUTH goes out.
      const token = async () => {
        sending ??= rcv.client.send(g.id, big);
        return srv.token(582);
      };
      const rcv = client(582, { token });
      await rcv.client.connect();
      const ack = (await sending) as { convSeq: bigint };
      assert.equal(ack.convSeq, 2n);
    });

    test("a token function that fails: the connection it was for is closed, and the next attempt goes on", async () => {
      let asked = 0;
      let closed = 0;
      const dialer = faulty(tr.dialer, { closed: () => void closed++ });
      const token = async () => {
        if (++asked === 1) throw new Error("the backend is down");
        return srv.token(591);
      };
      const c = client(591, { token, dialer });
      await c.client.connect();
      assert.equal(asked, 2);
      assert.equal(closed, 1);
    });

    test("a heartbeat that goes unanswered drops the connection, and the client reconnects", async () => {
      let beats = 0;
      const dialer = faulty(tr.dialer, {
        // The first connection loses its heartbeats' answers, as on a dead path.
        incoming: (f) => (f.command === Cmd.HEARTBEAT && ++beats <= 1 ? "drop" : undefined),
      });
      const c = client(595, { dialer, heartbeatMs: 100 });
      const offline: string[] = [];
      c.client.on("offline", (err) => void offline.push(err.message));
      await c.client.connect();
      await waitFor("the connection to drop", () => offline.length === 1);
      assert.match(offline[0], /no answer to a heartbeat in 100 ms/);
      await c.client.waitSynced();
      assert.deepEqual(await c.client.conversations(), []);
    });

    test("a bad token stops the client", async () => {
      const c = new Client({ addrs: tr.addr(srv), token: "not-a-token", dialer: tr.dialer });
      let closedWith: Error | undefined;
      c.on("closed", (err) => void (closedWith = err));
      await assert.rejects(c.connect(), /UNAUTHENTICATED/);
      assert.ok(closedWith instanceof InboxdError && closedWith.code === Code.UNAUTHENTICATED);
      await assert.rejects(c.history(1n), /client closed/);
      await c.close();
    });

    test("a direct chat: the ack's conv is the other side's conversation; a block refuses with BLOCKED", async () => {
      const alice = client(1001);
      const bob = client(1002);
      const list = new ConversationList(bob.client);
      await Promise.all([alice.client.connect(), bob.client.connect()]);
      const conv = await directConv(1001n, 1002n);
      const ack = await alice.client.sendDirect(1002n, "hi bob");
      assert.equal(ack.conv, conv);
      assert.equal(ack.convSeq, 1n);
      await waitFor("bob's message", () => bob.texts(conv).length === 1);
      const [bobs] = await bob.client.conversations();
      assert.deepEqual([bobs.conv, bobs.direct, bobs.peer, bobs.unread], [conv, true, 1001n, 1n]);
      await waitFor("bob's list", () => list.get(conv)?.peer === 1001n);
      assert.equal(list.get(conv)?.direct, true);
      const back = await bob.client.sendDirect(1001n, "hi alice");
      assert.deepEqual([back.conv, back.convSeq], [conv, 2n]);

      await bob.client.block(1001n);
      await bob.client.block(1001n); // safe to repeat
      const blocked = (e: unknown) => e instanceof InboxdError && e.codeName === "BLOCKED" && e.code === Code.BLOCKED;
      await assert.rejects(alice.client.sendDirect(1002n, "still there?"), blocked);
      await assert.rejects(alice.client.send(conv, "still there?"), blocked);
      assert.equal((await bob.client.send(conv, "the blocker may write")).convSeq, 3n);
      await bob.client.block(1001n, false);
      assert.equal((await alice.client.sendDirect(1002n, "unblocked")).convSeq, 4n);
      assert.deepEqual(
        (await alice.client.history(conv)).map((m) => new TextDecoder().decode(m.body)),
        ["unblocked", "the blocker may write", "hi alice", "hi bob"],
      );
    });

    test("a recall and an edit: the other member sees them in history and as entries", async () => {
      const alice = client(1011);
      const bob = client(1012);
      await Promise.all([alice.client.connect(), bob.client.connect()]);
      const g = await alice.client.createGroup({ members: [1012n] });
      const first = await alice.client.send(g.id, "oops");
      const second = await alice.client.send(g.id, "helo");
      await assert.rejects(bob.client.recall(g.id, first.convSeq), (e: unknown) => e instanceof InboxdError && e.codeName === "FORBIDDEN");
      const recall = await alice.client.recall(g.id, first.convSeq);
      const edit = await alice.client.edit(g.id, second.convSeq, "hello");
      assert.deepEqual([recall.convSeq, edit.convSeq], [4n, 5n]);
      // A resend under the same key is the first answer.
      const again = await alice.client.edit(g.id, second.convSeq, "hello", { clientMsgId: edit.clientMsgId });
      assert.deepEqual([again.duplicate, again.convSeq], [true, 5n]);
      await waitFor("bob's recall and edit entries", () => bob.messages(g.id, Kind.RECALL).length === 1 && bob.messages(g.id, Kind.EDIT).length === 1);
      const hist = await bob.client.history(g.id);
      const byConvSeq = new Map(hist.map((m) => [m.convSeq, m]));
      const recalled = byConvSeq.get(first.convSeq)!;
      assert.equal(recalled.recalled, true);
      assert.equal(recalled.body.length, 0);
      const edited = byConvSeq.get(second.convSeq)!;
      assert.equal(new TextDecoder().decode(edited.body), "hello");
      assert.equal(edited.editedMs, edit.timeMs);
      assert.equal(edited.recalled, false);
    });

    test("mentions are counted in mention_unread, live in ConversationList too, until read", async () => {
      const alice = client(1021);
      const bob = client(1022);
      const bobPhone = client(1022, { token: srv.token(1022, "phone") });
      const list = new ConversationList(bob.client);
      await Promise.all([alice.client.connect(), bob.client.connect(), bobPhone.client.connect()]);
      const g = await alice.client.createGroup({ members: [1022n, 1023n] });
      await alice.client.send(g.id, "@bob", { mentions: [1022n] });
      await alice.client.send(g.id, "@carol", { mentions: [1023n] });
      const all = await alice.client.send(g.id, "@all", { mentionAll: true });
      await assert.rejects(bob.client.send(g.id, "@all", { mentionAll: true }), (e: unknown) => e instanceof InboxdError && e.codeName === "FORBIDDEN");
      const [conv] = await bob.client.conversations();
      assert.equal(conv.mentionUnread, 2n);
      await waitFor("bob's list to count both", () => list.get(g.id)?.head === all.convSeq && list.get(g.id)?.mentionUnread === 2n);
      assert.deepEqual(bob.messages(g.id)[0].mentions, [1022n]);
      assert.equal(bob.messages(g.id)[2].mentionAll, true);
      // A device that starts at the head has only the server's count.
      const tablet = client(1022, { token: srv.token(1022, "tablet"), fromHead: true });
      const tabletList = new ConversationList(tablet.client);
      await tablet.client.connect();
      await waitFor("the tablet's list", () => tabletList.get(g.id)?.mentionUnread === 2n);
      // Read on another device up to the first mention only: one is left.
      await bobPhone.client.markRead(g.id, 2n);
      await waitFor("the partial read", () => list.get(g.id)?.readSeq === 2n && list.get(g.id)?.mentionUnread === 1n);
      await waitFor("the partial read on the tablet", () => tabletList.get(g.id)?.readSeq === 2n && tabletList.get(g.id)?.mentionUnread === 1n);
      assert.equal((await bob.client.conversations())[0].mentionUnread, 1n);
      await list.markRead(g.id);
      assert.equal(list.get(g.id)?.mentionUnread, 0n);
      assert.equal((await bob.client.conversations())[0].mentionUnread, 0n);
    });

    test("typing reaches the other online members, and a refused TYPING is not resent", async () => {
      let typingsOut = 0;
      const dialer = faulty(tr.dialer, { outgoing: (c) => void (c === Cmd.TYPING && typingsOut++) });
      const alice = client(1031, { dialer });
      const bob = client(1032);
      const seen: { alice: bigint[][]; bob: bigint[][] } = { alice: [], bob: [] };
      alice.client.on("typing", (conv, user) => void seen.alice.push([conv, user]));
      bob.client.on("typing", (conv, user) => void seen.bob.push([conv, user]));
      await Promise.all([alice.client.connect(), bob.client.connect()]);
      const g = await alice.client.createGroup({ members: [1032n] });
      await alice.client.typing(g.id);
      await waitFor("bob to see alice typing", () => seen.bob.length === 1);
      assert.deepEqual(seen.bob, [[g.id, 1031n]]);
      await bob.client.typing(g.id);
      await waitFor("alice to see bob typing", () => seen.alice.length === 1);
      assert.deepEqual(seen.alice, [[g.id, 1032n]], "her own typing does not come back");
      // 5 at once and 1 a second after that: 8 at once meet the limit.
      const results = await Promise.allSettled(Array.from({ length: 8 }, () => alice.client.typing(g.id)));
      const refused = results.filter((r) => r.status === "rejected");
      assert.ok(refused.length > 0, "some were refused");
      for (const r of refused) assert.ok(r.reason instanceof InboxdError && r.reason.code === Code.RATE_LIMITED, String(r.reason));
      assert.equal(typingsOut, 9, "one frame per call: none resent");
      await assert.rejects(bob.client.typing(1n), (e: unknown) => e instanceof InboxdError);
    });

    test("presence: an online and an offline user", async () => {
      const alice = client(1041);
      const bob = client(1042);
      await Promise.all([alice.client.connect(), bob.client.connect()]);
      assert.deepEqual(await alice.client.presence([1043n, 1042n, 1041n, 1042n]), [1041n, 1042n]);
      await bob.client.close();
      // The server learns of the close when it reads it.
      let online: bigint[] = [];
      await waitFor("bob to be offline", async () => (online = await alice.client.presence([1042n, 1041n])).length === 1);
      assert.deepEqual(online, [1041n]);
      assert.deepEqual(await alice.client.presence([]), []);
      // More than one request may name: asked in two.
      const many = Array.from({ length: 600 }, (_, i) => BigInt(2_000_000 + i));
      assert.deepEqual(await alice.client.presence([...many, 1041n]), [1041n]);
    });

    test("read receipts after a markRead: counts, a page of readers, and pages of the others", async () => {
      const alice = client(1051);
      const bob = client(1052);
      await Promise.all([alice.client.connect(), bob.client.connect()]);
      const g = await alice.client.createGroup({ members: [1052n, 1053n, 1054n] });
      const m = await alice.client.send(g.id, "read me");
      assert.equal(await bob.client.markRead(g.id, m.convSeq), m.convSeq);
      const r = await alice.client.readReceipts(g.id, m.convSeq);
      assert.deepEqual([r.members, r.read, r.users, r.nextAfter], [3, 1, [1052n], 0n]);
      const pages = [];
      for await (const p of alice.client.readReceiptPages(g.id, m.convSeq, { unread: true, limit: 1 })) pages.push(p.users);
      assert.deepEqual(pages, [[1053n], [1054n]]);
    });

    test("a profile change is seen in groupInfo, and a plain member may not make one", async () => {
      const alice = client(1061);
      const bob = client(1062);
      await Promise.all([alice.client.connect(), bob.client.connect()]);
      const g = await alice.client.createGroup({ name: "before", members: [1062n] });
      await alice.client.setGroupProfile(g.id, { name: "ops", announcement: "standup at 10", avatarUrl: "https://example.com/ops.png" });
      let info = await bob.client.groupInfo(g.id);
      assert.deepEqual([info.group!.name, info.group!.announcement, info.group!.avatarUrl], ["ops", "standup at 10", "https://example.com/ops.png"]);
      await alice.client.setGroupProfile(g.id, { announcement: "" }); // present and empty: cleared; the rest stays
      info = await bob.client.groupInfo(g.id);
      assert.deepEqual([info.group!.name, info.group!.announcement, info.group!.avatarUrl], ["ops", "", "https://example.com/ops.png"]);
      await assert.rejects(bob.client.setGroupProfile(g.id, { name: "mine" }), (e: unknown) => e instanceof InboxdError && e.codeName === "FORBIDDEN");
      await waitFor("the notices", () => bob.messages(g.id, Kind.NOTICE).length === 5);
      assert.deepEqual(
        bob.messages(g.id, Kind.NOTICE).map((m) => JSON.parse(new TextDecoder().decode(m.body)).type),
        ["create", "rename", "announcement", "avatar", "announcement"],
      );
    });
  });
}

test("kill -9 and restart mid-stream: nothing lost, nothing twice", async (t) => {
  for (const tr of transports) {
    await t.test(`over ${tr.name}`, async () => {
      const srv = await Inboxd.start();
      const opts = { addrs: tr.addr(srv), dialer: tr.dialer, backoffMinMs: 50, backoffMaxMs: 400, maxAttempts: 1000 };
      const alice = new Recorded({ ...opts, token: srv.token(601) });
      const bob = new Recorded({ ...opts, token: srv.token(602) });
      try {
        await Promise.all([alice.client.connect(), bob.client.connect()]);
        const g = await alice.client.createGroup({ members: [602n] });
        const n = 300;
        let acked = 0;
        const offline = { alice: 0, bob: 0 };
        alice.client.on("offline", () => void offline.alice++);
        bob.client.on("offline", () => void offline.bob++);
        const sending = (async () => {
          for (let i = 0; i < n; i++) {
            await alice.client.send(g.id, `m${i}`, { clientMsgId: `kill-${i}` });
            acked++;
          }
        })();
        await waitFor("a third of the sends", () => acked >= n / 3);
        await srv.kill9();
        await srv.run();
        await sending;
        assert.ok(offline.alice >= 1 && offline.bob >= 1, "both connections went down with the server, and came back");
        await waitFor("bob to have every message", () => bob.texts(g.id).length >= n);
        // What Bob's app got: every message once, in order, with seqs 1, 2, 3, …
        assert.deepEqual(
          bob.texts(g.id),
          Array.from({ length: n }, (_, i) => `m${i}`),
        );
        assertGapFree(bob.entries);
        assertGapFree(alice.entries);
        const [conv] = await bob.client.conversations();
        assert.equal(conv.head, BigInt(n + 1));
        assert.equal(bob.entries.length, n + 1);
      } finally {
        await Promise.all([alice.client.close(), bob.client.close()]);
        await srv.stop();
      }
    });
  }
});

test("AUTH answered REDIRECT: the client goes to the node named", async () => {
  const srv = await Inboxd.start();
  // A node that serves nobody: it answers every AUTH with REDIRECT to the real server.
  let redirected = 0;
  const wrong = createServer((sock: Socket) => {
    const r = new FrameReader(4096);
    sock.on("data", (chunk) => {
      for (const f of r.push(chunk)) {
        if (f.command !== Cmd.AUTH) continue;
        redirected++;
        const body = toBinary(pb.ErrorSchema, create(pb.ErrorSchema, { code: Code.REDIRECT, message: "served by the other node", redirect: srv.addr }));
        sock.end(encodeFrame(Cmd.AUTH, FLAG_RESPONSE | FLAG_ERROR, f.requestId, body));
      }
    });
    sock.on("error", () => {});
  });
  await new Promise<void>((res) => wrong.listen(0, "127.0.0.1", res));
  const c = new Client({ addrs: [`127.0.0.1:${(wrong.address() as { port: number }).port}`], token: srv.token(701), dialer: tcpDialer });
  try {
    await c.connect();
    assert.equal(redirected, 1);
    assert.equal(c.auth?.userId, 701n);
    const g = await c.createGroup({});
    assert.equal((await c.send(g.id, "here")).convSeq, 2n);
  } finally {
    await c.close();
    wrong.close();
    await srv.stop();
  }
});

test("an address of the list that cannot be reached is passed over", async () => {
  const srv = await Inboxd.start();
  // A port nobody listens on: taken, then closed again.
  const dead = createServer();
  await new Promise<void>((res) => dead.listen(0, "127.0.0.1", res));
  const deadAddr = `127.0.0.1:${(dead.address() as { port: number }).port}`;
  await new Promise((res) => dead.close(res));
  const c = new Client({ addrs: [deadAddr, srv.addr, deadAddr], token: srv.token(801), dialer: tcpDialer, backoffMinMs: 10, backoffMaxMs: 50 });
  const failed: string[] = [];
  c.on("offline", (err) => void failed.push(err.message));
  try {
    await c.connect();
    assert.equal(c.auth?.userId, 801n);
    assert.ok(failed.every((m) => /ECONNREFUSED/.test(m)), failed.join("; "));
  } finally {
    await c.close();
    await srv.stop();
  }
});

test("a WebSocket closed with 4000 + code is that error: 4017 stops the client as REPLACED", async () => {
  // A server that answers AUTH, then closes with REPLACED's code and no ERROR frame.
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((res) => wss.once("listening", res));
  let connections = 0;
  wss.on("connection", (sock) => {
    connections++;
    sock.on("message", (data: Buffer) => {
      const f = new FrameReader(4096).push(data)[0];
      if (f.command === Cmd.AUTH) {
        sock.send(encodeFrame(Cmd.AUTH, FLAG_RESPONSE, f.requestId, toBinary(pb.AuthResponseSchema, create(pb.AuthResponseSchema, { userId: 9n }))));
        sock.close(4017, "the device connected again");
      } else if (f.command === Cmd.SYNC) {
        sock.send(encodeFrame(Cmd.SYNC, FLAG_RESPONSE, f.requestId, new Uint8Array(0)));
      }
    });
  });
  const c = new Client({ addrs: `127.0.0.1:${(wss.address() as { port: number }).port}`, token: "t", dialer: nodeWebSocketDialer(), backoffMinMs: 10 });
  const closed = new Promise<Error | undefined>((res) => c.on("closed", res));
  try {
    await c.connect().catch(() => {});
    const err = await closed;
    assert.ok(err instanceof InboxdError && err.code === Code.REPLACED, String(err));
    assert.equal(connections, 1, "no reconnect after REPLACED");
  } finally {
    await c.close();
    for (const s of wss.clients) s.terminate();
    await new Promise((res) => wss.close(res));
  }
});

test("sends refused RATE_LIMITED are resent after retry_after_ms, and stored once each", async () => {
  const srv = await Inboxd.start(["-user-rate-limit", "20", "-user-rate-burst", "2"]);
  let limited = 0;
  const dialer = faulty(tcpDialer, {
    incoming: (f) => {
      if (f.command === Cmd.SEND && f.flags & FLAG_ERROR) limited++;
      return undefined;
    },
  });
  const c = new Client({ addrs: srv.addr, token: srv.token(901), dialer, maxAttempts: 100 });
  try {
    await c.connect();
    const g = await c.createGroup({});
    const acks = await Promise.all(Array.from({ length: 10 }, (_, i) => c.send(g.id, `m${i}`, { clientMsgId: `rl-${i}` })));
    assert.ok(limited > 0, "the server refused some sends");
    assert.deepEqual(
      acks.map((a) => a.convSeq).sort((a, b) => Number(a - b)),
      Array.from({ length: 10 }, (_, i) => BigInt(i + 2)),
    );
    const hist = await c.history(g.id);
    assert.deepEqual(hist.filter((m) => m.kind === Kind.TEXT).map((m) => m.clientMsgId).sort(), Array.from({ length: 10 }, (_, i) => `rl-${i}`).sort());
  } finally {
    await c.close();
    await srv.stop();
  }
});
