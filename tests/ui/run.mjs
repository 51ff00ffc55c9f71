// Drives Debian's chromium (headless, through playwright-core) over the UI of a running
// `obs-stack serve` fed by tests/ui_browser.rs, checks every page and writes screenshots.
// Env: OBS_UI_URL, OBS_UI_TOKEN, OBS_UI_EXPECT (JSON), OBS_UI_SHOTS (folder),
// OBS_UI_PROFILE (fresh user-data-dir), OBS_UI_PLAYWRIGHT (path to playwright-core).
// Also a benchmark mode: OBS_UI_BENCH=1 only measures the service page (first paint, data).
import { createRequire } from "node:module";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.OBS_UI_PLAYWRIGHT || "playwright-core");
const base = process.env.OBS_UI_URL;
const token = process.env.OBS_UI_TOKEN;
const expect = JSON.parse(process.env.OBS_UI_EXPECT || "{}");
const shots = process.env.OBS_UI_SHOTS || "target/ui-screenshots";

const failures = [];
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures.push(what);
}

const browser = await chromium.launchPersistentContext(process.env.OBS_UI_PROFILE, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 800 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = browser.pages()[0] ?? (await browser.newPage());
const consoleErrors = [];
page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(`${page.url()}: ${m.text()}`); });
page.on("pageerror", (e) => consoleErrors.push(`${page.url()}: ${e.message}`));
// only 127.0.0.1: anything else is a bug (a CDN, a font)
await page.route("**/*", (r) => (new URL(r.request().url()).hostname === "127.0.0.1" ? r.continue() : (consoleErrors.push(`external request ${r.request().url()}`), r.abort())));

async function shot(name) {
  await page.waitForTimeout(250); // charts mount on the next frame
  await page.screenshot({ path: join(shots, `${name}.png`) });
}
async function settle(sel) {
  await page.waitForSelector(sel, { timeout: 15000 });
  await page.waitForLoadState("networkidle");
}

try {
  if (process.env.OBS_UI_BENCH) {
    await bench();
  } else {
    await checks();
  }
} catch (e) {
  failures.push(`exception: ${e.stack || e}`);
  console.log(`FAIL ${e.stack || e}`);
  await shot("failure").catch(() => {});
} finally {
  await browser.close();
}
if (failures.length) {
  console.log(`${failures.length} UI check(s) failed`);
  process.exit(1);
}
console.log("all UI checks passed");

