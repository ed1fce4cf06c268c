"""Graph optimization for `toolkit export`: onnxruntime's transformer fusions, then fp16.

`fuse` runs onnxruntime.transformers' BERT fusions (Attention, SkipLayerNormalization, BiasGelu,
EmbedLayerNormalization) on the fp32 graph; `to_fp16` converts that fused graph to float16 with
the overflow-prone ops kept in float32. The int8 variants start from the *unfused* graph instead
(toolkit.export.int8).
"""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from toolkit import artifacts
from toolkit.config import Variant
from toolkit.errors import ExportError, first_line

log = logging.getLogger(__name__)

# Model types whose graphs onnxruntime's BERT fusions understand (encoder-only, post-LN).
BERT_LIKE = ("bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra", "albert", "mpnet")

# fp16: keep in float32 the ops whose reductions overflow in half precision. Residual-stream
# LayerNorms see activations in the hundreds on deep BERTs; sum(x^2) over the hidden size then
# exceeds fp16's 65504 when accumulated in half, as onnxruntime's CUDA SkipLayerNorm kernels did
# until microsoft/onnxruntime#28682 (2026). Unfused Softmax/reductions are blocked for the same reason.
# EmbedLayerNormalization stays fp16: embedding sums are O(1), and blocking it would keep the
# word-embedding table (half of MiniLM's weights) in fp32.
FP16_BLOCKED_OPS = ("LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
                    "SkipSimplifiedLayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "Pow", "Sqrt")


def fuse(fp32_path: Path, work: Path, config) -> tuple[Path, float]:
    """onnxruntime's transformer fusions on the fp32 graph; the fused fp32 graph feeds fp16."""
    from onnxruntime.transformers.optimizer import optimize_model

    started = time.perf_counter()
    fused_path = work / ("fused_" + fp32_path.name)
    model_type = getattr(config, "model_type", "")
    if model_type not in BERT_LIKE:
        log.warning("model_type %r has no onnxruntime BERT fusions; fp16 is derived from the unfused graph", model_type)
        shutil.copy2(fp32_path, fused_path)
        return fused_path, time.perf_counter() - started
    try:
        # opt_level=1: only provider-independent rewrites (constant folding, redundant nodes), so the
        # fused graph runs on CPU and CUDA alike; level 2+ bakes in CPU- or GPU-only kernels.
        optimizer = optimize_model(str(fp32_path), model_type="bert", num_heads=int(config.num_attention_heads),
                                   hidden_size=int(config.hidden_size), opt_level=1, use_gpu=False)
        stats = {k: v for k, v in optimizer.get_fused_operator_statistics().items() if v}
        optimizer.save_model_to_file(str(fused_path))
    except Exception as e:  # the optimizer raises assorted errors from deep inside its fusions
        raise ExportError(f"{fp32_path.name}: onnxruntime transformer fusion failed ({first_line(e)}); "
                          "export --variants fp32 meanwhile and report the model type") from e
    log.info("fused transformer subgraphs: %s", stats or "none")
    return fused_path, time.perf_counter() - started


def to_fp16(fused_path: Path, out: Path, fuse_seconds: float, describe):
    """fp16 weights and compute; int64 inputs and float32 logits kept; overflow-prone ops kept fp32."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST
    from onnxruntime.transformers.onnx_model import OnnxModel

    started = time.perf_counter()
    log.info("converting to fp16")
    path = out / artifacts.variant_file(Variant.FP16)
    block = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP16_BLOCKED_OPS))
    try:
        model = OnnxModel(onnx.load(str(fused_path)))
        model.convert_float_to_float16(keep_io_types=True, op_block_list=block)
        drop_duplicate_casts(model.model)
        model.save_model_to_file(str(path))
    except Exception as e:  # float16 conversion raises ValueError/RuntimeError/onnx errors
        raise ExportError(f"{path.name}: float16 conversion failed ({first_line(e)}); "
                          "export --variants fp32,int8 meanwhile") from e
    result = describe(Variant.FP16, path, fuse_seconds + time.perf_counter() - started,
                       {"opt_level": 1, "keep_io_types": True, "op_block_list": list(FP16_BLOCKED_OPS)})
    f16 = result.initializers.get("FLOAT16", {}).get("bytes", 0)
    f32 = result.initializers.get("FLOAT", {}).get("bytes", 0)
    if f16 <= f32:
        raise ExportError(f"{path.name}: only {f16} of {f16 + f32} float initializer bytes are float16; "
                          "the conversion did not take, report this with the model type")
    return result


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
