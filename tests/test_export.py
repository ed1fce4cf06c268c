"""`toolkit export`: graph structure of each variant, manifest, atomicity, seed checkpoints, CLI."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from toolkit import artifacts
from toolkit.config import ExportConfig, Variant
from toolkit.errors import ArtifactError, ExportError, ModelError, ToolkitError
from toolkit.export import export_model, format_summary, requested_variants

VARIANTS = ("fp32", "fp16", "int8")
TEXTS = ["I love this!", "this is terrible and i am so angry about it", "what a surprise", "ok"]


def _session(path: Path):
    from toolkit.runtime import open_session

    return open_session(path, provider="cpu", threads=1)


def _feed(session, batch: int, length: int, vocab_size: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab_size, size=(batch, length), dtype=np.int64)
    mask = np.ones((batch, length), dtype=np.int64)
    mask[0, length // 2:] = 0  # one padded row
    values = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {i.name: values[i.name] for i in session.get_inputs()}


def _op_counts(path: Path) -> dict:
    counts = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def _no_temp_dirs(parent: Path) -> bool:
    return not any(p.name.startswith(artifacts.TEMP_PREFIX) for p in parent.iterdir())


# ---------------------------------------------------------------------------- graph structure


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_graph_has_dynamic_batch_and_sequence_axes(tiny_export_session, variant):
    path = tiny_export_session / artifacts.variant_file(variant)
    session = _session(path)
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(i.type == "tensor(int64)" for i in session.get_inputs())
    assert [(o.name, o.type) for o in session.get_outputs()] == [("logits", "tensor(float)")]
    labels = len(artifacts.read_manifest(tiny_export_session)["labels"])
    vocab_size = json.loads((tiny_export_session / "config.json").read_text())["vocab_size"]
    for batch in (1, 3):
        for length in (5, 17):
            logits = session.run(None, _feed(session, batch, length, vocab_size))[0]
            assert logits.shape == (batch, labels)
            assert np.isfinite(logits).all()


def test_fp16_graph_is_fused_and_stored_in_half_precision(tiny_export_session):
    path = tiny_export_session / artifacts.variant_file(Variant.FP16)
    ops = _op_counts(path)
    for fused in ("Attention", "SkipLayerNormalization", "EmbedLayerNormalization", "BiasGelu"):
        assert ops.get(fused, 0) > 0, f"{fused} missing from {sorted(ops)}"
    assert "MatMulInteger" not in ops
    model = onnx.load(str(path))
    half = sum(onnx.numpy_helper.to_array(i).nbytes for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16)
    single = sum(onnx.numpy_helper.to_array(i).nbytes for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT)
    assert half > 20 * single  # only LayerNorm gammas/betas stay fp32
    entry = artifacts.read_manifest(tiny_export_session)["variants"]["fp16"]
    assert entry["fused_ops"] == {k: ops[k] for k in entry["fused_ops"]}
    assert entry["initializers"]["FLOAT16"]["bytes"] == half
    # overflow-prone LayerNorms run in fp32: every input is a float32 initializer, cast up to float32,
    # or the output of another blocked (float32) node
    from toolkit.export.optimize import FP16_BLOCKED_OPS

    producers = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name: i.data_type for i in model.graph.initializer}
    norms = [n for n in model.graph.node if n.op_type in ("SkipLayerNormalization", "LayerNormalization")]
    assert len(norms) == ops.get("SkipLayerNormalization", 0) + ops.get("LayerNormalization", 0) > 0
    for node in norms:
        for name in [i for i in node.input if i]:
            if name in inits:
                assert inits[name] == onnx.TensorProto.FLOAT, (node.name, name)
            else:
                producer = producers[name]
                if producer.op_type in FP16_BLOCKED_OPS:
                    continue
                to = next(a.i for a in producer.attribute if a.name == "to") if producer.op_type == "Cast" else None
                assert to == onnx.TensorProto.FLOAT, (node.name, name, producer.op_type)


def test_int8_graph_has_quantized_matmuls_and_float_classifier(tiny_export_session):
    path = tiny_export_session / artifacts.variant_file(Variant.INT8)
    ops = _op_counts(path)
    entry = artifacts.read_manifest(tiny_export_session)["variants"]["int8"]
    kept_float = entry["settings"].get("float_nodes", [])
    # 2 layers x (Q, K, V, attention output, two FFN) + the pooler, less any the search kept float;
    # the per-token recipe spells each as MatMulIntegerToFloat (integer GEMM, weight scales in its epilogue)
    assert ops.get("MatMulIntegerToFloat", 0) == 2 * 6 + 1 - len(kept_float)
    assert "MatMulInteger" not in ops and "DynamicQuantizeLinear" not in ops
    assert entry["quantized_matmuls"] == ops["MatMulIntegerToFloat"]
    assert entry["settings"]["per_channel"] is True and entry["settings"]["weight_type"] == "QInt8"
    model = onnx.load(str(path))
    weights = {i.name for i in model.graph.initializer}
    float_weight_matmuls = [n.name for n in model.graph.node
                            if n.op_type in ("MatMul", "Gemm") and any(i in weights for i in n.input)]
    assert sorted(float_weight_matmuls) == sorted(["/classifier/Gemm_MatMul", *kept_float])
    producers = {o: n for n in model.graph.node for o in n.output}
    head = producers["logits"]
    matmul = producers[next(i for i in head.input if i in producers)] if head.op_type == "Add" else head
    weights = {i.name: i for i in model.graph.initializer}
    assert matmul.op_type in ("MatMul", "Gemm") and matmul.name in entry["settings"]["excluded_nodes"]
    assert weights[matmul.input[1]].data_type == onnx.TensorProto.FLOAT  # the classifier stays float


# ---------------------------------------------------------------------------- manifest


def test_manifest_round_trip_checksums_and_parity(tiny_export_session, tiny_checkpoint):
    manifest = artifacts.read_manifest(tiny_export_session)
    meta = artifacts.read_checkpoint_meta(tiny_checkpoint)
    assert manifest["labels"] == meta["labels"]
    assert manifest["thresholds"] == pytest.approx(meta["thresholds"], abs=0)
    assert manifest["activation"] == "sigmoid" and manifest["max_length"] == meta["max_length"]
    assert manifest["data"] == meta["data"]
    assert manifest["source"]["sha256"] == artifacts.sha256_file(tiny_checkpoint / "model.safetensors")
    assert {"torch", "transformers", "onnx", "onnxruntime", "optimum"} <= set(manifest["versions"])
    assert list(manifest["variants"]) == list(VARIANTS)
    on_disk = {p.name for p in tiny_export_session.iterdir()} - {artifacts.MANIFEST}
    assert set(manifest["files"]) == on_disk
    assert {artifacts.TOKENIZER_JSON, artifacts.HF_CONFIG} <= on_disk
    artifacts.verify_checksums(tiny_export_session, manifest)
    limits = {"fp32": 1e-4, "fp16": 1e-2, "int8": 5e-2}
    for name, entry in manifest["variants"].items():
        path = tiny_export_session / entry["file"]
        assert entry["sha256"] == artifacts.sha256_file(path) == manifest["files"][entry["file"]]["sha256"]
        assert entry["bytes"] == path.stat().st_size
        assert entry["opset"] == 18
        assert entry["export_seconds"] > 0
        if name == "int8":  # the gated search is part of making the int8 file, so its time is inside
            assert entry["export_seconds"] >= entry["settings"]["search"]["seconds"] - 0.05
        parity = entry["parity"]
        assert parity["finite"] is True
        assert 0 <= parity["max_abs_diff"] <= limits[name]
        assert {(c["batch"], c["seq_len"] > 10) for c in parity["cases"]} >= {(1, False), (1, True), (3, True)}
    sizes = {n: e["bytes"] for n, e in manifest["variants"].items()}
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"]
    config = json.loads((tiny_export_session / artifacts.HF_CONFIG).read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert [config["id2label"][str(i)] for i in range(len(meta["labels"]))] == meta["labels"]


def test_tampered_file_fails_checksum(tiny_export):
    manifest = artifacts.read_manifest(tiny_export)
    path = tiny_export / artifacts.variant_file(Variant.INT8)
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    with pytest.raises(ArtifactError, match="sha256"):
        artifacts.verify_checksums(tiny_export, manifest)


def test_ort_model_for_sequence_classification_loads_every_variant(tiny_export_session):
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_export_session)
    enc = tokenizer(TEXTS[:3], padding=True, return_tensors="np")
    for variant in VARIANTS:
        file_name = artifacts.variant_file(variant)
        model = ORTModelForSequenceClassification.from_pretrained(tiny_export_session, file_name=file_name)
        assert model.config.problem_type == "multi_label_classification"
        expected = _session(tiny_export_session / file_name).run(None, dict(enc))[0]
        np.testing.assert_allclose(model(**enc).logits, expected, atol=1e-5)


def test_format_summary_is_one_table(tiny_export_session):
    from toolkit.export import ExportResult, VariantResult

    manifest = artifacts.read_manifest(tiny_export_session)
    variants = [VariantResult(n, e["file"], e["bytes"], e["export_seconds"], precision=e["precision"],
                              fused_ops=e["fused_ops"], quantized_matmuls=e["quantized_matmuls"])
                for n, e in manifest["variants"].items()]
    text = format_summary(ExportResult(tiny_export_session, variants, manifest, manifest["variants"]["fp32"]["bytes"]))
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["variant", "precision"] and "max |Δprob|" in lines[0]
    assert [line.split()[0] for line in lines[2:5]] == list(VARIANTS)
    assert "100%" in lines[2] and lines[-1] == f"wrote {tiny_export_session}"


# ---------------------------------------------------------------------------- atomicity and --force


def test_existing_target_needs_force(tiny_checkpoint, tmp_path):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(ArtifactError, match="already exists.*--force"):
        export_model(ExportConfig(checkpoint=tiny_checkpoint, out=out, variants=(Variant.FP32,)))
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    result = export_model(ExportConfig(checkpoint=tiny_checkpoint, out=out, variants=(Variant.FP32,), force=True))
    assert not (out / "keep.txt").exists()
    assert [v.variant for v in result.variants] == ["fp32"]
    assert set(artifacts.read_manifest(out)["variants"]) == {"fp32"}
    assert _no_temp_dirs(tmp_path)


@pytest.mark.parametrize("existing", [False, True])
def test_interrupted_export_leaves_nothing(tiny_checkpoint, tmp_path, monkeypatch, existing):
    import toolkit.quantize as quantize

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(quantize, "dynamic_int8_variant", interrupt)
    out = tmp_path / "exp"
    if existing:
        out.mkdir()
        (out / "keep.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        export_model(ExportConfig(checkpoint=tiny_checkpoint, out=out, variants=(Variant.FP32, Variant.INT8), force=existing))
    assert (sorted(p.name for p in out.iterdir()) == ["keep.txt"]) if existing else not out.exists()
    assert _no_temp_dirs(tmp_path)


def test_an_int8_failure_keeps_fp32_and_fp16(tiny_checkpoint, tmp_path, monkeypatch, caplog):
    import toolkit.quantize as quantize

    def broken(*args, **kwargs):
        raise ExportError("model_int8.onnx: int8 quantization failed (boolean index did not match)")

    monkeypatch.setattr(quantize, "dynamic_int8_variant", broken)
    out = tmp_path / "exp"
    result = export_model(ExportConfig(checkpoint=tiny_checkpoint, out=out))
    manifest = artifacts.read_manifest(out)
    assert [v.variant for v in result.variants] == ["fp32", "fp16"] and set(manifest["variants"]) == {"fp32", "fp16"}
    assert "boolean index did not match" in manifest["not_written"]["int8"]
    assert (out / "model_fp16.onnx").is_file() and not (out / "model_int8.onnx").exists()
    assert "int8 NOT WRITTEN" in caplog.text
    assert "int8: NOT WRITTEN: model_int8.onnx: int8 quantization failed" in format_summary(result)


def test_fp32_parity_failure_writes_nothing(tiny_checkpoint, tmp_path, monkeypatch):
    import toolkit.export.pipeline as pipeline

    monkeypatch.setattr(pipeline, "FP32_TOLERANCE", -1.0)  # any difference, even 0, now fails
    out = tmp_path / "exp"
    with pytest.raises(ExportError, match=r"disagree with PyTorch: fp32: max \|Δprob\|"):
        export_model(ExportConfig(checkpoint=tiny_checkpoint, out=out, variants=(Variant.FP32,)))
    assert not out.exists() and _no_temp_dirs(tmp_path)


# ---------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_one_line_errors(tiny_checkpoint, tmp_path):
    fp32 = (Variant.FP32,)
    with pytest.raises(ModelError, match="no such checkpoint"):
        export_model(ExportConfig(checkpoint=tmp_path / "missing", out=tmp_path / "a", variants=fp32))
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_checkpoint, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="corrupt"):
        export_model(ExportConfig(checkpoint=corrupt, out=tmp_path / "b", variants=fp32))
    single = tmp_path / "single"
    shutil.copytree(tiny_checkpoint, single)
    config = json.loads((single / "config.json").read_text())
    (single / "config.json").write_text(json.dumps(dict(config, problem_type="single_label_classification")))
    with pytest.raises(ModelError, match="multi-label"):
        export_model(ExportConfig(checkpoint=single, out=tmp_path / "c", variants=fp32))
    with pytest.raises(ModelError, match="--labels gives 2"):
        export_model(ExportConfig(checkpoint=tiny_checkpoint, out=tmp_path / "d", variants=fp32, labels="x,y"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ArtifactError, match="cannot create the output directory"):
        export_model(ExportConfig(checkpoint=tiny_checkpoint, out=blocker / "sub" / "exp", variants=fp32))
    with pytest.raises(ToolkitError, match="unknown variant 'bf16'"):
        export_model(ExportConfig(checkpoint=tiny_checkpoint, out=tmp_path / "e", variants=("fp32", "bf16")))
    for error in ("a", "b", "c", "d", "e"):
        assert not (tmp_path / error).exists()
    assert _no_temp_dirs(tmp_path)


def test_requested_variants_adds_static_int8_only_with_int8():
    assert requested_variants(ExportConfig(int8_mode="static")) == ("fp32", "fp16", "int8", Variant.INT8_STATIC)
    assert requested_variants(ExportConfig(variants=(Variant.FP16,), int8_mode="static")) == ("fp16",)
    assert requested_variants(ExportConfig(variants=(Variant.INT8, Variant.FP32))) == ("fp32", "int8")


# ---------------------------------------------------------------------------- seed checkpoints


def _seed_module(layout: str, base: Path, n_labels: int):
    """The seeds' modules: BERTClass (pooler_output -> Linear) and SeedCLSClassifier (CLS -> Linear)."""
    import torch
    from seed_models import BERTClass, SeedCLSClassifier
    from transformers import BertConfig

    config = BertConfig.from_pretrained(base)
    torch.manual_seed(3)
    module = (BERTClass if layout == "bertclass" else SeedCLSClassifier)(config, n_labels)
    with torch.no_grad():  # random init is near-uniform; widen the head so probabilities really differ
        head = module.l3 if layout == "bertclass" else module.classifier
        head.weight.mul_(20.0)
    return module.eval()


