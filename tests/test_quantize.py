"""int8 recipes: batch invariance, the onnxruntime fusion trap, the gated search, the manifest, `auto`."""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from toolkit import artifacts, quantize
from toolkit.config import ExportConfig, Gates, ValidateConfig, Variant
from toolkit.errors import ValidationFailed
from toolkit.export import export_model
from toolkit.runtime import EmotionClassifier
from toolkit.validate import validate_export

SHORT = ["I love this!", "so sad", "What a surprise", "ok", "this is scary, honestly", "thanks a lot"]
LONG = " ".join(["I am furious about how this went and I cannot believe anyone thought it was fine"] * 12)
# extreme activations: one rare token repeated to the maximum length, and an input far past it
RARE = " ".join(["zyzzyva"] * 400)
EXTREMES = [LONG, RARE, "!" * 3000, LONG.upper()]


def _int8_path(export_dir: Path) -> Path:
    return export_dir / artifacts.variant_file(Variant.INT8)


def _ops(model) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


# ---------------------------------------------------------------------------- batch invariance


def _batch_dependence(export_dir: Path, variant: str = "int8") -> float:
    """Max |prob in a batch with much longer / extreme texts - prob alone| over the short texts."""
    clf = EmotionClassifier.load(export_dir, variant=variant, provider="cpu", max_batch_size=64)
    alone = np.concatenate([clf.predict_proba([t]) for t in SHORT])
    mixed = clf.predict_proba(SHORT + EXTREMES)[: len(SHORT)]
    return float(np.abs(mixed - alone).max())


def test_default_int8_scores_do_not_depend_on_batch_mates(tiny_export_session):
    assert _batch_dependence(tiny_export_session) <= 1e-6
    clf = EmotionClassifier.load(tiny_export_session, variant="int8", provider="cpu", max_batch_size=64)
    texts = SHORT + EXTREMES
    together = clf.predict_proba(texts)
    for i, text in enumerate(texts):  # the extreme texts too: alone vs beside the others
        assert np.abs(clf.predict_proba([text])[0] - together[i]).max() <= 1e-6, text[:30]
    assert np.abs(together[len(SHORT)] - together[len(SHORT) + 1]).max() > 0  # the texts really differ


def test_per_tensor_recipe_depends_on_batch_mates(tiny_checkpoint, tmp_path):
    """The old recipe stays selectable for comparison, and it is what the invariance test would catch."""
    out = tmp_path / "per-tensor"
    export_model(ExportConfig(checkpoint=tiny_checkpoint, out=out, variants=(Variant.INT8,), int8_recipe="per-tensor"))
    entry = artifacts.read_manifest(out)["variants"]["int8"]
    assert entry["settings"]["recipe"] == "per-tensor" and entry["settings"]["search"]["ran"] is False
    assert _ops(onnx.load(str(_int8_path(out))))["DynamicQuantizeLinear"] > 0
    assert _batch_dependence(out) > 1e-4


# ---------------------------------------------------------------------------- the fusion trap


def _session_logits(path: Path, level, feeds: list[dict], optimized: Path | None = None) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, feed)[0] for feed in feeds])


def _feeds(export_dir: Path) -> list[dict]:
    clf = EmotionClassifier.load(export_dir, variant="fp32", provider="cpu")
    batches = [SHORT, SHORT[:2] + EXTREMES[:2], [LONG]]
    return [clf._feed(clf._encode(batch)) for batch in batches]


def _fusion_gap(path: Path, feeds: list[dict], tmp_path: Path) -> tuple[float, onnx.GraphProto]:
    """Max |logit| difference between ORT_ENABLE_ALL and ORT_DISABLE_ALL, and the optimized graph."""
    full = _session_logits(path, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, feeds, tmp_path / "optimized.onnx")
    plain = _session_logits(path, ort.GraphOptimizationLevel.ORT_DISABLE_ALL, feeds)
    return float(np.abs(full - plain).max()), onnx.load(str(tmp_path / "optimized.onnx")).graph


