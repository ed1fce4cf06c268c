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
                  smoothing: Optional[dict[str, np.ndarray]] = None) -> dict:
    """Write one dynamic int8 model of `fp32_path` to `out_path`.

    Args:
        recipe: 'per-token' (batch-invariant) or 'per-tensor' (onnxruntime's default, batch-dependent).
        exclude: MatMul/Gemm node names kept in float (the logits layer, the fallback's picks).
        smoothing: {activation tensor name: per-channel factors}, from `smoothing_factors`.
    Returns:
        The settings to record in the manifest.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if recipe not in INT8_RECIPES:
        raise ValueError(f"unknown int8 recipe {recipe!r}: choose from {', '.join(INT8_RECIPES)}")
    source = fp32_path
    if smoothing:
        source = out_path.with_name(out_path.stem + "_smoothed.onnx")
        model = onnx.load(str(fp32_path))
        apply_smoothing(model, smoothing)
        onnx.save(model, str(source))
    # the quantizer rewrites Gemm to <name>_MatMul + <name>_Add, so exclude both spellings
    excluded = sorted({*exclude, *(n + "_MatMul" for n in exclude)})
    quantize_dynamic(source, out_path, op_types_to_quantize=list(QUANTIZED_OP_TYPES), per_channel=PER_CHANNEL,
                     reduce_range=REDUCE_RANGE, weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                     # optimum's graph leaves some shapes to ONNX inference it cannot finish; all floats are float32
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    if smoothing:
        source.unlink()
    rewritten = 0
    if recipe == "per-token":
        model = onnx.load(str(out_path))
        rewritten = per_token_rewrite(model)
        onnx.save(model, str(out_path))
    return {"mode": "dynamic", "recipe": recipe, "activation_scales": "per token" if recipe == "per-token"
            else "per tensor, per run", "weight_type": "QInt8", "per_channel": PER_CHANNEL,
            "reduce_range": REDUCE_RANGE, "op_types": list(QUANTIZED_OP_TYPES), "excluded_nodes": excluded,
            "smoothing": {"alpha": SMOOTHING_ALPHA, "tensors": sorted(smoothing)} if smoothing else None,
            "per_token_inputs": rewritten}