@pytest.mark.parametrize("layout", ["bertclass", "cls-head"])
def test_seed_checkpoint_export_matches_the_original_module(tiny_checkpoint, tmp_path, layout):
    import torch
    from transformers import AutoTokenizer

    labels = artifacts.read_checkpoint_meta(tiny_checkpoint)["labels"]
    module = _seed_module(layout, tiny_checkpoint, len(labels))
    state = tmp_path / f"{layout}.pt"
    torch.save(module.state_dict(), state)
    out = tmp_path / "exp"
    result = export_model(ExportConfig(checkpoint=state, out=out, variants=(Variant.FP32,), base_model=str(tiny_checkpoint),
                                       labels=",".join(labels)))
    assert result.variant("fp32").max_abs_diff <= 1e-4
    manifest = artifacts.read_manifest(out)
    assert manifest["source"]["kind"] == f"seed-{layout}"
    assert manifest["source"]["sha256"] == artifacts.sha256_file(state)
    assert manifest["labels"] == labels

    tokenizer = AutoTokenizer.from_pretrained(out)
    session = _session(out / artifacts.variant_file(Variant.FP32))
    for batch in (TEXTS[:1], TEXTS):
        enc = tokenizer(batch, padding=True, return_tensors="np")
        with torch.inference_mode():
            inputs = ("input_ids", "attention_mask", "token_type_ids")[:3 if layout == "bertclass" else 2]
            expected = module(*(torch.from_numpy(enc[k]) for k in inputs))
        logits = session.run(None, {i.name: enc[i.name] for i in session.get_inputs()})[0]
        assert np.abs(logits - expected.numpy()).max() <= 1e-4
        assert np.ptp(expected.numpy()) > 0.1  # the comparison is not between two constants
    ops = _op_counts(out / artifacts.variant_file(Variant.FP32))
    assert ("Tanh" in ops) == (layout == "bertclass")  # the cls-head seed has no pooler


