"""Real-text mode (`--data`): every text of a dataset, end to end (tokenization, padding, the run, the sigmoid).

Texts are sorted into length buckets and each batch is padded only to its own longest text, as
`toolkit.runtime.EmotionClassifier` does (its `predict_proba` is the timed call); beside it the
same texts padded to `--seq-len`. With the baseline on, the comparison scenarios of
`toolkit.bench.scenarios` join every case: the seed notebook's loop and optimum's pipeline.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from toolkit import artifacts, runtime
from toolkit.bench.scenarios import optimum_plans, seed_loop_plans
from toolkit.bench.environment import OtherCpu
from toolkit.bench.results import REAL_TEXT, BenchRecord, Measured, finish_case, make_record
from toolkit.bench.runners import OrtRunner, Plan, TorchRunner, attention_of, bound, device_of, \
    note_provider_quirks, open_per_provider, torch_runners
from toolkit.bench.timing import round_robin, timing_stats
from toolkit.config import BenchConfig, Variant
from toolkit.errors import DataError
from toolkit.metrics import sigmoid

log = logging.getLogger(__name__)

REAL_TEXT_PASSES = 1  # real-text: one pass over a dataset is already hundreds of timed batches


@dataclass
class _Corpus:
    """The dataset, sorted once by token count (untimed), and what every case tokenizes it with."""

    export_dir: Path
    texts: list[str]
    by_length: list[str]  # the order EmotionClassifier.predict_proba batches in
    max_length: int
    counter: Callable[[Sequence[str], int], list[int]]  # tokens per text, capped

    def padded_tokens(self, chunks: list[list[str]]) -> int:
        """Tokens fed to the model when each chunk is padded to its own longest text."""
        return sum(len(c) * max(self.counter(c, self.max_length)) for c in chunks)


def bench_real_text(cfg: BenchConfig, export_dir: Path, manifest: dict, variants: list[str], providers: list[str],
                    threads: int, notes: list[str]) -> Measured:
    """End-to-end texts/s on a dataset: bucketed, padded to seq_len, and the comparison scenarios."""
    texts = read_texts(cfg.data)
    max_length = int(manifest["max_length"])
    runtime.verify_files(export_dir, manifest)  # once here, not in every load below

    def open_runners(provider: str) -> list:
        return _open_runners(cfg, export_dir, manifest, variants, provider, threads)

    runners, used = open_per_provider(cfg, providers, open_runners, notes)
    note_provider_quirks(runners, notes)
    counter = token_counter(export_dir)
    # Sort by token count once, untimed: each text is still tokenized exactly once inside the timed
    # region (per batch), and the batches are the ones EmotionClassifier.predict_proba would form.
    # The same uncapped counts say how many texts truncation cuts (runtime.count_truncated's rule).
    lengths = np.asarray(counter(texts, np.iinfo(np.int64).max))
    order = np.argsort(np.minimum(lengths, max_length), kind="stable")
    corpus = _Corpus(export_dir, texts, [texts[i] for i in order], max_length, counter)
    notes.append(runtime.Truncation(int((lengths > max_length).sum()), len(texts), max_length).describe())
    records = []
    for n_case, batch in enumerate(cfg.batches):
        plans = _plans(cfg, corpus, runners, batch)
        if cfg.baseline:
            plans += _comparison_plans(corpus, manifest, variants, runners, used, threads, batch,
                                       notes if n_case == 0 else [])
        records += _time_plans(cfg, plans, batch, notes)
    return Measured(records, used, attention_of(runners))


def _open_runners(cfg: BenchConfig, export_dir: Path, manifest: dict, variants: list[str], provider: str,
                  threads: int) -> list:
    """The PyTorch baseline (fp32 only) and one runtime EmotionClassifier per variant on `provider`."""
    runners = torch_runners(export_dir, manifest, device_of(provider), threads, fp16=False) if cfg.baseline else []
    for variant in variants:
        clf = runtime.EmotionClassifier.load(export_dir, variant=variant, provider=provider, threads=threads,
                                             max_batch_size=max(cfg.batches), verify=False)
        runners.append(OrtRunner(variant, export_dir, provider, threads, session=clf.session, classifier=clf))
    return runners


def _plans(cfg: BenchConfig, corpus: _Corpus, runners: list, batch: int) -> list[Plan]:
    """Bucketed rows (the runtime's own batching), then every runner padded to each --seq-len."""
    chunks = chunked(corpus.by_length, batch)
    n = len(corpus.texts)
    bucket_tokens = corpus.padded_tokens(chunks)
    bucket_tok = text_tokenizer(corpus.export_dir, corpus.max_length, None)
    ort_runners = [r for r in runners if isinstance(r, OrtRunner)]
    torch_runs = [r for r in runners if isinstance(r, TorchRunner)]
    plans = [Plan(r, r.variant, "bucket", corpus.max_length, batch,
                  [bound(r.classifier.predict_proba, c) for c in chunks], n, bucket_tokens) for r in ort_runners]
    plans += [Plan(r, r.variant, "bucket", corpus.max_length, batch,
                   [bound(torch_text_unit, r, bucket_tok, c) for c in chunks], n, bucket_tokens) for r in torch_runs]
    for seq_len in cfg.seq_lens:
        padded_tok = text_tokenizer(corpus.export_dir, seq_len, seq_len)
        for r in ort_runners + torch_runs:
            unit = ort_text_unit if isinstance(r, OrtRunner) else torch_text_unit
            plans.append(Plan(r, r.variant, "max_length", seq_len, batch,
                              [bound(unit, r, padded_tok, c) for c in chunks], n, n * seq_len))
    return plans


def _comparison_plans(corpus: _Corpus, manifest: dict, variants: list[str], runners: list, providers: list[str],
                      threads: int, batch: int, notes: list[str]) -> list[Plan]:
    """optimum on the int8 file (else the first variant), then the seed loop: the reference row,
    measured again in every case so that it shares the case's noise."""
    in_order = chunked(corpus.texts, batch)
    variant = Variant.INT8.value if Variant.INT8 in variants else variants[0]
    plans = optimum_plans(corpus.export_dir, manifest["variants"][variant]["file"], variant, providers,
                          threads, in_order, batch, corpus.max_length, corpus.padded_tokens(in_order), notes)
    return plans + seed_loop_plans([r for r in runners if isinstance(r, TorchRunner)], corpus.texts)


def _time_plans(cfg: BenchConfig, plans: list[Plan], batch: int, notes: list[str]) -> list[BenchRecord]:
    """Warm up, time every plan interleaved, and turn each plan's timings into a record."""
    for plan in plans:
        # On CPU the longest batches size the memory arenas. On CUDA every new shape costs a
        # one-off kernel/workspace setup (seen on an H200: fp16 p90 14x its p50 in a single
        # pass), so the warm-up there is one whole pass over every batch shape.
        if cfg.warmup:
            for unit in plan.units if plan.runner.device != "cpu" else plan.units[-cfg.warmup:]:
                unit()
    passes = cfg.iterations or (1 if cfg.duration else REAL_TEXT_PASSES)
    log.info("real text, batch %d: %d runners x %d pass(es)", batch, len(plans), passes)
    with OtherCpu() as other:
        times = round_robin([p.units for p in plans], passes, cfg.duration)
    case = []
    for plan, seconds in zip(plans, times):
        stats = timing_stats(seconds)
        done = stats.runs / len(plan.units)  # passes completed
        rec = make_record(plan.runner, plan.variant, plan.batch, plan.seq_len, REAL_TEXT, plan.padding, stats,
                          plan.texts * done / stats.total_s, plan.tokens * done / stats.total_s)
        rec.texts = plan.texts
        case.append(rec)
    finish_case(case, other.share, notes)
    return case


def ort_text_unit(runner: OrtRunner, tokenizer, chunk: list[str]) -> np.ndarray:
    (logits,) = runner.session.run(runner.outputs[:1], runner.feeds(encode(tokenizer, chunk)))
    return sigmoid(logits)  # the runtime's own activation (toolkit.metrics.sigmoid)


def torch_text_unit(runner: TorchRunner, tokenizer, chunk: list[str]) -> np.ndarray:
    return runner.forward(encode(tokenizer, chunk))


def encode(tokenizer, chunk: list[str]) -> dict[str, np.ndarray]:
    encodings = tokenizer.encode_batch(chunk)
    return {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64)}