def test_per_token_graph_survives_full_optimization(tiny_export_session, tmp_path):
    """MatMulIntegerToFloat must never see a per-token scale (its kernel reads one activation scale):
    after ORT_ENABLE_ALL each one still takes the constant 1.0 the rewrite gave it, and the scores
    stay those of the unoptimized graph (float fusions move int8 logits by rounding only)."""
    gap, graph = _fusion_gap(_int8_path(tiny_export_session), _feeds(tiny_export_session), tmp_path)
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    integer = [n for n in graph.node if n.op_type in ("MatMulIntegerToFloat", "MatMulInteger", "DynamicQuantizeMatMul")]
    kept_float = artifacts.read_manifest(tiny_export_session)["variants"]["int8"]["settings"]["float_nodes"]
    assert len(integer) == 2 * 6 + 1 - len(kept_float)
    for node in integer:  # the activation scale is the scalar 1.0 (onnxruntime may rename the constant)
        assert node.op_type == "MatMulIntegerToFloat" and constants[node.input[2]].shape == ()
        assert float(constants[node.input[2]]) == 1.0
    assert gap < 0.05, f"full optimization moved per-token int8 logits by {gap}"


def test_the_trap_is_real_for_the_naive_rewrite(tiny_checkpoint, tmp_path):
    """The naive per-token rewrite (the issue's probe): per-token scales [batch, seq, 1] fed into
    quantize_dynamic's own Mul(x_scale, w_scale) -> Mul(Cast(MatMulInteger), ...). onnxruntime fuses
    that into MatMulIntegerToFloat, which reads one activation scale: the logits go wrong. This is
    what the test above would catch if the rewrite ever took that shape."""
    out = tmp_path / "per-tensor"
    export_model(ExportConfig(checkpoint=tiny_checkpoint, out=out, variants=(Variant.FP32, Variant.INT8),
                              int8_recipe="per-tensor"))
    model = onnx.load(str(_int8_path(out)))
    _naive_per_token(model)
    naive = tmp_path / "naive.onnx"
    onnx.save(model, str(naive))
    gap, graph = _fusion_gap(naive, _feeds(out), tmp_path)
    if not any(n.op_type == "MatMulIntegerToFloat" for n in graph.node):
        pytest.skip(f"onnxruntime {ort.__version__} no longer fuses the naive per-token graph")
    assert gap > 0.01, f"the fused naive graph moved logits by only {gap}"


def _naive_per_token(model) -> None:
    """Each DynamicQuantizeLinear -> scale = max|x|/127 per token ([..., 1]), q = round(x/scale) + 128."""
    from onnx import TensorProto

    graph = model.graph
    graph.initializer.extend([numpy_helper.from_array(np.array(1 / 127, np.float32), "naive/inv"),
                              numpy_helper.from_array(np.array([-1], np.int64), "naive/axis"),
                              numpy_helper.from_array(np.array(128.0, np.float32), "naive/128"),
                              numpy_helper.from_array(np.array(128, np.uint8), "naive/zp")])
    for node in [n for n in graph.node if n.op_type == "DynamicQuantizeLinear"]:
        x, (q, scale, zp), p = node.input[0], node.output, node.name
        for user in graph.node:
            user.input[:] = ["naive/zp" if i == zp else i for i in user.input]
        graph.node.remove(node)
        graph.node.extend([
            helper.make_node("Abs", [x], [p + "/abs"]),
            helper.make_node("ReduceMax", [p + "/abs", "naive/axis"], [p + "/max"], keepdims=1),
            helper.make_node("Mul", [p + "/max", "naive/inv"], [scale]),
            helper.make_node("Div", [x, scale], [p + "/div"]),
            helper.make_node("Round", [p + "/div"], [p + "/round"]),
            helper.make_node("Add", [p + "/round", "naive/128"], [p + "/shift"]),
            helper.make_node("Cast", [p + "/shift"], [q], to=TensorProto.UINT8)])
    nodes = quantize.topological(list(graph.node), graph)
    del graph.node[:]
    graph.node.extend(nodes)


# ---------------------------------------------------------------------------- manifest


