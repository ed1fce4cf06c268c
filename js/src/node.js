/**
 * The Node.js entry: `EmotionClassifier.load(exportDir)` on onnxruntime-node (CPU), reading the export
 * directory `toolkit export` wrote. Semantics and errors are classifier.js's, shared with the browser.
 *
 *   import { EmotionClassifier } from "toolkit-emotion";
 *   const clf = await EmotionClassifier.load("exported/emotion");
 *   await clf.predict(["I love it", "this is awful"]);
 */
import { readFile, stat } from "node:fs/promises";
import path from "node:path";

import * as ort from "onnxruntime-node";

import { EmotionClassifier as Core } from "./classifier.js";

export { ArtifactError, ToolkitError } from "./errors.js";
export { AUTO_VARIANTS, DEFAULT_MAX_BATCH, MODEL_INPUTS, autoVariant, failures, onnxVariant } from "./classifier.js";

export class EmotionClassifier extends Core {
  /**
   * Load an export directory written by `toolkit export` (or `toolkit web`'s model folder).
   *
   * @param {string} exportDir - the directory holding manifest.json, the ONNX variants and tokenizer.json.
   * @param {object} [options] - variant ("auto": fastest that passed validation, or a name), threads
   *   (intra-op; default: onnxruntime's, the physical cores), maxBatchSize (32), verify (sha256, true),
   *   executionProviders (["cpu"]), log ({info, warn}).
   * @returns {Promise<EmotionClassifier>}
   * @throws {ArtifactError} the export is missing, corrupt or inconsistent, or the variant is unknown.
   */
  static load(exportDir, options = {}) {
    return Core.open.call(this, fileStore(String(exportDir)), ort, options);
  }
}

function fileStore(dir) {
  return {
    where: (rel) => (rel ? path.join(dir, rel) : dir),
    async missing() {
      const info = await stat(dir).catch(() => null);
      return info?.isDirectory() ? null
        : `${dir}: export directory not found; run \`toolkit export --out ${dir}\` first`;
    },
    async read(rel) {
      try {
        const buffer = await readFile(path.join(dir, rel));
        return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
      } catch (e) {
        if (e.code === "ENOENT") return null;
        throw e;
      }
    },
  };
}
