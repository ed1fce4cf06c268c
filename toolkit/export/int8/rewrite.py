"""The per-token rewrite: each token's activations quantized with their own scale, so scores are batch-invariant.

Why a hand-written graph rewrite (`per_token_rewrite`): onnxruntime offers no per-token dynamic
quantization of a MatMul input (DynamicQuantizeLinear, DynamicQuantizeMatMul and
MatMulIntegerToFloat take one activation scale per tensor; onnxruntime 1.32), and its weight-only
MatMulNBits (8 bits, accuracy_level 4, which does quantize activations per block) measured
0.59-0.69x the per-tensor recipe's speed on MiniLM and was not batch-invariant at block 128
(3.6e-4). The rewrite uses standard ONNX ops for the scales (max|x| as max(ReduceMax,
-ReduceMin), per-axis QuantizeLinear) and onnxruntime's MatMulIntegerToFloat for the GEMM. Measured
speed against per-tensor: 0.81x on the GoEmotions MiniLM (dev, batch 32, 2 threads;
benchmarks/results/int8-recipes-goemotions-minilm.json) and 0.87x on BERT-base b32 s128
(benchmarks/results/int8-recipes-bert-base.json), with batch dependence exactly 0.

The onnxruntime trap it avoids: `MatMulIntegerToFloatFusion` (ORT_ENABLE_EXTENDED and above)
rewrites MatMulInteger -> Cast -> Mul(scale) into MatMulIntegerToFloat even when the scale is a
per-row tensor, and that kernel reads one activation scale per tensor: with per-row scales it
silently computes wrong logits (max |Δprob| 0.35 on a MiniLM). The rewrite emits no
MatMulInteger for the fusion to match: each MatMul is written directly as
MatMulIntegerToFloat(a_scale = scalar 1.0, b_scale = per-channel weight scales) followed by a
plain Mul by the row scales, which is right by construction in any session (the runtime's,
optimum's, plain onnxruntime's). A test runs the file at ORT_ENABLE_ALL against ORT_DISABLE_ALL
and checks that every integer MatMul's activation scale is the scalar 1.0.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from toolkit.export.int8.graph import topological

_TOKEN_QMAX = 127.0  # symmetric: |x| / scale in [-127, 127], stored as uint8 with zero point 128
_MIN_SCALE_MAX = 1e-12  # an all-zero row gets a tiny scale rather than a division by zero
_PREFIX = "toolkit_per_token"
PER_TOKEN_ONE = f"{_PREFIX}/one"  # the scalar activation scale of every rewritten MatMulIntegerToFloat


def per_token_rewrite(model, unhandled: Optional[dict[str, str]] = None) -> int:
    """Turn every DynamicQuantizeLinear of a `quantize_dynamic` graph into per-token quantization.

    For an input x of shape [..., K] feeding MatMulInteger nodes with constant int8 weights:
    scale = max|x| / 127 per token ([..., 1]), x_q = QuantizeLinear(x as [rows, K], scale as
    [rows], 128) (per-axis: one vectorized pass) reshaped back to [..., K], and each consumer
    becomes MatMulIntegerToFloat(x_q, W, 1.0, w_scale) * scale (see `_rescale_output`).

    A quantizer whose graph does not have that shape (its output also feeds other ops, or a
    MatMulInteger is not followed by onnxruntime's Cast -> Mul(scale)) is left as it is, and its
    MatMulInteger nodes are named in `unhandled` with the reason: the caller must keep them float
    (`quantize_int8` does), since left alone they would quantize per tensor, batch-dependent.

    Args:
        unhandled: filled with {MatMulInteger node name: why it was not rewritten}.
    Returns:
        How many activations were rewritten.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    weights = {init.name: init for init in graph.initializer}
    graph.initializer.extend([
        numpy_helper.from_array(np.array(1.0 / _TOKEN_QMAX, np.float32), f"{_PREFIX}/inv_qmax"),
        numpy_helper.from_array(np.array(_MIN_SCALE_MAX, np.float32), f"{_PREFIX}/min_max"),
        numpy_helper.from_array(np.array([-1], np.int64), f"{_PREFIX}/last_axis"),
        numpy_helper.from_array(np.array([128], np.uint8), f"{_PREFIX}/zero_point"),
        numpy_helper.from_array(np.array(1.0, np.float32), f"{_PREFIX}/one"),
    ])
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    added, dropped, rewritten = [], set(), 0
    for quantizer in [n for n in graph.node if n.op_type == "DynamicQuantizeLinear"]:
        readers = consumers.get(quantizer.output[0], [])
        users = [c for c in readers if c.op_type == "MatMulInteger"]
        if not users:
            continue  # feeds no integer MatMul: nothing to make per-token
        reason = _unsupported(quantizer, users, readers, consumers, weights)
        if reason:
            if unhandled is not None:
                unhandled.update({matmul.name: reason for matmul in users})
            continue
        k = int(weights[users[0].input[1]].dims[0])
        added += _quantize_rows(quantizer, k)
        for matmul in users:
            added += _rescale_output(matmul, quantizer, consumers, weights, dropped)
        dropped.add(quantizer.name)
        rewritten += 1
    kept = [n for n in graph.node if n.name not in dropped]
    del graph.node[:]
    graph.node.extend(topological(kept + added, graph))
    return rewritten


# ---------------------------------------------------------------------------- helpers


def _unsupported(quantizer, users: list, readers: list, consumers: dict, weights: dict) -> str:
    """Why this quantizer cannot be made per-token, or "" when it can."""
    others = sorted({c.op_type for c in readers if c.op_type != "MatMulInteger"})
    if others:
        return f"its quantized activation {quantizer.input[0]} also feeds {', '.join(others)}"
    for matmul in users:
        if matmul.input[1] not in weights:
            return f"the weight of {matmul.name} is not a constant"
        casts = consumers.get(matmul.output[0], [])
        if len(casts) != 1 or casts[0].op_type != "Cast":
            return f"{matmul.name} is not followed by one Cast"
        muls = [c for c in consumers.get(casts[0].output[0], []) if c.op_type == "Mul"]
        if len(muls) != 1:
            return f"{matmul.name}'s Cast is not followed by one scale Mul"
        combined = [i for i in muls[0].input if i != casts[0].output[0]]
        if not combined or not any(combined[0] in c.output for c in consumers.get(quantizer.output[1], [])):
            return f"{matmul.name}'s output scale is not the activation scale times a weight scale"
    return ""



def _quantize_rows(quantizer, k: int) -> list:
    """Nodes computing the quantizer's own outputs per token: x_q (uint8, x's shape) and scale ([..., 1])."""
    from onnx import helper, numpy_helper

    x, (x_q, scale), p = quantizer.input[0], quantizer.output[:2], quantizer.name
    return [
        # max|x| as max(max x, -min x): two read-only reductions, cheaper than Abs (a full write) + one
        helper.make_node("ReduceMax", [x, f"{_PREFIX}/last_axis"], [f"{p}/max"], keepdims=1, name=f"{p}/max"),
        helper.make_node("ReduceMin", [x, f"{_PREFIX}/last_axis"], [f"{p}/min"], keepdims=1, name=f"{p}/min"),
        helper.make_node("Neg", [f"{p}/min"], [f"{p}/neg_min"], name=f"{p}/neg_min"),
        helper.make_node("Max", [f"{p}/max", f"{p}/neg_min", f"{_PREFIX}/min_max"], [f"{p}/amax_safe"],
                         name=f"{p}/amax_safe"),
        helper.make_node("Mul", [f"{p}/amax_safe", f"{_PREFIX}/inv_qmax"], [scale], name=f"{p}/scale"),
        helper.make_node("Reshape", [scale, f"{_PREFIX}/last_axis"], [f"{p}/scale_1d"], name=f"{p}/scale_1d"),
        helper.make_node("Shape", [f"{p}/scale_1d"], [f"{p}/rows"], name=f"{p}/rows"),
        helper.make_node("Expand", [f"{_PREFIX}/zero_point", f"{p}/rows"], [f"{p}/zero_points"], name=f"{p}/zps"),
        helper.make_node("Constant", [], [f"{p}/shape_2d"], name=f"{p}/shape_2d",
                         value=numpy_helper.from_array(np.array([-1, k], np.int64))),
        helper.make_node("Reshape", [x, f"{p}/shape_2d"], [f"{p}/rows_x"], name=f"{p}/rows_x"),
        # per-axis QuantizeLinear (axis 0: one scale per row) is one vectorized pass; the
        # Mul/Round/Add/Cast spelling of the same math measured 0.75x the speed on MiniLM
        helper.make_node("QuantizeLinear", [f"{p}/rows_x", f"{p}/scale_1d", f"{p}/zero_points"], [f"{p}/rows_q"],
                         axis=0, name=f"{p}/rows_q"),
        helper.make_node("Shape", [x], [f"{p}/x_shape"], name=f"{p}/x_shape"),
        helper.make_node("Reshape", [f"{p}/rows_q", f"{p}/x_shape"], [x_q], name=f"{p}/x_q"),
    ]


def _rescale_output(matmul, quantizer, consumers: dict, weights: dict, dropped: set) -> list:
    """Replace MatMulInteger -> Cast -> Mul(Mul(x_scale, w_scale)) with MatMulIntegerToFloat(a_scale=1) * x_scale.

    MatMulIntegerToFloat (onnxruntime's contrib op) applies the per-channel weight scales inside
    the GEMM epilogue: measured on MiniLM, the separate Cast and Mul passes cost 0.4 s of a 2.0 s
    profile. Its activation scale is a scalar by contract, so it gets exactly 1.0 here and the
    per-token scales follow in a plain Mul: the result is right by construction, and no
    onnxruntime fusion rewrites it (the trap in the module doc needs a MatMulInteger).
    """
    from onnx import helper

    cast = consumers[matmul.output[0]][0]
    (scale_mul,) = [c for c in consumers[cast.output[0]] if c.op_type == "Mul"]
    combined = [i for i in scale_mul.input if i != cast.output[0]][0]
    (combiner,) = [c for c in consumers[quantizer.output[1]] if combined in c.output]
    w_scale = [i for i in combiner.input if i != quantizer.output[1]][0]
    out, p = scale_mul.output[0], scale_mul.name
    x_q, w_q, x_zp, w_zp = (list(matmul.input) + [""] * 4)[:4]
    dropped.update({matmul.name, cast.name, scale_mul.name, combiner.name})
    return [
        helper.make_node("MatMulIntegerToFloat", [x_q, w_q, f"{_PREFIX}/one", w_scale, f"{_PREFIX}/zero_point", w_zp],
                         [f"{p}/by_weight"], name=f"{p}/by_weight", domain="com.microsoft"),
        helper.make_node("Mul", [f"{p}/by_weight", quantizer.output[1]], [out], name=f"{p}/by_row"),
    ]