def test_manifest_records_recipe_search_and_status(tiny_export_session):
    entry = artifacts.read_manifest(tiny_export_session)["variants"]["int8"]
    settings = entry["settings"]
    assert settings["recipe"] == "per-token" and settings["activation_scales"] == "per token"
    assert settings["per_token_inputs"] == _ops(onnx.load(str(_int8_path(tiny_export_session))))["QuantizeLinear"]
    # one token scale per distinct activation that feeds a quantized MatMul: per layer the QKV input, the
    # context, FFN in and FFN out, + the pooler (2 x 4 + 1 when the search keeps no encoder MatMul float)
    fp32 = onnx.load(str(tiny_export_session / "model.onnx"))
    kept_float = set(settings["matmuls"]["float"])
    quantized = set(quantize.graph.weight_matmuls(fp32)) - kept_float  # a Gemm is named '<node>_MatMul' there
    fed = {n.input[0] for n in fp32.graph.node if {n.name, f"{n.name}_MatMul"} & quantized}
    assert settings["per_token_inputs"] == len(fed) <= 2 * 4 + 1
    assert len(fed) == 2 * 4 + 1 or settings["float_nodes"]
    search = settings["search"]
    assert search["ran"] is True and search["passed"] is True
    step_times = [step["seconds"] for step in search["trace"]]  # cumulative, rounded to 0.1 s
    assert step_times == sorted(step_times) and step_times[-1] <= round(search["seconds"], 1) + 0.1
    assert entry["export_seconds"] >= search["seconds"]  # the search is part of making the file
    assert search["trace"][0]["step"] == "per-token" and search["trace"][-1]["passed"] is True
    assert search["float_nodes"] == settings["float_nodes"]
    assert entry["status"] == "ok" and entry["failures"] == []
    assert 0 <= search["outcome"]["macro_drop"] <= Gates().max_drop_macro["int8"]
    assert _ops(onnx.load(str(_int8_path(tiny_export_session))))["DynamicQuantizeLinear"] == 0


# ---------------------------------------------------------------------------- the search


def _split_gate(checkpoint: Path, fp32: Path):
    from toolkit.data import align_labels, config_from_spec, load_splits
    from toolkit.modeling import load_classifier

    loaded = load_classifier(checkpoint)
    splits = load_splits(config_from_spec(loaded.meta["data"]))
    validation = align_labels(splits.validation, list(loaded.label_names))
    names = [i.name for i in onnx.load(str(fp32)).graph.input]
    feeds = quantize.encode_batches(loaded.tokenizer, validation.texts, names, loaded.max_length)
    proxy = quantize.encode_batches(loaded.tokenizer, splits.train.texts[:128], names, loaded.max_length)
    return quantize.SplitGate(fp32, feeds, validation.labels, loaded.thresholds, loaded.label_names, Gates(), proxy)


def _sabotage_one_matmul(fp32: Path, out: Path) -> str:
    """An equivalent fp32 graph where one MatMul's weights have an outlier row (x1000) and its input
    channel is scaled down to match: per-channel int8 of that MatMul crushes every other row."""
    model = onnx.load(str(fp32))
    weights = {i.name: i for i in model.graph.initializer}
    target = next(n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights
                  and "intermediate" in n.name)
    w = numpy_helper.to_array(weights[target.input[1]]).copy()
    w[0] *= 1000.0
    weights[target.input[1]].CopyFrom(numpy_helper.from_array(w, target.input[1]))
    scale = np.ones(w.shape[0], np.float32)
    scale[0] = 1e-3
    model.graph.initializer.append(numpy_helper.from_array(scale, "sabotage_scale"))
    model.graph.node.append(helper.make_node("Mul", [target.input[0], "sabotage_scale"], ["sabotaged_x"], name="sabotage"))
    target.input[0] = "sabotaged_x"
    nodes = quantize.topological(list(model.graph.node), model.graph)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(out))
    return target.name


