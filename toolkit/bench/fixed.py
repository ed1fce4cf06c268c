"""Fixed-shape mode: random in-vocabulary token ids, mask all ones, one shape per case.

Every runner times one step per case (batch x sequence length), interleaved round-robin after
warm-up. On CUDA the inputs and outputs stay on the device (IO binding) and the device is
synchronized around every timed run, so the numbers are the model's, not the PCIe bus's.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from toolkit import artifacts
from toolkit.bench.environment import OtherCpu
from toolkit.bench.results import FIXED, BenchRecord, Measured, finish_case, make_record
from toolkit.bench.runners import OrtRunner, attention_of, device_of, note_provider_quirks, open_per_provider, \
    torch_runners
from toolkit.bench.timing import TimingStats, round_robin, timing_stats
from toolkit.config import BenchConfig
from toolkit.errors import ArtifactError

log = logging.getLogger(__name__)

MIN_ITERATIONS = 20  # the floor for percentiles; p99 of 20 runs is the slowest one, which is honest
INPUT_SEED = 1234  # fixed random token ids: every variant sees the very same inputs


def bench_fixed(cfg: BenchConfig, export_dir: Path, manifest: dict, variants: list[str], providers: list[str],
                threads: int, notes: list[str]) -> Measured:
    """Every runner on every batch x seq_len case, one interleaved group per case."""
    vocab_size = vocab_size_of(export_dir)

    def open_runners(provider: str) -> list:
        runners = torch_runners(export_dir, manifest, device_of(provider), threads) if cfg.baseline else []
        return runners + [OrtRunner(v, export_dir / manifest["variants"][v]["file"], provider, threads,
                                    session=_openvino_session(export_dir, manifest, v, provider, threads))
                          for v in variants]

    runners, used = open_per_provider(cfg, providers, open_runners, notes)
    note_provider_quirks(runners, notes)
    records = []
    for seq_len in cfg.seq_lens:
        for batch in cfg.batches:
            records += _bench_case(cfg, runners, batch, seq_len, fixed_inputs(batch, seq_len, vocab_size), notes)
    return Measured(records, used, attention_of(runners))


def _openvino_session(export_dir: Path, manifest: dict, variant: str, provider: str, threads: int):
    """An OpenVINO variant's session as the runtime opens it (its precision and hint); None for ONNX ones."""
    entry = manifest["variants"][variant]
    if entry.get("backend") != "openvino":
        return None
    from toolkit.openvino_session import open_variant

    return open_variant(export_dir, entry, provider, threads)


def _bench_case(cfg: BenchConfig, runners: list, batch: int, seq_len: int, inputs: dict[str, np.ndarray],
                notes: list[str]) -> list[BenchRecord]:
    steps = [r.fixed_step(inputs) for r in runners]
    for step in steps:
        for _ in range(cfg.warmup):  # first runs allocate arenas, pick kernels, build engines
            step()
    min_runs = cfg.iterations or (1 if cfg.duration else MIN_ITERATIONS)
    log.info("batch %d, seq %d: %d runners x >= %d runs", batch, seq_len, len(runners), min_runs)
    with OtherCpu() as other:
        times = round_robin([[s] for s in steps], min_runs, cfg.duration)
    case = [fixed_record(r, batch, seq_len, timing_stats(seconds)) for r, seconds in zip(runners, times)]
    finish_case(case, other.share, notes)
    return case


def fixed_record(runner, batch: int, seq_len: int, stats: TimingStats) -> BenchRecord:
    """Throughput = batch x runs / total time (sequences/s), tokens/s = that x seq_len."""
    rate = batch * stats.runs / stats.total_s
    return make_record(runner, runner.variant, batch, seq_len, FIXED, "fixed", stats, rate, rate * seq_len)


def fixed_inputs(batch: int, seq_len: int, vocab_size: int) -> dict[str, np.ndarray]:
    """Random in-vocabulary ids, mask all ones, segment 0: one fixed shape, the same for every runner."""
    rng = np.random.default_rng(INPUT_SEED)
    ids = rng.integers(0, vocab_size, size=(batch, seq_len), dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def vocab_size_of(export_dir: Path) -> int:
    config = artifacts.read_json(export_dir / artifacts.HF_CONFIG, "model config")
    size = config.get("vocab_size") if isinstance(config, dict) else None
    if not isinstance(size, int) or size < 1:
        raise ArtifactError(f"{export_dir / artifacts.HF_CONFIG}: no vocab_size; re-run `toolkit export --force`")
    return size
