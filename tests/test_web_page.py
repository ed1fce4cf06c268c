"""`toolkit web` and the page it writes, opened in a real headless Chromium, against the Python runtime.

The browser is Debian's `chromium`, driven by js/bin/drive-page.js (playwright-core, no browser download);
the folder is served by examples/web/serve.py on 127.0.0.1 and stopped by its pid. Browser tests skip
cleanly without chromium, node or js/node_modules (.ci/run installs all three).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from toolkit import artifacts
from toolkit.cli import cli

REPO = Path(__file__).resolve().parents[1]
JS = REPO / "js"
CHROMIUM = Path("/usr/bin/chromium")
# Typed into the page: the first keystroke by keystroke, the rest filled at once.
PAGE_TEXTS = ["I'm so happy about the trip!", "", "I'm terrified of the exam and furious about the grades",
              "Café déjà vu 😍🔥 我很高兴", "I'm worried sick about " * 50]


def _web(args: list[str]):
    return CliRunner().invoke(cli, ["web", *map(str, args)])


@pytest.fixture(scope="session")  # session: pytest sets wider fixtures up first, so this skips before any training
def web_packages():
    for package in ("onnxruntime-web", "@huggingface/tokenizers"):
        if not (JS / "node_modules" / package / "package.json").is_file():
            pytest.skip(f"js/node_modules/{package} is absent: run `npm ci --ignore-scripts` in js/")


# ---------------------------------------------------------------------------- the folder


def test_web_folder_ships_one_variant_and_states_its_size(web_packages, tiny_export_session, tmp_path):
    from toolkit.runtime import EmotionClassifier

    out = tmp_path / "site"
    result = _web([tiny_export_session, "--out", out])
    assert result.exit_code == 0, result.output
    web = json.loads((out / "web.json").read_text())
    assert web["variant"] == "int8"  # auto: the runtime's CPU choice for a never-validated export
    shipped = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert shipped == sorted(["index.html", "app.js", "_headers", "web.json", "lib/browser.js", "lib/classifier.js",
                              "lib/errors.js", "lib/measure.js", "vendor/tokenizers.min.mjs", "vendor/ort.wasm.min.mjs",
                              "vendor/ort-wasm-simd-threaded.mjs", "vendor/ort-wasm-simd-threaded.wasm",
                              "model/manifest.json", "model/model_int8.onnx", "model/tokenizer.json"])
    sizes = {p: (out / p).stat().st_size for p in shipped}
    assert web["bytes"]["model"] == sizes["model/model_int8.onnx"]
    # the total is every shipped byte but the small metadata files written beside the parts
    assert 0 < sum(sizes.values()) - web["bytes"]["total"] < 20_000
    assert f"{web['bytes']['total'] / 1e6:.1f} MB" in result.output
    assert {"model.onnx", "model_fp16.onnx", "vocab.txt"} <= set(web["excluded"])
    assert "excluded from the export" in result.output and "model_fp16.onnx" in result.output

    # the trimmed manifest is a valid export: the Python runtime loads it and scores as the full export
    manifest = artifacts.read_manifest(out / "model")
    assert list(manifest["variants"]) == ["int8"] and set(manifest["files"]) == {"model_int8.onnx", "tokenizer.json"}
    texts = PAGE_TEXTS
    trimmed = EmotionClassifier.load(out / "model").predict_proba(texts)
    full = EmotionClassifier.load(tiny_export_session, variant="int8").predict_proba(texts)
    np.testing.assert_array_equal(trimmed, full)


def test_web_errors_write_nothing(web_packages, tiny_export_session, tmp_path):
    out = tmp_path / "site"
    bad = _web([tiny_export_session, "--out", out, "--variant", "bf16"])
    assert bad.exit_code == 2 and "no variant 'bf16'" in bad.output and not out.exists()
    assert _web([tiny_export_session, "--out", out, "--variant", "fp32"]).exit_code == 0
    again = _web([tiny_export_session, "--out", out])
    assert again.exit_code == 2 and "already exists; pass --force" in again.output
    assert json.loads((out / "web.json").read_text())["variant"] == "fp32"  # untouched
    assert _web([tiny_export_session, "--out", out, "--force"]).exit_code == 0
    assert json.loads((out / "web.json").read_text())["variant"] == "int8"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(artifacts.TEMP_PREFIX)]


def test_web_without_node_modules_says_how_to_install(tiny_export_session, tmp_path):
    from toolkit.errors import ToolkitError
    from toolkit.web import build_web

    with pytest.raises(ToolkitError, match=r"not installed; run `npm ci --ignore-scripts` in"):
        build_web(tiny_export_session, tmp_path / "site", js_dir=tmp_path / "js")
    assert not (tmp_path / "site").exists()
    assert "Prepare an export for a static web host" in _web(["--help"]).output


# ---------------------------------------------------------------------------- the page in Chromium


@pytest.fixture(scope="session")
def browser(web_packages):
    node = shutil.which("node")
    if node is None or not CHROMIUM.is_file():
        pytest.skip("node or /usr/bin/chromium is absent (apt-get install chromium)")
    if not (JS / "node_modules" / "playwright-core" / "package.json").is_file():
        pytest.skip("js/node_modules/playwright-core is absent: run `npm ci --ignore-scripts` in js/")
    return node


@pytest.fixture(scope="module")
def served_sites(web_packages, tiny_export_session, tmp_path_factory):
    """An fp32 folder and an int8 (auto) one that also ships the WebGPU build, served on 127.0.0.1 by
    examples/web/serve.py; stopped by its pid. Chromium runs with --disable-gpu: no adapter, so the page
    must fall back to the WASM build."""
    root = tmp_path_factory.mktemp("sites")
    for name, extra in (("fp32", ["--variant", "fp32"]), ("auto", ["--webgpu"])):
        result = _web([tiny_export_session, "--out", root / name, *extra])
        assert result.exit_code == 0, result.output
    assert json.loads((root / "auto" / "web.json").read_text())["ort"]["webgpu"] == "vendor/ort.webgpu.min.mjs"
    server = subprocess.Popen([sys.executable, str(REPO / "examples" / "web" / "serve.py"), str(root), "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()  # the first line is the URL; the server prints nothing else
        assert url.startswith("http://127.0.0.1:"), url
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def _drive(node: str, url: str, texts: list[str], tmp_path: Path, **options) -> dict:
    texts_file = tmp_path / "texts.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    args = [node, str(JS / "bin" / "drive-page.js"), url, "--texts", str(texts_file), "--type", "1"]
    for key, value in options.items():
        args += [f"--{key}", str(value)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=180, cwd=JS)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def _proba(node: str, url: str, texts: list[str], tmp_path: Path) -> dict:
    texts_file = tmp_path / "proba.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    out = subprocess.run([node, str(JS / "bin" / "drive-page.js"), url, "--proba", str(texts_file)],
                         capture_output=True, text=True, timeout=300, cwd=JS)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def _page_scores(page: dict) -> tuple[np.ndarray, np.ndarray]:
    scores = np.array([[row["score"] for row in rows] for rows in page["results"]], dtype=np.float32)
    decisions = np.array([[row["on"] for row in rows] for rows in page["results"]])
    return scores, decisions


@pytest.mark.slow
def test_page_shows_the_python_runtime_scores_fp32(browser, served_sites, tiny_export_session, tmp_path):
    from toolkit.runtime import EmotionClassifier

    page = _drive(browser, served_sites + "fp32/", PAGE_TEXTS, tmp_path, screenshot=tmp_path / "page.png")
    assert page["errors"] == [] and page["variant"] == "fp32"
    assert page["crossOriginIsolated"] and page["where"].startswith("WASM")  # threads need the COOP/COEP headers
    clf = EmotionClassifier.load(tiny_export_session, variant="fp32")
    expected = clf.predict_proba(PAGE_TEXTS)
    scores, decisions = _page_scores(page)
    assert [row["label"] for row in page["results"][0]] == clf.labels
    assert np.ptp(expected) > 0.1
    assert np.abs(scores - expected).max() <= 1e-5  # WASM kernels, measured ~3e-8 from the CPU's
    np.testing.assert_array_equal(decisions, expected >= clf.thresholds)
    assert [row["shown"] for row in page["results"][0]] == [f"{p:.3f}" for p in scores[0]]
    assert (tmp_path / "page.png").stat().st_size > 5_000


@pytest.mark.slow
def test_page_int8_in_one_wasm_thread_matches_python(browser, served_sites, tiny_export_session, tmp_path):
    from toolkit.runtime import EmotionClassifier

    page = _drive(browser, served_sites + "auto/", PAGE_TEXTS, tmp_path, threads=1)
    # WebGPU shipped but no adapter (--disable-gpu): the WASM build runs
    assert page["errors"] == [] and page["variant"] == "int8" and page["where"] == "WASM, 1 thread"
    clf = EmotionClassifier.load(tiny_export_session, variant="int8")
    expected = clf.predict_proba(PAGE_TEXTS)
    scores, decisions = _page_scores(page)
    agreement = float((decisions == (expected >= clf.thresholds)).mean())
    print(f"browser int8 vs python int8: max |d| {np.abs(scores - expected).max():.2e}, agreement {agreement:.4f}")
    assert np.abs(scores - expected).max() <= 1e-4
    assert agreement == 1.0


@pytest.mark.slow
def test_page_batch_scores_equal_python_on_1000_goemotions_dev_texts(browser, served_sites, tiny_export_session,
                                                                      goemotions_dir, tmp_path):
    """Real text through the page's classifier in one call (length-sorted batches of 32, as an app calls it)."""
    from test_js_runtime import EDGE_TEXTS

    from toolkit.data import read_dataset
    from toolkit.runtime import EmotionClassifier

    texts = read_dataset(goemotions_dir / "dev.tsv").texts[:1000] + EDGE_TEXTS
    page = _proba(browser, served_sites + "fp32/", texts, tmp_path)
    clf = EmotionClassifier.load(tiny_export_session, variant="fp32")
    expected = clf.predict_proba(texts)
    got = np.asarray(page["probs"], dtype=np.float32)
    assert page["errors"] == [] and got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-5
    np.testing.assert_array_equal(got >= clf.thresholds, expected >= clf.thresholds)
