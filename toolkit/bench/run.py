"""Orchestration of `toolkit bench`: options -> source -> providers -> one mode -> result -> files.

`run_bench` reads like a table of contents; each step lives in its own module (see the package
docstring). Results without --json/--csv go under `benchmarks/runs/` (gitignored), so a run in a
checkout leaves `git status` clean; the committed results in `benchmarks/results/` are written only
where --json/--csv/--plot point.
"""
from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path

from toolkit import artifacts, runtime
from toolkit.bench.scenarios import SEED_LOOP_TEXTS, prepare_preset, preset_source
from toolkit.bench.environment import machine_info, versions
from toolkit.bench.fixed import MIN_ITERATIONS, bench_fixed
from toolkit.bench.report import plot_result, require_matplotlib
from toolkit.bench.results import BUSY_CPU, FIXED, REAL_TEXT, BenchResult, MachineInfo, Measured, write_csv, \
    write_json
from toolkit.bench.text import bench_real_text
from toolkit.config import DEFAULT_EXPORT, BenchConfig, Provider
from toolkit.errors import ArtifactError, ProviderError, ToolkitError

log = logging.getLogger(__name__)

RESULTS_DIR = Path("benchmarks/results")  # committed results; relative to the working directory (the repository root)
RUNS_DIR = Path("benchmarks/runs")  # every run's JSON and CSV unless --json/--csv say otherwise; gitignored

ORT_SETTINGS = {
    # What toolkit.runtime.open_session configures (and onnxruntime's defaults it relies on):
    # all graph optimizations at load time, sequential execution (so inter-op threads are unused),
    # intra-op threads = the recorded thread count.
    "graph_optimization_level": "ORT_ENABLE_ALL",
    "execution_mode": "ORT_SEQUENTIAL",
    "inter_op_num_threads": 1,
}


def run_bench(cfg: BenchConfig) -> BenchResult:
    """Benchmark every requested variant (and the PyTorch baselines) on every requested provider.

    Args:
        cfg: sources, shapes, providers, timing and output options (see `BenchConfig`).

    Returns:
        The result, already written to JSON and CSV (and a PNG with `cfg.plot`).

    Raises:
        ProviderError: a requested GPU provider is missing or did not attach, or the CUDA baseline
            has no CUDA build of PyTorch.
        ArtifactError, ModelError, DataError: the export, its source checkpoint or the dataset is unusable.
        ToolkitError: inconsistent options, or --plot without matplotlib.
    """
    _check_options(cfg)
    date = artifacts.utc_now()
    machine = machine_info()  # before building a preset, so the load average is other processes' only
    providers = select_providers(cfg.provider)
    if cfg.data is not None and Provider.TENSORRT in providers:
        raise ProviderError("real-text mode changes the shape every batch and TensorRT rebuilds its engine per shape; "
                            "use --provider cuda or cpu with --data, or drop --data for fixed shapes on TensorRT")
    export_dir, source = _resolve_source(cfg)
    manifest = artifacts.read_manifest(export_dir)
    variants, notes = _select_variants(cfg, manifest, export_dir)
    notes = _source_notes(cfg, source) + notes + _busy_notes(machine)
    threads = int(cfg.threads) if cfg.threads else runtime.usable_cores()  # affinity and cgroup CPU quota
    measured = _measure(cfg, export_dir, manifest, variants, providers, threads, notes)
    result = BenchResult(
        date=date, command=cfg.command or "toolkit bench (library call)", machine=machine, versions=versions(),
        settings=_settings(cfg, measured, threads, variants), source=source, records=measured.records, notes=notes,
    )
    _write_outputs(result, cfg, source)
    return result


def select_providers(provider: str) -> list[str]:
    """The providers a run covers, as short names ("cpu", "cuda", "tensorrt").

    "auto" is every available one among CUDA and CPU (CPU always); "cuda" and "tensorrt" are that
    provider only, and an error when this onnxruntime build lacks it: never a silent fallback.

    Raises:
        ProviderError: unknown provider, or a GPU provider onnxruntime does not offer (with a pip hint).
    """
    chain = runtime.resolve_providers(provider)  # raises ProviderError for a missing GPU provider
    if str(provider).strip().lower() == "auto":
        return [Provider.CUDA.value, Provider.CPU.value] if chain[0] == runtime.CUDA else [Provider.CPU.value]
    return [runtime.SHORT_NAMES[chain[0]]]


def _check_options(cfg: BenchConfig) -> None:
    if cfg.plot is not None:
        require_matplotlib()
    if cfg.export is not None and cfg.preset is not None:
        raise ToolkitError("--export and --preset are exclusive: benchmark an export directory or a preset, not both")


