"""`toolkit export`: PyTorch checkpoint -> one directory with ONNX fp32, fp16 and int8 variants.

Pipeline (`export_model`): load the checkpoint, export fp32 with optimum, fuse the transformer
subgraphs with onnxruntime's optimizer and convert that to fp16, quantize the unfused fp32 graph
to int8 (dynamic, optionally static QDQ; onnxruntime fuses the quantized graph at load), run every
variant against PyTorch on a few sanity texts, then write the manifest. Everything happens in a temporary directory beside `cfg.out` that is renamed
into place only when all of it succeeded.
"""
from __future__ import annotations

import contextlib
import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from toolkit import artifacts, optimize
from toolkit.config import ExportConfig, Variant
from toolkit.errors import ExportError, ModelError, ToolkitError, first_line

log = logging.getLogger(__name__)

INT8_STATIC = "int8_static"  # manifest key of the calibrated QDQ model (`--int8 static`)
VARIANT_ORDER = ("fp32", "fp16", "int8", INT8_STATIC)
PRECISION = {"fp32": "float32", "fp16": "float16", "int8": "int8 dynamic", INT8_STATIC: "int8 static QDQ"}

# Sanity parity gates at export time. fp32 must match PyTorch to float rounding; fp16/int8 only
# warn here (validate gates them on real data) above the limits.
FP32_TOLERANCE = 1e-4
WARN_TOLERANCE = {"fp16": 1e-2, "int8": 5e-2, INT8_STATIC: 5e-2}

# Sanity texts: batch 1 at two lengths, then batch 3 padded to its longest member.
SANITY_BATCHES = (
    ("I love this!",),
    ("Thank you so much for sharing this, it made my whole day better and I cannot stop smiling about it.",),
    ("ok",
     "Why would anyone do that? I am furious and honestly a little scared of what comes next.",
     "What a surprise, I did not expect that at all."),
)


# int8 dynamic quantizes the UNFUSED fp32 graph's MatMuls (and Gather: the embedding tables,
# which MiniLM's size target needs); onnxruntime then fuses each into DynamicQuantizeMatMul and
# the attention subgraphs at session load. Measured on this 2-core AVX-512 host, BERT-base shape,
# batch 32, seq 128 (benchmarks/int8_recipes.py, results/int8-recipes-bert-base.json): 3.56x
# PyTorch eager vs 3.10x when quantizing the fused graph (QAttention + QEmbedLayerNormalization),
# same size (25% of fp32) and the same GoEmotions dev macro-F1 (0.4677 vs 0.4681).
INT8_DYNAMIC_OPS = ("MatMul", "Gather")
INT8_STATIC_OPS = ("MatMul", "Gemm", "Gather")
# reduce_range=True (7-bit weights): u8s8 integer GEMMs on AVX2/AVX-512 CPUs without VNNI add
# pairs of products in saturating int16 and silently overflow with full-range weights; 7-bit
# weights cannot. The artifact is portable, so it must not depend on the exporting CPU having VNNI.
# Measured cost on an AVX512-VNNI host (ORT 1.32): untrained MiniLM, sanity texts, max |Δprob|
# 1.7e-3 with 7-bit weights vs 1.4e-3 with 8-bit; GoEmotions-trained MiniLM, 800 dev texts, mean
# |Δprob| 0.00180 vs 0.00174.
# Only the logits layer stays float: on that trained MiniLM, keeping any one encoder layer, any
# part of layer 0, or the pooler in float changed the flipped decisions on 800 dev texts by noise
# only (31-43 vs 34), while BERT-base's speedup would lose ~3% per float FFN matrix.
INT8_REDUCE_RANGE = True
INT8_PER_CHANNEL = True  # per-output-channel scales: BERT weight ranges vary a lot across channels

FUSED_OPS = ("Attention", "MultiHeadAttention", "QAttention", "SkipLayerNormalization", "EmbedLayerNormalization",
             "QEmbedLayerNormalization", "BiasGelu", "FastGelu", "Gelu", "GemmFastGelu")
QUANTIZED_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention",
                 "QEmbedLayerNormalization", "QLinearMatMul", "DynamicQuantizeLinear", "QuantizeLinear",
                 "DequantizeLinear")


