"""Dynamic int8: onnxruntime's `quantize_dynamic` on the unfused fp32 graph, then the recipe's activation scales.

Every recipe starts from `quantize_dynamic` on the *unfused* fp32 graph: per-channel int8 weights
for each MatMul with a constant weight and for the embedding tables (Gather), the logits layer
kept float. `per-token` then rewrites the activation quantizers (toolkit.export.int8.rewrite);
`per-tensor` keeps onnxruntime's DynamicQuantizeLinear as is.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from toolkit.config import DEFAULT_INT8_RECIPE, INT8_RECIPES
from toolkit.export.int8.graph import audit_matmuls
from toolkit.export.int8.rewrite import per_token_rewrite
from toolkit.export.int8.smoothing import SMOOTHING_ALPHA, apply_smoothing

# The UNFUSED graph's MatMuls (and Gather: the embedding tables, which MiniLM's size target
# needs); onnxruntime then fuses the quantized graph at session load. Measured on a 2-core
# AVX-512 host, BERT-base shape, batch 32, seq 128 (benchmarks/int8_recipes.py,
# results/int8-recipes-bert-base.json): 3.56x PyTorch eager vs 3.10x when quantizing the fused
# graph (QAttention + QEmbedLayerNormalization), same size (25% of fp32) and the same GoEmotions
# dev macro-F1 (0.4677 vs 0.4681).
QUANTIZED_OP_TYPES = ("MatMul", "Gather")
# reduce_range=True (7-bit weights): u8s8 integer GEMMs on AVX2/AVX-512 CPUs without VNNI add
# pairs of products in saturating int16 (255 * 127 * 2 overflows it); with 7-bit weights
# 255 * 64 * 2 cannot. The artifact is portable, so it must not depend on the exporting CPU.
# Measured cost on an AVX512-VNNI host (ORT 1.32): untrained MiniLM, sanity texts, max |Δprob|
# 1.7e-3 with 7-bit weights vs 1.4e-3 with 8-bit; GoEmotions-trained MiniLM, 800 dev texts, mean
# |Δprob| 0.00180 vs 0.00174.
# Only the logits layer stays float by default: on that trained MiniLM, keeping any one encoder
# layer, any part of layer 0, or the pooler in float changed the flipped decisions on 800 dev
# texts by noise only (31-43 vs 34), while BERT-base's speedup would lose ~3% per float FFN matrix.
REDUCE_RANGE = True
PER_CHANNEL = True  # per-output-channel weight scales: BERT weight ranges vary a lot across channels


def quantize_int8(fp32_path: Path, out_path: Path, recipe: str = DEFAULT_INT8_RECIPE, exclude: Sequence[str] = (),
                  smoothing: Optional[dict[str, np.ndarray]] = None,
                  float_reasons: Optional[dict[str, str]] = None) -> dict:
    """Write one dynamic int8 model of `fp32_path` to `out_path`.

    With `per-token`, a MatMul the rewrite cannot make per-token is kept float (quantized again
    without it) and named with the reason in `settings["matmuls"]`, never left per-tensor.

    Args:
        recipe: 'per-token' (batch-invariant) or 'per-tensor' (onnxruntime's default, batch-dependent).
        exclude: MatMul/Gemm node names kept in float (the logits layer, the fallback's picks).
        smoothing: {activation tensor name: per-channel factors}, from `smoothing_factors`.
        float_reasons: {node name in `exclude`: why it is float}, recorded per MatMul.
    Returns:
        The settings to record in the manifest; `matmuls` accounts for every constant-weight MatMul.
    Raises:
        ValueError: per-token left a MatMul per-tensor or unaccounted for (a bug, never shipped).
    """
    import onnx

    if recipe not in INT8_RECIPES:
        raise ValueError(f"unknown int8 recipe {recipe!r}: choose from {', '.join(INT8_RECIPES)}")
    source = fp32_path
    if smoothing:
        source = out_path.with_name(out_path.stem + "_smoothed.onnx")
        model = onnx.load(str(fp32_path))
        apply_smoothing(model, smoothing)
        onnx.save(model, str(source))
    reasons = {name: (float_reasons or {}).get(name, "excluded by the caller") for name in exclude}
    _quantize_dynamic(source, out_path, reasons)
    rewritten = 0
    if recipe == "per-token":
        model = onnx.load(str(out_path))
        unhandled: dict[str, str] = {}
        rewritten = per_token_rewrite(model, unhandled)
        if unhandled:  # keep those float rather than per-tensor: quantize again without them
            reasons.update({_quantized_from(n): f"not made per-token: {why}" for n, why in unhandled.items()})
            _quantize_dynamic(source, out_path, reasons)
            model = onnx.load(str(out_path))
            rewritten = per_token_rewrite(model)
        onnx.save(model, str(out_path))
    if smoothing:
        source.unlink()
    # per-token: the rewritten model just saved, still in memory; per-tensor: the quantizer's file
    int8_model = model if recipe == "per-token" else onnx.load(str(out_path), load_external_data=False)
    matmuls = audit_matmuls(onnx.load(str(fp32_path), load_external_data=False), int8_model, reasons)
    if recipe == "per-token" and (matmuls["per_tensor"] or matmuls["unaccounted"]):
        raise ValueError(f"per-token int8 left MatMuls per-tensor {matmuls['per_tensor'][:3]} or unaccounted for "
                         f"{matmuls['unaccounted'][:3]}")
    return {"mode": "dynamic", "recipe": recipe, "activation_scales": "per token" if recipe == "per-token"
            else "per tensor, per run", "weight_type": "QInt8", "per_channel": PER_CHANNEL,
            "reduce_range": REDUCE_RANGE, "op_types": list(QUANTIZED_OP_TYPES), "excluded_nodes": _spellings(reasons),
            "smoothing": {"alpha": SMOOTHING_ALPHA, "tensors": sorted(smoothing)} if smoothing else None,
            "per_token_inputs": rewritten,
            "matmuls": {"per_token": len(matmuls["per_token"]), "per_tensor": len(matmuls["per_tensor"]),
                        "float": matmuls["float"]}}


def _quantize_dynamic(source: Path, out_path: Path, reasons: dict[str, str]) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, out_path, op_types_to_quantize=list(QUANTIZED_OP_TYPES), per_channel=PER_CHANNEL,
                     reduce_range=REDUCE_RANGE, weight_type=QuantType.QInt8, nodes_to_exclude=_spellings(reasons),
                     # optimum's graph leaves some shapes to ONNX inference it cannot finish; all floats are float32
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def _spellings(names) -> list[str]:
    """The quantizer rewrites Gemm to <name>_MatMul + <name>_Add, so exclude both spellings."""
    return sorted({*names, *(n + "_MatMul" for n in names)})


def _quantized_from(matmul_integer: str) -> str:
    """The MatMul a `quantize_dynamic` MatMulInteger was made from (it appends `_quant`)."""
    return matmul_integer[: -len("_quant")] if matmul_integer.endswith("_quant") else matmul_integer
