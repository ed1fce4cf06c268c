"""`toolkit score`: classify every row of JSONL, CSV or Parquet files into one output file.

Two engines, one reader and one writer:
- `local` streams chunks of rows through one `EmotionClassifier` in this process; memory stays
  constant whatever the input size.
- `ray` reads with Ray Data and scores with `map_batches` on a pool of classifier actors, one per
  `threads` CPUs of the cluster; this process writes the results in input order as they stream back.

Rows are parsed by the same functions in both engines, so they agree row by row: exactly for a
batch-invariant variant (fp32 and fp16; int8 scales activations per batch, and the engines cut
batches differently). A row whose text is missing or not a string gets an `error` and no scores;
the run goes on. A missing column or an unreadable file stops it with a DataError. The output is
written to a temporary file beside it and renamed into place when complete. Reading and writing the
files is toolkit.score_io; this module is the engines.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from toolkit.config import ScoreConfig
from toolkit.errors import ToolkitError
from toolkit.score_io import (Chunk, OutputWriter, check_columns, chunk_from_columns, count_rows, csv_options,
                              output_format, parse_jsonl_line, read_chunks, resolve_inputs)

log = logging.getLogger(__name__)

RAY_HINT = "pip install 'ray[data]' (or `pip install toolkit[serve]`)"


@dataclass(frozen=True)
class ScoreResult:
    output: Path
    rows: int
    errors: int
    seconds: float
    engine: str
    variant: str
    files: int

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def score_files(cfg: ScoreConfig, on_progress: Optional[Callable[[int, Optional[int]], None]] = None) -> ScoreResult:
    """Score every row of `cfg.input` into `cfg.output`.

    Args:
        cfg: inputs, output, model and engine.
        on_progress: called with (rows done, total rows or None) after every chunk written.

    Returns:
        Counts, time and where the output is.

    Raises:
        DataError: no input file, an unknown extension, a missing column, an unreadable file.
        ArtifactError, ProviderError: the export cannot be loaded.
        ToolkitError: the output exists without `force`; a needed package is missing.
    """
    files, fmt = resolve_inputs(cfg.input)
    out_fmt = output_format(cfg.output)
    if cfg.output.exists() and not cfg.force:
        raise ToolkitError(f"{cfg.output}: already exists; pass --force to replace it or choose another --output")
    check_columns(files, fmt, cfg.text_column, cfg.id_column)
    total = count_rows(files, fmt)
    start = time.perf_counter()
    engine = _score_local if cfg.engine == "local" else _score_ray
    rows, errors, variant = engine(cfg, files, fmt, out_fmt, total, on_progress or (lambda done, total: None))
    seconds = time.perf_counter() - start
    log.info("scored %d rows (%d errors) in %.1f s with the %s engine into %s", rows, errors, seconds, cfg.engine,
             cfg.output)
    return ScoreResult(cfg.output, rows, errors, seconds, cfg.engine, variant, len(files))


# ---------------------------------------------------------------------------- scoring


def score_chunk(clf, texts: list) -> np.ndarray:
    """Probabilities (n, labels) float32; rows whose text is None stay NaN."""
    probs = np.full((len(texts), len(clf.labels)), np.nan, dtype=np.float32)
    valid = [i for i, t in enumerate(texts) if t is not None]
    if valid:
        probs[valid] = clf.predict_proba([texts[i] for i in valid])
    return probs


def _score_local(cfg, files, fmt, out_fmt, total, on_progress) -> tuple[int, int, str]:
    from toolkit.runtime import EmotionClassifier

    clf = EmotionClassifier.load(cfg.export, variant=cfg.variant, provider=cfg.provider, threads=cfg.threads)
    rows = errors = 0
    with OutputWriter(cfg.output, out_fmt, clf.labels, clf.thresholds, clf.variant, cfg.id_column) as writer:
        for chunk in read_chunks(files, fmt, cfg):
            ids = chunk.ids if cfg.id_column else list(range(rows, rows + len(chunk.texts)))
            writer.write(ids, score_chunk(clf, chunk.texts), chunk.errors)
            rows += len(chunk.texts)
            errors += sum(e is not None for e in chunk.errors)
            on_progress(rows, total)
    return rows, errors, clf.variant


def _score_ray(cfg, files, fmt, out_fmt, total, on_progress) -> tuple[int, int, str]:
    """Ray Data: read -> map_batches(RayScorer) on an actor pool -> rows back here in input order."""
    ray = _ray()
    started = _connect_ray(cfg.address)
    try:
        threads = cfg.threads or 1
        # Leave one CPU to Ray Data's own tasks: with every CPU held by actors, Ray 2.60's ListFiles
        # task (1 CPU, before any read) waited forever. A local instance advertises one logical CPU
        # more than the machine has (_connect_ray), so the actors still get every core here.
        cpus = ray.cluster_resources().get("CPU", 1)
        concurrency = cfg.concurrency or max(1, int((cpus - 1) // threads))
        labels, thresholds, variant = _model_info(cfg)
        log.info("ray engine: %d actors x %d threads, batches of %d rows", concurrency, threads, cfg.batch_size)
        scored = _ray_dataset(files, fmt, cfg).map_batches(
            RayScorer, fn_constructor_kwargs={"cfg": cfg, "fmt": fmt, "threads": threads},
            batch_size=cfg.batch_size, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=concurrency), num_cpus=threads,
            runtime_env={"env_vars": {"RAYON_NUM_THREADS": str(threads)}})
        rows = errors = 0
        with OutputWriter(cfg.output, out_fmt, labels, thresholds, variant, cfg.id_column) as writer:
            for batch in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
                ids, probs, errs = RayScorer.unpack(batch, len(labels))
                if not cfg.id_column:
                    ids = list(range(rows, rows + len(errs)))
                writer.write(ids, probs, errs)
                rows += len(errs)
                errors += sum(e is not None for e in errs)
                on_progress(rows, total)
        return rows, errors, variant
    finally:
        if started:
            ray.shutdown()


class RayScorer:
    """A Ray Data actor: one classifier, loaded once; rows in, (id as JSON, probabilities, error) out.

    Ids travel as JSON text so that any JSON id survives Arrow's one type per column; the driver
    numbers rows itself when there is no id column.
    """

    def __init__(self, cfg: ScoreConfig, fmt: str, threads: int):
        from toolkit.runtime import EmotionClassifier

        self.cfg, self.fmt = cfg, fmt
        self.clf = EmotionClassifier.load(cfg.export, variant=cfg.variant, provider=cfg.provider, threads=threads)

    def __call__(self, batch):
        import pyarrow as pa

        columns = batch.to_pydict()
        if self.fmt == "jsonl":
            parsed = [parse_jsonl_line(line, self.cfg.text_column, self.cfg.id_column) for line in columns["text"]]
            chunk = Chunk([p[0] for p in parsed], [None if p[2] else p[1] for p in parsed], [p[2] for p in parsed])
        else:
            chunk = chunk_from_columns(columns, self.cfg)
        probs = score_chunk(self.clf, chunk.texts)
        return pa.table({"id_json": [json.dumps(i) for i in chunk.ids],
                         "probs": pa.FixedSizeListArray.from_arrays(probs.reshape(-1), probs.shape[1]),
                         "error": pa.array(chunk.errors, pa.string())})

    @staticmethod
    def unpack(table, n_labels: int) -> tuple[list, np.ndarray, list]:
        ids = [json.loads(i) for i in table.column("id_json").to_pylist()]
        flat = table.column("probs").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        probs = np.asarray(flat, dtype=np.float32).reshape(-1, n_labels)
        return ids, probs, table.column("error").to_pylist()


def _ray_dataset(files: list[Path], fmt: str, cfg: ScoreConfig):
    """The input as a Ray Dataset, rows in file order; JSONL as raw lines (parsed by RayScorer like
    the local engine does), CSV with the same pyarrow options as the local engine."""
    ray = _ray()
    ray.data.DataContext.get_current().execution_options.preserve_order = True  # row numbers = input order
    paths = [str(p) for p in files]
    columns = [c for c in (cfg.text_column, cfg.id_column) if c]
    # Read tasks reserve no CPU: the actors hold every core (2 actors x 1 thread on 2 cores), and a
    # read task asking for 1 CPU then waited forever behind them ("backpressured: ResourceBudget").
    # Reading is cheap next to scoring (~1% of the time); Ray Data's memory backpressure bounds it.
    light = {"ray_remote_args": {"num_cpus": 0}}
    if fmt == "jsonl":
        return ray.data.read_text(paths, drop_empty_lines=True, **light)
    if fmt == "csv":
        return ray.data.read_csv(paths, **csv_options(columns), **light)
    return ray.data.read_parquet(paths, columns=columns, **light)


def _model_info(cfg: ScoreConfig) -> tuple[list[str], np.ndarray, str]:
    """Labels, thresholds and the variant `auto` picks, from a classifier loaded here once."""
    from toolkit.runtime import EmotionClassifier

    clf = EmotionClassifier.load(cfg.export, variant=cfg.variant, provider=cfg.provider, threads=1)
    return clf.labels, clf.thresholds, clf.variant


def _connect_ray(address: Optional[str]) -> bool:
    """Join `address`, or start a token-authenticated local Ray without the dashboard (see toolkit.serve._connect)."""
    from toolkit import ray_cluster
    from toolkit.runtime import cpu_limit

    _ray()
    return ray_cluster.connect(address, num_cpus=cpu_limit() + 1, include_dashboard=False)


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401 - the data extra
    except ImportError as e:
        raise ToolkitError(f"--engine ray needs Ray Data: {RAY_HINT}") from e
    return ray
