"""The public surface: `import toolkit` stays light, its names resolve lazily, and a runtime-only
install gets a one-line pip hint instead of a traceback."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import toolkit

# What a runtime-only install (`pip install toolkit`, no extras) lacks: imports of these fail.
EXTRAS_ONLY = ("torch", "transformers", "optimum", "onnx", "sklearn", "safetensors", "tqdm", "matplotlib")
RUNTIME_ONLY = f"""
import sys
for name in {EXTRAS_ONLY!r}:
    sys.modules[name] = None  # `import name` now raises ModuleNotFoundError, as without the package
"""


def _python(code: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_import_is_light_and_names_resolve_lazily():
    code = """
import json, sys
import toolkit
heavy = sorted(m for m in ("torch", "transformers", "onnxruntime", "optimum", "tokenizers") if m in sys.modules)
clf = toolkit.EmotionClassifier
print(json.dumps({"heavy": heavy, "runtime_loaded": "onnxruntime" in sys.modules,
                  "clf": clf.__module__ + "." + clf.__name__}))
"""
    run = _python(code)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["heavy"] == []  # no timing assertion: on a shared 2-core machine it would be noise
    assert report["runtime_loaded"] and report["clf"] == "toolkit.runtime.EmotionClassifier"


def test_all_names_resolve_to_their_modules():
    from toolkit import bench, errors, export, runtime, validate

    assert toolkit.EmotionClassifier is runtime.EmotionClassifier and toolkit.Prediction is runtime.Prediction
    assert toolkit.export_model is export.export_model
    assert toolkit.validate_export is validate.validate_export
    assert toolkit.run_bench is bench.run_bench
    assert toolkit.ToolkitError is errors.ToolkitError
    assert all(hasattr(toolkit, name) for name in toolkit.__all__)
    assert set(toolkit.__all__) <= set(dir(toolkit))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        toolkit.nope  # noqa: B018


def test_export_on_a_runtime_only_install_prints_one_pip_line(tmp_path):
    code = RUNTIME_ONLY + """
from toolkit.cli import main
sys.argv = ["toolkit", "export", "--checkpoint", sys.argv[1], "--out", sys.argv[2]]
main()
"""
    run = _python(code, str(tmp_path / "checkpoint"), str(tmp_path / "out"), cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        'error: toolkit export needs torch, which is not installed: pip install "toolkit[export]"']
    assert not (tmp_path / "out").exists()


def test_runtime_only_install_still_has_the_runtime():
    code = RUNTIME_ONLY + """
import toolkit
from toolkit.cli import cli
print(toolkit.EmotionClassifier.__name__, toolkit.run_bench.__name__)
"""
    run = _python(code)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["EmotionClassifier", "run_bench"]
