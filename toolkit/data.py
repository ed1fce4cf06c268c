"""Dataset readers: texts plus a multi-hot label matrix whose columns keep the file's label order.

Formats (by extension, or `format=`):
- `goemotions`: `text<TAB>ids<TAB>comment_id`, label ids into `emotions.txt` beside the file.
  A directory with `emotions.txt` and `train.tsv`/`dev.tsv`[/`test.tsv`] is a dataset with splits.
- `csv` / `tsv`: a header row, a text column, then one 0/1 column per label (the header names
  the labels, in order) or one column holding a list of label names.
- `jsonl`: one object per line, with the same two label layouts.
A directory with `train.<ext>` and `dev|validation|val.<ext>` is a dataset with splits.

Columns (DataConfig), never guessed from header names: `labels_column` names the one column holding
a list of label names; `label_columns` names the 0/1 label columns (in that order) and ignores the
rest. Without either, every column but the text, the id and `ignore_columns` is looked at: a column
whose values are all 0/1 is a label column whatever its name (`text,label` is one label, "label");
a single column whose values are not 0/1 is a list of label names; anything else is an error that
names the option to pass. The log says which rule applied. `id_column` (default: a column named
`id`, or GoEmotions' third field) gives each row an id that travels into per-text outputs.

Pinned evidence: `load_splits` records a fingerprint of every split it returns (the source files'
sha256, the row count, a hash of the rows' ids, texts and labels) in `DatasetSplits.spec`, which
training stores in toolkit.json. `load_validation_split` rebuilds "the recorded validation split"
only when the files and the rebuilt rows still match it; otherwise it raises a one-line DataError
saying what changed and how to pass the data explicitly. `split_search_certify` cuts a split into
two deterministic parts by a hash of each text: export's int8 search selects on one, `toolkit
validate` certifies on the other, so a certificate never rests on the texts a search selected on.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from toolkit.artifacts import sha256_file
from toolkit.config import DATA_FORMATS, DataConfig
from toolkit.errors import DataError

log = logging.getLogger(__name__)

_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}
_VALIDATION_NAMES = ("dev", "validation", "val")
_BINARY_VALUES = {"1": 1.0, "1.0": 1.0, "true": 1.0, "0": 0.0, "0.0": 0.0, "false": 0.0}
_ID_COLUMNS = ("id",)  # taken as the row id when no --id-column is given; never a label
DEMO = "demo"
TEXT_ENCODING = "utf-8-sig"  # UTF-8 that skips a leading byte-order mark (and reads files without one alike)


@dataclass
class LabeledTexts:
    """Texts and their (n, L) float32 0/1 label matrix; columns follow `label_names`."""

    texts: list[str]
    labels: np.ndarray
    label_names: list[str]
    source: str = ""
    ids: Optional[list[str]] = None  # one per text, from the id column; None when the data has none

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index) -> "LabeledTexts":
        index = np.asarray(index, dtype=np.int64)
        ids = [self.ids[i] for i in index] if self.ids is not None else None
        return LabeledTexts([self.texts[i] for i in index], self.labels[index], list(self.label_names), self.source, ids)


@dataclass
class DatasetSplits:
    """Train/validation(/test) splits plus a `spec` that reloads the same validation split later."""

    train: LabeledTexts
    validation: LabeledTexts
    test: Optional[LabeledTexts]
    label_names: list[str]
    spec: dict = field(default_factory=dict)


def load_splits(cfg: DataConfig) -> DatasetSplits:
    """Load a dataset and split it: the dataset's own splits when present, else a seeded random split.

    The returned `spec` records how to rebuild the splits and a fingerprint of each (see
    `fingerprint`), so that a later rebuild can prove it found the same texts.

    Raises:
        DataError: missing file, unknown format, malformed rows; the message names file and line.
    """
    spec = {"path": str(Path(cfg.path).resolve()) if cfg.path else DEMO, "format": cfg.format,
            "text_column": cfg.text_column, "labels_column": cfg.labels_column,
            "label_columns": list(cfg.label_columns) if cfg.label_columns else None,
            "ignore_columns": list(cfg.ignore_columns), "id_column": cfg.id_column,
            "val_fraction": cfg.val_fraction, "seed": cfg.seed}
    if cfg.path is None:
        from toolkit.demo_corpus import generate_demo_corpus

        texts, labels, names = generate_demo_corpus()
        full = LabeledTexts(texts, labels, names, source=DEMO)
        return _pinned(_random_split(full, cfg.val_fraction, cfg.seed, spec), [])

    path = Path(cfg.path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory; pass an existing dataset to --data")
    if path.is_dir():
        files = _split_files(path, cfg.format)
        train = read_config_file(files["train"], cfg)
        names = train.label_names
        validation = read_config_file(files["validation"], cfg, names)
        test = read_config_file(files["test"], cfg, names) if "test" in files else None
        spec.update(split="dataset", validation_file=str(files["validation"].resolve()))
        sources = [files["train"], files["validation"]] + ([files["test"]] if "test" in files else [])
        if (path / "emotions.txt").is_file():
            sources.append(path / "emotions.txt")
        return _pinned(DatasetSplits(train, validation, test, names, spec), sources)
    return _pinned(_random_split(read_config_file(path, cfg), cfg.val_fraction, cfg.seed, spec), [path])


def fingerprint(data: LabeledTexts) -> dict:
    """What identifies a set of labelled texts: its row count and a sha256 over its rows, in order.

    Each row contributes its id (if any), its text and the *names* of its positive labels, so the
    hash does not depend on the file's column order (align_labels) but changes with any edited,
    added, removed or reordered row.
    """
    digest = hashlib.sha256()
    names = list(data.label_names)
    for i, text in enumerate(data.texts):
        positives = sorted(names[j] for j in np.flatnonzero(data.labels[i] > 0.5))
        row = [data.ids[i] if data.ids is not None else "", text, ",".join(positives)]
        digest.update(json.dumps(row, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return {"rows": len(data), "rows_sha256": digest.hexdigest()}


def describe_fingerprint(fp: Optional[dict]) -> str:
    """'5426 rows, sha256 1a2b3c4d5e6f' (the short form reports print)."""
    if not fp:
        return "no fingerprint"
    return f"{fp.get('rows')} rows, sha256 {str(fp.get('rows_sha256', ''))[:12]}"


def split_search_certify(data: LabeledTexts) -> tuple[LabeledTexts, LabeledTexts]:
    """Two disjoint parts of `data`, chosen by a hash of each text: (search, certify).

    Export's int8 search picks among candidates by their scores on the search part, so a pass
    there is a selected result; `toolkit validate` certifies on the certify part, texts no
    selection has seen. The hash (not a seeded shuffle) keeps a text in the same part whatever
    the order, the file or the machine; duplicate texts land together, so no text is on both sides.
    """
    certify = np.asarray([_hash_half(t) for t in data.texts], dtype=bool)
    return data.subset(np.flatnonzero(~certify)), data.subset(np.flatnonzero(certify))


def load_validation_split(spec: dict, label_names: list[str]) -> LabeledTexts:
    """Re-create the validation split that training recorded in `spec`, columns in `label_names` order.

    Raises:
        DataError: the data is gone, or it changed since training (source file hash, or the rebuilt
            split's rows differ from the recorded fingerprint); the message says what changed and to
            pass the data with --data.
    """
    return align_labels(load_recorded_split(spec, "validation"), label_names)


def load_recorded_split(spec: dict, which: str) -> LabeledTexts:
    """The `which` ('train' or 'validation') split recorded in `spec`, checked against its fingerprint.

    A spec without fingerprints (a checkpoint trained before they were recorded) is rebuilt with a
    warning that nothing proves the texts are the training's.
    """
    where = spec.get("path")
    for name, recorded in (spec.get("files") or {}).items():
        path = Path(name)
        if not path.is_file():
            raise DataError(f"{path}: recorded at training but missing here, so the recorded {which} split cannot be "
                            f"rebuilt; pass the data explicitly with --data PATH")
        now = sha256_file(path)
        if now != recorded:
            raise DataError(f"{path}: changed since training (sha256 {recorded[:12]} recorded, now {now[:12]}), so the "
                            f"recorded {which} split would hold other texts; pass the data explicitly with --data PATH")
    rebuilt = load_splits(config_from_spec(spec))
    split = getattr(rebuilt, which)
    recorded = (spec.get("fingerprints") or {}).get(which)
    if recorded is None:
        log.warning("%s: the checkpoint records no fingerprint of its %s split; nothing proves the rebuilt texts "
                    "are the ones it was trained with (retrain to record one, or pass --data)", where, which)
        return split
    now = rebuilt.spec["fingerprints"][which]  # load_splits fingerprinted every split it built
    if now != recorded:
        raise DataError(f"{where}: the rebuilt {which} split differs from training's ({describe_fingerprint(recorded)} "
                        f"recorded, now {describe_fingerprint(now)}); pass the data explicitly with --data PATH")
    return split


def load_eval_data(data: Optional[DataConfig], split: str, recorded_spec: Optional[dict],
                   label_names: list[str], drop_extra: bool = False) -> tuple[LabeledTexts, str]:
    """The texts to score and where they come from: a file, one split of a directory, or the recorded validation split.

    Columns are put in `label_names` order by name (`align_labels`, `drop_extra` as there). The
    recorded split is checked against its fingerprint (`load_recorded_split`).

    Raises:
        DataError: no data and no recorded split, data changed since training, an unknown split,
            or labels that do not match.
    """
    if data is None or data.path is None:
        if not recorded_spec:
            raise DataError("no --data given and the model records no validation split; pass --data PATH")
        dataset = load_validation_split(recorded_spec, label_names)
        return dataset, f"{recorded_spec.get('path')} (validation split recorded at training)"
    path = Path(data.path)
    if path.is_dir():
        splits = load_splits(data)
        chosen = {"train": splits.train, "dev": splits.validation, "validation": splits.validation,
                  "test": splits.test}.get(split)
        if chosen is None:
            raise DataError(f"{path}: has no {split!r} split; choose train, dev or test")
        return align_labels(chosen, label_names, drop_extra), f"{path} ({split})"
    return align_labels(read_config_file(path, data), label_names, drop_extra), str(path)


def config_from_spec(spec: dict) -> DataConfig:
    """The DataConfig that a checkpoint's recorded data spec (`DatasetSplits.spec`) came from."""
    return DataConfig(path=None if spec.get("path") in (None, DEMO) else Path(spec["path"]),
                      format=spec.get("format"), text_column=spec.get("text_column", "text"),
                      labels_column=spec.get("labels_column"),
                      label_columns=tuple(spec["label_columns"]) if spec.get("label_columns") else None,
                      ignore_columns=tuple(spec.get("ignore_columns") or ()), id_column=spec.get("id_column"),
                      val_fraction=spec.get("val_fraction", 0.1), seed=spec.get("seed", 42))


def read_dataset(path: Path, format: str | None = None, text_column: str = "text",
                 labels_column: str | None = None, label_names: list[str] | None = None, *,
                 label_columns: Optional[tuple[str, ...]] = None, ignore_columns: tuple[str, ...] = (),
                 id_column: str | None = None) -> LabeledTexts:
    """Read one file into LabeledTexts (the column options as in DataConfig; see read_config_file)."""
    columns = DataConfig(format=format, text_column=text_column, labels_column=labels_column,
                         label_columns=tuple(label_columns) if label_columns else None,
                         ignore_columns=tuple(ignore_columns), id_column=id_column)
    return read_config_file(path, columns, label_names)


def read_config_file(path: Path, cfg: DataConfig, label_names: list[str] | None = None) -> LabeledTexts:
    """Read one file into LabeledTexts, with `cfg`'s format and column choices (its path is ignored).

    Args:
        label_names: for a list-of-names column, the label order to use (else first appearance).
    Raises:
        DataError: missing file, unknown format, malformed rows, unknown columns.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; pass an existing dataset to --data")
    fmt = _detect_format(path, cfg.format)
    text = _read_utf8(path)
    if fmt == "goemotions":
        data = _read_goemotions(path, text)
    elif fmt == "jsonl":
        data = _read_records(path, _jsonl_records(path, text), cfg, label_names)
    else:
        data = _read_records(path, _delimited_records(path, text, "\t" if fmt == "tsv" else ","), cfg, label_names)
    if len(data) == 0:
        raise DataError(f"{path}: no usable rows; the file needs a header and at least one labelled text")
    return data


def align_labels(data: LabeledTexts, label_names: list[str], drop_extra: bool = False) -> LabeledTexts:
    """Reorder `data`'s label columns to `label_names`, matching by name.

    Args:
        drop_extra: drop (and log) data labels the model lacks instead of raising: `toolkit validate`
            checks a model on any data annotated with at least its labels. Training and the int8
            gate need exactly the model's labels.
    Raises:
        DataError: a label in `label_names` is missing from the data (or, without `drop_extra`,
            the data has extra ones).
    """
    if list(data.label_names) == list(label_names):
        return data
    missing = [n for n in label_names if n not in data.label_names]
    extra = [n for n in data.label_names if n not in label_names]
    if missing and drop_extra:
        raise DataError(f"{data.source}: has no column for model label(s) {', '.join(missing)} "
                        f"(data labels: {', '.join(data.label_names)}); pass data annotated with every model label")
    if missing or (extra and not drop_extra):
        raise DataError(
            f"{data.source}: labels do not match the model: missing {missing or 'none'}, unknown {extra or 'none'}; "
            "the data must carry exactly the model's labels"
        )
    if extra:
        log.info("%s: ignoring %d label(s) the model does not have: %s", data.source, len(extra), ", ".join(extra))
    order = [data.label_names.index(n) for n in label_names]
    return LabeledTexts(data.texts, data.labels[:, order], list(label_names), data.source, data.ids)


def open_text(path: Path):
    """A dataset file opened for reading as text, the way every reader here decodes it: UTF-8, a
    byte-order mark skipped (Excel writes one), newlines left to the csv module. `toolkit score`'s
    streaming readers use it too, so a file that trains also scores."""
    return open(path, encoding=TEXT_ENCODING, newline="")


def read_header(path: Path, fmt: str) -> Optional[list[str]]:
    """The column names of a CSV/TSV file (its header row) or a JSONL file (its first object's keys);
    None for an empty file, [] when the first JSONL line is not an object.

    Raises:
        OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error: the caller names the file.
    """
    with open_text(path) as fh:
        if fmt in ("csv", "tsv"):
            return next(csv.reader(fh, delimiter="\t" if fmt == "tsv" else ","), None)
        first = next((line for line in fh if line.strip()), None)
    if first is None:
        return None
    row = json.loads(first)
    return list(row) if isinstance(row, dict) else []


def read_label_names(spec: str) -> list[str]:
    """Label names from a file (one per line, or a dataset's header) or a comma-separated list."""
    path = Path(spec)
    if path.is_file():
        names = [line.strip() for line in _read_utf8(path).splitlines() if line.strip()]
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise DataError(f"{spec}: no label names; pass a file with one label per line or 'a,b,c'")
    if len(set(names)) != len(names):
        raise DataError(f"{spec}: duplicate label names; each label must appear once")
    return names


# ---------------------------------------------------------------------------- helpers


def _pinned(splits: DatasetSplits, sources: list[Path]) -> DatasetSplits:
    """Record the source files' sha256 and each split's fingerprint in `splits.spec`."""
    splits.spec = dict(splits.spec, files={str(Path(f).resolve()): sha256_file(Path(f)) for f in sources},
                       fingerprints={name: fingerprint(part) for name, part in
                                     (("train", splits.train), ("validation", splits.validation), ("test", splits.test))
                                     if part is not None})
    return splits


def _hash_half(text: str) -> bool:
    """True for about half of all texts, always the same half: the certify part."""
    return hashlib.sha256(text.encode("utf-8")).digest()[0] & 1 == 1


def _random_split(full: LabeledTexts, val_fraction: float, seed: int, spec: dict) -> DatasetSplits:
    n_val = max(1, int(round(len(full) * val_fraction)))
    if len(full) - n_val < 1:
        raise DataError(f"{full.source}: {len(full)} rows are too few to split off a validation set; add rows")
    order = np.random.default_rng(seed).permutation(len(full))
    spec = dict(spec, split="random")
    return DatasetSplits(full.subset(order[n_val:]), full.subset(order[:n_val]), None, full.label_names, spec)


def _split_files(directory: Path, fmt: str | None) -> dict[str, Path]:
    for ext in ([".tsv"] if (directory / "emotions.txt").is_file() else []) + list(_EXTENSIONS):
        train = directory / f"train{ext}"
        if not train.is_file():
            continue
        files = {"train": train}
        for name in _VALIDATION_NAMES:
            if (directory / f"{name}{ext}").is_file():
                files["validation"] = directory / f"{name}{ext}"
                break
        if (directory / f"test{ext}").is_file():
            files["test"] = directory / f"test{ext}"
        if "validation" not in files:
            raise DataError(f"{directory}: has {train.name} but no dev{ext}/validation{ext}; add one or pass the train file alone")
        return files
    raise DataError(f"{directory}: no train.tsv/train.csv/train.jsonl inside; pass a dataset file or a split directory")


def _detect_format(path: Path, fmt: str | None) -> str:
    if fmt:
        if fmt not in DATA_FORMATS:
            raise DataError(f"{path}: unknown format {fmt!r}; choose one of {', '.join(DATA_FORMATS)}")
        return fmt
    ext = path.suffix.lower()
    if ext == ".tsv" and (path.parent / "emotions.txt").is_file():
        return "goemotions"
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    raise DataError(f"{path}: unknown format {ext or '(no extension)'!r}; use .csv, .tsv, .jsonl or pass --format")


def _read_utf8(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode(TEXT_ENCODING)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte 0x{raw[e.start]:02x}); re-save the file as UTF-8") from e


def _read_goemotions(path: Path, text: str) -> LabeledTexts:
    emotions_file = path.parent / "emotions.txt"
    if not emotions_file.is_file():
        raise DataError(f"{path}: GoEmotions format needs emotions.txt beside it; add the label list (one per line)")
    names = read_label_names(str(emotions_file))
    texts, rows, ids = [], [], []  # ids: the comment id, GoEmotions' third field
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 2:
            raise DataError(f"{path}:{lineno}: expected 'text<TAB>label ids<TAB>id', found {len(cols)} column(s)")
        body, label_ids = cols[0], cols[1]
        if not body.strip():
            raise DataError(f"{path}:{lineno}: blank text; remove the row or fill in the text")
        row = np.zeros(len(names), dtype=np.float32)
        for token in label_ids.split(","):
            token = token.strip()
            if not token.isdigit() or int(token) >= len(names):
                raise DataError(
                    f"{path}:{lineno}: label id {token!r} is not in {emotions_file.name} (0..{len(names) - 1}); "
                    "fix the id or the label list"
                )
            row[int(token)] = 1.0
        texts.append(body)
        rows.append(row)
        ids.append(cols[2].strip() if len(cols) > 2 else "")
    matrix = np.asarray(rows, dtype=np.float32).reshape(-1, len(names))
    return LabeledTexts(texts, matrix, names, str(path), ids if all(ids) else None)


def _delimited_records(path: Path, text: str, delimiter: str):
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: empty file; it needs a header row and labelled texts") from None
    header = [h.strip() for h in header]
    yield header
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path}:{reader.line_num}: {len(row)} columns, header has {len(header)}; fix the row's delimiters or quoting")
        yield reader.line_num, dict(zip(header, row))


def _jsonl_records(path: Path, text: str):
    header_sent = False
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg}); one JSON object per line") from e
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        if not header_sent:
            yield list(obj)
            header_sent = True
        yield lineno, obj
    if not header_sent:
        raise DataError(f"{path}: empty file; it needs one JSON object per line")


