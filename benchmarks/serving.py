"""Serving and batch-scoring benchmark: `toolkit serve` (Ray Serve) vs the old stdlib server vs the
runtime in process, and `toolkit score` local vs ray. See benchmarks/serving.md.

    python benchmarks/serving.py --export /work/runs/ray/export --out benchmarks/serving_results/cpu-2core.json

Every server runs in its own process on 127.0.0.1 and is measured by the same asyncio/aiohttp
client in this process (single-text requests of real GoEmotions texts, keep-alive connections):
2 s of warm-up, then `--seconds` per concurrency level. The client shares the cores with the
servers, as a sidecar would; its cost is the same for every server.
"""
import argparse
import asyncio
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# the last commit whose examples/serve.py is the stdlib ThreadingHTTPServer service
STDLIB_SERVER_COMMIT = "40b2acb"
GOEMOTIONS = ROOT.parent / "shared" / "data" / "goemotions"


def main() -> None:
    args = _args()
    texts = [line.split("\t", 1)[0] for line in (GOEMOTIONS / "dev.tsv").read_text(encoding="utf-8").splitlines()]
    result = {"environment": environment(), "command": " ".join([sys.executable, *sys.argv]),
              "export": str(args.export), "variant": args.variant, "seconds_per_level": args.seconds,
              "concurrency": args.concurrency, "serve": [], "score": []}
    if "serve" in args.parts:
        result["in_process"] = in_process(args.export, args.variant, texts, args.seconds)
        for name in args.servers:
            result["serve"].append(bench_server(name, args, texts))
            _save(args.out, result)
    if "score" in args.parts:
        result["score"] = bench_score(args)
    result["environment"]["loadavg_end"] = os.getloadavg()
    _save(args.out, result)
    print(json.dumps(summary(result), indent=1))


# ---------------------------------------------------------------------------- in process


def in_process(export: Path, variant: str, texts: list[str], seconds: float) -> dict:
    """The runtime without HTTP: one text per call (sequential), and 400 texts per call."""
    from toolkit.runtime import EmotionClassifier

    clf = EmotionClassifier.load(export, variant=variant, provider="cpu")
    for t in texts[:50]:
        clf.predict_proba([t])
    lat, i, end = [], 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        clf.predict_proba([texts[i % len(texts)]])
        lat.append(time.perf_counter() - t0)
        i += 1
    batch = texts[:400]
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        clf.predict_proba(batch)
        runs.append(time.perf_counter() - t0)
    return {"variant": clf.variant, "threads": clf.session.get_session_options().intra_op_num_threads,
            "one_text_per_call": {"texts_per_s": len(lat) / sum(lat), **_percentiles(lat)},
            "400_texts_per_call": {"texts_per_s": 400 / float(np.median(runs)), "median_s": float(np.median(runs))}}


# ---------------------------------------------------------------------------- servers


def bench_server(name: str, args, texts: list[str]) -> dict:
    """Start one server, load it at each concurrency, stop it."""
    port = 18000 + len(name) * 7 + hash(name) % 500
    proc, url, started_s = start_server(name, args, port)
    record = {"server": name, "startup_s": started_s, "levels": []}
    try:
        is_ray = name.startswith("serve")
        for c in args.concurrency:
            before = replica_stats(url) if is_ray else None
            load_before = os.getloadavg()[0]
            level = asyncio.run(load(url, c, args.seconds, texts))
            level["loadavg_1m_before"] = load_before
            if is_ray:
                level["server_side"] = _stats_delta(before, replica_stats(url))
            record["levels"].append(level)
            print(f"{name} c={c}: {level['requests_per_s']:.0f} req/s p50 {level['p50_ms']:.1f} ms "
                  f"p99 {level['p99_ms']:.1f} ms failures {level['failures']}", file=sys.stderr)
        if is_ray:
            record["prometheus"] = prometheus_sample(url)
    finally:
        stop_server(proc)
    return record


