/**
 * The classifier apps embed, for any JavaScript host: the toolkit export's manifest, one onnxruntime
 * session and the Hugging Face JS tokenizer on the export's `tokenizer.json`.
 *
 * It mirrors toolkit/runtime.py rule for rule (same manifest checks, same `auto` variant, input
 * names from the session, truncation to max_length, length-sorted batches padded with the
 * tokenizer's pad id, float64 sigmoid rounded to float32), so a text gets the Python runtime's
 * scores. The host is injected: `node.js` (onnxruntime-node, files) and `browser.js`
 * (onnxruntime-web, fetch) pass an `ort` module and a store that reads an export's files.
 */
import { Tokenizer } from "@huggingface/tokenizers";

import { ArtifactError, ToolkitError } from "./errors.js";

export const FORMAT_VERSION = 1;
export const MANIFEST = "manifest.json";
export const TOKENIZER_JSON = "tokenizer.json";
export const VALIDATION_STATUS = "validation_status";
export const NOT_GATED = "not gated";  // variants[v].status of an int8 no labelled data gated at export (artifacts.NOT_GATED)
export const MODEL_INPUTS = ["input_ids", "attention_mask", "token_type_ids"];
// variant "auto": fastest first for the device, then the others, most faithful first (runtime.AUTO_VARIANTS).
export const AUTO_VARIANTS = {
  cpu: ["int8", "int8_static", "fp32", "fp16"],
  gpu: ["fp16", "fp32", "int8", "int8_static"],
};
// As the Python runtime: batches of 16-32 GoEmotions texts were fastest on 2 cores (runtime.DEFAULT_MAX_BATCH).
export const DEFAULT_MAX_BATCH = 32;
// Execution providers that run on the CPU; any other first provider (webgpu, cuda) ranks variants for a GPU.
const CPU_PROVIDERS = new Set(["cpu", "wasm"]);

const quietLog = { info() {}, warn: (message) => console.warn(`toolkit: ${message}`) };

/**
 * An exported multi-label classifier: tokenizer + one onnxruntime session + labels and thresholds.
 * Create it with `EmotionClassifier.load(...)` from `node.js` or `browser.js`.
 *
 * Fields: labels (column order of predictProba), thresholds, variant, maxLength, maxBatchSize,
 * executionProviders, session, source (the export directory or URL), manifest.
 */
export class EmotionClassifier {
  constructor({ source, manifest, variant, session, ort, tokenizer, maxBatchSize, executionProviders }) {
    this.source = source;
    this.manifest = manifest;
    this.labels = manifest.labels.map(String);
    this.thresholds = manifest.thresholds.map(Number);
    this.maxLength = manifest.max_length;
    this.variant = variant;
    this.session = session;
    this.maxBatchSize = maxBatchSize;
    this.executionProviders = executionProviders;
    this._ort = ort;
    this._tokenizer = tokenizer;
    this._padId = tokenizer.padId;
    this._inputs = inputTypes(session);
    this._output = session.outputNames[0];
  }

