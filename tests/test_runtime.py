"""toolkit.runtime: parity with plain onnxruntime and optimum, input rules, integrity checks,
thread safety, provider and variant selection. Uses the session's tiny export."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading

import numpy as np
import onnxruntime as ort
import pytest
from concurrency import run_concurrently

from toolkit import artifacts
from toolkit.errors import ArtifactError, ProviderError, ToolkitError
from toolkit.runtime import EmotionClassifier, Prediction, open_session, resolve_providers

EXPECTED_VARIANTS = ("fp32", "fp16", "int8")
PARITY_ATOL = 1e-5
TEXTS = [
    "I'm so happy about the weekend trip!",
    "I can't stand the noise from the neighbours",
    "I'm terrified of the exam tomorrow and I dread the results",
    "wow, I did not expect that at all",
    "I miss my old friends so much",
    "ok",
    "",
    "   \t ",
    "😀🎉🔥 best day ever 🥳",
    "今天我很开心 ",
    "control \x00\x01\x07\x1b characters\u200b and \ufeff BOM",
    "Ünïcödé àccents and ﬁ ligatures",
    "so " * 400 + "angry",  # far past max_length: truncated
    "I love\nnew\tlines\r\nand tabs",
]


@pytest.fixture(scope="module")
def manifest(tiny_export_session):
    return artifacts.read_manifest(tiny_export_session)


@pytest.fixture(scope="module")
def clf(tiny_export_session):
    return EmotionClassifier.load(tiny_export_session, variant="fp32", provider="cpu")


def _variant(manifest, name):
    if name not in manifest["variants"]:
        pytest.skip(f"the tiny export has no {name} variant (export has {sorted(manifest['variants'])})")
    return manifest["variants"][name]["file"]


# ------------------------------------------------------------------ the import stays light


def test_import_pulls_no_torch_transformers_or_optimum():
    code = ("import sys, toolkit.runtime; "
            "print(sorted(m for m in ('torch', 'transformers', 'optimum') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"import toolkit.runtime pulled in {out.stdout.strip()}"


# ------------------------------------------------------------------ parity


def test_export_has_every_expected_variant(manifest):
    missing = set(EXPECTED_VARIANTS) - set(manifest["variants"])
    assert not missing, (f"tiny export lacks variants {sorted(missing)} (has {sorted(manifest['variants'])}); "
                         "toolkit.export.export_model must write fp32, fp16 and int8")


@pytest.mark.parametrize("variant", EXPECTED_VARIANTS)
def test_probs_match_plain_onnxruntime_and_optimum(tiny_export_session, manifest, variant):
    """Same file, same batches: the runtime, onnxruntime by hand and optimum agree within 1e-5.

    Each reference batch goes to predict_proba in one call with max_batch_size >= its size, so
    all three pad the same texts to the same width (dynamic int8 quantizes per batch tensor).
    """
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer

    model_file = _variant(manifest, variant)
    runtime = EmotionClassifier.load(tiny_export_session, variant=variant, provider="cpu", max_batch_size=64)
    hf_tok = AutoTokenizer.from_pretrained(tiny_export_session)
    plain = ort.InferenceSession(str(tiny_export_session / model_file), providers=["CPUExecutionProvider"])
    optimum = ORTModelForSequenceClassification.from_pretrained(tiny_export_session, file_name=model_file,
                                                                provider="CPUExecutionProvider")
    names = {i.name for i in plain.get_inputs()}
    batches = [TEXTS[:5], TEXTS[5:9], TEXTS[9:], [TEXTS[0]], TEXTS]
    for batch in batches:
        enc = hf_tok(batch, padding=True, truncation=True, max_length=manifest["max_length"], return_tensors="np")
        feed = {k: v.astype(np.int64) for k, v in enc.items() if k in names}
        ref_plain = 1 / (1 + np.exp(-plain.run(None, feed)[0].astype(np.float64)))
        ref_optimum = 1 / (1 + np.exp(-optimum(**enc).logits.astype(np.float64)))
        got = runtime.predict_proba(batch)
        assert got.dtype == np.float32 and got.shape == (len(batch), len(manifest["labels"]))
        np.testing.assert_allclose(got, ref_plain, rtol=0, atol=PARITY_ATOL, err_msg=f"{variant} vs onnxruntime")
        np.testing.assert_allclose(got, ref_optimum, rtol=0, atol=PARITY_ATOL, err_msg=f"{variant} vs optimum")


def test_batches_are_length_bucketed_and_order_restored(tiny_export_session):
    clf = EmotionClassifier.load(tiny_export_session, variant="fp32", provider="cpu", max_batch_size=3)
    shapes = []
    real_run = clf.session.run

    class Spy:  # an InferenceSession is a C++ object: wrap it rather than patch it
        def __getattr__(self, name):
            return getattr(clf.session_real, name)

        def run(self, outputs, feed):
            shapes.append(feed["input_ids"].shape)
            return real_run(outputs, feed)

    clf.session_real, clf.session = clf.session, Spy()
    probs = clf.predict_proba(TEXTS)
    lengths = sorted(len(e.ids) for e in clf._tokenizer.encode_batch(TEXTS))
    expected = [(len(lengths[i:i + 3]), max(lengths[i:i + 3])) for i in range(0, len(lengths), 3)]
    assert shapes == expected, "each batch: at most max_batch_size texts, padded to its own longest"
    assert max(lengths) == clf.max_length  # the long text was truncated, not rejected
    one_by_one = np.vstack([clf.predict_proba([t]) for t in TEXTS])
    np.testing.assert_allclose(probs, one_by_one, rtol=0, atol=PARITY_ATOL)  # fp32: padding changes nothing


# ------------------------------------------------------------------ predictions and input rules


def test_predict_labels_follow_thresholds_and_manifest_order(clf, manifest):
    preds = clf.predict(TEXTS)
    probs = clf.predict_proba(TEXTS)
    assert [p.text for p in preds] == TEXTS
    for pred, row in zip(preds, probs):
        assert isinstance(pred, Prediction)
        assert list(pred.scores) == manifest["labels"]
        np.testing.assert_allclose(list(pred.scores.values()), row, rtol=0, atol=0)
        assert pred.labels == [l for l, p, t in zip(manifest["labels"], row, manifest["thresholds"]) if p >= t]
    with pytest.raises(AttributeError):
        preds[0].text = "changed"  # frozen


def test_threshold_override(clf):
    probs = clf.predict_proba(TEXTS)
    cut = float(np.median(probs))
    for pred, row in zip(clf.predict(TEXTS, threshold=cut), probs):
        assert pred.labels == [l for l, p in zip(clf.labels, row) if p >= cut]
    assert all(p.labels == clf.labels for p in clf.predict(TEXTS, threshold=0.0))
    for bad in (1.5, -0.1, float("nan"), "0.5", True):
        with pytest.raises(ToolkitError, match=r"threshold override must be a number in \[0, 1\]"):
            clf.predict(TEXTS, threshold=bad)


def test_single_string_gives_one_result(clf):
    probs = clf.predict_proba("I love it")
    assert probs.shape == (1, len(clf.labels))
    np.testing.assert_array_equal(probs, clf.predict_proba(["I love it"]))
    preds = clf.predict("I love it")
    assert len(preds) == 1 and preds[0].text == "I love it"


def test_empty_inputs(clf):
    assert clf.predict([]) == []
    assert clf.predict_proba([]).shape == (0, len(clf.labels))
    probs = clf.predict_proba(["", " ", "\t\n"])  # scored like any text: no special tokens beyond [CLS] [SEP]
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs[1:], np.repeat(probs[:1], 2, axis=0), rtol=0, atol=PARITY_ATOL)


def test_any_sequence_or_iterable_of_strings(clf):
    expected = clf.predict_proba(TEXTS[:3])
    np.testing.assert_array_equal(clf.predict_proba(tuple(TEXTS[:3])), expected)
    np.testing.assert_array_equal(clf.predict_proba(t for t in TEXTS[:3]), expected)
    np.testing.assert_array_equal(clf.predict_proba(np.array(TEXTS[:3])), expected)


@pytest.mark.parametrize("texts, match", [
    (["ok", "fine", 3], r"texts\[2\] is int, expected str"),
    ([None], r"texts\[0\] is NoneType, expected str"),
    (["ok", b"bytes"], r"texts\[1\] is bytes, expected str"),
    (b"bytes", r"texts must be a string or a sequence of strings, got bytes"),
    (42, r"texts must be a string or a sequence of strings, got int"),
])
def test_non_strings_raise_type_error_naming_the_index(clf, texts, match):
    with pytest.raises(TypeError, match=match):
        clf.predict(texts)
    with pytest.raises(TypeError, match=match):
        clf.predict_proba(texts)


def test_long_texts_are_truncated_at_max_length(clf):
    head = "I am furious about the delay " * 40  # well over max_length tokens on its own
    probs = clf.predict_proba([head + " happy" * 500, head + " sad" * 500, head])
    np.testing.assert_allclose(probs[0], probs[1], rtol=0, atol=PARITY_ATOL)  # the tails were cut off
    np.testing.assert_allclose(probs[0], probs[2], rtol=0, atol=PARITY_ATOL)


def test_odd_characters_never_crash(clf):
    odd = ["\x00" * 50, "lone surrogate \ud83d from JSON", "🧑‍🤝‍🧑" * 300,
           "漢字かなカナ한국어" * 50,
           "\u202e reversed", "a\u0301" * 100, "\U0010ffff", "".join(map(chr, range(1, 32))), "\ufffd"]
    probs = clf.predict_proba(odd)
    assert probs.shape == (len(odd), len(clf.labels))
    assert np.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()
    # each row is that text's own score (fp32: what it scores alone), not a neighbour's or a default
    alone = np.stack([clf.predict_proba(text)[0] for text in odd])
    np.testing.assert_allclose(probs, alone, rtol=0, atol=PARITY_ATOL)
    assert len({row.tobytes() for row in probs.round(5)}) > len(odd) // 2, "the odd texts got distinct scores"
    # a lone surrogate scores as U+FFFD, the tokenizer's reading of any undecodable byte
    np.testing.assert_allclose(probs[1], clf.predict_proba("lone surrogate \ufffd from JSON")[0], rtol=0, atol=0)
    # 300 emoji sequences are over max_length: cut, so 299 score the same
    np.testing.assert_allclose(probs[2], clf.predict_proba("🧑‍🤝‍🧑" * 299)[0], rtol=0, atol=PARITY_ATOL)
    assert clf.predict(odd[1])[0].text == odd[1]  # the caller's text comes back unchanged


def test_graph_without_token_type_ids(tiny_export, clf):
    """Exports without token_type_ids (e.g. DistilBERT) get only the inputs their graph declares."""
    import onnx
    from onnx import TensorProto, helper

    path = tiny_export / "model.onnx"
    model = onnx.load(str(path))
    graph = model.graph
    graph.input.remove(next(i for i in graph.input if i.name == "token_type_ids"))
    graph.node.insert(0, helper.make_node("Shape", ["input_ids"], ["tt_shape"]))
    graph.node.insert(1, helper.make_node("ConstantOfShape", ["tt_shape"], ["token_type_ids"],
                                          value=helper.make_tensor("zero", TensorProto.INT64, [1], [0])))
    onnx.save(model, str(path))
    trimmed = EmotionClassifier.load(tiny_export, variant="fp32", provider="cpu", verify=False)
    assert [i.name for i in trimmed.session.get_inputs()] == ["input_ids", "attention_mask"]
    np.testing.assert_allclose(trimmed.predict_proba(TEXTS), clf.predict_proba(TEXTS), rtol=0, atol=PARITY_ATOL)


def test_attributes(clf, manifest, tiny_export_session):
    assert clf.labels == manifest["labels"]
    np.testing.assert_array_equal(clf.thresholds, np.asarray(manifest["thresholds"]))
    assert clf.variant == "fp32" and clf.provider == "cpu"
    assert clf.max_length == manifest["max_length"]
    assert clf.export_dir == tiny_export_session
    assert isinstance(clf.session, ort.InferenceSession)
    assert "variant='fp32'" in repr(clf)


# ------------------------------------------------------------------ integrity at load


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("rel", ["model.onnx", "tokenizer.json"])
def test_flipped_byte_is_reported_with_the_file_and_the_fix(tiny_export, rel):
    _flip_a_byte(tiny_export / rel)
    with pytest.raises(ArtifactError, match=rf"{rel}: sha256 .* does not match manifest.json.*re-run `toolkit export"):
        EmotionClassifier.load(tiny_export, variant="fp32", provider="cpu")


def test_load_verifies_only_the_files_it_opens(tiny_export, manifest, monkeypatch):
    """A replica loading int8 hashes int8 and the tokenizer, not fp32 and fp16 (hundreds of MB for
    BERT-base); `verify_files`, which validate and bench use, still checks every file."""
    from toolkit import runtime

    hashed = []
    real = artifacts.sha256_file
    monkeypatch.setattr(artifacts, "sha256_file", lambda path: hashed.append(path.name) or real(path))
    int8_file = _variant(manifest, "int8")
    EmotionClassifier.load(tiny_export, variant="int8", provider="cpu")
    assert sorted(hashed) == sorted([int8_file, "tokenizer.json"])
    for rel in ("config.json", _variant(manifest, "fp16"), _variant(manifest, "fp32")):
        _flip_a_byte(tiny_export / rel)
    assert EmotionClassifier.load(tiny_export, variant="int8", provider="cpu").variant == "int8"
    with pytest.raises(ArtifactError, match=r"does not match manifest.json"):
        runtime.verify_files(tiny_export, manifest)
    with pytest.raises(ArtifactError, match=rf"{_variant(manifest, 'fp32')}: sha256 .* does not match"):
        EmotionClassifier.load(tiny_export, variant="fp32", provider="cpu")


def test_missing_or_unlisted_files(tiny_export, tmp_path):
    with pytest.raises(ArtifactError, match="export directory not found"):
        EmotionClassifier.load(tmp_path / "nowhere")
    manifest = json.loads((tiny_export / "manifest.json").read_text())
    del manifest["files"]["tokenizer.json"]
    artifacts.write_manifest(tiny_export, manifest)
    with pytest.raises(ArtifactError, match=r"tokenizer.json has no checksum in 'files'"):
        EmotionClassifier.load(tiny_export, provider="cpu")
    (tiny_export / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"model.onnx.*(missing|not found)"):
        EmotionClassifier.load(tiny_export, variant="fp32", provider="cpu", verify=False)
    (tiny_export / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="manifest.json: export manifest not found"):
        EmotionClassifier.load(tiny_export)


def test_verify_false_skips_checksums(tiny_export):
    with open(tiny_export / "config.json", "a") as fh:
        fh.write("\n")
    clf = EmotionClassifier.load(tiny_export, variant="fp32", provider="cpu", verify=False)
    assert clf.predict_proba(["fine"]).shape == (1, len(clf.labels))


def _edit_manifest(export_dir, **changes):
    manifest = json.loads((export_dir / "manifest.json").read_text())
    manifest.update(changes)
    artifacts.write_manifest(export_dir, manifest)
    return manifest


def test_labels_must_match_the_model_output(tiny_export, manifest):
    n = len(manifest["labels"])
    _edit_manifest(tiny_export, labels=manifest["labels"] + ["extra"], thresholds=manifest["thresholds"] + [0.5])
    with pytest.raises(ArtifactError, match=rf"{n + 1} labels but variant fp32 outputs {n} scores"):
        EmotionClassifier.load(tiny_export, variant="fp32", provider="cpu")


@pytest.mark.parametrize("change, match", [
    (lambda m: {"thresholds": m["thresholds"][:-1]}, r"\d+ thresholds for \d+ labels"),
    (lambda m: {"thresholds": [1.5] + m["thresholds"][1:]}, r"thresholds of \['\w+'\] are not numbers in \[0, 1\]"),
    (lambda m: {"labels": [m["labels"][0]] * len(m["labels"])}, r"duplicate labels"),
    (lambda m: {"labels": []}, r"'labels' must be a non-empty list"),
    (lambda m: {"activation": "softmax"}, r"activation 'softmax' is not supported"),
])
def test_inconsistent_labels_or_thresholds(tiny_export, manifest, change, match):
    _edit_manifest(tiny_export, **change(manifest))
    with pytest.raises(ArtifactError, match=match):
        EmotionClassifier.load(tiny_export, provider="cpu")


# ------------------------------------------------------------------ concurrency


def test_many_threads_get_the_single_thread_results(clf):
    rng = np.random.default_rng(0)
    calls = [[TEXTS[i] for i in rng.choice(len(TEXTS), size=rng.integers(1, 9))] for _ in range(160)]
    expected = [clf.predict_proba(c) for c in calls]
    results = [None] * len(calls)
    barrier = threading.Barrier(8)

    def worker(k):
        barrier.wait()
        for i in range(k, len(calls), 8):
            results[i] = clf.predict_proba(calls[i])

    run_concurrently(worker, n_threads=8)
    for i, (got, want) in enumerate(zip(results, expected)):
        np.testing.assert_array_equal(got, want, err_msg=f"call {i}")


# ------------------------------------------------------------------ providers and variants


def test_cpu_provider(tiny_export_session):
    assert resolve_providers("cpu") == ["CPUExecutionProvider"]
    session = open_session(tiny_export_session / "model.onnx", "cpu", threads=1)
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert session.get_session_options().intra_op_num_threads == 1


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="onnxruntime has CUDA")
def test_gpu_provider_on_cpu_only_onnxruntime(tiny_export_session):
    assert resolve_providers("auto") == ["CPUExecutionProvider"]
    for name in ("cuda", "tensorrt"):
        with pytest.raises(ProviderError, match=rf"provider '{name}' needs .*pip install onnxruntime-gpu"):
            resolve_providers(name)
        with pytest.raises(ProviderError, match="onnxruntime-gpu"):
            EmotionClassifier.load(tiny_export_session, provider=name)
    with pytest.raises(ProviderError, match=r"provider 'gpu' is not supported; use one of auto, cpu, cuda"):
        resolve_providers("gpu")


# onnxruntime itself warns when asked for a provider it lacks: expected in the simulations below
ignore_ort_provider_warning = pytest.mark.filterwarnings("ignore:Specified provider .* is not in available provider")


@pytest.fixture
def fake_cuda(monkeypatch):
    """onnxruntime lists CUDA (as onnxruntime-gpu does on a machine without a usable GPU)."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime has CUDA: the simulated failure would not happen")
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])


