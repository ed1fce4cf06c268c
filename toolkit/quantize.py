"""int8 recipes for `toolkit export`: batch-invariant dynamic int8, smoothing, and a float fallback search.

Every recipe starts from onnxruntime's `quantize_dynamic` on the *unfused* fp32 graph: per-channel
int8 weights for each MatMul with a constant weight and for the embedding tables (Gather), the
logits layer kept float. They differ in how activations are quantized at run time:

- `per-token` (default): each token's hidden vector gets its own symmetric scale,
  max|x| / 127 over the hidden axis. A text's scores depend on its own tokens only, never on
  the texts batched or padded with it, so scores are reproducible and cacheable.
- `per-tensor`: onnxruntime's `DynamicQuantizeLinear` as is: one scale per tensor per run, so
  a text's scores move with its batch-mates (MiniLM on GoEmotions: up to 0.1 in probability).
  Kept for comparison only (`toolkit export --int8-recipe per-tensor`).

On top of `per-token`, measured per model at export time:
- smoothing (SmoothQuant, Xiao et al. 2023): divide each input channel of a MatMul's activation
  by s_k = max|x_k|^a / max|W_k|^(1-a) and multiply row k of W by it, so outlier channels stop
  setting every token's scale. BERT is post-LN: a LayerNorm output also feeds the residual Add,
  so s cannot be folded into the LayerNorm weights; it is applied on the quantized branch only,
  as one Mul per smoothed tensor (shared by the Q, K and V projections).
- a float fallback: MatMuls ranked by measured sensitivity (how much keeping each one alone in
  float brings the logits back to fp32), kept in float one by one until the int8 gates pass on
  the validation split, within a time budget.

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

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from toolkit.metrics import sigmoid

log = logging.getLogger(__name__)

RECIPES = ("per-token", "per-tensor")
DEFAULT_RECIPE = "per-token"
QUANTIZED_OP_TYPES = ("MatMul", "Gather")
# reduce_range=True (7-bit weights): u8s8 integer GEMMs on AVX2/AVX-512 CPUs without VNNI add
# pairs of products in saturating int16 (255 * 127 * 2 overflows it); with 7-bit weights
# 255 * 64 * 2 cannot. The artifact is portable, so it must not depend on the exporting CPU.
REDUCE_RANGE = True
PER_CHANNEL = True  # per-output-channel weight scales: BERT weight ranges vary a lot across channels
SMOOTHING_ALPHA = 0.5  # SmoothQuant's default: splits the range evenly between activations and weights
_TOKEN_QMAX = 127.0  # symmetric: |x| / scale in [-127, 127], stored as uint8 with zero point 128
_MIN_SCALE_MAX = 1e-12  # an all-zero row gets a tiny scale rather than a division by zero
_PREFIX = "toolkit_per_token"


@dataclass
class GateOutcome:
    """How one int8 candidate fared on the validation split (what `toolkit validate` would gate)."""

    passed: bool
    macro_drop: float
    worst_label: str
    worst_drop: float
    flips: int
    mean_abs_diff: float
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "macro_drop": self.macro_drop, "worst_label": self.worst_label,
                "worst_drop": self.worst_drop, "flips": self.flips, "mean_abs_diff": self.mean_abs_diff,
                "failures": list(self.failures)}


@dataclass
class Int8Search:
    """The bounded search's result: the chosen candidate and every step that led to it."""

    smoothing: bool
    float_nodes: tuple[str, ...]
    outcome: Optional[GateOutcome]  # None: no validation data, nothing was gated
    trace: list[dict] = field(default_factory=list)
    sensitivity: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    budget_exhausted: bool = False

    @property
    def passed(self) -> Optional[bool]:
        return None if self.outcome is None else self.outcome.passed


