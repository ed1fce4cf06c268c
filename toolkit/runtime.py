"""The classifier applications embed: an exported model in three lines, numpy + onnxruntime + tokenizers only.

    from toolkit.runtime import EmotionClassifier
    clf = EmotionClassifier.load("exported/emotion")
    clf.predict(["I love it", "this is awful"])

Nothing here imports torch, transformers or optimum (a test checks it in a fresh interpreter).

Sessions and providers (`open_session`, `resolve_providers`, onnxruntime's provider names) live in
`toolkit.session` and are re-exported here: apps, validate and bench open models the same way.

Every variant `toolkit export` makes by default is batch-invariant: a text's scores do not depend on
the texts batched or padded with it (int8 quantizes each token with its own scale). Only the
`--int8-recipe per-tensor` comparison variant shifts with batch-mates.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import onnxruntime as ort

from toolkit import artifacts
from toolkit.config import Provider, Variant
from toolkit.errors import ArtifactError, ToolkitError
from toolkit.metrics import sigmoid
from toolkit.session import (CPU, CUDA, CUDA_DEVICE_ID, GPU_HINT, PROVIDER_CHAINS, SHORT_NAMES, TENSORRT, cpu_limit,
                             cpu_quota, input_dtypes, open_session, physical_cores, resolve_providers,
                             tensorrt_cache_dir, usable_cores)

__all__ = ["EmotionClassifier", "Prediction", "DEFAULT_MAX_BATCH", "AUTO_VARIANTS", "MODEL_INPUTS",
           # toolkit.session, re-exported
           "CPU", "CUDA", "TENSORRT", "CUDA_DEVICE_ID", "GPU_HINT", "PROVIDER_CHAINS", "SHORT_NAMES", "input_dtypes",
           "open_session", "physical_cores", "usable_cores", "cpu_limit", "cpu_quota", "resolve_providers",
           "tensorrt_cache_dir",
           # for validate and bench
           "verify_files", "pad_id",
           # for evaluate, validate and bench: what truncation cut
           "Truncation", "count_truncated"]

log = logging.getLogger(__name__)

# variant="auto": fastest first for the device (int8 on CPU, fp16 on a GPU), then the others, most
# faithful first; a variant that failed validation (or export's int8 gate) is skipped.
# OpenVINO variants (backend "openvino" in the manifest) qualify only with a `toolkit validate` pass on a
# CPU with the same signature (openvino_session.cpu_signature): their speed and numbers depend on its ISA.
# The CPU order is the measured one on an AMX/AVX512-VNNI Xeon, demo MiniLM on 1,024 GoEmotions texts
# (benchmarks/openvino.md): ov_int8 1.73x and ov_bf16 1.49x the onnxruntime int8's texts/s.
AUTO_VARIANTS = {"cpu": (Variant.OV_INT8.value, Variant.OV_BF16.value, Variant.INT8.value, Variant.INT8_STATIC.value,
                         Variant.FP32.value, Variant.FP16.value),
                 "gpu": (Variant.FP16.value, Variant.FP32.value, Variant.INT8.value, Variant.INT8_STATIC.value,
                         Variant.OV_INT8.value, Variant.OV_BF16.value)}
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# 256 GoEmotions texts, MiniLM int8, 2 cores: batches of 16-32 were fastest, 64 took 1.6x and 256 2x as long
DEFAULT_MAX_BATCH = 32


@dataclass(frozen=True)
class Prediction:
    """One text's result: the labels at or above their thresholds, and every label's score."""

    text: str
    labels: list[str]
    scores: dict[str, float]


@dataclass(frozen=True)
class Truncation:
    """How many texts were longer than `max_length` tokens (special tokens included): the part the
    model never read. Reported by evaluate, validate and bench (`count_truncated`)."""

    cut: int
    texts: int
    max_length: int

    @property
    def share(self) -> float:
        return self.cut / self.texts if self.texts else 0.0

    def describe(self) -> str:
        return (f"truncation cut {self.cut:,} of {self.texts:,} texts ({100 * self.share:.1f}%) at "
                f"{self.max_length} tokens")

    def to_dict(self) -> dict:
        return {"cut": self.cut, "texts": self.texts, "share": self.share, "max_length": self.max_length}


class EmotionClassifier:
    """An exported multi-label classifier: tokenizer + one onnxruntime session + labels and thresholds.

    Create it with `EmotionClassifier.load(export_dir)`. One instance may be shared by any number
    of threads: the session and the tokenizer are configured once at load and only read afterwards.

    Attributes:
        labels: label names, in the column order of `predict_proba`.
        thresholds: per-label decision thresholds (float64 array, same order).
        variant: the ONNX variant loaded ("fp32", "fp16", "int8", ...).
        provider: the provider actually running it ("cpu", "cuda", "tensorrt").
        max_length: tokens per text; longer texts are truncated.
        max_batch_size: texts per session run.
        session: the onnxruntime InferenceSession.
        export_dir: the export directory.
    """

    def __init__(self, export_dir: Path, manifest: dict, variant: str, session: ort.InferenceSession,
                 tokenizer, pad_id: int, max_batch_size: int):
        self.export_dir = Path(export_dir)
        self.manifest = manifest
        self.labels = [str(label) for label in manifest["labels"]]
        self.thresholds = np.asarray(manifest["thresholds"], dtype=np.float64)
        self.max_length = int(manifest["max_length"])
        self.variant = variant
        self.session = session
        attached = session.get_providers()[0]
        self.provider = SHORT_NAMES.get(attached, attached)
        self.max_batch_size = max_batch_size
        self._tokenizer = tokenizer
        self._inputs = input_dtypes(session)
        self._output = session.get_outputs()[0].name
        self._pad_id = pad_id

    @classmethod
    def load(cls, export_dir, variant: str = "auto", provider: str = "auto", threads: int | None = None,
             max_batch_size: int = DEFAULT_MAX_BATCH, verify: bool = True) -> "EmotionClassifier":
        """Load an export directory written by `toolkit export`.

        Args:
            export_dir: the directory holding `manifest.json`, the ONNX variants and `tokenizer.json`.
            variant: "auto" (int8 on CPU, fp16 on CUDA, else what the export has) or a variant name.
            provider: "auto", "cpu", "cuda" or "tensorrt" (see `resolve_providers`).
            threads: intra-op threads; None = `usable_cores()` (physical cores, cgroup quota and affinity respected).
            max_batch_size: texts per session run; larger inputs are split into length-sorted batches.
            verify: check the sha256 of the files this load opens (the variant's ONNX file and
                `tokenizer.json`) against the manifest, a few ms per MB; `verify_files` checks them all.

        Raises:
            ArtifactError: manifest missing or unsupported, a file missing or modified, an unknown
                variant, or labels/thresholds that do not fit the model's output.
            ProviderError: the provider is unavailable or did not attach.
        """
        export_dir = Path(export_dir)
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ToolkitError(f"max_batch_size must be a positive integer, got {max_batch_size!r}")
        manifest = artifacts.read_manifest(export_dir)
        check_manifest_labels(export_dir, manifest)
        if verify:
            _verify_files(export_dir, manifest, [artifacts.TOKENIZER_JSON])
        tokenizer, pad_id = _load_tokenizer(export_dir, int(manifest["max_length"]))
        name, session = _open_variant(export_dir, manifest, variant, provider, threads, verify)
        classifier = cls(export_dir, manifest, name, session, tokenizer, pad_id, max_batch_size)
        classifier._check_graph()
        log.info("loaded %s: variant %s on %s, %d labels", export_dir, name, classifier.provider,
                 len(classifier.labels))
        return classifier

    def predict_proba(self, texts: str | Sequence[str]) -> np.ndarray:
        """Sigmoid probabilities, shape (n, labels), float32, columns in `labels` order.

        A text's row does not depend on the other texts in the call, their order or the batching
        (int8 within 1e-6: per-token activation scales); only an `--int8-recipe per-tensor`
        comparison export moves with batch-mates (see the module docstring).

        Args:
            texts: one string or a sequence of strings; empty and whitespace-only strings are
                scored like any text, texts over `max_length` tokens are truncated.

        Raises:
            TypeError: `texts` or one of its items is not a string (the message names the index).
        """
        texts = _as_texts(texts)
        probs = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        if not texts:
            return probs
        encodings = self._encode(texts)
        # Length bucketing: sorted by token count, each batch is padded only to its own longest text.
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        for start in range(0, len(order), self.max_batch_size):
            index = order[start:start + self.max_batch_size]
            logits = self._run([encodings[i] for i in index])
            probs[index] = sigmoid(logits).astype(np.float32)
        return probs

    def predict(self, texts: str | Sequence[str], threshold: float | None = None) -> list[Prediction]:
        """Labels at or above their thresholds and every label's score, one Prediction per text.

        Args:
            texts: as for `predict_proba`; a single string gives a list of one.
            threshold: one threshold for every label instead of the manifest's tuned ones.

        Raises:
            TypeError: a text is not a string.
            ToolkitError: `threshold` is outside [0, 1].
        """
        texts = _as_texts(texts)
        thresholds = self.thresholds if threshold is None else np.full(len(self.labels), _check_threshold(threshold))
        probs = self.predict_proba(texts)
        out = []
        for text, row in zip(texts, probs):
            out.append(Prediction(
                text=text,
                labels=[label for label, p, t in zip(self.labels, row, thresholds) if p >= t],
                scores={label: float(p) for label, p in zip(self.labels, row)},
            ))
        return out

    def __repr__(self) -> str:
        return (f"EmotionClassifier({str(self.export_dir)!r}, variant={self.variant!r}, provider={self.provider!r}, "
                f"labels={len(self.labels)})")

    def _encode(self, texts: list[str]):
        try:
            return self._tokenizer.encode_batch(texts, add_special_tokens=True)
        except TypeError:
            # A lone surrogate (e.g. JSON "\ud83d") is a valid Python str but not UTF-8, and the
            # tokenizer rejects the whole batch; score it as U+FFFD like any undecodable byte.
            return self._tokenizer.encode_batch(_without_surrogates(texts), add_special_tokens=True)

    def _run(self, encodings) -> np.ndarray:
        feed = self._feed(encodings)
        try:
            (logits,) = self.session.run([self._output], feed)
        except Exception as e:  # onnxruntime's Fail/RuntimeException types are not exported stably
            shape = (len(encodings), max(len(e.ids) for e in encodings))
            raise ArtifactError(f"{self.export_dir}: variant {self.variant} failed on a batch of shape {shape} "
                                f"({e}); check the export with `toolkit validate`, or lower max_batch_size if "
                                "memory ran out") from e
        return np.asarray(logits, dtype=np.float32)

    def _feed(self, encodings) -> dict:
        """The session inputs for one batch, padded to its own longest text."""
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n] = e.ids
            mask[row, :n] = e.attention_mask
            types[row, :n] = e.type_ids
        available = dict(zip(MODEL_INPUTS, (ids, mask, types)))
        # Feed only what the graph declares: some exports drop token_type_ids (e.g. DistilBERT).
        return {name: available[name].astype(dtype, copy=False) for name, dtype in self._inputs.items()}

    def _check_graph(self) -> None:
        """The graph takes known inputs and emits one logit per manifest label: checked by a real run,
        which also warms the session up so that the first request is not the slow one."""
        unknown = sorted(set(self._inputs) - set(MODEL_INPUTS))
        if unknown:
            raise ArtifactError(f"{self.export_dir}: variant {self.variant} takes inputs {unknown} that a BERT "
                                f"classifier does not have (known: {', '.join(MODEL_INPUTS)}); "
                                "re-export it with `toolkit export`")
        width = self._run(self._encode([""])).shape[-1]
        if width != len(self.labels):
            raise ArtifactError(
                f"{self.export_dir / artifacts.MANIFEST}: {len(self.labels)} labels but variant {self.variant} "
                f"outputs {width} scores; labels and model come from different exports, re-run `toolkit export --force`"
            )


def _as_texts(texts) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Iterable):
        raise TypeError(f"texts must be a string or a sequence of strings, got {type(texts).__name__}")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
    return texts


def _check_threshold(threshold) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)) \
            or not 0.0 <= float(threshold) <= 1.0:
        raise ToolkitError(f"threshold override must be a number in [0, 1], got {threshold!r}")
    return float(threshold)


def check_manifest_labels(export_dir: Path, manifest: dict) -> None:
    """Refuse a manifest whose labels or thresholds are missing, malformed or of different lengths (toolkit web too)."""
    where = export_dir / artifacts.MANIFEST
    labels, thresholds = manifest.get("labels"), manifest.get("thresholds")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
        raise ArtifactError(f"{where}: 'labels' must be a non-empty list of names; re-run `toolkit export --force`")
    if len(set(labels)) != len(labels):
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        raise ArtifactError(f"{where}: duplicate labels {dupes}; re-run `toolkit export --force`")
    if not isinstance(thresholds, list) or len(thresholds) != len(labels):
        count = len(thresholds) if isinstance(thresholds, list) else "no"
        raise ArtifactError(f"{where}: {count} thresholds for {len(labels)} labels; "
                            "re-run `toolkit export --force`")
    bad = [labels[i] for i, t in enumerate(thresholds)
           if isinstance(t, bool) or not isinstance(t, (int, float)) or not (math.isfinite(t) and 0.0 <= t <= 1.0)]
    if bad:
        raise ArtifactError(f"{where}: thresholds of {bad} are not numbers in [0, 1]; re-run `toolkit export --force`")
    if manifest.get("activation", "sigmoid") != "sigmoid":
        raise ArtifactError(f"{where}: activation {manifest['activation']!r} is not supported (only 'sigmoid', "
                            "multi-label); export a multi-label model")
    if not isinstance(manifest.get("max_length"), int) or manifest["max_length"] < 2:
        raise ArtifactError(f"{where}: max_length {manifest.get('max_length')!r} must be an integer >= 2; "
                            "re-run `toolkit export --force`")


def choose_variant(export_dir: Path, manifest: dict, variant: str, provider: str) -> tuple[str, str]:
    """(variant name, file) for a requested variant, resolving "auto" against the provider and validation."""
    variants = manifest.get("variants") or {}
    where = export_dir / artifacts.MANIFEST
    if not variants:
        raise ArtifactError(f"{where}: lists no model variants; re-run `toolkit export --force`")
    name = str(getattr(variant, "value", variant)).strip().lower()
    if name == "auto":
        name = _auto_variant(export_dir, manifest, resolve_providers(provider)[0] != CPU)
    elif name not in variants:
        raise ArtifactError(f"{export_dir}: no variant {variant!r}; this export has {', '.join(variants)} "
                            "(or use 'auto'); re-export with `toolkit export --variants ...` to add it")
    else:
        failures = _failures(manifest, name)
        if failures:
            log.warning("%s: variant %s failed its last check (%s); `toolkit validate` says why",
                        export_dir, name, "; ".join(failures))
    entry = variants[name]
    model_file = entry.get("file") if isinstance(entry, dict) else None
    if not model_file:
        raise ArtifactError(f"{where}: variant {name} names no file; re-run `toolkit export --force`")
    return name, model_file


def _auto_variant(export_dir: Path, manifest: dict, on_gpu: bool) -> str:
    """The fastest variant for the device that did not fail: export's own int8 gate or `toolkit validate`.

    With a validation report, only variants that passed it qualify (then, if none did, any that
    did not fail); without one, today's speed order, and a log line saying so.
    """
    variants = manifest.get("variants") or {}
    preferred = AUTO_VARIANTS["gpu" if on_gpu else "cpu"]
    ranked = [v for v in preferred if v in variants] + [v for v in variants if v not in preferred]
    status = manifest.get(artifacts.VALIDATION_STATUS) or {}
    failures = {v: _failures(manifest, v) for v in ranked}
    passed = [v for v in ranked if _certified(status.get(v)) and not failures[v]]
    not_failed = [v for v in ranked if not failures[v]]
    if not status:
        log.info("variant auto: %s was never validated (run `toolkit validate --export %s`); "
                 "choosing by speed among variants that did not fail at export", export_dir, export_dir)
    chosen = (passed or not_failed or ranked)[0]
    # the first choice an export without OpenVINO variants (the default export) would have
    first = next(v for v in preferred if v in variants or not Variant(v).is_openvino)
    if first not in variants:
        log.info("variant auto: %s has no %s variant, using %s", export_dir, first, chosen)
    skipped = ranked[: ranked.index(chosen)]
    if skipped:
        log.info("variant auto: %s skips %s (%s), using %s", export_dir, ", ".join(skipped),
                 "; ".join(f"{v}: {', '.join(failures[v]) or 'not validated'}" for v in skipped), chosen)
    if not (passed or not_failed):
        log.warning("variant auto: every variant of %s failed a check; using %s", export_dir, chosen)
    return chosen


def _certified(verdict: dict | None) -> bool:
    """A pass that rests on enough evidence. `toolkit validate` marks a run 'restricted' when it
    was a --max-samples smoke test or its texts were too few to certify; such a run is treated
    as if the variant was never validated."""
    return bool(verdict) and verdict.get("passed") is True and not verdict.get("restricted")


def _failures(manifest: dict, name: str) -> list[str]:
    """Why a variant must not be trusted: its last validation's failed checks, else export's int8 gate
    (failed, or not gated for want of data). A restricted run's pass is no verdict; its failures count."""
    verdict = (manifest.get(artifacts.VALIDATION_STATUS) or {}).get(name)
    entry = (manifest.get("variants") or {}).get(name) or {}
    if isinstance(entry, dict) and entry.get("backend") == "openvino":
        from toolkit.openvino_session import openvino_trust_failures

        return openvino_trust_failures(verdict, _certified(verdict))
    if verdict is not None and (verdict.get("passed") is False or _certified(verdict)):
        return [] if verdict.get("passed") else list(verdict.get("failures") or ["failed validation"])
    if isinstance(entry, dict) and entry.get("status") == "failed":
        return list(entry.get("failures") or ["failed the int8 gates at export"])
    if isinstance(entry, dict) and entry.get("status") == artifacts.NOT_GATED:
        return [f"not gated at export ({entry.get('not_gated') or 'no labelled data'}); `toolkit validate` certifies it"]
    return []


