// Debian's Chromium, driven by playwright-core, against `dialtone serve
// --web --echo` (started by run.sh): the built-in console page connects,
// sends text through its own form, echoes text and binary messages of
// 0 B to 10 MiB over the page's WebSocket (compared by SHA-256), and closes
// with 4000 and a reason; then the close the page saw and the server's log
// are checked, and a screenshot is kept.
//
// Run a second time over TLS (run.sh does), the page and its WebSocket go
// over HTTP/2: the WebSocket as an extended CONNECT stream (RFC 8441), which
// the server's log shows (`http=HTTP/2.0` on its open line).
//
// usage: node console.test.mjs PAGE_URL SERVER_LOG OUT_DIR
// env:   DIALTONE_SPKI  base64 SHA-256 of the server's key (its self-signed
//                       certificate is then accepted: Chromium's
//                       --ignore-certificate-errors-spki-list)
//        EXPECT_HTTP    "2": the page and the WebSocket must come over HTTP/2

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [pageUrl, serverLog, outDir] = process.argv.slice(2);
if (!pageUrl || !serverLog || !outDir) {
  console.error("usage: node console.test.mjs PAGE_URL SERVER_LOG OUT_DIR");
  process.exit(2);
}

const CLOSE_CODE = 4000;
const CLOSE_REASON = "bye from chromium";
const TEXT = "hello from chromium";
const SIZES = [0, 10, 100 * 1024, 10 * 1024 * 1024];
const SPKI = process.env.DIALTONE_SPKI ?? "";
const HTTP2 = process.env.EXPECT_HTTP === "2";
const SHOT = HTTP2 ? "console-h2.png" : "console.png";

const checks = [];
function check(name, fn) {
  fn();
  checks.push(name);
  console.log(`ok ${checks.length} - ${name}`);
}

