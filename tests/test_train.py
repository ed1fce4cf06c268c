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
    # --epochs given, --lr and --warmup not: the tiny preset's defaults fill those two
    assert meta["train_args"]["epochs"] == 1 and meta["train_args"]["lr"] == pytest.approx(1e-3)
    assert meta["train_args"]["warmup_ratio"] == pytest.approx(0.1) and meta["defaults_source"].startswith("tiny preset")
    assert set(meta["metrics"]) == {"validation_at_0.5", "validation_tuned", "validation_tuned_crossfit"}
    tuned, at_half = meta["metrics"]["validation_tuned"], meta["metrics"]["validation_at_0.5"]
    assert tuned["macro_f1"] >= at_half["macro_f1"] - 1e-9  # tuned on this very split
    # cross-fitted thresholds never see the texts they decide: no better than in-sample tuning
    assert meta["metrics"]["validation_tuned_crossfit"]["macro_f1"] <= tuned["macro_f1"] + 1e-9
    assert meta["cross_fit"]["folds"] == 5
    assert "in-sample" in result.output and "cross-fitted (5 folds)" in result.output
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
    # evaluate re-creates the recorded validation split: same numbers as training reported,
    # labelled in-sample, with the cross-fitted column beside them
    assert data["stored_thresholds"]["macro_f1"] == pytest.approx(meta["metrics"]["validation_tuned"]["macro_f1"], abs=1e-6)
    assert data["tuned_crossfit"]["macro_f1"] == pytest.approx(
        meta["metrics"]["validation_tuned_crossfit"]["macro_f1"], abs=1e-6)
    assert "stored thresholds, in-sample" in result.output and "tuned, cross-fitted" in result.output
    assert "in-sample" in data["thresholds_note"]
    assert [m["label"] for m in data["stored_thresholds"]["per_label"]] == FILE_LABELS


