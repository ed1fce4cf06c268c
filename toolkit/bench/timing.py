"""Timing: interleaved round-robin runs and their summary (mean, p50, p90, p99)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from toolkit.errors import ToolkitError


@dataclass(frozen=True)
class TimingStats:
    """Summary of timed runs, in seconds and milliseconds."""

    runs: int
    total_s: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float


def timing_stats(seconds: Sequence[float]) -> TimingStats:
    """Mean, median and tail percentiles (numpy's linear interpolation) of timed runs given in seconds."""
    values = np.asarray(seconds, dtype=np.float64)
    if values.size == 0:
        raise ToolkitError("no timed runs to summarize; use --iterations >= 1")
    p50, p90, p99 = np.percentile(values, [50, 90, 99]) * 1e3
    return TimingStats(runs=int(values.size), total_s=float(values.sum()), mean_ms=float(values.mean() * 1e3),
                       p50_ms=float(p50), p90_ms=float(p90), p99_ms=float(p99))


def round_robin(unit_lists: Sequence[Sequence[Callable[[], object]]], min_passes: int,
                min_seconds: Optional[float] = None) -> list[list[float]]:
    """Time every runner's units interleaved: each active runner's next unit in turn.

    Interleaving is what makes variants comparable within one run: a burst of machine noise (a
    background job, a thermal or turbo change, another tenant on a VM) lands on every runner alike
    instead of on whichever one happened to be running during it, so ratios stay honest even when
    absolute numbers drift. A runner leaves the rotation once it has done `min_passes` passes over
    its units and, with `min_seconds`, spent that long in timed runs.
    """
    clock = time.perf_counter
    times: list[list[float]] = [[] for _ in unit_lists]
    totals = [0.0] * len(unit_lists)
    position = [0] * len(unit_lists)
    passes = [0] * len(unit_lists)
    active = [i for i, units in enumerate(unit_lists) if units]
    while active:
        for r in list(active):
            units = unit_lists[r]
            start = clock()
            units[position[r]]()
            elapsed = clock() - start
            times[r].append(elapsed)
            totals[r] += elapsed
            position[r] += 1
            if position[r] == len(units):
                position[r] = 0
                passes[r] += 1
                if passes[r] >= min_passes and (min_seconds is None or totals[r] >= min_seconds):
                    active.remove(r)
    return times
