"""How often does the int8 search's pick pass on texts it did not select on?

`toolkit export` gates its int8 search on the search half of the validation split and `toolkit
validate` certifies on the other half (toolkit.data.split_search_certify). This script repeats
that for many halvings of one labelled set: split k puts a text in the certify half by
sha256(f"{k}:{text}") (k = 0 is the product's own split, sha256(text)), runs the export's search
(`toolkit.export.int8.search_int8`, the same steps, gates and order) against the search half,
then scores the chosen candidate on the certify half with the same gates (`toolkit.parity.compare`).

The reference is the unfused fp32 ONNX graph, as in export's gate. Each candidate graph is built
and scored on every text once and cached, so the search of split k costs only numpy; the search
budget is unbounded here so that machine load cannot change which candidate is picked.

    python benchmarks/int8_certify.py --checkpoint CKPT --data ../shared/data/goemotions/dev.tsv \
        --train ../shared/data/goemotions/train.tsv --splits 20 --json benchmarks/results/int8-certify.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("int8_certify")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="Labelled texts to halve (e.g. GoEmotions dev).")
    parser.add_argument("--train", type=Path, required=True, help="Training texts for the sensitivity proxy.")
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--max-float", type=int, default=8)
    parser.add_argument("--work", type=Path, default=Path("/tmp/int8_certify"))
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    started = time.time()
    load_before = os.getloadavg()

    import onnx

    from toolkit import artifacts, bench
    from toolkit.config import ExportConfig, Gates, Variant
    from toolkit.data import align_labels, read_dataset
    from toolkit.export import export_model
    from toolkit.export.int8 import (encode_batches, graph_inputs, logits_head_nodes, quantizable_matmuls,
                                     quantize_int8, score_logits, search_int8, smoothing_factors)
    from toolkit.export.int8.search import GateOutcome
    from toolkit.metrics import compute_metrics, sigmoid
    from toolkit.modeling import load_classifier
    from toolkit.parity import compare

    args.work.mkdir(parents=True, exist_ok=True)
    export_dir = args.work / "export"
    fp32 = export_dir / artifacts.variant_file(Variant.FP32)  # the unfused graph export quantizes
    if not fp32.is_file():
        export_model(ExportConfig(checkpoint=args.checkpoint, out=export_dir, variants=(Variant.FP32,), force=True))
    loaded = load_classifier(args.checkpoint)
    labels = list(loaded.label_names)
    data = align_labels(read_dataset(args.data), labels)
    thresholds = np.asarray(loaded.thresholds, dtype=np.float64)
    names = graph_inputs(fp32)
    max_length = int(loaded.max_length)
    feeds = encode_batches(loaded.tokenizer, data.texts, names, max_length)
    train_texts = read_dataset(args.train).texts
    rng = np.random.default_rng(0)
    proxy_texts = [train_texts[i] for i in rng.permutation(len(train_texts))[:256]]  # export's calibration_texts
    proxy = encode_batches(loaded.tokenizer, proxy_texts, names, max_length)
    reference = sigmoid(score_logits(fp32, feeds, len(data)))
    proxy_reference = score_logits(fp32, proxy, len(proxy_texts))
    head = logits_head_nodes(onnx.load(str(fp32), load_external_data=False))
    factors = smoothing_factors(fp32, [feed for _, feed in proxy], head)
    candidates = quantizable_matmuls(fp32, head)
    log.info("%d texts, %d labels, %d candidate MatMuls", len(data), len(labels), len(candidates))

    cache: dict[tuple, dict] = {}  # (smooth, floats) -> {"path", "probs", "proxy"}

    def build(smooth: bool, floats: tuple[str, ...]) -> Path:
        key = (smooth, tuple(floats))
        if key not in cache:
            path = args.work / f"cand_{hashlib.sha256(repr(key).encode()).hexdigest()[:12]}.onnx"
            quantize_int8(fp32, path, "per-token", [*head, *floats], factors if smooth else None)
            cache[key] = {"path": path, "probs": None, "proxy": None}
            log.info("built candidate %d: smoothing %s, %d float MatMul(s)", len(cache), smooth, len(floats))
        return cache[key]["path"]

    def entry(path: Path) -> dict:
        return next(e for e in cache.values() if e["path"] == path)

    def probs_of(path: Path) -> np.ndarray:
        e = entry(path)
        if e["probs"] is None:
            e["probs"] = sigmoid(score_logits(path, feeds, len(data)))
        return e["probs"]

    def proxy_error(path: Path) -> float:
        e = entry(path)
        if e["proxy"] is None:
            e["proxy"] = float(np.abs(score_logits(path, proxy, len(proxy_texts)) - proxy_reference).mean())
        return e["proxy"]

    gates = Gates()

    def judge(index: np.ndarray, probs: np.ndarray):
        ref_metrics = compute_metrics(data.labels[index], reference[index], thresholds, labels)
        return compare(Variant.INT8, data.labels[index], reference[index], thresholds, ref_metrics, probs[index],
                       thresholds, labels, gates)

    runs = []
    for k in range(args.splits):
        salt = "" if k == 0 else f"{k}:"
        certify = np.asarray([hashlib.sha256((salt + t).encode("utf-8")).digest()[0] & 1 == 1 for t in data.texts])
        search_index, certify_index = np.flatnonzero(~certify), np.flatnonzero(certify)
        def gate_on_search_half(path):
            return GateOutcome.from_comparison(judge(search_index, probs_of(path)))

        search = search_int8(build, gate_on_search_half, proxy_error, candidates, budget_s=1e9,
                             max_float=args.max_float)
        chosen = build(search.smoothing, search.float_nodes)
        on_certify = judge(certify_index, probs_of(chosen))
        run = {"split": k, "search_texts": int(len(search_index)), "certify_texts": int(len(certify_index)),
               "steps": [t["step"] for t in search.trace], "smoothing": search.smoothing,
               "float_nodes": len(search.float_nodes), "search_passed": bool(search.passed),
               "search_macro_drop": search.outcome.macro_drop, "search_failures": search.outcome.failures,
               "certify_passed": all(c.passed for c in on_certify.checks),
               "certify_macro_drop": on_certify.gated_macro_drop,
               "certify_failures": [c.describe() for c in on_certify.checks if not c.passed],
               "certify_not_enough_evidence": list(on_certify.insufficient),
               "search_not_enough_evidence": len(judge(search_index, probs_of(chosen)).insufficient)}
        runs.append(run)
        log.info("split %d: search %s after %s; certify %s %s", k, "PASS" if run["search_passed"] else "FAIL",
                 run["steps"][-1], "PASS" if run["certify_passed"] else "FAIL", "; ".join(run["certify_failures"]))

    picked = [r for r in runs if r["search_passed"]]
    summary = {"splits": len(runs), "search_passed": len(picked),
               "certify_passed_given_search_passed": sum(r["certify_passed"] for r in picked),
               "rate": (sum(r["certify_passed"] for r in picked) / len(picked)) if picked else None,
               "candidates_built": len(cache)}
    result = {
        "summary": summary, "runs": runs,
        "command": " ".join([sys.executable.split("/")[-1]] + sys.argv),
        "checkpoint": str(args.checkpoint), "data": str(args.data), "gates": {"max_drop_macro": gates.max_drop_macro,
                                                                             "max_drop_label": gates.max_drop_label},
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "uptime_before": load_before, "uptime_after": os.getloadavg(),
                    "uptime": bench.uptime()},
        "versions": artifacts.library_versions(), "seconds": round(time.time() - started, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=float) + "\n", encoding="utf-8")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
