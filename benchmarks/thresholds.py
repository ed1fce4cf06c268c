"""Per-label threshold rules on real dev probabilities: does the few-positive rule cost macro-F1?

Input: a checkpoint's per-text dev scores (`toolkit evaluate --predictions`) and the labelled dev
file. For each rule of `toolkit.metrics.threshold_rules` (plain per-label tuning, `bagged` and
`shrunk` below `min_positives` validation positives) it reports:

- cross-fitted macro/micro-F1 on the whole dev split (5 folds, as training reports it), and
- the honest small-validation case: thresholds tuned on a random 886-text subset (SemEval-2018
  E-c's validation size, where rare labels have a handful of positives) and scored on the other
  dev texts, over --repeats subsets.

    python benchmarks/thresholds.py --predictions dev_preds.jsonl --data ../shared/data/goemotions/dev.tsv \
        --json benchmarks/results/thresholds-goemotions-minilm.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

RULES = [("plain", 1, "bagged"), ("bagged<10", 10, "bagged"), ("bagged<30", 30, "bagged"), ("bagged<50", 50, "bagged"),
         ("shrunk<30", 30, "shrunk")]
SEMEVAL_VALIDATION = 886  # SemEval-2018 E-c English validation texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    started = time.time()

    from toolkit import bench
    from toolkit.data import read_dataset
    from toolkit.metrics import compute_metrics, cross_fitted_metrics, threshold_rules

    data = read_dataset(args.data)
    labels = data.label_names
    rows = [json.loads(line) for line in args.predictions.read_text(encoding="utf-8").splitlines() if line.strip()]
    if [r["text"] for r in rows] != data.texts:
        sys.exit(f"{args.predictions}: its texts are not {args.data}'s, in order")
    probs = np.asarray([[r["scores"][name] for name in labels] for r in rows], dtype=np.float64)
    y = data.labels.astype(np.int64)

    crossfit = {}
    for name, min_pos, rule in RULES:
        m = cross_fitted_metrics(y, probs, labels, min_positives=min_pos, few_positive_rule=rule)
        crossfit[name] = {"macro_f1": m.macro_f1, "micro_f1": m.micro_f1, "jaccard_samples": m.jaccard_samples}
        print(f"cross-fitted on dev ({len(y)} texts) {name:10s} macro-F1 {m.macro_f1:.4f} micro-F1 {m.micro_f1:.4f}")

    # paired over fold seeds: the rule's effect against the cross-fitting's own fold noise
    paired = {name: [] for name, _, _ in RULES}
    for seed in range(8):
        for name, min_pos, rule in RULES:
            paired[name].append(cross_fitted_metrics(y, probs, labels, seed=seed, min_positives=min_pos,
                                                     few_positive_rule=rule).macro_f1)
    for name in paired:
        delta = np.subtract(paired[name], paired["plain"])
        crossfit[name].update(fold_seeds_macro_f1=paired[name], paired_delta_vs_plain_mean=float(delta.mean()),
                              paired_delta_vs_plain_std=float(delta.std()))
        print(f"cross-fitted, 8 fold seeds      {name:10s} macro-F1 {np.mean(paired[name]):.4f} "
              f"(range {min(paired[name]):.4f}-{max(paired[name]):.4f}), Δ vs plain {delta.mean():+.4f} ± {delta.std():.4f}")

    rng = np.random.default_rng(0)
    small = {name: {"macro_f1": [], "rare_macro_f1": [], "rules": []} for name, _, _ in RULES}
    rare = y.sum(0) < np.quantile(y.sum(0), 0.25)  # the quarter of labels with fewest dev positives
    for _ in range(args.repeats):
        order = rng.permutation(len(y))
        tune, held = order[:SEMEVAL_VALIDATION], order[SEMEVAL_VALIDATION:]
        for name, min_pos, rule in RULES:
            thresholds, rules = threshold_rules(y[tune], probs[tune], min_positives=min_pos, few_positive_rule=rule)
            m = compute_metrics(y[held], probs[held], thresholds, labels)
            small[name]["macro_f1"].append(m.macro_f1)
            small[name]["rare_macro_f1"].append(float(np.mean([p.f1 for p, r in zip(m.per_label, rare) if r])))
            small[name]["rules"].append(sum(r["rule"] != "tuned" for r in rules))
    summary = {name: {"macro_f1_mean": float(np.mean(v["macro_f1"])), "macro_f1_std": float(np.std(v["macro_f1"])),
                      "rare_labels_macro_f1_mean": float(np.mean(v["rare_macro_f1"])),
                      "labels_not_plainly_tuned_mean": float(np.mean(v["rules"])),
                      "paired_delta_vs_plain_mean": float(np.mean(np.subtract(v["macro_f1"], small["plain"]["macro_f1"]))),
                      "paired_delta_vs_plain_min": float(np.min(np.subtract(v["macro_f1"], small["plain"]["macro_f1"])))}
               for name, v in small.items()}
    for name, s in summary.items():
        print(f"tuned on {SEMEVAL_VALIDATION}, scored on {len(y) - SEMEVAL_VALIDATION} ({args.repeats} draws) "
              f"{name:10s} macro-F1 {s['macro_f1_mean']:.4f} ± {s['macro_f1_std']:.4f}  rare-label F1 "
              f"{s['rare_labels_macro_f1_mean']:.4f}  Δ vs plain {s['paired_delta_vs_plain_mean']:+.4f} "
              f"(worst draw {s['paired_delta_vs_plain_min']:+.4f})")
    result = {"crossfit_on_dev": crossfit, "small_validation": summary,
              "rare_labels": [n for n, r in zip(labels, rare) if r],
              "dev_positives": {n: int(c) for n, c in zip(labels, y.sum(0))},
              "command": " ".join(["python"] + sys.argv), "predictions": str(args.predictions),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                          "uptime": bench.uptime()},
              "seconds": round(time.time() - started, 1), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