  /**
   * Open an export through a store (see node.js and browser.js, which call this).
   *
   * @param {object} store - `{where(rel), read(rel) -> Promise<Uint8Array|null>, missing() -> Promise<string|null>}`.
   * @param {object} ort - the onnxruntime module (onnxruntime-node or onnxruntime-web).
   * @param {object} [options] - variant ("auto" or a name), executionProviders, threads,
   *   maxBatchSize, verify (sha256 of the files it opens, default true), log ({info, warn}).
   * @throws {ArtifactError} missing or unsupported manifest, a file missing or modified, unknown variant,
   *   labels/thresholds that do not fit the model.
   * @throws {ToolkitError} a bad option.
   */
  static async open(store, ort, options = {}) {
    const {
      variant = "auto", executionProviders = ["cpu"], threads = null, maxBatchSize = DEFAULT_MAX_BATCH,
      verify = true, log = quietLog,
    } = options;
    if (!Number.isInteger(maxBatchSize) || maxBatchSize < 1) {
      throw new ToolkitError(`maxBatchSize must be a positive integer, got ${JSON.stringify(maxBatchSize)}`);
    }
    if (threads !== null && (!Number.isInteger(threads) || threads < 1)) {
      throw new ToolkitError(`threads must be a positive integer or null, got ${JSON.stringify(threads)}`);
    }
    const cached = cachedStore(store);
    const manifest = await readManifest(cached);
    checkLabels(cached, manifest);
    const onGpu = !CPU_PROVIDERS.has(providerName(executionProviders[0]));
    const [name, file] = chooseVariant(cached, manifest, variant, onGpu, log);
    if (verify) await verifyFiles(cached, manifest, [TOKENIZER_JSON, file]);
    const tokenizer = await loadTokenizer(cached, manifest.max_length);
    const session = await openSession(cached, ort, file, executionProviders, threads);
    const classifier = new this({
      source: store.where(""), manifest, variant: name, session, ort, tokenizer, maxBatchSize, executionProviders,
    });
    await classifier._checkGraph();
    log.info(`loaded ${store.where("")}: variant ${name} on ${executionProviders.map(providerName).join(",")}, ` +
             `${classifier.labels.length} labels`);
    return classifier;
  }

  /**
   * Sigmoid probabilities, one row per text (float32 values), columns in `labels` order. A text's row
   * does not depend on the other texts in the call or the batching.
   *
   * @param {string|string[]} texts - texts over maxLength tokens are truncated; "" is scored like any text.
   * @returns {Promise<number[][]>}
   * @throws {TypeError} texts or one of its items is not a string (the message names the index).
   */
  async predictProba(texts) {
    texts = asTexts(texts);
    const probs = new Array(texts.length);
    if (texts.length === 0) return probs;
    const encodings = texts.map((text) => this._encode(text));
    // Length bucketing: sorted by token count (a stable sort), each batch padded to its own longest text.
    const order = encodings.map((_, i) => i).sort((a, b) => encodings[a].ids.length - encodings[b].ids.length);
    for (let start = 0; start < order.length; start += this.maxBatchSize) {
      const index = order.slice(start, start + this.maxBatchSize);
      const logits = await this._run(index.map((i) => encodings[i]));
      const width = this.labels.length;
      index.forEach((textIndex, row) => {
        probs[textIndex] = Array.from(logits.subarray(row * width, (row + 1) * width), sigmoid);
      });
    }
    return probs;
  }

  /**
   * Labels at or above their thresholds and every label's score, one prediction per text.
   *
   * @param {string|string[]} texts - as for predictProba; one string gives a list of one.
   * @param {{threshold?: number}} [options] - one threshold for every label instead of the manifest's tuned ones.
   * @returns {Promise<{text: string, labels: string[], scores: Object<string, number>}[]>}
   * @throws {ToolkitError} threshold outside [0, 1].
   */
  async predict(texts, { threshold = null } = {}) {
    texts = asTexts(texts);
    const thresholds = threshold === null ? this.thresholds : this.labels.map(() => checkThreshold(threshold));
    const probs = await this.predictProba(texts);
    return texts.map((text, i) => ({
      text,
      labels: this.labels.filter((_, j) => probs[i][j] >= thresholds[j]),
      scores: Object.fromEntries(this.labels.map((label, j) => [label, probs[i][j]])),
    }));
  }

  /** Release the onnxruntime session. */
  async release() {
    await this.session.release();
  }

  _encode(text) {
    return this._tokenizer.encode(text);
  }

