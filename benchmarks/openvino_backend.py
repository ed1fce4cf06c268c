"""OpenVINO variants beside onnxruntime's, interleaved in one run, on real text and at fixed shapes.

    python benchmarks/openvino_backend.py --export exported/emotion --texts ../shared/data/goemotions/dev.tsv \
        [--per-tensor exported/emotion-per-tensor] [--checkpoint checkpoints/emotion] [--rounds 5]

Every contender gets the same tokenization (the export's tokenizer.json through toolkit.runtime,
truncation at the export's max_length), the same length-sorted batches of 32, and the same
threads. Per contender:

- real text: texts/s at batch 32 (whole pass, `predict_proba`), p50/p99 per batch of 32, and
  p50/p99 per text at batch 1 (each text alone); rounds interleaved, contender order rotated;
- fixed shapes: p50/p99 of one model run at batch 1 and 32, sequence 128 (random ids);
- accuracy vs onnxruntime fp32 on the same texts: mean/max |Δprob|, decisions flipped at the
  manifest's thresholds;
- batch dependence (toolkit.batch_dependence): each text alone vs in the runtime's batches;
- sizes and export seconds from the manifest.

The peer row is optimum-intel's OVModelForSequenceClassification (what a Hugging Face user would
pick) on the checkpoint, at OpenVINO's defaults, with its own tokenizer call per batch.

Writes JSON (machine, versions, command, `uptime` load before and after) to
benchmarks/results/openvino-<export>.json, or --json.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, required=True)
    parser.add_argument("--texts", type=Path, required=True, help="GoEmotions TSV; the first --n texts are used")
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--batch-one-texts", type=int, default=256, help="texts timed alone per round (batch 1)")
    parser.add_argument("--per-tensor", type=Path, default=None, help="an export made with --int8-recipe per-tensor")
    parser.add_argument("--checkpoint", type=Path, default=None, help="for the optimum-intel peer row")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fixed-iterations", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    from toolkit import artifacts, bench

    load_before = bench.uptime()
    texts = [line.split("\t")[0] for line in args.texts.read_text(encoding="utf-8").splitlines()[: args.n]]
    contenders = _contenders(args)
    result = {"texts": len(texts), "source": str(args.texts), "threads": args.threads, "rounds": args.rounds,
              "contenders": {}}
    timings = {name: {"b32_pass_s": [], "b32_batch_ms": [], "b1_text_ms": []} for name in contenders}
    for r in range(args.rounds):  # interleaved: every contender once per round, order rotated
        names = list(contenders)
        names = names[r % len(names):] + names[: r % len(names)]
        for name in names:
            _time_real_text(contenders[name], texts, args.batch_one_texts, timings[name])
        print(f"round {r + 1}/{args.rounds} done; load {bench.uptime()}", file=sys.stderr)
    reference = contenders["onnxruntime fp32"].predict(texts)
    manifest = artifacts.read_manifest(args.export)
    thresholds = np.asarray(manifest["thresholds"])
    baseline = None
    for name, c in contenders.items():
        row = _summary(timings[name], len(texts))
        probs = c.predict(texts)
        row.update(_accuracy(probs, reference, thresholds))
        row["batch_dependence"] = _batch_dependence(c, texts, probs, manifest)
        row["fixed_shapes"] = c.fixed_shapes(args.fixed_iterations) if c.session is not None else None
        row.update(c.facts)
        result["contenders"][name] = row
        if name == "toolkit int8 (onnxruntime, per-token)":
            baseline = row["texts_per_s_b32"]
    for row in result["contenders"].values():
        row["vs_toolkit_int8"] = row["texts_per_s_b32"] / baseline if baseline else None
    result.update(command=" ".join(["python"] + sys.argv), date=artifacts.utc_now(), load_before=load_before,
                  notes=PEER_NOTES,
                  load_after=bench.uptime(), machine=vars(bench.machine_info()), cpu_flags=_cpu_flags(),
                  versions=artifacts.library_versions(("toolkit", "onnxruntime", "openvino", "nncf", "optimum-intel",
                                                       "optimum", "transformers", "torch", "tokenizers", "numpy")),
                  export_manifest_variants={k: {f: v.get(f) for f in ("file", "bytes", "size_vs_fp32", "export_seconds",
                                                                      "precision", "inference_precision", "status")}
                                            for k, v in manifest["variants"].items()})
    out = args.json or bench.RESULTS_DIR / f"openvino-{args.export.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(out, result)
    _print_table(result)
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- contenders

PEER_NOTES: list[str] = []


class Contender:
    """A way to score texts: predict(texts) in the runtime's batches of 32, predict_one(text), a raw session."""

    def __init__(self, predict, session=None, inputs=None, facts=None):
        self.predict = predict
        self.session = session
        self.inputs = inputs or []
        self.facts = facts or {}

    def fixed_shapes(self, iterations: int) -> dict:
        out = {}
        rng = np.random.default_rng(0)
        for batch in (1, 32):
            feed = {"input_ids": rng.integers(1000, 2000, (batch, 128)).astype(np.int64),
                    "attention_mask": np.ones((batch, 128), np.int64),
                    "token_type_ids": np.zeros((batch, 128), np.int64)}
            feed = {k: v for k, v in feed.items() if k in self.inputs}
            for _ in range(3):
                self.session.run(None, feed)
            times = []
            for _ in range(iterations):
                started = time.perf_counter()
                self.session.run(None, feed)
                times.append((time.perf_counter() - started) * 1e3)
            out[f"b{batch}_s128"] = {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
                                     "samples_per_s": batch * 1e3 / float(np.median(times))}
        return out