def _read_records(path, records, cfg: DataConfig, label_names) -> LabeledTexts:
    header = [str(h) for h in next(records)]
    _check_columns(path, header, cfg)
    id_column = cfg.id_column or next((c for c in _ID_COLUMNS if c in header), None)
    rows = list(records)
    texts = [_text_of(path, lineno, rec, cfg.text_column) for lineno, rec in rows]
    ids = [_id_of(path, lineno, rec, id_column) for lineno, rec in rows] if id_column else None
    list_column, label_columns = _label_layout(path, header, rows, cfg, id_column)
    if list_column:
        matrix, names = _label_lists(path, rows, list_column, label_names)
        return LabeledTexts(texts, matrix, names, str(path), ids)
    matrix = [[_binary(path, lineno, col, rec.get(col)) for col in label_columns] for lineno, rec in rows]
    return LabeledTexts(texts, np.asarray(matrix, dtype=np.float32).reshape(-1, len(label_columns)), label_columns,
                        str(path), ids)


def _label_layout(path, header: list[str], rows, cfg: DataConfig, id_column) -> tuple[Optional[str], list[str]]:
    """(list column, 0/1 columns): from the options when given, else from the values, never from header names.

    Returns one list column and no 0/1 columns, or no list column and the 0/1 columns in file order.
    """
    if cfg.labels_column:
        log.info("%s: labels from the list column %r (--labels-column)", path, cfg.labels_column)
        return cfg.labels_column, []
    if cfg.label_columns:
        log.info("%s: labels from the 0/1 columns %s (--label-columns)", path, ", ".join(cfg.label_columns))
        return None, list(cfg.label_columns)
    skip = {cfg.text_column, id_column, *cfg.ignore_columns}
    candidates = [c for c in header if c not in skip]
    if not candidates:
        raise DataError(f"{path}: no label columns; add one 0/1 column per label or a column with label names "
                        "(--labels-column)")
    # A list of names: the only candidate, and none of its values is 0/1 or a number (a number in a
    # 0/1 column is a typo). Anything else is read as 0/1 columns, where _binary names the first bad
    # cell (file:line) and the options that fix it.
    if len(candidates) == 1 and not any(_is_binary(rec.get(candidates[0])) or _is_number(rec.get(candidates[0]))
                                        for _, rec in rows):
        log.info("%s: labels from %r read as a list of label names: its values are not 0/1 (--labels-column to "
                 "say so, --label-columns for 0/1 columns)", path, candidates[0])
        return candidates[0], []
    log.info("%s: labels from the %d 0/1 column(s) %s (every column but text, id and --ignore-columns)", path,
             len(candidates), ", ".join(candidates))
    return None, candidates