  async _run(encodings) {
    const feeds = this._feed(encodings);
    let outputs;
    try {
      outputs = await this.session.run(feeds, [this._output]);
    } catch (e) {
      const shape = [encodings.length, Math.max(...encodings.map((x) => x.ids.length))];
      throw new ArtifactError(`${this.source}: variant ${this.variant} failed on a batch of shape [${shape}] ` +
                              `(${e.message}); check the export with \`toolkit validate\`, or lower maxBatchSize ` +
                              "if memory ran out");
    }
    const logits = outputs[this._output];
    if (logits.type !== "float32") {
      throw new ArtifactError(`${this.source}: variant ${this.variant} outputs ${logits.type} logits, expected ` +
                              "float32; re-export it with `toolkit export --force`");
    }
    return logits.data;
  }

  /** The session inputs for one batch, padded to its own longest text; only the inputs the graph declares. */
  _feed(encodings) {
    const rows = encodings.length;
    const width = Math.max(...encodings.map((x) => x.ids.length));
    const feeds = {};
    for (const [name, type] of Object.entries(this._inputs)) {
      const data = type === "int32" ? new Int32Array(rows * width) : new BigInt64Array(rows * width);
      const cast = type === "int32" ? Number : BigInt;
      if (name === "input_ids" && this._padId !== 0) data.fill(cast(this._padId));
      encodings.forEach((e, row) => {
        const values = name === "input_ids" ? e.ids : name === "attention_mask" ? null : e.types;
        for (let k = 0; k < e.ids.length; k++) data[row * width + k] = cast(values === null ? 1 : values[k]);
      });
      feeds[name] = new this._ort.Tensor(type === "int32" ? "int32" : "int64", data, [rows, width]);
    }
    return feeds;
  }

  /** The graph takes known inputs and emits one logit per label: checked by a real run, which also warms it up. */
  async _checkGraph() {
    const unknown = Object.keys(this._inputs).filter((name) => !MODEL_INPUTS.includes(name)).sort();
    if (unknown.length) {
      throw new ArtifactError(`${this.source}: variant ${this.variant} takes inputs ${JSON.stringify(unknown)} ` +
                              `that a BERT classifier does not have (known: ${MODEL_INPUTS.join(", ")}); ` +
                              "re-export it with `toolkit export`");
    }
    const width = (await this._run([this._encode("")])).length;
    if (width !== this.labels.length) {
      throw new ArtifactError(`${joinPath(this.source, MANIFEST)}: ${this.labels.length} labels but variant ` +
                              `${this.variant} outputs ${width} scores; labels and model come from different ` +
                              "exports, re-run `toolkit export --force`");
    }
  }
}

/**
 * The export's tokenizer.json as the Python runtime applies it: special tokens added, truncated to
 * max_length (special tokens included), the pad id from the tokenizer. One text in, {ids, types} out.
 */
export class ModelTokenizer {
  /**
   * @param {object} json - the parsed tokenizer.json.
   * @param {number} maxLength - tokens per text, special tokens included.
   */
  constructor(json, maxLength) {
    this.tokenizer = new Tokenizer(withNmtAsReplace(json), {});
    this.maxLength = maxLength;
    this.padId = padId(json, this.tokenizer);
    const processor = this.tokenizer.post_processor;
    this._special = processor ? processor([], null, true).tokens.length : 0;
  }

  encode(text) {
    // A lone surrogate is a valid JS string but not UTF-8. The Python runtime encodes it with
    // "surrogatepass" and decodes with "replace": three U+FFFD per surrogate. The same here, so that a
    // byte-level BPE (which keeps U+FFFD) gives the same tokens. A "u" regex skips proper pairs.
    const clean = text.replace(/[\uD800-\uDFFF]/gu, "\uFFFD\uFFFD\uFFFD");
    const tokenizer = this.tokenizer;
    // @huggingface/tokenizers 0.2 has no truncation: truncate the text's tokens so that they and the
    // special tokens fit max_length, then add the specials, as the Rust tokenizer's enable_truncation does.
    let tokens = tokenizer.tokenize(clean, { add_special_tokens: false });
    const room = this.maxLength - this._special;
    if (tokens.length > room) tokens = tokens.slice(0, Math.max(room, 0));
    const processed = tokenizer.post_processor ? tokenizer.post_processor(tokens, null, true) : { tokens };
    const unk = tokenizer.model.unk_token_id;
    const ids = processed.tokens.map((t) => tokenizer.token_to_id(t) ?? unk);
    const types = processed.token_type_ids ?? new Array(ids.length).fill(0);
    return { ids, types };
  }
}

