"""Readers, splits and every bad-input error (message text pinned: it is the user interface)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from toolkit.config import DataConfig
from toolkit.data import (align_labels, fingerprint, load_eval_data, load_splits, load_validation_split, read_dataset,
                          read_header, read_label_names, split_search_certify)
from toolkit.demo_corpus import generate_demo_corpus
from toolkit.errors import DataError


def write(path: Path, text: str, encoding="utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


@pytest.fixture
def goemotions_like(tmp_path) -> Path:
    """A GoEmotions-style split directory with labels deliberately not in alphabetical order."""
    write(tmp_path / "emotions.txt", "joy\nanger\nsurprise\n")
    write(tmp_path / "train.tsv", "I love it\t0\tid1\nso mad and shocked\t1,2\tid2\nwow\t2\tid3\n")
    write(tmp_path / "dev.tsv", "great day\t0\tid4\nwhat?!\t2\tid5\n")
    return tmp_path


# ---------------------------------------------------------------------------- readers


def test_goemotions_reader_keeps_file_label_order(goemotions_like):
    data = read_dataset(goemotions_like / "train.tsv")
    assert data.label_names == ["joy", "anger", "surprise"]
    assert data.texts == ["I love it", "so mad and shocked", "wow"]
    np.testing.assert_array_equal(data.labels, [[1, 0, 0], [0, 1, 1], [0, 0, 1]])


def test_split_directory_uses_its_own_splits(goemotions_like):
    splits = load_splits(DataConfig(path=goemotions_like))
    assert (len(splits.train), len(splits.validation), splits.test) == (3, 2, None)
    assert splits.spec["split"] == "dataset"
    np.testing.assert_array_equal(splits.validation.labels, [[1, 0, 0], [0, 0, 1]])


def test_csv_one_column_per_label_as_in_the_seed_notebook(tmp_path):
    path = write(tmp_path / "seed.csv", "text,anger,fear,joy,sadness,surprise\n"
                                        "\"I'm furious, really\",1,0,0,0,0\nscared and sad,0,1,0,1,0\n")
    data = read_dataset(path)
    assert data.label_names == ["anger", "fear", "joy", "sadness", "surprise"]
    assert data.texts[0] == "I'm furious, really"
    np.testing.assert_array_equal(data.labels, [[1, 0, 0, 0, 0], [0, 1, 0, 1, 0]])


def test_tsv_binary_columns_ignore_the_id_column(tmp_path):
    path = write(tmp_path / "d.tsv", "id\ttext\tb\ta\n7\thello\t1\t0\n8\tbye\tfalse\ttrue\n")
    data = read_dataset(path)
    assert data.label_names == ["b", "a"]
    np.testing.assert_array_equal(data.labels, [[1, 0], [0, 1]])


def test_csv_list_column_orders_labels_by_first_appearance(tmp_path):
    path = write(tmp_path / "d.csv", "text,labels\nhappy and scared,joy;fear\ncalm,\nangry,anger\n")
    data = read_dataset(path)
    assert data.label_names == ["joy", "fear", "anger"]
    np.testing.assert_array_equal(data.labels, [[1, 1, 0], [0, 0, 0], [0, 0, 1]])


def test_jsonl_with_label_lists_and_with_binary_fields(tmp_path):
    lists = write(tmp_path / "a.jsonl", '{"text": "yay", "labels": ["joy"]}\n\n{"text": "eek", "labels": ["fear", "joy"]}\n')
    data = read_dataset(lists)
    assert data.label_names == ["joy", "fear"]
    np.testing.assert_array_equal(data.labels, [[1, 0], [1, 1]])
    binary = write(tmp_path / "b.jsonl", '{"text": "yay", "sad": 0, "glad": 1}\n{"text": "boo", "sad": 1, "glad": 0}\n')
    data = read_dataset(binary)
    assert data.label_names == ["sad", "glad"]
    np.testing.assert_array_equal(data.labels, [[0, 1], [1, 0]])


def test_given_label_order_is_used_for_list_columns(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "x", "labels": ["b"]}\n')
    data = read_dataset(path, label_names=["a", "b", "c"])
    np.testing.assert_array_equal(data.labels, [[0, 1, 0]])


def test_format_override_and_custom_text_column(tmp_path):
    path = write(tmp_path / "data.txt", "body\tx\nhi\t1\n")
    with pytest.raises(DataError, match="unknown format '.txt'"):
        read_dataset(path)
    data = read_dataset(path, format="tsv", text_column="body")
    assert data.texts == ["hi"] and data.label_names == ["x"]


def test_random_split_is_seeded_and_disjoint(tmp_path):
    rows = "".join(f"text {i},{i % 2}\n" for i in range(50))
    path = write(tmp_path / "d.csv", "text,joy\n" + rows)
    a = load_splits(DataConfig(path=path, val_fraction=0.2, seed=3))
    b = load_splits(DataConfig(path=path, val_fraction=0.2, seed=3))
    c = load_splits(DataConfig(path=path, val_fraction=0.2, seed=4))
    assert len(a.validation) == 10 and len(a.train) == 40
    assert a.validation.texts == b.validation.texts != c.validation.texts
    assert not set(a.validation.texts) & set(a.train.texts)
    again = load_validation_split(a.spec, ["joy"])
    assert again.texts == a.validation.texts


def test_align_labels_reorders_by_name_and_rejects_mismatch(goemotions_like):
    data = read_dataset(goemotions_like / "train.tsv")
    aligned = align_labels(data, ["surprise", "joy", "anger"])
    np.testing.assert_array_equal(aligned.labels, [[0, 1, 0], [1, 0, 1], [1, 0, 0]])
    with pytest.raises(DataError, match=r"missing \['fear'\], unknown \['anger'\]"):
        align_labels(data, ["joy", "fear", "surprise"])


def test_read_label_names_from_file_or_list(tmp_path):
    assert read_label_names("b, a ,c") == ["b", "a", "c"]
    assert read_label_names(str(write(tmp_path / "l.txt", "x\n\ny\n"))) == ["x", "y"]
    with pytest.raises(DataError, match="duplicate label names"):
        read_label_names("a,b,a")


def test_demo_corpus_is_deterministic_and_multi_label():
    texts, labels, names = generate_demo_corpus()
    again = generate_demo_corpus()
    assert texts == again[0] and np.array_equal(labels, again[1])
    assert len(names) >= 5 and len(texts) >= 2000
    per_text = labels.sum(axis=1)
    assert (per_text >= 2).mean() > 0.1  # real multi-label cases
    assert labels.sum(axis=0).min() > 100  # every emotion is well represented


def test_real_goemotions_dev_split(goemotions_dir):
    data = read_dataset(goemotions_dir / "dev.tsv")
    assert len(data.label_names) == 28 and data.label_names[0] == "admiration"
    assert len(data) > 5000
    assert (data.labels.sum(axis=1) >= 2).any()


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name, content, fmt, message", [
    ("d.csv", "text,joy\nhello,2\n", None, r"d.csv:2: column 'joy' has '2'; label columns must hold 0 or 1"),
    ("d.csv", "text,joy\n   ,1\n", None, r"d.csv:2: blank text in column 'text'"),
    ("d.csv", "body,joy\nhi,1\n", None, r"d.csv: no text column 'text' \(columns: body, joy\); pass --text-column"),
    ("d.csv", "text\nhi\n", None, r"d.csv: no label columns; add one 0/1 column per label"),
    ("d.csv", "text,joy\nhi,1,0\n", None, r"d.csv:2: 3 columns, header has 2"),
    ("d.csv", "", None, r"d.csv: empty file"),
    ("d.csv", "text,joy\n", None, r"d.csv: no usable rows"),
    ("d.jsonl", '{"text": "a", "labels": ["x"]}\n{oops\n', None, r"d.jsonl:2: not valid JSON"),
    ("d.jsonl", '["a"]\n', None, r"d.jsonl:1: expected a JSON object, got list"),
    ("d.yaml", "text: a\n", None, r"d.yaml: unknown format '.yaml'; use .csv, .tsv, .jsonl or pass --format"),
    ("d.csv", "text,joy\nhi,1\n", "xml", r"d.csv: unknown format 'xml'; choose one of goemotions, csv, tsv, jsonl"),
])
def test_bad_input_names_file_line_and_fix(tmp_path, name, content, fmt, message):
    path = write(tmp_path / name, content)
    with pytest.raises(DataError, match=message):
        read_dataset(path, format=fmt)


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"text,joy\nfine,1\ncaf\xe9,0\n")
    with pytest.raises(DataError, match=r"d.csv:3: not valid UTF-8 \(byte 0xe9\); re-save the file as UTF-8"):
        read_dataset(path)


def test_goemotions_label_id_outside_emotions_txt(goemotions_like):
    write(goemotions_like / "bad.tsv", "ok\t0\tx\nnope\t0,5\ty\n")
    with pytest.raises(DataError, match=r"bad.tsv:2: label id '5' is not in emotions.txt \(0..2\)"):
        read_dataset(goemotions_like / "bad.tsv")


def test_goemotions_without_emotions_txt_is_read_as_plain_tsv_and_fails_clearly(tmp_path):
    path = write(tmp_path / "train.tsv", "hello\t0\tid\n")
    # a plain TSV: its first row is the header, which has no text column
    with pytest.raises(DataError, match=r"train.tsv: no text column 'text' \(columns: hello, 0, id\); pass --text-column"):
        read_dataset(path)
    with pytest.raises(DataError, match="needs emotions.txt beside it"):
        read_dataset(path, format="goemotions")


def test_missing_file_and_split_dir_without_dev(tmp_path):
    with pytest.raises(DataError, match=r"nope.csv: no such file or directory; pass an existing dataset to --data"):
        load_splits(DataConfig(path=tmp_path / "nope.csv"))
    write(tmp_path / "train.csv", "text,joy\nhi,1\n")
    with pytest.raises(DataError, match=r"has train.csv but no dev.csv/validation.csv"):
        load_splits(DataConfig(path=tmp_path))


def test_cli_reports_bad_data_in_one_line_with_exit_code(tmp_path):
    from click.testing import CliRunner

    from toolkit.cli import cli

    # 'yes' alone would be a list of label names (its values are not 0/1); beside a 0/1 cell it is a typo
    path = write(tmp_path / "d.csv", "text,joy\nhello,1\nbye,yes\n")
    result = CliRunner().invoke(cli, ["train", "--data", str(path), "--model", "tiny", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2  # bad input is a usage error, like click's own
    assert "error: " in result.output and "d.csv:3: column 'joy' has 'yes'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------- choosing columns

# SemEval-2018 E-c's layout (ID, Tweet, one 0/1 column per emotion) plus a metadata column.
SEMEVAL = ("ID\tTweet\tanger\tsource\tjoy\tfear\n"
           "2017-En-21441\tso angry right now\t1\tweb\t0\t0\n"
           "2017-En-31535\thappy and scared\t0\tapp\t1\t1\n"
           "2017-En-21068\tlovely day\t0\tweb\t1\t0\n"
           "2017-En-31436\tterrified\t0\tapp\t0\t1\n")


def test_a_non_binary_column_error_names_the_column_options(tmp_path):
    path = write(tmp_path / "semeval.tsv", SEMEVAL)
    with pytest.raises(DataError, match=r"column 'ID' has '2017-En-21441'; label columns must hold 0 or 1\. .*"
                                        r"--id-column ID .*--ignore-columns ID .*--label-columns a,b,c"):
        read_dataset(path, text_column="Tweet")


def test_id_and_ignored_columns_leave_the_labels_in_file_order(tmp_path):
    path = write(tmp_path / "semeval.tsv", SEMEVAL)
    data = read_dataset(path, text_column="Tweet", id_column="ID", ignore_columns=("source",))
    assert data.label_names == ["anger", "joy", "fear"]
    assert data.ids == ["2017-En-21441", "2017-En-31535", "2017-En-21068", "2017-En-31436"]
    np.testing.assert_array_equal(data.labels, [[1, 0, 0], [0, 1, 1], [0, 1, 0], [0, 0, 1]])


def test_label_columns_choose_and_order_the_labels(tmp_path):
    path = write(tmp_path / "semeval.tsv", SEMEVAL)
    data = read_dataset(path, text_column="Tweet", label_columns=("fear", "anger"), id_column="ID")
    assert data.label_names == ["fear", "anger"]  # the order given, not the file's
    np.testing.assert_array_equal(data.labels, [[0, 1], [1, 0], [0, 0], [1, 0]])
    assert data.ids[1] == "2017-En-31535"
    with pytest.raises(DataError, match=r"no label column 'calm' .*fix --label-columns"):
        read_dataset(path, text_column="Tweet", label_columns=("calm",))
    with pytest.raises(DataError, match=r"no id column 'Id' .*fix --id-column"):
        read_dataset(path, text_column="Tweet", id_column="Id", ignore_columns=("ID", "source"))


def test_ids_survive_splitting_and_the_recorded_validation_split(tmp_path):
    rows = "".join(f"row{i}\ttext number {i}\t{i % 2}\tweb\t{(i + 1) % 2}\t0\n" for i in range(40))
    path = write(tmp_path / "big.tsv", "ID\tTweet\tanger\tsource\tjoy\tfear\n" + rows)
    cfg = DataConfig(path=path, text_column="Tweet", id_column="ID", ignore_columns=("source",), val_fraction=0.25)
    splits = load_splits(cfg)
    assert len(splits.validation.ids) == 10
    for data in (splits.train, splits.validation):
        assert all(text == f"text number {i[3:]}" for text, i in zip(data.texts, data.ids))  # id stays with its text
    again = load_validation_split(json.loads(json.dumps(splits.spec)), ["joy", "anger", "fear"])
    assert again.ids == splits.validation.ids and again.label_names == ["joy", "anger", "fear"]


def test_goemotions_ids_come_from_the_third_field(goemotions_like):
    assert read_dataset(goemotions_like / "train.tsv").ids == ["id1", "id2", "id3"]


def test_conflicting_column_options_are_rejected():
    from toolkit.errors import ToolkitError

    with pytest.raises(ToolkitError, match="exclude each other"):
        DataConfig(label_columns=("a",), labels_column="labels")
    with pytest.raises(ToolkitError, match="--ignore-columns names text"):
        DataConfig(ignore_columns=("text",))


# ---------------------------------------------------------------------------- no guessed columns


def test_a_binary_column_is_a_label_whatever_its_name(tmp_path):
    # `label` used to be taken for a list column: 0/1 values became two labels named "1" and "0"
    data = read_dataset(write(tmp_path / "d.csv", "text,label\ngood,1\nbad,0\nfine,1\n"))
    assert data.label_names == ["label"]
    np.testing.assert_array_equal(data.labels, [[1], [0], [1]])
    data = read_dataset(write(tmp_path / "e.jsonl", '{"text": "a", "labels": 0, "joy": 1}\n{"text": "b", "labels": 1, "joy": 0}\n'))
    assert data.label_names == ["labels", "joy"]
    np.testing.assert_array_equal(data.labels, [[0, 1], [1, 0]])


def test_a_list_column_beside_binary_columns_is_refused_not_half_read(tmp_path):
    # `joy` used to be dropped silently in favour of the `emotions` list
    path = write(tmp_path / "d.csv", 'text,emotions,joy\nhi,"joy,fear",1\nyo,anger,0\n')
    with pytest.raises(DataError, match=r"d.csv:2: column 'emotions' has 'joy,fear'.*--labels-column emotions"):
        read_dataset(path)
    data = read_dataset(path, labels_column="emotions")
    assert data.label_names == ["joy", "fear", "anger"]
    data = read_dataset(path, label_columns=("joy",))
    np.testing.assert_array_equal(data.labels, [[1], [0]])


def test_the_log_says_which_column_rule_applied(tmp_path, caplog):
    caplog.set_level("INFO", logger="toolkit.data")
    read_dataset(write(tmp_path / "a.csv", "text,tags\nhi,joy;fear\nyo,anger\n"))
    assert "labels from 'tags' read as a list of label names: its values are not 0/1" in caplog.text
    caplog.clear()
    read_dataset(write(tmp_path / "b.csv", "text,tags\nhi,1\nyo,0\n"))
    assert "labels from the 1 0/1 column(s) tags" in caplog.text
    caplog.clear()
    read_dataset(write(tmp_path / "c.csv", "text,tags\nhi,1\nyo,0\n"), labels_column="tags")
    assert "labels from the list column 'tags' (--labels-column)" in caplog.text


def test_one_bom_tolerant_reader_for_training_and_scoring(tmp_path):
    from toolkit.score_io import check_columns

    path = write(tmp_path / "bom.csv", "text,joy\nhi,1\nyo,0\n", encoding="utf-8-sig")
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"
    assert read_dataset(path).label_names == ["joy"]
    assert read_header(path, "csv") == ["text", "joy"]
    check_columns([path], "csv", "text", None)  # toolkit score used to refuse it: no column 'text' (it read '\ufefftext')
    jsonl = write(tmp_path / "bom.jsonl", '{"text": "hi", "joy": 1}\n', encoding="utf-8-sig")
    assert read_header(jsonl, "jsonl") == ["text", "joy"]
    check_columns([jsonl], "jsonl", "text", None)


# ---------------------------------------------------------------------------- pinned evidence


def _rows_file(tmp_path, n=60, name="d.csv"):
    return write(tmp_path / name, "text,joy,fear\n" + "".join(f"text {i},{i % 2},{(i // 2) % 2}\n" for i in range(n)))


def test_splits_record_file_hashes_and_row_fingerprints(tmp_path):
    path = _rows_file(tmp_path)
    splits = load_splits(DataConfig(path=path, val_fraction=0.2))
    spec = json.loads(json.dumps(splits.spec))  # what toolkit.json stores
    assert list(spec["files"]) == [str(path.resolve())] and len(spec["files"][str(path.resolve())]) == 64
    assert spec["fingerprints"]["validation"]["rows"] == 12 and spec["fingerprints"]["train"]["rows"] == 48
    assert spec["fingerprints"]["validation"] == fingerprint(splits.validation)
    assert spec["fingerprints"]["validation"]["rows_sha256"] != spec["fingerprints"]["train"]["rows_sha256"]
    # column order does not change the fingerprint, a changed label does
    assert fingerprint(align_labels(splits.validation, ["fear", "joy"])) == fingerprint(splits.validation)
    flipped = splits.validation.subset(np.arange(len(splits.validation)))
    flipped.labels[0, 0] = 1 - flipped.labels[0, 0]
    assert fingerprint(flipped) != fingerprint(splits.validation)


def test_a_shuffled_data_file_is_refused_as_the_recorded_split(tmp_path):
    path = _rows_file(tmp_path)
    spec = json.loads(json.dumps(load_splits(DataConfig(path=path, val_fraction=0.2)).spec))
    assert load_validation_split(spec, ["joy", "fear"]).texts  # unchanged: rebuilt
    lines = path.read_text().splitlines()
    rng = np.random.default_rng(0)
    write(path, "\n".join([lines[0]] + [lines[1:][i] for i in rng.permutation(len(lines) - 1)]) + "\n")
    with pytest.raises(DataError, match=r"d.csv: changed since training \(sha256 [0-9a-f]{12} recorded, now [0-9a-f]{12}\), "
                                        r"so the recorded validation split would hold other texts; pass the data "
                                        r"explicitly with --data PATH"):
        load_validation_split(spec, ["joy", "fear"])
    with pytest.raises(DataError, match="changed since training"):
        load_eval_data(None, "dev", spec, ["joy", "fear"])
    path.unlink()
    with pytest.raises(DataError, match=r"d.csv: recorded at training but missing here.*--data PATH"):
        load_validation_split(spec, ["joy", "fear"])


def test_a_rebuilt_split_that_differs_from_its_fingerprint_is_refused(tmp_path):
    path = _rows_file(tmp_path)
    spec = json.loads(json.dumps(load_splits(DataConfig(path=path, val_fraction=0.2)).spec))
    spec["seed"] = 7  # the same file, split another way (e.g. another version of the split code)
    with pytest.raises(DataError, match=r"the rebuilt validation split differs from training's \(12 rows, sha256 "
                                        r"[0-9a-f]{12} recorded, now 12 rows, sha256 [0-9a-f]{12}\); pass the data"):
        load_validation_split(spec, ["joy", "fear"])


def test_a_split_directory_pins_each_of_its_files(goemotions_like):
    spec = json.loads(json.dumps(load_splits(DataConfig(path=goemotions_like)).spec))
    assert {Path(f).name for f in spec["files"]} == {"train.tsv", "dev.tsv", "emotions.txt"}
    write(goemotions_like / "emotions.txt", "joy\nanger\nsurprise\nfear\n")
    with pytest.raises(DataError, match=r"emotions.txt: changed since training"):
        load_validation_split(spec, ["joy", "anger", "surprise"])


def test_search_and_certify_parts_are_disjoint_deterministic_and_order_free(tmp_path):
    splits = load_splits(DataConfig(path=_rows_file(tmp_path, n=400), val_fraction=0.5))
    search, certify = split_search_certify(splits.validation)
    assert len(search) + len(certify) == len(splits.validation)
    assert not set(search.texts) & set(certify.texts)
    assert 70 <= len(certify) <= 130  # about half of 200
    reversed_ = splits.validation.subset(np.arange(len(splits.validation))[::-1])
    assert set(split_search_certify(reversed_)[1].texts) == set(certify.texts)
    again = load_splits(DataConfig(path=tmp_path / "d.csv", val_fraction=0.5))
    assert split_search_certify(again.validation)[1].texts == certify.texts
