"""`toolkit evaluate`: a checkpoint's metrics on labelled texts, at its stored thresholds and at 0.5.

Loads the checkpoint (toolkit.modeling), reads the texts and labels (toolkit.data), scores them
with PyTorch and computes the metrics (toolkit.metrics); cli -> evaluate -> modeling/data/metrics.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from toolkit.config import DataConfig
from toolkit.data import fingerprint, load_eval_data
from toolkit.metrics import CROSS_FIT_FOLDS, DEFAULT_THRESHOLD, MetricReport, compute_metrics, cross_fitted_metrics
from toolkit.modeling import load_classifier, pick_device, predict_proba
from toolkit.runtime import Truncation, count_truncated


@dataclass
class EvaluateResult:
    checkpoint: Path
    data: str
    metrics_tuned: MetricReport  # at the checkpoint's stored thresholds
    metrics_default: MetricReport  # at 0.5
    # Set only when the data is the validation split the thresholds were tuned on.
    metrics_crossfit: Optional[MetricReport] = None
    thresholds_note: str = ""  # where the stored thresholds come from, relative to this data
    ids: Optional[list[str]] = None
    texts: list[str] = field(default_factory=list)
    probs: Optional[np.ndarray] = None
    fingerprint: dict = field(default_factory=dict)  # of the texts scored (data.fingerprint)
    extra: dict = field(default_factory=dict)
    truncation: Optional[Truncation] = None  # texts longer than the checkpoint's max_length


def evaluate(checkpoint: Path, data: Optional[DataConfig] = None, split: str = "dev",
             batch_size: int = 64) -> EvaluateResult:
    """Metrics of a checkpoint at its stored thresholds and at 0.5.

    On the validation split the thresholds were tuned on (the default), also the cross-fitted
    tuned metrics, because the stored-threshold numbers are in-sample there. On any other data
    the stored thresholds are used unchanged and `thresholds_note` says so.

    Args:
        data: a dataset file (all rows) or split directory (`split` of it); None: the validation
            split recorded at training time, refused if the data changed since (data.load_recorded_split).
    """
    loaded = load_classifier(checkpoint)
    dataset, where = load_eval_data(data, split, loaded.meta.get("data"), loaded.label_names)
    probs = predict_proba(loaded, dataset.texts, batch_size=batch_size, device=pick_device("auto"))
    in_sample = _is_recorded_validation(data, split, loaded.meta.get("data"))
    objective = (loaded.meta.get("train_args") or {}).get("threshold_objective", "macro")
    result = EvaluateResult(
        checkpoint=Path(checkpoint), data=where,
        metrics_tuned=compute_metrics(dataset.labels, probs, loaded.thresholds, loaded.label_names),
        metrics_default=compute_metrics(dataset.labels, probs, DEFAULT_THRESHOLD, loaded.label_names),
        ids=dataset.ids, texts=dataset.texts, probs=probs, fingerprint=fingerprint(dataset),
        truncation=count_truncated(loaded.tokenizer, dataset.texts, loaded.max_length),
    )
    if in_sample and loaded.meta.get("thresholds"):
        result.thresholds_note = f"stored thresholds were tuned ({objective} objective) on these very texts: in-sample"
        if len(dataset) >= 2 * CROSS_FIT_FOLDS:
            result.metrics_crossfit = cross_fitted_metrics(dataset.labels, probs, loaded.label_names, objective)
            result.thresholds_note += f"; the cross-fitted column ({CROSS_FIT_FOLDS} folds) is the honest one"
    elif loaded.meta.get("thresholds"):
        result.thresholds_note = "stored thresholds, tuned at training on its validation split, used unchanged"
    else:
        result.thresholds_note = "the checkpoint stores no thresholds: 0.5 for every label"
    return result


def write_predictions(result: EvaluateResult, path: Path) -> None:
    """Per-text JSON lines: id (when the data has an id column), text, scores, labels at stored thresholds."""
    thresholds = [m.threshold for m in result.metrics_tuned.per_label]
    names = [m.label for m in result.metrics_tuned.per_label]
    lines = []
    for i, (text, row) in enumerate(zip(result.texts, result.probs)):
        record = {"id": result.ids[i]} if result.ids else {}
        record.update(text=text, labels=[n for n, p, t in zip(names, row, thresholds) if p >= t],
                      scores={n: round(float(p), 6) for n, p in zip(names, row)})
        lines.append(json.dumps(record, ensure_ascii=False))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------- helpers


def _is_recorded_validation(data: Optional[DataConfig], split: str, spec: Optional[dict]) -> bool:
    """Whether `data`/`split` is the validation split the checkpoint's thresholds were tuned on."""
    if data is None or data.path is None:
        return bool(spec)
    if not spec or spec.get("split") != "dataset":
        return False  # a random split's validation texts are only reachable through the recorded spec
    path = str(Path(data.path).resolve())
    return path == spec.get("validation_file") or (path == spec.get("path") and split in ("dev", "validation", "val"))