@ignore_ort_provider_warning
def test_cuda_listed_but_not_attaching(tiny_export_session, fake_cuda):
    assert resolve_providers("auto") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(ProviderError, match=r"CUDAExecutionProvider was requested but onnxruntime attached only "
                                            r"CPUExecutionProvider.*onnxruntime-gpu"):
        open_session(tiny_export_session / "model.onnx", "cuda")
    with pytest.raises(ProviderError, match="CUDAExecutionProvider was requested"):
        EmotionClassifier.load(tiny_export_session, provider="cuda")
    with pytest.raises(ProviderError, match="TensorrtExecutionProvider was requested but onnxruntime attached only"):
        EmotionClassifier.load(tiny_export_session, provider="tensorrt")


def test_tensorrt_engine_cache_dir(monkeypatch, tmp_path):
    from toolkit.runtime import tensorrt_cache_dir

    monkeypatch.setenv("TOOLKIT_TRT_CACHE", str(tmp_path / "trt"))
    assert tensorrt_cache_dir() == tmp_path / "trt" and (tmp_path / "trt").is_dir()
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("TOOLKIT_TRT_CACHE", str(tmp_path / "file" / "trt"))
    with pytest.raises(ProviderError, match="cannot create the TensorRT engine cache.*set TOOLKIT_TRT_CACHE"):
        tensorrt_cache_dir()


