"""int8 for `toolkit export`: batch-invariant dynamic int8, smoothing, a float fallback search, static QDQ.

Every dynamic recipe starts from onnxruntime's `quantize_dynamic` on the *unfused* fp32 graph:
per-channel int8 weights for each MatMul with a constant weight and for the embedding tables
(Gather), the logits layer kept float. They differ in how activations are quantized at run time:

- `per-token` (default): each token's hidden vector gets its own symmetric scale,
  max|x| / 127 over the hidden axis. A text's scores depend on its own tokens only, never on
  the texts batched or padded with it, so scores are reproducible and cacheable.
- `per-tensor`: onnxruntime's `DynamicQuantizeLinear` as is: one scale per tensor per run, so
  a text's scores move with its batch-mates (MiniLM on GoEmotions: up to 0.1 in probability).
  Kept for comparison only (`toolkit export --int8-recipe per-tensor`).

On top of `per-token`, measured per model at export time: SmoothQuant smoothing, and a float
fallback (MatMuls kept in float by measured sensitivity until the int8 gates pass on the
validation split, within a time budget). `--int8 static` adds a calibrated QDQ model.

One job per module:
- `dynamic`: `quantize_int8`, one dynamic int8 file by recipe (onnxruntime's quantizer + the rewrite);
- `rewrite`: `per_token_rewrite`, the hand-written per-token graph rewrite; its docstring holds
  why onnxruntime's own ops cannot do it and the MatMulIntegerToFloatFusion trap it avoids;
- `smoothing`: SmoothQuant factors and their application to the graph;
- `search`: the bounded search over smoothing and float fallbacks (`search_int8`);
- `gate`: scoring candidates on the validation split with `toolkit validate`'s gates (`SplitGate`);
- `static`: static QDQ int8 and its calibration texts;
- `graph`: read-only graph questions (logits head, candidate MatMuls, inputs) and node ordering.

This module holds what the export pipeline calls (`dynamic_int8_variant`, `static_int8_variant`,
`calibration_texts`) and re-exports every public name of the package (also importable under its old
name, `toolkit.quantize`).
"""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Callable, Optional

from toolkit import artifacts
from toolkit.config import DEFAULT_INT8_RECIPE as DEFAULT_RECIPE
from toolkit.config import INT8_RECIPES as RECIPES
from toolkit.config import ExportConfig, Variant
from toolkit.errors import ExportError, first_line
from toolkit.export.int8.dynamic import PER_CHANNEL, QUANTIZED_OP_TYPES, REDUCE_RANGE, quantize_int8
from toolkit.export.int8.gate import SplitGate, checkpoint_gate, encode_batches, score_logits
from toolkit.export.int8.graph import (audit_matmuls, graph_inputs, inline_weight_identities, logits_head_nodes,
                                      quantizable_matmuls, topological)
from toolkit.export.int8.rewrite import per_token_rewrite
from toolkit.export.int8.search import GateOutcome, Int8Search, search_int8
from toolkit.export.int8.smoothing import SMOOTHING_ALPHA, apply_smoothing, smoothing_factors
from toolkit.export.int8.static import STATIC_OP_TYPES, calibration_texts, static_int8_variant

__all__ = ["DEFAULT_RECIPE", "RECIPES", "PER_CHANNEL", "QUANTIZED_OP_TYPES", "REDUCE_RANGE", "SMOOTHING_ALPHA",
           "STATIC_OP_TYPES", "GateOutcome", "Int8Search", "SplitGate", "apply_smoothing", "calibration_texts",
           "audit_matmuls", "checkpoint_gate", "dynamic_int8_variant", "inline_weight_identities", "encode_batches",
           "graph_inputs", "logits_head_nodes",
           "per_token_rewrite", "quantizable_matmuls", "quantize_int8", "score_logits", "search_int8",
           "smoothing_factors", "static_int8_variant", "topological"]

log = logging.getLogger(__name__)


