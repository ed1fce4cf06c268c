"""examples/serve.py: the ten-line FastAPI embedding answers real HTTP requests with the runtime's scores."""
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from http_client import request_json

from toolkit.runtime import EmotionClassifier

pytest.importorskip("fastapi", reason="the example needs fastapi (toolkit[serve])")
pytest.importorskip("uvicorn", reason="the example needs uvicorn (toolkit[serve])")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TEXTS = ["I'm so happy about the weekend trip!", "I can't stand the noise", "", "今天我很开心 😀"]


@pytest.fixture(scope="module")
def url(tiny_export_session):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TOOLKIT_EXPORT": str(tiny_export_session)}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLES), "serve:app",
                             "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:  # uvicorn logs where it listens once the app has loaded
            if re.search(rf"Uvicorn running on http://127\.0\.0\.1:{port}", line):
                break
        else:
            pytest.fail("the example did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _post(url, raw: bytes):
    return request_json(url, "/predict", raw=raw, timeout=30)


def test_example_equals_the_runtime(url, tiny_export_session):
    clf = EmotionClassifier.load(tiny_export_session)  # the example's defaults: variant and provider auto
    status, body = _post(url, json.dumps({"texts": TEXTS}).encode())
    assert status == 200
    want = clf.predict(TEXTS)  # the same texts in one call: the same batches, so equal even for int8
    assert [p["labels"] for p in body] == [p.labels for p in want]
    assert [p["scores"] for p in body] == [p.scores for p in want]


def test_example_rejects_a_wrong_shape(url):
    status, body = _post(url, b'{"texts": ["a", 3]}')
    assert status == 422 and body["detail"][0]["loc"] == ["body", "texts", 1]
    code = EXAMPLES.joinpath("serve.py").read_text().split('"""', 2)[2]
    assert len([line for line in code.splitlines() if line.strip()]) <= 12  # it stays a ten-line example
