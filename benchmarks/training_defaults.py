"""Which learning rate should the `minilm` preset default to? A fixed-budget sweep on GoEmotions.

Each run fine-tunes the preset with `toolkit.train.train` (the code users run: AdamW, linear warmup
then decay, --precision auto) on the same first N training texts for the same number of epochs,
changing only the learning rate, and scores the whole dev split:

    nice -n 10 python benchmarks/training_defaults.py --data ../shared/data/goemotions \
        --train-samples 8000 --epochs 1 --lrs 1.5e-4,3e-4,1e-4,2e-4,5e-5 --threads 1

The runs are ranked by dev macro-F1 with cross-fitted thresholds (5 folds: tuned on four,
scored on the fifth; metrics.cross_fitted_metrics), the number a user can expect on new data.
A short fixed budget favours large steps (the schedule decays to 0 within it), so the table
ranks learning rates for a short run; the epoch count comes from full runs (benchmarks/training.md).

Writes a JSON file after every run (partial results survive an interruption) and prints a
Markdown table. Checkpoints go to a scratch directory and are deleted after scoring.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/goemotions"))
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--train-samples", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=0.1)
    parser.add_argument("--lrs", default="1.5e-4,3e-4,1e-4,2e-4,5e-5")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/toolkit-training-sweep"))
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "training_defaults.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    import torch

    from toolkit.artifacts import library_versions

    if args.threads:
        torch.set_num_threads(args.threads)
    record = {"command": " ".join(["python", "benchmarks/training_defaults.py"] + (argv or sys.argv[1:])),
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": _machine(torch),
              "versions": library_versions(), "settings": {k: str(v) for k, v in vars(args).items()}, "runs": []}
    for lr in (float(x) for x in args.lrs.split(",")):
        record["runs"].append(_run(args, lr))
        args.json.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(markdown_table(record["runs"]))
    return 0


def _run(args, lr: float) -> dict:
    from toolkit.config import DataConfig, TrainConfig
    from toolkit.train import train

    out = args.scratch / f"lr-{lr:g}"
    cfg = TrainConfig(data=DataConfig(path=args.data), model=args.model, out=out, epochs=args.epochs, lr=lr,
                      warmup_ratio=args.warmup, max_train_samples=args.train_samples, precision="auto",
                      patience=args.epochs + 1, force=True)
    started = time.perf_counter()
    result = train(cfg)
    seconds = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    row = {"lr": lr, "epochs": args.epochs, "warmup": args.warmup, "train_texts": result.train_size,
           "dev_texts": result.val_size, "seconds": round(seconds, 1),
           "train_loss": result.history[-1].train_loss, "val_loss": result.history[-1].val_loss,
           "micro_f1_at_0.5": result.metrics_default.micro_f1, "macro_f1_at_0.5": result.metrics_default.macro_f1,
           "macro_f1_tuned_in_sample": result.metrics_tuned.macro_f1,
           "macro_f1_tuned_crossfit": result.metrics_crossfit.macro_f1,
           "micro_f1_tuned_crossfit": result.metrics_crossfit.micro_f1,
           "roc_auc_macro": result.metrics_default.roc_auc_macro}
    logging.getLogger("sweep").info("lr %g: %s", lr, json.dumps(row))
    return row


def markdown_table(runs: list[dict]) -> str:
    """One row per learning rate, sorted by lr; the best cross-fitted macro-F1 in bold."""
    best = max(r["macro_f1_tuned_crossfit"] for r in runs)
    lines = ["| lr | train loss | dev loss | micro-F1 @0.5 | macro-F1 @0.5 | macro-F1 tuned in-sample | "
             "macro-F1 tuned cross-fitted | micro-F1 tuned cross-fitted | ROC-AUC macro | seconds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: r["lr"]):
        cf = f"{r['macro_f1_tuned_crossfit']:.3f}"
        lines.append(f"| {r['lr']:g} | {r['train_loss']:.4f} | {r['val_loss']:.4f} | {r['micro_f1_at_0.5']:.3f} | "
                     f"{r['macro_f1_at_0.5']:.3f} | {r['macro_f1_tuned_in_sample']:.3f} | "
                     f"{'**' + cf + '**' if r['macro_f1_tuned_crossfit'] == best else cf} | "
                     f"{r['micro_f1_tuned_crossfit']:.3f} | {r['roc_auc_macro']:.3f} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def _machine(torch) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "platform": platform.platform(),
            "bf16_kernels": bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()),
            "load_average_at_start": os.getloadavg()}


if __name__ == "__main__":
    sys.exit(main())
