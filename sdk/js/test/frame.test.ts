// The frame examples of docs/protocol.md, decoded by the SDK: the same
// bytes the Go codec's tests check, so the two implementations agree.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { fromBinary, toBinary, toJson, fromJson, type DescMessage } from "@bufbuild/protobuf";
import { Cmd, decodeFrame, encodeFrame, FLAG_ERROR, FLAG_RESPONSE, FrameError, FrameReader, pb } from "../src/index.js";

const doc = readFileSync(resolve(dirname(fileURLToPath(import.meta.url)), "../../../../docs/protocol.md"), "utf8");

interface Example {
  name: string;
  bytes: Uint8Array;
  command: string;
  flags: string;
  id: number;
  type: string;
  json: unknown;
}

function examples(): Example[] {
  const out: Example[] = [];
  for (const [, block] of doc.matchAll(/```frame\n([\s\S]*?)```/g)) {
    const lines = block.trim().split("\n");
    const name = lines[0].replace(/^# /, "");
    const arrow = lines.findIndex((l) => l.startsWith("=> "));
    const hex = lines.slice(1, arrow).join("").replace(/\s+/g, "");
    const m = /^=> (\S+) flags=(\S+) id=(\d+) (\w+) (.*)$/.exec(lines[arrow])!;
    out.push({ name, bytes: Buffer.from(hex, "hex"), command: m[1], flags: m[2], id: Number(m[3]), type: m[4], json: JSON.parse(m[5]) });
  }
  return out;
}

const flagNames: Record<string, number> = { "0": 0, response: FLAG_RESPONSE, "response|error": FLAG_RESPONSE | FLAG_ERROR };

test("the frame examples of docs/protocol.md decode and encode to the same bytes", () => {
  const all = examples();
  assert.ok(all.length >= 10, `only ${all.length} examples found`);
  for (const ex of all) {
    const f = decodeFrame(ex.bytes, 262144);
    assert.equal(f.command, Cmd[ex.command as keyof typeof Cmd], ex.name);
    assert.equal(f.flags, flagNames[ex.flags], ex.name);
    assert.equal(f.requestId, ex.id, ex.name);
    const schema = (pb as unknown as Record<string, DescMessage>)[`${ex.type}Schema`];
    assert.deepEqual(toJson(schema, fromBinary(schema, f.body)), ex.json, ex.name);
    const body = toBinary(schema, fromJson(schema, ex.json as never));
    assert.deepEqual(encodeFrame(f.command, f.flags, f.requestId, body), new Uint8Array(ex.bytes), ex.name);
  }
});

test("a stream split anywhere gives the same frames", () => {
  const all = examples();
  const stream = Buffer.concat(all.map((e) => e.bytes));
  for (const step of [1, 5, 12, 13, 100]) {
    const r = new FrameReader(262144);
    const got = [];
    for (let i = 0; i < stream.length; i += step) got.push(...r.push(stream.subarray(i, i + step)));
    assert.equal(got.length, all.length, `chunks of ${step}`);
    assert.equal(r.buffered(), 0);
  }
});

test("bad headers are refused", () => {
  const ok = encodeFrame(Cmd.HEARTBEAT, 0, 1, new Uint8Array(0));
  const v2 = ok.slice();
  v2[4] = 2;
  assert.throws(() => new FrameReader(4096).push(v2), FrameError);
  assert.throws(() => new FrameReader(4096).push(encodeFrame(Cmd.SEND, 0, 1, new Uint8Array(4096))), /exceeds 4096/);
  assert.throws(() => decodeFrame(Buffer.concat([ok, ok]), 4096), /not exactly one frame/);
  assert.throws(() => decodeFrame(ok.subarray(0, 11), 4096), /not exactly one frame/);
});
