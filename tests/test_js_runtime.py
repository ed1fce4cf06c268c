"""The JavaScript runtime (js/, Node.js on onnxruntime-node) against the Python runtime on the same export.

Node is driven through `js/bin/predict.js` in a subprocess; the Python runtime's probabilities are the
reference. Skipped cleanly without node or js/node_modules (`npm ci --ignore-scripts` in js/, as .ci/run does).
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from toolkit import artifacts
from toolkit.config import Gates
from toolkit.errors import ArtifactError
from toolkit.metrics import compute_metrics

JS = Path(__file__).resolve().parents[1] / "js"
PREDICT = JS / "bin" / "predict.js"
FP32_TOLERANCE = 1e-5  # the bar; measured 0.0 on the demo export and GoEmotions dev (same ORT CPU kernels)
# Texts where a tokenizer port goes wrong first: truncation, normalization, specials, surrogates, controls.
EDGE_TEXTS = [
    "", "   ", "\t\n", "I AM SO ANGRY!!!", "Café déjà vu, naïve señor — Ångström", "e\u0301 combining accent",
    "I love it 😍🔥👨‍👩‍👧", "我很高兴 今日は嬉しい", "[CLS] [SEP] [PAD] hello [MASK] [UNK]", "lone surrogate \ud83d here",
    "nul\x00 bell\x07 tab\t zero\u200bwidth", "<b>bold</b> &amp; https://example.com/a?b=c #tag @user",
    "supercalifragilisticexpialidocious" * 4, "I'm terrified of the exam " * 60,  # far over max_length tokens
    "joy " * 126, "joy " * 127, "fear " * 400,  # around the truncation edge
]


@pytest.fixture(scope="session")
def node():
    """The node binary, once js/node_modules holds the runtime's packages."""
    binary = shutil.which("node")
    if binary is None:
        pytest.skip("node is not installed")
    for package in ("onnxruntime-node", "@huggingface/tokenizers"):
        if not (JS / "node_modules" / package / "package.json").is_file():
            pytest.skip(f"js/node_modules/{package} is absent: run `npm ci --ignore-scripts` in js/")
    return binary


def node_proba(node: str, export_dir: Path, texts: list[str], variant: str = "auto") -> tuple[str, np.ndarray]:
    """(variant loaded, probabilities) from the Node runtime."""
    out = _run_node(node, [str(PREDICT), str(export_dir), "--variant", variant, "--proba"], json.dumps(texts))
    result = json.loads(out.stdout)
    return result["variant"], np.asarray(result["probs"], dtype=np.float32).reshape(len(texts), -1)


def python_proba(export_dir: Path, texts: list[str], variant: str) -> tuple[np.ndarray, np.ndarray]:
    from toolkit.runtime import EmotionClassifier

    clf = EmotionClassifier.load(export_dir, variant=variant)
    return clf.predict_proba(texts), clf.thresholds