def test_seed_checkpoint_label_count_mismatch(tiny_checkpoint, tmp_path):
    import torch

    state = tmp_path / "seed.pt"
    torch.save(_seed_module("cls-head", tiny_checkpoint, 3).state_dict(), state)
    with pytest.raises(ModelError, match="3 outputs but 2 labels"):
        export_model(ExportConfig(checkpoint=state, out=tmp_path / "exp", base_model=str(tiny_checkpoint), labels="a,b"))
    with pytest.raises(ExportError, match="calibration-data"):
        export_model(ExportConfig(checkpoint=state, out=tmp_path / "exp", base_model=str(tiny_checkpoint), labels="a,b,c",
                                  variants=(Variant.INT8,), int8_mode="static"))
    assert not (tmp_path / "exp").exists() and _no_temp_dirs(tmp_path)


# ---------------------------------------------------------------------------- CLI


def test_cli_export_end_to_end_with_static_int8(tiny_checkpoint, tmp_path):
    from click.testing import CliRunner

    from toolkit.cli import cli

    out = tmp_path / "exp"
    args = ["export", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--variants", "fp32,int8",
            "--int8", "static", "--calibration-samples", "16"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.stdout.splitlines()[2:5]] == ["fp32", "int8", Variant.INT8_STATIC]
    manifest = artifacts.read_manifest(out)
    static = manifest["variants"][Variant.INT8_STATIC]
    assert static["file"] == artifacts.STATIC_INT8_FILE
    assert static["settings"]["calibration_samples"] == 16
    assert static["quantized_matmuls"] >= 6
    assert static["parity"]["max_abs_diff"] <= 5e-2
    artifacts.verify_checksums(out, manifest)

    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 2
    errors = [line for line in again.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {out}: already exists; pass --force to replace it or choose another --out"]
    missing = CliRunner().invoke(cli, ["export", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "no such checkpoint" in missing.stderr
    unknown = CliRunner().invoke(cli, ["export", "--variants", "fp32,int4", "--out", str(tmp_path / "y")])
    assert unknown.exit_code == 2 and "unknown variant 'int4'" in unknown.stderr


def test_duplicate_casts_from_older_float16_converters_are_dropped():
    """onnxruntime-gpu 1.31's converter emits one identical Cast per consumer; the file must still load."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from toolkit.optimize import drop_duplicate_casts

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    cast = dict(inputs=["x"], outputs=["x32"], to=TensorProto.FLOAT, name="x_cast_to_fp32_node")
    nodes = [helper.make_node("Cast", **cast), helper.make_node("Cast", **cast),
             helper.make_node("Add", ["x32", "x32"], ["y"], name="add")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(Exception, match="same node name|Duplicate definition"):
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    drop_duplicate_casts(model)
    assert [n.op_type for n in model.graph.node] == ["Cast", "Add"]
    out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": np.array([1.5, -2.0], dtype=np.float16)})[0]
    np.testing.assert_array_equal(out, [3.0, -4.0])
