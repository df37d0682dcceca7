// Cross-site WebSocket hijacking (CSWSH) in a real browser: Debian's
// Chromium, driven by playwright-core, loads pages/cswsh.html from one
// origin and has it open a WebSocket to `dialtone serve --exec` on another
// (all started by run.sh, on loopback):
//
//   SITE    `dialtone serve 127.0.0.2:PORT_A --static pages`: the "other
//           site", http://127.0.0.2:PORT_A
//   DEFAULT `dialtone serve 127.0.0.1:PORT_B --web --static pages --exec …`
//           with the default Origin policy; its command creates MARKER_B
//   ALLOWED `dialtone serve 127.0.0.1:PORT_C --allow-origin
//           http://127.0.0.2:PORT_A --exec …`; its command creates MARKER_C
//
// Checked: the other site's page is refused by DEFAULT (the page sees the
// failure, the server logs the origin, the command never starts: no
// MARKER_B); so is a DNS-rebinding page (Chromium resolves evil.test to
// 127.0.0.1, so http://evil.test:PORT_B/ is "the same host" to the Origin
// check, and the Host check of a loopback listener refuses it); the same page served by DEFAULT itself, and DEFAULT's --web
// console, connect (and MARKER_B appears); the other site's page connects
// to ALLOWED (and MARKER_C appears).
//
// No Chromium flag is needed: 127.0.0.2 and 127.0.0.1 are both loopback,
// one address space for Private/Local Network Access, which restricts only
// requests into a more private space than the page's.
//
// usage: node cswsh.test.mjs SITE_URL DEFAULT_ADDR DEFAULT_LOG MARKER_B
//                            ALLOWED_ADDR ALLOWED_LOG MARKER_C

import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [siteUrl, defaultAddr, defaultLog, markerB, allowedAddr, allowedLog, markerC] =
  process.argv.slice(2);
if (!markerC) {
  console.error(
    "usage: node cswsh.test.mjs SITE_URL DEFAULT_ADDR DEFAULT_LOG MARKER_B ALLOWED_ADDR ALLOWED_LOG MARKER_C",
  );
  process.exit(2);
}
const siteOrigin = new URL(siteUrl).origin;

const checks = [];
function check(name, fn) {
  fn();
  checks.push(name);
  console.log(`ok ${checks.length} - ${name}`);
}

async function waitForLog(log, pattern, what) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const text = readFileSync(log, "utf8");
    const line = text.split("\n").find((l) => pattern.test(l));
    if (line) return line;
    if (Date.now() > deadline) {
      throw new Error(`the server never logged ${what}; its log:\n${text}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function waitForFile(path) {
  const deadline = Date.now() + 15_000;
  while (!existsSync(path)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

const profile = mkdtempSync(join(tmpdir(), "dialtone-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    // DNS rebinding, simulated: evil.test is 127.0.0.1 (nothing else is
    // resolved differently, and nothing leaves loopback).
    "--host-resolver-rules=MAP evil.test 127.0.0.1",
  ],
});
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (msg) => console.log(`page: ${msg.text()}`));
  page.on("pageerror", (err) => console.log(`page error: ${err}`));
  const probe = async (pageUrl, wsUrl) => {
    await page.goto(pageUrl);
    return page.evaluate((url) => window.tryWebSocket(url), wsUrl);
  };

  // 1. Another site's page, against the default policy.
  const refused = await probe(`${siteUrl}cswsh.html`, `ws://${defaultAddr}/`);
  console.log(`cross-site page: ${JSON.stringify(refused)}`);
  check(`the page really is on another origin (${refused.origin})`, () =>
    assert.equal(refused.origin, siteOrigin),
  );
  check("the cross-site handshake fails in the browser (error, close 1006, never open)", () => {
    assert.equal(refused.opened, false);
    assert.equal(refused.error, true);
    assert.equal(refused.close?.code, 1006);
    assert.equal(refused.echo, null);
  });
  const refusal = await waitForLog(
    defaultLog,
    new RegExp(`refused: origin ${escape(siteOrigin)} is not allowed`),
    "the refusal",
  );
  console.log(`server: ${refusal}`);
  check("the server logged which origin it refused (403)", () =>
    assert.match(refusal, /status=403/),
  );
  // 1b. A page whose name resolves to this machine (DNS rebinding): its
  // origin is the host it dials, so only the Host check stops it.
  const port = defaultAddr.split(":").pop();
  const rebound = await probe(
    `http://evil.test:${port}/cswsh.html`,
    `ws://evil.test:${port}/`,
  );
  console.log(`rebinding page: ${JSON.stringify(rebound)}`);
  check("a DNS-rebinding page (same origin as its target) is refused too", () => {
    assert.equal(rebound.origin, `http://evil.test:${port}`);
    assert.equal(rebound.opened, false);
    assert.equal(rebound.close?.code, 1006);
  });
  const rebinding = await waitForLog(
    defaultLog,
    /refused: Host "evil\.test:.*DNS rebinding/,
    "the Host refusal",
  );
  console.log(`server: ${rebinding}`);
  // Time enough for a command to have started, had it been let in.
  await new Promise((r) => setTimeout(r, 1000));
  check("the command never started (no marker file)", () =>
    assert.equal(existsSync(markerB), false, `${markerB} exists`),
  );

  // 2. The same page, served by that server itself: same origin.
  const own = await probe(`http://${defaultAddr}/cswsh.html`, `ws://${defaultAddr}/`);
  console.log(`same-origin page: ${JSON.stringify(own)}`);
  check("the same page served by the server itself connects and talks", () => {
    assert.equal(own.opened, true);
    assert.equal(own.echo, "hello");
    assert.equal(own.close?.code, 1000);
  });
  const ranB = await waitForFile(markerB);
  check("its command ran (the marker file appeared)", () =>
    assert.ok(ranB, `${markerB} never appeared`),
  );

  // --web's console, on the same port, connects too.
  await page.goto(`http://${defaultAddr}/`);
  await page.click("#connect");
  await page.waitForFunction(
    () => window.dialtoneConsole.ws?.readyState === WebSocket.OPEN,
    null,
    { timeout: 15_000 },
  );
  const consoleState = await page.evaluate(() => window.dialtoneConsole.ws.readyState);
  check("the --web console of that server connects", () =>
    assert.equal(consoleState, 1),
  );

  // 3. Another site's page, against a server that lists it.
  const allowed = await probe(`${siteUrl}cswsh.html`, `ws://${allowedAddr}/`);
  console.log(`cross-site page, --allow-origin: ${JSON.stringify(allowed)}`);
  check(`with --allow-origin ${siteOrigin} the cross-site page connects and talks`, () => {
    assert.equal(allowed.opened, true);
    assert.equal(allowed.echo, "hello");
    assert.equal(allowed.close?.code, 1000);
  });
  const opened = await waitForLog(allowedLog, / open /, "the open");
  console.log(`server: ${opened}`);
  const ranC = await waitForFile(markerC);
  check("its command ran (the marker file appeared)", () =>
    assert.ok(ranC, `${markerC} never appeared`),
  );
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(`${checks.length} passed, 0 failed`);
