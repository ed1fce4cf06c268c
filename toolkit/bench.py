"""`toolkit bench`: throughput and latency of every variant side by side, with the environment recorded.

Pipeline (`run_bench`): resolve the model (an export directory, or a preset built and exported
once into `benchmarks/cache/`), pick the providers, open one runner per variant x provider plus
the PyTorch eager baselines, time them case by case (batch x sequence length), interleaved
round-robin, then turn the timings into `BenchRecord`s and write JSON, CSV and optionally a plot.

Two modes:
- fixed: random in-vocabulary token ids, attention mask all ones, one shape per case. On CUDA the
  inputs and outputs stay on the device (IO binding) and the device is synchronized around every
  timed run, so the numbers are the model's, not the PCIe bus's.
- real-text (`--data`): every text of a dataset, end to end (tokenization, padding, the run, the
  sigmoid). Texts are sorted into length buckets and each batch is padded only to its own longest
  text, as `toolkit.runtime.EmotionClassifier` does; beside it the same texts padded to
  `--seq-len`, the seed notebook's one-text-at-a-time PyTorch loop padded to 128, and optimum's
  ORTModelForSequenceClassification at the same batch size.

Numbers stay floats in dataclasses until `format_summary` / `format_markdown` format them.
"""
from __future__ import annotations

import csv
import datetime as _dt
import logging
import os
import platform
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from toolkit import artifacts
from toolkit.config import DEFAULT_EXPORT, BenchConfig, Variant
from toolkit.errors import ArtifactError, DataError, ProviderError, ToolkitError

log = logging.getLogger(__name__)

SCHEMA = "toolkit-bench/1"
RESULTS_DIR = Path("benchmarks/results")  # relative to the working directory: run from the repository root
CACHE_DIR = Path("benchmarks/cache")  # preset checkpoints/exports and TensorRT engines; gitignored
TRT_CACHE_DIR = CACHE_DIR / "trt"

MIN_ITERATIONS = 20  # the floor for percentiles; p99 of 20 runs is the slowest one, which is honest
REAL_TEXT_PASSES = 1  # real-text: one pass over a dataset is already hundreds of timed batches
SEED_LOOP_TEXTS = 300  # the one-text-at-a-time loop is slow; 300 texts give a stable rate in seconds
SEED_LOOP_MAX_LENGTH = 128  # the seed notebook's predict_emotions pads every text to 128 tokens
INPUT_SEED = 1234  # fixed random token ids: every variant sees the very same inputs
BUSY_CPU = 0.10  # share of the CPUs other processes used (before or during a case) above which numbers are suspect
BUSY_SAMPLE_S = 0.5  # how long to watch the machine before a run: enough to catch a running job, cheap per run
PRESET_LABELS = 28  # GoEmotions' label count, so the preset head has the product's shape
PRESET_MAX_LENGTH = 128
PRESET_SEED = 0

PYTORCH_FP32 = "pytorch-fp32"
PYTORCH_FP16 = "pytorch-fp16"
SEED_LOOP = "pytorch-seed-loop"
OPTIMUM_PREFIX = "optimum-"

FIXED = "fixed"
REAL_TEXT = "real-text"

PRESETS = {
    # bert-base-uncased's shape (Devlin et al.) with RANDOM weights: for speed only.
    "bert-base": {"architecture": "bert", "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
                  "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 512,
                  "weights": "random"},
    # the shipped all-MiniLM-L6-v2 encoder (pretrained) with a random classification head.
    "minilm": {"architecture": "minilm", "weights": "pretrained encoder, random head"},
    # modeling's tiny test shape with random weights and a WordPiece vocab trained on the demo corpus.
    "tiny": {"architecture": "tiny", "weights": "random"},
}

ORT_SETTINGS = {
    # What toolkit.runtime.open_session configures (and onnxruntime's defaults it relies on):
    # all graph optimizations at load time, sequential execution (so inter-op threads are unused),
    # intra-op threads = the recorded thread count.
    "graph_optimization_level": "ORT_ENABLE_ALL",
    "execution_mode": "ORT_SEQUENTIAL",
    "inter_op_num_threads": 1,
}
TENSORRT_OPTIONS = {
    "trt_fp16_enable": True,  # TensorRT picks fp16 kernels where faster: the point of using it for BERT
    "trt_engine_cache_enable": True,  # building a BERT-base engine takes minutes; reuse it across runs
    "trt_timing_cache_enable": True,
}


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
    speedup_vs: Optional[str] = None  # the reference row's variant (see _assign_speedups)
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