@dataclass
class Parity:
    """PyTorch vs ONNX Runtime sigmoid probabilities on the sanity texts."""

    max_abs_diff: float
    finite: bool
    cases: list[dict] = field(default_factory=list)  # {batch, seq_len, max_abs_diff}

    def to_dict(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "finite": self.finite, "cases": self.cases}


@dataclass
class VariantResult:
    """One written variant. `seconds` is the time to make its file from model.onnx (for fp16 the
    fusion pass included)."""

    variant: str
    file: str
    bytes: int
    seconds: float
    precision: str = ""
    opset: int = 0
    sha256: str = ""
    fused_ops: dict = field(default_factory=dict)
    quantized_ops: dict = field(default_factory=dict)
    quantized_matmuls: int = 0
    initializers: dict = field(default_factory=dict)  # {dtype name: {"count", "bytes"}}
    settings: dict = field(default_factory=dict)  # how the variant was made
    parity: Optional[Parity] = None
    failed: list[str] = field(default_factory=list)  # gate failures at export: the variant ships marked failed

    @property
    def max_abs_diff(self) -> Optional[float]:
        return None if self.parity is None else self.parity.max_abs_diff


@dataclass
class ExportResult:
    """What `export_model` wrote; `fp32_bytes` is model.onnx's size even when fp32 was not kept."""

    out: Path
    variants: list[VariantResult]
    manifest: dict
    fp32_bytes: int = 0
    seconds: float = 0.0

    def variant(self, name: str) -> VariantResult:
        return next(v for v in self.variants if v.variant == name)


def export_model(cfg: ExportConfig) -> ExportResult:
    """Export the checkpoint's variants into `cfg.out` atomically and write the manifest.

    Args:
        cfg: checkpoint, output directory, variants, opset, int8 mode and calibration settings.
    Returns:
        ExportResult with one VariantResult per file written (sizes, fused/quantized ops, parity).
    Raises:
        ArtifactError: `cfg.out` exists without `force`, or cannot be created.
        ModelError: the checkpoint is missing, corrupt, not a multi-label classifier, or its labels mismatch.
        ExportError: a conversion step failed, or a variant's outputs are NaN/Inf or fp32 differs from PyTorch.
    """
    from toolkit.modeling import load_any

    wanted = requested_variants(cfg)
    started = time.perf_counter()
    with _quiet_libraries(), artifacts.atomic_directory(cfg.out, force=cfg.force) as tmp:
        log.info("loading %s", cfg.checkpoint)
        loaded = load_any(cfg.checkpoint, cfg.base_model, cfg.labels)
        _check_labels(cfg, loaded)
        texts = calibration_texts(cfg, loaded) if INT8_STATIC in wanted else []
        work = Path(tempfile.mkdtemp(dir=tmp))  # intermediates; removed before the checksums
        fp32 = _export_fp32(loaded, tmp, work, cfg.opset, keep="fp32" in wanted)
        results = [fp32] if "fp32" in wanted else []
        fp32_path = work / artifacts.variant_file(Variant.FP32)
        if "fp16" in wanted:
            fused, fuse_seconds = optimize.fuse(fp32_path, work, loaded.model.config)
            results.append(optimize.to_fp16(fused, tmp, fuse_seconds, _describe))
        if "int8" in wanted:
            results.append(_quantize_int8(fp32_path, tmp, work, cfg, loaded))
        if INT8_STATIC in wanted:
            results.append(_quantize_int8_static(fp32_path, tmp, work, loaded, texts))
        _check_parity(loaded, tmp, results, int(cfg.max_length or loaded.max_length))
        shutil.rmtree(work)
        manifest = _write_manifest(tmp, cfg, loaded, results, fp32.bytes)
    seconds = time.perf_counter() - started
    log.info("export finished in %.1fs: %s", seconds, cfg.out)
    return ExportResult(Path(cfg.out), results, manifest, fp32.bytes, seconds)


def format_summary(result: ExportResult) -> str:
    """One table: variant, precision, size, size vs fp32, fused ops, quantized MatMuls, max |Δprob|, seconds."""
    from toolkit.tables import format_table

    rows = [("variant", "precision", "size MB", "vs fp32", "fused ops", "quantized MatMuls", "max |Δprob|", "seconds")]
    for v in result.variants:
        ratio = v.bytes / result.fp32_bytes if result.fp32_bytes else float("nan")
        diff = "n/a" if v.max_abs_diff is None else f"{v.max_abs_diff:.2e}"
        rows.append((v.variant, v.precision, f"{v.bytes / 1e6:.1f}", f"{ratio:.0%}", str(sum(v.fused_ops.values())),
                     str(v.quantized_matmuls), diff, f"{v.seconds:.1f}"))
    return format_table(rows) + f"\nwrote {result.out}"


