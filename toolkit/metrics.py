"""Multi-label metrics and per-label threshold tuning (numpy + scikit-learn).

Threshold tuning needs evidence like any estimate: a label's F1-best cut on a handful of
validation positives is mostly noise (SemEval-2018 E-c: `surprise` tuned to 0.05 on its dev
positives scored precision 0.07 on test). Labels with fewer than `MIN_TUNE_POSITIVES` positives
therefore get a threshold chosen with the cut's own uncertainty in mind (`threshold_rules`), which
says per label which rule applied; training records it in toolkit.json.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from toolkit.config import THRESHOLD_OBJECTIVES

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
    jaccard_samples: float  # mean over texts of |predicted & true| / |predicted | true| (SemEval-2018 E-c's "accuracy")
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
    y_true = np.asarray(y_true).astype(np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if y_true.shape != probs.shape or y_true.ndim != 2 or y_true.shape[1] != len(label_names):
        raise ValueError(f"shape mismatch: y_true {y_true.shape}, probs {probs.shape}, {len(label_names)} labels")
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (y_true.shape[1],))
    y_pred = (probs >= thr).astype(np.int64)

    # Counted here rather than with sklearn's precision_recall_fscore_support, which reads a
    # one-label (n, 1) matrix as a binary problem and reports classes 0 and 1 instead of the label.
    # Same convention as sklearn's zero_division=0: 0/0 counts as 0.
    tp = (y_pred & y_true).sum(0)
    fp = (y_pred & (1 - y_true)).sum(0)
    fn = ((1 - y_pred) & y_true).sum(0)
    p, r, f = _ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(2 * tp, 2 * tp + fp + fn)
    s = y_true.sum(0)
    mi = (_ratio(tp.sum(), tp.sum() + fp.sum()), _ratio(tp.sum(), tp.sum() + fn.sum()),
          _ratio(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum()))
    ma = (float(p.mean()), float(r.mean()), float(f.mean()))
    per_label = [
        LabelMetrics(name, int(s[i]), float(p[i]), float(r[i]), float(f[i]), float(thr[i]))
        for i, name in enumerate(label_names)
    ]
    auc_micro, auc_macro = _roc_auc(y_true, probs)
    return MetricReport(
        micro_f1=float(mi[2]), macro_f1=float(ma[2]),
        micro_precision=float(mi[0]), micro_recall=float(mi[1]),
        macro_precision=float(ma[0]), macro_recall=float(ma[1]),
        exact_match=float((y_pred == y_true).all(axis=1).mean()) if len(y_true) else 0.0,
        jaccard_samples=_jaccard_samples(y_true, y_pred),
        roc_auc_micro=auc_micro, roc_auc_macro=auc_macro,
        n_samples=int(len(y_true)), per_label=per_label,
    )


CROSS_FIT_FOLDS = 5  # 5-fold: each tuning set keeps 80% of the split, enough positives for most rare labels


# Below this many validation positives a label's own F1-best cut is not trusted as it is; see
# threshold_rules. Chosen on GoEmotions dev, cross-fitted (benchmarks/thresholds.md).
MIN_TUNE_POSITIVES = 30
BOOTSTRAP_RESAMPLES = 50  # the median of 50 cuts moves by < 1/10 of the cuts' spread between runs
TUNED, BAGGED, SHRUNK, DEFAULT, SHARED = "tuned", "bagged", "shrunk", "default", "shared"  # rule names
FEW_POSITIVE_RULES = (BAGGED, SHRUNK)
FEW_POSITIVE_RULE = BAGGED  # measured against SHRUNK and plain tuning in benchmarks/thresholds.md


def tune_thresholds(y_true: np.ndarray, probs: np.ndarray, default: float = DEFAULT_THRESHOLD,
                    objective: str = "macro", min_positives: int = MIN_TUNE_POSITIVES,
                    few_positive_rule: str = FEW_POSITIVE_RULE) -> np.ndarray:
    """Decision thresholds tuned on (y_true, probs): `threshold_rules`' thresholds alone."""
    return threshold_rules(y_true, probs, default, objective, min_positives, few_positive_rule)[0]