@ignore_ort_provider_warning
def test_auto_provider_falls_back_to_cpu_loudly(tiny_export_session, manifest, fake_cuda, caplog):
    with caplog.at_level(logging.WARNING, logger="toolkit.runtime"):
        clf = EmotionClassifier.load(tiny_export_session)
    assert clf.provider == "cpu"
    assert "provider auto continues on CPUExecutionProvider" in caplog.text
    assert clf.variant == "int8"  # the CPU choice, not fp16


def test_variant_auto_picks_int8_on_cpu(tiny_export_session, manifest):
    assert manifest["variants"]["int8"]["status"] == "ok"  # the tiny int8 passes export's gate
    clf = EmotionClassifier.load(tiny_export_session, provider="cpu")
    assert clf.variant == "int8"


def test_variant_auto_falls_back_and_says_so(tiny_export, manifest, caplog):
    _edit_manifest(tiny_export, variants={"fp32": manifest["variants"]["fp32"]})
    with caplog.at_level(logging.INFO, logger="toolkit.runtime"):
        clf = EmotionClassifier.load(tiny_export, provider="cpu")
    assert clf.variant == "fp32"
    assert "has no int8 variant, using fp32" in caplog.text


def test_unknown_variant(tiny_export_session):
    with pytest.raises(ArtifactError, match=r"no variant 'fp8'; this export has fp32"):
        EmotionClassifier.load(tiny_export_session, variant="fp8", provider="cpu")


