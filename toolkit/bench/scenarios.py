"""Scenario definitions: what the bench compares against, kept apart from how it measures.

- Presets (`--preset`): model shapes built once and exported with every variant into
  `benchmarks/cache/<name>/` (gitignored), reused while the cache's checksums match.
- The seed notebook's `predict_emotions` loop: one text at a time, padded to 128, PyTorch; the
  reference row of real-text mode (what the product replaces).
- optimum's ORTModelForSequenceClassification as its users call it: dataset order, padding=True.

They live in the library rather than in benchmarks/ because `toolkit bench --preset` and
real-text mode run them for any user, not only from a checkout.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from toolkit import artifacts, runtime
from toolkit.bench.results import OPTIMUM_PREFIX, SEED_LOOP
from toolkit.bench.runners import OrtRunner, Plan, bound
from toolkit.config import Provider, Variant
from toolkit.errors import ArtifactError, ProviderError, ToolkitError

log = logging.getLogger(__name__)

CACHE_DIR = Path("benchmarks/cache")  # preset checkpoints and exports; gitignored
PRESET_LABELS = 28  # GoEmotions' label count, so the preset head has the product's shape
PRESET_MAX_LENGTH = 128
PRESET_SEED = 0
SEED_LOOP_TEXTS = 300  # the one-text-at-a-time loop is slow; 300 texts give a stable rate in seconds
SEED_LOOP_MAX_LENGTH = 128  # the seed notebook's predict_emotions pads every text to 128 tokens

PRESET_SPECS = {
    # bert-base-uncased's shape (Devlin et al.) with RANDOM weights: for speed only.
    "bert-base": {"architecture": "bert", "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
                  "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 512,
                  "weights": "random"},
    # the shipped all-MiniLM-L6-v2 encoder (pretrained) with a random classification head.
    "minilm": {"architecture": "minilm", "weights": "pretrained encoder, random head"},
    # modeling's tiny test shape with random weights and a WordPiece vocab built from the demo corpus.
    "tiny": {"architecture": "tiny", "weights": "random"},
}


# ---------------------------------------------------------------------------- presets


def prepare_preset(name: str, cache_dir: Path = CACHE_DIR) -> Path:
    """Build (once) the preset's checkpoint and export every variant; return the export directory.

    The cache `cache_dir/<name>/` is reused when its manifest checksums match and it was built for
    the same preset definition; otherwise it is rebuilt.

    Raises:
        ToolkitError: unknown preset. ModelError: minilm without its package. ExportError: export failed.
    """
    from toolkit.config import ExportConfig
    from toolkit.export import export_model

    if name not in PRESET_SPECS:
        raise ToolkitError(f"unknown preset {name!r}: choose from {', '.join(PRESET_SPECS)}")
    base = Path(cache_dir) / name
    checkpoint, export_dir = base / "checkpoint", base / "export"
    spec = preset_spec(name)
    reason = stale_cache(export_dir, checkpoint, spec)
    if reason is None:
        log.info("preset %s: reusing %s", name, export_dir)
        return export_dir
    log.info("preset %s: building %s (%s)", name, base, reason)
    if _checkpoint_spec(checkpoint) != spec:
        _build_preset_checkpoint(name, checkpoint, spec)
    export_model(ExportConfig(checkpoint=checkpoint, out=export_dir, variants=Variant.exported(), force=True))
    return export_dir


def preset_source(name: str, export_dir: Path) -> dict:
    """The `source` block of a preset's result: what was measured, and that its weights mean nothing."""
    return {"name": f"preset {name}", "preset": name, "export": str(export_dir),
            "weights": PRESET_SPECS[name]["weights"], "shape": preset_shape(name)}


def preset_spec(name: str) -> dict:
    return {"preset": name, **PRESET_SPECS[name], "labels": PRESET_LABELS, "max_length": PRESET_MAX_LENGTH,
            "seed": PRESET_SEED}


def preset_shape(name: str) -> dict:
    spec = PRESET_SPECS[name]
    return {k: v for k, v in spec.items() if k not in ("architecture", "weights")}


def stale_cache(export_dir: Path, checkpoint: Path, spec: dict) -> Optional[str]:
    """Why the cached preset export cannot be reused, or None when it can."""
    if not (export_dir / artifacts.MANIFEST).is_file():
        return "no cached export"
    if _checkpoint_spec(checkpoint) != spec:
        return "cached checkpoint is missing or was built for another preset definition"
    try:
        manifest = artifacts.read_manifest(export_dir)
        artifacts.verify_checksums(export_dir, manifest)
    except ArtifactError as e:
        return f"cached export unusable: {e}"
    missing = [v.value for v in Variant.exported() if v.value not in (manifest.get("variants") or {})]
    return f"cached export lacks {', '.join(missing)}" if missing else None


def _checkpoint_spec(checkpoint: Path) -> Optional[dict]:
    try:
        meta = artifacts.read_checkpoint_meta(checkpoint)
    except ArtifactError as e:
        log.warning("%s: unreadable checkpoint metadata (%s); rebuilding", checkpoint, e)
        return None
    return (meta or {}).get("bench_preset")


