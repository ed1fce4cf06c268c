#!/usr/bin/env node
/**
 * Drive the `toolkit web` page in a real headless Chromium (the system's, through playwright-core: no
 * browser download) and print what it shows, as JSON on stdout. Used by tests/test_web_page.py and
 * benchmarks/web_runtime.py.
 *
 *   node js/bin/drive-page.js URL [--texts FILE.json] [--type N] [--threads N] [--screenshot OUT.png]
 *                             [--proba FILE.json] [--bench FILE.json --repeats N] [--chromium /usr/bin/chromium]
 *
 * --texts: type each text into the page (the first N keystroke by keystroke with --type N, the rest
 *   filled at once) and read every label's score, threshold tick and decision back from the DOM.
 * --proba: the page's classifier on all the file's texts in one call (batched, as an app calls it).
 * --bench: time the page's classifier in the page itself: p50 of one text, texts/s over the file's texts.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import { chromium } from "playwright-core";

// Flags for a container with no GPU, no sandbox and no network: nothing is fetched but the page.
// playwright-core adds --headless and a new empty --user-data-dir of its own (and removes it after).
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const LOAD_TIMEOUT_MS = 60_000;

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      texts: { type: "string" }, type: { type: "string", default: "0" }, threads: { type: "string" },
      screenshot: { type: "string" }, bench: { type: "string" }, repeats: { type: "string", default: "3" },
      proba: { type: "string" },
      chromium: { type: "string", default: "/usr/bin/chromium" },
    },
  });
  const [base] = positionals;
  const url = new URL(base);
  if (values.threads) url.searchParams.set("threads", values.threads);
  const browser = await chromium.launch({ executablePath: values.chromium, headless: true, args: FLAGS });
  try {
    const page = await browser.newPage({ viewport: { width: 760, height: 560 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(url.href);
    await page.waitForFunction(() => window.toolkit || document.querySelector("#status.error"), null,
                               { timeout: LOAD_TIMEOUT_MS });
    const failed = await page.$eval("#status", (s) => (s.classList.contains("error") ? s.textContent : null));
    if (failed) throw new Error(`the page failed to load: ${failed}`);
    const info = await page.evaluate(() => ({
      variant: window.toolkit.classifier.variant, labels: window.toolkit.classifier.labels,
      where: window.toolkit.where, threads: window.toolkit.threads, crossOriginIsolated: window.crossOriginIsolated,
      userAgent: navigator.userAgent,
    }));
    const out = { ...info, errors };
    if (values.texts) out.results = await typeTexts(page, JSON.parse(readFileSync(values.texts, "utf-8")), Number(values.type));
    if (values.proba) {
      out.probs = await page.evaluate((texts) => window.toolkit.classifier.predictProba(texts),
                                      JSON.parse(readFileSync(values.proba, "utf-8")));
    }
    if (values.bench) out.bench = await bench(page, JSON.parse(readFileSync(values.bench, "utf-8")), Number(values.repeats));
    if (values.screenshot) await page.screenshot({ path: values.screenshot });
    process.stdout.write(JSON.stringify(out) + "\n");
  } finally {
    await browser.close();
  }
}

async function typeTexts(page, texts, keystrokes) {
  const results = [];
  for (const [i, text] of texts.entries()) {
    await page.fill("#text", "");
    if (i < keystrokes) await page.type("#text", text, { delay: 15 });
    else await page.fill("#text", text);
    // the page scores after a pause in typing; wait until what it shows belongs to this very text
    await page.waitForFunction((t) => document.querySelector("#result").dataset.text === t, text,
                               { timeout: LOAD_TIMEOUT_MS });
    results.push(await page.$$eval("#result .row", (rows) => rows.map((r) => ({
      label: r.dataset.label, score: Number(r.dataset.score), on: r.classList.contains("on"),
      shown: r.querySelector(".value").textContent, bar: r.querySelector(".fill").style.width,
    }))));
  }
  return results;
}

async function bench(page, texts, repeats) {
  // the page's own classifier, timed by the method Node uses (lib/measure.js, copied by `toolkit web`)
  return page.evaluate(async ({ texts, repeats }) => {
    const { measure } = await import("./lib/measure.js");
    return measure(window.toolkit.classifier, texts, { repeats });
  }, { texts, repeats });
}

main().catch((e) => {
  process.stderr.write(`error: ${e.message}\n`);
  process.exit(1);
});