def requested_variants(cfg: ExportConfig) -> tuple[str, ...]:
    """The manifest keys `cfg` asks for, in canonical order (`int8_static` comes with `--int8 static`).

    Raises:
        ToolkitError: a variant name is not one of fp32, fp16, int8.
    """
    names = []
    for v in cfg.variants:
        name = str(getattr(v, "value", v)).strip().lower()
        if name not in artifacts.VARIANT_FILES:
            raise ToolkitError(f"unknown variant {name!r}: choose from {', '.join(artifacts.VARIANT_FILES)}")
        names.append(name)
    if "int8" in names and cfg.int8_mode == "static":
        names.append(INT8_STATIC)
    return tuple(v for v in VARIANT_ORDER if v in names)


def calibration_texts(cfg: ExportConfig, loaded) -> list[str]:
    """Up to `cfg.calibration_samples` training texts for static int8 calibration (seeded sample).

    From `cfg.calibration_data` (a dataset file or directory: its training split; a .txt file: one
    text per line), else from the training data recorded in the checkpoint.

    Raises:
        ExportError: no calibration source (a seed state_dict records none) or no texts in it.
    """
    from toolkit.config import DataConfig
    from toolkit.data import config_from_spec, load_splits

    source = cfg.calibration_data
    spec = (loaded.meta or {}).get("data")
    if source is not None:
        source = Path(source)
        if source.is_file() and source.suffix.lower() == ".txt":
            try:
                texts = [line.strip() for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
            except (OSError, UnicodeDecodeError) as e:
                raise ExportError(f"{source}: cannot read calibration texts ({e}); pass a UTF-8 file, one text per line") from e
        else:
            texts = load_splits(DataConfig(path=source)).train.texts
    elif spec:
        texts = load_splits(config_from_spec(spec)).train.texts
    else:
        raise ExportError(f"{cfg.checkpoint}: --int8 static needs calibration texts and the checkpoint records no "
                          "training data; pass --calibration-data PATH (a dataset or a .txt file, one text per line)")
    if not texts:
        raise ExportError(f"{source or spec.get('path')}: no calibration texts; pass --calibration-data with texts")
    order = np.random.default_rng(0).permutation(len(texts))[: cfg.calibration_samples]
    return [texts[i] for i in order]


# ---------------------------------------------------------------------------- stages


def _export_fp32(loaded, out: Path, work: Path, opset: int, keep: bool) -> VariantResult:
    """optimum's exporter into `work`; the graph (when requested), config.json and tokenizer into `out`."""
    from optimum.exporters.onnx import onnx_export_from_model

    started = time.perf_counter()
    log.info("exporting fp32 ONNX (opset %d) with optimum", opset)
    model = _optimum_exportable(loaded.model)
    try:
        onnx_export_from_model(model, work, opset=opset, task="text-classification", do_validation=False)
    except Exception as e:  # optimum raises many types; the message is what helps
        raise ExportError(f"{loaded.source.get('path')}: ONNX export failed ({first_line(e)}); "
                          "run `toolkit -v export ...` for optimum's full log") from e
    name = artifacts.variant_file(Variant.FP32)
    if keep:
        shutil.copy2(work / name, out / name)
    loaded.model.config.save_pretrained(out)  # id2label, problem_type: what ORTModelForSequenceClassification reads
    loaded.tokenizer.save_pretrained(out)
    if not (out / artifacts.TOKENIZER_JSON).is_file():
        raise ExportError(f"{loaded.source.get('path')}: the tokenizer has no fast version, so no "
                          f"{artifacts.TOKENIZER_JSON} for the runtime; use a checkpoint with a fast tokenizer")
    return _describe("fp32", work / name, time.perf_counter() - started, {"exporter": "optimum"})


def _quantize_int8(fp32_path: Path, out: Path, work: Path, cfg: ExportConfig, loaded) -> VariantResult:
    """Dynamic int8 by `cfg.int8_recipe`; per-token runs the gated search when a validation split is known."""
    import onnx

    from toolkit import quantize

    started = time.perf_counter()
    path = out / artifacts.variant_file(Variant.INT8)
    head = _logits_head_nodes(onnx.load(str(fp32_path), load_external_data=False))
    gate = _int8_gate(cfg, loaded, fp32_path) if cfg.int8_recipe == "per-token" else None
    log.info("quantizing to int8 (%s recipe%s)", cfg.int8_recipe, ", gated search" if gate else "")
    try:
        if gate is None:
            settings = quantize.quantize_int8(fp32_path, path, cfg.int8_recipe, head)
            search = None
        else:
            settings, search = _search_int8(fp32_path, path, work, cfg, head, gate)
    except Exception as e:  # the quantizer raises RuntimeError/ValueError/AssertionError
        raise ExportError(f"{path.name}: int8 quantization failed ({first_line(e)}); "
                          "export --variants fp32,fp16 meanwhile") from e
    settings["search"] = _search_record(cfg, search)
    result = _describe("int8", path, time.perf_counter() - started, settings)
    if search is not None and search.passed is False:
        result.failed = list(search.outcome.failures)
        log.error("int8: NO CANDIDATE PASSED THE INT8 GATES on the validation split within %.0f s (%s). "
                  "model_int8.onnx is written but marked failed in the manifest, and variant='auto' will not "
                  "load it; ship fp16/fp32, or raise --int8-search-seconds / --int8-max-float",
                  cfg.int8_search_seconds, "; ".join(result.failed))
    return result


def _int8_gate(cfg: ExportConfig, loaded, fp32_path: Path):
    """A SplitGate on the checkpoint's validation split, or None (no split recorded, or search disabled)."""
    from toolkit.data import align_labels, config_from_spec, load_splits
    from toolkit.quantize import SplitGate, encode_batches

    spec = (loaded.meta or {}).get("data")
    if not spec or cfg.int8_search_seconds <= 0:
        return None
    splits = load_splits(config_from_spec(spec))
    validation = align_labels(splits.validation, list(loaded.label_names))
    names = _graph_inputs(fp32_path)
    max_length = int(cfg.max_length or loaded.max_length)
    rng = np.random.default_rng(0)
    train_texts = [splits.train.texts[i] for i in rng.permutation(len(splits.train))[: cfg.calibration_texts]]
    feeds = encode_batches(loaded.tokenizer, validation.texts, names, max_length)
    proxy = encode_batches(loaded.tokenizer, train_texts, names, max_length)
    return SplitGate(fp32_path, feeds, validation.labels, np.asarray(loaded.thresholds), loaded.label_names,
                     cfg.gates, proxy)


def _search_int8(fp32_path: Path, path: Path, work: Path, cfg: ExportConfig, head: list[str], gate):
    from toolkit import quantize

    factors = quantize.smoothing_factors(fp32_path, [feed for _, feed in gate.proxy_feeds], head)
    candidate = work / "int8_candidate.onnx"
    built: dict = {}

    def build(smooth: bool, floats: tuple[str, ...]) -> Path:
        built["settings"] = quantize.quantize_int8(fp32_path, candidate, "per-token", [*head, *floats],
                                                   factors if smooth else None)
        built["settings"]["float_nodes"] = list(floats)
        return candidate

    candidates = _quantizable_matmuls(fp32_path, head)
    search = quantize.search_int8(build, gate.evaluate, gate.proxy_error, candidates, cfg.int8_search_seconds,
                                  cfg.int8_max_float)
    shutil.copy2(candidate, path)
    return built["settings"], search


def _search_record(cfg: ExportConfig, search) -> dict:
    if search is None:
        reason = ("per-tensor recipe (comparison only)" if cfg.int8_recipe != "per-token"
                  else "no validation split recorded in the checkpoint" if cfg.int8_search_seconds > 0
                  else "--int8-search-seconds 0")
        return {"ran": False, "reason": reason}
    return {"ran": True, "passed": search.passed, "seconds": round(search.seconds, 1),
            "budget_seconds": cfg.int8_search_seconds, "budget_exhausted": search.budget_exhausted,
            "smoothing": search.smoothing, "float_nodes": list(search.float_nodes),
            "outcome": search.outcome.to_dict() if search.outcome else None, "trace": search.trace,
            "sensitivity": {k: round(v, 6) for k, v in search.sensitivity.items()},
            "reference": "fp32 ONNX graph on the checkpoint's validation split"}


def _quantizable_matmuls(fp32_path: Path, head: list[str]) -> list[str]:
    import onnx

    model = onnx.load(str(fp32_path), load_external_data=False)
    weights = {init.name for init in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights and n.name not in head]


def _quantize_int8_static(fp32_path: Path, out: Path, work: Path, loaded, texts: Sequence[str]) -> VariantResult:
    """Static int8 QDQ calibrated on training texts (MinMax), from the unfused graph so QDQ can wrap every MatMul."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    started = time.perf_counter()
    log.info("quantizing to int8 (static QDQ, %d calibration texts)", len(texts))
    path = out / artifacts.STATIC_INT8_FILE
    prepared = work / ("prepared_" + fp32_path.name)
    try:
        # symbolic shape inference gives up on optimum's sdpa mask subgraph; ONNX shape inference suffices
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        excluded = _logits_head_nodes(onnx.load(str(prepared), load_external_data=False))
        reader = _CalibrationReader(loaded.tokenizer, texts, _graph_inputs(prepared), loaded.max_length)
        quantize_static(
            prepared, path, reader, quant_format=QuantFormat.QDQ, op_types_to_quantize=list(INT8_STATIC_OPS),
            per_channel=INT8_PER_CHANNEL, reduce_range=INT8_REDUCE_RANGE, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, nodes_to_exclude=excluded, calibrate_method=CalibrationMethod.MinMax,
            extra_options={"MatMulConstBOnly": True},  # weights only: Q·K^T stays float
        )
    except Exception as e:  # calibration and the QDQ quantizer raise assorted errors
        raise ExportError(f"{path.name}: static int8 quantization failed ({first_line(e)}); "
                          "use --int8 dynamic meanwhile") from e
    return _describe(INT8_STATIC, path, time.perf_counter() - started,
                     {"mode": "static", "format": "QDQ", "calibration": "MinMax", "calibration_samples": len(texts),
                      "activation_type": "QUInt8", "weight_type": "QInt8", "per_channel": INT8_PER_CHANNEL,
                      "reduce_range": INT8_REDUCE_RANGE, "op_types": list(INT8_STATIC_OPS), "excluded_nodes": excluded})


def _check_parity(loaded, out: Path, results: list[VariantResult], max_length: int) -> None:
    """Run every variant on the sanity texts against PyTorch; raise once with every failure."""
    reference = [_torch_probs(loaded, batch, max_length) for batch in SANITY_BATCHES]
    failures = []
    for result in results:
        result.parity = _parity(out / result.file, reference)
        limit = FP32_TOLERANCE if result.variant == "fp32" else WARN_TOLERANCE[result.variant]
        line = f"{result.variant}: max |Δprob| {result.parity.max_abs_diff:.2e} (limit {limit:.0e})"
        if not result.parity.finite:
            failures.append(f"{result.variant} outputs NaN/Inf")
        elif result.variant == "fp32" and result.parity.max_abs_diff > FP32_TOLERANCE:
            failures.append(line)
        elif result.parity.max_abs_diff > limit:
            log.warning("%s; `toolkit validate` decides on real data", line)
        else:
            log.info(line)
    if failures:
        raise ExportError(f"{loaded.source.get('path')}: variants disagree with PyTorch: {'; '.join(failures)}; "
                          "nothing was written")


def _write_manifest(out: Path, cfg: ExportConfig, loaded, results: list[VariantResult], fp32_bytes: int) -> dict:
    from toolkit.modeling import PROBLEM_TYPE

    config = artifacts.read_json(out / artifacts.HF_CONFIG, "model config")
    if config.get("problem_type") != PROBLEM_TYPE or len(config.get("id2label", {})) != len(loaded.label_names):
        raise ExportError(f"{out / artifacts.HF_CONFIG}: needs problem_type {PROBLEM_TYPE!r} and one id2label entry "
                          "per label; re-export from a multi-label checkpoint")
    files = artifacts.file_checksums(out)
    for r in results:
        r.sha256 = files[r.file]["sha256"]
    manifest = {
        "format_version": artifacts.FORMAT_VERSION,
        "created": artifacts.utc_now(),
        "versions": artifacts.library_versions(),
        "source": dict(loaded.source, checkpoint=str(cfg.checkpoint)),
        "labels": list(loaded.label_names),
        "thresholds": [float(t) for t in loaded.thresholds],
        "activation": "sigmoid",
        "max_length": int(cfg.max_length or loaded.max_length),
        "inputs": _graph_inputs(out / results[0].file),
        "data": loaded.meta.get("data"),
        "variants": {r.variant: _variant_entry(r, fp32_bytes) for r in results},
        "files": files,
    }
    artifacts.write_manifest(out, manifest)
    return manifest


# ---------------------------------------------------------------------------- helpers


def _check_labels(cfg: ExportConfig, loaded) -> None:
    """--labels given with a checkpoint directory must agree with the checkpoint's own labels."""
    from toolkit.data import read_label_names

    if cfg.labels is None or not Path(cfg.checkpoint).is_dir():
        return
    names = read_label_names(cfg.labels)
    if names != list(loaded.label_names):
        raise ModelError(f"{cfg.checkpoint}: has {len(loaded.label_names)} labels {loaded.label_names[:6]}, but --labels "
                         f"gives {len(names)} {names[:6]}; drop --labels or pass the checkpoint's labels in order")


def _optimum_exportable(model):
    """The model as a class optimum recognises.

    optimum infers the library from the class's module, so the CLS-pooling twin defined in
    toolkit.modeling is refused. Its only difference is the parameter-free ClsPooler, so a stock
    BertForSequenceClassification with that submodule swapped in traces to the same graph.
    """
    if type(model).__module__.startswith("transformers."):
        return model
    from transformers import BertForSequenceClassification

    from toolkit.modeling import BertForMultiLabelCLS, ClsPooler

    if not isinstance(model, BertForMultiLabelCLS):
        raise ModelError(f"{type(model).__name__}: not a transformers model class; export a *ForSequenceClassification checkpoint")
    twin = BertForSequenceClassification(model.config)
    twin.bert.pooler = ClsPooler()
    twin.load_state_dict(model.state_dict(), strict=True)
    return twin.eval()


def _describe(variant: str, path: Path, seconds: float, settings: dict) -> VariantResult:
    """File facts of a written variant: size, hash, opset, fused/quantized op counts, initializer dtypes."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    initializers = {}
    for init in model.graph.initializer:
        entry = initializers.setdefault(onnx.TensorProto.DataType.Name(init.data_type), {"count": 0, "bytes": 0})
        entry["count"] += 1
        entry["bytes"] += len(init.raw_data) if init.HasField("raw_data") else onnx.numpy_helper.to_array(init).nbytes
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return VariantResult(
        variant=variant, file=path.name, bytes=path.stat().st_size, seconds=seconds, precision=PRECISION[variant],
        opset=opset,  # sha256: set with the manifest, which hashes every file once
        fused_ops={k: ops[k] for k in FUSED_OPS if k in ops},
        quantized_ops={k: ops[k] for k in QUANTIZED_OPS if k in ops},
        quantized_matmuls=_count_quantized_matmuls(model), initializers=initializers, settings=settings,
    )


def _count_quantized_matmuls(model) -> int:
    """Integer MatMuls (dynamic: MatMulInteger, QAttention, ...) plus QDQ MatMul/Gemm whose weight is dequantized."""
    integer = sum(1 for n in model.graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul",
                                                                "MatMulIntegerToFloat", "QAttention", "QLinearMatMul"))
    inits = {i.name for i in model.graph.initializer}
    dequantized_weights = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    qdq = sum(1 for n in model.graph.node
              if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in dequantized_weights)
    return integer + qdq


def _logits_head_nodes(model) -> list[str]:
    """Names of the MatMul/Gemm (and its bias Add) that produce the graph's logits: kept in float.

    The classifier's few outputs carry the decision; quantizing it buys nothing in size or speed.
    """
    producers = {out: n for n in model.graph.node for out in n.output}
    names = []
    for output in model.graph.output:
        node = producers.get(output.name)
        if node is not None and node.op_type == "Add":  # MatMul + bias
            names.append(node.name)
            node = next((producers[i] for i in node.input if i in producers and producers[i].op_type == "MatMul"), None)
        if node is not None and node.op_type in ("MatMul", "Gemm"):
            names.append(node.name)
    return [n for n in names if n]


def _graph_inputs(path: Path) -> list[str]:
    import onnx

    return [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]


def _torch_probs(loaded, texts: Sequence[str], max_length: int) -> tuple[dict, np.ndarray]:
    import torch

    enc = loaded.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np")
    loaded.model.eval()
    with torch.inference_mode():
        logits = loaded.model(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits
    return dict(enc), torch.sigmoid(logits.float()).numpy()


def _parity(path: Path, reference: list[tuple[dict, np.ndarray]]) -> Parity:
    session = _cpu_session(path)
    names = [i.name for i in session.get_inputs()]
    cases, worst, finite = [], 0.0, True
    for enc, expected in reference:
        missing = [n for n in names if n not in enc]
        if missing:
            raise ExportError(f"{path.name}: graph input(s) {missing} are not produced by the tokenizer; "
                              "re-export with the checkpoint's own tokenizer")
        logits = session.run(None, {n: enc[n].astype(np.int64) for n in names})[0]
        finite &= bool(np.isfinite(logits).all())
        probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        diff = float(np.nan_to_num(np.abs(probs - expected), nan=math.inf).max())
        worst = max(worst, diff)
        cases.append({"batch": int(expected.shape[0]), "seq_len": int(enc["input_ids"].shape[1]), "max_abs_diff": diff})
    return Parity(max_abs_diff=worst, finite=finite, cases=cases)


def _cpu_session(path: Path):
    """The one place export opens onnxruntime: the runtime's own session factory, on CPU (tests' and CI's provider)."""
    from toolkit.runtime import open_session

    return open_session(path, provider="cpu")


class _CalibrationReader:
    """Feeds calibration texts one at a time (no padding, so pad positions do not skew the ranges).

    onnxruntime's CalibrationDataReader is a protocol (`get_next`, checked by __subclasshook__), so
    this class needs no onnxruntime import at module load.
    """

    def __init__(self, tokenizer, texts: Sequence[str], input_names: list[str], max_length: int):
        self._items = iter(texts)
        self._tokenizer = tokenizer
        self._names = input_names
        self._max_length = max_length

    def get_next(self) -> Optional[dict]:
        text = next(self._items, None)
        if text is None:
            return None
        enc = self._tokenizer([text], truncation=True, max_length=self._max_length, return_tensors="np")
        return {n: enc[n].astype(np.int64) for n in self._names}

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


def _variant_entry(r: VariantResult, fp32_bytes: int) -> dict:
    return {"file": r.file, "sha256": r.sha256, "bytes": r.bytes, "size_vs_fp32": r.bytes / fp32_bytes,
            "opset": r.opset, "precision": r.precision, "fused_ops": r.fused_ops, "quantized_ops": r.quantized_ops,
            "quantized_matmuls": r.quantized_matmuls, "initializers": r.initializers, "settings": r.settings,
            "export_seconds": r.seconds, "parity": r.parity.to_dict() if r.parity else None,
            # what `EmotionClassifier.load(variant="auto")` reads: a failed variant is never picked
            "status": "failed" if r.failed else "ok", "failures": list(r.failed)}


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Keep the export's own progress lines readable: mute library chatter unless logging is at DEBUG.

    onnxruntime's fusion and quantization tools log every step at INFO, partly on the root logger
    (`logging.info`), so a level change on their loggers cannot reach them; a filter on the root
    handlers drops non-toolkit records below WARNING instead. optimum has its own verbosity switch,
    and torch's tracer warns about constants that are fine for a fixed-architecture encoder.
    """
    import warnings

    import torch
    from optimum.utils import logging as optimum_logging

    root = logging.getLogger()
    if root.getEffectiveLevel() <= logging.DEBUG:
        yield
        return

    def keep(record: logging.LogRecord) -> bool:
        if record.name.startswith("toolkit"):
            return True
        # the quantizer's hint to pre-process: export fuses (dynamic) or runs quant_pre_process (static) itself
        return record.levelno >= logging.WARNING and not record.getMessage().startswith("Please consider to run pre-processing")

    handlers = list(root.handlers)
    verbosity = optimum_logging.get_verbosity()
    for handler in handlers:
        handler.addFilter(keep)
    optimum_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            yield
    finally:
        optimum_logging.set_verbosity(verbosity)
        for handler in handlers:
            handler.removeFilter(keep)