def threshold_rules(y_true: np.ndarray, probs: np.ndarray, default: float = DEFAULT_THRESHOLD,
                    objective: str = "macro", min_positives: int = MIN_TUNE_POSITIVES,
                    few_positive_rule: str = FEW_POSITIVE_RULE) -> tuple[np.ndarray, list[dict]]:
    """Decision thresholds tuned on (y_true, probs), and per label the rule that set it.

    objective 'macro' (per-label F1): a label with at least `min_positives` positives gets the
    threshold that maximizes its own F1 (rule 'tuned'). A label with fewer has a cut that rests
    on a handful of texts, so it gets, by `few_positive_rule`:
    - 'bagged': the median of the F1-best cuts of BOOTSTRAP_RESAMPLES resamples of the texts
      (seeded): the cut's own uncertainty decides, and one lucky text cannot set it;
    - 'shrunk': its cut pulled toward the shared micro-F1-best threshold, weight P / min_positives.
    A label with no positives keeps `default` (rule 'default'): any threshold gives F1 = 0 there.

    objective 'micro': one threshold shared by every label (rule 'shared'), the one that
    maximizes micro-F1 over the pooled (text, label) decisions. One number cannot overfit rare labels.

    Each cut is placed midway between the best cut's score and the next lower score seen: the
    same decisions on this data, but no text sits exactly on a threshold, where any rounding
    (fp16, int8, other padding) would flip it.

    Returns:
        (thresholds, rules): rules[j] = {"rule", "positives"} plus, for a few-positive label, its own cut ("own").
    Raises:
        ValueError: unknown objective or rule.
    """
    if objective not in THRESHOLD_OBJECTIVES:
        raise ValueError(f"threshold objective must be one of {THRESHOLD_OBJECTIVES}, got {objective!r}")
    if few_positive_rule not in FEW_POSITIVE_RULES:
        raise ValueError(f"few-positive rule must be one of {FEW_POSITIVE_RULES}, got {few_positive_rule!r}")
    y_true = np.asarray(y_true).astype(np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    positives = y_true.sum(0)
    if objective == "micro":
        shared = _best_f1_cut(y_true.ravel(), probs.ravel()) if y_true.sum() > 0 else default
        return (np.full(y_true.shape[1], shared, dtype=np.float64),
                [{"rule": SHARED if y_true.sum() else DEFAULT, "positives": int(n)} for n in positives])
    out = np.full(y_true.shape[1], default, dtype=np.float64)
    rules = []
    shared = None
    for j, n in enumerate(positives):
        if n == 0:
            rules.append({"rule": DEFAULT, "positives": 0})
            continue
        own = _best_f1_cut(y_true[:, j], probs[:, j])
        if n >= min_positives:
            out[j] = own
            rules.append({"rule": TUNED, "positives": int(n)})
        elif few_positive_rule == BAGGED:
            out[j] = _bagged_cut(y_true[:, j], probs[:, j], seed=j)
            rules.append({"rule": BAGGED, "positives": int(n), "own": own, "resamples": BOOTSTRAP_RESAMPLES})
        else:
            if shared is None:
                shared = _best_f1_cut(y_true.ravel(), probs.ravel())
            weight = float(n) / min_positives
            out[j] = weight * own + (1.0 - weight) * shared
            rules.append({"rule": SHRUNK, "positives": int(n), "own": own, "shared": shared, "weight": weight})
    return out, rules


def cross_fitted_metrics(y_true: np.ndarray, probs: np.ndarray, label_names: list[str],
                         objective: str = "macro", folds: int = CROSS_FIT_FOLDS, seed: int = 0,
                         min_positives: int = MIN_TUNE_POSITIVES, few_positive_rule: str = FEW_POSITIVE_RULE
                         ) -> MetricReport:
    """Tuned-threshold metrics that do not score thresholds on the texts they were tuned on.

    The split is cut into `folds` shuffled folds (scikit-learn KFold, `seed`); each fold's
    texts are decided by thresholds tuned on the other folds, and the metrics are computed once
    over all these out-of-fold decisions. Pooling, rather than averaging per-fold F1, keeps rare
    labels fair: a fold can hold no positive of a label, and its per-fold F1 would be 0.
    The reported per-label `threshold` is the mean over folds.

    Raises:
        ValueError: fewer than 2 texts per fold.
    """
    from sklearn.model_selection import KFold

    y_true = np.asarray(y_true).astype(np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if len(y_true) < 2 * folds:
        raise ValueError(f"{len(y_true)} texts are too few for {folds}-fold cross-fitting")
    decisions = np.zeros_like(y_true)
    thresholds = np.zeros((folds, y_true.shape[1]))
    for k, (tune_idx, held_idx) in enumerate(KFold(folds, shuffle=True, random_state=seed).split(probs)):
        thresholds[k] = tune_thresholds(y_true[tune_idx], probs[tune_idx], objective=objective,
                                        min_positives=min_positives, few_positive_rule=few_positive_rule)
        decisions[held_idx] = probs[held_idx] >= thresholds[k]
    # Decisions are already 0/1: scoring them at 0.5 reproduces them exactly.
    report = compute_metrics(y_true, decisions.astype(np.float64), DEFAULT_THRESHOLD, label_names)
    for m, thr in zip(report.per_label, thresholds.mean(0)):
        m.threshold = float(thr)
    report.roc_auc_micro, report.roc_auc_macro = _roc_auc(y_true, probs)
    return report


def _best_f1_cut(y: np.ndarray, p: np.ndarray) -> float:
    """The F1-maximizing threshold for one binary problem, midway below the best cut."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thr = precision_recall_curve(y, p)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    best = int(np.argmax(f1[:-1]))  # the last point (recall 0) has no threshold
    below = p[p < thr[best]]
    return float((thr[best] + (below.max() if below.size else 0.0)) / 2)


def _jaccard_samples(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Samples-averaged Jaccard index; a text with no true and no predicted label scores 1 (it is
    entirely right), as sklearn's jaccard_score(average="samples", zero_division=1) counts it.

    Counted here for the reason the F1 counts are: sklearn reads a one-label (n, 1) matrix as a
    binary problem, where average="samples" is refused."""
    if not len(y_true):
        return 0.0
    inter = (y_true & y_pred).sum(1)
    union = (y_true | y_pred).sum(1)
    return float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean())


def _bagged_cut(y: np.ndarray, p: np.ndarray, seed: int, resamples: int = BOOTSTRAP_RESAMPLES) -> float:
    """Median F1-best cut over bootstrap resamples (those holding at least one positive)."""
    rng = np.random.default_rng(seed)
    cuts = []
    for _ in range(resamples):
        index = rng.integers(0, len(y), len(y))
        if y[index].any():
            cuts.append(_best_f1_cut(y[index], p[index]))
    return float(np.median(cuts)) if cuts else _best_f1_cut(y, p)


def _ratio(num, den):
    """num / den elementwise, 0 where den is 0 (sklearn's zero_division=0)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return out if out.ndim else float(out)


def _roc_auc(y_true: np.ndarray, probs: np.ndarray) -> tuple[float | None, float | None]:
    """Micro and macro ROC-AUC over the labels that have both classes (undefined for the others)."""
    from sklearn.metrics import roc_auc_score

    both = (y_true.sum(0) > 0) & (y_true.sum(0) < len(y_true))
    if not both.any():
        return None, None
    return (float(roc_auc_score(y_true[:, both], probs[:, both], average="micro")),
            float(roc_auc_score(y_true[:, both], probs[:, both], average="macro")))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function in float64, the one definition (runtime, export, validate and bench use it).

    exp(-log(1 + exp(-x))) never overflows, unlike 1 / (1 + exp(-x)) for x << 0 (no warning, no inf).
    """
    return np.exp(-np.logaddexp(0.0, -np.asarray(logits, dtype=np.float64)))