def text_tokenizer(export_dir: Path, truncate: int, pad_to: Optional[int]):
    """The export's tokenizer.json, truncating at `truncate`, padding to `pad_to` (None: each batch's
    longest) with the runtime's padding id."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(export_dir / artifacts.TOKENIZER_JSON))
    pad_id = runtime.pad_id(tokenizer)
    tokenizer.enable_truncation(max_length=truncate)
    tokenizer.enable_padding(pad_id=pad_id, length=pad_to)
    return tokenizer


def token_counter(export_dir: Path) -> Callable[[Sequence[str], int], list[int]]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(export_dir / artifacts.TOKENIZER_JSON))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return lambda texts, limit: [min(len(e.ids), limit) for e in tokenizer.encode_batch(list(texts))]


def chunked(texts: list[str], batch: int) -> list[list[str]]:
    return [texts[i:i + batch] for i in range(0, len(texts), batch)]


def read_texts(path: Path) -> list[str]:
    """Texts of any dataset toolkit.data reads; a split directory gives its validation split."""
    from toolkit.config import DataConfig
    from toolkit.data import load_splits, read_dataset

    path = Path(path)
    if path.is_dir():
        texts = load_splits(DataConfig(path=path)).validation.texts
    else:
        texts = read_dataset(path).texts
    if not texts:
        raise DataError(f"{path}: no texts to benchmark; pass a dataset with at least one text")
    return texts