def _run_node(node: str, args: list[str], stdin: str = "", check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([node, *args], input=stdin, capture_output=True, text=True, timeout=120, cwd=JS)
    if check and out.returncode != 0:
        raise AssertionError(f"node failed ({out.returncode}): {out.stderr[-2000:]}")
    return out


def _assert_fp32_parity(node_probs: np.ndarray, py_probs: np.ndarray, thresholds: np.ndarray) -> None:
    assert node_probs.shape == py_probs.shape
    assert np.ptp(py_probs) > 0.1  # the comparison is not between two constants
    assert np.abs(node_probs - py_probs).max() <= FP32_TOLERANCE
    np.testing.assert_array_equal(node_probs >= thresholds, py_probs >= thresholds)


def _int8_report(y_true, node_probs, py_probs, thresholds, labels) -> dict:
    """Node int8 vs Python int8 as validate gates int8 against its reference: macro-F1 and per-label F1 drops."""
    ref = compute_metrics(y_true, py_probs, thresholds, labels)
    got = compute_metrics(y_true, node_probs, thresholds, labels)
    label_drops = [r.f1 - g.f1 for r, g in zip(ref.per_label, got.per_label)]
    return {"max_abs_diff": float(np.abs(node_probs - py_probs).max()),
            "agreement": float(((node_probs >= thresholds) == (py_probs >= thresholds)).mean()),
            "macro_drop": ref.macro_f1 - got.macro_f1, "max_label_drop": max(label_drops)}


def _assert_int8_within_gates(report: dict) -> None:
    gates = Gates()
    print(f"int8 node vs python: {report}")  # the decision agreement, reported (pytest -s, or on failure)
    assert report["macro_drop"] <= gates.max_drop_macro["int8"]
    assert report["max_label_drop"] <= gates.max_drop_label["int8"]
    assert report["agreement"] >= 0.99


# ---------------------------------------------------------------------------- the demo export


@pytest.fixture(scope="module")
def demo_texts():
    from toolkit.demo_corpus import generate_demo_corpus

    texts, y, labels = generate_demo_corpus(300, seed=11)
    return texts, y, labels


def test_node_fp32_equals_python_on_the_demo_export(node, tiny_export_session, demo_texts):
    texts = demo_texts[0] + EDGE_TEXTS
    variant, got = node_proba(node, tiny_export_session, texts, "fp32")
    expected, thresholds = python_proba(tiny_export_session, texts, "fp32")
    assert variant == "fp32"
    _assert_fp32_parity(got, expected, thresholds)


def test_node_int8_matches_python_within_validate_gates_on_the_demo_export(node, tiny_export_session, demo_texts):
    texts, y, labels = demo_texts
    variant, got = node_proba(node, tiny_export_session, texts + EDGE_TEXTS, "int8")
    expected, thresholds = python_proba(tiny_export_session, texts + EDGE_TEXTS, "int8")
    assert variant == "int8"
    report = _int8_report(y, got[:len(texts)], expected[:len(texts)], thresholds, labels)
    _assert_int8_within_gates(report)
    assert np.abs(got - expected).max() <= 1e-4  # per-token scales: same ORT CPU kernels, same numbers


def test_node_scores_do_not_depend_on_batching(node, tiny_export_session, demo_texts):
    texts = demo_texts[0][:40] + EDGE_TEXTS
    script = f"""
        import {{ EmotionClassifier }} from "./src/node.js";
        const texts = JSON.parse(await new Promise((ok) => {{ let s = ""; process.stdin.on("data", (d) => s += d);
                                                            process.stdin.on("end", () => ok(s)); }}));
        const big = await EmotionClassifier.load({json.dumps(str(tiny_export_session))}, {{ variant: "int8" }});
        const one = await EmotionClassifier.load({json.dumps(str(tiny_export_session))}, {{ variant: "int8", maxBatchSize: 1 }});
        const together = await big.predictProba(texts);
        const alone = await one.predictProba(texts);
        const reversed = (await big.predictProba([...texts].reverse())).reverse();
        console.log(JSON.stringify({{ together, alone, reversed }}));
    """
    out = json.loads(_run_node(node, ["--input-type=module", "-e", script], json.dumps(texts)).stdout)
    together = np.asarray(out["together"])
    assert np.abs(together - np.asarray(out["alone"])).max() <= 1e-6
    assert np.abs(together - np.asarray(out["reversed"])).max() <= 1e-6


# ---------------------------------------------------------------------------- tokenizer families


def _tokenizer_families(texts: list[str], out: Path) -> dict[str, Path]:
    """tokenizer.json files of the three families the support matrix ships, trained here in a second:
    WordPiece with BertProcessing, byte-level BPE with RobertaProcessing, SentencePiece Unigram (its
    normalizer starts with Nmt, which the JS library lacks) with a template."""
    from tokenizers import BertWordPieceTokenizer, ByteLevelBPETokenizer, SentencePieceUnigramTokenizer, processors

    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(texts, vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.post_processor = processors.RobertaProcessing(("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>")))
    unigram = SentencePieceUnigramTokenizer()
    unigram.train_from_iterator(texts, vocab_size=300, special_tokens=["<pad>", "<unk>", "<s>", "</s>"], unk_token="<unk>")
    unigram.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", unigram.token_to_id("<s>")), ("</s>", unigram.token_to_id("</s>"))])
    paths = {}
    for name, tokenizer in (("wordpiece", wordpiece), ("bpe", bpe), ("unigram", unigram)):
        paths[name] = out / name
        paths[name].mkdir()
        tokenizer.save(str(paths[name] / artifacts.TOKENIZER_JSON))
    return paths


def test_node_tokenizes_every_family_as_the_python_runtime(node, demo_texts, tmp_path):
    from types import SimpleNamespace

    from toolkit.runtime import EmotionClassifier, _load_tokenizer

    # Nmt's two character maps, the truncation edge at 16 tokens, lone surrogates (three U+FFFD in Python)
    texts = demo_texts[0][:60] + EDGE_TEXTS + [
        "a\x01b\x08c\x0bd\x1fe\x7ff\x8fg\x9fh", "tab\tnl\nff\x0ccr\rogham\u1680zw\u200bsep\u2028\u2029lower\u2581bom\ufeff",
        "replacement \ufffd char", "\ud83d", "two \udc00\ud800 lone", "pair 😀 ok", "double  spaces   here"]
    max_length = 16
    families = _tokenizer_families(demo_texts[0], tmp_path)
    script = """
        import { readFileSync } from "node:fs";
        import { ModelTokenizer } from "./src/classifier.js";
        let s = ""; process.stdin.on("data", (d) => s += d);
        process.stdin.on("end", () => {
          const { files, texts, maxLength } = JSON.parse(s);
          const out = {};
          for (const [name, file] of Object.entries(files)) {
            const tokenizer = new ModelTokenizer(JSON.parse(readFileSync(file, "utf-8")), maxLength);
            out[name] = { padId: tokenizer.padId, encodings: texts.map((t) => tokenizer.encode(t)) };
          }
          console.log(JSON.stringify(out));
        });
    """
    request = {"files": {k: str(v / artifacts.TOKENIZER_JSON) for k, v in families.items()}, "texts": texts,
               "maxLength": max_length}
    got = json.loads(_run_node(node, ["--input-type=module", "-e", script], json.dumps(request)).stdout)
    for name, directory in families.items():
        tokenizer, pad_id = _load_tokenizer(directory, max_length)
        expected = EmotionClassifier._encode(SimpleNamespace(_tokenizer=tokenizer), texts)
        assert got[name]["padId"] == pad_id, name
        for text, mine, theirs in zip(texts, got[name]["encodings"], expected):
            assert (mine["ids"], mine["types"]) == (theirs.ids, theirs.type_ids), (name, text)
        assert max(len(e.ids) for e in expected) == max_length  # truncation was exercised
    assert len({got["bpe"]["padId"], got["wordpiece"]["padId"]}) == 2  # pad ids differ: read, not assumed


# ---------------------------------------------------------------------------- variant auto, as Python


def _auto_cases(manifest: dict) -> dict[str, dict]:
    """Manifests that exercise every branch of the auto rule, derived from a real one."""
    variants = manifest["variants"]

    def with_(status=None, failed_at_export=(), drop=(), restricted=()):
        m = json.loads(json.dumps(manifest))
        m["variants"] = {k: v for k, v in m["variants"].items() if k not in drop}
        for name in failed_at_export:
            m["variants"][name].update(status="failed", failures=["macro_f1_drop 0.05 > 0.01"])
        if status is not None:
            m[artifacts.VALIDATION_STATUS] = {k: {"passed": ok, "failures": [] if ok else ["agreement 0.9 < 1.0"],
                                                  **({"restricted": True} if k in restricted else {})}
                                             for k, ok in status.items()}
        else:
            m.pop(artifacts.VALIDATION_STATUS, None)
        return m

    assert {"fp32", "fp16", "int8"} <= set(variants)
    return {
        "never validated": with_(),
        "int8 failed at export": with_(failed_at_export=["int8"]),
        "all passed": with_(status={"fp32": True, "fp16": True, "int8": True}),
        "int8 failed validation": with_(status={"fp32": True, "fp16": True, "int8": False}),
        "only fp16 validated": with_(status={"fp16": True}),
        "validation failed everything": with_(status={"fp32": False, "fp16": False, "int8": False}),
        "failed and unvalidated": with_(status={"int8": False}, failed_at_export=[]),
        "no int8": with_(drop=["int8"]),
        "int8 not gated at export": _not_gated(with_()),
        "int8 not gated, then validated": _not_gated(with_(status={"fp32": True, "int8": True})),
        "restricted pass is no verdict": with_(status={"fp32": True, "int8": True}, restricted=["int8"]),
        "restricted failure still fails": with_(status={"fp16": True, "int8": False}, restricted=["int8"]),
    }


def _not_gated(manifest: dict) -> dict:
    manifest["variants"]["int8"].update(status="not gated", not_gated="--int8-search-seconds 0", failures=[])
    return manifest


def test_auto_variant_follows_the_python_rule(node, tiny_export_session):
    from toolkit.runtime import _auto_variant

    cases = _auto_cases(artifacts.read_manifest(tiny_export_session))
    script = """
        import { autoVariant } from "./src/classifier.js";
        let s = ""; process.stdin.on("data", (d) => s += d);
        process.stdin.on("end", () => {
          const cases = JSON.parse(s);
          const out = {};
          for (const [name, m] of Object.entries(cases)) out[name] = [autoVariant(m, false).variant, autoVariant(m, true).variant];
          console.log(JSON.stringify(out));
        });
    """
    got = json.loads(_run_node(node, ["--input-type=module", "-e", script], json.dumps(cases)).stdout)
    expected = {name: [_auto_variant(tiny_export_session, m, False), _auto_variant(tiny_export_session, m, True)]
                for name, m in cases.items()}
    assert got == expected
    assert expected["int8 failed validation"][0] != "int8"  # the cases do reach the "never a failed one" branch
    assert expected["restricted pass is no verdict"][0] == "fp32" and expected["all passed"][0] == "int8"


def test_node_loads_what_auto_picks_from_the_manifest(node, tiny_export):
    manifest = artifacts.read_manifest(tiny_export)
    manifest[artifacts.VALIDATION_STATUS] = {"fp32": {"passed": True, "failures": []},
                                             "int8": {"passed": False, "failures": ["macro_f1_drop 0.05 > 0.01"]}}
    artifacts.write_manifest(tiny_export, manifest)
    variant, _ = node_proba(node, tiny_export, ["hello"], "auto")
    assert variant == "fp32"


def test_node_never_picks_an_openvino_variant(node, tiny_export):
    """An OpenVINO IR (manifest backend "openvino") may be what Python's auto picks on a CPU it was validated on;
    onnxruntime cannot run it, so the JS auto ranks the ONNX variants only and naming it is a clear error."""
    from toolkit.web import build_web

    manifest = artifacts.read_manifest(tiny_export)
    manifest["variants"]["ov_int8"] = {"file": "model.onnx", "backend": "openvino", "status": "ok"}
    manifest[artifacts.VALIDATION_STATUS] = {v: {"passed": True, "failures": []} for v in ("ov_int8", "int8", "fp32")}
    artifacts.write_manifest(tiny_export, manifest)
    assert node_proba(node, tiny_export, ["hello"], "auto")[0] == "int8"
    out = _run_node(node, [str(PREDICT), str(tiny_export), "--variant", "ov_int8", "x"], check=False)
    assert out.returncode == 2 and "variant ov_int8 runs on openvino, not onnxruntime" in out.stderr
    with pytest.raises(ArtifactError, match="variant ov_int8 runs on openvino, not onnxruntime; a browser runs"):
        build_web(tiny_export, tiny_export.parent / "site", variant="ov_int8")


# ---------------------------------------------------------------------------- errors


def test_node_errors_are_one_clear_line(node, tiny_export, tmp_path):
    def fails(args, stdin="[]"):
        out = _run_node(node, [str(PREDICT), *args], stdin, check=False)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
        return lines[0]

    missing = tmp_path / "nowhere"
    assert f"{missing}: export directory not found" in fails([str(missing), "x"])
    assert "no variant 'bf16'; this export has fp32, fp16, int8" in \
        fails([str(tiny_export), "--variant", "bf16", "x"]).replace('"', "'")
    assert "texts[1] is number, expected string" in fails([str(tiny_export)], '["ok", 3]')

    # as the Python runtime, a load hashes only what it opens: a damaged fp16 file stops fp16, not int8
    (tiny_export / artifacts.variant_file("fp16")).write_bytes(b"damaged")
    assert _run_node(node, [str(PREDICT), str(tiny_export), "--variant", "int8", "x"]).returncode == 0
    assert f"{tiny_export / artifacts.variant_file('fp16')}: sha256" in fails([str(tiny_export), "--variant", "fp16", "x"])
    (tiny_export / artifacts.TOKENIZER_JSON).write_text("{}", encoding="utf-8")
    assert f"{tiny_export / artifacts.TOKENIZER_JSON}: sha256" in fails([str(tiny_export), "x"])
    manifest_path = tiny_export / artifacts.MANIFEST
    manifest_path.write_text("{not json", encoding="utf-8")
    assert f"{manifest_path}: export manifest is not valid JSON" in fails([str(tiny_export), "x"])


def test_node_predict_thresholds_as_python(node, tiny_export_session, demo_texts):
    from toolkit.runtime import EmotionClassifier

    texts = demo_texts[0][:20]
    out = _run_node(node, [str(PREDICT), str(tiny_export_session), "--variant", "fp32", *texts])
    got = [json.loads(line) for line in out.stdout.splitlines()]
    expected = EmotionClassifier.load(tiny_export_session, variant="fp32").predict(texts)
    assert [g["labels"] for g in got] == [e.labels for e in expected]
    assert any(e.labels for e in expected)
    out = _run_node(node, [str(PREDICT), str(tiny_export_session), "--variant", "fp32", "--threshold", "0", *texts])
    assert all(len(json.loads(line)["labels"]) == 5 for line in out.stdout.splitlines())
    bad = _run_node(node, [str(PREDICT), str(tiny_export_session), "--threshold", "1.5", "x"], check=False)
    assert bad.returncode == 2 and "threshold override must be a number in [0, 1], got 1.5" in bad.stderr


# ---------------------------------------------------------------------------- GoEmotions (real text, 28 labels)


@pytest.fixture(scope="module")
def goemotions_export(goemotions_dir, tmp_path_factory) -> Path:
    """A 28-label tiny BERT (vocab trained on GoEmotions train texts, random weights, head widened so that
    scores spread): parity needs real text and 28 outputs, not a good model. fp32 and int8, in seconds."""
    import torch

    from toolkit.config import ExportConfig, Variant
    from toolkit.data import read_label_names
    from toolkit.export import export_model
    from toolkit.modeling import build_classifier

    labels = read_label_names(str(goemotions_dir / "emotions.txt"))
    train_texts = [line.split("\t")[0] for line in (goemotions_dir / "train.tsv").read_text(encoding="utf-8").splitlines()]
    model, tokenizer = build_classifier("tiny", labels, train_texts=train_texts[:20000], seed=3)
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
    checkpoint = tmp_path_factory.mktemp("ge_ckpt")
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    out = tmp_path_factory.mktemp("ge_export") / "goemotions"
    export_model(ExportConfig(checkpoint=checkpoint, out=out, variants=(Variant.FP32, Variant.INT8), int8_search_seconds=0))
    return out


@pytest.fixture(scope="module")
def goemotions_dev(goemotions_dir):
    from toolkit.data import read_dataset

    dev = read_dataset(goemotions_dir / "dev.tsv")
    return dev.texts[:1000], dev.labels[:1000], dev.label_names


@pytest.mark.slow
def test_node_fp32_equals_python_on_1000_goemotions_dev_texts(node, goemotions_export, goemotions_dev):
    texts = goemotions_dev[0]
    variant, got = node_proba(node, goemotions_export, texts, "fp32")
    expected, thresholds = python_proba(goemotions_export, texts, "fp32")
    assert variant == "fp32" and got.shape == (1000, 28)
    _assert_fp32_parity(got, expected, thresholds)


@pytest.mark.slow
def test_node_int8_matches_python_on_1000_goemotions_dev_texts(node, goemotions_export, goemotions_dev):
    texts, y, labels = goemotions_dev
    variant, got = node_proba(node, goemotions_export, texts, "int8")
    expected, thresholds = python_proba(goemotions_export, texts, "int8")
    assert variant == "int8"
    _assert_int8_within_gates(_int8_report(y, got, expected, thresholds, labels))