// The Rust tokenizers' Nmt normalizer (SentencePiece's, in Unigram tokenizer.json files: XLM-R, ALBERT,
// DeBERTa built by `tokenizers`) is missing from @huggingface/tokenizers 0.2 ("Unknown Normalizer type:
// Nmt"). It is two character maps, so it is rewritten as two Replace normalizers the library has:
// drop these control characters, turn these spaces into " " (tokenizers/src/normalizers/unicode.rs, do_nmt).
const NMT_DROP = "[\u0001-\u0008\u000B\u000E-\u001F\u007F\u008F\u009F]";
const NMT_SPACE = "[\u0009\u000A\u000C\u000D\u1680\u200B-\u200F\u2028\u2029\u2581\uFEFF\uFFFD]";

function withNmtAsReplace(json) {
  const rewrite = (node) => {
    if (!node || typeof node !== "object") return node;
    if (node.type === "Nmt") {
      return { type: "Sequence", normalizers: [
        { type: "Replace", pattern: { Regex: NMT_DROP }, content: "" },
        { type: "Replace", pattern: { Regex: NMT_SPACE }, content: " " },
      ] };
    }
    if (node.type === "Sequence" && Array.isArray(node.normalizers)) {
      return { ...node, normalizers: node.normalizers.map(rewrite) };
    }
    return node;
  };
  return { ...json, normalizer: rewrite(json.normalizer ?? null) };
}

/**
 * The variant `auto` loads: the fastest for the device whose last `toolkit validate` passed on enough
 * evidence (certified); with none, the fastest that did not fail (nor skip) export's int8 gate; never a
 * failed one while another qualifies. Only ONNX variants count: an OpenVINO IR (manifest backend
 * "openvino", which the Python runtime may pick on a CPU it was validated on) has no JavaScript runtime.
 * The same rule as toolkit/runtime.py `_auto_variant`.
 *
 * @param {object} manifest - an export's manifest.json.
 * @param {boolean} onGpu - rank for a GPU (fp16 first) instead of a CPU (int8 first).
 * @returns {{variant: string, skipped: string[], validated: boolean, anyTrusted: boolean}}
 */
export function autoVariant(manifest, onGpu = false) {
  const variants = Object.keys(manifest.variants ?? {}).filter((v) => onnxVariant(manifest, v));
  const preferred = AUTO_VARIANTS[onGpu ? "gpu" : "cpu"];
  const ranked = [...preferred.filter((v) => variants.includes(v)), ...variants.filter((v) => !preferred.includes(v))];
  const status = manifest[VALIDATION_STATUS] ?? {};
  const passed = ranked.filter((v) => certified(status[v]) && failures(manifest, v).length === 0);
  const notFailed = ranked.filter((v) => failures(manifest, v).length === 0);
  const pool = passed.length ? passed : notFailed.length ? notFailed : ranked;
  const variant = pool[0];
  return { variant, skipped: ranked.slice(0, ranked.indexOf(variant)), validated: Object.keys(status).length > 0,
           anyTrusted: passed.length + notFailed.length > 0 };
}

/**
 * Why a variant must not be trusted (runtime._failures): its last validation's failed checks, else
 * export's int8 gate (failed, or not gated for want of data). A restricted run's pass is no verdict.
 */
