/**
 * The page: loads ./model/ with the toolkit's browser runtime on onnxruntime-web and shows every label's
 * score (bar), its threshold (tick) and the decision (blue) as the user types. Nothing leaves the device.
 *
 * web.json (written by `toolkit web`) names the onnxruntime-web builds shipped; WebGPU is used when
 * it was shipped and the browser offers an adapter, else WASM. ?threads=N sets the WASM threads (more
 * than 1 needs a cross-origin-isolated page: the host must send COOP/COEP headers, see _headers).
 */
import { EmotionClassifier } from "./lib/browser.js";

const params = new URLSearchParams(location.search);
const text = document.getElementById("text");
const status = document.getElementById("status");
const result = document.getElementById("result");
const decided = document.getElementById("labels");
const DEBOUNCE_MS = 120;  // one model run per pause in typing, not per key

async function start() {
  const web = await (await fetch("./web.json")).json();
  const gpu = web.ort.webgpu && navigator.gpu && await navigator.gpu.requestAdapter().catch(() => null);
  const ort = await import(new URL(gpu ? web.ort.webgpu : web.ort.wasm, location.href).href);
  ort.env.wasm.wasmPaths = new URL("./vendor/", location.href).href;
  const threads = Number(params.get("threads")) ||
    (globalThis.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1);
  ort.env.wasm.numThreads = threads;
  const started = performance.now();
  const classifier = await EmotionClassifier.load("./model/", {
    ort, executionProviders: gpu ? ["webgpu", "wasm"] : ["wasm"], variant: params.get("variant") || "auto",
  });
  const where = gpu ? "WebGPU" : `WASM, ${threads} thread${threads > 1 ? "s" : ""}`;
  const loaded = `${classifier.variant} on ${where}, loaded in ${((performance.now() - started) / 1000).toFixed(1)} s`;
  window.toolkit = { classifier, ort, threads, where };  // for tests and benchmarks/web_runtime.py
  buildRows(classifier);
  status.textContent = loaded;
  text.disabled = false;
  text.focus();
  let timer = null;
  let latest = 0;
  text.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const request = ++latest;
      const t0 = performance.now();
      const [prediction] = await classifier.predict(text.value);
      if (request !== latest) return;  // a newer text is already being scored
      render(classifier, prediction);
      status.textContent = `${loaded}; scored in ${(performance.now() - t0).toFixed(1)} ms`;
    }, DEBOUNCE_MS);
  });
  if (params.get("text")) {
    text.value = params.get("text");
    text.dispatchEvent(new Event("input"));
  }
}

function buildRows(classifier) {
  classifier.labels.forEach((label, i) => {
    const row = document.createElement("div");
    row.className = "row";
    row.dataset.label = label;
    row.innerHTML = '<span class="name"></span><span class="bar"><span class="fill"></span><span class="cut"></span></span>' +
                    '<span class="value"></span>';
    row.querySelector(".name").textContent = label;
    row.querySelector(".cut").style.left = `${(classifier.thresholds[i] * 100).toFixed(2)}%`;
    row.querySelector(".cut").title = `threshold ${classifier.thresholds[i].toFixed(3)}`;
    result.appendChild(row);
  });
}

function render(classifier, prediction) {
  for (const row of result.querySelectorAll(".row")) {
    const score = prediction.scores[row.dataset.label];
    const on = prediction.labels.includes(row.dataset.label);
    row.dataset.score = String(score);  // full precision, for tests
    row.classList.toggle("on", on);
    row.querySelector(".fill").style.width = `${(score * 100).toFixed(2)}%`;
    row.querySelector(".value").textContent = score.toFixed(3);
  }
  decided.textContent = prediction.labels.length ? prediction.labels.join(", ") : "no label above its threshold";
  result.dataset.text = prediction.text;
}

start().catch((e) => {
  status.textContent = `error: ${e.message}`;
  status.className = "error";
  console.error(e);
});
