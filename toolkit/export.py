"""`toolkit export`: PyTorch checkpoint -> one directory with ONNX fp32, fp16 and int8 variants.

SKELETON (fp32 only): the export stage owner extends it with fp16/int8, parity and the summary.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from toolkit import artifacts
from toolkit.config import ExportConfig, Variant
from toolkit.errors import ExportError

log = logging.getLogger(__name__)


@dataclass
class VariantResult:
    variant: str
    file: str
    bytes: int
    seconds: float
    max_abs_diff: float | None = None
    fused_ops: dict = field(default_factory=dict)
    quantized_ops: dict = field(default_factory=dict)


@dataclass
class ExportResult:
    out: Path
    variants: list[VariantResult]
    manifest: dict


def export_model(cfg: ExportConfig) -> ExportResult:
    """Export the checkpoint's variants into `cfg.out` atomically and write the manifest."""
    from toolkit.modeling import load_any

    loaded = load_any(cfg.checkpoint, cfg.base_model, cfg.labels)
    results = []
    with artifacts.atomic_directory(cfg.out, force=cfg.force) as tmp:
        started = time.perf_counter()
        _export_fp32(loaded, tmp, cfg.opset)
        fp32 = tmp / artifacts.variant_file(Variant.FP32)
        results.append(VariantResult("fp32", fp32.name, fp32.stat().st_size, time.perf_counter() - started))
        manifest = _write_manifest(tmp, cfg, loaded, results)
    return ExportResult(cfg.out, results, manifest)


def format_summary(result: ExportResult) -> str:
    from toolkit.cli import format_table

    rows = [("variant", "file", "size MB", "seconds")]
    rows += [(v.variant, v.file, f"{v.bytes / 1e6:.1f}", f"{v.seconds:.1f}") for v in result.variants]
    return format_table(rows) + f"\nwrote {result.out}"


def _export_fp32(loaded, out: Path, opset: int) -> None:
    from optimum.exporters.onnx import onnx_export_from_model

    loaded.model.eval()
    try:
        onnx_export_from_model(loaded.model, out, opset=opset, task="text-classification",
                               preprocessors=[loaded.tokenizer], do_validation=False)
    except Exception as e:  # optimum raises many types; the message is what helps
        raise ExportError(f"{out}: ONNX export failed ({e})") from e


def _write_manifest(out: Path, cfg: ExportConfig, loaded, results) -> dict:
    manifest = {
        "format_version": artifacts.FORMAT_VERSION,
        "created": artifacts.utc_now(),
        "versions": artifacts.library_versions(),
        "source": dict(loaded.source, checkpoint=str(cfg.checkpoint)),
        "labels": list(loaded.label_names),
        "thresholds": [float(t) for t in loaded.thresholds],
        "activation": "sigmoid",
        "max_length": int(cfg.max_length or loaded.max_length),
        "data": loaded.meta.get("data"),
        "variants": {r.variant: {"file": r.file, "bytes": r.bytes, "export_seconds": r.seconds,
                                 "sha256": artifacts.sha256_file(out / r.file)} for r in results},
        "files": artifacts.file_checksums(out),
    }
    artifacts.write_manifest(out, manifest)
    return manifest
