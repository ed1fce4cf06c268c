"""`toolkit train` / `toolkit evaluate` through the CLI, as a user runs them, plus --help everywhere."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from toolkit import artifacts
from toolkit.cli import cli
from toolkit.demo_corpus import generate_demo_corpus

# Deliberately not alphabetical: a reader or model that sorts labels would swap columns.
FILE_LABELS = ["surprise", "joy", "anger", "sadness", "fear"]


@pytest.fixture(scope="module")
def reordered_csv(tmp_path_factory) -> Path:
    """The demo corpus written as a seed-style CSV whose label columns are in FILE_LABELS order."""
    texts, labels, names = generate_demo_corpus(n=1500, seed=3)
    order = [names.index(n) for n in FILE_LABELS]
    path = tmp_path_factory.mktemp("data") / "emotions.csv"
    lines = ["text," + ",".join(FILE_LABELS)]
    for text, row in zip(texts, labels[:, order]):
        lines.append('"' + text.replace('"', '""') + '",' + ",".join(str(int(v)) for v in row))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(reordered_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "ckpt"
    result = CliRunner().invoke(cli, ["train", "--data", str(reordered_csv), "--model", "tiny", "--epochs", "1",
                                      "--batch-size", "16", "--out", str(out), "--seed", "5"])
    return out, result


def test_train_cli_writes_a_standard_checkpoint_with_toolkit_metadata(trained):
    out, result = trained
    assert result.exit_code == 0, result.output
    assert "epoch 1: loss" in result.output and "macro-F1" in result.output and f"saved {out}" in result.output
    for name in ("config.json", "model.safetensors", "tokenizer.json", artifacts.CHECKPOINT_META):
        assert (out / name).is_file(), name
    meta = json.loads((out / artifacts.CHECKPOINT_META).read_text())
    config = json.loads((out / "config.json").read_text())
    assert meta["labels"] == FILE_LABELS
    assert [config["id2label"][str(i)] for i in range(5)] == FILE_LABELS
    assert config["problem_type"] == "multi_label_classification"
    assert len(meta["thresholds"]) == 5 and all(0.0 < t < 1.0 for t in meta["thresholds"])
    assert meta["data"]["split"] == "random" and meta["split_sizes"] == {"train": 1350, "validation": 150}
    assert meta["train_args"]["epochs"] == 1 and meta["train_args"]["lr"] == pytest.approx(1e-3)
    assert set(meta["metrics"]) == {"validation_at_0.5", "validation_tuned"}
    tuned, at_half = meta["metrics"]["validation_tuned"], meta["metrics"]["validation_at_0.5"]
    assert tuned["macro_f1"] >= at_half["macro_f1"] - 1e-9  # tuned on this very split
    assert "torch" in meta["versions"] and "transformers" in meta["versions"]


def test_labels_keep_file_order_end_to_end(reordered_csv, tmp_path):
    """Each column scores its own emotion: a reader or model that reorders labels fails this.

    One epoch leaves the random-init tiny model at the label priors, so this one trains three
    with small batches (more steps).
    """
    from sklearn.metrics import roc_auc_score

    from toolkit.config import DataConfig, TrainConfig
    from toolkit.data import read_dataset
    from toolkit.modeling import load_classifier, predict_proba
    from toolkit.train import train

    out = tmp_path / "ckpt"
    train(TrainConfig(data=DataConfig(path=reordered_csv), model="tiny", out=out, epochs=3, batch_size=16, seed=7))
    loaded = load_classifier(out)
    data = read_dataset(reordered_csv)
    assert loaded.label_names == data.label_names == FILE_LABELS
    probs = predict_proba(loaded, data.texts[:300])
    y = data.labels[:300]
    # Each column ranks its own label's positives first; a permuted column would sit near AUC 0.5.
    for j, name in enumerate(FILE_LABELS):
        assert roc_auc_score(y[:, j], probs[:, j]) > 0.7, name


def test_evaluate_cli_reports_metrics_and_json(trained, tmp_path):
    out, _ = trained
    report = tmp_path / "eval.json"
    result = CliRunner().invoke(cli, ["evaluate", "--checkpoint", str(out), "--json", str(report)])
    assert result.exit_code == 0, result.output
    for word in ("micro-F1", "macro-F1", "exact match", "ROC-AUC micro"):
        assert word in result.output
    for name in FILE_LABELS:
        assert name in result.output
    data = json.loads(report.read_text())
    meta = json.loads((out / artifacts.CHECKPOINT_META).read_text())
    # evaluate re-creates the recorded validation split: same numbers as training reported
    assert data["stored_thresholds"]["macro_f1"] == pytest.approx(meta["metrics"]["validation_tuned"]["macro_f1"], abs=1e-6)
    assert [m["label"] for m in data["stored_thresholds"]["per_label"]] == FILE_LABELS


def test_train_refuses_to_overwrite_without_force(trained, reordered_csv):
    out, _ = trained
    before = (out / "model.safetensors").read_bytes()
    result = CliRunner().invoke(cli, ["train", "--data", str(reordered_csv), "--model", "tiny", "--epochs", "1",
                                      "--out", str(out)])
    assert result.exit_code != 0 and "--force" in result.output
    assert (out / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--pos-weight", "-1"], "--pos-weight must be 'auto' or a positive number"),
    (["--model", "no-such-org/no-such-model"], "offline preset (minilm, tiny)"),
])
def test_train_usage_errors(tmp_path, args, message, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "o"), "--max-train-samples", "50"] + args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_pos_weight_auto_trains(reordered_csv, tmp_path):
    from toolkit.config import DataConfig, TrainConfig
    from toolkit.train import train

    result = train(TrainConfig(data=DataConfig(path=reordered_csv), model="tiny", out=tmp_path / "pw", epochs=1,
                               pos_weight="auto", max_train_samples=200))
    assert np.isfinite(result.history[0].train_loss)
    assert json.loads((tmp_path / "pw" / artifacts.CHECKPOINT_META).read_text())["train_args"]["pos_weight"] == "auto"


SUBCOMMANDS = ["train", "evaluate", "export", "validate", "bench", "predict"]


@pytest.mark.parametrize("command", [[]] + [[c] for c in SUBCOMMANDS])
def test_help_for_every_command(command):
    result = CliRunner().invoke(cli, command + ["--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output
    if not command:
        for name in SUBCOMMANDS:
            assert name in result.output


def test_help_does_not_import_torch():
    code = ("import sys; from toolkit.cli import cli\n"
            "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'optimum', 'onnxruntime') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