def dynamic_int8_variant(fp32_path: Path, out: Path, work: Path, cfg: ExportConfig, loaded, describe: Callable,
                         gate: Optional[tuple] = None):
    """Dynamic int8 by `cfg.int8_recipe`; per-token runs the gated search when a validation split is known.

    Args:
        fp32_path: the unfused fp32 graph; out: the export's build dir; work: its intermediates dir.
        cfg: recipe, search budget and gates; loaded: the loaded checkpoint.
        describe: export's file-facts function, (variant, path, seconds, settings) -> VariantResult.
        gate: `checkpoint_gate(cfg, loaded, fp32_path)`'s (SplitGate or None, record) when the caller
            built it already (the export shares it with ov_int8); None: built here for per-token.
    Returns:
        The VariantResult of `model_int8.onnx`, marked failed when no search candidate passed the gates.
    Raises:
        ExportError: the quantizer failed.
    """
    import onnx

    started = time.perf_counter()
    path = out / artifacts.variant_file(Variant.INT8)
    head = logits_head_nodes(onnx.load(str(fp32_path), load_external_data=False))
    if cfg.int8_recipe != "per-token":
        gate, gate_record = None, {"not_gated": "per-tensor recipe (comparison only)"}
    else:
        gate, gate_record = gate if gate is not None else checkpoint_gate(cfg, loaded, fp32_path)
    log.info("quantizing to int8 (%s recipe%s)", cfg.int8_recipe, ", gated search" if gate else "")
    try:
        if gate is None:
            settings = quantize_int8(fp32_path, path, cfg.int8_recipe, head, float_reasons=_head_reasons(head))
            search = None
        else:
            settings, search = _search(fp32_path, path, work, cfg, head, gate)
    except Exception as e:  # the quantizer raises RuntimeError/ValueError/AssertionError
        raise ExportError(f"{path.name}: int8 quantization failed ({first_line(e)}); "
                          "export --variants fp32,fp16 meanwhile") from e
    settings["search"] = _search_record(cfg, search, gate_record)
    settings["gate"] = gate_record  # which texts the search selected on (data.fingerprint), or why none
    result = describe(Variant.INT8, path, time.perf_counter() - started, settings)
    result.not_gated = gate_record.get("not_gated", "")
    if search is not None and search.passed is False:
        result.failed = list(search.outcome.failures)
        log.error("int8: NO CANDIDATE PASSED THE INT8 GATES on the validation split within %.0f s (%s). "
                  "model_int8.onnx is written but marked failed in the manifest, and variant='auto' will not "
                  "load it; ship fp16/fp32, or raise --int8-search-seconds / --int8-max-float",
                  cfg.int8_search_seconds, "; ".join(result.failed))
    return result


# ---------------------------------------------------------------------------- helpers


def _search(fp32_path: Path, path: Path, work: Path, cfg: ExportConfig, head: list[str], gate: SplitGate):
    """Run `search_int8` with candidates built in `work`; copy the chosen one to `path`."""
    skipped: dict[str, str] = {}
    factors = smoothing_factors(fp32_path, [feed for _, feed in gate.proxy_feeds], head, skipped=skipped)
    candidate = work / "int8_candidate.onnx"
    built: dict = {}

    def build(smooth: bool, floats: tuple[str, ...]) -> Path:
        reasons = dict(_head_reasons(head), **{n: "kept float by the int8 search (most sensitive MatMuls first)"
                                               for n in floats})
        built["settings"] = quantize_int8(fp32_path, candidate, "per-token", [*head, *floats],
                                          factors if smooth else None, reasons)
        built["settings"]["float_nodes"] = list(floats)
        built["settings"]["smoothing_skipped"] = dict(skipped)  # activations never smoothed, and why
        return candidate

    candidates = quantizable_matmuls(fp32_path, head)
    search = search_int8(build, gate.evaluate, gate.proxy_error, candidates, cfg.int8_search_seconds,
                         cfg.int8_max_float)
    shutil.copy2(candidate, path)
    return built["settings"], search


def _head_reasons(head: list[str]) -> dict[str, str]:
    return {name: "the logits layer: kept float by design" for name in head}


def _search_record(cfg: ExportConfig, search, gate_record: dict) -> dict:
    if search is None:
        return {"ran": False, "reason": gate_record.get("not_gated", "")}
    return {"ran": True, "passed": search.passed, "seconds": round(search.seconds, 1),
            "budget_seconds": cfg.int8_search_seconds, "budget_exhausted": search.budget_exhausted,
            "smoothing": search.smoothing, "float_nodes": list(search.float_nodes),
            "outcome": search.outcome.to_dict() if search.outcome else None, "trace": search.trace,
            "sensitivity": {k: round(v, 6) for k, v in search.sensitivity.items()},
            "reference": f"fp32 ONNX graph on the search part of {gate_record.get('data')}"}
