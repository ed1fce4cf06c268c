"""The result model of `toolkit bench`: records, speedups within a case, and the JSON and CSV files.

Numbers stay floats in these dataclasses until `toolkit.bench.report` formats them.
"""
from __future__ import annotations

import csv
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

from toolkit import artifacts
from toolkit.bench.timing import TimingStats
from toolkit.errors import ArtifactError

log = logging.getLogger(__name__)

SCHEMA = "toolkit-bench/1"

FIXED = "fixed"
REAL_TEXT = "real-text"

PYTORCH_FP32 = "pytorch-fp32"
PYTORCH_FP16 = "pytorch-fp16"
SEED_LOOP = "pytorch-seed-loop"
OPTIMUM_PREFIX = "optimum-"

BUSY_CPU = 0.10  # share of the CPUs other processes used (before or during a case) above which numbers are suspect


@dataclass
class BenchRecord:
    """One runner on one case: what ran, on what, and how fast. Times are milliseconds."""

    variant: str  # fp32 | fp16 | int8 | pytorch-fp32 | pytorch-fp16 | pytorch-seed-loop | optimum-<variant>
    provider: str  # provider actually used: cpu | cuda | tensorrt (onnxruntime's attached one); cpu|cuda for PyTorch
    device: str  # cpu | cuda: where the model ran; speedups compare rows of the same device
    batch: int
    seq_len: int  # fixed: the shape; real-text: the truncation length (and padding length for max_length)
    threads: int  # intra-op threads (PyTorch: torch.get_num_threads())
    mode: str  # fixed | real-text
    # fixed (fixed mode) | bucket (sorted by length, each batch padded to its longest text) |
    # max_length (every text padded to seq_len) | longest (dataset order, each batch padded to its
    # longest text: what optimum/transformers users do by default)
    padding: str
    iterations: int  # timed runs (fixed) or timed batches over all passes (real-text)
    sequences_per_s: float  # real-text: texts/s end to end, tokenization included
    tokens_per_s: float  # tokens fed to the model per second, padding included
    latency_mean_ms: float  # per run (fixed) or per batch (real-text)
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    speedup: Optional[float] = None  # sequences_per_s / the reference row's
    speedup_vs: Optional[str] = None  # the reference row's variant (see assign_speedups)
    texts: Optional[int] = None  # real-text: texts per pass
    other_cpu: Optional[float] = None  # share of the machine's CPU time other processes used during this case


@dataclass
class MachineInfo:
    """Where the numbers were measured."""

    cpu: str
    logical_cores: int  # CPUs this process may run on (affinity)
    physical_cores: int
    memory_gb: Optional[float]
    os: str
    python: str
    gpu: Optional[str] = None  # nvidia-smi name(s), None without a GPU
    gpu_driver: Optional[str] = None
    gpu_memory: Optional[str] = None
    load_average: Optional[list[float]] = None  # 1/5/15-minute load at the start (lags: includes the last minutes)
    cpu_busy: Optional[float] = None  # share of all CPUs busy during the second before the run (other processes)


@dataclass
class BenchResult:
    """A whole bench run: environment, settings and one record per runner x case."""

    date: str  # UTC, ISO 8601
    command: str
    machine: MachineInfo
    versions: dict
    settings: dict
    source: dict  # export dir, preset, weights
    records: list[BenchRecord]
    notes: list[str] = field(default_factory=list)
    json_path: Optional[Path] = None
    csv_path: Optional[Path] = None
    plot_path: Optional[Path] = None


@dataclass
class Measured:
    """What a mode (fixed or real-text) hands back to the orchestrator."""

    records: list[BenchRecord]
    providers: list[str]  # the providers that ran (auto may have dropped a GPU one that did not start)
    attention: Optional[str]  # PyTorch's attention implementation, None without a baseline