def quantize_int8(fp32_path: Path, out_path: Path, recipe: str = DEFAULT_RECIPE, exclude: Sequence[str] = (),
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

    if recipe not in RECIPES:
        raise ValueError(f"unknown int8 recipe {recipe!r}: choose from {', '.join(RECIPES)}")
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


def per_token_rewrite(model) -> int:
    """Turn every DynamicQuantizeLinear of a `quantize_dynamic` graph into per-token quantization.

    For an input x of shape [..., K] feeding MatMulInteger nodes with constant int8 weights:
    scale = max|x| / 127 per token ([..., 1]), x_q = QuantizeLinear(x as [rows, K], scale as
    [rows], 128) (per-axis: one vectorized pass) reshaped back to [..., K], and each consumer
    becomes MatMulIntegerToFloat(x_q, W, 1.0, w_scale) * scale (see `_rescale_output`).

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
        users = [c for c in consumers.get(quantizer.output[0], []) if c.op_type == "MatMulInteger"]
        if not users or len(users) != len(consumers.get(quantizer.output[0], [])):
            continue  # not a weight MatMul input: leave it as onnxruntime wrote it
        k = int(weights[users[0].input[1]].dims[0])
        added += _quantize_rows(quantizer, k)
        for matmul in users:
            added += _rescale_output(matmul, quantizer, consumers, weights, dropped)
        dropped.add(quantizer.name)
        rewritten += 1
    kept = [n for n in graph.node if n.name not in dropped]
    del graph.node[:]
    graph.node.extend(_topological(kept + added, graph))
    return rewritten


def smoothing_factors(fp32_path: Path, feeds: Sequence[dict], exclude: Sequence[str] = (),
                      alpha: float = SMOOTHING_ALPHA) -> dict[str, np.ndarray]:
    """SmoothQuant factors for every activation that feeds a quantizable MatMul, from calibration batches.

    Activation maxima are taken over real tokens only (attention_mask), never padding.
    """
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(fp32_path))
    weights = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    w_max: dict[str, np.ndarray] = {}
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.name not in exclude and node.input[1] in weights:
            row_max = np.abs(weights[node.input[1]]).max(axis=1)
            w_max[node.input[0]] = np.maximum(w_max.get(node.input[0], row_max), row_max)
    known = {o.name for o in model.graph.output}
    model.graph.output.extend([onnx.helper.make_empty_tensor_value_info(n) for n in w_max if n not in known])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x_max = {name: np.zeros_like(w) for name, w in w_max.items()}
    names = list(w_max)
    for feed in feeds:
        mask = feed["attention_mask"].astype(bool)
        for name, value in zip(names, session.run(names, feed)):
            rows = value[mask] if value.ndim == 3 else value.reshape(-1, value.shape[-1])
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
    scaled: set[str] = set()
    added = []
    for node in list(graph.node):
        if node.op_type != "MatMul" or node.input[0] not in factors or node.input[1] not in weights:
            continue
        x, w_name = node.input[0], node.input[1]
        s = factors[x]
        if w_name in scaled:  # a weight shared by two MatMuls would be scaled twice
            continue
        w = numpy_helper.to_array(weights[w_name])
        weights[w_name].CopyFrom(numpy_helper.from_array((w * s[:, None]).astype(w.dtype), w_name))
        scaled.add(w_name)
        smoothed = f"{x}/smoothed"
        if not any(n.output[0] == smoothed for n in added):
            graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), f"{x}/inv_smooth"))
            added.append(helper.make_node("Mul", [x, f"{x}/inv_smooth"], [smoothed], name=f"{x}/smooth"))
        node.input[0] = smoothed
    graph.node.extend(added)
    nodes = _topological(list(graph.node), graph)
    del graph.node[:]
    graph.node.extend(nodes)


def search_int8(build: Callable[[bool, tuple[str, ...]], Path], evaluate: Callable[[Path], GateOutcome],
                proxy_error: Callable[[Path], float], candidates: Sequence[str], budget_s: float,
                max_float: int) -> Int8Search:
    """The cheapest per-token candidate that passes the gates, found within `budget_s` seconds.

    Steps, each gated on the validation split by `evaluate`: plain per-token; + smoothing (kept
    only if it gates better); then the fallback: every candidate MatMul's sensitivity measured as
    `proxy_error` with that node alone in float (lower is better), and nodes kept in float in
    that order, one more per step, up to `max_float`. The last candidate built is the best one
    when nothing passes.
    """
    started = time.perf_counter()
    result = Int8Search(smoothing=False, float_nodes=(), outcome=None)

    def step(smooth: bool, floats: tuple[str, ...], what: str) -> GateOutcome:
        outcome = evaluate(build(smooth, floats))
        result.trace.append({"step": what, "smoothing": smooth, "float_nodes": list(floats),
                             "seconds": round(time.perf_counter() - started, 1), **outcome.to_dict()})
        log.info("int8 search: %s -> %s (macro drop %.4f, worst %s %.4f)", what,
                 "pass" if outcome.passed else "fail", outcome.macro_drop, outcome.worst_label, outcome.worst_drop)
        return outcome

    def over_budget() -> bool:
        result.budget_exhausted = time.perf_counter() - started > budget_s
        return result.budget_exhausted

    best = step(False, (), "per-token")
    smoothed = step(True, (), "per-token + smoothing") if not best.passed and not over_budget() else None
    if smoothed is not None and _better(smoothed, best):
        best, result.smoothing = smoothed, True
    if not best.passed and not over_budget() and max_float > 0:
        result.sensitivity = _rank_sensitivity(build, proxy_error, result.smoothing, candidates, started, budget_s)
        ranked = sorted(result.sensitivity, key=result.sensitivity.get)
        for count in range(1, min(max_float, len(ranked)) + 1):
            if over_budget():
                break
            floats = tuple(ranked[:count])
            outcome = step(result.smoothing, floats, f"+ {count} float MatMul(s)")
            if _better(outcome, best):
                best, result.float_nodes = outcome, floats
            if outcome.passed:
                break
    result.outcome = best
    result.seconds = time.perf_counter() - started
    build(result.smoothing, result.float_nodes)  # leave the chosen candidate on disk
    return result


# ---------------------------------------------------------------------------- helpers


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


def _topological(nodes: list, graph) -> list:
    """Nodes in an order where each input is produced before use (ONNX requires it)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    ordered, pending = [], nodes
    while pending:
        waiting = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise ValueError(f"int8 rewrite left {len(waiting)} nodes with missing inputs, e.g. {waiting[0].name}")
        pending = waiting
    return ordered


def _rank_sensitivity(build, proxy_error, smooth: bool, candidates: Sequence[str], started: float,
                      budget_s: float) -> dict[str, float]:
    """proxy_error with each candidate alone in float; the half of the budget left bounds it."""
    scores = {}
    for name in candidates:
        if time.perf_counter() - started > budget_s / 2:
            log.warning("int8 search: sensitivity measured for %d of %d MatMuls before half the budget ran out",
                        len(scores), len(candidates))
            break
        scores[name] = proxy_error(build(smooth, (name,)))
    return scores


def _better(a: GateOutcome, b: GateOutcome) -> bool:
    """Passing beats failing; then the smaller macro drop, then the smaller worst-label drop."""
    return (a.passed, -a.macro_drop, -a.worst_drop) > (b.passed, -b.macro_drop, -b.worst_drop)


class SplitGate:
    """Scores int8 candidates on labelled texts against the fp32 graph, with `toolkit validate`'s gates.

    The fp32 ONNX graph stands in for PyTorch here (they agree within 1e-4 by export's own
    check, and it is 10x cheaper); `toolkit validate` later repeats the verdict against PyTorch.
    """

    def __init__(self, fp32_path: Path, feeds: Sequence[tuple[np.ndarray, dict]], y_true: np.ndarray,
                 thresholds: np.ndarray, labels: Sequence[str], gates, proxy_feeds: Sequence[tuple[np.ndarray, dict]]):
        from toolkit.metrics import compute_metrics

        self.feeds, self.proxy_feeds, self.y_true = feeds, proxy_feeds, y_true
        self.thresholds, self.labels, self.gates = np.asarray(thresholds, np.float64), list(labels), gates
        self.reference = sigmoid(score_logits(fp32_path, feeds, len(y_true)))
        self.proxy_reference = score_logits(fp32_path, proxy_feeds, _rows(proxy_feeds))
        self.ref_metrics = compute_metrics(y_true, self.reference, self.thresholds, self.labels)

    def evaluate(self, path: Path) -> GateOutcome:
        from toolkit.parity import compare

        probs = sigmoid(score_logits(path, self.feeds, len(self.y_true)))
        judged = compare("int8", self.y_true, self.reference, self.thresholds, self.ref_metrics, probs,
                         self.thresholds, self.labels, self.gates)
        worst = judged.worst
        return GateOutcome(passed=all(c.passed for c in judged.checks), macro_drop=judged.gated_macro_drop,
                           worst_label=worst.label, worst_drop=worst.gated_drop,
                           flips=int(sum(judged.parity.flips.values())),
                           mean_abs_diff=float(judged.parity.mean_abs_diff or 0.0),
                           failures=[c.describe() for c in judged.checks if not c.passed])

    def proxy_error(self, path: Path) -> float:
        """Mean |Δlogit| against fp32 on the calibration texts (training data: the search never ranks on dev)."""
        return float(np.abs(score_logits(path, self.proxy_feeds, _rows(self.proxy_feeds)) - self.proxy_reference).mean())


def encode_batches(tokenizer, texts: Sequence[str], input_names: Sequence[str], max_length: int,
                   batch_size: int = 64) -> list[tuple[np.ndarray, dict]]:
    """(row indices, ONNX feed) batches of similar-length texts, each padded to its own longest text."""
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    batches = []
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        encoded = tokenizer([texts[i] for i in index], truncation=True, max_length=max_length, padding=True,
                            return_tensors="np")
        batches.append((index, {k: encoded[k].astype(np.int64) for k in input_names if k in encoded}))
    return batches


def score_logits(path: Path, feeds: Sequence[tuple[np.ndarray, dict]], rows: int) -> np.ndarray:
    """Logits of one ONNX file on pre-encoded batches, in the original row order (CPU, full optimization)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    out = None
    for index, feed in feeds:
        logits = session.run(None, feed)[0]
        if out is None:
            out = np.zeros((rows, logits.shape[-1]), dtype=np.float32)
        out[index] = logits
    return out


def _rows(feeds) -> int:
    return int(sum(len(index) for index, _ in feeds))
