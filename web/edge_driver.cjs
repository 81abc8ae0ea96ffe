#!/usr/bin/env node
// Drives the edge demo page in headless Chromium (Debian's /usr/bin/chromium through playwright-core) and
// prints one JSON object with what each scenario saw. Used by tests/edge/test_browser.py and
// benchmarks/edge.py; the page must already be served (turborec.edge.demo.DemoServer on 127.0.0.1).
//
//   node web/edge_driver.cjs SPEC.json
//
// SPEC: {"baseUrl": "http://127.0.0.1:PORT/", "outDir": "/tmp/x", "chromium": "/usr/bin/chromium",
//        "scenarios": [{"name", "query", "clickPositions": [3, 7], "screenshot": true,
//                       "benchmark": {"n": 200, "clicks": 3}, "scoresFor": [ids], "timeoutMs": 60000}]}
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const ARGS = [
  "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
  "--disable-sync", "--no-first-run",
];

async function waitReady(page, timeoutMs) {
  await page.waitForFunction(() => window.turborecEdge && window.turborecEdge.state.status !== "loading", null, { timeout: timeoutMs });
}

async function listOrder(page) {
  return page.$$eval("#list li", (items) => items.map((li) => li.dataset.itemId));
}

async function runScenario(context, spec, baseUrl, outDir) {
  const page = await context.newPage();
  const consoleErrors = [];
  page.on("console", (msg) => { if (msg.type() === "error") consoleErrors.push(msg.text()); });
  page.on("pageerror", (err) => consoleErrors.push(String(err)));
  const result = { name: spec.name, consoleErrors };
  const t0 = Date.now();
  await page.goto(baseUrl + (spec.query || ""), { waitUntil: "load" });
  await waitReady(page, spec.timeoutMs || 60000);
  result.wallToReadyMs = Date.now() - t0;
  const st = await page.evaluate(() => {
    const s = window.turborecEdge.state;
    return { status: s.status, error: s.error, coldStartMs: s.coldStartMs, loadMs: s.loadMs, firstAnswerMs: s.firstAnswerMs, bundleBytes: s.bundleBytes };
  });
  Object.assign(result, st);
  const box = page.locator("#error");
  result.errorVisible = await box.isVisible();
  result.errorText = result.errorVisible ? (await box.textContent()).trim() : null;
  if (st.status !== "ready") { await page.close(); return result; }
  result.order0 = await listOrder(page);
  result.screenshots = [];
  const shot = async (tag) => {
    const file = path.join(outDir, `${spec.name}-${tag}.png`);
    await page.locator("#list").screenshot({ path: file });
    result.screenshots.push(file);
  };
  if (spec.screenshot) await shot("before");
  result.clickedIds = [];
  for (const pos of spec.clickPositions || []) {
    const items = page.locator("#list li");
    const id = await items.nth(pos).getAttribute("data-item-id");
    const n = await page.evaluate(() => window.turborecEdge.state.timings.length);
    await items.nth(pos).click();
    await page.waitForFunction((k) => window.turborecEdge.state.timings.length > k || window.turborecEdge.state.error, n);
    result.clickedIds.push(id);
  }
  result.order1 = await listOrder(page);
  if (spec.screenshot) await shot("after");
  if (spec.screenshot) {
    const full = path.join(outDir, `${spec.name}-page.png`);
    await page.screenshot({ path: full, fullPage: true });
    result.screenshots.push(full);
  }
  if (spec.scoresFor) result.scores = await page.evaluate((ids) => window.turborecEdge.scores(ids), spec.scoresFor);
  if (spec.benchmark) {
    result.benchmarkMs = await page.evaluate(({ n, clicks }) => window.turborecEdge.benchmark(n, clicks), spec.benchmark);
  }
  result.finalError = await page.evaluate(() => window.turborecEdge.state.error);
  await page.close();
  return result;
}

async function main() {
  const spec = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const outDir = spec.outDir || fs.mkdtempSync(path.join(os.tmpdir(), "turborec-edge-"));
  fs.mkdirSync(outDir, { recursive: true });
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "turborec-chromium-"));
  const t0 = Date.now();
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: spec.chromium || "/usr/bin/chromium",
    headless: true,
    args: ARGS,
    viewport: { width: 1000, height: 900 },
  });
  const out = { launchMs: Date.now() - t0, scenarios: [] };
  try {
    for (const scenario of spec.scenarios) out.scenarios.push(await runScenario(context, scenario, spec.baseUrl, outDir));
  } finally {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((err) => { process.stderr.write(String(err && err.stack ? err.stack : err) + "\n"); process.exit(1); });