def _is_binary(value) -> bool:
    return value is not None and not isinstance(value, (list, dict)) and str(value).strip().lower() in _BINARY_VALUES


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _check_columns(path, header: list[str], cfg: DataConfig) -> None:
    shown = ", ".join(header)
    if cfg.text_column not in header:
        raise DataError(f"{path}: no text column {cfg.text_column!r} (columns: {shown}); pass --text-column")
    if cfg.labels_column and cfg.labels_column not in header:
        raise DataError(f"{path}: no labels column {cfg.labels_column!r} (columns: {shown}); fix --labels-column")
    if cfg.id_column and cfg.id_column not in header:
        raise DataError(f"{path}: no id column {cfg.id_column!r} (columns: {shown}); fix --id-column")
    missing = [c for c in (cfg.label_columns or ()) if c not in header]
    if missing:
        raise DataError(f"{path}: no label column {', '.join(map(repr, missing))} (columns: {shown}); fix --label-columns")
    absent = [c for c in cfg.ignore_columns if c not in header]
    if absent:
        log.warning("%s: --ignore-columns %s not in the file (columns: %s)", path, ", ".join(absent), shown)


def _label_lists(path, rows, list_column, label_names) -> tuple[np.ndarray, list[str]]:
    names = list(label_names or [])
    fixed = label_names is not None
    label_sets = []
    for lineno, rec in rows:
        labels = _parse_label_list(path, lineno, rec.get(list_column))
        for name in labels:
            if name not in names:
                if fixed:
                    raise DataError(f"{path}:{lineno}: label {name!r} is not one of the dataset's labels ({', '.join(names)})")
                names.append(name)
        label_sets.append(labels)
    matrix = np.zeros((len(rows), len(names)), dtype=np.float32)
    for i, labels in enumerate(label_sets):
        for name in labels:
            matrix[i, names.index(name)] = 1.0
    return matrix, names


