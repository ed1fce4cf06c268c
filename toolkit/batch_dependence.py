"""Batch dependence: does a text's score change with the texts it is batched and padded with?

`measure_batch_dependence(predict_proba, texts, ...)` scores every text alone (batch of one, no
padding) and then all of them in one call, in the length-sorted, padded batches the runtime makes,
and `compare_batching` compares the two, pure numpy. A score must not depend on how texts were
batched, padded or served, so the verdict is strict where it matters to an app:

- a decision flip caused by batching fails the variant: the same text gets other labels
  depending on its batch-mates. Flips where the text scored alone sits within
  `toolkit.parity.TIE_BAND` (1e-6) of its threshold do not count (reported as `tie_flips`):
  tuned thresholds are validation scores, so on the tuning split a text sits exactly on each
  threshold and fp32 rounding (~1e-7) alone decides it;
- max and mean |Δprob| are reported, not gated: float kernels picked per batch shape (blocking,
  bf16 accumulation order) move probabilities by ~1e-7 in fp32 and ~1e-3 in bf16 without changing
  a decision. The default onnxruntime variants are exactly batch-invariant (|Δ| = 0, tested).

Stock per-tensor dynamic int8 shares one activation scale across the batch: a long or unusual
text changes every batch-mate's int8 inputs, which this measurement catches as flips.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from toolkit.parity import TIE_BAND, Check, decisions, parity_stats, tie_mask

MAX_FLIPS = 0  # any decision a text's batch-mates change fails the variant


@dataclass
class BatchDependence:
    """One variant's scores alone vs batched, on the same texts."""

    variant: str
    texts: int
    max_batch_size: int  # the runtime's batch size the batched scores came from (0: unknown)
    max_abs_diff: float
    mean_abs_diff: float
    flips: int  # text x label decisions changed by batching, ties excluded
    tie_flips: int  # changed decisions where the text alone sat within TIE_BAND of the threshold
    flipped_texts: int  # texts with at least one flip
    flips_by_label: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.flips <= MAX_FLIPS

    def check(self) -> Check:
        """The gate as a parity Check (`batch_flips` <= 0), for validate's report."""
        return Check(self.variant, "batch_flips", float(self.flips), float(MAX_FLIPS),
                     detail=f"{self.flipped_texts} of {self.texts} texts change a decision in a batch of "
                            f"{self.max_batch_size}; max |Δprob| {self.max_abs_diff:.2e}"
                            + (f"; {self.tie_flips} more at ties" if self.tie_flips else ""))

    def to_dict(self) -> dict:
        return dict(asdict(self), passed=self.passed)


def compare_batching(alone: np.ndarray, batched: np.ndarray, thresholds, labels: Sequence[str],
                     variant: str = "", max_batch_size: int = 0) -> BatchDependence:
    """Compare (n, L) probabilities of the same texts scored alone and in batches.

    Args:
        alone: each text scored on its own (the reference: no batch-mates, no padding).
        batched: the same texts scored together, row i for text i.
        thresholds: per-label decision thresholds (the manifest's).
        labels: label names, column order.

    Raises:
        ValueError: the arrays' shapes differ, or the thresholds do not match the columns.
    """
    alone = np.asarray(alone, dtype=np.float64)
    batched = np.asarray(batched, dtype=np.float64)
    if alone.shape != batched.shape or alone.ndim != 2 or alone.shape[1] != len(labels):
        raise ValueError(f"alone {alone.shape} and batched {batched.shape} must both be (texts, {len(labels)} labels)")
    stats = parity_stats(alone, batched, thresholds, thresholds, labels, tie=TIE_BAND)
    changed = decisions(batched, thresholds) != decisions(alone, thresholds)
    ties = tie_mask(alone, thresholds, thresholds, TIE_BAND)
    flipped_texts = int((changed & ~ties).any(axis=1).sum())
    return BatchDependence(variant=str(variant), texts=int(alone.shape[0]), max_batch_size=int(max_batch_size),
                           max_abs_diff=float(stats.max_abs_diff or 0.0), mean_abs_diff=float(stats.mean_abs_diff or 0.0),
                           flips=int(sum(stats.flips.values())), tie_flips=int(sum(stats.tie_flips.values())),
                           flipped_texts=flipped_texts, flips_by_label={k: v for k, v in stats.flips.items() if v})


def measure_batch_dependence(predict_proba: Callable[[Sequence[str]], np.ndarray], texts: Sequence[str],
                             thresholds, labels: Sequence[str], variant: str = "", max_batch_size: int = 0,
                             batched: Optional[np.ndarray] = None) -> BatchDependence:
    """Score each text alone and all of them in one call, then `compare_batching`.

    Args:
        predict_proba: e.g. `EmotionClassifier.predict_proba`, which sorts a call's texts by length
            and pads each batch of `max_batch_size` to its own longest text: the batches it serves.
        texts: the certifying texts (validate's).
        batched: the scores of `predict_proba(texts)` when the caller already has them (validate does).
    """
    texts = list(texts)
    if batched is None:
        batched = predict_proba(texts)
    alone = np.vstack([predict_proba([text]) for text in texts]) if texts else np.zeros((0, len(labels)))
    return compare_batching(alone, batched, thresholds, labels, variant, max_batch_size)