def _open_variant(export_dir: Path, manifest: dict, variant: str, provider: str,
                  threads: int | None, verify: bool) -> tuple[str, ort.InferenceSession]:
    name, model_file = choose_variant(export_dir, manifest, variant, provider)
    entry = manifest["variants"][name]
    if entry.get("backend") == "openvino":  # an IR: OpenVINO's CPU plugin through toolkit.openvino_session
        from toolkit.openvino_session import open_variant

        if verify:
            _verify_files(export_dir, manifest, variant_files(entry))
        return name, open_variant(export_dir, entry, provider, threads)
    if verify:
        _verify_files(export_dir, manifest, variant_files(entry))
    session = open_session(export_dir / model_file, provider, threads)
    if session.get_providers()[0] == CPU and resolve_providers(provider)[0] != CPU:
        # provider auto fell back to CPU (see open_session): take the variant auto picks for CPU
        cpu_name, cpu_file = choose_variant(export_dir, manifest, variant, Provider.CPU.value)
        if cpu_name != name:
            if verify:
                _verify_files(export_dir, manifest, [cpu_file])
            name, session = cpu_name, open_session(export_dir / cpu_file, Provider.CPU.value, threads)
    return name, session


def _verify_files(export_dir: Path, manifest: dict, files: list[str] | None = None) -> None:
    """`files` (default: every file in the manifest) match their sha256; every file the runtime
    may load has one.

    A load hashes only what it opens: hashing all three variants of a BERT-base export (~800 MB)
    cost every Ray replica seconds at start for files it never reads (benchmarks/README.md).
    """
    listed = manifest.get("files") or {}
    for rel in [*_variant_files(manifest), artifacts.TOKENIZER_JSON]:
        if rel not in listed:
            raise ArtifactError(f"{export_dir / artifacts.MANIFEST}: {rel} has no checksum in 'files'; "
                                "re-run `toolkit export --force`")
    if files is not None:
        manifest = {"files": {rel: listed[rel] for rel in files}}
    artifacts.verify_checksums(export_dir, manifest)