def _parse_label_list(path, lineno, value) -> list[str]:
    if isinstance(value, list):
        items = value
    elif value is None:
        items = []
    elif isinstance(value, str) and value.strip().startswith("["):
        try:
            items = json.loads(value)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: label list {value!r} is not valid JSON; write [\"joy\", \"fear\"]") from e
    else:
        sep = ";" if ";" in str(value) else ","
        items = [v for v in str(value).split(sep)]
    out = [str(v).strip() for v in items if str(v).strip()]
    return list(dict.fromkeys(out))


def _text_of(path, lineno, rec, column) -> str:
    value = rec.get(column)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{path}:{lineno}: blank text in column {column!r}; remove the row or fill in the text")
    return value


def _id_of(path, lineno, rec, column) -> str:
    value = rec.get(column)
    if value is None or not str(value).strip():
        raise DataError(f"{path}:{lineno}: blank id in column {column!r}; every row needs an id, or drop --id-column")
    return str(value).strip()


def _binary(path, lineno, column, value) -> float:
    text = str(value).strip().lower() if value is not None else ""
    if text in _BINARY_VALUES:
        return _BINARY_VALUES[text]
    raise DataError(f"{path}:{lineno}: column {column!r} has {value!r}; label columns must hold 0 or 1. If {column!r} "
                    f"is not a label: --id-column {column} (row ids) or --ignore-columns {column} (metadata); "
                    f"or name the labels with --label-columns a,b,c, or --labels-column {column} if it lists label names")