def _build_preset_checkpoint(name: str, out: Path, spec: dict) -> None:
    """A toolkit-style checkpoint (HF directory + toolkit.json) for the preset, written atomically."""
    labels = [f"label_{i:02d}" for i in range(PRESET_LABELS)]
    model, tokenizer = _preset_model(name, labels)
    model.eval()
    meta = {"format_version": artifacts.FORMAT_VERSION, "created": artifacts.utc_now(), "labels": labels,
            "thresholds": [0.5] * len(labels), "activation": "sigmoid", "max_length": PRESET_MAX_LENGTH,
            "base_model": f"bench preset {name}", "bench_preset": spec, "versions": artifacts.library_versions()}
    with artifacts.atomic_directory(out, force=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        artifacts.write_checkpoint_meta(tmp, meta)


def _preset_model(name: str, labels: list[str]):
    """(model, tokenizer) of the preset, seeded."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from toolkit.demo_corpus import generate_demo_corpus
    from toolkit.modeling import PROBLEM_TYPE, build_classifier, load_tokenizer, minilm_path, train_wordpiece_tokenizer

    torch.manual_seed(PRESET_SEED)
    if name == "minilm":
        return build_classifier("minilm", labels, seed=PRESET_SEED)
    if name != "bert-base":
        return build_classifier("tiny", labels, train_texts=generate_demo_corpus()[0], seed=PRESET_SEED)
    config = BertConfig(**preset_shape(name), num_labels=len(labels), id2label=dict(enumerate(labels)),
                        label2id={n: i for i, n in enumerate(labels)}, problem_type=PROBLEM_TYPE)
    model = BertForSequenceClassification(config)
    # bert-base-uncased's 30522-token vocab ships with the MiniLM package; without it a small
    # WordPiece vocab (ids < 30522) serves, which changes nothing about speed.
    source = minilm_path()
    tokenizer = load_tokenizer(str(source)) if source else train_wordpiece_tokenizer(generate_demo_corpus()[0])
    return model, tokenizer


# ---------------------------------------------------------------------------- comparisons (real-text mode)


def seed_loop_plans(torch_runners: list, texts: list[str]) -> list[Plan]:
    """The seed notebook's predict_emotions: one text at a time, padded to 128, PyTorch, sigmoid."""
    import torch

    subset = texts[:SEED_LOOP_TEXTS]
    plans = []
    for runner in torch_runners:
        tokenizer, model, device = runner.loaded.tokenizer, runner.model, runner.device

        def predict_emotions(text, tokenizer=tokenizer, model=model, device=device):
            enc = tokenizer(text, padding="max_length", truncation=True, max_length=SEED_LOOP_MAX_LENGTH,
                            return_tensors="pt")
            with torch.inference_mode():
                logits = model(**{k: v.to(device) for k, v in enc.items()}).logits
            return torch.sigmoid(logits).cpu().numpy()

        plans.append(Plan(runner, SEED_LOOP, "max_length", SEED_LOOP_MAX_LENGTH, 1,
                          [bound(predict_emotions, t) for t in subset], len(subset),
                          len(subset) * SEED_LOOP_MAX_LENGTH))
    return plans


def optimum_plans(export_dir: Path, file_name: str, variant: str, providers: list[str], threads: int,
                  chunks: list[list[str]], batch: int, max_length: int, tokens: int, notes: list[str]) -> list[Plan]:
    """optimum's ORTModelForSequenceClassification on `file_name` as its users call it: the chunks
    (dataset order, `batch` texts each) padded to their longest text. `tokens`: tokens fed per pass.
    Skipped, with a note, where optimum.onnxruntime is not installed."""
    try:
        from optimum.onnxruntime import ORTModelForSequenceClassification
    except ImportError as e:
        notes.append(f"optimum comparison skipped: optimum.onnxruntime is not importable ({e}); "
                     "pip install optimum-onnx[onnxruntime]")
        return []
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(export_dir)
    plans = []
    for provider in providers:
        requested = runtime.resolve_providers(provider)[0]
        model = ORTModelForSequenceClassification.from_pretrained(
            export_dir, file_name=file_name, provider=requested, session_options=_optimum_options(threads))
        runner = OrtRunner(OPTIMUM_PREFIX + variant, export_dir, provider, threads, session=model.session)
        if provider != Provider.CPU and runner.provider == Provider.CPU:
            raise ProviderError(f"{export_dir}: optimum's session asked for {requested} but attached only CPU; "
                                f"{runtime.GPU_HINT}")

        def unit(chunk, model=model):
            # On CUDA optimum binds torch tensors by pointer (IO binding): they must be on its device.
            enc = tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            return torch.sigmoid(model(**enc.to(model.device)).logits).cpu().numpy()

        plans.append(Plan(runner, runner.variant, "longest", max_length, batch,
                          [bound(unit, c) for c in chunks], sum(len(c) for c in chunks), tokens))
    return plans


def _optimum_options(threads: int):
    """The same settings as toolkit.runtime's sessions, so only the pipeline around them differs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options
