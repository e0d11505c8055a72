#!/usr/bin/env node
// Headless-Chromium checks of the breakglass web reviewer (/review), driven by the Rust
// end-to-end test:
//
//   node tests/browser/review.mjs '<json>'
//
// with {"base": "http://127.0.0.1:PORT", "link": "<reviewer sign-in URL>",
//       "usedLink": "<a sign-in URL already used>", "nonReviewerLink": "<non-reviewer sign-in URL>",
//       "code": "bg-…", "command": "rm -rf /tmp/x", "scriptReason": true,
//       "screenshots": "<dir>" | null}
// optional: "query" (the command search text; default: the longest word of "command"),
//           "timeoutMs" (whole run; default 120000).
//
// It prints one JSON line per check ({"check": …, "ok": true|false, "ms": …, …}), then a
// {"check":"summary",…} line. Exit status: 0 all passed, 1 a check failed (the run stops at the
// first failure; its line has "error"), 2 bad arguments or the run timed out, 3 the environment
// lacks Chromium or playwright-core (npm ci --prefix tests/browser; apt-get install chromium).
//
// The browser is Debian's Chromium (CHROMIUM env var to override /usr/bin/chromium), started by
// playwright-core with a fresh temporary profile; nothing is downloaded.

import fs from "node:fs";
import path from "node:path";

const started = Date.now();
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const VIEWPORT = { width: 1280, height: 800 };
const STEP_TIMEOUT = 15_000;

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

class CheckFailed extends Error {}

let browser = null;
let passed = 0;

let finishing = false;

async function finish(code, extra = {}) {
  if (finishing) return new Promise(() => {}); // the first caller exits
  finishing = true;
  emit({ check: "summary", ok: code === 0, passed, ms: Date.now() - started, ...extra });
  if (browser) {
    const b = browser;
    browser = null;
    await Promise.race([b.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
  }
  process.exit(code);
}

// ---------- arguments ----------

let args;
try {
  if (!process.argv[2]) throw new Error("missing the JSON argument");
  args = JSON.parse(process.argv[2]);
  for (const k of ["base", "link", "usedLink", "nonReviewerLink", "code", "command"]) {
    if (typeof args[k] !== "string" || args[k] === "") throw new Error(`"${k}" must be a non-empty string`);
  }
  args.base = args.base.replace(/\/+$/, "");
  new URL(args.base);
  if (args.screenshots != null && typeof args.screenshots !== "string") throw new Error('"screenshots" must be a string or null');
} catch (e) {
  emit({ check: "args", ok: false, error: `usage: node review.mjs '<json>': ${e.message}` });
  process.exit(2);
}
const scriptReason = args.scriptReason !== false;
const query = typeof args.query === "string" && args.query ? args.query : defaultQuery(args.command);
const timeoutMs = Number.isFinite(args.timeoutMs) ? args.timeoutMs : 120_000;

// The longest run of letters/digits/_/- in the command: found by substring and by word search.
function defaultQuery(command) {
  const words = command.match(/[\p{L}\p{N}_-]{2,}/gu) || [];
  const best = words.filter((w) => !/^-/.test(w)).sort((a, b) => b.length - a.length)[0];
  return best || command;
}

const watchdog = setTimeout(() => {
  emit({ check: "timeout", ok: false, error: `the run took longer than ${timeoutMs} ms` });
  finish(2);
}, timeoutMs);
watchdog.unref();

// ---------- environment ----------

let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch (e) {
  emit({ check: "environment", ok: false, error: `playwright-core is not installed: run \`npm ci --prefix tests/browser\` (${e.message})` });
  process.exit(3);
}
if (!fs.existsSync(CHROMIUM)) {
  emit({ check: "environment", ok: false, error: `no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM)` });
  process.exit(3);
}

// ---------- helpers ----------

const u = (p) => args.base + p;
const pathOf = (url) => {
  try {
    const x = new URL(url);
    return x.pathname + x.search + x.hash;
  } catch {
    return url;
  }
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function check(name, fn) {
  const t0 = Date.now();
  try {
    const details = (await fn()) || {};
    if (finishing) return new Promise(() => {});
    passed++;
    emit({ check: name, ok: true, ms: Date.now() - t0, ...details });
  } catch (e) {
    if (finishing) return new Promise(() => {}); // the watchdog is ending the run
    const error = redact(e instanceof CheckFailed ? e.message : `${e.name}: ${e.message.split("\n")[0]}`);
    emit({ check: name, ok: false, ms: Date.now() - t0, error });
    await finish(1, { failed: name });
  }
}

// Sign-in links carry secrets: keep them out of the output.
function redact(text) {
  let out = text;
  for (const k of ["link", "usedLink", "nonReviewerLink"]) out = out.split(args[k]).join(`<${k}>`);
  return out;
}

function assert(cond, message) {
  if (!cond) throw new CheckFailed(message);
}

// Polls fn until it returns a truthy value; returns it, or the last value after the timeout.
async function until(fn, timeout = STEP_TIMEOUT, every = 50) {
  const end = Date.now() + timeout;
  let v;
  for (;;) {
    v = await fn();
    if (v || Date.now() > end) return v;
    await sleep(every);
  }
}

// A browser context with its own cookie jar, recording console errors, page errors, CSP
// violations, failed same-origin subresources and dialogs.
async function newWatchedContext() {
  const ctx = await browser.newContext({ viewport: VIEWPORT, bypassCSP: false, acceptDownloads: false });
  const w = { ctx, errors: [], dialogs: [] };
  await ctx.exposeBinding("__bgReportViolation", (_src, v) => {
    w.errors.push(`CSP violation: ${v.directive} blocked ${v.blocked || "(inline)"} ${v.source ? `at ${pathOf(v.source)}:${v.line}` : ""} ${v.sample || ""}`.trim());
  });
  await ctx.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__bgReportViolation({
        directive: e.effectiveDirective || e.violatedDirective,
        blocked: e.blockedURI,
        source: e.sourceFile,
        line: e.lineNumber,
        sample: e.sample,
      });
    });
  });
  ctx.on("page", (page) => watchPage(w, page));
  return w;
}

