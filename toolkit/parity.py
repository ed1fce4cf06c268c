"""Parity math, pure numpy: a variant's probabilities against a reference's, and the gates on them.

Shared by `toolkit validate` (every variant against PyTorch) and `toolkit export` (the int8
search gates its candidates on the validation split with the very same checks).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import numpy as np

from toolkit.config import Gates, Variant
from toolkit.metrics import MetricReport

NEAR_THRESHOLD = 0.02  # a prob this close to its threshold flips on a ~1e-2 quantization error: int8's typical size
# A reference this close to its threshold has no decision a variant must keep: fp32 kernels (ONNX
# vs PyTorch, or PyTorch with other padding) move a sigmoid output by ~1e-7, and tuned thresholds
# are validation scores, so on the tuning split each label has a text exactly on its threshold.
TIE_BAND = 1e-6
THRESHOLD_TOLERANCE = 1e-6  # manifest thresholds are copies of the checkpoint's; JSON floats round-trip exactly
_EPS = 1e-9  # F1 values are ratios of counts; differences below this are float noise, not a real drop


@dataclass
class Check:
    """One gate applied to one variant: passes when `value <= limit` (kind 'max') or `>=` (kind 'min')."""

    variant: str
    check: str
    value: float
    limit: float
    kind: str = "max"
    label: Optional[str] = None
    detail: str = ""

    @property
    def passed(self) -> bool:
        if not np.isfinite(self.value):
            return False
        if self.kind == "max":
            return self.value <= self.limit + _EPS
        return self.value >= self.limit - _EPS

    def describe(self) -> str:
        """'int8 label_f1_drop[fear]: 0.2500 > limit 0.0300 (F1 0.81 -> 0.56)'."""
        name = f"{self.check}[{self.label}]" if self.label else self.check
        op = ("<=" if self.kind == "max" else ">=") if self.passed else (">" if self.kind == "max" else "<")
        text = f"{self.variant} {name}: {format_number(self.value)} {op} limit {format_number(self.limit)}"
        return f"{text} ({self.detail})" if self.detail else text

    def to_dict(self) -> dict:
        return dict(asdict(self), passed=self.passed)


@dataclass
class Parity:
    """A variant's probabilities against the reference's, on the same texts."""

    max_abs_diff: Optional[float]  # over entries finite in both; None when there are none
    mean_abs_diff: Optional[float]
    agreement: float  # fraction of sample x label decisions equal, ties counting as equal
    flips: dict[str, int]  # label -> samples whose decision differs, ties excluded
    tie_flips: dict[str, int]  # label -> differing decisions where the reference sat on the threshold
    near_threshold: int  # sample x label probabilities within NEAR_THRESHOLD of their threshold
    nan_inf: int  # non-finite probabilities


@dataclass
class LabelRow:
    label: str
    support: int
    threshold: float
    f1_reference: float
    f1: float
    delta_f1: float  # f1 - f1_reference: negative is a drop
    flips: int
    tie_flips: int
    gated_drop: float  # the F1 drop with tie flips given the reference's decision: what the gate sees


def tie_mask(reference: np.ndarray, ref_thresholds, thresholds, tie: float = TIE_BAND) -> np.ndarray:
    """Where the reference sits within `tie` of an unchanged threshold: its decision there is a coin toss.

    Tuned thresholds *are* validation scores (metrics.tune_thresholds picks a score seen in the
    data), so on the split they were tuned on every label has a text exactly on its threshold,
    and rounding, even PyTorch's own with other padding, decides it. A moved threshold is never
    a tie. Keep `tie` at fp32 rounding size: a wider band would excuse real quantization losses.
    """
    reference = np.asarray(reference, dtype=np.float64)
    ref_thresholds = np.broadcast_to(np.asarray(ref_thresholds, dtype=np.float64), reference.shape[1:])
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), reference.shape[1:])
    if tie <= 0:
        return np.zeros(reference.shape, dtype=bool)
    same = np.abs(thresholds - ref_thresholds) <= THRESHOLD_TOLERANCE
    with np.errstate(invalid="ignore"):
        return (np.abs(reference - ref_thresholds) <= tie + _EPS) & same


def decisions(probs: np.ndarray, thresholds) -> np.ndarray:
    """prob >= threshold, per label; NaN decides 'no'."""
    with np.errstate(invalid="ignore"):
        return np.asarray(probs, dtype=np.float64) >= np.asarray(thresholds, dtype=np.float64)


def parity_stats(reference: np.ndarray, probs: np.ndarray, ref_thresholds, thresholds,
                 labels: Sequence[str], tie: float = TIE_BAND) -> Parity:
    """Compare a variant's (n, L) probabilities with the reference's.

    Decisions are taken on each side at its own thresholds: the reference at the checkpoint's,
    the variant at those the runtime hands the app. A differing decision where the reference
    sits within `tie` of an unchanged threshold (see tie_mask) counts as agreeing and is
    reported in `tie_flips`.
    """
    reference = np.asarray(reference, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    both = np.isfinite(probs) & np.isfinite(reference)
    delta = np.abs(probs - reference)
    changed = decisions(probs, thresholds) != decisions(reference, ref_thresholds)
    ties = changed & tie_mask(reference, ref_thresholds, thresholds, tie)
    flips, tie_flips = (changed & ~ties).sum(axis=0), ties.sum(axis=0)
    return Parity(
        max_abs_diff=float(delta[both].max()) if both.any() else None,
        mean_abs_diff=float(delta[both].mean()) if both.any() else None,
        agreement=1.0 - float(flips.sum()) / changed.size if changed.size else 1.0,
        flips={name: int(flips[j]) for j, name in enumerate(labels)},
        tie_flips={name: int(tie_flips[j]) for j, name in enumerate(labels)},
        near_threshold=near_threshold_count(probs, thresholds),
        nan_inf=int((~np.isfinite(probs)).sum()),
    )


def near_threshold_count(probs: np.ndarray, thresholds, margin: float = NEAR_THRESHOLD) -> int:
    """Sample x label probabilities within `margin` of their label's threshold (fragile decisions)."""
    probs = np.asarray(probs, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return int((np.abs(probs - np.asarray(thresholds, dtype=np.float64)) <= margin + _EPS).sum())


def label_rows(reference: MetricReport, metrics: MetricReport, gated: MetricReport, parity: Parity) -> list[LabelRow]:
    """Per-label F1 of a variant beside the reference's: the delta, and the drop the gate sees."""
    ref_f1, gated_f1 = reference.label_f1(), gated.label_f1()
    return [LabelRow(m.label, m.support, m.threshold, ref_f1[m.label], m.f1, m.f1 - ref_f1[m.label],
                     parity.flips.get(m.label, 0), parity.tie_flips.get(m.label, 0),
                     ref_f1[m.label] - gated_f1[m.label]) for m in metrics.per_label]


def min_label_positives(variant: str, gates: Gates) -> int:
    """Positives a label needs in the certifying texts before its per-label F1 gate means anything.

    One flipped decision on a label with P positives moves its F1 by (2 - F1) / 2P: about 1/P
    for a weak label, 1/2P for a perfect one (F1 = 2TP / (P + predicted)). Below P = 1/limit a
    single flip, which rounding alone can cause at a threshold, already exceeds the label limit,
    so a pass or a fail there says nothing about the variant: the label is "not enough evidence".
    With the default gates: int8 (limit 0.03) 34 positives, fp16 (limit 0.01) 100; fp32 has no
    per-label F1 gate (its decisions must all agree), so no minimum.
    """
    limit = gates.max_drop_label.get(str(variant)) if variant != Variant.FP32 else None
    return int(np.ceil(1.0 / float(limit) - 1e-9)) if limit else 0


def gate_checks(variant: str, gates: Gates, parity: Parity, rows: Sequence[LabelRow], macro_drop: float) -> list[Check]:
    """The gates of one variant on its numbers (manifest and checksum checks are added elsewhere).

    F1 drops are gated as `rows[*].gated_drop` and `macro_drop`: with tie flips (see tie_mask)
    given the reference's decision, so that a text sitting on a tuned threshold cannot fail a
    variant, while the reported F1 stays the one apps really get.

    Why the defaults in `config.Gates` are what they are:
    - nan_inf = 0, every variant: a NaN/Inf probability is a broken decision for any app.
    - fp32 max|Δprob| <= 1e-4: ONNX fp32 runs PyTorch's math in another kernel order (~1e-6 on
      probabilities); 100x headroom, while a wrong weight, op or input moves them by >= 1e-3.
    - fp32 agreement = 100%: same math, same decisions (ties aside); equal decisions imply
      equal F1, so fp32 has no F1-drop gate on top.
    - fp16 macro-F1 drop <= 0.002: fp16 keeps ~3 significant digits (|Δprob| ~1e-3), which flips
      only decisions within ~1e-3 of a threshold: a few per thousand texts, well under 0.002 F1.
    - fp16 label drop <= 0.01: one label has far fewer positives than all labels pooled, so its F1
      is ~5x noisier; more than that is an overflow or a precision-sensitive op left in fp16.
    - int8 macro-F1 drop <= 0.01: dynamic int8 BERT loses well under one F1 point when healthy
      (Q8BERT, Zafrir et al. 2019; onnxruntime's BERT quantization results).
    - int8 label drop <= 0.03: 3x the macro limit for per-label noise, still far below what a
      label quantized into silence loses (its whole F1): the failure this tool exists to catch.
    - per-label gates pass only labels with `min_label_positives` positives; one with fewer fails
      when its drop exceeds the limit plus what a single flip can cause (2 / (P + 1)), and is
      otherwise "not enough evidence" (`insufficient_labels`), never passed.
    """
    checks = [Check(variant, "nan_inf", float(parity.nan_inf), 0.0,
                    detail=f"{parity.nan_inf} non-finite probabilities")]
    if variant == Variant.FP32:
        checks.append(Check(variant, "max_abs_diff", _or_inf(parity.max_abs_diff), gates.fp32_max_abs_diff))
        checks.append(Check(variant, "agreement", parity.agreement, gates.fp32_min_agreement, kind="min",
                            detail=f"{sum(parity.flips.values())} flipped decisions, "
                                   f"{sum(parity.tie_flips.values())} more at ties"))
        return checks
    if variant in gates.max_drop_macro:
        ties = sum(parity.tie_flips.values())
        checks.append(Check(variant, "macro_f1_drop", macro_drop, float(gates.max_drop_macro[variant]),
                            detail=f"{ties} tie flip(s) not counted" if ties else ""))
    if variant in gates.max_drop_label:
        limit = float(gates.max_drop_label[variant])
        need = min_label_positives(variant, gates)
        # A label short of evidence fails only beyond what one flip can do to it (2 / (P + 1), the most
        # one decision moves F1 with P positives); short of that it is "not enough evidence", no check.
        failing = [r for r in rows if _label_fails(r, limit, need)]
        rows = [r for r in rows if r.support >= need]
        for r in failing:  # one entry per lost label: a rare emotion must be named
            checks.append(Check(variant, "label_f1_drop", r.gated_drop, limit, label=r.label,
                                detail=f"F1 {r.f1_reference:.4f} -> {r.f1:.4f}, {r.flips} flips"
                                       + (f" and {r.tie_flips} at ties" if r.tie_flips else "")))
        if not failing and rows:
            worst = max(rows, key=lambda r: r.gated_drop)
            checks.append(Check(variant, "label_f1_drop", max(0.0, worst.gated_drop), limit, label=worst.label))
    return checks


def _label_fails(row: LabelRow, limit: float, need: int) -> bool:
    """The per-label gate: the drop beyond the limit, plus one flip's worth for a label short of evidence."""
    return row.gated_drop > limit + _EPS + (0.0 if row.support >= need else _one_flip(row.support))


def _one_flip(positives: int) -> float:
    return 2.0 / (positives + 1)


def insufficient_labels(variant: str, gates: Gates, rows: Sequence[LabelRow]) -> list[str]:
    """Labels with fewer positives than `min_label_positives` that did not fail: "not enough evidence"."""
    limit = float(gates.max_drop_label.get(str(variant)))
    need = min_label_positives(variant, gates)
    return [r.label for r in rows if r.support < need and not _label_fails(r, limit, need)]


def manifest_checks(variant: str, labels: Sequence[str], thresholds, ref_labels: Sequence[str],
                    ref_thresholds) -> list[Check]:
    """Labels and thresholds the runtime hands apps must be the checkpoint's, position by position."""
    labels, ref_labels = list(labels), list(ref_labels)
    if len(labels) != len(ref_labels):
        moved = [f"{len(labels)} labels vs {len(ref_labels)}"]
        wrong = max(len(labels), len(ref_labels))
    else:
        moved = [f"{j}: {a!r} should be {b!r}" for j, (a, b) in enumerate(zip(labels, ref_labels)) if a != b]
        wrong = len(moved)
    checks = [Check(variant, "labels", float(wrong), 0.0, detail="; ".join(moved[:4]) or "same order as checkpoint")]
    thresholds = np.asarray(thresholds, dtype=np.float64)
    ref_thresholds = np.asarray(ref_thresholds, dtype=np.float64)
    if thresholds.shape != ref_thresholds.shape:
        checks.append(Check(variant, "thresholds", float("inf"), THRESHOLD_TOLERANCE,
                            detail=f"{thresholds.size} thresholds vs {ref_thresholds.size}"))
        return checks
    diff = np.abs(thresholds - ref_thresholds)
    j = int(np.argmax(diff)) if diff.size else 0
    detail = f"{labels[j]}: {thresholds[j]:.4f} vs checkpoint {ref_thresholds[j]:.4f}" if diff.size else ""
    checks.append(Check(variant, "thresholds", float(diff.max()) if diff.size else 0.0, THRESHOLD_TOLERANCE,
                        detail=detail))
    return checks


def _or_inf(value: Optional[float]) -> float:
    return float("inf") if value is None else value


def format_number(value: Optional[float]) -> str:
    if value is None:
        return "n/a"
    if not np.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.4f}" if 1e-3 <= abs(value) < 1e6 else f"{value:.2e}"


