"""Graph optimization for `toolkit export`: onnxruntime's transformer fusions, then fp16.

`fuse` runs onnxruntime.transformers' fusions (Attention, SkipLayerNormalization, BiasGelu,
EmbedLayerNormalization, ...) on the fp32 graph, with the optimizer model type of the checkpoint's
family (optimum's table: BERT, DistilBERT, RoBERTa, XLM-R, ALBERT, ELECTRA, DeBERTa, MPNet and
ModernBERT all map to onnxruntime's "bert" fusions). What fused is recorded; where nothing fuses
(the patterns do not match, or the family has no entry) the unfused graph goes on, and the manifest
says so. `to_fp16` converts that graph to float16 with the overflow-prone ops (LayerNorm, Softmax,
reductions) kept in float32, so fp16 is correct whether or not anything fused. The int8 variants
start from the *unfused* graph instead (toolkit.export.int8).
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from toolkit import artifacts
from toolkit.config import Variant
from toolkit.errors import ExportError, first_line

log = logging.getLogger(__name__)

# fp16: keep in float32 the ops whose reductions overflow in half precision. Residual-stream
# LayerNorms see activations in the hundreds on deep BERTs; sum(x^2) over the hidden size then
# exceeds fp16's 65504 when accumulated in half, as onnxruntime's CUDA SkipLayerNorm kernels did
# until microsoft/onnxruntime#28682 (2026). Unfused Softmax/reductions are blocked for the same reason.
# EmbedLayerNormalization stays fp16: embedding sums are O(1), and blocking it would keep the
# word-embedding table (half of MiniLM's weights) in fp32.
FP16_BLOCKED_OPS = ("LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
                    "SkipSimplifiedLayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "Pow", "Sqrt")


@dataclass
class Fusion:
    """The graph fp16 starts from, and what onnxruntime's optimizer fused in it."""

    path: Path
    seconds: float
    model_type: str  # the checkpoint's (config.model_type)
    optimizer_model_type: Optional[str]  # onnxruntime's, None when the family has none
    fused: dict = field(default_factory=dict)  # fused op type -> count; empty when nothing fused
    note: str = ""  # why nothing fused, when it did not

    def to_dict(self) -> dict:
        return {"model_type": self.model_type, "optimizer_model_type": self.optimizer_model_type,
                "fused": self.fused, "nothing_fused": not self.fused, "note": self.note}


def optimizer_model_type(model_type: str) -> Optional[str]:
    """onnxruntime's transformer-optimizer model type for a transformers `model_type`, None if it has none.

    optimum keeps the table (ORTConfigManager); every encoder family in the support matrix maps to
    "bert", whose fusion patterns match what each family's graph shares with BERT.
    """
    from optimum.onnxruntime.utils import ORTConfigManager

    try:
        return ORTConfigManager.get_model_ort_type(model_type.replace("_", "-"))
    except KeyError:
        return None