export function failures(manifest, name) {
  const verdict = (manifest[VALIDATION_STATUS] ?? {})[name];
  if (verdict !== undefined && verdict !== null && (verdict.passed === false || certified(verdict))) {
    return verdict.passed ? [] : [...(verdict.failures?.length ? verdict.failures : ["failed validation"])];
  }
  const entry = (manifest.variants ?? {})[name] ?? {};
  if (entry && entry.status === "failed") {
    return [...(entry.failures?.length ? entry.failures : ["failed the int8 gates at export"])];
  }
  if (entry && entry.status === NOT_GATED) {
    return [`not gated at export (${entry.not_gated || "no labelled data"}); \`toolkit validate\` certifies it`];
  }
  return [];
}

/** A variant onnxruntime runs: no backend named in the manifest, or "onnxruntime". */
export function onnxVariant(manifest, name) {
  const entry = (manifest.variants ?? {})[name];
  return Boolean(entry) && typeof entry === "object" && (entry.backend ?? "onnxruntime") === "onnxruntime";
}

/**
 * A pass that rests on enough evidence (runtime._certified): `toolkit validate` marks a --max-samples smoke
 * test, or a run on too few texts, "restricted", and such a run counts as if the variant was never validated.
 */
export function certified(verdict) {
  return Boolean(verdict) && verdict.passed === true && !verdict.restricted;
}

// ---------------------------------------------------------------------------- helpers

function chooseVariant(store, manifest, variant, onGpu, log) {
  const variants = manifest.variants ?? {};
  const where = store.where(MANIFEST);
  if (typeof variants !== "object" || Object.keys(variants).length === 0) {
    throw new ArtifactError(`${where}: lists no model variants; re-run \`toolkit export --force\``);
  }
  let name = String(variant).trim().toLowerCase();
  if (name === "auto") {
    const auto = autoVariant(manifest, onGpu);
    if (auto.variant === undefined) {
      throw new ArtifactError(`${where}: no ONNX variant (this export has ${Object.keys(variants).join(", ")}); ` +
                              "re-export with `toolkit export --variants fp32,int8`");
    }
    name = auto.variant;
    if (!auto.validated) {
      log.info(`variant auto: ${store.where("")} was never validated (run \`toolkit validate\`); ` +
               "choosing by speed among variants that did not fail at export");
    }
    if (auto.skipped.length) {
      const why = auto.skipped.map((v) => `${v}: ${failures(manifest, v).join(", ") || "not validated"}`).join("; ");
      log.info(`variant auto: ${store.where("")} skips ${auto.skipped.join(", ")} (${why}), using ${name}`);
    }
    if (!auto.anyTrusted) log.warn(`variant auto: every variant of ${store.where("")} failed a check; using ${name}`);
  } else if (!(name in variants)) {
    throw new ArtifactError(`${store.where("")}: no variant ${JSON.stringify(variant)}; this export has ` +
                            `${Object.keys(variants).join(", ")} (or use 'auto'); re-export with ` +
                            "`toolkit export --variants ...` to add it");
  } else if (!onnxVariant(manifest, name)) {
    const onnx = Object.keys(variants).filter((v) => onnxVariant(manifest, v));
    throw new ArtifactError(`${store.where("")}: variant ${name} runs on ${variants[name].backend}, not ` +
                            `onnxruntime; the JavaScript runtime runs ${onnx.join(", ") || "ONNX variants"} (or 'auto')`);
  } else {
    const failed = failures(manifest, name);
    if (failed.length) {
      log.warn(`${store.where("")}: variant ${name} failed its last check (${failed.join("; ")}); ` +
               "`toolkit validate` says why");
    }
  }
  const file = typeof variants[name] === "object" && variants[name] ? variants[name].file : null;
  if (!file) throw new ArtifactError(`${where}: variant ${name} names no file; re-run \`toolkit export --force\``);
  return [name, file];
}

async function readManifest(store) {
  const missing = await store.missing();
  if (missing) throw new ArtifactError(missing);
  const manifest = await readJson(store, MANIFEST, "export manifest");
  if (manifest?.format_version !== FORMAT_VERSION) {
    throw new ArtifactError(`${store.where(MANIFEST)}: format_version ${JSON.stringify(manifest?.format_version)} ` +
                            `is not supported (expected ${FORMAT_VERSION}); re-export with this toolkit version`);
  }
  return manifest;
}

