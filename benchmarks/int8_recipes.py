"""int8 recipes side by side, in one run: accuracy on a trained export, speed on a preset shape.

Two modes, both building every recipe from the same unfused fp32 `model.onnx`:

    # accuracy + speed on real text: a trained export (its validation split, fp32 as reference)
    python benchmarks/int8_recipes.py --export exported/goemotions
    # speed at a fixed shape against PyTorch eager (random-weights BERT-base)
    python benchmarks/int8_recipes.py --preset bert-base --batch 32 --seq-len 128

Recipes (toolkit.quantize): per-tensor (onnxruntime's dynamic int8, the old default),
per-token, per-token + smoothing, and, with --export, the export's own model_int8.onnx
(per-token + whatever its gated search added: smoothing, float MatMuls).

Writes JSON to benchmarks/results/ (or --json) with machine, versions and the command.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, default=None, help="a trained export: accuracy mode")
    parser.add_argument("--preset", default="bert-base", choices=["bert-base", "minilm"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="accuracy mode: timed passes over the split per recipe")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    from toolkit import artifacts, bench

    result = _accuracy(args) if args.export else _speed(args)
    result.update(command=" ".join(["python"] + sys.argv), date=artifacts.utc_now(),
                  machine=vars(bench.machine_info()), versions=artifacts.library_versions())
    name = f"int8-recipes-{args.export.name}" if args.export else f"int8-recipes-{args.preset}"
    out = args.json or bench.RESULTS_DIR / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(out, result)
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


def _build_recipes(fp32: Path, work: Path, calibration: list[dict]) -> dict[str, Path]:
    import onnx

    from toolkit import quantize

    head = quantize.logits_head_nodes(onnx.load(str(fp32), load_external_data=False))
    factors = quantize.smoothing_factors(fp32, calibration, head)
    files = {}
    for name, recipe, smooth in (("per-tensor", "per-tensor", None), ("per-token", "per-token", None),
                                 ("per-token + smoothing", "per-token", factors)):
        files[name] = work / (name.replace(" ", "").replace("+", "_") + ".onnx")
        quantize.quantize_int8(fp32, files[name], recipe, head, smooth)
    return files


def _accuracy(args) -> dict:
    """Every recipe on the export's validation split: gates, flips, |Δprob|, size, texts/s."""
    from toolkit import artifacts
    from toolkit.data import align_labels, config_from_spec, load_splits
    from toolkit.modeling import load_export_source
    from toolkit.quantize import SplitGate, encode_batches, score_logits

    manifest = artifacts.read_manifest(args.export)
    loaded = load_export_source(args.export, manifest, "the benchmark needs the tokenizer and validation split")
    splits = load_splits(config_from_spec(manifest["data"]))
    validation = align_labels(splits.validation, list(manifest["labels"]))
    fp32 = args.export / manifest["variants"]["fp32"]["file"]
    names = list(manifest["inputs"])
    feeds = encode_batches(loaded.tokenizer, validation.texts, names, manifest["max_length"], batch_size=32)
    train = [splits.train.texts[i] for i in np.random.default_rng(0).permutation(len(splits.train))[:256]]
    proxy = encode_batches(loaded.tokenizer, train, names, manifest["max_length"])
    gate = SplitGate(fp32, feeds, validation.labels, np.asarray(manifest["thresholds"]), manifest["labels"],
                     __import__("toolkit.config", fromlist=["Gates"]).Gates(), proxy)
    work = Path(tempfile.mkdtemp(prefix="int8-recipes-"))
    files = _build_recipes(fp32, work, [f for _, f in proxy])
    files["export's int8 (search)"] = args.export / manifest["variants"]["int8"]["file"]
    seconds = {name: [] for name in ["fp32", *files]}
    for _ in range(args.rounds):  # interleaved: every recipe once per round
        for name in seconds:
            started = time.perf_counter()
            score_logits(fp32 if name == "fp32" else files[name], feeds, len(validation))
            seconds[name].append(time.perf_counter() - started)
    rows = []
    for name, path in files.items():
        outcome = gate.evaluate(path)
        probs = 1 / (1 + np.exp(-score_logits(path, feeds, len(validation)).astype(np.float64)))
        rows.append({"recipe": name, "passed": outcome.passed, "macro_drop": outcome.macro_drop,
                     "worst_label": outcome.worst_label, "worst_drop": outcome.worst_drop, "flips": outcome.flips,
                     "mean_abs_diff": outcome.mean_abs_diff, "max_abs_diff": float(np.abs(probs - gate.reference).max()),
                     "size_mb": path.stat().st_size / 1e6, "texts_per_s": len(validation) / np.median(seconds[name]),
                     "failures": outcome.failures})
    fp32_rate = len(validation) / np.median(seconds["fp32"])
    print(f"\n{args.export}: {len(validation)} validation texts, batch 32 (length-sorted), "
          f"reference fp32 ONNX ({fp32_rate:.0f} texts/s), interleaved median of {args.rounds}\n")
    print("| recipe | gates | Δmacro-F1 | worst label (ΔF1) | flips | mean \\|Δprob\\| | max \\|Δprob\\| | MB | texts/s |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['recipe']} | {'PASS' if r['passed'] else 'FAIL'} | {-r['macro_drop']:+.4f} | {r['worst_label']} "
              f"({-r['worst_drop']:+.4f}) | {r['flips']} | {r['mean_abs_diff']:.1e} | {r['max_abs_diff']:.2e} | "
              f"{r['size_mb']:.1f} | {r['texts_per_s']:.0f} |")
    search = manifest["variants"]["int8"]["settings"].get("search")
    return {"mode": "accuracy", "export": str(args.export), "n_texts": len(validation), "fp32_texts_per_s": fp32_rate,
            "rows": rows, "export_search": search}


