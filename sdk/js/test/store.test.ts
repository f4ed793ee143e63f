// The stores of last_seq.

import assert from "node:assert/strict";
import { test } from "node:test";
import { MemorySeqStore, WebStorageSeqStore } from "../src/index.js";

test("WebStorageSeqStore keeps last_seq as decimal text, past 2^53, and reads anything else as 0", () => {
  const m = new Map<string, string>();
  const storage = { getItem: (k: string) => m.get(k) ?? null, setItem: (k: string, v: string) => void m.set(k, v) };
  const s = new WebStorageSeqStore(storage, "inboxd.lastSeq");
  assert.equal(s.load(), 0n);
  s.save(18446744073709551615n);
  assert.equal(m.get("inboxd.lastSeq"), "18446744073709551615");
  assert.equal(new WebStorageSeqStore(storage, "inboxd.lastSeq").load(), 18446744073709551615n);
  for (const bad of ["", "-1", "1e3", "12abc"]) {
    m.set("inboxd.lastSeq", bad);
    assert.equal(s.load(), 0n, JSON.stringify(bad));
  }
});

test("MemorySeqStore starts where it is told", () => {
  const s = new MemorySeqStore(7n);
  assert.equal(s.load(), 7n);
  s.save(8n);
  assert.equal(s.load(), 8n);
});
