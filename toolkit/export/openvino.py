"""OpenVINO IR variants of an export: NNCF static int8, and the fp32 IR run at the CPU's bf16 precision.

Both are built from the export's own fp32 ONNX graph (the one every ONNX variant starts from), so
they share its inputs, its outputs and the tokenizer in the directory:

- `ov_int8` (`openvino_model_int8.xml`): `nncf.quantize` with `ModelType.TRANSFORMER` (NNCF's
  transformer preset: mixed symmetric/asymmetric scales, SmoothQuant on MatMuls, fast bias
  correction), calibrated on training texts one at a time (unpadded, so pad positions do not skew
  the ranges). What the ONNX int8 search learned carries over through `ignored_scope`: the logits
  layer and every MatMul the search kept in float stay float here too. Scales are static, fixed at
  calibration, so a text's int8 inputs do not depend on its batch-mates the way onnxruntime's
  per-tensor dynamic int8 does; a float that differs in its last bit with the batch shape can still
  round to the next int8 step (demo MiniLM: up to 1.2e-2 in probability, no decision flipped). It
  runs at f32 inference precision: at bf16 its scores moved with padding (see INFERENCE_PRECISION).
  `toolkit.batch_dependence` measures every variant; `toolkit validate` fails a batching flip.
- `ov_bf16` (`openvino_model.xml`, the file name optimum-intel loads by default): the fp32 graph as
  IR with fp32 weights, run with INFERENCE_PRECISION_HINT bf16. Built only where the CPU has bf16
  kernels (AVX512-BF16 or AMX): elsewhere it would be the fp32 model under another name.

Each variant records how it was made (settings), its sizes, its inference precision and its
sanity parity against the fp32 ONNX graph. `build_openvino_variants` never raises for an OpenVINO or
NNCF failure: the variant comes back marked failed with the reason, and the ONNX variants are kept.

Needs `openvino` and `nncf` (`pip install toolkit[openvino]`); the runtime side needs only openvino.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from toolkit import artifacts
from toolkit.errors import ExportError, first_line

log = logging.getLogger(__name__)

OV_INT8 = "ov_int8"
OV_BF16 = "ov_bf16"
VARIANTS = (OV_INT8, OV_BF16)
# IR files (`.xml` graph, `.bin` weights beside it). openvino_model.xml is optimum-intel's default name,
# so `OVModelForSequenceClassification.from_pretrained(export_dir)` opens the fp32 IR as it is.
FILES = {OV_INT8: "openvino_model_int8.xml", OV_BF16: "openvino_model.xml"}
PRECISION = {OV_INT8: "int8 static (NNCF)", OV_BF16: "float32 weights, bf16 compute"}
# INFERENCE_PRECISION_HINT each variant runs at. ov_int8: f32 for the ops NNCF leaves in float.
# OpenVINO's default on a bf16 CPU (bf16) made the int8 model padding-dependent: on the tiny test
# model a text scored 0.21 alone and 0.36 padded in a batch (25 batching flips on 300 texts, OpenVINO
# 2026.4, NNCF 3.4), while at f32 alone and batched were identical. Demo MiniLM, 1,024 GoEmotions texts:
# bf16 moved a probability by up to 0.72 with batching (34 flips), f32 by 1.2e-2 (0 flips); benchmarks/openvino.md.
INFERENCE_PRECISION = {OV_INT8: "f32", OV_BF16: "bf16"}
INSTALL_HINT = "pip install openvino nncf (or `pip install toolkit[openvino]`)"
# NNCF's own default subset; statistics settle well before (BERT: 300 texts, NNCF's documented default).
DEFAULT_CALIBRATION_TEXTS = 300
# The sanity texts and their warning limit are export's own (toolkit.export.pipeline: SANITY_BATCHES and
# WARN_TOLERANCE[int8], a sanity check: validate gates on real data), imported in `_sanity`: pipeline imports this module.


@dataclass
class OpenVINOVariant:
    """One IR written into the export: file facts, settings and the sanity parity vs the fp32 ONNX graph."""

    variant: str
    file: str  # the .xml; its weights are `weights_file`
    weights_file: str
    bytes: int  # xml + bin
    seconds: float
    precision: str
    settings: dict = field(default_factory=dict)
    max_abs_diff: Optional[float] = None  # sanity texts, probabilities vs fp32 ONNX
    finite: bool = True
    failed: list[str] = field(default_factory=list)
    not_gated: str = ""  # why ov_int8 was not gated at export (no validation split); "" when gated or not int8
    fused_ops: dict = field(default_factory=dict)  # export's summary columns (OpenVINO fuses at compile time)
    quantized_matmuls: int = 0  # MatMuls fed by a FakeQuantize

    def manifest_entry(self, fp32_bytes: int, checksums: dict) -> dict:
        """The manifest's `variants[name]` entry (file facts from `checksums`, the manifest's `files`)."""
        return {"file": self.file, "weights_file": self.weights_file, "backend": "openvino",
                "sha256": (checksums.get(self.file) or {}).get("sha256"),
                "weights_sha256": (checksums.get(self.weights_file) or {}).get("sha256"),
                "bytes": self.bytes, "size_vs_fp32": self.bytes / fp32_bytes if fp32_bytes else None,
                "precision": self.precision, "inference_precision": self.settings.get("inference_precision"),
                "settings": self.settings, "export_seconds": self.seconds,
                "parity": {"reference": "fp32 ONNX", "max_abs_diff": self.max_abs_diff, "finite": self.finite},
                "status": "failed" if self.failed else "not gated" if self.not_gated else "ok",
                "failures": list(self.failed), "not_gated": self.not_gated}


def build_openvino_variants(fp32_onnx: Path, out: Path, variants: Sequence[str], calibration_texts: Sequence[str],
                            max_length: int, int8_settings: Optional[dict] = None,
                            gate=None) -> list[OpenVINOVariant]:
    """Write the requested OpenVINO IR variants of `fp32_onnx` into `out` (the export's build dir).

    Args:
        fp32_onnx: the export's unfused fp32 ONNX graph.
        out: the export directory being built; holds `tokenizer.json`, which tokenizes calibration.
        variants: any of VARIANTS.
        calibration_texts: training texts for NNCF's statistics (ov_int8); the first
            DEFAULT_CALIBRATION_TEXTS are used.
        max_length: truncation, the export's.
        int8_settings: the ONNX int8 variant's manifest settings; its `excluded_nodes` (the logits
            layer) and `float_nodes` (the search's picks) become NNCF's ignored_scope. None: the
            logits layer is found in the graph.
        gate: the export's int8 `SplitGate` (validation split, fp32 reference, the int8 gates), or
            None; ov_int8 is marked failed when it fails those gates, as the ONNX int8 would be.

    Returns:
        One OpenVINOVariant per requested variant that this CPU can build (ov_bf16 needs bf16);
        a variant whose build failed is returned marked failed, with no files left behind.

    Raises:
        ExportError: openvino or nncf is not installed, or a name is not one of VARIANTS.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ExportError(f"unknown OpenVINO variant(s) {unknown}: choose from {', '.join(VARIANTS)}")
    ov = _import("openvino")
    out = Path(out)
    results = []
    for name in [v for v in VARIANTS if v in variants]:
        if name == OV_BF16 and not _cpu_has_bf16():
            log.warning("%s skipped: this CPU has no bf16 kernels (AVX512-BF16 or AMX), so it would be the fp32 "
                        "model under another name", OV_BF16)
            continue
        started = time.perf_counter()
        try:
            model = ov.convert_model(str(fp32_onnx))
            if name == OV_INT8:
                model, settings = _quantize(model, fp32_onnx, out, calibration_texts, max_length, int8_settings)
            else:
                settings = {"converter": "openvino.convert_model", "weights": "float32"}
            settings.update(inference_precision=INFERENCE_PRECISION[name], openvino=ov.__version__.split("-")[0])
            xml = out / FILES[name]
            # compress_to_fp16=False: save_model halves float weights by default; fp32 must stay fp32,
            # and the int8 model's float layers (logits, the search's picks) stay as the ONNX int8 has them.
            ov.save_model(model, str(xml), compress_to_fp16=False)
        except Exception as e:  # openvino and nncf raise their own RuntimeError/ValueError types
            _remove(out, name)
            log.error("%s: NOT BUILT (%s); the ONNX variants are unaffected", name, first_line(e))
            results.append(OpenVINOVariant(name, FILES[name], _weights(FILES[name]), 0, time.perf_counter() - started,
                                           PRECISION[name], failed=[f"build failed: {first_line(e)}"]))
            continue
        result = OpenVINOVariant(name, xml.name, _weights(xml.name), _ir_bytes(xml), time.perf_counter() - started,
                                 PRECISION[name], settings)
        session = _open(result, out)  # compiled once, for the sanity texts and the gate
        _sanity(result, session, fp32_onnx, out, max_length)
        if name == OV_INT8:
            result.quantized_matmuls = settings["quantized_matmuls"]
            if gate is not None:
                _gate(result, session, gate)
            else:
                result.not_gated = "no validation split to gate it on"
        results.append(result)
    return results


def export_stage(cfg, loaded, fp32_onnx: Path, out: Path, wanted: Sequence, onnx_results: Sequence,
                 calibration_texts: Optional[Sequence[str]] = None,
                 int8_gate: Optional[tuple] = None) -> list[OpenVINOVariant]:
    """The export pipeline's OpenVINO step: the requested OpenVINO variants, after the ONNX ones.

    Calibration texts and the int8 gate come the way the ONNX int8 gets them (`toolkit.export.int8`);
    when either is missing, ov_int8 is skipped or shipped 'not gated', and the ONNX variants are kept.

    Args:
        cfg: the ExportConfig; loaded: the loaded checkpoint; fp32_onnx: the unfused fp32 graph.
        wanted: the requested variants (names or toolkit.config.Variant members); others are ignored.
        onnx_results: the ONNX VariantResults written so far (the int8 one's settings carry its float MatMuls).
        calibration_texts: the texts static int8 calibrated on, when the export loaded them; None: loaded here.
        int8_gate: `int8.checkpoint_gate`'s (SplitGate or None, record) when the ONNX int8 built it already
            (same checkpoint, same fp32 graph); None: built here.
    """
    names = [str(getattr(v, "value", v)) for v in wanted if str(getattr(v, "value", v)) in VARIANTS]
    if not names:
        return []
    from toolkit.export import int8

    texts, gate = [], None
    if OV_INT8 in names:
        if calibration_texts is not None:
            texts = list(calibration_texts)
        else:
            try:
                texts = int8.calibration_texts(cfg, loaded)
            except ExportError as e:
                log.error("ov_int8: no calibration texts (%s)", e)
        gate = (int8_gate if int8_gate is not None else int8.checkpoint_gate(cfg, loaded, fp32_onnx))[0]
    int8_settings = next((r.settings for r in onnx_results if str(r.variant) == "int8"), None)
    return build_openvino_variants(fp32_onnx, out, names, texts, int(cfg.max_length or loaded.max_length),
                                   int8_settings, gate)


def record_openvino_variants(export_dir: Path, manifest: dict, results: Sequence[OpenVINOVariant]) -> dict:
    """Add the built variants to the export's manifest (entries, and their IR files' checksums) and write it.

    A variant whose build failed is recorded under `openvino_skipped` with its reason, not as a variant.
    Only the IR files (.xml, .bin) are hashed here; the manifest's `files` already holds every other file's.

    Returns:
        The manifest as written.
    """
    export_dir = Path(export_dir)
    files = dict(manifest.get("files") or {})
    for r in results:
        for name in (r.file, r.weights_file):
            path = export_dir / name
            if path.is_file():
                files[name] = {"sha256": artifacts.sha256_file(path), "bytes": path.stat().st_size}
            else:
                files.pop(name, None)
    files = dict(sorted(files.items()))  # file_checksums' order
    fp32_bytes = int(((manifest.get("variants") or {}).get("fp32") or {}).get("bytes")
                     or (files.get(artifacts.variant_file("fp32")) or {}).get("bytes") or 0)
    variants = dict(manifest.get("variants") or {})
    skipped = dict(manifest.get("openvino_skipped") or {})
    for r in results:
        if (export_dir / r.file).is_file():
            variants[r.variant] = r.manifest_entry(fp32_bytes, files)
            skipped.pop(r.variant, None)
        else:
            variants.pop(r.variant, None)
            skipped[r.variant] = "; ".join(r.failed)
    manifest = dict(manifest, variants=variants, files=files,
                    versions=dict(manifest.get("versions") or {}, **_versions()))
    if skipped:
        manifest["openvino_skipped"] = skipped
    artifacts.write_manifest(export_dir, manifest)
    return manifest


def ignored_matmuls(int8_settings: Optional[dict], fp32_onnx: Path) -> list[str]:
    """ONNX node names to keep in float: the ONNX int8's excluded and float-kept MatMuls, else the logits layer."""
    if int8_settings:
        names = [*int8_settings.get("excluded_nodes", ()), *int8_settings.get("float_nodes", ())]
        if names:
            return sorted(set(names))
    import onnx

    from toolkit.export.int8 import logits_head_nodes

    return logits_head_nodes(onnx.load(str(fp32_onnx), load_external_data=False))


def ov_node_names(model, onnx_names: Sequence[str]) -> list[str]:
    """The OpenVINO MatMul ops made from these ONNX nodes.

    OpenVINO's ONNX frontend keeps an ONNX node's name as the op's friendly name, with a suffix
    when it splits a node (Gemm becomes `<name>/WithoutBiases` MatMul + Add); names absent from the
    graph (the ONNX quantizer's `<name>_MatMul` spellings) match nothing.
    """
    wanted = set(onnx_names)
    found = []
    for op in model.get_ops():
        if op.get_type_name() != "MatMul":
            continue
        name = op.get_friendly_name()
        if name in wanted or any(name.startswith(w + "/") for w in wanted):
            found.append(name)
    return sorted(found)


# ---------------------------------------------------------------------------- stages


def _quantize(model, fp32_onnx: Path, out: Path, texts: Sequence[str], max_length: int,
              int8_settings: Optional[dict]):
    """NNCF post-training int8 of `model`; returns the quantized model and its settings."""
    nncf = _import("nncf")
    if not texts:
        raise ExportError("ov_int8 needs calibration texts and none were given (the checkpoint records no "
                          "training data); pass --calibration-data")
    texts = list(texts)[:DEFAULT_CALIBRATION_TEXTS]
    keep_float = ignored_matmuls(int8_settings, fp32_onnx)
    ignored = ov_node_names(model, keep_float)
    feeds = _feeds(out, texts, [p.get_any_name() for p in model.inputs], max_length)
    quantized = nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                              target_device=nncf.TargetDevice.CPU, subset_size=len(feeds),
                              ignored_scope=nncf.IgnoredScope(names=ignored, validate=False) if ignored else None)
    fake_quantize = sum(1 for op in quantized.get_ops() if op.get_type_name() == "FakeQuantize")
    quantized_matmuls = sum(1 for op in quantized.get_ops() if op.get_type_name() == "MatMul" and any(
        v.get_node().get_type_name() == "FakeQuantize" for v in op.input_values()))
    return quantized, {"quantizer": "nncf.quantize", "nncf": nncf.__version__, "model_type": "TRANSFORMER",
                       "target_device": "CPU", "preset": "transformer default (mixed)",
                       "calibration_samples": len(feeds), "calibration_source": "training split",
                       "ignored_scope": ignored, "ignored_from_onnx_int8": keep_float,
                       "fake_quantize_ops": fake_quantize, "quantized_matmuls": quantized_matmuls}


