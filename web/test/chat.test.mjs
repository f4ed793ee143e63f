// The page in headless Chromium against a real inboxd: two users in two
// browser contexts chat; one goes away while the other writes, and comes
// back to the right unread count and scrolls back through the history.
// Screenshots go to test-artifacts/. Uses the SDK tests' server helper
// (npm test builds sdk/js first, whose npm ci must have run) and Chromium
// (INBOXD_CHROMIUM, or /usr/bin/chromium).

import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { Inboxd } from "../../sdk/js/dist/test/server.js";
import { serve } from "../serve.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const artifacts = join(here, "../test-artifacts");
const executablePath = process.env.INBOXD_CHROMIUM ?? "/usr/bin/chromium";
const skip = existsSync(executablePath) ? false : `no Chromium at ${executablePath} (apt-get install chromium, or set INBOXD_CHROMIUM)`;

let srv, web, browser, pageURL;

before(async () => {
  if (skip) return;
  mkdirSync(artifacts, { recursive: true });
  web = await serve("127.0.0.1:0");
  const origin = `http://127.0.0.1:${web.address().port}`;
  // The page's origin is the one browser origin the WebSocket listener admits.
  srv = await Inboxd.start(["-ws-origins", origin]);
  pageURL = `${origin}/?addr=${encodeURIComponent(`ws://${srv.wsAddr}/ws`)}`;
  browser = await chromium.launch({
    executablePath,
    // The machine has no network beyond loopback: no background traffic, no sandbox as root.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  web?.close();
  await srv?.stop();
});

/** signIn opens the page in ctx and signs in with the token already there or the one given. */
async function signIn(ctx, token) {
  const page = await ctx.newPage();
  page.on("pageerror", (err) => console.error("page error:", err));
  await page.goto(pageURL);
  if (token) await page.fill("#token", token);
  await page.click("#signin-button");
  await page.waitForSelector("#chat:not([hidden])");
  return page;
}

const conv = (page, name) => page.locator("#convs li", { hasText: name });
const unread = (page, name) => conv(page, name).locator(".unread");

async function send(page, text) {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

test("two users chat in two pages; one goes away and comes back to the right unread count", { skip }, async () => {
  const alice = await browser.newContext();
  const bob = await browser.newContext();
  const a = await signIn(alice, srv.token(1, "browser"));
  let b = await signIn(bob, srv.token(2, "browser"));
  await assertText(a, "#me", "user 1 (browser)");

  // Alice creates a group with Bob; it opens on her side and appears on his, unread: its create notice.
  await a.fill("#group-name", "lunch");
  await a.fill("#group-members", "2");
  await a.click("#newgroup button");
  await a.waitForSelector("#conv-title:text('lunch')");
  await unread(b, "lunch").filter({ hasText: "1" }).waitFor();

  // Bob opens it: read. They chat, each sees the other's message live.
  await conv(b, "lunch").click();
  await unread(b, "lunch").and(b.locator("[data-count='0']")).waitFor({ state: "attached" });
  await send(a, "noon at the usual place?");
  await b.locator(".msg", { hasText: "noon at the usual place?" }).waitFor();
  await send(b, "yes, see you there");
  await a.locator(".msg", { hasText: "yes, see you there" }).waitFor();
  assert.equal(await unread(b, "lunch").getAttribute("data-count"), "0", "an open conversation is read as messages come");
  await a.screenshot({ path: join(artifacts, "1-alice-chat.png") });
  await b.screenshot({ path: join(artifacts, "1-bob-chat.png") });

  // Bob goes away; Alice writes 25 more.
  await b.close();
  for (let i = 1; i <= 25; i++) await send(a, `message ${i}`);
  await a.locator(".msg", { hasText: "message 25" }).waitFor();

  // Bob comes back (the page remembers his token): 25 unread.
  b = await signIn(bob);
  await unread(b, "lunch").filter({ hasText: /^25$/ }).waitFor();
  await b.screenshot({ path: join(artifacts, "2-bob-back-unread.png") });

  // He opens the group: the latest 20, then scrolls back to the start.
  await conv(b, "lunch").click();
  await b.locator(".msg", { hasText: "message 25" }).waitFor();
  assert.equal(await b.locator("#list > div").count(), 20);
  await b.click("#older");
  await b.locator(".msg", { hasText: "noon at the usual place?" }).waitFor();
  await b.locator(".notice", { hasText: "1 invited 2 to join the group" }).waitFor();
  assert.equal(await b.locator("#list > div").count(), 28);
  assert.equal(await b.locator("#older").isHidden(), true, "nothing older");
  await unread(b, "lunch").and(b.locator("[data-count='0']")).waitFor({ state: "attached" });
  await b.screenshot({ path: join(artifacts, "3-bob-scrolled-back.png") });

  // The server dies and comes back: both pages reconnect by themselves and chat on.
  await srv.kill9();
  await srv.run();
  await a.locator("#state", { hasText: "online" }).waitFor();
  await b.locator("#state", { hasText: "online" }).waitFor();
  await send(a, "still there?");
  await b.locator(".msg", { hasText: "still there?" }).waitFor();
  await unread(b, "lunch").and(b.locator("[data-count='0']")).waitFor({ state: "attached" });

  // The marker reached the server: Bob's other device starts with the group read.
  const bobPhone = await signIn(await browser.newContext(), srv.token(2, "phone"));
  await unread(bobPhone, "lunch").and(bobPhone.locator("[data-count='0']")).waitFor({ state: "attached" });
});

test("a token the server refuses is shown at sign in", { skip }, async () => {
  const page = await (await browser.newContext()).newPage();
  await page.goto(pageURL);
  await page.fill("#token", srv.token(3, "browser").slice(0, -2) + "xx");
  await page.click("#signin-button");
  await page.locator("#signin-error", { hasText: "UNAUTHENTICATED" }).waitFor();
  assert.equal(await page.locator("#chat").isHidden(), true);
});

async function assertText(page, sel, want) {
  await page.locator(sel, { hasText: want }).waitFor();
}
