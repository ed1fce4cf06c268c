"""examples/serve.py: real HTTP requests against the service on 127.0.0.1, answers equal the runtime's."""
from __future__ import annotations

import http.client
import importlib.util
import json
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from concurrency import run_concurrently

from toolkit.runtime import EmotionClassifier

SERVE = Path(__file__).resolve().parents[1] / "examples" / "serve.py"
MAX_TEXTS = 16
MAX_BODY = 8192
TEXTS = ["I'm so happy about the weekend trip!", "I can't stand the noise", "", "今天我很开心 😀", "wow " * 300]


@pytest.fixture(scope="module")
def serve_module():
    spec = importlib.util.spec_from_file_location("toolkit_example_serve", SERVE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def clf(tiny_export_session):
    return EmotionClassifier.load(tiny_export_session, provider="cpu")


@pytest.fixture(scope="module")
def url(serve_module, clf):
    server = serve_module.make_server(clf, "127.0.0.1", 0, max_body_bytes=MAX_BODY, max_texts=MAX_TEXTS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _request(url, path, body=None, method=None, headers=None, raw: bytes | None = None):
    """(status, headers, JSON body) for one request; 4xx/5xx are answers, not exceptions."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read() or b"null")


def test_health_reports_the_model(url, clf):
    status, headers, body = _request(url, "/health")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert body["status"] == "ok"
    assert (body["variant"], body["provider"], body["labels"]) == (clf.variant, clf.provider, clf.labels)
    assert body["thresholds"] == clf.thresholds.tolist()
    assert (body["max_texts"], body["max_body_bytes"]) == (MAX_TEXTS, MAX_BODY)


def test_predict_equals_the_runtime(url, clf):
    status, _, body = _request(url, "/predict", {"texts": TEXTS})
    assert status == 200
    assert (body["variant"], body["provider"], body["threshold"]) == (clf.variant, clf.provider, None)
    expected = clf.predict(TEXTS)
    assert len(body["predictions"]) == len(TEXTS)
    for got, want in zip(body["predictions"], expected):
        assert got["text"] == want.text
        assert got["labels"] == want.labels
        assert list(got["scores"]) == clf.labels
        assert got["scores"] == want.scores  # JSON carries a float's shortest repr: exact round trip


def test_lone_surrogate_escape_is_scored_and_echoed(url, clf):
    status, _, body = _request(url, "/predict", raw=b'{"texts": ["ok \\ud83d"]}', method="POST")
    assert status == 200
    assert body["predictions"][0]["text"] == "ok \ud83d"
    assert body["predictions"][0]["scores"] == clf.predict(["ok \ud83d"])[0].scores


def test_predict_threshold_and_empty_list(url, clf):
    status, _, body = _request(url, "/predict", {"texts": TEXTS[:2], "threshold": 0})
    assert status == 200 and body["threshold"] == 0.0
    assert all(p["labels"] == clf.labels for p in body["predictions"])
    status, _, body = _request(url, "/predict", {"texts": []})
    assert status == 200 and body["predictions"] == []


@pytest.mark.parametrize("raw, status, match", [
    (b'{"texts": [', 400, r"body is not valid JSON: Expecting value at line 1 column 12"),
    (b"\xff\xfe{}", 400, r"body is not UTF-8"),
    (b"", 400, r"body is not valid JSON"),
    (b'["a"]', 422, r'body must be a JSON object like \{"texts": \["..."\]\}, got array'),
    (b'{"text": ["a"]}', 422, r"unknown field\(s\) \['text'\]; allowed: \['texts', 'threshold'\]"),
    (b'{}', 422, r'missing field "texts"'),
    (b'{"texts": "a"}', 422, r'"texts" must be a list of strings, got string'),
    (b'{"texts": ["a", null]}', 422, r"texts\[1\] must be a string, got null"),
    (b'{"texts": ["a", 3]}', 422, r"texts\[1\] must be a string, got number"),
    (b'{"texts": ["a"], "threshold": 2}', 422, r'"threshold" must be a number in \[0, 1\], got 2'),
    (b'{"texts": ["a"], "threshold": NaN}', 422, r'"threshold" must be a number in \[0, 1\], got nan'),
    (b'{"texts": ["a"], "threshold": "0.5"}', 422, r'"threshold" must be a number in \[0, 1\]'),
])
def test_bad_requests_get_a_clear_json_error(url, raw, status, match):
    got, _, body = _request(url, "/predict", raw=raw, method="POST")
    assert got == status
    assert re.search(match, body["error"]), body


def test_limits(url):
    status, headers, body = _request(url, "/predict", {"texts": ["x"] * (MAX_TEXTS + 1)})
    assert status == 413
    assert body["error"] == f"{MAX_TEXTS + 1} texts is over the limit of {MAX_TEXTS} per request; split them"
    big = {"texts": ["a" * (MAX_BODY + 10)]}
    status, headers, body = _request(url, "/predict", big)
    assert status == 413 and "is over the limit of 8192" in body["error"]
    assert headers["Connection"] == "close"  # the oversized body was never read


def test_routes_methods_and_media_type(url):
    status, _, body = _request(url, "/nope")
    assert status == 404 and "no route /nope; use GET /health or POST /predict" in body["error"]
    status, headers, body = _request(url, "/predict")
    assert status == 405 and headers["Allow"] == "POST" and body["error"] == "/predict accepts POST only"
    status, headers, _ = _request(url, "/health", {"texts": []})
    assert status == 405 and headers["Allow"] == "GET"
    assert headers["Connection"] == "close"  # the request body was not read, so the connection ends
    status, _, _ = _request(url, "/health", method="DELETE")
    assert status == 405
    status, _, body = _request(url, "/predict", raw=b"hello", headers={"Content-Type": "text/plain"})
    assert status == 415 and "send application/json" in body["error"]
    status, _, body = _request(url, "/health", method="HEAD")
    assert status == 200 and body is None


def test_length_required_and_keep_alive(url):
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        for _ in range(2):  # two requests on one connection: HTTP/1.1 keep-alive
            conn.request("POST", "/predict", body=json.dumps({"texts": ["hi"]}),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            assert resp.status == 200 and json.loads(resp.read())["predictions"][0]["text"] == "hi"
        conn.putrequest("POST", "/predict")
        conn.putheader("Content-Type", "application/json")
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 411
        assert "Content-Length" in json.loads(resp.read())["error"]
    finally:
        conn.close()


def test_concurrent_requests(url, clf):
    results = []

    def worker(k):
        for i in range(6):
            texts = [TEXTS[(k + i + j) % len(TEXTS)] for j in range(1 + (k + i) % 3)]
            status, _, body = _request(url, "/predict", {"texts": texts})
            results.append((status, texts, body))

    run_concurrently(worker, n_threads=8)
    assert len(results) == 48
    for status, texts, body in results:
        assert status == 200
        # the same texts in the same request give the same batches, hence identical scores
        # (int8 quantizes activations per batch, so another grouping may differ, up to ~0.1 here)
        assert [p["scores"] for p in body["predictions"]] == [p.scores for p in clf.predict(texts)]


def test_runs_as_a_script(tiny_export_session, tmp_path):
    proc = subprocess.Popen([sys.executable, str(SERVE), "--export", str(tiny_export_session), "--port", "0",
                             "--provider", "cpu", "--variant", "fp32"],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        match = None
        for line in proc.stderr:  # the log says where it listens
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+) \(variant fp32 on cpu\)", line)
            if match:
                break
        assert match, "the server did not start"
        status, _, body = _request(match.group(1), "/health")
        assert status == 200 and body["variant"] == "fp32"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0

    proc = subprocess.run([sys.executable, str(SERVE), "--export", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "export directory not found" in proc.stderr
