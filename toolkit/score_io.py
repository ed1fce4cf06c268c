"""`toolkit score`'s files: which inputs, their formats, rows read in chunks, and the atomic output writer.

Both engines (toolkit.score) read rows through these functions, so they agree row by row, and
write through the one `OutputWriter`. JSONL is parsed here; CSV and Parquet through pyarrow,
imported when needed with a pip hint.
"""
from __future__ import annotations

import contextlib
import csv
import glob
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from toolkit.config import ScoreConfig
from toolkit.errors import DataError, ToolkitError

SCORE_FILE_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
RESERVED_COLUMNS = ("id", "labels", "variant", "error")
CSV_LABEL_SEPARATOR = ";"
PYARROW_HINT = "pip install pyarrow (or `pip install toolkit[serve]`)"


@dataclass
class Chunk:
    """Rows read from the input: ids (None: use the row number), texts (None where `errors` says why)."""

    ids: list
    texts: list
    errors: list


def resolve_inputs(pattern: str) -> tuple[list[Path], str]:
    """The files a path or glob names, in name order, and their one format."""
    text = str(pattern)
    files = sorted(Path(p) for p in glob.glob(text, recursive=True)) if glob.has_magic(text) else [Path(text)]
    files = [f for f in files if f.is_file()]
    if not files:
        raise DataError(f"{text}: no such file; pass a JSONL, CSV or Parquet file or a glob like 'data/*.jsonl'")
    formats = {input_format(f) for f in files}
    if len(formats) > 1:
        raise DataError(f"{text}: matches files of several formats ({', '.join(sorted(formats))}); "
                        "score one format per run")
    return files, formats.pop()


def input_format(path: Path) -> str:
    fmt = SCORE_FILE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown extension; inputs are {', '.join(SCORE_FILE_FORMATS)}")
    return fmt


def output_format(path: Path) -> str:
    fmt = SCORE_FILE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ToolkitError(f"{path}: unknown output extension; use .jsonl, .csv or .parquet")
    return fmt


def check_columns(files: list[Path], fmt: str, text_column: str, id_column: Optional[str]) -> None:
    """Every file has the text column (and the id column): JSONL checks its first row."""
    wanted = [c for c in (text_column, id_column) if c]
    for path in files:
        columns = _columns(path, fmt)
        if columns is None:
            continue  # an empty file: nothing to score
        missing = [c for c in wanted if c not in columns]
        if missing:
            raise DataError(f"{path}: no column {', '.join(repr(c) for c in missing)}; it has "
                            f"{', '.join(repr(c) for c in columns)} (choose with --text-column/--id-column)")


def count_rows(files: list[Path], fmt: str) -> Optional[int]:
    """Rows to score, for the progress bar: JSONL non-blank lines, Parquet metadata; None for CSV
    (quoted newlines make line counts wrong)."""
    if fmt == "parquet":
        pq = _pyarrow("parquet")
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    if fmt == "jsonl":
        total = 0
        for path in files:
            with open(path, "rb") as fh:
                total += sum(1 for line in fh if line.strip())
        return total
    return None


def row_error(value) -> Optional[str]:
    """Why a text cell cannot be scored, or None."""
    if value is None:
        return "text is missing"
    if not isinstance(value, str):
        return f"text is {type(value).__name__}, expected a string"
    return None