@dataclass
class Comparison:
    """A variant's probabilities judged against the reference's on labelled texts."""

    parity: Parity
    metrics: MetricReport  # the variant's own metrics at its thresholds (what apps get)
    rows: list[LabelRow]
    gated_macro_drop: float  # reference macro-F1 minus the variant's, tie flips given the reference's decision
    checks: list[Check]
    insufficient: list[str] = field(default_factory=list)  # labels with too few positives for their F1 gate

    @property
    def worst(self) -> LabelRow:
        return max(self.rows, key=lambda r: r.gated_drop)


def compare(variant: str, y_true: np.ndarray, reference: np.ndarray, ref_thresholds, ref_metrics: MetricReport,
            probs: np.ndarray, thresholds, labels: Sequence[str], gates: Gates) -> Comparison:
    """Parity, metrics, per-label rows and gate checks of one variant (checksum and manifest checks aside)."""
    from toolkit.metrics import compute_metrics

    parity = parity_stats(reference, probs, ref_thresholds, thresholds, labels)
    metrics = compute_metrics(y_true, np.nan_to_num(np.asarray(probs, dtype=np.float64), nan=0.0, posinf=1.0,
                                                    neginf=0.0), thresholds, list(labels))
    ties = tie_mask(reference, ref_thresholds, thresholds)
    gated_decisions = np.where(ties, decisions(reference, ref_thresholds), decisions(probs, thresholds))
    gated = compute_metrics(y_true, gated_decisions.astype(np.float64), 0.5, list(labels))
    rows = label_rows(ref_metrics, metrics, gated, parity)
    drop = ref_metrics.macro_f1 - gated.macro_f1
    insufficient = insufficient_labels(variant, gates, rows) if variant in gates.max_drop_label else []
    return Comparison(parity, metrics, rows, drop, gate_checks(variant, gates, parity, rows, drop), insufficient)