def _without_surrogates(texts: Sequence[str]) -> list[str]:
    """Lone surrogates (e.g. JSON "\\ud83d": a valid Python str, not UTF-8) as U+FFFD, which the tokenizer accepts."""
    return [t.encode("utf-8", "surrogatepass").decode("utf-8", "replace") for t in texts]


def _variant_files(manifest: dict) -> list[str]:
    variants = manifest.get("variants") or {}
    return [rel for entry in variants.values() if isinstance(entry, dict) for rel in variant_files(entry)]


def variant_files(entry: dict) -> list[str]:
    """The files a variant's manifest entry loads: its model file, and an OpenVINO IR's weights (.bin)."""
    return [entry[key] for key in ("file", "weights_file") if entry.get(key)]


def _load_tokenizer(export_dir: Path, max_length: int):
    """The tokenizer from `tokenizer.json`, truncating at `max_length`, and its padding id."""
    from tokenizers import Tokenizer

    path = export_dir / artifacts.TOKENIZER_JSON
    if not path.is_file():
        raise ArtifactError(f"{path}: tokenizer not found; re-run `toolkit export --force`")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
        raise ArtifactError(f"{path}: cannot load the tokenizer ({e}); re-run `toolkit export --force`") from e
    # Configure once, here: changing truncation/padding while another thread encodes raises
    # "RuntimeError: Already borrowed" (huggingface/tokenizers#537); encode_batch itself only reads.
    pad_id = _pad_id(tokenizer)
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.no_padding()  # each batch is padded to its own longest text in EmotionClassifier._run
    return tokenizer, pad_id


