// directConv against the examples of docs/protocol.md, "Direct conversations".

import assert from "node:assert/strict";
import { test } from "node:test";
import { directConv } from "../src/index.js";

test("directConv derives the ids of the protocol's examples, whichever user comes first", async () => {
  for (const [a, b, want] of [
    [1n, 2n, 10121370589403482978n],
    [7n, 42n, 10975061129255072772n],
  ]) {
    assert.equal(await directConv(a, b), want);
    assert.equal(await directConv(b, a), want);
  }
});
