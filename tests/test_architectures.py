"""The support matrix: every architecture in the README through train, export, validate, runtime and bench.

Each architecture is a tiny random-init encoder (hidden 32, 2 layers, 4 heads) with its own
tokenizer type trained on the demo texts (tests/tiny_architectures.py), fine-tuned by `toolkit
train --model DIR` until it has learned the demo corpus, then exported once; every test of that
architecture shares the trained checkpoint and the export (session fixtures).

Cost: training runs with one torch thread. At hidden 32 the per-op threading overhead dominates:
an epoch measured 2.2 s with one thread against 39 s with two on this shared 2-core machine
(cProfile, RoBERTa, 1,200 texts, batch 16).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny_architectures import ARCHITECTURES, save_encoder, save_hf_classifier

from toolkit import artifacts
from toolkit.config import BenchConfig, ExportConfig, TrainConfig, ValidateConfig

# Enough steps for every architecture to learn the demo corpus: RoBERTa at 1,500 texts reached tuned
# macro-F1 0.93 after 10 epochs at lr 3e-3, and stayed at the label priors at 1e-3. With these
# settings the nine reach 0.67 (XLM-R, ELECTRA: Unigram/small-embedding models learn slowest) to 0.9+.
TRAIN = dict(epochs=8, batch_size=16, lr=3e-3, max_train_samples=1200, seed=7, precision="fp32", patience=8)
# Predicting the label priors scores about 0.47 tuned macro-F1 on this split (measured: RoBERTa at lr
# 1e-3 stayed there); 0.65 is clearly learned, as conftest's tiny BERT (0.67) that the parity tests use.
LEARNED_MACRO_F1 = 0.65
# The export's int8 search, bounded for the suite (the default is 600 s): tiny models pass at step 1-2.
SEARCH = dict(int8_search_seconds=60, int8_max_float=2)
# What onnxruntime's "bert" fusions match per family (structural: the same for any weights); the README's
# support matrix lists these. DeBERTa's disentangled attention, MPNet's relative bias and ModernBERT's
# rotary attention are not the BERT attention pattern, so only their LayerNorm/GELU parts fuse.
FUSED = {
    "bert": {"Attention", "SkipLayerNormalization", "EmbedLayerNormalization", "BiasGelu"},
    "distilbert": {"Attention", "SkipLayerNormalization", "EmbedLayerNormalization", "BiasGelu"},
    "roberta": {"Attention", "SkipLayerNormalization", "BiasGelu"},
    "xlm-roberta": {"Attention", "SkipLayerNormalization", "BiasGelu"},
    "albert": {"Attention", "SkipLayerNormalization", "FastGelu"},
    "electra": {"Attention", "SkipLayerNormalization", "EmbedLayerNormalization", "BiasGelu"},
    "deberta-v2": {"SkipLayerNormalization", "BiasGelu"},
    "mpnet": {"SkipLayerNormalization", "BiasGelu"},
    "modernbert": {"SkipLayerNormalization", "Gelu"},
}
PROBE_TEXTS = ["I love this!", "I'm terrified of the dark and I can't stop shaking",
               "ok", "wow, I did not expect that; I am so happy about the news but also a little sad",
               "I'm so angry about the delay", "what a twist: the end of the story"]


@pytest.fixture(scope="session")
def demo_texts() -> list[str]:
    from toolkit.demo_corpus import generate_demo_corpus

    return generate_demo_corpus()[0]


@pytest.fixture(scope="session", params=ARCHITECTURES)
def arch(request, demo_texts, tmp_path_factory) -> dict:
    """One architecture trained on the demo corpus and exported (fp32, fp16, int8): paths and results."""
    import torch

    from toolkit.export import export_model
    from toolkit.train import train

    name = request.param
    root = tmp_path_factory.mktemp(name)
    encoder = save_encoder(name, demo_texts, root / "encoder")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see the module doc
    try:
        trained = train(TrainConfig(model=str(encoder), out=root / "checkpoint", **TRAIN))
    finally:
        torch.set_num_threads(threads)
    export_model(ExportConfig(checkpoint=root / "checkpoint", out=root / "export", **SEARCH))
    return {"name": name, "checkpoint": root / "checkpoint", "export": root / "export", "trained": trained,
            "manifest": artifacts.read_manifest(root / "export")}


def test_trained_model_learned_the_demo_corpus(arch):
    assert arch["trained"].metrics_tuned.macro_f1 >= LEARNED_MACRO_F1, arch["trained"].metrics_tuned.macro_f1


def test_export_writes_three_variants_and_records_fusions(arch):
    manifest = arch["manifest"]
    assert set(manifest["variants"]) == {"fp32", "fp16", "int8"} and manifest["not_written"] == {}
    for entry in manifest["variants"].values():
        assert (arch["export"] / entry["file"]).is_file() and entry["status"] == "ok"
    fusion = manifest["variants"]["fp16"]["settings"]["fusion"]
    assert fusion["optimizer_model_type"] == "bert"  # every family here maps to onnxruntime's bert fusions
    fused_ops = manifest["variants"]["fp16"]["fused_ops"]  # contrib ops counted in the file itself
    assert all(fusion["fused"].get(op) == count for op, count in fused_ops.items()), (fusion, fused_ops)
    assert bool(fusion["fused"]) != fusion["nothing_fused"]
    assert FUSED[arch["name"]] <= set(fusion["fused"]), fusion["fused"]
    assert ("Attention" in fusion["fused"]) == ("Attention" in FUSED[arch["name"]])
    assert fusion["nothing_fused"] == bool(fusion["note"])  # nothing fused always says why


def test_inputs_come_from_the_graph_and_pad_id_from_the_tokenizer(arch):
    from transformers import AutoTokenizer

    from toolkit.runtime import EmotionClassifier

    inputs = arch["manifest"]["inputs"]
    takes_segments = arch["name"] in ("bert", "albert", "electra")  # DeBERTa-v3 has type_vocab_size 0
    assert ("token_type_ids" in inputs) == takes_segments, inputs
    hf = AutoTokenizer.from_pretrained(arch["checkpoint"])
    assert list(hf(["ok"]).keys()) == [n for n in hf.model_input_names]  # saved matched to the forward
    saved = json.loads((arch["export"] / artifacts.TOKENIZER_JSON).read_text())
    assert saved["padding"]["pad_id"] == hf.pad_token_id
    assert EmotionClassifier.load(arch["export"], variant="fp32", provider="cpu")._pad_id == hf.pad_token_id


def test_int8_accounts_for_every_weight_matmul_per_token_or_float_with_a_reason(arch):
    import onnx

    from toolkit.export.int8.graph import weight_matmuls

    int8 = arch["manifest"]["variants"]["int8"]
    matmuls = int8["settings"]["matmuls"]
    fp32 = onnx.load(str(arch["export"] / "model.onnx"), load_external_data=False)
    assert matmuls["per_tensor"] == 0
    assert matmuls["per_token"] + len(matmuls["float"]) == len(weight_matmuls(fp32))
    assert all(reason and reason != "no reason recorded" for reason in matmuls["float"].values()), matmuls["float"]
    assert int8["settings"]["search"]["ran"] is True
    assert len(matmuls["float"]) <= 1 + SEARCH["int8_max_float"]  # the logits layer plus the search's picks


def test_validate_passes(arch, certify_csv):
    from toolkit.validate import validate_export

    # raises ValidationFailed on any gate
    result = validate_export(ValidateConfig(export=arch["export"], data=certify_csv))
    assert {v.variant for v in result.variants} == {"fp32", "fp16", "int8"}


def test_runtime_scores_equal_pytorch_within_the_gates(arch):
    from toolkit.export.pipeline import FP32_TOLERANCE, WARN_TOLERANCE
    from toolkit.modeling import load_classifier, predict_proba
    from toolkit.runtime import EmotionClassifier

    reference = predict_proba(load_classifier(arch["checkpoint"]), PROBE_TEXTS)
    assert reference.std() > 0.05  # a trained model: probabilities spread, not the label priors
    for variant, limit in (("fp32", FP32_TOLERANCE), ("fp16", WARN_TOLERANCE["fp16"])):
        scores = EmotionClassifier.load(arch["export"], variant=variant, provider="cpu").predict_proba(PROBE_TEXTS)
        assert np.abs(scores - reference).max() <= limit, (variant, np.abs(scores - reference).max())
    # int8's gates are on decisions over the validation split (test_validate_passes); per score, the
    # probe texts' mean |Δprob| stays at the 1e-2 level fp16 is held to everywhere
    scores = EmotionClassifier.load(arch["export"], variant="int8", provider="cpu").predict_proba(PROBE_TEXTS)
    assert np.abs(scores - reference).mean() <= WARN_TOLERANCE["fp16"], np.abs(scores - reference).mean()


def test_int8_is_batch_invariant(arch):
    from toolkit.runtime import EmotionClassifier

    classifier = EmotionClassifier.load(arch["export"], variant="int8", provider="cpu")
    alone = np.vstack([classifier.predict_proba([text]) for text in PROBE_TEXTS])
    together = classifier.predict_proba(PROBE_TEXTS)  # padded to the longest probe text
    assert np.abs(alone - together).max() <= 1e-6


def test_bench_runs_with_its_pytorch_baseline(arch):
    from toolkit.bench import run_bench

    result = run_bench(BenchConfig(export=arch["export"], batches=(2,), seq_lens=(8,), iterations=2, warmup=0,
                                   provider="cpu"))
    rates = {r.variant: r.sequences_per_s for r in result.records}
    assert set(rates) >= {"pytorch-fp32", "fp32", "fp16", "int8"}
    assert all(rate > 0 for rate in rates.values())


def test_score_equals_the_runtime(arch, tmp_path):
    """`toolkit score` (local engine) on this architecture's export: the runtime's scores, ids kept."""
    from toolkit.config import ScoreConfig
    from toolkit.runtime import EmotionClassifier
    from toolkit.score import score_files

    source = tmp_path / "texts.jsonl"
    source.write_text("".join(json.dumps({"id": f"t{i}", "text": t}) + "\n" for i, t in enumerate(PROBE_TEXTS)))
    result = score_files(ScoreConfig(export=arch["export"], input=str(source), output=tmp_path / "out.jsonl", id_column="id",
                                     variant="int8", provider="cpu"))
    assert (result.rows, result.errors) == (len(PROBE_TEXTS), 0)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    classifier = EmotionClassifier.load(arch["export"], variant="int8", provider="cpu")
    scores = np.array([[row[label] for label in classifier.labels] for row in rows], dtype=np.float32)
    assert [row["id"] for row in rows] == [f"t{i}" for i in range(len(PROBE_TEXTS))]
    np.testing.assert_array_equal(scores, classifier.predict_proba(PROBE_TEXTS))


@pytest.fixture(scope="module")
def serve_port():
    """One local Ray with Ray Serve for the module; each architecture's app replaces the previous one."""
    ray = pytest.importorskip("ray", reason="toolkit[serve] (ray) is not installed")
    serve = pytest.importorskip("ray.serve", reason="toolkit[serve] (ray[serve]) is not installed")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config={"enable_access_log": False})
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()