def start_server(name: str, args, port: int):
    """(process, url, seconds until it answered) for 'stdlib' or 'serve-RxT[-waitW][-python|-haproxy]'."""
    if name == "stdlib":
        script = Path(tempfile.mkdtemp()) / "serve_stdlib.py"
        script.write_text(subprocess.run(["git", "-C", str(ROOT), "show", f"{STDLIB_SERVER_COMMIT}:examples/serve.py"],
                                         capture_output=True, text=True, check=True).stdout)
        cmd = [sys.executable, str(script), "--export", str(args.export), "--variant", args.variant,
               "--provider", "cpu", "--port", str(port)]
        ready = re.compile(r"listening on")
    else:
        m = re.fullmatch(r"serve-(\d+)x(\d+)(?:-wait([\d.]+))?(?:-(python|haproxy))?", name)
        replicas, threads, wait, ingress = m.group(1), m.group(2), m.group(3) or "5", m.group(4) or "auto"
        cmd = ["toolkit", "serve", "--export", str(args.export), "--variant", args.variant, "--provider", "cpu",
               "--replicas", replicas, "--threads-per-replica", threads, "--batch-wait-ms", wait, "--port", str(port),
               "--ingress", ingress]
        ready = re.compile(r"^serving ")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    _wait_for_line(proc, ready, timeout=300)
    return proc, f"http://127.0.0.1:{port}", time.perf_counter() - t0


def _wait_for_line(proc, pattern, timeout: float) -> None:
    found = threading.Event()

    def reader():
        for line in proc.stdout:
            if pattern.search(line):
                found.set()
        # keep draining so the server never blocks on a full pipe

    threading.Thread(target=reader, daemon=True).start()
    if not found.wait(timeout):
        proc.kill()
        raise RuntimeError(f"server did not start within {timeout} s: {proc.args}")


def stop_server(proc) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def load(url: str, concurrency: int, seconds: float, texts: list[str]) -> dict:
    """`concurrency` workers, each one request at a time on its own keep-alive connection."""
    import aiohttp

    counter = iter(range(10**9))
    lat, failures, kinds = [], 0, {}

    async def worker(session, deadline, record):
        nonlocal failures
        while time.perf_counter() < deadline:
            body = {"texts": [texts[next(counter) % len(texts)]]}
            t0 = time.perf_counter()
            try:
                async with session.post(url + "/predict", json=body) as resp:
                    await resp.read()
                    ok = resp.status == 200
                    kind = f"HTTP {resp.status}"
            except Exception as e:  # a failed request is a result here: counted by kind
                ok, kind = False, type(e).__name__
            if record:
                if ok:
                    lat.append(time.perf_counter() - t0)
                else:
                    failures += 1
                    kinds[kind] = kinds.get(kind, 0) + 1

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as session:
        for record, duration in ((False, 2.0), (True, seconds)):
            deadline = time.perf_counter() + duration
            t0 = time.perf_counter()
            await asyncio.gather(*(worker(session, deadline, record) for _ in range(concurrency)))
            elapsed = time.perf_counter() - t0
    return {"concurrency": concurrency, "requests": len(lat), "failures": failures, "failure_kinds": kinds,
            "seconds": elapsed, "requests_per_s": len(lat) / elapsed, **_percentiles(lat)}


def replica_stats(url: str, tries: int = 24) -> dict:
    """Each replica's /info counters, by replica id (the proxy spreads /info over the replicas)."""
    import urllib.request

    seen = {}
    for _ in range(tries):
        with urllib.request.urlopen(url + "/info", timeout=30) as resp:
            info = json.loads(resp.read())
        seen[info["replica"]["id"]] = info["replica"]
    return seen


def _stats_delta(before: dict, after: dict) -> dict:
    keys = ("requests", "batches", "batched_requests", "handler_ms", "model_ms")
    # /info calls themselves count as requests but never as batches
    total = {k: sum(after[r][k] - before.get(r, {}).get(k, 0) for r in after) for k in keys}
    batches = max(total["batches"], 1)
    return {"replicas_seen": len(after), **total,
            "mean_batch_requests": total["batched_requests"] / batches,
            "mean_model_ms_per_batch": total["model_ms"] / batches,
            "mean_handler_ms_per_request": total["handler_ms"] / max(total["batched_requests"], 1)}


def prometheus_sample(url: str) -> dict:
    """Ray's Prometheus endpoint holds Ray's metrics and the toolkit_* ones (after Ray's export delay)."""
    import urllib.request

    time.sleep(12)  # Ray exports metrics every few seconds
    with urllib.request.urlopen(url + "/info", timeout=30) as resp:
        metrics_url = json.loads(resp.read())["metrics"]
    with urllib.request.urlopen(metrics_url, timeout=30) as resp:
        text = resp.read().decode()
    lines = [line for line in text.splitlines() if line.startswith("ray_toolkit_")]
    return {"url": metrics_url, "ray_serve_series": sum(line.startswith("ray_serve_") for line in text.splitlines()),
            "toolkit_series": len(lines),
            "sample": [line for line in lines if re.match(r"ray_toolkit_(batch_size|requests)_(count|sum|total)", line)][:6]}


