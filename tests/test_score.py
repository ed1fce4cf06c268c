"""toolkit score: JSONL/CSV/Parquet in and out, local and Ray Data engines agree row by row."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from toolkit.cli import cli
from toolkit.config import ScoreConfig
from toolkit.demo_corpus import generate_demo_corpus
from toolkit.errors import DataError, ToolkitError
from toolkit.runtime import EmotionClassifier
from toolkit.score import score_files

pa = pytest.importorskip("pyarrow", reason="toolkit[serve] (pyarrow) is not installed")
import pyarrow.parquet as pq  # noqa: E402

N = 5000


@pytest.fixture(scope="module")
def clf(tiny_export_session):
    return EmotionClassifier.load(tiny_export_session, variant="fp32", provider="cpu")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """5,000 texts with string ids, as JSONL and as Parquet (two files, to cross a file boundary)."""
    texts, _, _ = generate_demo_corpus(n=N, seed=3)
    ids = [f"row-{i:05d}" for i in range(N)]
    root = tmp_path_factory.mktemp("score")
    with open(root / "texts.jsonl", "w", encoding="utf-8") as fh:
        for i, t in zip(ids, texts):
            fh.write(json.dumps({"id": i, "text": t, "other": 1}, ensure_ascii=False) + "\n")
    (root / "parquet").mkdir()
    for part, rows in enumerate([slice(0, 3000), slice(3000, N)]):
        pq.write_table(pa.table({"id": ids[rows], "text": texts[rows]}), root / "parquet" / f"part-{part}.parquet")
    return root, texts, ids


def _cfg(tmp_path, input_path, output, **kw):
    return ScoreConfig(export=kw.pop("export"), input=str(input_path), output=tmp_path / output, variant="fp32",
                       provider="cpu", **kw)


def _read_jsonl(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_local_jsonl_keeps_ids_and_order_and_equals_the_runtime(corpus, clf, tiny_export_session, tmp_path):
    root, texts, ids = corpus
    result = score_files(_cfg(tmp_path, root / "texts.jsonl", "out.jsonl", export=tiny_export_session,
                              id_column="id", batch_size=300))
    assert (result.rows, result.errors, result.variant) == (N, 0, "fp32")
    rows = _read_jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in rows] == ids
    assert list(rows[0]) == ["id", "labels", *clf.labels, "variant", "error"]
    scores = np.array([[r[label] for label in clf.labels] for r in rows], dtype=np.float32)
    np.testing.assert_array_equal(scores, clf.predict_proba(texts))
    assert [r["labels"] for r in rows[:50]] == [p.labels for p in clf.predict(texts[:50])]
    assert os.listdir(tmp_path) == ["out.jsonl"]  # no temporary file left beside it


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="toolkit[serve] (ray) is not installed")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_engine_equals_local_on_jsonl_and_parquet(corpus, tiny_export_session, tmp_path, local_ray):
    root, texts, ids = corpus
    for name, source in [("jsonl", root / "texts.jsonl"), ("parquet", root / "parquet" / "*.parquet")]:
        outputs = {}
        for engine in ("local", "ray"):
            out = f"{name}-{engine}.parquet"
            result = score_files(_cfg(tmp_path, source, out, export=tiny_export_session, id_column="id",
                                      engine=engine, batch_size=500))
            assert (result.rows, result.errors) == (N, 0)
            outputs[engine] = pq.read_table(tmp_path / out)
        assert outputs["ray"].equals(outputs["local"]), name
        assert outputs["ray"].column("id").to_pylist() == ids


def test_ray_engine_numbers_rows_and_writes_the_same_jsonl(corpus, tiny_export_session, tmp_path, local_ray):
    root, _, _ = corpus
    for engine in ("local", "ray"):
        score_files(_cfg(tmp_path, root / "texts.jsonl", f"{engine}.jsonl", export=tiny_export_session, engine=engine))
    local_bytes = (tmp_path / "local.jsonl").read_bytes()
    assert (tmp_path / "ray.jsonl").read_bytes() == local_bytes
    assert [r["id"] for r in _read_jsonl(tmp_path / "ray.jsonl")] == list(range(N))


BAD_ROWS = [
    ('{"id": "a", "text": "I love this"}', None),
    ('{"id": "b", "text": null}', "text is missing"),
    ('{"id": "c", "text": 42}', "text is int, expected a string"),
    ('{"id": "d"}', "text is missing"),
    ('{not json', "line is not valid JSON"),
    ('[1, 2]', "line is a JSON list, expected an object"),
    ('{"id": "e", "text": ""}', None),
]


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_bad_rows_get_an_error_and_the_run_goes_on(engine, clf, tiny_export_session, tmp_path, request):
    if engine == "ray":
        request.getfixturevalue("local_ray")
    (tmp_path / "in.jsonl").write_text("\n".join(line for line, _ in BAD_ROWS) + "\n\n", encoding="utf-8")
    result = score_files(_cfg(tmp_path, tmp_path / "in.jsonl", "out.jsonl", export=tiny_export_session,
                              id_column="id", engine=engine))
    assert (result.rows, result.errors) == (7, 5)
    rows = _read_jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in rows] == ["a", "b", "c", "d", None, None, "e"]
    good = {"a": "I love this", "e": ""}
    for row, (_, error) in zip(rows, BAD_ROWS):
        if error is None:
            assert row["error"] is None
            assert [row[label] for label in clf.labels] == clf.predict_proba([good[row["id"]]])[0].tolist()
            assert row["labels"] == clf.predict([good[row["id"]]])[0].labels
        else:
            assert row["error"].startswith(error) and row["labels"] is None and row["anger"] is None


def test_csv_in_and_out(tiny_export_session, clf, tmp_path):
    (tmp_path / "in.csv").write_text('key,body\n7,"I love it, really"\n8,"two\nlines"\n9,\n', encoding="utf-8")
    score_files(ScoreConfig(export=tiny_export_session, input=str(tmp_path / "in.csv"), output=tmp_path / "o.csv",
                            variant="fp32", provider="cpu", text_column="body", id_column="key"))
    import csv

    with open(tmp_path / "o.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["id", "labels", *clf.labels, "variant", "error"]  # the id column is "id", whatever its input name
    assert [r["id"] for r in rows] == ["7", "8", "9"]
    want = clf.predict_proba(["I love it, really", "two\nlines", ""])  # an empty cell is the text ""
    got = np.array([[float(r[label]) for label in clf.labels] for r in rows], dtype=np.float32)
    np.testing.assert_array_equal(got, want)
    assert all(r["error"] == "" and r["variant"] == "fp32" for r in rows)


def test_errors_are_one_line_and_leave_no_output(corpus, tiny_export_session, tmp_path):
    root, _, _ = corpus
    runner = CliRunner()
    base = ["score", "--export", str(tiny_export_session), "--variant", "fp32", "--provider", "cpu"]
    res = runner.invoke(cli, [*base, "--input", str(root / "texts.jsonl"), "--output", str(tmp_path / "o.jsonl"),
                              "--text-column", "body"])
    assert res.exit_code == 2
    assert "no column 'body'; it has 'id', 'text', 'other'" in res.output
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    res = runner.invoke(cli, [*base, "--input", str(tmp_path / "bad.parquet"), "--output", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 2 and "bad.parquet: cannot read it as parquet" in res.output
    res = runner.invoke(cli, [*base, "--input", str(tmp_path / "nothing-*.jsonl"), "--output", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 2 and "no such file" in res.output
    assert sorted(os.listdir(tmp_path)) == ["bad.parquet"]


def test_existing_output_needs_force_and_a_failed_run_keeps_it(corpus, tiny_export_session, tmp_path, monkeypatch):
    root, _, _ = corpus
    out = tmp_path / "o.jsonl"
    out.write_text("previous\n")
    cfg = _cfg(tmp_path, root / "texts.jsonl", "o.jsonl", export=tiny_export_session)
    with pytest.raises(ToolkitError, match="already exists; pass --force"):
        score_files(cfg)
    calls = []

    def failing(clf, texts):
        calls.append(len(texts))
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the run
        return np.zeros((len(texts), len(clf.labels)), np.float32)

    monkeypatch.setattr("toolkit.score.score_chunk", failing)
    with pytest.raises(KeyboardInterrupt):
        score_files(ScoreConfig(**{**cfg.__dict__, "force": True}))
    assert out.read_text() == "previous\n" and os.listdir(tmp_path) == ["o.jsonl"]


def test_cli_score_prints_a_summary(corpus, tiny_export_session, tmp_path):
    root, _, _ = corpus
    res = CliRunner().invoke(cli, ["score", "--export", str(tiny_export_session), "--input", str(root / "texts.jsonl"),
                                   "--output", str(tmp_path / "o.parquet"), "--variant", "fp32", "--id-column", "id"])
    assert res.exit_code == 0, res.output
    assert f"scored {N} rows from 1 file(s) with fp32" in res.output and "0 row error(s)" in res.output
    assert pq.read_table(tmp_path / "o.parquet").num_rows == N


def test_help_of_serve_and_score():
    runner = CliRunner()
    res = runner.invoke(cli, ["serve", "--help"])
    assert res.exit_code == 0 and "usable cores // replicas" in res.output and "--address" in res.output
    assert "--max-batch-texts" in res.output and "--max-batch-size" not in res.output  # one name, one meaning
    res = runner.invoke(cli, ["score", "--help"])
    assert res.exit_code == 0 and "--engine [local|ray]" in res.output


def test_config_rejects_bad_values():
    with pytest.raises(ToolkitError, match="--address and --concurrency apply to --engine ray only"):
        ScoreConfig(input="x.jsonl", concurrency=2)
    with pytest.raises(DataError, match="unknown extension"):
        score_files(ScoreConfig(input=__file__, output=__file__ + ".jsonl"))


def test_local_ray_is_sized_by_the_cpu_limit_and_token_authenticated(monkeypatch):
    """score's own local Ray: num_cpus from the affinity and cgroup quota (plus one for Ray Data's reads),
    and never started without token auth."""
    ray = pytest.importorskip("ray", reason="toolkit[serve] (ray) is not installed")
    pytest.importorskip("ray.data")
    from toolkit import ray_cluster, score, session

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr(session, "cpu_quota", lambda: 1.0)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    assert score._connect_ray(None) is True
    assert calls == [{"num_cpus": 2, "include_dashboard": False}]
    monkeypatch.setattr(ray, "__version__", "2.58.0")  # before token auth by default
    with pytest.raises(ToolkitError, match=r"Ray 2\.58\.0 starts a local cluster without token authentication.*"
                                           r"ray\[serve,data\]>=2\.59"):
        score._connect_ray(None)
    assert len(calls) == 1
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # the user's explicit choice on an older Ray
    assert score._connect_ray(None) is True and len(calls) == 2
    assert score._connect_ray("ray://head:10001") is True and calls[-1] == {"address": "ray://head:10001"}
    assert ray_cluster.auth_mode() == "token"