async function readJson(store, rel, what) {
  const bytes = await store.read(rel);
  if (bytes === null) throw new ArtifactError(`${store.where(rel)}: ${what} not found`);
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new ArtifactError(`${store.where(rel)}: ${what} is not valid JSON (${e.message}); regenerate it`);
  }
}

function checkLabels(store, manifest) {
  const where = store.where(MANIFEST);
  const { labels, thresholds } = manifest;
  if (!Array.isArray(labels) || labels.length === 0 || !labels.every((x) => typeof x === "string" && x)) {
    throw new ArtifactError(`${where}: 'labels' must be a non-empty list of names; re-run \`toolkit export --force\``);
  }
  const dupes = [...new Set(labels.filter((x, i) => labels.indexOf(x) !== i))].sort();
  if (dupes.length) throw new ArtifactError(`${where}: duplicate labels ${JSON.stringify(dupes)}; re-run \`toolkit export --force\``);
  if (!Array.isArray(thresholds) || thresholds.length !== labels.length) {
    const count = Array.isArray(thresholds) ? thresholds.length : "no";
    throw new ArtifactError(`${where}: ${count} thresholds for ${labels.length} labels; re-run \`toolkit export --force\``);
  }
  const bad = labels.filter((_, i) => typeof thresholds[i] !== "number" || !Number.isFinite(thresholds[i]) ||
                                      thresholds[i] < 0 || thresholds[i] > 1);
  if (bad.length) {
    throw new ArtifactError(`${where}: thresholds of ${JSON.stringify(bad)} are not numbers in [0, 1]; ` +
                            "re-run `toolkit export --force`");
  }
  if ((manifest.activation ?? "sigmoid") !== "sigmoid") {
    throw new ArtifactError(`${where}: activation ${JSON.stringify(manifest.activation)} is not supported ` +
                            "(only 'sigmoid', multi-label); export a multi-label model");
  }
  if (!Number.isInteger(manifest.max_length) || manifest.max_length < 2) {
    throw new ArtifactError(`${where}: max_length ${JSON.stringify(manifest.max_length)} must be an integer >= 2; ` +
                            "re-run `toolkit export --force`");
  }
}

/**
 * `files` match their manifest sha256, and every file the runtime may load has one (runtime._verify_files).
 * A load hashes only what it opens, as the Python runtime: a page would otherwise download every variant.
 */
async function verifyFiles(store, manifest, files) {
  const listed = manifest.files ?? {};
  const needed = [...Object.values(manifest.variants ?? {}).map((e) => e?.file).filter(Boolean), TOKENIZER_JSON];
  for (const rel of needed) {
    if (!(rel in listed)) {
      throw new ArtifactError(`${store.where(MANIFEST)}: ${rel} has no checksum in 'files'; ` +
                              "re-run `toolkit export --force`");
    }
  }
  for (const rel of files) {
    const entry = listed[rel];
    const bytes = await store.read(rel);
    if (bytes === null) {
      throw new ArtifactError(`${store.where(rel)}: file listed in ${MANIFEST} is missing; ` +
                              "re-run `toolkit export --force`");
    }
    const actual = await sha256(bytes);
    if (actual !== entry.sha256) {
      throw new ArtifactError(`${store.where(rel)}: sha256 ${actual.slice(0, 12)}… does not match ${MANIFEST} ` +
                              `(${String(entry.sha256).slice(0, 12)}…); the file is corrupt or was modified, ` +
                              "re-run `toolkit export --force`");
    }
  }
}