def test_search_keeps_the_sabotaged_matmul_in_float(tiny_checkpoint, tiny_export_session, tmp_path):
    fp32 = tmp_path / "model.onnx"
    target = _sabotage_one_matmul(tiny_export_session / "model.onnx", fp32)
    head = quantize.logits_head_nodes(onnx.load(str(fp32)))
    gate = _split_gate(tiny_checkpoint, fp32)
    candidate = tmp_path / "candidate.onnx"

    def build(smooth: bool, floats: tuple[str, ...]) -> Path:  # smoothing off: the fallback must do it
        quantize.quantize_int8(fp32, candidate, "per-token", [*head, *floats])
        return candidate

    assert not gate.evaluate(build(False, ())).passed  # sabotage works: plain per-token fails the gates
    matmuls = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "MatMul" and n.name not in head
               and n.input[1] in {i.name for i in onnx.load(str(fp32)).graph.initializer}]
    result = quantize.search_int8(build, gate.evaluate, gate.proxy_error, matmuls, budget_s=300, max_float=3)
    assert min(result.sensitivity, key=result.sensitivity.get) == target  # measured, not guessed
    assert result.passed is True and target in result.float_nodes
    assert [step["step"] for step in result.trace][:2] == ["per-token", "per-token + smoothing"]


def test_search_gives_up_within_budget(tmp_path):
    calls = []

    def build(smooth, floats):
        calls.append((smooth, floats))
        return tmp_path

    failing = quantize.GateOutcome(False, 0.5, "x", 0.5, 10, 0.1, ["int8 macro_f1_drop: 0.5 > limit 0.01"])
    result = quantize.search_int8(build, lambda p: failing, lambda p: 0.0, ["a", "b", "c"], budget_s=0.0,
                                  max_float=3)
    assert result.passed is False and result.budget_exhausted and result.float_nodes == ()
    assert len(result.trace) == 1  # the budget stopped it after the first, mandatory, candidate


# ---------------------------------------------------------------------------- failing int8


def test_export_marks_int8_failed_loudly_and_auto_skips_it(tiny_checkpoint, tmp_path, caplog):
    impossible = Gates(max_drop_macro={"fp16": 0.002, "int8": -1.0, "int8_static": 0.01})
    cfg = ExportConfig(checkpoint=tiny_checkpoint, out=tmp_path / "export", variants=(Variant.FP32, Variant.INT8),
                       gates=impossible, int8_max_float=1, int8_search_seconds=120)
    with caplog.at_level(logging.ERROR, logger="toolkit.export.int8"):
        result = export_model(cfg)
    assert [r.levelno for r in caplog.records if r.name == "toolkit.export.int8"
            and "NO CANDIDATE PASSED THE INT8 GATES" in r.getMessage()] == [logging.ERROR]  # one error, from int8
    int8 = result.variant("int8")
    assert int8.failed and "macro_f1_drop" in int8.failed[0]
    entry = artifacts.read_manifest(cfg.out)["variants"]["int8"]
    assert entry["status"] == "failed" and entry["settings"]["search"]["passed"] is False
    assert len(entry["settings"]["search"]["trace"]) == 3  # per-token, + smoothing, + 1 float MatMul
    assert EmotionClassifier.load(cfg.out, provider="cpu").variant == "fp32"


def test_auto_skips_a_variant_that_failed_validation(tiny_export, caplog):
    _perturb_int8(tiny_export)
    with pytest.raises(ValidationFailed):
        validate_export(ValidateConfig(export=tiny_export, provider="cpu"))
    status = artifacts.read_manifest(tiny_export)[artifacts.VALIDATION_STATUS]
    assert status["int8"]["passed"] is False and status["fp32"]["passed"] is True
    with caplog.at_level(logging.INFO, logger="toolkit.runtime"):
        clf = EmotionClassifier.load(tiny_export, provider="cpu", verify=False)
    assert clf.variant == "fp32" and "skips int8" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="toolkit.runtime"):
        EmotionClassifier.load(tiny_export, variant="int8", provider="cpu", verify=False)
    assert "variant int8 failed its last check" in caplog.text and "int8 " in caplog.text


def test_auto_says_when_an_export_was_never_validated(tiny_export_session, caplog):
    with caplog.at_level(logging.INFO, logger="toolkit.runtime"):
        EmotionClassifier.load(tiny_export_session, provider="cpu")
    assert "was never validated" in caplog.text


def _perturb_int8(export_dir: Path) -> None:
    """Scale every int8 weight scale by 3: the model still runs but its decisions drift."""
    path = _int8_path(export_dir)
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        if init.name.endswith("_scale") and init.data_type == onnx.TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 3.0, init.name))
    onnx.save(model, str(path))