def test_bad_max_batch_size(tiny_export_session):
    with pytest.raises(ToolkitError, match="max_batch_size must be a positive integer"):
        EmotionClassifier.load(tiny_export_session, max_batch_size=0)


# ------------------------------------------------------------------ default threads: affinity and cgroup quota


def _cgroup(tmp_path, proc_line, files):
    """A fake /sys/fs/cgroup tree and /proc/self/cgroup for `cpu_quota(root, proc_cgroup)`."""
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    root.mkdir(exist_ok=True)
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(proc_line)
    return root, proc


@pytest.mark.parametrize("proc_line, files, quota", [
    ("0::/\n", {"cpu.max": "150000 100000\n"}, 1.5),  # v2, cgroup namespace: the pod's own cpu.max at the root
    ("0::/\n", {"cpu.max": "max 100000\n"}, None),  # v2, no limit
    ("0::/kubepods/pod1/c1\n", {"kubepods/cpu.max": "400000 100000\n", "kubepods/pod1/c1/cpu.max": "max 100000\n",
                                "kubepods/pod1/cpu.max": "250000 100000\n"}, 2.5),  # the tightest ancestor
    ("0::/docker/abc\n", {"cpu.max": "100000 100000\n"}, 1.0),  # the host's path is not mounted: the root counts
    ("4:memory:/x\n3:cpu,cpuacct:/\n0::/\n", {"cpu,cpuacct/cpu.cfs_quota_us": "300000\n",
                                               "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 3.0),  # v1
    ("3:cpu,cpuacct:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1, none
])
def test_cpu_quota_reads_cgroup_v2_and_v1(tmp_path, proc_line, files, quota):
    from toolkit.runtime import cpu_quota

    root, proc = _cgroup(tmp_path, proc_line, files)
    assert cpu_quota(root, proc) == quota


def test_default_threads_respect_the_cpu_quota_and_affinity(tiny_export_session, monkeypatch):
    """A pod limited to 1.5 CPUs gets 1 intra-op thread, not one per core of the node."""
    from toolkit import session

    monkeypatch.setattr(session, "physical_cores", lambda: 64)
    monkeypatch.setattr(session, "cpu_quota", lambda: 1.5)
    assert session.usable_cores() == 1
    clf = EmotionClassifier.load(tiny_export_session, variant="fp32", provider="cpu", verify=False)
    assert clf.session.get_session_options().intra_op_num_threads == 1
    monkeypatch.setattr(session, "cpu_quota", lambda: None)
    assert session.usable_cores() == 64
    monkeypatch.setattr(session, "cpu_quota", lambda: 6.0)
    assert session.usable_cores() == 6
    if hasattr(session.os, "sched_getaffinity"):
        monkeypatch.setattr(session.os, "sched_getaffinity", lambda pid: {0, 1, 2})
        assert session.cpu_limit() == 3  # Ray's num_cpus: affinity below the quota wins
        monkeypatch.setattr(session, "cpu_quota", lambda: 2.0)
        assert session.cpu_limit() == 2