def _measure(cfg: BenchConfig, export_dir: Path, manifest: dict, variants: list[str], providers: list[str],
             threads: int, notes: list[str]) -> Measured:
    """The mode's measurement; with the baseline, PyTorch gets the same thread budget as onnxruntime."""
    mode = bench_fixed if cfg.data is None else bench_real_text
    if not cfg.baseline:
        return mode(cfg, export_dir, manifest, variants, providers, threads, notes)  # torch never imported
    import torch

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return mode(cfg, export_dir, manifest, variants, providers, threads, notes)
    finally:
        torch.set_num_threads(torch_threads)


def _resolve_source(cfg: BenchConfig) -> tuple[Path, dict]:
    if cfg.preset:
        export_dir = prepare_preset(cfg.preset)
        return export_dir, preset_source(cfg.preset, export_dir)
    export_dir = Path(cfg.export or DEFAULT_EXPORT)
    return export_dir, {"name": str(export_dir), "preset": None, "export": str(export_dir), "weights": "trained"}


def _select_variants(cfg: BenchConfig, manifest: dict, export_dir: Path) -> tuple[list[str], list[str]]:
    """The requested variants the export has, in canonical order; missing ones become notes."""
    wanted = ([str(getattr(v, "value", v)) for v in cfg.variants] if cfg.variants
              else list(manifest.get("variants") or {}))
    present = [v for v in wanted if v in (manifest.get("variants") or {})]
    notes = [f"variant {v} is not in {export_dir}: skipped (re-export with `toolkit export --variants {v}`)"
             for v in wanted if v not in present]
    if not present:
        raise ArtifactError(f"{export_dir}: has none of the requested variants {', '.join(wanted)} "
                            f"(it has {', '.join(manifest.get('variants') or {}) or 'none'}); pick from those")
    for note in notes:
        log.warning(note)
    return present, notes


def _source_notes(cfg: BenchConfig, source: dict) -> list[str]:
    if not cfg.preset:
        return []
    what = "all weights are random" if source["weights"] == "random" else source["weights"]
    return [f"preset {cfg.preset}: {what}, so its scores are meaningless; speed does not depend on them"]


def _busy_notes(machine: MachineInfo) -> list[str]:
    if machine.cpu_busy is None or machine.cpu_busy < BUSY_CPU:
        return []
    note = (f"the machine was busy: {machine.cpu_busy:.0%} of its {machine.logical_cores} CPUs were in use "
            "just before the run; other processes shared the cores, so absolute numbers are low and noisy "
            "(ratios less so: runners are interleaved)")
    log.warning(note)
    return [note]


def _settings(cfg: BenchConfig, measured: Measured, threads: int, variants: list[str]) -> dict:
    settings = {
        "provider_requested": cfg.provider, "providers": measured.providers, "threads": threads,
        "variants": variants, "batches": list(cfg.batches), "seq_lens": list(cfg.seq_lens),
        "warmup": cfg.warmup, "iterations": cfg.iterations, "duration_s": cfg.duration,
        "min_iterations_default": MIN_ITERATIONS, "baseline": cfg.baseline,
        "mode": REAL_TEXT if cfg.data else FIXED, "data": str(cfg.data) if cfg.data else None,
        "schedule": "round-robin across runners, one run each per round", "onnxruntime": ORT_SETTINGS,
    }
    if Provider.TENSORRT in measured.providers:
        settings["tensorrt"] = {"session": "toolkit.runtime.open_session: the variant's own precision, "
                                           "no trt_fp16_enable", "engine_cache": str(runtime.tensorrt_cache_dir())}
    if cfg.data:
        settings["seed_loop_texts"] = SEED_LOOP_TEXTS
    if cfg.baseline:
        import torch

        settings["pytorch"] = {"mode": "eager, torch.inference_mode", "attention": measured.attention,
                               "cuda_matmul_tf32": bool(torch.backends.cuda.matmul.allow_tf32)}
    return settings


def _write_outputs(result: BenchResult, cfg: BenchConfig, source: dict) -> None:
    stem = "bench-{}-{}-{}".format(
        _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
        _slug(source.get("preset") or Path(source["export"]).name),
        REAL_TEXT if cfg.data else FIXED,
    )
    result.json_path = Path(cfg.json_path) if cfg.json_path else RUNS_DIR / f"{stem}.json"
    result.csv_path = Path(cfg.csv_path) if cfg.csv_path else RUNS_DIR / f"{stem}.csv"
    write_json(result, result.json_path)
    write_csv(result, result.csv_path)
    if cfg.plot:
        result.plot_path = plot_result(result, cfg.plot)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in str(text)).strip("-") or "model"