async function checks() {
  // 1. the token is required: no cookie → the login form; the API answers 401
  await page.goto(base + "/");
  await settle("#token");
  const status = await page.evaluate(() => fetch("/api/v1/projects").then((r) => r.status));
  check(status === 401, `API without the token answers 401 (got ${status})`);
  await shot("login");
  // a wrong token is refused, the right one (the login link) sets the cookie and leaves the URL
  await page.fill("#token", "wrong");
  await page.press("#token", "Enter");
  await page.waitForSelector("text=That token was not accepted");
  check(true, "a wrong token is refused");
  // the login page's refused API calls are logged by the browser as failed loads: expected
  consoleErrors.length = 0;
  await page.goto(`${base}/?token=${token}`);
  await settle("table.services");
  check(!page.url().includes("token="), `the token is dropped from the address bar (${page.url()})`);
  const cookies = await browser.cookies();
  const c = cookies.find((c) => c.name === "obs_stack_token");
  check(c && c.httpOnly && c.sameSite === "Strict", "the session cookie is HttpOnly and SameSite=Strict");

  // 2. overview: every service, alerts
  const services = await page.$$eval("table.services tbody th a", (as) => as.map((a) => a.textContent));
  check(JSON.stringify(services.sort()) === JSON.stringify(["front", "shop"]), `overview lists front and shop (${services})`);
  const banner = (await page.textContent(".banner").catch(() => "")) || "";
  for (const a of expect.alerts || []) check(banner.includes(a), `overview alerts on ${a}`);
  await shot("overview");
  await page.emulateMedia({ colorScheme: "dark" });
  await page.waitForTimeout(300);
  await settle("table.services");
  await shot("overview-dark");
  await page.emulateMedia({ colorScheme: "light" });

  // 3. service: the route table lists exactly the routes hit with their counts; p95 sorts /slow first
  await page.goto(`${base}/#/service/${expect.service}`);
  await settle("#routes tbody tr");
  const rows = await page.$$eval("#routes tbody tr", (trs) => trs.map((tr) => [tr.querySelector("th").textContent.replace(/^[A-Z]+\s+/, ""), Number(tr.children[1].textContent)]));
  const got = Object.fromEntries(rows);
  check(JSON.stringify(Object.keys(got).sort()) === JSON.stringify(Object.keys(expect.routes).sort()), `route table lists exactly ${Object.keys(expect.routes)} (got ${Object.keys(got)})`);
  for (const [r, n] of Object.entries(expect.routes)) check(got[r] === n, `route ${r} shows ${n} calls (got ${got[r]})`);
  check(rows[0][0] === "/orders/{id}", `sorted by calls by default (first ${rows[0][0]})`);
  await page.focus('[data-key="sort:p95_ms"]');
  await page.keyboard.press("Enter"); // keyboard works on the sort buttons
  const first = await page.$eval("#routes tbody tr th", (th) => th.textContent.replace(/^[A-Z]+\s+/, ""));
  check(first === expect.slowest, `sorting by p95 puts ${expect.slowest} first (got ${first})`);
  const sortState = await page.getAttribute('th[aria-sort="descending"] button', "data-key");
  check(sortState === "sort:p95_ms", "the p95 column says it is sorted (aria-sort)");
  // Run analysis: the planted N+1 (the same statement three times under one request) is found.
  await page.click("#run-analysis");
  await page.waitForSelector(".analysis ul.findings, .analysis .empty, .analysis .error", { timeout: 10000 });
  const analysis = await page.textContent(".analysis");
  check(analysis.includes("N+1") && analysis.includes(expect.trace.statement), `Run analysis reports the N+1 (${analysis.slice(0, 200)})`);
  const section = await page.$('section[aria-labelledby="an-h"]');
  if (section) await section.screenshot({ path: join(shots, "analysis.png") });
  await shot("service");
  await page.goto(`${base}/#/service/front`);
  await settle("#rt-h");
  await page.waitForSelector("text=nodejs.eventloop.delay");
  check(true, "front's runtime panels show the event-loop delay");
  await page.evaluate(() => scrollTo(0, document.body.scrollHeight));
  await shot("service-runtime");

  // 4. traces: search, then the known trace's waterfall with its DB statements
  await page.goto(`${base}/#/traces?service=${expect.service}`);
  await settle("#traces tbody tr");
  const ids = await page.$$eval("#traces tbody th a", (as) => as.map((a) => a.getAttribute("href")));
  check(ids.some((h) => h.includes(expect.trace.id)), "the trace search finds the known trace");
  await shot("traces");
  await page.goto(`${base}/#/traces?service=${expect.service}&error=true`);
  await settle("#traces tbody tr");
  const errs = await page.$$eval("#traces tbody tr", (trs) => trs.length);
  check(errs === 1, `filtering on errors leaves the one failed request (got ${errs})`);
  await page.goto(`${base}/#/trace/${expect.trace.id}`);
  await settle("#waterfall li");
  const spans = await page.$$eval("#waterfall li", (lis) => lis.length);
  check(spans === expect.trace.spans, `the waterfall shows ${expect.trace.spans} spans (got ${spans})`);
  const text = await page.textContent("#waterfall");
  check(text.includes(expect.trace.statement), "the waterfall shows the DB statements");
  await page.click("#waterfall li:nth-child(3) button");
  const detail = await page.textContent("#span-detail");
  check(detail.includes("db.statement") && detail.includes(expect.trace.statement), "a span's attributes and statement open below");
  await shot("trace");
  // a trace over one answer: the banner says so, "Load the next" brings the rest
  await page.goto(`${base}/#/trace/${expect.big_trace.id}`);
  await settle("#trace-truncated");
  const firstPage = await page.$$eval("#waterfall li", (lis) => lis.length);
  check(firstPage === expect.big_trace.first_page, `a large trace shows its first page of ${expect.big_trace.first_page} spans (got ${firstPage})`);
  check((await page.textContent("#trace-truncated")).includes(expect.big_trace.spans.toLocaleString("en-US")), "the banner says how many spans the trace has");
  await shot("trace-truncated");
  await page.click("#trace-more");
  await page.waitForFunction((n) => document.querySelectorAll("#waterfall li").length === n, expect.big_trace.spans, { timeout: 15000 });
  check(!(await page.$("#trace-truncated")), "after loading the rest, the whole trace is shown and the banner is gone");

  // 5. errors: the group, then its stack trace
  await page.goto(`${base}/#/errors`);
  await settle("#errors tbody tr");
  await shot("errors");
  await page.click("#errors tbody tr th a");
  await settle("#stack");
  const stack = await page.textContent("#stack");
  check(stack.includes(expect.error.stack), "the error page shows the stack trace");
  await shot("error");

  // 6. keyboard: shortcuts and a skip link
  await page.goto(`${base}/#/errors`);
  await settle("#errors");
  await page.keyboard.press("1");
  await settle("table.services");
  check(page.url().includes("#/overview"), "key 1 goes to the overview");
  await page.reload();
  await settle("table.services");
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => document.activeElement?.textContent);
  check(focused === "Skip to content", `the first Tab lands on the skip link (got ${focused})`);

  check(consoleErrors.length === 0, `no console errors${consoleErrors.length ? ": " + consoleErrors.join(" | ") : ""}`);
}

async function bench() {
  await page.goto(`${base}/?token=${token}`);
  await settle("table.services");
  const runs = [];
  for (let i = 0; i < Number(process.env.OBS_UI_BENCH_RUNS || 5); i++) {
    await page.goto("about:blank");
    const t0 = Date.now();
    await page.goto(`${base}/#/service/${expect.service}`);
    await page.waitForSelector("#routes-h", { timeout: 60000 }); // rendered once every call answered
    const ready = Date.now() - t0;
    const fcp = await page.evaluate(() => performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? null);
    runs.push({ fcp_ms: fcp && Math.round(fcp), data_ms: ready });
  }
  console.log(JSON.stringify({ bench: runs }));
  await shot("bench-service");
}
