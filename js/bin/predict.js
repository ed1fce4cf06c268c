#!/usr/bin/env node
/**
 * Score texts with the Node runtime, the way `toolkit predict` does with the Python one: one JSON line
 * per text ({text, labels, scores}), or with --proba one JSON object {variant, labels, probs}.
 *
 *   node js/bin/predict.js EXPORT_DIR [--variant auto] [--threads N] [--threshold T] [--proba] [TEXT ...]
 *   (no TEXT: a JSON array of strings, or one JSON string per line, on stdin)
 *
 * Errors are one line on stderr and exit 2 (bad export or input), as the Python CLI.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import { EmotionClassifier, ToolkitError } from "../src/node.js";

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      variant: { type: "string", default: "auto" },
      threads: { type: "string" },
      threshold: { type: "string" },
      "max-batch-size": { type: "string" },
      proba: { type: "boolean", default: false },
    },
  });
  const [exportDir, ...texts] = positionals;
  if (!exportDir) throw new ToolkitError("usage: predict.js EXPORT_DIR [--variant V] [--proba] [TEXT ...]");
  const clf = await EmotionClassifier.load(exportDir, {
    variant: values.variant,
    threads: values.threads === undefined ? null : Number(values.threads),
    maxBatchSize: values["max-batch-size"] === undefined ? undefined : Number(values["max-batch-size"]),
  });
  const inputs = texts.length ? texts : readStdin();
  if (values.proba) {
    const probs = await clf.predictProba(inputs);
    process.stdout.write(JSON.stringify({ variant: clf.variant, labels: clf.labels, probs }) + "\n");
  } else {
    const threshold = values.threshold === undefined ? null : Number(values.threshold);
    for (const p of await clf.predict(inputs, { threshold })) process.stdout.write(JSON.stringify(p) + "\n");
  }
  await clf.release();
}

function readStdin() {
  const raw = readFileSync(0, "utf-8").trim();
  if (!raw) return [];
  if (raw.startsWith("[")) return JSON.parse(raw);
  return raw.split("\n").map((line) => JSON.parse(line));
}

main().catch((e) => {
  if (e instanceof ToolkitError || e instanceof TypeError || e instanceof SyntaxError) {
    process.stderr.write(`error: ${e.message}\n`);
    process.exit(2);
  }
  throw e;
});
