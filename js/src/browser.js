/**
 * The browser entry: `EmotionClassifier.load(url)` on onnxruntime-web (WASM; WebGPU when asked for),
 * fetching the export's files from a URL. Everything runs on the device: texts never leave the page.
 *
 *   import * as ort from "onnxruntime-web";
 *   const clf = await EmotionClassifier.load("./model/", { ort });
 *   await clf.predict("I love it");
 *
 * Pass the `ort` module you loaded (a static page imports one of onnxruntime-web's builds from its own
 * folder); without it, `import("onnxruntime-web")` resolves it as a bundler would.
 */
import { EmotionClassifier as Core } from "./classifier.js";
import { ArtifactError } from "./errors.js";

export { ArtifactError, ToolkitError } from "./errors.js";
export { AUTO_VARIANTS, DEFAULT_MAX_BATCH, MODEL_INPUTS, autoVariant, failures, onnxVariant } from "./classifier.js";

export class EmotionClassifier extends Core {
  /**
   * Load an export served over HTTP(S).
   *
   * @param {string|URL} url - the folder holding manifest.json (resolved against the page).
   * @param {object} [options] - ort (the onnxruntime-web module), executionProviders (["wasm"]; ["webgpu",
   *   "wasm"] where navigator.gpu has an adapter), variant, threads, maxBatchSize, verify, log.
   * @returns {Promise<EmotionClassifier>}
   * @throws {ArtifactError} the export is missing, corrupt or inconsistent, or the variant is unknown.
   */
  static async load(url, { ort = null, executionProviders = ["wasm"], ...options } = {}) {
    ort ??= await import("onnxruntime-web");
    const base = new URL(String(url).endsWith("/") ? String(url) : `${url}/`, globalThis.location?.href);
    return Core.open.call(this, urlStore(base), ort, { executionProviders, ...options });
  }
}

function urlStore(base) {
  return {
    where: (rel) => new URL(rel, base).href,
    missing: async () => null,  // a URL has no directory to check: a missing manifest says so
    async read(rel) {
      const href = new URL(rel, base).href;
      let response;
      try {
        response = await fetch(href);
      } catch (e) {
        throw new ArtifactError(`${href}: cannot fetch (${e.message}); is the export served from this origin?`);
      }
      if (response.status === 404) return null;
      if (!response.ok) throw new ArtifactError(`${href}: HTTP ${response.status} ${response.statusText}`);
      return new Uint8Array(await response.arrayBuffer());
    },
  };
}