def fuse(fp32_path: Path, work: Path, config) -> Fusion:
    """onnxruntime's transformer fusions on the fp32 graph; the result (fused or not) feeds fp16.

    A family without an optimizer type, or an optimizer that fails on the graph, leaves the graph
    unfused with the reason recorded: fp16 does not depend on fusions for correctness.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    started = time.perf_counter()
    fused_path = work / ("fused_" + fp32_path.name)
    model_type = str(getattr(config, "model_type", ""))
    ort_type = optimizer_model_type(model_type)
    if ort_type is None:
        shutil.copy2(fp32_path, fused_path)
        note = f"onnxruntime's transformer optimizer has no model type for {model_type!r}"
        log.info("%s: fp16 is derived from the unfused graph", note)
        return Fusion(fused_path, time.perf_counter() - started, model_type, None, {}, note)
    try:
        # opt_level=1: only provider-independent rewrites (constant folding, redundant nodes), so the
        # fused graph runs on CPU and CUDA alike; level 2+ bakes in CPU- or GPU-only kernels.
        optimizer = optimize_model(str(fp32_path), model_type=ort_type, num_heads=_num_heads(config),
                                   hidden_size=_hidden_size(config), opt_level=1, use_gpu=False)
        stats = {k: v for k, v in optimizer.get_fused_operator_statistics().items() if v}
        optimizer.save_model_to_file(str(fused_path))
    except Exception as e:  # the optimizer raises assorted errors from deep inside its fusions
        shutil.copy2(fp32_path, fused_path)
        note = f"onnxruntime's {ort_type!r} fusions failed on this graph ({first_line(e)}); nothing fused"
        log.warning("%s: fp16 is derived from the unfused graph", note)
        return Fusion(fused_path, time.perf_counter() - started, model_type, ort_type, {}, note)
    note = "" if stats else f"onnxruntime's {ort_type!r} fusion patterns matched nothing in the {model_type} graph"
    log.info("fused transformer subgraphs: %s", stats or note)
    return Fusion(fused_path, time.perf_counter() - started, model_type, ort_type, stats, note)


def to_fp16(fusion: Fusion, out: Path, describe):
    """fp16 weights and compute; int64 inputs and float32 logits kept; overflow-prone ops kept fp32."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST
    from onnxruntime.transformers.onnx_model import OnnxModel

    started = time.perf_counter()
    log.info("converting to fp16")
    path = out / artifacts.variant_file(Variant.FP16)
    block = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP16_BLOCKED_OPS))
    try:
        model = OnnxModel(onnx.load(str(fusion.path)))
        model.convert_float_to_float16(keep_io_types=True, op_block_list=block)
        drop_duplicate_casts(model.model)
        model.save_model_to_file(str(path))
    except Exception as e:  # float16 conversion raises ValueError/RuntimeError/onnx errors
        raise ExportError(f"{path.name}: float16 conversion failed ({first_line(e)}); "
                          "export --variants fp32,int8 meanwhile") from e
    result = describe(Variant.FP16, path, fusion.seconds + time.perf_counter() - started,
                      {"opt_level": 1, "keep_io_types": True, "op_block_list": list(FP16_BLOCKED_OPS),
                       "fusion": fusion.to_dict()})
    f16 = result.initializers.get("FLOAT16", {}).get("bytes", 0)
    f32 = result.initializers.get("FLOAT", {}).get("bytes", 0)
    if f16 <= f32:
        raise ExportError(f"{path.name}: only {f16} of {f16 + f32} float initializer bytes are float16; "
                          "the conversion did not take, report this with the model type")
    return result


def _num_heads(config) -> int:
    return int(getattr(config, "num_attention_heads", 0) or getattr(config, "n_heads", 0))  # DistilBERT: n_heads


def _hidden_size(config) -> int:
    return int(getattr(config, "hidden_size", 0) or getattr(config, "dim", 0))  # DistilBERT: dim


def drop_duplicate_casts(model) -> None:
    """Remove the repeated Cast nodes onnxruntime < 1.32's float16 converter emits.

    When one fp16 tensor feeds two blocked (fp32) nodes, onnxruntime 1.31 (still the newest
    onnxruntime-gpu) adds one `<name>_cast_to_fp32_node` per consumer: identical nodes with the
    same name and output, which onnxruntime then refuses to load. 1.32 shares one Cast; this
    makes older converters produce the same graph.
    """
    seen, keep = set(), []
    for node in model.graph.node:
        key = (node.op_type, node.name, tuple(node.input), tuple(node.output))
        if node.op_type == "Cast" and key in seen:
            continue
        seen.add(key)
        keep.append(node)
    if len(keep) != len(model.graph.node):
        log.debug("fp16: dropped %d duplicate Cast nodes", len(model.graph.node) - len(keep))
        del model.graph.node[:]
        model.graph.node.extend(keep)
    infos, unique = set(), []
    for info in model.graph.value_info:
        if info.name not in infos:
            infos.add(info.name)
            unique.append(info)
    if len(unique) != len(model.graph.value_info):
        del model.graph.value_info[:]
        model.graph.value_info.extend(unique)