def _contenders(args) -> dict:
    from toolkit import artifacts

    manifest = artifacts.read_manifest(args.export)
    variants = manifest["variants"]
    out = {}

    def runtime(export, variant, precision=None):
        clf = _classifier(export, variant, args.threads, precision)
        entry = artifacts.read_manifest(export)["variants"][variant]
        facts = {"file": entry["file"], "bytes": entry["bytes"], "export_seconds": entry.get("export_seconds"),
                 "inference_precision": precision or entry.get("inference_precision")}
        return Contender(clf.predict_proba, clf.session, [i.name for i in clf.session.get_inputs()], facts)

    out["onnxruntime fp32"] = runtime(args.export, "fp32")
    out["toolkit int8 (onnxruntime, per-token)"] = runtime(args.export, "int8")
    if args.per_tensor is not None:
        out["onnxruntime int8 per-tensor (stock)"] = runtime(args.per_tensor, "int8")
    if "ov_int8" in variants:
        out["ov_int8 (NNCF, f32 precision)"] = runtime(args.export, "ov_int8")
        out["ov_int8 at bf16 precision"] = runtime(args.export, "ov_int8", "bf16")
    if "ov_bf16" in variants:
        out["ov_bf16 (fp32 IR, bf16 precision)"] = runtime(args.export, "ov_bf16")
    try:
        peer = _peer(args)
    except Exception as e:  # a benchmark row, not a product path: record why it is missing and go on
        print(f"peer row skipped: {type(e).__name__}: {e}", file=sys.stderr)
        PEER_NOTES.append(f"peer row skipped: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        peer = None
    if peer is not None:
        out["peer: optimum-intel OVModelForSequenceClassification"] = peer
    return out


def _classifier(export: Path, variant: str, threads: int, precision=None):
    """The runtime's classifier over the variant's session; OpenVINO variants open through the adapter
    (at their own precision, or `precision`) into the runtime's EmotionClassifier."""
    from toolkit import artifacts
    from toolkit.runtime import EmotionClassifier

    manifest = artifacts.read_manifest(export)
    entry = manifest["variants"][variant]
    if entry.get("backend") != "openvino":
        return EmotionClassifier.load(export, variant=variant, provider="cpu", threads=threads)
    from toolkit.openvino_session import open_openvino
    from toolkit.runtime import _load_tokenizer

    session = open_openvino(export / entry["file"], threads=threads, precision=precision or entry["inference_precision"])
    tokenizer, pad = _load_tokenizer(export, int(manifest["max_length"]))
    clf = EmotionClassifier(export, manifest, variant, session, tokenizer, pad, 32)
    clf._check_graph()
    return clf


def _peer(args):
    """optimum-intel on the checkpoint (export=True), OpenVINO's default precision, HF tokenizer per batch."""
    if args.checkpoint is None:
        return None
    try:
        from optimum.intel import OVModelForSequenceClassification
        from transformers import AutoTokenizer
    except ImportError as e:
        print(f"peer row skipped: {e}", file=sys.stderr)
        return None
    from toolkit import artifacts
    from toolkit.metrics import sigmoid

    started = time.perf_counter()
    model = OVModelForSequenceClassification.from_pretrained(str(args.checkpoint), export=True, compile=False,
                                                             ov_config={"INFERENCE_NUM_THREADS": str(args.threads),
                                                                        "PERFORMANCE_HINT": "LATENCY"})
    model.compile()
    export_seconds = time.perf_counter() - started
    tokenizer = AutoTokenizer.from_pretrained(str(args.export))
    max_length = int(artifacts.read_manifest(args.export)["max_length"])

    def predict(texts):
        texts = list(texts)
        lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
        order = np.argsort(lengths, kind="stable")
        probs = np.zeros((len(texts), model.config.num_labels), np.float32)
        for start in range(0, len(order), 32):
            index = order[start:start + 32]
            enc = tokenizer([texts[i] for i in index], truncation=True, max_length=max_length, padding=True,
                            return_tensors="np")
            probs[index] = sigmoid(np.asarray(model(**enc).logits))
        return probs

    return Contender(predict, None, [], {"export_seconds": export_seconds, "loaded_from": str(args.checkpoint),
                                         "inference_precision": "OpenVINO default",
                                         "ov_config": {"INFERENCE_NUM_THREADS": args.threads,
                                                       "PERFORMANCE_HINT": "LATENCY"}})


# ---------------------------------------------------------------------------- measurements


def _time_real_text(c: Contender, texts, n_alone: int, into: dict) -> None:
    started = time.perf_counter()
    c.predict(texts)
    into["b32_pass_s"].append(time.perf_counter() - started)
    # per-batch latency of the runtime's own batches: time each length-sorted chunk of 32 alone
    for start in range(0, min(len(texts), 256), 32):
        chunk = texts[start:start + 32]
        t0 = time.perf_counter()
        c.predict(chunk)
        into["b32_batch_ms"].append((time.perf_counter() - t0) * 1e3)
    for text in texts[:n_alone]:
        t0 = time.perf_counter()
        c.predict([text])
        into["b1_text_ms"].append((time.perf_counter() - t0) * 1e3)


def _summary(t: dict, n: int) -> dict:
    passes = np.asarray(t["b32_pass_s"])
    return {"texts_per_s_b32": float(n / np.median(passes)),
            "pass_s_median": float(np.median(passes)), "pass_s_all": [float(x) for x in passes],
            "b32_p50_ms": float(np.percentile(t["b32_batch_ms"], 50)), "b32_p99_ms": float(np.percentile(t["b32_batch_ms"], 99)),
            "b1_p50_ms": float(np.percentile(t["b1_text_ms"], 50)), "b1_p99_ms": float(np.percentile(t["b1_text_ms"], 99)),
            "texts_per_s_b1": float(1e3 / np.median(t["b1_text_ms"]))}


def _accuracy(probs, reference, thresholds) -> dict:
    diff = np.abs(probs.astype(np.float64) - reference)
    flips = int(((probs >= thresholds) != (reference >= thresholds)).sum())
    return {"mean_abs_diff_vs_fp32": float(diff.mean()), "max_abs_diff_vs_fp32": float(diff.max()),
            "flips_vs_fp32": flips, "decisions": int(diff.size)}


def _batch_dependence(c: Contender, texts, batched, manifest) -> dict:
    from toolkit.batch_dependence import measure_batch_dependence

    result = measure_batch_dependence(c.predict, texts, manifest["thresholds"], manifest["labels"], "", 32, batched)
    return result.to_dict()


def _print_table(result: dict) -> None:
    rows = [("contender", "texts/s b32", "vs int8", "b32 p50/p99 ms", "b1 p50/p99 ms", "mean/max |Δ| vs fp32", "flips",
             "batch dep. max|Δ|, flips")]
    for name, r in result["contenders"].items():
        bd = r["batch_dependence"]
        rows.append((name, f"{r['texts_per_s_b32']:.0f}", f"{r['vs_toolkit_int8']:.2f}x",
                     f"{r['b32_p50_ms']:.1f}/{r['b32_p99_ms']:.1f}", f"{r['b1_p50_ms']:.2f}/{r['b1_p99_ms']:.2f}",
                     f"{r['mean_abs_diff_vs_fp32']:.1e}/{r['max_abs_diff_vs_fp32']:.1e}", str(r["flips_vs_fp32"]),
                     f"{bd['max_abs_diff']:.1e}, {bd['flips']}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))


def _cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in flags if any(k in f for k in ("vnni", "amx", "bf16", "avx512f")))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
