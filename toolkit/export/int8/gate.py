"""Gating int8 candidates on labelled texts at export time, with `toolkit validate`'s own gates.

`checkpoint_gate` builds a `SplitGate` on the search part of the gate data (`--gate-data`, else the
checkpoint's fingerprint-checked validation split), and a calibration sample of its training split
for the sensitivity proxy; the search calls its `evaluate` and `proxy_error` on each candidate file.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from toolkit.config import Variant
from toolkit.metrics import sigmoid
from toolkit.export.int8.graph import graph_inputs
from toolkit.export.int8.search import GateOutcome

log = logging.getLogger(__name__)


def checkpoint_gate(cfg, loaded, fp32_path: Path) -> tuple[Optional["SplitGate"], dict]:
    """A SplitGate on the search part of the gate data, and what that data was (for the manifest).

    Gate data: `cfg.gate_data` when given, else the checkpoint's recorded validation split, checked
    against its fingerprint. Only its search part (data.split_search_certify) gates candidates:
    the certify part is left for `toolkit validate`, so the certificate does not rest on the texts
    the search selected on. Data that is missing or changed leaves int8 not gated (the record says
    why) instead of failing the export: exporting on another machine than the training one is usual.

    Args:
        cfg: the ExportConfig (search budget, gate data, calibration texts, max length, gates).
        loaded: the loaded checkpoint (tokenizer, labels, thresholds, recorded data spec).
        fp32_path: the unfused fp32 graph, the reference the candidates are scored against.
    Returns:
        (gate or None, record): record has "data", "fingerprint", "part", "part_fingerprint", or
        "not_gated" (the reason) when there is no gate.
    """
    from toolkit.config import DataConfig
    from toolkit.data import fingerprint, load_eval_data, load_recorded_split, split_search_certify
    from toolkit.errors import DataError

    spec = (loaded.meta or {}).get("data")
    if cfg.int8_search_seconds <= 0:
        return None, {"not_gated": "--int8-search-seconds 0"}
    try:
        given = DataConfig(path=Path(cfg.gate_data)) if cfg.gate_data else None
        if given is None and not spec:
            raise DataError("the checkpoint records no validation split; pass labelled texts with --gate-data PATH")
        validation, where = load_eval_data(given, "dev", spec, list(loaded.label_names))
    except DataError as e:
        log.warning("int8: NOT GATED (%s); model_int8.onnx is written and marked 'not gated'", e)
        return None, {"not_gated": str(e)}
    search, _ = split_search_certify(validation)
    if not len(search):
        return None, {"not_gated": f"{where}: no text falls in the search part; pass more texts with --gate-data"}
    try:  # the sensitivity proxy ranks on training texts, never on the gate's; the search part stands in
        train_texts = load_recorded_split(spec, "train").texts if spec and not cfg.gate_data else search.texts
    except DataError:
        train_texts = search.texts
    names = graph_inputs(fp32_path)
    max_length = int(cfg.max_length or loaded.max_length)
    rng = np.random.default_rng(0)
    train_texts = [train_texts[i] for i in rng.permutation(len(train_texts))[: cfg.calibration_texts]]
    feeds = encode_batches(loaded.tokenizer, search.texts, names, max_length)
    proxy = encode_batches(loaded.tokenizer, train_texts, names, max_length)
    record = {"data": where, "fingerprint": fingerprint(validation), "part": "search",
              "part_fingerprint": fingerprint(search)}
    log.info("int8 gate: %d texts, the search part of %s (%d texts); the other %d are left to certify", len(search),
             where, len(validation), len(validation) - len(search))
    return SplitGate(fp32_path, feeds, search.labels, np.asarray(loaded.thresholds), loaded.label_names,
                     cfg.gates, proxy), record


class SplitGate:
    """Scores int8 candidates on labelled texts against the fp32 graph, with `toolkit validate`'s gates.

    The fp32 ONNX graph stands in for PyTorch here (they agree within 1e-4 by export's own
    check, and it is 10x cheaper); `toolkit validate` later repeats the verdict against PyTorch.
    """

    def __init__(self, fp32_path: Path, feeds: Sequence[tuple[np.ndarray, dict]], y_true: np.ndarray,
                 thresholds: np.ndarray, labels: Sequence[str], gates, proxy_feeds: Sequence[tuple[np.ndarray, dict]]):
        from toolkit.metrics import compute_metrics

        self.feeds, self.proxy_feeds, self.y_true = feeds, proxy_feeds, y_true
        self.thresholds, self.labels, self.gates = np.asarray(thresholds, np.float64), list(labels), gates
        self.reference = sigmoid(score_logits(fp32_path, feeds, len(y_true)))
        self.proxy_reference = score_logits(fp32_path, proxy_feeds, _rows(proxy_feeds))
        self.ref_metrics = compute_metrics(y_true, self.reference, self.thresholds, self.labels)

    def evaluate(self, path: Path) -> GateOutcome:
        from toolkit.parity import compare

        probs = sigmoid(score_logits(path, self.feeds, len(self.y_true)))
        judged = compare(Variant.INT8, self.y_true, self.reference, self.thresholds, self.ref_metrics, probs,
                         self.thresholds, self.labels, self.gates)
        return GateOutcome.from_comparison(judged)

    def proxy_error(self, path: Path) -> float:
        """Mean |Δlogit| against fp32 on the calibration texts (training data: the search never ranks on dev)."""
        return float(np.abs(score_logits(path, self.proxy_feeds, _rows(self.proxy_feeds)) - self.proxy_reference).mean())


def encode_batches(tokenizer, texts: Sequence[str], input_names: Sequence[str], max_length: int,
                   batch_size: int = 64) -> list[tuple[np.ndarray, dict]]:
    """(row indices, ONNX feed) batches of similar-length texts, each padded to its own longest text."""
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    batches = []
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        encoded = tokenizer([texts[i] for i in index], truncation=True, max_length=max_length, padding=True,
                            return_tensors="np")
        batches.append((index, {k: encoded[k].astype(np.int64) for k in input_names if k in encoded}))
    return batches


def score_logits(path: Path, feeds: Sequence[tuple[np.ndarray, dict]], rows: int) -> np.ndarray:
    """Logits of one ONNX file on pre-encoded batches, in the original row order (CPU, full optimization)."""
    import onnxruntime as ort

    from toolkit.session import CPU

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=[CPU])
    out = None
    for index, feed in feeds:
        logits = session.run(None, feed)[0]
        if out is None:
            out = np.zeros((rows, logits.shape[-1]), dtype=np.float32)
        out[index] = logits
    return out


def _rows(feeds) -> int:
    return int(sum(len(index) for index, _ in feeds))