@dataclass(frozen=True)
class TimingStats:
    """Summary of timed runs, in seconds and milliseconds."""

    runs: int
    total_s: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float


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
    if cfg.plot is not None:
        _require_matplotlib()
    if cfg.export is not None and cfg.preset is not None:
        raise ToolkitError("--export and --preset are exclusive: benchmark an export directory or a preset, not both")
    date = artifacts.utc_now()
    machine = machine_info()  # before building a preset, so the load average is other processes' only
    providers = select_providers(cfg.provider)
    if cfg.data is not None and "tensorrt" in providers:
        raise ProviderError("real-text mode changes the shape every batch and TensorRT rebuilds its engine per shape; "
                            "use --provider cuda or cpu with --data, or drop --data for fixed shapes on TensorRT")
    export_dir, source = _resolve_source(cfg)
    manifest = artifacts.read_manifest(export_dir)
    variants, notes = _select_variants(cfg, manifest, export_dir)
    if cfg.preset:
        what = "all weights are random" if source["weights"] == "random" else source["weights"]
        notes.insert(0, f"preset {cfg.preset}: {what}, so its scores are meaningless; speed does not depend on them")
    threads = int(cfg.threads) if cfg.threads else _physical_cores()
    if machine.cpu_busy is not None and machine.cpu_busy >= BUSY_CPU:
        notes.append(f"the machine was busy: {machine.cpu_busy:.0%} of its {machine.logical_cores} CPUs were in use "
                     "just before the run; other processes shared the cores, so absolute numbers are low and noisy "
                     "(ratios less so: runners are interleaved)")
        log.warning(notes[-1])

    import torch

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(threads)  # same thread budget for PyTorch as for onnxruntime
    try:
        bench_mode = _bench_fixed if cfg.data is None else _bench_real_text
        measured = bench_mode(cfg, export_dir, manifest, variants, providers, threads, notes)
    finally:
        torch.set_num_threads(torch_threads)

    settings = _settings(cfg, measured.providers, threads, variants)
    if cfg.baseline:
        settings["pytorch"] = {"mode": "eager, torch.inference_mode", "attention": measured.attention,
                               "cuda_matmul_tf32": bool(torch.backends.cuda.matmul.allow_tf32)}
    result = BenchResult(
        date=date, command=cfg.command or "toolkit bench (library call)", machine=machine,
        versions=_versions(), settings=settings, source=source, records=measured.records, notes=notes,
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
    from toolkit import runtime

    chain = runtime.resolve_providers(provider)  # raises ProviderError for a missing GPU provider
    if str(provider).strip().lower() == "auto":
        return ["cuda", "cpu"] if chain[0] == runtime.CUDA else ["cpu"]
    return [runtime.SHORT_NAMES[chain[0]]]


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


def format_summary(result: BenchResult) -> str:
    """One plain table (variant, provider, batch, seq, throughput, latency, speedup), then notes and files."""
    from toolkit.tables import format_table

    rows = [("variant", "provider", "mode", "batch", "seq", "threads", "seq/s", "tokens/s", "mean ms", "p50 ms",
             "p90 ms", "p99 ms", "speedup")]
    rows += [_row_cells(r) for r in result.records]
    m = result.machine
    gpu = f", GPU {m.gpu} (driver {m.gpu_driver})" if m.gpu else ""
    head = (f"{result.source.get('name')} on {m.cpu} ({m.physical_cores} physical / {m.logical_cores} logical "
            f"cores{gpu}), {result.date}")
    lines = [head, format_table(rows), _speedup_legend(result)]
    lines += [f"note: {n}" for n in result.notes]
    lines += [f"wrote {p}" for p in (result.json_path, result.csv_path, result.plot_path) if p]
    return "\n".join(lines)


def format_markdown(result: BenchResult, title: Optional[str] = None) -> str:
    """A Markdown section for benchmarks/README.md: the command, the machine, versions and the table."""
    m = result.machine
    v = result.versions
    head = ["variant", "provider", "mode", "batch", "seq", "threads", "seq/s", "tokens/s", "mean ms", "p50 ms",
            "p90 ms", "p99 ms", "speedup"]
    lines = [f"### {title or result.source.get('name')}", ""]
    lines.append(f"`{result.command}`")
    lines.append("")
    gpu = f"; GPU {m.gpu}, driver {m.gpu_driver}" if m.gpu else "; no GPU"
    lines.append(f"{result.date} · {m.cpu}, {m.physical_cores} physical / {m.logical_cores} logical cores{gpu} · "
                 + ", ".join(f"{k} {v[k]}" for k in ("onnxruntime", "onnxruntime-gpu", "torch") if k in v))
    lines.append("")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" if i < 3 else "---:" for i in range(len(head))) + "|")
    lines += ["| " + " | ".join(_row_cells(r)) + " |" for r in result.records]
    lines.append("")
    lines.append(_speedup_legend(result))
    lines += [f"- {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


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


def plot_result(result: BenchResult, path: Path) -> Path:
    """PNG: throughput, p50 and p99 latency against batch size, one line per variant/provider/shape.

    Raises:
        ToolkitError: matplotlib is not installed (pip hint).
    """
    _require_matplotlib()
    from matplotlib.figure import Figure  # the object API: no pyplot state, no global backend switch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    series: dict[str, list[BenchRecord]] = {}
    for r in result.records:
        key = f"{r.variant} {r.provider}" + ("" if r.mode == FIXED else f" {r.padding}") + f" seq{r.seq_len}"
        series.setdefault(key, []).append(r)
    fig = Figure(figsize=(15, 4.8), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = [("sequences / s", "sequences_per_s"), ("p50 latency (ms)", "latency_p50_ms"),
              ("p99 latency (ms)", "latency_p99_ms")]
    for ax, (label, attr) in zip(axes, panels):
        for key, recs in series.items():
            recs = sorted(recs, key=lambda r: r.batch)
            ax.plot([r.batch for r in recs], [getattr(r, attr) for r in recs], marker="o", label=key)
        ax.set_xscale("log", base=2)
        batches = sorted({r.batch for r in result.records})
        ax.set_xticks(batches, labels=[str(b) for b in batches])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{result.source.get('name')}: {result.machine.cpu}"
                 + (f" / {result.machine.gpu}" if result.machine.gpu else "") + f" ({result.date})", fontsize=9)
    fig.savefig(path, dpi=110)
    return path


def machine_info() -> MachineInfo:
    """CPU model, cores (logical and physical), memory, OS, and the GPU from nvidia-smi when present."""
    gpu = _nvidia_smi()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        load = None
    return MachineInfo(cpu=_cpu_model(), logical_cores=_logical_cores(), physical_cores=_physical_cores(),
                       memory_gb=_memory_gb(), os=platform.platform(), python=platform.python_version(),
                       gpu=gpu.get("name"), gpu_driver=gpu.get("driver"), gpu_memory=gpu.get("memory"),
                       load_average=load, cpu_busy=_cpu_busy())


def prepare_preset(name: str, cache_dir: Path = CACHE_DIR) -> Path:
    """Build (once) the preset's checkpoint and export every variant; return the export directory.

    The cache `cache_dir/<name>/` is reused when its manifest checksums match and it was built for
    the same preset definition; otherwise it is rebuilt.

    Raises:
        ToolkitError: unknown preset. ModelError: minilm without its package. ExportError: export failed.
    """
    from toolkit.config import ExportConfig
    from toolkit.export import export_model

    if name not in PRESETS:
        raise ToolkitError(f"unknown preset {name!r}: choose from {', '.join(PRESETS)}")
    base = Path(cache_dir) / name
    checkpoint, export_dir = base / "checkpoint", base / "export"
    spec = _preset_spec(name)
    reason = _stale_cache(export_dir, checkpoint, spec)
    if reason is None:
        log.info("preset %s: reusing %s", name, export_dir)
        return export_dir
    log.info("preset %s: building %s (%s)", name, base, reason)
    if _checkpoint_spec(checkpoint) != spec:
        _build_preset_checkpoint(name, checkpoint, spec)
    export_model(ExportConfig(checkpoint=checkpoint, out=export_dir, variants=tuple(Variant), force=True))
    return export_dir


# ---------------------------------------------------------------------------- fixed shapes


def _bench_fixed(cfg: BenchConfig, export_dir: Path, manifest: dict, variants: list[str], providers: list[str],
                 threads: int, notes: list[str]) -> _Measured:
    """Every runner on every batch x seq_len case, one interleaved group per case."""
    vocab_size = _vocab_size(export_dir)

    def open_runners(provider: str) -> list:
        runners = _torch_runners(export_dir, manifest, _device(provider), threads) if cfg.baseline else []
        return runners + [_OrtRunner(v, export_dir / manifest["variants"][v]["file"], provider, threads)
                          for v in variants]

    runners, used = _open_per_provider(cfg, providers, open_runners, notes)
    _note_provider_quirks(runners, notes)
    records = []
    for seq_len in cfg.seq_lens:
        for batch in cfg.batches:
            inputs = _fixed_inputs(batch, seq_len, vocab_size)
            steps = [r.fixed_step(inputs) for r in runners]
            for step in steps:
                for _ in range(cfg.warmup):  # first runs allocate arenas, pick kernels, build engines
                    step()
            min_runs = cfg.iterations or (1 if cfg.duration else MIN_ITERATIONS)
            log.info("batch %d, seq %d: %d runners x >= %d runs", batch, seq_len, len(runners), min_runs)
            with _OtherCpu() as other:
                times = round_robin([[s] for s in steps], min_runs, cfg.duration)
            case = []
            for r, seconds in zip(runners, times):
                stats = timing_stats(seconds)
                rate = batch * stats.runs / stats.total_s
                case.append(_record(r, r.variant, batch, seq_len, FIXED, "fixed", stats, rate, rate * seq_len))
            _finish_case(case, other.share, notes)
            records += case
    return _Measured(records, used, _attention(runners))


@dataclass
class _Measured:
    records: list[BenchRecord]
    providers: list[str]  # the providers that ran (auto may have dropped a GPU one that did not start)
    attention: Optional[str]  # PyTorch's attention implementation, None without a baseline


def _open_per_provider(cfg: BenchConfig, providers: list[str], open_runners: Callable[[str], list],
                       notes: list[str]) -> tuple[list, list[str]]:
    """Runners for each provider. With --provider auto a GPU provider that does not start is skipped
    with a note (onnxruntime-gpu lists CUDA even on machines without a usable GPU); asked for by
    name, it is an error."""
    runners, used = [], []
    for provider in providers:
        try:
            runners += open_runners(provider)
        except ProviderError as e:
            if cfg.provider != "auto" or provider == "cpu":
                raise
            notes.append(f"provider auto: {provider} is listed by onnxruntime but did not start, so this run is "
                         f"CPU only ({e})")
            log.warning(notes[-1])
            continue
        used.append(provider)
    return runners, used


def _attention(runners) -> Optional[str]:
    return next((r.attention for r in runners if isinstance(r, _TorchRunner)), None)


def _fixed_inputs(batch: int, seq_len: int, vocab_size: int) -> dict[str, np.ndarray]:
    """Random in-vocabulary ids, mask all ones, segment 0: one fixed shape, the same for every runner."""
    rng = np.random.default_rng(INPUT_SEED)
    ids = rng.integers(0, vocab_size, size=(batch, seq_len), dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


class _OrtRunner:
    """One ONNX variant in one onnxruntime session on one provider."""

    def __init__(self, variant: str, path: Path, provider: str, threads: int, session=None, classifier=None):
        self.variant = variant
        self.session = session if session is not None else _open_session(path, provider, threads)
        self.classifier = classifier  # real-text mode: the runtime's EmotionClassifier over this session
        from toolkit import runtime

        attached = self.session.get_providers()[0]
        self.provider = runtime.SHORT_NAMES.get(attached, attached)
        self.device = _device(self.provider)
        self.threads = int(self.session.get_session_options().intra_op_num_threads or threads)
        self.input_types = {i.name: runtime._numpy_dtype(i.type) for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]

    def feeds(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Feed only what the graph declares: some exports drop token_type_ids.
        return {n: inputs[n].astype(t, copy=False) for n, t in self.input_types.items()}

    def fixed_step(self, inputs: dict[str, np.ndarray]) -> Callable[[], None]:
        feeds = self.feeds(inputs)
        if self.device == "cpu":
            return lambda: self.session.run(self.outputs, feeds)
        return self._device_step(feeds)

    def _device_step(self, feeds: dict[str, np.ndarray]) -> Callable[[], None]:
        """IO binding: inputs copied to the GPU once, outputs left there; synchronized around each run."""
        import onnxruntime as ort

        from toolkit.runtime import CUDA_DEVICE_ID

        binding = self.session.io_binding()
        for name, array in feeds.items():
            # a device copy made once per case; the binding shares ownership of it
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, "cuda", CUDA_DEVICE_ID))
        for name in self.outputs:
            binding.bind_output(name, "cuda", CUDA_DEVICE_ID)

        def step() -> None:
            binding.synchronize_inputs()
            self.session.run_with_iobinding(binding)
            binding.synchronize_outputs()

        return step


class _TorchRunner:
    """PyTorch eager (torch.inference_mode) on one device and dtype: the baseline."""

    def __init__(self, variant: str, loaded, device: str, dtype, threads: int):
        import torch

        self.variant = variant
        self.loaded = loaded
        self.device = device
        self.provider = device
        self.threads = torch.get_num_threads() if device == "cpu" else threads
        self.model = loaded.model.to(device=device, dtype=dtype).eval()
        self.attention = getattr(self.model.config, "_attn_implementation", None)  # sdpa or eager: recorded

    def forward(self, inputs: dict[str, np.ndarray]):
        import torch

        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            return torch.sigmoid(self.model(**tensors).logits.float()).cpu().numpy()

    def fixed_step(self, inputs: dict[str, np.ndarray]) -> Callable[[], None]:
        import torch

        tensors = {k: torch.from_numpy(v).to(self.device) for k, v in inputs.items()}
        cuda = self.device != "cpu"

        def step() -> None:
            with torch.inference_mode():
                self.model(**tensors)
            if cuda:
                torch.cuda.synchronize()  # kernels are asynchronous: wait for them inside the timed region

        return step


def _torch_runners(export_dir: Path, manifest: dict, device: str, threads: int,
                   fp16: bool = True) -> list[_TorchRunner]:
    """PyTorch fp32 eager on the device; on CUDA also fp16 eager (unless `fp16` is off), the usual
    GPU deployment baseline."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ProviderError(f"the PyTorch baseline on CUDA needs a CUDA build of torch (this is {torch.__version__}, "
                            "no CUDA device visible); install one or pass --no-baseline")
    runners = [_TorchRunner(PYTORCH_FP32, _load_baseline(export_dir, manifest), device, torch.float32, threads)]
    if device == "cuda" and fp16:  # a second copy of the weights, converted to half
        fp16 = _load_baseline(export_dir, manifest)
        runners.append(_TorchRunner(PYTORCH_FP16, fp16, device, torch.float16, threads))
    return runners


# ---------------------------------------------------------------------------- real text


@dataclass
class _Plan:
    """One real-text row: a runner, how its texts are padded, and its units (one timed call each)."""

    runner: object
    variant: str
    padding: str
    seq_len: int
    batch: int
    units: list[Callable[[], object]]
    texts: int  # texts per pass
    tokens: int  # tokens fed to the model per pass, padding included


def _bench_real_text(cfg: BenchConfig, export_dir: Path, manifest: dict, variants: list[str], providers: list[str],
                     threads: int, notes: list[str]) -> _Measured:
    """End-to-end texts/s on a dataset: bucketed, padded to seq_len, and the comparison loops."""
    from toolkit.runtime import EmotionClassifier, _verify_files

    texts = _read_texts(cfg.data)
    max_length = int(manifest["max_length"])
    _verify_files(export_dir, manifest)  # once here, not in every load below

    def open_runners(provider: str) -> list:
        runners = (_torch_runners(export_dir, manifest, _device(provider), threads, fp16=False)
                   if cfg.baseline else [])
        for variant in variants:
            clf = EmotionClassifier.load(export_dir, variant=variant, provider=provider, threads=threads,
                                         max_batch_size=max(cfg.batches), verify=False)
            runners.append(_OrtRunner(variant, export_dir, provider, threads, session=clf.session, classifier=clf))
        return runners

    runners, used = _open_per_provider(cfg, providers, open_runners, notes)
    _note_provider_quirks(runners, notes)
    ort_runners = [r for r in runners if isinstance(r, _OrtRunner)]
    torch_runners = [r for r in runners if isinstance(r, _TorchRunner)]
    counter = _token_counter(export_dir)
    # Sort by token count once, untimed: each text is still tokenized exactly once inside the timed
    # region (per batch), and the batches are the ones EmotionClassifier.predict_proba would form.
    order = np.argsort(counter(texts, max_length), kind="stable")
    by_length = [texts[i] for i in order]
    optimum_variant = "int8" if "int8" in variants else variants[0]
    bucket_tok = _text_tokenizer(export_dir, max_length, None)

    records = []
    for n_case, batch in enumerate(cfg.batches):
        chunks = [by_length[i:i + batch] for i in range(0, len(by_length), batch)]
        bucket_tokens = sum(len(c) * max(counter(c, max_length)) for c in chunks)
        plans = [_Plan(r, r.variant, "bucket", max_length, batch,
                       [_bound(r.classifier.predict_proba, c) for c in chunks], len(texts), bucket_tokens)
                 for r in ort_runners]
        plans += [_Plan(r, r.variant, "bucket", max_length, batch,
                        [_bound(_torch_text_unit, r, bucket_tok, c) for c in chunks], len(texts), bucket_tokens)
                  for r in torch_runners]
        for seq_len in cfg.seq_lens:
            padded_tok = _text_tokenizer(export_dir, seq_len, seq_len)
            plans += [_Plan(r, r.variant, "max_length", seq_len, batch,
                            [_bound(_ort_text_unit if isinstance(r, _OrtRunner) else _torch_text_unit, r, padded_tok, c)
                             for c in chunks], len(texts), len(texts) * seq_len)
                      for r in ort_runners + torch_runners]
        if cfg.baseline:
            plans += _optimum_plans(export_dir, manifest, optimum_variant, used, threads, texts, batch,
                                    max_length, counter, notes if n_case == 0 else [])
            # The reference row: measured again in every case, so that it shares the case's noise.
            plans += _seed_loop_plans(torch_runners, texts)
        for plan in plans:
            # On CPU the longest batches size the memory arenas. On CUDA every new shape costs a
            # one-off kernel/workspace setup (seen on an H200: fp16 p90 14x its p50 in a single
            # pass), so the warm-up there is one whole pass over every batch shape.
            if cfg.warmup:
                for unit in plan.units if plan.runner.device != "cpu" else plan.units[-cfg.warmup:]:
                    unit()
        passes = cfg.iterations or (1 if cfg.duration else REAL_TEXT_PASSES)
        log.info("real text, batch %d: %d texts, %d runners x %d pass(es)", batch, len(texts), len(plans), passes)
        with _OtherCpu() as other:
            times = round_robin([p.units for p in plans], passes, cfg.duration)
        case = []
        for plan, seconds in zip(plans, times):
            stats = timing_stats(seconds)
            done = stats.runs / len(plan.units)  # passes completed
            rec = _record(plan.runner, plan.variant, plan.batch, plan.seq_len, REAL_TEXT, plan.padding, stats,
                          plan.texts * done / stats.total_s, plan.tokens * done / stats.total_s)
            rec.texts = plan.texts
            case.append(rec)
        _finish_case(case, other.share, notes)
        records += case
    return _Measured(records, used, _attention(torch_runners))


def _optimum_plans(export_dir, manifest, variant, providers, threads, texts, batch, max_length, counter,
                   notes) -> list[_Plan]:
    """optimum's ORTModelForSequenceClassification as its users call it: dataset order, padding=True."""
    import onnxruntime as ort

    try:
        from optimum.onnxruntime import ORTModelForSequenceClassification
    except ImportError as e:
        notes.append(f"optimum comparison skipped: optimum.onnxruntime is not importable ({e}); "
                     "pip install optimum-onnx[onnxruntime]")
        return []
    import torch
    from transformers import AutoTokenizer

    from toolkit import runtime

    tokenizer = AutoTokenizer.from_pretrained(export_dir)
    chunks = [texts[i:i + batch] for i in range(0, len(texts), batch)]
    tokens = sum(len(c) * max(counter(c, max_length)) for c in chunks)
    plans = []
    for provider in providers:
        options = ort.SessionOptions()  # the same settings as the toolkit's sessions, so only the pipeline differs
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        chain = runtime.resolve_providers(provider)
        model = ORTModelForSequenceClassification.from_pretrained(
            export_dir, file_name=manifest["variants"][variant]["file"], provider=chain[0], session_options=options)
        runner = _OrtRunner(OPTIMUM_PREFIX + variant, export_dir, provider, threads, session=model.session)
        if provider != "cpu" and runner.provider == "cpu":
            raise ProviderError(f"{export_dir}: optimum's session asked for {chain[0]} but attached only CPU; "
                                f"{runtime.GPU_HINT}")

        def unit(chunk, model=model):
            # On CUDA optimum binds torch tensors by pointer (IO binding): they must be on its device.
            enc = tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            return torch.sigmoid(model(**enc.to(model.device)).logits).cpu().numpy()

        plans.append(_Plan(runner, runner.variant, "longest", max_length, batch, [_bound(unit, c) for c in chunks],
                           len(texts), tokens))
    return plans


def _seed_loop_plans(torch_runners, texts) -> list[_Plan]:
    """The seed notebook's predict_emotions: one text at a time, padded to 128, PyTorch, sigmoid."""
    import torch

    subset = texts[:SEED_LOOP_TEXTS]
    plans = []
    for runner in torch_runners:
        tokenizer, model, device = runner.loaded.tokenizer, runner.model, runner.device

        def predict_emotions(text, tokenizer=tokenizer, model=model, device=device):
            enc = tokenizer(text, padding="max_length", truncation=True, max_length=SEED_LOOP_MAX_LENGTH,
                            return_tensors="pt")
            with torch.inference_mode():
                logits = model(**{k: v.to(device) for k, v in enc.items()}).logits
            return torch.sigmoid(logits).cpu().numpy()

        plans.append(_Plan(runner, SEED_LOOP, "max_length", SEED_LOOP_MAX_LENGTH, 1,
                           [_bound(predict_emotions, t) for t in subset], len(subset),
                           len(subset) * SEED_LOOP_MAX_LENGTH))
    return plans


def _ort_text_unit(runner: _OrtRunner, tokenizer, chunk: list[str]) -> np.ndarray:
    (logits,) = runner.session.run(runner.outputs[:1], runner.feeds(_encode(tokenizer, chunk)))
    return np.exp(-np.logaddexp(0.0, -logits))  # sigmoid without overflow for very negative logits


def _torch_text_unit(runner: _TorchRunner, tokenizer, chunk: list[str]) -> np.ndarray:
    return runner.forward(_encode(tokenizer, chunk))


def _encode(tokenizer, chunk: list[str]) -> dict[str, np.ndarray]:
    encodings = tokenizer.encode_batch(chunk)
    return {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64)}


def _text_tokenizer(export_dir: Path, truncate: int, pad_to: Optional[int]):
    """The export's tokenizer.json, truncating at `truncate`, padding to `pad_to` (None: each batch's longest)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(export_dir / artifacts.TOKENIZER_JSON))
    pad_id = tokenizer.token_to_id("[PAD]")
    pad_id = 0 if pad_id is None else pad_id
    tokenizer.enable_truncation(max_length=truncate)
    tokenizer.enable_padding(pad_id=pad_id, length=pad_to)
    return tokenizer


def _token_counter(export_dir: Path) -> Callable[[Sequence[str], int], list[int]]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(export_dir / artifacts.TOKENIZER_JSON))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return lambda texts, limit: [min(len(e.ids), limit) for e in tokenizer.encode_batch(list(texts))]


def _read_texts(path: Path) -> list[str]:
    """Texts of any dataset toolkit.data reads; a split directory gives its validation split."""
    from toolkit.config import DataConfig
    from toolkit.data import load_splits, read_dataset

    path = Path(path)
    if path.is_dir():
        texts = load_splits(DataConfig(path=path)).validation.texts
    else:
        texts = read_dataset(path).texts
    if not texts:
        raise DataError(f"{path}: no texts to benchmark; pass a dataset with at least one text")
    return texts


# ---------------------------------------------------------------------------- timing


def _finish_case(case: list[BenchRecord], other_cpu: Optional[float], notes: list[str]) -> None:
    """Speedups within the case, and its share of foreign CPU use (with a note when it was high)."""
    _assign_speedups(case)
    for r in case:
        r.other_cpu = other_cpu
    if other_cpu is not None and other_cpu >= BUSY_CPU:
        first = case[0]
        notes.append(f"batch {first.batch}, seq {first.seq_len}: other processes used {other_cpu:.0%} of the CPUs "
                     "while this case ran; its absolute numbers are low (ratios less so: runners are interleaved)")
        log.warning(notes[-1])


class _OtherCpu:
    """CPU time other processes used during a block, as a share of the machine's capacity (Linux).

    /proc/stat counts every process's non-idle time; this process's own user+system time (all
    its threads) is subtracted, so what remains is the competition the numbers suffered from.
    `share` stays None where /proc/stat is unavailable.
    """

    share: Optional[float] = None

    def __enter__(self) -> "_OtherCpu":
        self._start = _proc_stat(), _own_cpu_seconds()
        return self

    def __exit__(self, *exc) -> None:
        (start_stat, start_own), end_stat, end_own = self._start, _proc_stat(), _own_cpu_seconds()
        if start_stat is None or end_stat is None:
            return
        ticks = os.sysconf("SC_CLK_TCK")
        total = (end_stat[0] - start_stat[0]) / ticks
        busy = total - (end_stat[1] - start_stat[1]) / ticks
        if total > 0:
            self.share = round(min(1.0, max(0.0, busy - (end_own - start_own)) / total), 3)


def _record(runner, variant: str, batch: int, seq_len: int, mode: str, padding: str, stats: TimingStats, rate: float,
            token_rate: float) -> BenchRecord:
    return BenchRecord(variant=variant, provider=runner.provider, device=runner.device, batch=batch,
                       seq_len=seq_len, threads=runner.threads, mode=mode, padding=padding, iterations=stats.runs,
                       sequences_per_s=float(rate), tokens_per_s=float(token_rate), latency_mean_ms=stats.mean_ms,
                       latency_p50_ms=stats.p50_ms, latency_p90_ms=stats.p90_ms, latency_p99_ms=stats.p99_ms)


def _assign_speedups(records: list[BenchRecord]) -> None:
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


# ---------------------------------------------------------------------------- sources and sessions


def _resolve_source(cfg: BenchConfig) -> tuple[Path, dict]:
    if cfg.preset:
        export_dir = prepare_preset(cfg.preset)
        spec = PRESETS[cfg.preset]
        return export_dir, {"name": f"preset {cfg.preset}", "preset": cfg.preset, "export": str(export_dir),
                            "weights": spec["weights"], "shape": _preset_shape(cfg.preset)}
    export_dir = Path(cfg.export or DEFAULT_EXPORT)
    return export_dir, {"name": str(export_dir), "preset": None, "export": str(export_dir), "weights": "trained"}


def _select_variants(cfg: BenchConfig, manifest: dict, export_dir: Path) -> tuple[list[str], list[str]]:
    """The requested variants the export has, in canonical order; missing ones become notes."""
    wanted = ([v.value if isinstance(v, Variant) else str(v) for v in cfg.variants] if cfg.variants
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


def _open_session(path: Path, provider: str, threads: int):
    """toolkit.runtime's session (the one apps get); TensorRT additionally with an engine cache and fp16."""
    from toolkit import runtime

    if provider != "tensorrt":
        return runtime.open_session(path, provider, threads)
    return _open_tensorrt_session(path, threads)


def _open_tensorrt_session(path: Path, threads: int):
    """TensorRT with fp16 kernels allowed and the engine cache in benchmarks/cache/trt.

    runtime.open_session keeps each variant's own precision on TensorRT (no trt_fp16_enable) and
    takes no provider options, so the bench opens this session itself, with the same checks: the
    provider must be in this onnxruntime build, and must attach.
    """
    import onnxruntime as ort

    from toolkit import runtime

    runtime.resolve_providers("tensorrt")  # ProviderError when this onnxruntime has no TensorRT
    TRT_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    trt = dict(TENSORRT_OPTIONS, device_id=runtime.CUDA_DEVICE_ID,
               trt_engine_cache_path=str(TRT_CACHE_DIR.resolve()), trt_timing_cache_path=str(TRT_CACHE_DIR.resolve()))
    # Nodes TensorRT does not take run on CUDA, with TF32 off as in toolkit.runtime (fp32 means fp32).
    providers = [(runtime.TENSORRT, trt), (runtime.CUDA, {"device_id": runtime.CUDA_DEVICE_ID, "use_tf32": 0}),
                 runtime.CPU]
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as e:  # onnxruntime raises its own Fail/RuntimeException types
        raise ProviderError(f"{path}: TensorrtExecutionProvider failed to start ({str(e).splitlines()[0]}); "
                            f"{runtime.GPU_HINT}, with TensorRT libraries on the library path") from e
    if runtime.TENSORRT not in session.get_providers():
        raise ProviderError(f"{path}: TensorrtExecutionProvider was requested but onnxruntime attached only "
                            f"{', '.join(session.get_providers())} (TensorRT libraries not found?); install TensorRT "
                            "for this CUDA version, or use --provider cuda")
    return session


def _load_baseline(export_dir: Path, manifest: dict):
    from toolkit.modeling import load_export_source

    # speed does not depend on the weights: a checkpoint retrained since the export still times right
    return load_export_source(export_dir, manifest, "the PyTorch baseline needs it: restore it, or pass --no-baseline",
                              check_sha256=False)


def _vocab_size(export_dir: Path) -> int:
    config = artifacts.read_json(export_dir / artifacts.HF_CONFIG, "model config")
    size = config.get("vocab_size") if isinstance(config, dict) else None
    if not isinstance(size, int) or size < 1:
        raise ArtifactError(f"{export_dir / artifacts.HF_CONFIG}: no vocab_size; re-run `toolkit export --force`")
    return size


def _device(provider: str) -> str:
    return "cpu" if provider == "cpu" else "cuda"


def _note_provider_quirks(runners, notes: list[str]) -> None:
    variants = {(r.variant, r.device) for r in runners}
    if ("fp16", "cpu") in variants:
        notes.append("fp16 on CPU: measured for completeness; onnxruntime's float16 CPU kernels depend on the CPU "
                     "(AVX512-FP16, ARM) and float32 casts fill the gaps; fp16 is the GPU variant")
    if any(r.provider == "tensorrt" for r in runners):
        notes.append("tensorrt: sessions run with trt_fp16_enable, so TensorRT may use fp16 kernels for every "
                     "variant (fp32 included); nodes TensorRT cannot take (com.microsoft fused ops, dynamic int8) "
                     "run on CUDA/CPU")
    if ("int8", "cuda") in variants:
        notes.append("int8 on CUDA: dynamic-quantization ops (DynamicQuantizeLinear, MatMulInteger, ...) are CPU "
                     "kernels, so much of the int8 graph runs on the CPU with copies in between; int8 is the CPU "
                     "variant")


# ---------------------------------------------------------------------------- presets


def _preset_spec(name: str) -> dict:
    return {"preset": name, **PRESETS[name], "labels": PRESET_LABELS, "max_length": PRESET_MAX_LENGTH,
            "seed": PRESET_SEED}


def _preset_shape(name: str) -> dict:
    spec = PRESETS[name]
    return {k: v for k, v in spec.items() if k not in ("architecture", "weights")}


def _checkpoint_spec(checkpoint: Path) -> Optional[dict]:
    try:
        meta = artifacts.read_checkpoint_meta(checkpoint)
    except ArtifactError as e:
        log.warning("%s: unreadable checkpoint metadata (%s); rebuilding", checkpoint, e)
        return None
    return (meta or {}).get("bench_preset")


def _stale_cache(export_dir: Path, checkpoint: Path, spec: dict) -> Optional[str]:
    """Why the cached preset export cannot be reused, or None when it can."""
    if not (export_dir / artifacts.MANIFEST).is_file():
        return "no cached export"
    if _checkpoint_spec(checkpoint) != spec:
        return "cached checkpoint is missing or was built for another preset definition"
    try:
        manifest = artifacts.read_manifest(export_dir)
        artifacts.verify_checksums(export_dir, manifest)
    except ArtifactError as e:
        return f"cached export unusable: {e}"
    missing = [v.value for v in Variant if v.value not in (manifest.get("variants") or {})]
    return f"cached export lacks {', '.join(missing)}" if missing else None


def _build_preset_checkpoint(name: str, out: Path, spec: dict) -> None:
    """A toolkit-style checkpoint (HF directory + toolkit.json) for the preset, written atomically."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from toolkit.demo_corpus import generate_demo_corpus
    from toolkit.modeling import PROBLEM_TYPE, build_classifier, load_tokenizer, minilm_path, train_wordpiece_tokenizer

    labels = [f"label_{i:02d}" for i in range(PRESET_LABELS)]
    torch.manual_seed(PRESET_SEED)
    if name == "bert-base":
        shape = _preset_shape(name)
        config = BertConfig(**shape, num_labels=len(labels), id2label=dict(enumerate(labels)),
                            label2id={n: i for i, n in enumerate(labels)}, problem_type=PROBLEM_TYPE)
        model = BertForSequenceClassification(config)
        # bert-base-uncased's 30522-token vocab ships with the MiniLM package; without it a small
        # WordPiece vocab (ids < 30522) serves, which changes nothing about speed.
        source = minilm_path()
        tokenizer = load_tokenizer(str(source)) if source else train_wordpiece_tokenizer(generate_demo_corpus()[0])
    elif name == "minilm":
        model, tokenizer = build_classifier("minilm", labels, seed=PRESET_SEED)
    else:
        model, tokenizer = build_classifier("tiny", labels, train_texts=generate_demo_corpus()[0], seed=PRESET_SEED)
    model.eval()
    meta = {"format_version": artifacts.FORMAT_VERSION, "created": artifacts.utc_now(), "labels": labels,
            "thresholds": [0.5] * len(labels), "activation": "sigmoid", "max_length": PRESET_MAX_LENGTH,
            "base_model": f"bench preset {name}", "bench_preset": spec, "versions": artifacts.library_versions()}
    with artifacts.atomic_directory(out, force=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        artifacts.write_checkpoint_meta(tmp, meta)


# ---------------------------------------------------------------------------- environment and output


def _versions() -> dict:
    import onnxruntime as ort

    versions = artifacts.library_versions(names=(
        "toolkit", "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "onnxruntime-gpu",
        "tokenizers", "numpy", "matplotlib",
    ))
    versions["python"] = platform.python_version()
    versions["onnxruntime_providers"] = ort.get_available_providers()
    try:
        import torch

        versions["torch_cuda"] = torch.version.cuda
    except ImportError:
        pass  # torch is optional for the runtime; without it the baselines already failed earlier
    return versions


def _settings(cfg: BenchConfig, providers: list[str], threads: int, variants: list[str]) -> dict:
    settings = {
        "provider_requested": cfg.provider, "providers": providers, "threads": threads,
        "variants": variants, "batches": list(cfg.batches), "seq_lens": list(cfg.seq_lens),
        "warmup": cfg.warmup, "iterations": cfg.iterations, "duration_s": cfg.duration,
        "min_iterations_default": MIN_ITERATIONS, "baseline": cfg.baseline,
        "mode": REAL_TEXT if cfg.data else FIXED, "data": str(cfg.data) if cfg.data else None,
        "schedule": "round-robin across runners, one run each per round", "onnxruntime": ORT_SETTINGS,
    }
    if "tensorrt" in providers:
        settings["tensorrt"] = dict(TENSORRT_OPTIONS, trt_engine_cache_path=str(TRT_CACHE_DIR))
    if cfg.data:
        settings["seed_loop_texts"] = SEED_LOOP_TEXTS
    return settings


def _write_outputs(result: BenchResult, cfg: BenchConfig, source: dict) -> None:
    stem = "bench-{}-{}-{}".format(
        _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
        _slug(source.get("preset") or Path(source["export"]).name),
        REAL_TEXT if cfg.data else FIXED,
    )
    json_path = Path(cfg.json_path) if cfg.json_path else RESULTS_DIR / f"{stem}.json"
    csv_path = Path(cfg.csv_path) if cfg.csv_path else RESULTS_DIR / f"{stem}.csv"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(json_path, result_to_dict(result))
    write_csv(result, csv_path)
    result.json_path, result.csv_path = json_path, csv_path
    if cfg.plot:
        result.plot_path = plot_result(result, cfg.plot)


def _row_cells(r: BenchRecord) -> list[str]:
    mode = r.mode if r.mode == FIXED else f"text/{r.padding}"
    speedup = f"{r.speedup:.2f}x" if r.speedup is not None else "-"
    return [r.variant, r.provider, mode, str(r.batch), str(r.seq_len), str(r.threads), f"{r.sequences_per_s:,.1f}",
            f"{r.tokens_per_s:,.0f}", f"{r.latency_mean_ms:.2f}", f"{r.latency_p50_ms:.2f}", f"{r.latency_p90_ms:.2f}",
            f"{r.latency_p99_ms:.2f}", speedup]


def _speedup_legend(result: BenchResult) -> str:
    if any(r.mode == REAL_TEXT for r in result.records):
        seed = next((r for r in result.records if r.variant == SEED_LOOP), None)
        if seed is None:
            return "speedup: texts/s over pytorch-fp32 with the same padding; real-text rates include tokenization"
        return (f"speedup: texts/s over {SEED_LOOP} (the seed notebook's predict_emotions: one text at a time, "
                f"padded to {SEED_LOOP_MAX_LENGTH}, first {seed.texts} texts) in the same batch case and device; "
                "real-text rates include tokenization; tokens/s counts padding")
    return f"speedup: sequences/s over {PYTORCH_FP32} eager on the same device, batch and seq"


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ToolkitError("--plot needs matplotlib: pip install 'toolkit[plot]' (or matplotlib), "
                           "or drop --plot") from e


def _bound(fn: Callable, *args) -> Callable[[], object]:
    return lambda: fn(*args)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in str(text)).strip("-") or "model"


def _physical_cores() -> int:
    from toolkit.runtime import physical_cores

    return physical_cores()


def _logical_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux: platform's answer below
    return platform.processor() or platform.machine() or "unknown CPU"


def _memory_gb() -> Optional[float]:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 ** 2, 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cpu_busy(seconds: float = BUSY_SAMPLE_S) -> Optional[float]:
    """Share of the machine's CPU time other processes used over the next `seconds`; None off Linux."""
    with _OtherCpu() as other:
        time.sleep(seconds)
    return other.share


def _proc_stat() -> Optional[tuple[int, int]]:
    """(total, idle + iowait) clock ticks of all CPUs since boot, from /proc/stat; None off Linux."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    return sum(values[:8]), values[3] + values[4]  # user..steal; guest time is already inside user


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _nvidia_smi() -> dict:
    """GPU name, driver and memory from nvidia-smi; {} when there is no nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {}
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("nvidia-smi failed (%s); the GPU is not recorded", e)
        return {}
    gpus = [[c.strip() for c in line.split(",")] for line in out.strip().splitlines() if line.strip()]
    if not gpus or len(gpus[0]) < 3:
        return {}
    return {"name": " + ".join(g[0] for g in gpus), "driver": gpus[0][1], "memory": gpus[0][2]}

