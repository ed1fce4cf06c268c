"""`toolkit predict`: texts from arguments, --file and stdin; JSON lines or --pretty; errors as one line."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from toolkit.cli import cli
from toolkit.runtime import EmotionClassifier

TEXTS = ["I'm so happy about the weekend trip!", "I can't stand the noise", "今天我很开心 😀"]


@pytest.fixture(scope="module")
def reference(tiny_export_session):
    """What the runtime says for TEXTS with the CLI's defaults (variant auto, provider auto)."""
    return EmotionClassifier.load(tiny_export_session)


def _invoke(args, **kwargs):
    result = CliRunner().invoke(cli, ["predict", *map(str, args)], **kwargs)
    return result


def _json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def _assert_matches(rows, predictions):
    assert [r["text"] for r in rows] == [p.text for p in predictions]
    for row, pred in zip(rows, predictions):
        assert row["labels"] == pred.labels
        assert list(row["scores"]) == list(pred.scores)
        assert row["scores"] == pytest.approx(pred.scores, abs=0)  # JSON round-trips a float exactly


def test_texts_as_arguments(tiny_export_session, reference):
    result = _invoke(["--export", tiny_export_session, *TEXTS])
    assert result.exit_code == 0, result.output
    _assert_matches(_json_lines(result.stdout), reference.predict(TEXTS))


def test_texts_from_file_skip_blank_lines(tiny_export_session, reference, tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join([TEXTS[0], "", "   ", *TEXTS[1:]]) + "\n", encoding="utf-8")
    result = _invoke(["--export", tiny_export_session, "--file", path])
    assert result.exit_code == 0, result.output
    _assert_matches(_json_lines(result.stdout), reference.predict(TEXTS))


def test_texts_from_stdin(tiny_export_session, reference):
    result = _invoke(["--export", tiny_export_session], input="\n".join(TEXTS) + "\n")
    assert result.exit_code == 0, result.output
    _assert_matches(_json_lines(result.stdout), reference.predict(TEXTS))


def test_pretty_table(tiny_export_session, reference):
    result = _invoke(["--export", tiny_export_session, "--pretty", "--threshold-override", "0", *TEXTS])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(TEXTS)
    for line, text, pred in zip(lines, TEXTS, reference.predict(TEXTS, threshold=0.0)):
        assert line.startswith(text)
        assert f"{pred.labels[0]} {pred.scores[pred.labels[0]]:.2f}" in line
        assert not line.lstrip().startswith("{")


def test_threshold_override(tiny_export_session, reference):
    for cut, expected in [("0", reference.labels), ("1", [])]:
        result = _invoke(["--export", tiny_export_session, "--threshold-override", cut, TEXTS[0]])
        assert result.exit_code == 0, result.output
        assert _json_lines(result.stdout)[0]["labels"] == expected
    result = _invoke(["--export", tiny_export_session, "--threshold-override", "1.5", TEXTS[0]])
    assert result.exit_code == 2
    assert "threshold override must be a number in [0, 1], got 1.5" in result.stderr


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_variant(tiny_export_session, variant):
    expected = EmotionClassifier.load(tiny_export_session, variant=variant).predict(TEXTS)
    result = _invoke(["--export", tiny_export_session, "--variant", variant, *TEXTS])
    assert result.exit_code == 0, result.output
    _assert_matches(_json_lines(result.stdout), expected)


def test_errors_are_one_line_with_an_exit_code(tiny_export_session, tmp_path):
    result = _invoke(["--export", tmp_path / "missing", "hello"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {tmp_path / 'missing'}: export directory not found; "
                                     f"run `toolkit export --out {tmp_path / 'missing'}` first")
    assert result.stdout == ""

    result = _invoke(["--export", tiny_export_session, "--variant", "fp8", "hello"])
    assert result.exit_code == 2
    assert "no variant 'fp8'; this export has" in result.stderr

    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café\n".encode("latin-1"))
    result = _invoke(["--export", tiny_export_session, "--file", bad])
    assert result.exit_code == 2
    assert f"error: {bad}: cannot read texts" in result.stderr

    result = _invoke(["--export", tiny_export_session, "--provider", "gpu", "hello"])
    assert result.exit_code == 2  # click rejects the choice


def test_console_script_end_to_end(tiny_export_session, reference):
    exe = shutil.which("toolkit")
    command = [exe] if exe else [sys.executable, "-m", "toolkit.cli"]
    proc = subprocess.run([*command, "predict", "--export", str(tiny_export_session), "--variant", "fp32", TEXTS[0]],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = _json_lines(proc.stdout)
    expected = EmotionClassifier.load(tiny_export_session, variant="fp32").predict([TEXTS[0]])
    _assert_matches(rows, expected)
    assert "variant fp32 on cpu" in proc.stderr  # the load is logged on stderr, never mixed into results

    proc = subprocess.run([*command, "predict", "--export", "/nonexistent/export", "hi"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: /nonexistent/export: export directory not found")
    assert proc.stdout == ""