async function loadTokenizer(store, maxLength) {
  const where = store.where(TOKENIZER_JSON);
  const bytes = await store.read(TOKENIZER_JSON);
  if (bytes === null) throw new ArtifactError(`${where}: tokenizer not found; re-run \`toolkit export --force\``);
  let json;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new ArtifactError(`${where}: cannot load the tokenizer (${e.message}); re-run \`toolkit export --force\``);
  }
  try {
    return new ModelTokenizer(json, maxLength);
  } catch (e) {
    throw new ArtifactError(`${where}: @huggingface/tokenizers cannot build this tokenizer (${e.message}); ` +
                            "the Python runtime (toolkit.runtime) reads it");
  }
}

/** The pad id: the tokenizer's saved padding, else [PAD] or <pad>, else 0 (masked out: any id gives the same scores). */
function padId(json, tokenizer) {
  if (json.padding && Number.isInteger(json.padding.pad_id)) return json.padding.pad_id;
  for (const token of ["[PAD]", "<pad>"]) {
    const id = tokenizer.token_to_id(token);
    if (id !== undefined) return id;
  }
  return 0;
}

async function openSession(store, ort, file, executionProviders, threads) {
  const bytes = await store.read(file);
  if (bytes === null) throw new ArtifactError(`${store.where(file)}: ONNX model not found; re-run \`toolkit export --force\``);
  const options = { executionProviders, graphOptimizationLevel: "all" };
  if (threads !== null) options.intraOpNumThreads = threads;
  try {
    return await ort.InferenceSession.create(bytes, options);
  } catch (e) {
    throw new ArtifactError(`${store.where(file)}: onnxruntime cannot load the model (${e.message}); ` +
                            "re-run `toolkit export --force`");
  }
}

/** Files are read once: verification and loading share the bytes (a browser would otherwise fetch twice). */
function cachedStore(store) {
  const cache = new Map();
  return {
    where: (rel) => store.where(rel),
    missing: () => store.missing(),
    read(rel) {
      if (!cache.has(rel)) cache.set(rel, store.read(rel));
      return cache.get(rel);
    },
  };
}

function inputTypes(session) {
  const meta = session.inputMetadata ?? [];
  return Object.fromEntries(session.inputNames.map((name) => {
    const entry = meta.find((m) => m.name === name);
    return [name, entry?.isTensor && entry.type === "int32" ? "int32" : "int64"];
  }));
}

function asTexts(texts) {
  if (typeof texts === "string") return [texts];
  if (texts === null || texts === undefined || typeof texts[Symbol.iterator] !== "function" ||
      ArrayBuffer.isView(texts)) {
    throw new TypeError(`texts must be a string or an array of strings, got ${describe(texts)}`);
  }
  const list = Array.from(texts);
  list.forEach((text, i) => {
    if (typeof text !== "string") throw new TypeError(`texts[${i}] is ${describe(text)}, expected string`);
  });
  return list;
}

function checkThreshold(threshold) {
  if (typeof threshold !== "number" || !(threshold >= 0 && threshold <= 1)) {
    throw new ToolkitError(`threshold override must be a number in [0, 1], got ${JSON.stringify(threshold)}`);
  }
  return threshold;
}

/** exp(-log(1 + exp(-x))) in float64, rounded to float32: toolkit.metrics.sigmoid, which never overflows. */
function sigmoid(x) {
  const y = -x;
  const logaddexp = Math.max(0, y) + Math.log1p(Math.exp(-Math.abs(y)));
  return Math.fround(Math.exp(-logaddexp));
}

async function sha256(bytes) {
  if (!globalThis.crypto?.subtle) {
    // browsers expose WebCrypto only to secure contexts: https, or http on localhost/127.0.0.1
    throw new ToolkitError("checking sha256 needs WebCrypto, which this page lacks (served over plain http " +
                           "from another host?); serve it over https, or load with {verify: false}");
  }
  const digest = await globalThis.crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

function providerName(provider) {
  return typeof provider === "string" ? provider : provider?.name;
}

function describe(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value === "object" ? value.constructor?.name ?? "object" : typeof value;
}

function joinPath(base, rel) {
  return base.endsWith("/") ? base + rel : `${base}/${rel}`;
}