def _speed(args) -> dict:
    """Fixed shape, PyTorch eager vs every recipe, interleaved (toolkit.bench.round_robin)."""
    import torch

    from toolkit import bench, runtime
    from toolkit.bench.scenarios import CACHE_DIR, _build_preset_checkpoint, preset_spec
    from toolkit.config import ExportConfig, Variant
    from toolkit.export import export_model
    from toolkit.modeling import load_classifier

    base = CACHE_DIR / f"int8-recipes-{args.preset}"
    checkpoint, export_dir = base / "checkpoint", base / "export"
    if not (export_dir / "model.onnx").is_file():
        _build_preset_checkpoint(args.preset, checkpoint, preset_spec(args.preset))
        export_model(ExportConfig(checkpoint=checkpoint, out=export_dir, variants=(Variant.FP32,), force=True))
    rng = np.random.default_rng(bench.INPUT_SEED)
    loaded = load_classifier(checkpoint)
    vocab = loaded.model.config.vocab_size
    ids = rng.integers(1000, vocab, size=(args.batch, args.seq_len), dtype=np.int64)
    inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    calibration = [{k: v[:8] for k, v in inputs.items()}]
    files = _build_recipes(export_dir / "model.onnx", Path(tempfile.mkdtemp(prefix="int8-recipes-")), calibration)
    threads = runtime.physical_cores()
    torch.set_num_threads(threads)
    model = loaded.model.eval()
    tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}

    def pytorch():
        with torch.inference_mode():
            model(**tensors)

    steps = {"pytorch-fp32": pytorch}
    for name, path in {"onnx-fp32": export_dir / "model.onnx", **files}.items():
        session = runtime.open_session(path, "cpu", threads)
        feeds = {i.name: inputs[i.name] for i in session.get_inputs()}
        steps[name] = (lambda s=session, f=feeds: s.run(None, f))
    for step in steps.values():
        step()
    times = bench.round_robin([[s] for s in steps.values()], args.iterations)
    stats = {name: bench.timing_stats(t) for name, t in zip(steps, times)}
    base_ms, old_ms = stats["pytorch-fp32"].p50_ms, stats["per-tensor"].p50_ms
    rows = [{"recipe": n, "p50_ms": s.p50_ms, "p90_ms": s.p90_ms, "p99_ms": s.p99_ms,
             "sequences_per_s": args.batch / (s.p50_ms / 1e3), "vs_pytorch": base_ms / s.p50_ms,
             "vs_per_tensor": old_ms / s.p50_ms} for n, s in stats.items()]
    print(f"\n{args.preset}, batch {args.batch}, seq {args.seq_len}, {threads} threads, {args.iterations} "
          "interleaved runs each, medians\n")
    print("| recipe | seq/s | p50 ms | p90 ms | p99 ms | vs PyTorch eager | vs per-tensor int8 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['recipe']} | {r['sequences_per_s']:.1f} | {r['p50_ms']:.0f} | {r['p90_ms']:.0f} | "
              f"{r['p99_ms']:.0f} | {r['vs_pytorch']:.2f}x | {r['vs_per_tensor']:.2f}x |")
    return {"mode": "speed", "preset": args.preset, "batch": args.batch, "seq_len": args.seq_len, "threads": threads,
            "iterations": args.iterations, "rows": rows}


if __name__ == "__main__":
    sys.exit(main())
