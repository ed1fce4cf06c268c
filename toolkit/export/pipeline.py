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

from toolkit import artifacts
from toolkit.config import ExportConfig, Provider, Variant
from toolkit.errors import ExportError, ModelError, first_line
from toolkit.export import int8, openvino, optimize
from toolkit.metrics import sigmoid

log = logging.getLogger(__name__)

PRECISION = {Variant.FP32: "float32", Variant.FP16: "float16", Variant.INT8: "int8 dynamic",
             Variant.INT8_STATIC: "int8 static QDQ"}

# Sanity parity gates at export time. fp32 must match PyTorch to float rounding; fp16/int8 only
# warn here (validate gates them on real data) above the limits.
FP32_TOLERANCE = 1e-4
WARN_TOLERANCE = {Variant.FP16: 1e-2, Variant.INT8: 5e-2, Variant.INT8_STATIC: 5e-2}

# Sanity texts: batch 1 at two lengths, then batch 3 padded to its longest member.
SANITY_BATCHES = (
    ("I love this!",),
    ("Thank you so much for sharing this, it made my whole day better and I cannot stop smiling about it.",),
    ("ok",
     "Why would anyone do that? I am furious and honestly a little scared of what comes next.",
     "What a surprise, I did not expect that at all."),
)


FUSED_OPS = ("Attention", "MultiHeadAttention", "QAttention", "SkipLayerNormalization", "EmbedLayerNormalization",
             "QEmbedLayerNormalization", "BiasGelu", "FastGelu", "Gelu", "GemmFastGelu")
QUANTIZED_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention",
                 "QEmbedLayerNormalization", "QLinearMatMul", "DynamicQuantizeLinear", "QuantizeLinear",
                 "DequantizeLinear")


@dataclass
class SanityParity:
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
    parity: Optional[SanityParity] = None
    failed: list[str] = field(default_factory=list)  # gate failures at export: the variant ships marked failed
    not_gated: str = ""  # why int8 had no gate at export (no usable data): shipped marked 'not gated'

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
    from toolkit.modeling import check_max_length, load_any

    wanted = requested_variants(cfg)
    started = time.perf_counter()
    with _quiet_libraries(), artifacts.atomic_directory(cfg.out, force=cfg.force) as tmp:
        log.info("loading %s", cfg.checkpoint)
        loaded = load_any(cfg.checkpoint, cfg.base_model, cfg.labels)
        _check_labels(cfg, loaded)
        loaded.max_length = check_max_length(loaded, cfg.max_length)  # before any conversion: refused up front
        texts = int8.calibration_texts(cfg, loaded) if Variant.INT8_STATIC in wanted else []
        work = Path(tempfile.mkdtemp(dir=tmp))  # intermediates; removed before the checksums
        fp32 = _export_fp32(loaded, tmp, work, cfg.opset, keep=Variant.FP32 in wanted)
        results = [fp32] if Variant.FP32 in wanted else []
        fp32_path = work / artifacts.variant_file(Variant.FP32)
        if Variant.FP16 in wanted:
            results.append(optimize.to_fp16(optimize.fuse(fp32_path, work, loaded.model.config), tmp, _describe))
        not_written: dict[str, str] = {}  # variant -> why its conversion failed; the others still ship
        # the int8 gate, (SplitGate or None, record): built once, for the per-token search and ov_int8's gates
        shared: dict = {}
        if Variant.INT8 in wanted:
            def dynamic_int8() -> VariantResult:
                started = time.perf_counter()
                if cfg.int8_recipe == "per-token":
                    shared["gate"] = int8.checkpoint_gate(cfg, loaded, fp32_path)
                gate_seconds = time.perf_counter() - started
                result = int8.dynamic_int8_variant(fp32_path, tmp, work, cfg, loaded, _describe, gate=shared.get("gate"))
                result.seconds += gate_seconds  # building the gate is part of making the file, as before
                return result

            _convert(Variant.INT8, results, not_written, dynamic_int8)
        if Variant.INT8_STATIC in wanted:
            _convert(Variant.INT8_STATIC, results, not_written,
                     lambda: int8.static_int8_variant(fp32_path, tmp, work, loaded, texts, _describe))
        if not results:
            raise ExportError(f"{cfg.checkpoint}: no variant could be converted ({'; '.join(not_written.values())}); "
                              "nothing was written")
        _check_parity(loaded, tmp, results, int(cfg.max_length or loaded.max_length))
        # after the ONNX variants, from the same fp32 graph; an OpenVINO failure never loses them
        # static int8's calibration texts serve ov_int8 too; None: export_stage loads them (an error only logs)
        ov_results = openvino.export_stage(cfg, loaded, fp32_path, tmp, wanted, results,
                                           calibration_texts=texts if Variant.INT8_STATIC in wanted else None,
                                           int8_gate=shared.get("gate"))
        shutil.rmtree(work)
        manifest = _write_manifest(tmp, cfg, loaded, results, fp32.bytes, not_written)
        if ov_results:
            manifest = openvino.record_openvino_variants(tmp, manifest, ov_results)
    seconds = time.perf_counter() - started
    log.info("export finished in %.1fs: %s", seconds, cfg.out)
    written = [r for r in ov_results if r.variant in manifest["variants"]]
    return ExportResult(Path(cfg.out), results + written, manifest, fp32.bytes, seconds)