def make_record(runner, variant: str, batch: int, seq_len: int, mode: str, padding: str, stats: TimingStats,
                rate: float, token_rate: float) -> BenchRecord:
    """A record from a runner (provider, device, threads), the case and its timing summary."""
    return BenchRecord(variant=variant, provider=runner.provider, device=runner.device, batch=batch,
                       seq_len=seq_len, threads=runner.threads, mode=mode, padding=padding, iterations=stats.runs,
                       sequences_per_s=float(rate), tokens_per_s=float(token_rate), latency_mean_ms=stats.mean_ms,
                       latency_p50_ms=stats.p50_ms, latency_p90_ms=stats.p90_ms, latency_p99_ms=stats.p99_ms)


def assign_speedups(records: list[BenchRecord]) -> None:
    """Speedup = sequences/s over a reference row of the same case (one interleaved group) and device.

    fixed: PyTorch fp32 eager at the same batch and seq_len. real-text: the seed notebook's
    one-text-at-a-time loop (what the product replaces), else PyTorch fp32 with the same padding.
    """
    for r in records:
        ref = None
        if r.mode == REAL_TEXT:
            ref = next((b for b in records if b.variant == SEED_LOOP and b.device == r.device), None)
        if ref is None:
            ref = next((b for b in records if b.variant == PYTORCH_FP32 and b.device == r.device and b.mode == r.mode
                        and b.batch == r.batch and b.seq_len == r.seq_len
                        and (b.padding == r.padding or r.mode == FIXED)), None)
        if ref is not None and ref.sequences_per_s > 0:
            r.speedup = r.sequences_per_s / ref.sequences_per_s
            r.speedup_vs = ref.variant


def finish_case(case: list[BenchRecord], other_cpu: Optional[float], notes: list[str]) -> None:
    """Speedups within the case, and its share of foreign CPU use (with a note when it was high)."""
    assign_speedups(case)
    for r in case:
        r.other_cpu = other_cpu
    if other_cpu is not None and other_cpu >= BUSY_CPU:
        first = case[0]
        notes.append(f"batch {first.batch}, seq {first.seq_len}: other processes used {other_cpu:.0%} of the CPUs "
                     "while this case ran; its absolute numbers are low (ratios less so: runners are interleaved)")
        log.warning(notes[-1])


def result_to_dict(result: BenchResult) -> dict:
    """The JSON document: schema tag, environment, settings and records (paths left out)."""
    return {
        "schema": SCHEMA, "date": result.date, "command": result.command, "machine": asdict(result.machine),
        "versions": result.versions, "settings": result.settings, "source": result.source,
        "notes": list(result.notes), "records": [asdict(r) for r in result.records],
    }


def load_result(path: Path) -> BenchResult:
    """Read a result JSON written by `run_bench` (for README tables and comparisons).

    Raises:
        ArtifactError: not a toolkit bench result, or a schema this version cannot read.
    """
    data = artifacts.read_json(Path(path), "bench result")
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema != SCHEMA:
        raise ArtifactError(f"{path}: not a {SCHEMA} bench result (schema {schema!r}); "
                            "pass a JSON written by `toolkit bench`")
    try:
        record_names = {f.name for f in fields(BenchRecord)}
        machine_names = {f.name for f in fields(MachineInfo)}
        return BenchResult(
            date=data["date"], command=data["command"],
            machine=MachineInfo(**{k: v for k, v in data["machine"].items() if k in machine_names}),
            versions=data["versions"], settings=data["settings"], source=data["source"],
            records=[BenchRecord(**{k: v for k, v in r.items() if k in record_names}) for r in data["records"]],
            notes=list(data.get("notes", [])), json_path=Path(path),
        )
    except (KeyError, TypeError) as e:
        raise ArtifactError(f"{path}: bench result is missing or has malformed fields ({e}); "
                            "re-run `toolkit bench`") from e


def write_json(result: BenchResult, path: Path) -> None:
    """The result JSON (atomically), its folder created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(path, result_to_dict(result))


def write_csv(result: BenchResult, path: Path) -> None:
    """One row per record, plus the date, command, CPU and GPU so each row stands alone."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [f.name for f in fields(BenchRecord)]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(names + ["date", "cpu", "gpu", "command"])
        for r in result.records:
            writer.writerow([getattr(r, n) if getattr(r, n) is not None else "" for n in names]
                            + [result.date, result.machine.cpu, result.machine.gpu or "", result.command])
    os.replace(tmp, path)