def test_a_failing_search_step_is_recorded_and_the_search_goes_on(tmp_path):
    """DeBERTa-v2 once lost the whole export to one step's error; now the step fails and the next one runs."""
    def build(smooth, floats):
        if smooth:
            raise ValueError("boolean index did not match indexed array along axis 0")
        return tmp_path / ("float" if floats else "plain")

    failing = quantize.GateOutcome(False, 0.5, "x", 0.5, 10, 0.1, ["int8 macro_f1_drop: 0.5 > limit 0.01"])
    passing = quantize.GateOutcome(True, 0.0, "x", 0.0, 0, 0.01, [])
    result = quantize.search_int8(build, lambda p: passing if p.name == "float" else failing, lambda p: 0.0,
                                  ["a", "b"], budget_s=60, max_float=2)
    assert [s["step"] for s in result.trace] == ["per-token", "per-token + smoothing", "+ 1 float MatMul(s)"]
    smoothing_step = result.trace[1]
    assert "boolean index did not match" in smoothing_step["error"] and smoothing_step["passed"] is False
    assert smoothing_step["macro_drop"] is None  # no number for a step that never ran; JSON has no inf
    assert result.passed is True and result.smoothing is False and result.float_nodes == ("a",)


def test_rewrite_names_the_quantizers_it_cannot_make_per_token(tiny_export_session, tmp_path):
    """An activation quantizer whose output also feeds another op is left alone and named, never silently
    per-tensor; quantize_int8 keeps such MatMuls float with the reason."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    per_tensor = tmp_path / "per_tensor.onnx"
    quantize_dynamic(tiny_export_session / "model.onnx", per_tensor, op_types_to_quantize=["MatMul"],
                     per_channel=True, weight_type=QuantType.QInt8)
    model = onnx.load(str(per_tensor))
    quantizer = next(n for n in model.graph.node if n.op_type == "DynamicQuantizeLinear")
    users = sorted(n.name for n in model.graph.node if quantizer.output[0] in n.input)
    model.graph.node.append(helper.make_node("Identity", [quantizer.output[0]], ["extra_reader"], name="extra_reader"))
    unhandled: dict = {}
    rewritten = quantize.per_token_rewrite(model, unhandled)
    assert sorted(unhandled) == users and len(users) >= 1
    assert all("also feeds Identity" in why for why in unhandled.values())
    assert _ops(model)["DynamicQuantizeLinear"] == 1 and rewritten == _ops(model)["QuantizeLinear"]


def test_int8_settings_account_for_every_weight_matmul(tiny_export_session):
    settings = artifacts.read_manifest(tiny_export_session)["variants"]["int8"]["settings"]
    fp32 = onnx.load(str(tiny_export_session / "model.onnx"))
    assert settings["matmuls"]["per_token"] + len(settings["matmuls"]["float"]) == len(quantize.graph.weight_matmuls(fp32))
    assert settings["matmuls"]["per_tensor"] == 0
    # float: the logits layer by design, and what the search kept float on this model, each with its reason
    assert settings["matmuls"]["float"] == {
        "/classifier/Gemm_MatMul": "the logits layer: kept float by design",
        **{name: "kept float by the int8 search (most sensitive MatMuls first)" for name in settings["float_nodes"]}}


def test_slow_first_steps_still_leave_time_to_rank_and_fall_back(tmp_path):
    """The first two steps took over half the budget (DistilBERT's shape on a busy machine): the ranking
    gets half of what is left, so the float fallback still runs (it used to rank nothing and stop)."""
    import time

    failing = quantize.GateOutcome(False, 0.5, "x", 0.5, 10, 0.1, ["int8 macro_f1_drop: 0.5 > limit 0.01"])
    passing = quantize.GateOutcome(True, 0.0, "x", 0.0, 0, 0.01, [])

    def evaluate(path):
        if path.name == "plain":
            time.sleep(0.6)  # per-token and + smoothing: 1.2 s of the 2 s budget
            return failing
        return passing

    result = quantize.search_int8(lambda smooth, floats: tmp_path / ("float" if floats else "plain"), evaluate,
                                  lambda p: 0.0, ["a", "b"], budget_s=2.0, max_float=2)
    assert result.sensitivity and result.passed is True and result.float_nodes == ("a",)
