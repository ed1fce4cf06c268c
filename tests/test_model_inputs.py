"""No silent defaults on the model's inputs: max_length from the checkpoint and range-checked, the share
of texts truncation cut (evaluate, validate, bench), and an --opset the int8 recipe cannot use refused."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from toolkit import artifacts
from toolkit.cli import cli
from toolkit.config import ExportConfig, Variant
from toolkit.errors import ModelError, ToolkitError

LABELS = ["anger", "joy", "sadness"]


def _hf_checkpoint(path, max_positions: int, model_max_length, model_type: str = "bert", labels=LABELS):
    """A plain Hugging Face multi-label checkpoint (no toolkit.json), tiny, with a WordPiece tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification, RobertaConfig, RobertaForSequenceClassification

    from toolkit.demo_corpus import generate_demo_corpus
    from toolkit.modeling import train_wordpiece_tokenizer

    texts, _, _ = generate_demo_corpus(n=300, seed=1)
    tokenizer = train_wordpiece_tokenizer(texts, vocab_size=400)
    shape = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=max_positions, problem_type="multi_label_classification",
                 id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    if model_type == "roberta":
        model = RobertaForSequenceClassification(RobertaConfig(pad_token_id=1, **shape))
    else:
        model = BertForSequenceClassification(BertConfig(**shape))
    tokenizer.model_max_length = model_max_length if model_max_length is not None else int(1e30)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def hf_512(tmp_path_factory):
    return _hf_checkpoint(tmp_path_factory.mktemp("hf") / "bert512", max_positions=512, model_max_length=512)


# ------------------------------------------------------------------ max_length from the checkpoint


def test_a_512_token_checkpoint_exports_512(hf_512, tmp_path):
    from toolkit.export import export_model

    out = tmp_path / "export"
    export_model(ExportConfig(checkpoint=hf_512, out=out, variants=(Variant.FP32,)))
    assert artifacts.read_manifest(out)["max_length"] == 512  # not the old silent 128
    from toolkit.runtime import EmotionClassifier

    clf = EmotionClassifier.load(out, variant="fp32", provider="cpu")
    assert clf.max_length == 512 and len(clf._encode(["word " * 600])[0].ids) == 512


def test_max_length_sources_in_order(tmp_path):
    from toolkit.modeling import load_classifier

    # no tokenizer length: the position embeddings say 64
    unset = _hf_checkpoint(tmp_path / "unset", max_positions=64, model_max_length=None)
    assert load_classifier(unset).max_length == 64
    # a tokenizer claiming more than the model has positions for: capped at the positions
    claims = _hf_checkpoint(tmp_path / "claims", max_positions=64, model_max_length=512)
    assert load_classifier(claims).max_length == 64
    # toolkit.json wins, and is checked against the positions
    meta = {"labels": LABELS, "max_length": 48}
    artifacts.write_checkpoint_meta(unset, meta)
    assert load_classifier(unset).max_length == 48
    artifacts.write_checkpoint_meta(unset, {**meta, "max_length": 100})
    with pytest.raises(ModelError, match=r"toolkit.json says max_length 100, but the model has only 64 positions"):
        load_classifier(unset)


def test_position_limit_is_asked_of_the_model(tmp_path):
    """RoBERTa declares 2 more positions than it reads (padding_idx offset); BERT reads them all."""
    from transformers import AutoModelForSequenceClassification

    from toolkit.modeling import position_limit

    roberta = _hf_checkpoint(tmp_path / "roberta", max_positions=66, model_max_length=None, model_type="roberta")
    assert position_limit(AutoModelForSequenceClassification.from_pretrained(roberta)) == 64
    bert = _hf_checkpoint(tmp_path / "bert", max_positions=66, model_max_length=None)
    assert position_limit(AutoModelForSequenceClassification.from_pretrained(bert)) == 66


def test_max_length_beyond_the_positions_is_refused_up_front(hf_512, tmp_path):
    from toolkit.export import export_model

    out = tmp_path / "export"
    with pytest.raises(ModelError, match=r"--max-length 1000 is outside what BertForSequenceClassification can read "
                                         r"\(2 to 512 tokens, its position embeddings\); pass --max-length <= 512"):
        export_model(ExportConfig(checkpoint=hf_512, out=out, max_length=1000))
    assert not out.exists()  # nothing was converted or written
    res = CliRunner().invoke(cli, ["export", "--checkpoint", str(hf_512), "--out", str(out), "--max-length", "600"])
    assert res.exit_code == 2 and "--max-length 600 is outside" in res.output and not out.exists()


def test_training_beyond_the_positions_is_refused_before_it_starts(tmp_path):
    from toolkit.config import TrainConfig
    from toolkit.train import train

    from toolkit.demo_corpus import LABELS as DEMO_LABELS

    model = _hf_checkpoint(tmp_path / "bert64", max_positions=64, model_max_length=None, labels=DEMO_LABELS)
    out = tmp_path / "ckpt"
    with pytest.raises(ModelError, match=r"--max-length 128 is outside .* \(2 to 64 tokens, its position embeddings\)"):
        train(TrainConfig(model=str(model), out=out, epochs=1, max_length=128, max_train_samples=64))
    assert not out.exists()


