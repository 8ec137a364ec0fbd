// Drives Debian's Chromium on the query service's seat-map page for tests/e2e/test_browser_seatmap.py.
//
//   node seatmap.mjs --url http://127.0.0.1:8002/?event=<id> --out <dir for screenshots>
//
// Protocol: JSON lines. stdout: {"ready": true} once the page has loaded, then one reply per command.
// stdin commands (each answered with {"ok": true, ...} or {"ok": false, "error", "screenshot", "console"}):
//   {"cmd": "wait", "selector": "[data-seat='A-1-1']", "attr": "data-status", "value": "held", "timeout_ms": 15000}
//   {"cmd": "eval", "js": "<expression>"}  -> {"ok": true, "value": <its JSON value>}
//   {"cmd": "quit"}
// Every wait is bounded; the whole script gives up after --deadline-s (default 300) whatever happens.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

const { values: opt } = parseArgs({
  options: {
    url: { type: "string" },
    out: { type: "string", default: tmpdir() },
    executable: { type: "string", default: "/usr/bin/chromium" },
    "deadline-s": { type: "string", default: "300" },
  },
});
if (!opt.url) { console.error("--url is required"); process.exit(2); }

const send = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const consoleLog = [];  // everything the page said, for failure reports
const profile = mkdtempSync(join(tmpdir(), "evently-chromium-"));
let context = null;
let shots = 0;

async function shutdown(code) {
  try { if (context) await context.close(); } catch { /* already gone */ }
  rmSync(profile, { recursive: true, force: true });
  process.exit(code);
}
const deadline = setTimeout(() => {
  send({ ok: false, error: `seatmap.mjs: overall deadline of ${opt["deadline-s"]} s reached` });
  shutdown(3);
}, Number(opt["deadline-s"]) * 1000);
deadline.unref();

async function failure(page, error) {
  let screenshot = null;
  try {
    screenshot = join(opt.out, `seatmap-${process.pid}-${++shots}.png`);
    await page.screenshot({ path: screenshot, fullPage: true, timeout: 10000 });
  } catch (err) {
    screenshot = `(screenshot failed: ${err.message})`;
  }
  let conn = null;
  try { conn = await page.locator("#conn").textContent({ timeout: 2000 }); } catch { /* page gone */ }
  return { ok: false, error: String(error && error.message || error), screenshot, conn, console: consoleLog.slice(-200) };
}

async function main() {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: opt.executable,
    headless: true,
    timeout: 60000,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = context.pages()[0] || await context.newPage();
  page.on("console", (m) => consoleLog.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => consoleLog.push(`[pageerror] ${e.message}`));
  page.on("requestfailed", (r) => consoleLog.push(`[requestfailed] ${r.url()} ${r.failure()?.errorText ?? ""}`));
  page.on("response", (r) => { if (r.status() >= 400) consoleLog.push(`[http ${r.status()}] ${r.url()}`); });
  try {
    await page.goto(opt.url, { waitUntil: "load", timeout: 30000 });
  } catch (err) {
    send(await failure(page, err));
    return shutdown(1);
  }
  send({ ready: true });

  for await (const line of createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    let cmd;
    try { cmd = JSON.parse(line); } catch { send({ ok: false, error: `not JSON: ${line}` }); continue; }
    if (cmd.cmd === "quit") break;
    if (cmd.cmd === "eval") {  // evaluate an expression in the page (bounded by the page's own code)
      try { send({ ok: true, cmd: "eval", value: await page.evaluate(cmd.js) }); }
      catch (err) { send(await failure(page, err)); }
      continue;
    }
    if (cmd.cmd !== "wait") { send({ ok: false, error: `unknown command ${cmd.cmd}` }); continue; }
    const started = Date.now();
    try {
      // Polls the DOM attribute (no fixed sleep), bounded by timeout_ms.
      await page.waitForFunction(
        ({ selector, attr, value }) => {
          const e = document.querySelector(selector);
          return e !== null && e.getAttribute(attr) === value;
        },
        { selector: cmd.selector, attr: cmd.attr, value: String(cmd.value) },
        { timeout: cmd.timeout_ms ?? 15000, polling: 50 },
      );
      send({ ok: true, cmd: "wait", selector: cmd.selector, value: cmd.value, took_ms: Date.now() - started });
    } catch (err) {
      let actual = null;
      try { actual = await page.locator(cmd.selector).first().getAttribute(cmd.attr, { timeout: 1000 }); } catch { /* absent */ }
      send({ ...(await failure(page, err)), selector: cmd.selector, expected: cmd.value, actual });
    }
  }
  return shutdown(0);
}

process.on("SIGTERM", () => shutdown(143));
main().catch(async (err) => {
  send({ ok: false, error: `seatmap.mjs: ${err && err.stack || err}`, console: consoleLog.slice(-200) });
  await shutdown(1);
});