function watchPage(w, page) {
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    const url = m.location()?.url || "";
    if (/\/favicon\.ico$/.test(url)) return; // the browser asks for it by itself
    w.errors.push(`console error: ${m.text()}${url ? ` (${pathOf(url)})` : ""}`);
  });
  page.on("pageerror", (e) => w.errors.push(`page error: ${e.message}`));
  page.on("dialog", (d) => {
    w.dialogs.push(`${d.type()}: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
}

function assertClean(w, where) {
  assert(w.errors.length === 0, `${where}: ${w.errors.join(" | ")}`);
  assert(w.dialogs.length === 0, `${where}: a dialog opened: ${w.dialogs.join(" | ")}`);
}

// Opens a sign-in link. If the server answers with a confirmation page (a POST form) instead of
// signing in on GET, submits it. Returns {status, via}.
async function openSignIn(page, link) {
  let resp = await page.goto(link, { waitUntil: "load", timeout: STEP_TIMEOUT });
  let via = "get";
  const onReview = () => new URL(page.url()).pathname === "/review";
  if (resp && resp.ok() && !onReview()) {
    const submit = page.locator('form[method="post" i] [type="submit"]').first();
    if ((await submit.count()) > 0) {
      const [r] = await Promise.all([page.waitForNavigation({ waitUntil: "load", timeout: STEP_TIMEOUT }), submit.click()]);
      resp = r;
      via = "form";
    }
  }
  return { status: resp ? resp.status() : 0, via };
}

async function sessionRows(page) {
  return page.locator("tr.session").count();
}

// Player state in the page, times in recording seconds (see review.js: idle-time mapping).
async function playerState(page) {
  return page.evaluate(() => {
    const p = window.breakglassPlayer;
    if (!p) return null;
    const r = window.breakglassReview;
    const toRec = r && typeof r.toRecordingTime === "function" ? r.toRecordingTime : (t) => t;
    const cur = p.getCurrentTime() || 0;
    const dur = p.getDuration();
    return { player: cur, recording: toRec(cur), duration: dur == null ? null : dur, mode: r ? r.mode : null };
  });
}

// Waits for the player to show and to play: its time moves forward. A recording so short that it
// ended before the first look is started again from 0.
async function assertPlays(page) {
  await page.locator("#player .ap-player").first().waitFor({ state: "attached", timeout: STEP_TIMEOUT });
  const first = await until(() => playerState(page));
  assert(first, "window.breakglassPlayer was not set");
  let last = first;
  const moved = await until(async () => {
    last = await playerState(page);
    return last.player > first.player + 0.05 || reviewer.errors.length > 0;
  }, 6000);
  if (reviewer.errors.length) throw new CheckFailed(`the player failed: ${reviewer.errors.join(" | ")}`);
  if (moved) return { from: round(first.recording), to: round(last.recording) };
  if (last.duration && last.player >= last.duration - 0.05) {
    await page.evaluate(() => window.breakglassPlayer.seek(0).then(() => window.breakglassPlayer.play()));
    const again = await until(async () => {
      last = await playerState(page);
      return last.player > 0.05;
    }, 6000);
    if (again) return { from: 0, to: round(last.recording), restarted: true };
  }
  const why = reviewer.errors.length ? `; errors: ${reviewer.errors.join(" | ")}` : "";
  throw new CheckFailed(`the player does not play: current time stays at ${first.player} s (duration ${first.duration})${why}`);
}

const round = (x) => (x == null ? x : Math.round(x * 1000) / 1000);

async function screenshot(page, name) {
  if (!args.screenshots) return null;
  fs.mkdirSync(args.screenshots, { recursive: true });
  const file = path.join(args.screenshots, name);
  await page.screenshot({ path: file, fullPage: false });
  return file;
}

// ---------- the run ----------

try {
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
} catch (e) {
  emit({ check: "launch", ok: false, error: `could not start ${CHROMIUM}: ${e.message.split("\n")[0]}` });
  await finish(3);
}

const reviewer = await newWatchedContext();
const page = await reviewer.ctx.newPage();
const shots = [];
let hitHref = null;
let hitTime = null;

// 1. The reviewer's link signs in and lands on the list, which shows the session.
await check("signin", async () => {
  const { status, via } = await openSignIn(page, args.link);
  const landed = new URL(page.url());
  assert(landed.pathname === "/review", `opening the sign-in link ended on ${landed.pathname} (HTTP ${status}), not /review`);
  assert(status === 200, `/review answered HTTP ${status}`);
  const row = page.locator(`tr.session[data-code="${args.code}"]`);
  await row.first().waitFor({ state: "attached", timeout: 5000 }).catch(() => {});
  assert((await row.count()) === 1, `no tr.session[data-code="${args.code}"] in the list (${await sessionRows(page)} rows)`);
  const link = row.locator(`a[href$="/review/s/${args.code}"]`);
  assert((await link.count()) > 0, `the row of ${args.code} has no link to /review/s/${args.code}`);
  assertClean(reviewer, "list page");
  return { via, rows: await sessionRows(page) };
});

// 2. Searching a part of the command finds a hit that links to the session at a time.
await check("search", async () => {
  const input = page.locator('#filters [name="q"]');
  let how = "form";
  if ((await input.count()) > 0) {
    await input.fill(query);
    await Promise.all([page.waitForNavigation({ waitUntil: "load", timeout: STEP_TIMEOUT }), input.press("Enter")]);
  } else {
    how = "url";
    await page.goto(u(`/review?q=${encodeURIComponent(query)}`), { waitUntil: "load", timeout: STEP_TIMEOUT });
  }
  const landed = new URL(page.url());
  assert(landed.pathname === "/review" && landed.searchParams.get("q") === query, `the search went to ${pathOf(page.url())}`);
  const hits = await page.evaluate((code) => {
    return Array.from(document.querySelectorAll("#hits li")).map((li) => {
      const a = li.querySelector(`a[href*="/review/s/${code}"]`);
      return { text: li.textContent.replace(/\s+/g, " ").trim(), href: a ? a.getAttribute("href") : null };
    });
  }, args.code);
  const linked = hits.filter((h) => h.href);
  assert(linked.length > 0, `no #hits entry links to ${args.code} for q=${JSON.stringify(query)} (${hits.length} hits: ${JSON.stringify(hits.slice(0, 5))})`);
  const hit = linked.find((h) => h.text.includes(args.command)) || linked.find((h) => h.text.includes(query));
  assert(hit, `no hit for ${args.code} shows the command ${JSON.stringify(args.command)}: ${JSON.stringify(linked.slice(0, 5))}`);
  const m = /\/review\/s\/([^/#?]+)#t=(\d+(?:\.\d+)?)$/.exec(hit.href);
  assert(m && m[1] === args.code, `the hit links to ${hit.href}, not /review/s/${args.code}#t=<seconds>`);
  hitHref = hit.href;
  hitTime = Number(m[2]);
  assertClean(reviewer, "search page");
  const file = await screenshot(page, "review-list.png");
  if (file) shots.push(file);
  return { query, how, hits: hits.length, href: hit.href };
});

// 3. The session page loads the player under the page's CSP, and it plays.
await check("player", async () => {
  const resp = await page.goto(u(`/review/s/${args.code}`), { waitUntil: "load", timeout: STEP_TIMEOUT });
  assert(resp && resp.status() === 200, `/review/s/${args.code} answered HTTP ${resp && resp.status()}`);
  const csp = (await resp.allHeaders())["content-security-policy"] || null;
  assert(csp, "the session page has no Content-Security-Policy header");
  const played = await assertPlays(page);
  const st = await playerState(page);
  assertClean(reviewer, "session page");
  return { ...played, mode: st.mode, duration: round(st.duration), csp };
});

// 4. Clicking the command in the index seeks the player to it, without navigating.
await check("seek", async () => {
  const links = page.locator("#commands a.cmd", { hasText: args.command });
  assert((await links.count()) > 0, `no #commands a.cmd contains ${JSON.stringify(args.command)}`);
  const link = links.first();
  const t = Number(await link.getAttribute("data-t"));
  assert(Number.isFinite(t), `the command link has no numeric data-t`);
  // Park the player away from the target, so that arriving there proves the seek.
  const parked = await page.evaluate(async (t) => {
    const p = window.breakglassPlayer;
    const r = window.breakglassReview;
    const toPlayer = r && r.toPlayerTime ? r.toPlayerTime : (x) => x;
    const target = toPlayer(t);
    const away = target > 1 ? 0 : p.getDuration() || 0;
    await p.pause();
    await p.seek(away);
    window.__bgNoNavigation = true;
    return { away, target };
  }, t);
  const before = new URL(page.url());
  await link.click();
  let st = null;
  const near = await until(async () => {
    st = await playerState(page);
    return st && st.recording >= t - 0.3 && st.recording <= t + 1.5;
  }, 8000);
  assert(near, `after clicking, the player is at ${round(st && st.recording)} s of the recording, not at data-t=${t} (parked at ${round(parked.away)} s player time)`);
  const after = new URL(page.url());
  const stayed = await page.evaluate(() => window.__bgNoNavigation === true);
  assert(stayed && after.pathname === before.pathname, `clicking the command navigated to ${pathOf(page.url())}`);
  // It plays on from there.
  const t1 = st.player;
  const plays = await until(async () => {
    const s = await playerState(page);
    return s.player > t1 + 0.05 || (s.duration != null && s.player >= s.duration - 0.05);
  }, 5000);
  assert(plays, "the player does not play after the seek");
  // The terminal shows the command line as it was typed at that moment.
  const screen = await page.evaluate(() => document.querySelector("#player .ap-term-text, #player .ap-term")?.textContent || "");
  assert(screen.includes(args.command), `after the seek the terminal does not show ${JSON.stringify(args.command)}: ${JSON.stringify(screen.slice(0, 400))}`);
  assertClean(reviewer, "after the seek");
  return { dataT: t, at: round(st.recording), playerTime: round(st.player) };
});

// 5. The reason is shown as text: its <script> is visible and nothing ran.
await check("reason", async () => {
  const req = await page.evaluate(() => {
    const el = document.getElementById("request");
    return el ? { text: el.textContent, scripts: el.querySelectorAll("script").length } : null;
  });
  assert(req, "no #request on the session page");
  assert(req.scripts === 0, `#request contains ${req.scripts} <script> element(s)`);
  if (scriptReason) {
    assert(req.text.includes("<script>"), "the #request text does not show the reason's <script> as text");
  }
  assert(reviewer.dialogs.length === 0, `a dialog opened: ${reviewer.dialogs.join(" | ")}`);
  const file = await screenshot(page, "review-session.png");
  if (file) shots.push(file);
  assertClean(reviewer, "session page");
  return { shownAsText: scriptReason ? true : "not asked" };
});

// 5b. A search hit's #t= link opens the session page at that time.
await check("fragment", async () => {
  assert(hitHref, "no hit link from the search check");
  await page.goto(u(`/review?q=${encodeURIComponent(query)}`), { waitUntil: "load", timeout: STEP_TIMEOUT });
  const hit = page.locator(`#hits a[href="${hitHref}"]`).first();
  await Promise.all([page.waitForNavigation({ waitUntil: "load", timeout: STEP_TIMEOUT }), hit.click()]);
  await page.locator("#player .ap-player").first().waitFor({ state: "attached", timeout: STEP_TIMEOUT });
  let st = null;
  const near = await until(async () => {
    st = await playerState(page);
    return st && st.recording >= hitTime - 0.3 && st.recording <= hitTime + 3;
  }, 8000);
  assert(near, `opening ${hitHref} left the player at ${round(st && st.recording)} s, not at ${hitTime} s`);
  assertClean(reviewer, "session page opened at a time");
  return { t: hitTime, at: round(st.recording) };
});

// 6. A used sign-in link is refused and gives no session.
await check("usedLink", async () => {
  const w = await newWatchedContext();
  const p = await w.ctx.newPage();
  const { status } = await openSignIn(p, args.usedLink);
  const text = await p.evaluate(() => document.body ? document.body.innerText : "");
  const saysUsed = /already (been )?used|was used|used already|no longer valid|expired/i.test(text);
  assert(status === 403 || saysUsed, `a used link gave HTTP ${status} and no page saying it was used: ${JSON.stringify(text.slice(0, 200))}`);
  assert(new URL(p.url()).pathname !== "/review" || status >= 400, "a used link landed on the list");
  const r = await p.goto(u("/review"), { waitUntil: "load", timeout: STEP_TIMEOUT });
  const rows = await sessionRows(p);
  const table = await p.locator("#sessions").count();
  assert(rows === 0 && table === 0, `after a used link, /review shows the list (HTTP ${r && r.status()}, ${rows} rows)`);
  await w.ctx.close();
  return { status, saysUsed, reviewAfter: r ? r.status() : null };
});

// 7. A non-reviewer's link is refused with 403.
await check("nonReviewer", async () => {
  const w = await newWatchedContext();
  const p = await w.ctx.newPage();
  const { status } = await openSignIn(p, args.nonReviewerLink);
  assert(status === 403, `a non-reviewer's link gave HTTP ${status} (at ${new URL(p.url()).pathname}), not 403`);
  const r = await p.goto(u("/review"), { waitUntil: "load", timeout: STEP_TIMEOUT });
  const rows = await sessionRows(p);
  assert(rows === 0 && (await p.locator("#sessions").count()) === 0, `after a non-reviewer's link, /review shows the list (HTTP ${r && r.status()})`);
  await w.ctx.close();
  return { status, reviewAfter: r ? r.status() : null };
});

// 8. Screenshots (taken during checks 2 and 5).
await check("screenshots", async () => {
  if (!args.screenshots) return { skipped: "no screenshots directory given" };
  for (const f of shots) assert(fs.existsSync(f) && fs.statSync(f).size > 1000, `screenshot ${f} is missing or empty`);
  assert(shots.length === 2, `expected 2 screenshots, have ${shots.length}`);
  return { files: shots, size: `${VIEWPORT.width}x${VIEWPORT.height}` };
});

clearTimeout(watchdog);
await finish(0);