def format_summary(result: ExportResult) -> str:
    """One table: variant, precision, size, size vs fp32, fused ops, quantized MatMuls, max |Δprob|, seconds."""
    from toolkit.tables import format_table

    rows = [("variant", "precision", "size MB", "vs fp32", "fused ops", "quantized MatMuls", "max |Δprob|", "seconds")]
    for v in result.variants:
        ratio = v.bytes / result.fp32_bytes if result.fp32_bytes else float("nan")
        diff = "n/a" if v.max_abs_diff is None else f"{v.max_abs_diff:.2e}"
        rows.append((v.variant, v.precision, f"{v.bytes / 1e6:.1f}", f"{ratio:.0%}", str(sum(v.fused_ops.values())),
                     str(v.quantized_matmuls), diff, f"{v.seconds:.1f}"))
    notes = []
    for v in result.variants:
        fusion = v.settings.get("fusion") or {}
        if fusion.get("nothing_fused"):
            notes.append(f"{v.variant}: no transformer fusion ({fusion.get('note')}); LayerNorm and Softmax stay float32")
        floats = (v.settings.get("matmuls") or {}).get("float") or {}
        if floats:
            notes.append(f"{v.variant}: {len(floats)} MatMul(s) kept float: "
                         + "; ".join(f"{name} ({why})" for name, why in floats.items()))
    notes += [f"{name}: NOT WRITTEN: {why}" for name, why in (result.manifest.get("not_written") or {}).items()]
    return "\n".join([format_table(rows), *notes, f"wrote {result.out}"])


def requested_variants(cfg: ExportConfig) -> tuple[Variant, ...]:
    """The variants `cfg` asks for, in canonical order (`int8_static` comes with `--int8 static`).

    Raises:
        ToolkitError: a variant name is not one of fp32, fp16, int8.
    """
    names = [Variant.parse(v, Variant.exportable()) for v in cfg.variants]
    if names and all(v.is_openvino for v in names):
        raise ExportError(f"--variants {','.join(names)}: OpenVINO variants are built from the fp32 ONNX graph; "
                          f"name an ONNX variant too, e.g. --variants fp32,{','.join(names)}")
    if Variant.INT8 in names and cfg.int8_mode == "static":
        names.append(Variant.INT8_STATIC)
    return tuple(v for v in Variant if v in names)


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
    shared = int8.inline_weight_identities(work / name)
    if shared:
        log.info("fp32: %d MatMuls read a shared weight through Identity; they now read the initializer", shared)
    if keep:
        shutil.copy2(work / name, out / name)
    loaded.model.config.save_pretrained(out)  # id2label, problem_type: what ORTModelForSequenceClassification reads
    loaded.tokenizer.save_pretrained(out)
    if not (out / artifacts.TOKENIZER_JSON).is_file():
        raise ExportError(f"{loaded.source.get('path')}: the tokenizer has no fast version, so no "
                          f"{artifacts.TOKENIZER_JSON} for the runtime; use a checkpoint with a fast tokenizer")
    _record_padding(out / artifacts.TOKENIZER_JSON, loaded.tokenizer)
    return _describe(Variant.FP32, work / name, time.perf_counter() - started, {"exporter": "optimum"})


def _record_padding(path: Path, tokenizer) -> None:
    """Write the checkpoint tokenizer's pad token into tokenizer.json's padding section.

    The runtime reads its pad id from there; transformers saves that section only while padding is
    on, so without this RoBERTa (pad 1) or ModernBERT would be padded with a guessed id.
    """
    from tokenizers import Tokenizer

    if tokenizer.pad_token_id is None:
        raise ExportError(f"{path.parent}: the tokenizer has no pad token; set tokenizer.pad_token in the checkpoint "
                          "(batches of different lengths need one)")
    backend = Tokenizer.from_file(str(path))
    backend.enable_padding(pad_id=int(tokenizer.pad_token_id), pad_token=str(tokenizer.pad_token))
    backend.save(str(path))