def parse_jsonl_line(line: str, text_column: str, id_column: Optional[str]) -> tuple:
    """(id, text, error) of one JSONL line; a broken line is a row error, not a stopped run."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        return None, None, f"line is not valid JSON ({e.msg} at column {e.colno})"
    if not isinstance(row, dict):
        return None, None, f"line is a JSON {type(row).__name__}, expected an object"
    text = row.get(text_column)
    return (row.get(id_column) if id_column else None), text, row_error(text)


def read_chunks(files: list[Path], fmt: str, cfg: ScoreConfig) -> Iterator[Chunk]:
    """Rows of every file, `cfg.batch_size` at a time, streamed (the local engine)."""
    for path in files:
        try:
            yield from _FILE_READERS[fmt](path, cfg)
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: cannot read it ({e})") from e
        except ToolkitError:
            raise
        except Exception as e:  # pyarrow's ArrowInvalid: a malformed CSV row or Parquet page
            raise DataError(f"{path}: cannot read it as {fmt} ({e})") from e


def chunk_from_columns(columns: dict, cfg: ScoreConfig) -> Chunk:
    """A Chunk from a column dict (CSV and Parquet, both engines)."""
    texts = list(columns[cfg.text_column])
    errors = [row_error(t) for t in texts]
    ids = list(columns[cfg.id_column]) if cfg.id_column else [None] * len(texts)
    return Chunk(ids, [None if e else t for t, e in zip(texts, errors)], errors)


def csv_options(columns: list[str]) -> dict:
    """pyarrow CSV options shared by both engines: every cell a string (an empty cell is ""),
    quoted newlines allowed, only the columns scored."""
    pa_csv = _pyarrow("csv")
    import pyarrow as pa

    return {"parse_options": pa_csv.ParseOptions(newlines_in_values=True),
            "convert_options": pa_csv.ConvertOptions(column_types={c: pa.string() for c in columns},
                                                     include_columns=columns, strings_can_be_null=False)}


class OutputWriter:
    """Rows out as JSONL, CSV or Parquet: id, labels, one score column per label, variant, error.

    Written to a temporary file beside `path`, renamed into place on a clean exit; an error or
    Ctrl-C removes it and leaves any previous `path` untouched.
    """

    def __init__(self, path: Path, fmt: str, labels: list[str], thresholds: np.ndarray, variant: str,
                 id_column: Optional[str]):
        clash = sorted(set(labels) & set(RESERVED_COLUMNS))
        if clash:
            raise ToolkitError(f"labels {clash} collide with the output columns {', '.join(RESERVED_COLUMNS)}")
        self.path, self.fmt, self.labels, self.variant = Path(path), fmt, list(labels), variant
        self.thresholds = np.asarray(thresholds)
        self.id_column = id_column
        self._tmp = self._fh = self._csv = self._parquet = None

    def __enter__(self) -> "OutputWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        self._tmp = Path(tmp)
        if self.fmt == "parquet":
            os.close(fd)
            self._parquet = _pyarrow("parquet").ParquetWriter(str(self._tmp), self._arrow_schema())
        else:
            self._fh = os.fdopen(fd, "w", encoding="utf-8", newline="")
            if self.fmt == "csv":
                self._csv = csv.writer(self._fh)
                self._csv.writerow(["id", "labels", *self.labels, "variant", "error"])
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self._parquet is not None:
                self._parquet.close()
            if self._fh is not None:
                self._fh.close()
            if exc_type is None:
                os.chmod(self._tmp, 0o644)  # mkstemp makes 0600; the output is an ordinary file
                os.replace(self._tmp, self.path)
        finally:
            if self._tmp.exists():
                with contextlib.suppress(OSError):
                    self._tmp.unlink()

    def write(self, ids: list, probs: np.ndarray, errors: list) -> None:
        """One chunk: `probs` rows are NaN where `errors` holds a message."""
        hits = probs >= self.thresholds
        labels = [None if e else [self.labels[j] for j in np.flatnonzero(h)] for h, e in zip(hits, errors)]
        if self.fmt == "parquet":
            self._write_parquet(ids, probs, labels, errors)
        elif self.fmt == "csv":
            for row_id, row, names, error in zip(ids, probs.tolist(), labels, errors):
                scores = [""] * len(self.labels) if error else row
                self._csv.writerow([_text_id(row_id), "" if error else CSV_LABEL_SEPARATOR.join(names), *scores,
                                    self.variant, error or ""])
        else:
            for row_id, row, names, error in zip(ids, probs.tolist(), labels, errors):
                record = {"id": row_id, "labels": names}
                record.update(zip(self.labels, [None] * len(row) if error else row))
                record.update(variant=self.variant, error=error)
                self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")

    def _arrow_schema(self):
        import pyarrow as pa

        id_type = pa.string() if self.id_column else pa.int64()
        return pa.schema([("id", id_type), ("labels", pa.list_(pa.string())),
                          *[(label, pa.float32()) for label in self.labels],
                          ("variant", pa.string()), ("error", pa.string())])

    def _write_parquet(self, ids, probs, labels, errors) -> None:
        import pyarrow as pa

        if self.id_column:
            ids = [_text_id(i) if i is not None else None for i in ids]
        mask = np.array([e is not None for e in errors], dtype=bool)
        columns = [pa.array(ids), pa.array(labels, pa.list_(pa.string()))]
        columns += [pa.array(probs[:, j], pa.float32(), mask=mask) for j in range(len(self.labels))]
        columns += [pa.array([self.variant] * len(ids), pa.string()), pa.array(errors, pa.string())]
        self._parquet.write_table(pa.Table.from_arrays(columns, schema=self._arrow_schema()))


# ---------------------------------------------------------------------------- helpers


def _columns(path: Path, fmt: str) -> Optional[list[str]]:
    try:
        if fmt == "parquet":
            return list(_pyarrow("parquet").ParquetFile(path).schema_arrow.names)
        from toolkit.data import read_header  # the training reader: BOM-tolerant, so a file that trains scores

        return read_header(path, fmt)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read it as {fmt} ({e})") from e
    except Exception as e:  # pyarrow's ArrowInvalid for a file that is not Parquet
        raise DataError(f"{path}: cannot read it as {fmt} ({e})") from e


def _jsonl_chunks(path: Path, cfg: ScoreConfig) -> Iterator[Chunk]:
    from toolkit.data import open_text

    chunk = Chunk([], [], [])
    with open_text(path) as fh:
        for line in fh:
            if not line.strip():
                continue
            row_id, text, error = parse_jsonl_line(line, cfg.text_column, cfg.id_column)
            chunk.ids.append(row_id)
            chunk.texts.append(None if error else text)
            chunk.errors.append(error)
            if len(chunk.texts) == cfg.batch_size:
                yield chunk
                chunk = Chunk([], [], [])
    if chunk.texts:
        yield chunk


def _arrow_chunks(path: Path, cfg: ScoreConfig) -> Iterator[Chunk]:
    columns = [c for c in (cfg.text_column, cfg.id_column) if c]
    if input_format(path) == "parquet":
        batches = _pyarrow("parquet").ParquetFile(path).iter_batches(batch_size=cfg.batch_size, columns=columns)
    else:
        batches = _pyarrow("csv").open_csv(path, **csv_options(columns))
    for batch in batches:
        for start in range(0, batch.num_rows, cfg.batch_size):
            yield chunk_from_columns(batch.slice(start, cfg.batch_size).to_pydict(), cfg)


_FILE_READERS = {"jsonl": _jsonl_chunks, "csv": _arrow_chunks, "parquet": _arrow_chunks}


def _pyarrow(module: str):
    import importlib

    try:
        return importlib.import_module(f"pyarrow.{module}")
    except ImportError as e:
        raise ToolkitError(f"CSV and Parquet need pyarrow: {PYARROW_HINT}") from e


def _text_id(value) -> str:
    """An id as text (CSV, Parquet): strings as they are, None as "", other JSON values as JSON."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)
