"""The bounded int8 search: the cheapest per-token candidate that passes `toolkit validate`'s gates.

Steps, each built by the caller and gated on the validation split: plain per-token; + smoothing
(kept only if it gates better); then a float fallback: MatMuls ranked by measured sensitivity (how
much keeping each one alone in float brings the logits back to fp32), kept in float one by one
until the gates pass, within a time budget.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from toolkit.errors import first_line

log = logging.getLogger(__name__)


@dataclass
class GateOutcome:
    """How one int8 candidate fared on the validation split (what `toolkit validate` would gate)."""

    passed: bool
    macro_drop: float
    worst_label: str
    worst_drop: float
    flips: int
    mean_abs_diff: float
    failures: list[str] = field(default_factory=list)
    error: str = ""  # the candidate could not be built or scored: this step failed, the search went on

    @classmethod
    def from_comparison(cls, judged) -> "GateOutcome":
        """The outcome of `toolkit.parity.compare`'s verdict on one candidate."""
        worst = judged.worst
        return cls(passed=all(c.passed for c in judged.checks), macro_drop=judged.gated_macro_drop,
                   worst_label=worst.label, worst_drop=worst.gated_drop, flips=int(sum(judged.parity.flips.values())),
                   mean_abs_diff=float(judged.parity.mean_abs_diff or 0.0),
                   failures=[c.describe() for c in judged.checks if not c.passed])

    def to_dict(self) -> dict:
        entry = {"passed": self.passed, "macro_drop": _finite(self.macro_drop), "worst_label": self.worst_label,
                 "worst_drop": _finite(self.worst_drop), "flips": self.flips,
                 "mean_abs_diff": _finite(self.mean_abs_diff), "failures": list(self.failures)}
        return dict(entry, error=self.error) if self.error else entry


def _finite(x: float) -> Optional[float]:
    """JSON has no inf/nan: a step that errored records null."""
    import math

    return x if math.isfinite(x) else None


@dataclass
class Int8Search:
    """The bounded search's result: the chosen candidate and every step that led to it."""

    smoothing: bool
    float_nodes: tuple[str, ...]
    outcome: Optional[GateOutcome]  # None: no validation data, nothing was gated
    trace: list[dict] = field(default_factory=list)
    sensitivity: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    budget_exhausted: bool = False

    @property
    def passed(self) -> Optional[bool]:
        return None if self.outcome is None else self.outcome.passed


def search_int8(build: Callable[[bool, tuple[str, ...]], Path], evaluate: Callable[[Path], GateOutcome],
                proxy_error: Callable[[Path], float], candidates: Sequence[str], budget_s: float,
                max_float: int) -> Int8Search:
    """The cheapest per-token candidate that passes the gates, found within `budget_s` seconds.

    Steps, each gated on the validation split by `evaluate`: plain per-token; + smoothing (kept
    only if it gates better); then the fallback: every candidate MatMul's sensitivity measured as
    `proxy_error` with that node alone in float (lower is better), and nodes kept in float in
    that order, one more per step, up to `max_float`. The last candidate built is the best one
    when nothing passes.
    """
    started = time.perf_counter()
    result = Int8Search(smoothing=False, float_nodes=(), outcome=None)

    def step(smooth: bool, floats: tuple[str, ...], what: str) -> GateOutcome:
        try:
            outcome = evaluate(build(smooth, floats))
        except Exception as e:  # a candidate that cannot be built or run is a failed step, not a failed export
            outcome = _errored(e)
            log.warning("int8 search: %s could not be built or scored (%s); the search goes on", what, outcome.error)
        result.trace.append({"step": what, "smoothing": smooth, "float_nodes": list(floats),
                             "seconds": round(time.perf_counter() - started, 1), **outcome.to_dict()})
        log.info("int8 search: %s -> %s (macro drop %.4f, worst %s %.4f)", what,
                 "pass" if outcome.passed else "fail", outcome.macro_drop, outcome.worst_label, outcome.worst_drop)
        return outcome

    def over_budget() -> bool:
        result.budget_exhausted = time.perf_counter() - started > budget_s
        return result.budget_exhausted

    best = step(False, (), "per-token")
    smoothed = step(True, (), "per-token + smoothing") if not best.passed and not over_budget() else None
    if smoothed is not None and _better(smoothed, best):
        best, result.smoothing = smoothed, True
    if not best.passed and not over_budget() and max_float > 0:
        result.sensitivity = _rank_sensitivity(build, proxy_error, result.smoothing, candidates, started, budget_s)
        ranked = sorted(result.sensitivity, key=result.sensitivity.get)
        for count in range(1, min(max_float, len(ranked)) + 1):
            if over_budget():
                break
            floats = tuple(ranked[:count])
            outcome = step(result.smoothing, floats, f"+ {count} float MatMul(s)")
            if _better(outcome, best):
                best, result.float_nodes = outcome, floats
            if outcome.passed:
                break
    result.outcome = best
    result.seconds = time.perf_counter() - started
    build(result.smoothing, result.float_nodes)  # leave the chosen candidate on disk
    return result


# ---------------------------------------------------------------------------- helpers


def _rank_sensitivity(build, proxy_error, smooth: bool, candidates: Sequence[str], started: float,
                      budget_s: float) -> dict[str, float]:
    """proxy_error with each candidate alone in float, within half of the budget still left.

    Half of what is left, not half of the whole: when the first steps were slow (a busy machine,
    DistilBERT's shape: 160 s of a 240 s budget) a fixed midpoint left no time to rank at all, and
    the fallback never ran.
    """
    scores = {}
    deadline = time.perf_counter() + (budget_s - (time.perf_counter() - started)) / 2
    for name in candidates:
        if time.perf_counter() > deadline:
            log.warning("int8 search: sensitivity measured for %d of %d MatMuls within half the budget left",
                        len(scores), len(candidates))
            break
        try:
            scores[name] = proxy_error(build(smooth, (name,)))
        except Exception as e:  # one MatMul that cannot be measured is left unranked; the others still count
            log.warning("int8 search: sensitivity of %s not measured (%s)", name, first_line(e))
    return scores


def _errored(e: Exception) -> GateOutcome:
    message = first_line(e)
    return GateOutcome(passed=False, macro_drop=float("inf"), worst_label="", worst_drop=float("inf"), flips=0,
                       mean_abs_diff=float("nan"), failures=[f"candidate failed: {message}"], error=message)


def _better(a: GateOutcome, b: GateOutcome) -> bool:
    """Passing beats failing; then the smaller macro drop, then the smaller worst-label drop."""
    return (a.passed, -a.macro_drop, -a.worst_drop) > (b.passed, -b.macro_drop, -b.worst_drop)