def _open(result: OpenVINOVariant, out: Path):
    """The written IR compiled at its inference precision."""
    from toolkit.openvino_session import open_openvino

    return open_openvino(out / result.file, precision=result.settings["inference_precision"])


def _sanity(result: OpenVINOVariant, session, fp32_onnx: Path, out: Path, max_length: int) -> None:
    """Probabilities on the sanity texts vs the fp32 ONNX graph (batch 1 at two lengths, and a padded batch of 3)."""
    import onnxruntime as ort

    from toolkit.config import Variant
    from toolkit.export.pipeline import SANITY_BATCHES, WARN_TOLERANCE
    from toolkit.metrics import sigmoid

    limit = WARN_TOLERANCE[Variant.INT8]  # as export's int8 warning limit, for both IR variants
    reference = ort.InferenceSession(str(fp32_onnx), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    worst, finite = 0.0, True
    for batch in SANITY_BATCHES:
        feed = _padded_feed(out, batch, names, max_length)
        probs = sigmoid(session.run(None, feed)[0])
        expected = sigmoid(reference.run(None, feed)[0])
        finite &= bool(np.isfinite(probs).all())
        worst = max(worst, float(np.nan_to_num(np.abs(probs - expected), nan=math.inf).max()))
    result.max_abs_diff, result.finite = worst, finite
    line = f"{result.variant}: max |Δprob| {worst:.2e} vs fp32 ONNX (limit {limit:.0e})"
    if not finite:
        result.failed.append(f"{result.variant} outputs NaN/Inf")
        log.error("%s outputs NaN/Inf on the sanity texts: marked failed", result.variant)
    elif worst > limit:
        log.warning("%s; `toolkit validate` decides on real data", line)
    else:
        log.info(line)


def _gate(result: OpenVINOVariant, session, gate) -> None:
    """ov_int8 (`session`, its compiled IR) on the checkpoint's validation split with the int8 gates, as export
    gates the ONNX int8."""
    from toolkit.config import Variant
    from toolkit.metrics import sigmoid
    from toolkit.parity import compare

    logits = None
    for index, feed in gate.feeds:
        batch = session.run(None, feed)[0]
        if logits is None:
            logits = np.zeros((len(gate.y_true), batch.shape[-1]), dtype=np.float32)
        logits[index] = batch
    judged = compare(Variant.INT8, gate.y_true, gate.reference, gate.thresholds, gate.ref_metrics, sigmoid(logits),
                     gate.thresholds, gate.labels, gate.gates)
    failures = [c.describe().replace("int8 ", f"{result.variant} ", 1) for c in judged.checks if not c.passed]
    result.settings["gate"] = {"passed": not failures, "macro_drop": judged.gated_macro_drop,
                               "worst_label": judged.worst.label, "worst_drop": judged.worst.gated_drop,
                               "flips": int(sum(judged.parity.flips.values())), "failures": failures,
                               "reference": "fp32 ONNX graph on the checkpoint's validation split"}
    if failures:
        result.failed.extend(failures)
        log.error("%s FAILED the int8 gates on the validation split (%s): written but marked failed, "
                  "variant='auto' will not load it", result.variant, "; ".join(failures))


# ---------------------------------------------------------------------------- helpers


def _feeds(out: Path, texts: Sequence[str], names: Sequence[str], max_length: int) -> list[dict]:
    """One unpadded feed per text, tokenized by the export's own tokenizer.json (the runtime's tokenization)."""
    return [_padded_feed(out, (text,), names, max_length) for text in texts]


def _padded_feed(out: Path, texts: Sequence[str], names: Sequence[str], max_length: int) -> dict:
    from toolkit.runtime import MODEL_INPUTS, pad_id

    tokenizer = _tokenizer(out, max_length)
    encodings = tokenizer.encode_batch(list(texts), add_special_tokens=True)
    width = max(len(e.ids) for e in encodings)
    arrays = {name: np.zeros((len(encodings), width), dtype=np.int64) for name in MODEL_INPUTS}
    arrays["input_ids"][:] = pad_id(tokenizer)
    for row, e in enumerate(encodings):
        n = len(e.ids)
        arrays["input_ids"][row, :n] = e.ids
        arrays["attention_mask"][row, :n] = e.attention_mask
        arrays["token_type_ids"][row, :n] = e.type_ids
    return {name: arrays[name] for name in names}


_TOKENIZERS: dict = {}


def _tokenizer(out: Path, max_length: int):
    from tokenizers import Tokenizer

    key = (str(out), max_length)
    if key not in _TOKENIZERS:
        tokenizer = Tokenizer.from_file(str(Path(out) / artifacts.TOKENIZER_JSON))
        tokenizer.enable_truncation(max_length=max_length)
        tokenizer.no_padding()
        _TOKENIZERS.clear()
        _TOKENIZERS[key] = tokenizer
    return _TOKENIZERS[key]


def _cpu_has_bf16() -> bool:
    from toolkit.openvino_session import has_bf16

    return has_bf16()


def _import(name: str):
    try:
        return __import__(name)
    except ImportError as e:
        raise ExportError(f"OpenVINO variants need {name}; {INSTALL_HINT}") from e


def _weights(xml_name: str) -> str:
    return str(Path(xml_name).with_suffix(".bin"))


def _ir_bytes(xml: Path) -> int:
    return xml.stat().st_size + xml.with_suffix(".bin").stat().st_size


def _remove(out: Path, name: str) -> None:
    xml = Path(out) / FILES[name]
    for path in (xml, xml.with_suffix(".bin")):
        path.unlink(missing_ok=True)


def _versions() -> dict:
    from importlib import metadata

    out = {}
    for name in ("openvino", "nncf"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
