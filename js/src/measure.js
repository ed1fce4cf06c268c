/**
 * One timing method for every JavaScript host (Node, and the page in a browser), so that
 * benchmarks/web_runtime.py compares them with the Python runtime on equal terms: p50/p90 latency of
 * one text per call, and texts/s when all the texts go in one call (the runtime batches by length).
 */

/**
 * @param {{predictProba: function}} classifier - a loaded EmotionClassifier.
 * @param {string[]} texts - the texts; the first `single` are also timed one per call.
 * @param {{repeats?: number, single?: number}} [options] - passes over the texts (default 3); texts timed alone (50).
 * @returns {Promise<{p50_ms: number, p90_ms: number, texts_per_s: number, n_single: number, n_texts: number}>}
 */
export async function measure(classifier, texts, { repeats = 3, single = 50 } = {}) {
  await classifier.predictProba(texts.slice(0, 8));  // warm-up: first runs allocate
  const one = [];
  for (let r = 0; r < repeats; r++) {
    for (const text of texts.slice(0, single)) {
      const t0 = performance.now();
      await classifier.predictProba([text]);
      one.push(performance.now() - t0);
    }
  }
  const rates = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    await classifier.predictProba(texts);
    rates.push(texts.length / ((performance.now() - t0) / 1000));
  }
  return { p50_ms: quantile(one, 0.5), p90_ms: quantile(one, 0.9), texts_per_s: quantile(rates, 0.5),
           n_single: one.length, n_texts: texts.length };
}

function quantile(values, q) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (sorted.length - 1) * q;  // linear interpolation, numpy's default
  const lo = Math.floor(at);
  return sorted[lo] + (sorted[Math.min(lo + 1, sorted.length - 1)] - sorted[lo]) * (at - lo);
}
