"""SmoothQuant smoothing (Xiao et al. 2023) for the per-token recipe.

Divide each input channel of a MatMul's activation by s_k = max|x_k|^a / max|W_k|^(1-a) and
multiply row k of W by it, so outlier channels stop setting every token's scale. BERT is post-LN:
a LayerNorm output also feeds the residual Add, so s cannot be folded into the LayerNorm weights;
it is applied on the quantized branch only, as one Mul per smoothed tensor (shared by the Q, K and
V projections). The search (toolkit.export.int8.search) keeps it only where it gates better.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from toolkit.export.int8.graph import topological

SMOOTHING_ALPHA = 0.5  # SmoothQuant's default: splits the range evenly between activations and weights


def smoothing_factors(fp32_path: Path, feeds: Sequence[dict], exclude: Sequence[str] = (),
                      alpha: float = SMOOTHING_ALPHA, skipped: Optional[dict[str, str]] = None) -> dict[str, np.ndarray]:
    """SmoothQuant factors for every activation that feeds a quantizable MatMul, from calibration batches.

    Activation maxima are taken over real tokens only (attention_mask), never padding; an
    activation that is not per token (DeBERTa's relative-position table, [1, P, H]) uses all rows.
    An activation is not smoothed when one of its weights is shared with a MatMul reading another
    activation (ALBERT shares every layer's weights): W would need two different row scalings.

    Args:
        skipped: filled with {activation tensor name: why it is not smoothed}.
    """
    import onnx
    import onnxruntime as ort

    from toolkit.session import CPU

    model = onnx.load(str(fp32_path))
    weights = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    readers: dict[str, set[str]] = {}  # weight -> the activations its MatMuls read
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in weights:
            readers.setdefault(node.input[1], set()).add(node.input[0])
    w_max: dict[str, np.ndarray] = {}
    shared: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.name not in exclude and node.input[1] in weights:
            if len(readers[node.input[1]]) > 1:
                shared[node.input[0]] = (f"weight {node.input[1]} is shared by MatMuls reading "
                                         f"{len(readers[node.input[1]])} different activations (cross-layer "
                                         "weight sharing): one row scaling cannot suit them all")
            row_max = np.abs(weights[node.input[1]]).max(axis=1)
            w_max[node.input[0]] = np.maximum(w_max.get(node.input[0], row_max), row_max)
    for name in shared:
        del w_max[name]
    if skipped is not None:
        skipped.update(shared)
    known = {o.name for o in model.graph.output}
    model.graph.output.extend([onnx.helper.make_empty_tensor_value_info(n) for n in w_max if n not in known])
    session = ort.InferenceSession(model.SerializeToString(), providers=[CPU])
    x_max = {name: np.zeros_like(w) for name, w in w_max.items()}
    names = list(w_max)
    for feed in feeds:
        mask = feed["attention_mask"].astype(bool)
        for name, value in zip(names, session.run(names, feed)):
            per_token = value.ndim == 3 and value.shape[:2] == mask.shape
            rows = value[mask] if per_token else value.reshape(-1, value.shape[-1])
            x_max[name] = np.maximum(x_max[name], np.abs(rows).max(axis=0))
    factors = {}
    for name in names:
        s = np.power(np.maximum(x_max[name], 1e-5), alpha) / np.power(np.maximum(w_max[name], 1e-5), 1 - alpha)
        factors[name] = np.clip(s, 1e-2, 1e2).astype(np.float32)
    return factors


def apply_smoothing(model, factors: dict[str, np.ndarray]) -> None:
    """x -> x / s before every MatMul reading x (one Mul per tensor), W -> diag(s) W; in place."""
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    scaled: dict[str, str] = {}  # weight -> the activation it was scaled for
    added = []
    for node in list(graph.node):
        if node.op_type != "MatMul" or node.input[0] not in factors or node.input[1] not in weights:
            continue
        x, w_name = node.input[0], node.input[1]
        s = factors[x]
        if w_name in scaled:  # shared by MatMuls reading x: scaled once already, by the same factors
            if scaled[w_name] != x:
                raise ValueError(f"smoothing: weight {w_name} is read with {scaled[w_name]} and {x}; "
                                 "smoothing_factors leaves such activations out")
        else:
            w = numpy_helper.to_array(weights[w_name])
            weights[w_name].CopyFrom(numpy_helper.from_array((w * s[:, None]).astype(w.dtype), w_name))
            scaled[w_name] = x
        smoothed = f"{x}/smoothed"
        if not any(n.output[0] == smoothed for n in added):
            graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), f"{x}/inv_smooth"))
            added.append(helper.make_node("Mul", [x, f"{x}/inv_smooth"], [smoothed], name=f"{x}/smooth"))
        node.input[0] = smoothed
    graph.node.extend(added)
    nodes = topological(list(graph.node), graph)
    del graph.node[:]
    graph.node.extend(nodes)