def test_checkpoint_pins_its_data_and_says_how_each_threshold_was_set(trained, reordered_csv, tmp_path):
    from toolkit.config import DataConfig
    from toolkit.data import fingerprint, load_splits
    from toolkit.metrics import MIN_TUNE_POSITIVES

    out, _ = trained
    meta = json.loads((out / artifacts.CHECKPOINT_META).read_text())
    spec = meta["data"]
    assert spec["files"] == {str(reordered_csv.resolve()): artifacts.sha256_file(reordered_csv)}
    splits = load_splits(DataConfig(path=reordered_csv, seed=5))
    assert spec["fingerprints"]["validation"] == fingerprint(splits.validation)
    assert spec["fingerprints"]["train"]["rows"] == 1350 and spec["fingerprints"]["validation"]["rows"] == 150
    rules = meta["threshold_rules"]
    assert rules["min_positives"] == MIN_TUNE_POSITIVES and rules["few_positive_rule"] == "bagged"
    assert list(rules["labels"]) == FILE_LABELS
    positives = splits.validation.labels.sum(0)
    for j, name in enumerate(FILE_LABELS):  # the rule follows each label's validation positives
        rule = rules["labels"][name]
        assert rule["positives"] == int(positives[j])
        assert rule["rule"] == ("tuned" if positives[j] >= MIN_TUNE_POSITIVES else "bagged" if positives[j] else "default")
    # evaluate names the texts it scored and shows the Jaccard index
    result = CliRunner().invoke(cli, ["evaluate", "--checkpoint", str(out), "--json", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    assert f"150 texts (150 rows, sha256 {spec['fingerprints']['validation']['rows_sha256'][:12]})" in result.output
    assert "Jaccard (samples)" in result.output
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["data_fingerprint"] == spec["fingerprints"]["validation"]
    assert 0.0 < report["stored_thresholds"]["jaccard_samples"] < 1.0


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


# ---------------------------------------------------------------------------- defaults


@pytest.mark.parametrize("given, expected_lr, expected_epochs", [
    ({}, None, None),  # the preset's measured defaults
    ({"lr": 3e-5}, 3e-5, None),  # an explicit lr wins; epochs still the preset's
    ({"lr": 3e-5, "epochs": 2, "warmup_ratio": 0.0}, 3e-5, 2),
])
def test_preset_defaults_apply_only_when_not_given(given, expected_lr, expected_epochs):
    from toolkit.config import TrainConfig
    from toolkit.train import PRESET_DEFAULTS, _resolve_defaults

    preset = PRESET_DEFAULTS["minilm"]
    cfg, defaults = _resolve_defaults(TrainConfig(model="minilm", **given))
    assert defaults == preset
    assert cfg.lr == pytest.approx(expected_lr if expected_lr is not None else preset.lr)
    assert cfg.epochs == (expected_epochs if expected_epochs is not None else preset.epochs)
    assert cfg.warmup_ratio == pytest.approx(given.get("warmup_ratio", preset.warmup_ratio))
    assert preset.lr >= 5 * 2e-5  # MiniLM's measured lr is far above BERT-base's (benchmarks/training.md)


def test_directories_get_bert_base_defaults_and_sentence_transformers_folders_minilms(tmp_path):
    from toolkit.config import TrainConfig
    from toolkit.train import BERT_BASE_DEFAULTS, PRESET_DEFAULTS, _resolve_defaults

    plain, sentence = tmp_path / "bert", tmp_path / "st"
    plain.mkdir()
    sentence.mkdir()
    (sentence / "modules.json").write_text("[]")
    cfg, _ = _resolve_defaults(TrainConfig(model=str(plain)))
    assert (cfg.lr, cfg.epochs) == (BERT_BASE_DEFAULTS.lr, BERT_BASE_DEFAULTS.epochs) == (2e-5, 3)
    cfg, defaults = _resolve_defaults(TrainConfig(model=str(sentence)))
    assert (cfg.lr, cfg.epochs) == (PRESET_DEFAULTS["minilm"].lr, PRESET_DEFAULTS["minilm"].epochs)
    assert "sentence-transformers" in defaults.source
    cfg, _ = _resolve_defaults(TrainConfig(model="hub-org/some-bert", lr=7e-5))
    assert (cfg.lr, cfg.epochs) == (7e-5, 3)
    cfg, _ = _resolve_defaults(TrainConfig(model="tiny"))
    assert (cfg.lr, cfg.epochs) == (1e-3, 3)


# ---------------------------------------------------------------------------- columns, ids, objective


@pytest.fixture(scope="module")
def semeval_like(tmp_path_factory) -> Path:
    """The demo corpus in SemEval-2018 E-c's layout (ID, Tweet, 0/1 per emotion) plus a metadata column."""
    texts, labels, names = generate_demo_corpus(n=600, seed=11)
    lines = ["ID\tTweet\t" + "\t".join(names[:2]) + "\tsource\t" + "\t".join(names[2:])]
    for i, (text, row) in enumerate(zip(texts, labels.astype(int))):
        cells = [f"2018-En-{i:05d}", text, *map(str, row[:2]), "web" if i % 3 else "app", *map(str, row[2:])]
        lines.append("\t".join(cells))
    path = tmp_path_factory.mktemp("semeval") / "E-c.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_train_and_evaluate_a_file_with_id_and_metadata_columns(semeval_like, tmp_path):
    base = ["train", "--data", str(semeval_like), "--text-column", "Tweet", "--model", "tiny", "--epochs", "1",
            "--batch-size", "16", "--precision", "fp32", "--out", str(tmp_path / "ckpt")]
    refused = CliRunner().invoke(cli, base)
    assert refused.exit_code == 2 and "column 'ID' has '2018-En-" in refused.output
    assert "--id-column ID" in refused.output and "--label-columns" in refused.output

    columns = ["--id-column", "ID", "--ignore-columns", "source"]
    trained = CliRunner().invoke(cli, base + columns + ["--threshold-objective", "micro"])
    assert trained.exit_code == 0, trained.output
    meta = json.loads((tmp_path / "ckpt" / artifacts.CHECKPOINT_META).read_text())
    assert meta["labels"] == generate_demo_corpus(n=10)[2]  # source skipped, file order kept
    assert meta["train_args"]["threshold_objective"] == "micro"
    assert len(set(meta["thresholds"])) == 1  # micro objective: one threshold shared by every label

    preds = tmp_path / "preds.jsonl"
    evaluated = CliRunner().invoke(cli, ["evaluate", "--checkpoint", str(tmp_path / "ckpt"), "--data", str(semeval_like),
                                         "--text-column", "Tweet", *columns, "--predictions", str(preds)])
    assert evaluated.exit_code == 0, evaluated.output
    assert "used unchanged" in evaluated.output and "cross-fitted" not in evaluated.output  # not the tuning split
    records = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(records) == 600 and records[7]["id"] == "2018-En-00007"
    assert set(records[7]["scores"]) == set(meta["labels"])
    assert records[7]["labels"] == [n for n in meta["labels"] if records[7]["scores"][n] >= meta["thresholds"][0]]


def test_training_without_a_tty_logs_progress_lines(reordered_csv, tmp_path, monkeypatch, caplog):
    import logging

    import toolkit.train as train_module
    from toolkit.config import DataConfig, TrainConfig

    monkeypatch.setattr(train_module, "PROGRESS_SECONDS", 0.0)  # every batch, instead of once a minute
    with caplog.at_level(logging.INFO, logger="toolkit.train"):  # pytest's capture is not a TTY: tqdm is off
        train_module.train(TrainConfig(data=DataConfig(path=reordered_csv), model="tiny", out=tmp_path / "p",
                                       epochs=1, batch_size=50, max_train_samples=150, precision="fp32"))
    lines = [r.getMessage() for r in caplog.records if "batch " in r.getMessage()]
    assert [line.split(" (")[0] for line in lines] == [f"epoch 1/1: batch {i}/3" for i in (1, 2, 3)]
    assert "s/batch" in lines[0] and "epoch ends in" in lines[0]


def test_evaluate_knows_when_it_scores_the_split_the_thresholds_were_tuned_on(tmp_path):
    from toolkit.config import DataConfig
    from toolkit.evaluate import _is_recorded_validation

    (tmp_path / "dev.tsv").write_text("x")
    spec = {"path": str(tmp_path.resolve()), "split": "dataset", "validation_file": str((tmp_path / "dev.tsv").resolve())}
    assert _is_recorded_validation(None, "dev", spec)  # no --data: the recorded split itself
    assert _is_recorded_validation(DataConfig(path=tmp_path), "dev", spec)
    assert _is_recorded_validation(DataConfig(path=tmp_path / "dev.tsv"), "test", spec)
    assert not _is_recorded_validation(DataConfig(path=tmp_path), "test", spec)
    assert not _is_recorded_validation(DataConfig(path=tmp_path / "other.tsv"), "dev", spec)
    assert not _is_recorded_validation(DataConfig(path=tmp_path), "dev", dict(spec, split="random"))