def test_serve_equals_the_runtime(arch, serve_port):
    """`toolkit serve`'s application on this architecture's export answers with the runtime's scores."""
    from http_client import request_json
    from ray import serve

    from toolkit.config import ServeConfig
    from toolkit.runtime import EmotionClassifier
    from toolkit.serve import APP_NAME, build_app

    cfg = ServeConfig(export=arch["export"], variant="int8", provider="cpu", replicas=1, threads_per_replica=1,
                      port=serve_port)
    serve.run(build_app(cfg), name=APP_NAME, route_prefix="/")
    try:
        status, body = request_json(f"http://127.0.0.1:{serve_port}", "/predict", {"texts": PROBE_TEXTS})
    finally:
        serve.delete(APP_NAME)  # the next architecture's app starts from nothing
    assert status == 200, body
    classifier = EmotionClassifier.load(arch["export"], variant="int8", provider="cpu")
    served = np.array([[p["scores"][label] for label in classifier.labels] for p in body["predictions"]])
    assert body["variant"] == "int8"
    np.testing.assert_allclose(served, classifier.predict_proba(PROBE_TEXTS), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------- checkpoints users bring


@pytest.mark.parametrize("name", ["distilbert", "mpnet"])
def test_a_checkpoint_saved_with_a_bert_tokenizer_trains_exports_and_benches(name, demo_texts, tmp_path):
    """DistilBERT/MPNet take no token_type_ids, yet a BERT tokenizer emits them: the forward signature decides."""
    from toolkit.bench import run_bench
    from toolkit.export import export_model
    from toolkit.train import train

    from transformers import AutoTokenizer

    encoder = save_encoder(name, demo_texts, tmp_path / "encoder", tokenizer_of="bert")
    assert "token_type_ids" in AutoTokenizer.from_pretrained(encoder)(["ok"])  # what the user's directory emits
    train(TrainConfig(model=str(encoder), out=tmp_path / "checkpoint", epochs=1, batch_size=32, max_train_samples=64,
                      precision="fp32"))
    export_model(ExportConfig(checkpoint=tmp_path / "checkpoint", out=tmp_path / "export", int8_search_seconds=0))
    assert artifacts.read_manifest(tmp_path / "export")["inputs"] == ["input_ids", "attention_mask"]
    result = run_bench(BenchConfig(export=tmp_path / "export", batches=(2,), seq_lens=(8,), iterations=1, warmup=0,
                                   provider="cpu"))
    assert "pytorch-fp32" in {r.variant for r in result.records}


@pytest.mark.slow
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_plain_hf_multilabel_checkpoint_exports_with_the_cli(name, demo_texts, tmp_path):
    """A hub-style `*ForSequenceClassification` directory (problem_type, id2label) given to `toolkit export`."""
    from click.testing import CliRunner

    from toolkit.cli import cli

    labels = ["anger", "fear", "joy"]
    checkpoint = save_hf_classifier(name, demo_texts, labels, tmp_path / "hf")
    out = tmp_path / "export"
    run = CliRunner().invoke(cli, ["export", "--checkpoint", str(checkpoint), "--out", str(out)])
    assert run.exit_code == 0, run.output
    manifest = artifacts.read_manifest(out)
    assert set(manifest["variants"]) == {"fp32", "fp16", "int8"} and manifest["labels"] == labels
    assert manifest["source"]["kind"] == "huggingface"
    assert manifest["variants"]["int8"]["settings"]["matmuls"]["per_tensor"] == 0
    assert manifest["variants"]["fp32"]["parity"]["max_abs_diff"] <= 1e-4


def test_matrix_covers_the_readme_support_matrix():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Support matrix", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(ARCHITECTURES)


def test_smoothing_skips_albert_shared_weights_and_keeps_the_graph_exact(demo_texts, tmp_path):
    """ALBERT's layers share one set of weights: a row scaling fitted to one layer's activations would be
    wrong for the others, so those activations are left out with the reason, and what is smoothed is exact."""
    import onnx
    import onnxruntime as ort

    from toolkit.export import export_model
    from toolkit.export.int8 import apply_smoothing, encode_batches, logits_head_nodes, smoothing_factors
    from toolkit.modeling import load_classifier

    checkpoint = save_hf_classifier("albert", demo_texts, ["anger", "fear", "joy"], tmp_path / "hf")
    export_model(ExportConfig(checkpoint=checkpoint, out=tmp_path / "export", variants=("fp32",)))
    fp32 = tmp_path / "export" / "model.onnx"
    model = onnx.load(str(fp32))
    names = [i.name for i in model.graph.input]
    feeds = [feed for _, feed in encode_batches(load_classifier(checkpoint).tokenizer, PROBE_TEXTS, names, 32)]
    skipped: dict = {}
    factors = smoothing_factors(fp32, feeds, logits_head_nodes(model), skipped=skipped)
    shared_layer = [n for n in model.graph.node if n.op_type == "MatMul" and "albert_layers" in n.name
                    and n.input[1] in {i.name for i in model.graph.initializer}]
    assert len(shared_layer) == 12  # 6 weight MatMuls per layer, 2 layers, 6 shared weights
    assert {n.input[0] for n in shared_layer} <= set(skipped) and not set(skipped) & set(factors)
    assert all("shared by MatMuls reading 2 different activations" in why for why in skipped.values())

    apply_smoothing(model, factors)  # what remains (the embedding projection) is smoothed exactly
    plain = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    smoothed = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for feed in feeds:
        np.testing.assert_allclose(smoothed.run(None, feed)[0], plain.run(None, feed)[0], atol=1e-5)

    layer_input = shared_layer[0].input[0]
    rows = {i.name: i.dims[0] for i in model.graph.initializer}
    forced = dict(factors, **{n.input[0]: np.full(rows[n.input[1]], 2.0, np.float32) for n in shared_layer})
    with pytest.raises(ValueError, match="is read with .* and"):
        apply_smoothing(onnx.load(str(fp32)), forced)
    assert layer_input in skipped