# ---------------------------------------------------------------------------- score


def bench_score(args) -> list[dict]:
    """`toolkit score` local vs ray on GoEmotions train (JSONL made under --work), interleaved."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    src = work / "goemotions-train.jsonl"
    if not src.exists():
        with open(src, "w", encoding="utf-8") as fh:
            for line in (GOEMOTIONS / "train.tsv").read_text(encoding="utf-8").splitlines():
                text, _, row_id = line.split("\t")
                fh.write(json.dumps({"id": row_id, "text": text}, ensure_ascii=False) + "\n")
    runs = []
    for rep in range(args.score_repeats):
        for engine in ("local", "ray"):
            out = work / f"scores-{engine}.parquet"
            cmd = ["toolkit", "score", "--export", str(args.export), "--variant", args.variant, "--input", str(src),
                   "--output", str(out), "--id-column", "id", "--engine", engine, "--force"]
            load_before = os.getloadavg()[0]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-2000:])
            m = re.search(r"scored (\d+) rows .* in ([\d.]+)s \((\d+) rows/s", proc.stdout)
            runs.append({"engine": engine, "repeat": rep, "rows": int(m.group(1)), "score_seconds": float(m.group(2)),
                         "rows_per_s": int(m.group(3)), "process_wall_s": wall, "loadavg_1m_before": load_before,
                         "command": " ".join(cmd)})
            print(f"score {engine}: {runs[-1]['rows_per_s']} rows/s, wall {wall:.1f}s", file=sys.stderr)
    runs.append({"agreement": _compare_scores(work / "scores-local.parquet", work / "scores-ray.parquet")})
    return runs


def _compare_scores(a: Path, b: Path) -> dict:
    import pyarrow.parquet as pq

    ta, tb = pq.read_table(a), pq.read_table(b)
    labels = [c for c in ta.column_names if c not in ("id", "labels", "variant", "error")]
    pa_, pb = (np.column_stack([t.column(c).to_numpy() for c in labels]) for t in (ta, tb))
    return {"same_ids_in_order": ta.column("id").equals(tb.column("id")), "max_abs_diff": float(np.abs(pa_ - pb).max()),
            "same_labels_share": float(np.mean([x == y for x, y in zip(ta.column("labels").to_pylist(),
                                                                        tb.column("labels").to_pylist())]))}


# ---------------------------------------------------------------------------- records


def environment() -> dict:
    from toolkit.runtime import physical_cores

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    versions = {}
    for name in ("toolkit", "ray", "onnxruntime", "numpy", "fastapi", "uvicorn", "pydantic", "pyarrow", "aiohttp",
                 "tokenizers"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpu": cpu,
            "logical_cpus": os.cpu_count(), "physical_cores": physical_cores(), "python": platform.python_version(),
            "versions": versions, "loadavg_start": os.getloadavg()}


def summary(result: dict) -> dict:
    rows = {}
    for server in result["serve"]:
        for lv in server["levels"]:
            rows[f"{server['server']} c={lv['concurrency']}"] = (
                round(lv["requests_per_s"]), round(lv["p50_ms"], 1), round(lv["p99_ms"], 1), lv["failures"],
                round(lv.get("server_side", {}).get("mean_batch_requests", 0), 2))
    return {"in_process": result.get("in_process"), "serve (req/s, p50, p99, failures, mean batch)": rows,
            "score": result["score"]}


def _percentiles(lat: list[float]) -> dict:
    if not lat:
        return {"p50_ms": float("nan"), "p90_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan")}
    ms = np.asarray(lat) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def _save(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")


def _args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export", type=Path, required=True)
    p.add_argument("--variant", default="auto")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--parts", default="serve,score", type=lambda s: s.split(","))
    p.add_argument("--servers", default="stdlib,serve-1x2-python,serve-1x2,serve-2x1", type=lambda s: s.split(","),
                   help="stdlib, serve-RxT (replicas x threads), serve-RxT-waitMS, serve-RxT-python (Ray's Python proxy)")
    p.add_argument("--concurrency", default="1,8,32,64", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per level, after 2 s warm-up")
    p.add_argument("--score-repeats", type=int, default=1)
    p.add_argument("--work", default="/work/runs/ray", help="where the GoEmotions JSONL and score outputs go")
    return p.parse_args()


if __name__ == "__main__":
    main()
