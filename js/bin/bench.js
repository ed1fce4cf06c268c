#!/usr/bin/env node
/**
 * Time the Node runtime on texts (src/measure.js, the browser page's method): JSON on stdout.
 *
 *   node js/bin/bench.js EXPORT_DIR --texts FILE.json [--variant int8] [--threads 2] [--repeats 3]
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import { measure } from "../src/measure.js";
import { EmotionClassifier } from "../src/node.js";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { texts: { type: "string" }, variant: { type: "string", default: "auto" },
             threads: { type: "string" }, repeats: { type: "string", default: "3" } },
});
const texts = JSON.parse(readFileSync(values.texts, "utf-8"));
const clf = await EmotionClassifier.load(positionals[0], {
  variant: values.variant, threads: values.threads ? Number(values.threads) : null,
});
const result = await measure(clf, texts, { repeats: Number(values.repeats) });
process.stdout.write(JSON.stringify({ variant: clf.variant, threads: values.threads ?? null, ...result }) + "\n");
await clf.release();
