"""Multi-label metrics and per-label threshold tuning (numpy + scikit-learn)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

DEFAULT_THRESHOLD = 0.5  # sigmoid midpoint: the untuned decision rule


@dataclass
class LabelMetrics:
    label: str
    support: int
    precision: float
    recall: float
    f1: float
    threshold: float


@dataclass
class MetricReport:
    """Numbers for one set of probabilities at one set of thresholds."""

    micro_f1: float
    macro_f1: float
    micro_precision: float
    micro_recall: float
    macro_precision: float
    macro_recall: float
    exact_match: float
    roc_auc_micro: float | None
    roc_auc_macro: float | None
    n_samples: int
    per_label: list[LabelMetrics] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def label_f1(self) -> dict[str, float]:
        return {m.label: m.f1 for m in self.per_label}


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, thresholds, label_names: list[str]) -> MetricReport:
    """Micro/macro F1, precision, recall, exact match, ROC-AUC and per-label numbers.

    Args:
        y_true: (n, L) 0/1 matrix.
        probs: (n, L) sigmoid probabilities.
        thresholds: a float or L floats; a label is predicted when prob >= threshold.
        label_names: L names, in column order.
    """
    from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

    y_true = np.asarray(y_true).astype(np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if y_true.shape != probs.shape or y_true.ndim != 2 or y_true.shape[1] != len(label_names):
        raise ValueError(f"shape mismatch: y_true {y_true.shape}, probs {probs.shape}, {len(label_names)} labels")
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (y_true.shape[1],))
    y_pred = (probs >= thr).astype(np.int64)

    kw = dict(zero_division=0)
    mi = precision_recall_fscore_support(y_true, y_pred, average="micro", **kw)
    ma = precision_recall_fscore_support(y_true, y_pred, average="macro", **kw)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, average=None, **kw)
    per_label = [
        LabelMetrics(name, int(s[i]), float(p[i]), float(r[i]), float(f[i]), float(thr[i]))
        for i, name in enumerate(label_names)
    ]
    # ROC-AUC is undefined for a label with one class only: score the labels that have both.
    both = (y_true.sum(0) > 0) & (y_true.sum(0) < len(y_true))
    auc_micro = auc_macro = None
    if both.any():
        auc_micro = float(roc_auc_score(y_true[:, both], probs[:, both], average="micro"))
        auc_macro = float(roc_auc_score(y_true[:, both], probs[:, both], average="macro"))
    return MetricReport(
        micro_f1=float(mi[2]), macro_f1=float(ma[2]),
        micro_precision=float(mi[0]), micro_recall=float(mi[1]),
        macro_precision=float(ma[0]), macro_recall=float(ma[1]),
        exact_match=float((y_pred == y_true).all(axis=1).mean()) if len(y_true) else 0.0,
        roc_auc_micro=auc_micro, roc_auc_macro=auc_macro,
        n_samples=int(len(y_true)), per_label=per_label,
    )


def tune_thresholds(y_true: np.ndarray, probs: np.ndarray, default: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Per-label threshold that maximizes that label's F1 on (y_true, probs).

    A label with no positives keeps `default`: any threshold gives F1 = 0 there, and 0.5
    is the only choice that does not overfit. The threshold is placed midway between the
    best cut's score and the next lower score seen: the same decisions on this data, but no
    text sits exactly on a threshold, where any rounding (fp16, int8, other padding) would
    flip it.
    """
    from sklearn.metrics import precision_recall_curve

    y_true = np.asarray(y_true).astype(np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    out = np.full(y_true.shape[1], default, dtype=np.float64)
    for j in range(y_true.shape[1]):
        if y_true[:, j].sum() == 0:
            continue
        precision, recall, thr = precision_recall_curve(y_true[:, j], probs[:, j])
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
        best = int(np.argmax(f1[:-1]))  # the last point (recall 0) has no threshold
        below = probs[:, j][probs[:, j] < thr[best]]
        out[j] = float((thr[best] + (below.max() if below.size else 0.0)) / 2)
    return out


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (no overflow warning for large |x|)."""
    logits = np.asarray(logits, dtype=np.float64)
    out = np.empty_like(logits)
    pos = logits >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-logits[pos]))
    e = np.exp(logits[~pos])
    out[~pos] = e / (1.0 + e)
    return out