async function waitForLog(pattern, what) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const log = readFileSync(serverLog, "utf8");
    const line = log.split("\n").find((l) => pattern.test(l));
    if (line) return line;
    if (Date.now() > deadline) {
      throw new Error(`the server never logged ${what}; its log:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

const profile = mkdtempSync(join(tmpdir(), "dialtone-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 960, height: 720 },
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    ...(SPKI ? [`--ignore-certificate-errors-spki-list=${SPKI}`] : []),
  ],
});
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (msg) => console.log(`page: ${msg.text()}`));
  page.on("pageerror", (err) => console.log(`page error: ${err}`));
  await page.goto(pageUrl);
  const title = await page.title();
  check("the console page loads", () => assert.equal(title, "dialtone console"));

  // Connect with the page's own form (the URL is filled in from the page's).
  await page.click("#connect");
  await page.waitForFunction(() => window.dialtoneConsole.ws?.readyState === WebSocket.OPEN);
  const extensions = await page.evaluate(() => window.dialtoneConsole.ws.extensions);
  check(`permessage-deflate negotiated (page: ${JSON.stringify(extensions)})`, () =>
    assert.match(extensions, /^permessage-deflate/),
  );
  const openLine = await waitForLog(/ open .*extensions=/, "the open");
  console.log(`server: ${openLine}`);
  check("the server logged permessage-deflate as agreed", () =>
    assert.match(openLine, /extensions="permessage-deflate/),
  );
  if (HTTP2) {
    const pageLine = await waitForLog(/ http .*method=GET/, "the page's request");
    console.log(`server: ${pageLine}`);
    check("the page came over HTTP/2", () => assert.match(pageLine, /http=HTTP\/2\.0/));
    check("the WebSocket arrived as an HTTP/2 extended CONNECT", () =>
      assert.match(openLine, /http=HTTP\/2\.0/),
    );
  } else {
    check("the WebSocket arrived over HTTP/1.1", () => assert.match(openLine, /http=HTTP\/1\.1/));
  }

  // Send text with the page's own form; the echo shows in its log.
  await page.fill("#message", TEXT);
  await page.click("#send");
  await page.waitForFunction((t) => window.dialtoneConsole.received.includes(t), TEXT);
  const shown = await page.locator("#log li.in").last().textContent();
  check("text typed into the console comes back and is shown", () =>
    assert.ok(shown.includes(TEXT), shown),
  );

  // Text and binary, 0 B to 10 MiB, over the page's WebSocket; each echo
  // is compared with what was sent by SHA-256.
  const results = await page.evaluate(async (sizes) => {
    const ws = window.dialtoneConsole.ws;
    const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
    const sha256 = async (bytes) => hex(await crypto.subtle.digest("SHA-256", bytes));
    const encode = (s) => new TextEncoder().encode(s);
    const nextMessage = () =>
      new Promise((resolve, reject) => {
        const onMessage = (ev) => { done(); resolve(ev.data); };
        const onClose = (ev) => { done(); reject(new Error(`closed ${ev.code} ${ev.reason}`)); };
        const done = () => {
          ws.removeEventListener("message", onMessage);
          ws.removeEventListener("close", onClose);
        };
        ws.addEventListener("message", onMessage);
        ws.addEventListener("close", onClose);
      });
    const randomBytes = (n) => {
      const bytes = new Uint8Array(n);
      for (let i = 0; i < n; i += 65536) crypto.getRandomValues(bytes.subarray(i, Math.min(n, i + 65536)));
      return bytes;
    };
    // n UTF-8 bytes of text with some two-byte characters in it.
    const text = (n) => {
      const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 é";
      const bytes = randomBytes(n);
      let s = "";
      let len = 0;
      const parts = [];
      // Built in pieces: one string grown by 10 million `+=` is slow.
      for (let i = 0; len < n; i++) {
        const c = alphabet[bytes[i % n] % alphabet.length];
        const w = c === "é" ? 2 : 1;
        if (len + w > n) { s += "x"; len += 1; continue; }
        s += c;
        len += w;
        if (s.length >= 8192) { parts.push(s); s = ""; }
      }
      parts.push(s);
      return parts.join("");
    };
    const out = [];
    for (const size of sizes) {
      for (const kind of ["text", "binary"]) {
        const data = kind === "text" ? text(size) : randomBytes(size);
        const sentBytes = kind === "text" ? encode(data) : data;
        const echo = nextMessage();
        ws.send(data);
        const got = await echo;
        const gotKind = typeof got === "string" ? "text" : "binary";
        const gotBytes = typeof got === "string" ? encode(got) : new Uint8Array(got);
        out.push({
          kind,
          size,
          sentBytes: sentBytes.length,
          gotKind,
          gotBytes: gotBytes.length,
          sent: await sha256(sentBytes),
          got: await sha256(gotBytes),
        });
      }
    }
    return out;
  }, SIZES);
  for (const r of results) {
    check(`${r.kind} ${r.size} B echoed intact (sha256 ${r.got.slice(0, 12)}…)`, () => {
      assert.equal(r.sentBytes, r.size);
      assert.equal(r.gotKind, r.kind);
      assert.equal(r.gotBytes, r.size);
      assert.equal(r.got, r.sent);
    });
  }

  // Close with the page's own form.
  await page.fill("#close-code", String(CLOSE_CODE));
  await page.fill("#close-reason", CLOSE_REASON);
  await page.click("#close");
  await page.waitForFunction(() => window.dialtoneConsole.close !== null);
  const seen = await page.evaluate(() => window.dialtoneConsole.close);
  console.log(`page saw close: ${JSON.stringify(seen)}`);
  check("the page saw a clean close with 4000 and the reason", () =>
    assert.deepEqual(seen, { code: CLOSE_CODE, reason: CLOSE_REASON, wasClean: true }),
  );
  const status = await page.textContent("#details");
  check("the console shows the close code and reason", () =>
    assert.ok(status.includes(String(CLOSE_CODE)) && status.includes(CLOSE_REASON), status),
  );
  const closeLine = await waitForLog(
    new RegExp(`closed .*code=${CLOSE_CODE} reason="${CLOSE_REASON}"`),
    "the close",
  );
  console.log(`server: ${closeLine}`);
  check("the server logged 4000 and the reason", () =>
    assert.ok(closeLine.includes(`code=${CLOSE_CODE}`) && closeLine.includes(CLOSE_REASON)),
  );

  await page.screenshot({ path: join(outDir, SHOT), fullPage: true });
  console.log(`screenshot: ${join(outDir, SHOT)}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(`${checks.length} passed, 0 failed`);