# ------------------------------------------------------------------ --opset


def test_an_opset_the_int8_recipe_cannot_use_is_refused_up_front(hf_512, tmp_path):
    with pytest.raises(ToolkitError, match=r"--opset 17 cannot hold the per-token int8 recipe .* use --opset 18"):
        ExportConfig(opset=17)
    assert ExportConfig(opset=17, variants=(Variant.FP32, Variant.FP16)).opset == 17  # no int8: 17 is fine
    assert ExportConfig(opset=17, int8_recipe="per-tensor").opset == 17  # onnxruntime's own recipe runs at 17
    out = tmp_path / "export"
    res = CliRunner().invoke(cli, ["export", "--checkpoint", str(hf_512), "--out", str(out), "--opset", "17"])
    assert res.exit_code == 2 and "--opset 17 cannot hold the per-token int8 recipe" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not out.exists()


# ------------------------------------------------------------------ the share of texts truncation cut


def _lengths_texts(tokenizer, max_length: int) -> list[str]:
    """Texts of exactly max_length - 1, max_length and max_length + 1 tokens ([CLS] and [SEP] included),
    from a word the vocabulary holds as one token."""
    assert tokenizer.token_to_id("happy") is not None  # one token per word: the lengths below are exact
    return [" ".join(["happy"] * (max_length - 2 + extra)) for extra in (-1, 0, 1)] + ["", "happy " * 500]


def test_count_truncated_counts_texts_over_max_length(tiny_export_session):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from toolkit.runtime import EmotionClassifier, count_truncated

    clf = EmotionClassifier.load(tiny_export_session, variant="fp32", provider="cpu")
    runtime_tokenizer = Tokenizer.from_file(str(tiny_export_session / "tokenizer.json"))
    texts = _lengths_texts(runtime_tokenizer, clf.max_length)
    got = count_truncated(runtime_tokenizer, texts, clf.max_length)
    assert (got.cut, got.texts, got.max_length) == (2, 5, clf.max_length)  # max_length + 1 and the 500 words
    assert got.share == pytest.approx(0.4) and got.describe() == \
        f"truncation cut 2 of 5 texts (40.0%) at {clf.max_length} tokens"
    # the checkpoint's transformers tokenizer counts the same; neither tokenizer is changed by counting
    hf = AutoTokenizer.from_pretrained(json.loads((tiny_export_session / "manifest.json").read_text())["source"]["path"])
    assert count_truncated(hf, texts, clf.max_length) == got
    assert count_truncated(clf._tokenizer, texts, clf.max_length) == got
    assert len(clf._encode([texts[-1]])[0].ids) == clf.max_length  # the runtime still truncates


@pytest.fixture(scope="module")
def long_data(tiny_export_session, tmp_path_factory):
    """12 labelled texts, 3 of them over the export's max_length."""
    manifest = artifacts.read_manifest(tiny_export_session)
    labels, max_length = manifest["labels"], manifest["max_length"]
    texts = [f"I am so happy about the trip {i}" for i in range(9)] + ["happy " * (max_length + k) for k in (0, 5, 50)]
    path = tmp_path_factory.mktemp("long") / "long.csv"
    rows = ["text," + ",".join(labels)]
    rows += [json.dumps(t) + "," + ",".join("1" if label == "joy" else "0" for label in labels) for t in texts]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path, max_length


def test_evaluate_reports_the_share_truncation_cut(tiny_checkpoint, long_data):
    path, max_length = long_data
    res = CliRunner().invoke(cli, ["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", str(path)])
    assert res.exit_code == 0, res.output
    assert f"truncation cut 3 of 12 texts (25.0%) at {max_length} tokens" in res.output


def test_validate_reports_the_share_truncation_cut(tiny_export, long_data):
    from toolkit.config import ValidateConfig
    from toolkit.errors import ValidationFailed
    from toolkit.validate import validate_export
    from toolkit.validate_report import format_summary

    path, max_length = long_data
    try:
        result = validate_export(ValidateConfig(export=tiny_export, data=path, variants=("fp32",), provider="cpu"))
    except ValidationFailed as e:  # 12 texts are too few for some gates; the count is what is checked here
        result = e.result
    assert result.truncation == {"cut": 3, "texts": 12, "share": 0.25, "max_length": max_length}
    assert result.to_dict()["truncation"]["cut"] == 3
    assert f"truncation cut 3 of 12 texts (25.0%) at {max_length} tokens" in format_summary(result)


def test_bench_real_text_reports_the_share_truncation_cut(tiny_export_session, long_data, tmp_path):
    from toolkit import bench
    from toolkit.config import BenchConfig

    path, max_length = long_data
    cfg = BenchConfig(export=tiny_export_session, data=path, batches=(4,), seq_lens=(16,), iterations=1, warmup=0,
                      provider="cpu", variants=(Variant.FP32,), baseline=False, json_path=tmp_path / "r.json")
    result = bench.run_bench(cfg)
    assert f"truncation cut 3 of 12 texts (25.0%) at {max_length} tokens" in bench.format_summary(result)