def _pad_id(tokenizer) -> int:
    if tokenizer.padding:  # as saved by transformers
        return int(tokenizer.padding["pad_id"])
    for token in ("[PAD]", "<pad>"):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return int(token_id)
    return 0  # masked out by attention_mask, so any id gives the same scores


# ---------------------------------------------------------------------------- for validate and bench
# Public wrappers, so that the code that checks and times a model uses the runtime's own rules.


def count_truncated(tokenizer, texts: Sequence[str], max_length: int) -> Truncation:
    """How many `texts` are longer than `max_length` tokens once special tokens are added.

    Args:
        tokenizer: a `tokenizers.Tokenizer` (the runtime's `tokenizer.json`) or a transformers
            tokenizer (a checkpoint's); neither is modified (a copy without truncation counts).
        texts: the texts a report covers.
        max_length: the truncation length in use.
    """
    from tokenizers import Tokenizer

    texts = _as_texts(texts)
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    if isinstance(backend, Tokenizer):
        # a copy: changing truncation on a tokenizer another thread encodes with raises (see _load_tokenizer)
        counter = Tokenizer.from_str(backend.to_str())
        counter.no_truncation()
        counter.no_padding()
        lengths = [len(e.ids) for e in counter.encode_batch(_without_surrogates(texts), add_special_tokens=True)]
    else:  # a transformers "slow" (pure Python) tokenizer
        lengths = [len(ids) for ids in tokenizer(list(texts), truncation=False)["input_ids"]]
    return Truncation(sum(n > max_length for n in lengths), len(texts), int(max_length))


def verify_files(export_dir, manifest: dict, files: Sequence[str] | None = None) -> None:
    """Check `files` (default: every file in the manifest) against their sha256 (`EmotionClassifier.load`
    checks only what it opens).

    Raises:
        ArtifactError: a file is missing, modified, or has no checksum in the manifest.
    """
    _verify_files(Path(export_dir), manifest, None if files is None else list(files))


def pad_id(tokenizer) -> int:
    """The id the runtime pads with: the tokenizer's saved padding, else [PAD] or <pad>, else 0."""
    return _pad_id(tokenizer)