def _check_parity(loaded, out: Path, results: list[VariantResult], max_length: int) -> None:
    """Run every variant on the sanity texts against PyTorch; raise once with every failure."""
    reference = [_torch_probs(loaded, batch, max_length) for batch in SANITY_BATCHES]
    failures = []
    for result in results:
        result.parity = _parity(out / result.file, reference)
        limit = FP32_TOLERANCE if result.variant == Variant.FP32 else WARN_TOLERANCE[result.variant]
        line = f"{result.variant}: max |Δprob| {result.parity.max_abs_diff:.2e} (limit {limit:.0e})"
        if not result.parity.finite:
            failures.append(f"{result.variant} outputs NaN/Inf")
        elif result.variant == Variant.FP32 and result.parity.max_abs_diff > FP32_TOLERANCE:
            failures.append(line)
        elif result.parity.max_abs_diff > limit:
            log.warning("%s; `toolkit validate` decides on real data", line)
        else:
            log.info(line)
    if failures:
        raise ExportError(f"{loaded.source.get('path')}: variants disagree with PyTorch: {'; '.join(failures)}; "
                          "nothing was written")


def _convert(variant: Variant, results: list[VariantResult], not_written: dict[str, str], make) -> None:
    """Append `make()`'s variant; if its conversion fails, record why and go on without it.

    An int8 quantizer failure must not cost the user fp32 and fp16, which are already converted;
    the manifest's `not_written` and an error in the log say what is missing and why.
    """
    try:
        results.append(make())
    except ExportError as e:
        not_written[variant.value] = str(e)
        log.error("%s NOT WRITTEN: %s; the other variants are exported", variant.value, e)


def _write_manifest(out: Path, cfg: ExportConfig, loaded, results: list[VariantResult], fp32_bytes: int,
                    not_written: Optional[dict[str, str]] = None) -> dict:
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
        "inputs": int8.graph_inputs(out / results[0].file),
        "data": loaded.meta.get("data"),
        "variants": {r.variant: _variant_entry(r, fp32_bytes) for r in results},
        "not_written": dict(not_written or {}),  # requested variants whose conversion failed, and why
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


def _torch_probs(loaded, texts: Sequence[str], max_length: int) -> tuple[dict, np.ndarray]:
    import torch

    enc = loaded.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np")
    loaded.model.eval()
    with torch.inference_mode():
        logits = loaded.model(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits
    return dict(enc), torch.sigmoid(logits.float()).numpy()


def _parity(path: Path, reference: list[tuple[dict, np.ndarray]]) -> SanityParity:
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
        probs = sigmoid(logits)
        diff = float(np.nan_to_num(np.abs(probs - expected), nan=math.inf).max())
        worst = max(worst, diff)
        cases.append({"batch": int(expected.shape[0]), "seq_len": int(enc["input_ids"].shape[1]), "max_abs_diff": diff})
    return SanityParity(max_abs_diff=worst, finite=finite, cases=cases)


def _cpu_session(path: Path):
    """The one place export opens onnxruntime: the runtime's own session factory, on CPU (tests' and CI's provider)."""
    from toolkit.runtime import open_session

    return open_session(path, provider=Provider.CPU.value)


def _variant_entry(r: VariantResult, fp32_bytes: int) -> dict:
    return {"file": r.file, "sha256": r.sha256, "bytes": r.bytes, "size_vs_fp32": r.bytes / fp32_bytes,
            "opset": r.opset, "precision": r.precision, "fused_ops": r.fused_ops, "quantized_ops": r.quantized_ops,
            "quantized_matmuls": r.quantized_matmuls, "initializers": r.initializers, "settings": r.settings,
            "export_seconds": r.seconds, "parity": r.parity.to_dict() if r.parity else None,
            # what `EmotionClassifier.load(variant="auto")` reads: a failed variant is never picked, nor an
            # int8 that no data gated (until `toolkit validate` certifies it)
            "status": "failed" if r.failed else artifacts.NOT_GATED if r.not_gated else "ok", "failures": list(r.failed),
            **({"not_gated": r.not_gated} if r.not_gated else {})}


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
