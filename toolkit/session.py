"""onnxruntime sessions: providers by name, and the one session factory that runtime, validate and bench share.

`open_session` never falls back to CPU silently: a GPU provider that is named and does not attach
is a ProviderError (onnxruntime itself only logs it). numpy + onnxruntime only, like toolkit.runtime,
which re-exports these names.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from toolkit.config import Provider
from toolkit.errors import ArtifactError, ProviderError

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
# What each short name (toolkit.config.Provider) asks onnxruntime for, best first, always ending
# with CPU for the ops a GPU provider does not cover.
PROVIDER_CHAINS = {Provider.CPU.value: [CPU], Provider.CUDA.value: [CUDA, CPU],
                   Provider.TENSORRT.value: [TENSORRT, CUDA, CPU]}
SHORT_NAMES = {CPU: Provider.CPU.value, CUDA: Provider.CUDA.value, TENSORRT: Provider.TENSORRT.value}
GPU_HINT = "pip install onnxruntime-gpu (or `pip install toolkit[gpu]`) in place of onnxruntime, with a matching CUDA"
CUDA_DEVICE_ID = 0  # one GPU per process; pin another one with CUDA_VISIBLE_DEVICES


def resolve_providers(provider: str) -> list[str]:
    """The onnxruntime execution providers to request, best first.

    Args:
        provider: "auto" (CUDA when this onnxruntime has it, else CPU), "cpu", "cuda" or "tensorrt".

    Returns:
        Provider names, always ending with the CPU provider for ops a GPU provider does not cover.

    Raises:
        ProviderError: unknown name, or a GPU provider this onnxruntime build lacks.
    """
    name = str(provider).strip().lower()
    available = ort.get_available_providers()
    if name == "auto":
        return list(PROVIDER_CHAINS["cuda" if CUDA in available else "cpu"])
    if name not in PROVIDER_CHAINS:
        raise ProviderError(f"provider {provider!r} is not supported; use one of auto, {', '.join(PROVIDER_CHAINS)}")
    missing = [p for p in PROVIDER_CHAINS[name] if p not in available]
    if missing:
        raise ProviderError(
            f"provider {name!r} needs {', '.join(missing)}, but onnxruntime {ort.__version__} offers only "
            f"{', '.join(available)}; {GPU_HINT}"
        )
    return list(PROVIDER_CHAINS[name])


def open_session(model_path, provider: str = "auto", threads: int | None = None) -> ort.InferenceSession:
    """An onnxruntime session on the requested provider, or an error: never a silent CPU fallback.

    Args:
        model_path: an `.onnx` file.
        provider: see `resolve_providers`. With "auto", a CUDA provider that onnxruntime lists
            but cannot start (no GPU, CUDA/cuDNN libraries missing) gives a CPU session and a
            logged warning; a provider named explicitly gives ProviderError instead.
        threads: intra-op threads; None means `usable_cores()` (affinity and cgroup CPU quota respected).

    Returns:
        The session; `session.get_providers()[0]` is the provider actually used.

    Raises:
        ProviderError: the provider is unknown or missing, or a requested GPU provider did not attach.
        ArtifactError: the file is missing or onnxruntime cannot load it.
    """
    model_path = Path(model_path)
    providers = resolve_providers(provider)
    if not model_path.is_file():
        raise ArtifactError(f"{model_path}: ONNX model not found; re-run `toolkit export --force`")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads) if threads else usable_cores()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = _create_session(model_path, options, providers)
    except ProviderError as e:
        if str(provider).strip().lower() != "auto":
            raise
        log.warning("%s; provider auto continues on CPUExecutionProvider", e)
        return _create_session(model_path, options, [CPU])
    log.debug("%s: session on %s, %d intra-op threads", model_path.name, session.get_providers()[0],
              options.intra_op_num_threads)
    return session


def usable_cores() -> int:
    """The default thread count: physical cores this process may run on, capped by its cgroup CPU quota.

    A container limited to 2 CPUs on a 64-core node still sees 64 cores in sysfs; 64 intra-op
    threads there are throttled by the kernel's CFS quota and wait on each other.
    """
    quota = cpu_quota()
    cores = physical_cores()
    return cores if quota is None else max(1, min(cores, int(quota)))


def cpu_limit() -> int:
    """Logical CPUs this process may use: its affinity mask, capped by its cgroup CPU quota (for Ray's num_cpus)."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        allowed = os.cpu_count() or 1
    quota = cpu_quota()
    return allowed if quota is None else max(1, min(allowed, int(quota)))


def cpu_quota(root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs' worth of time this process's cgroup may use (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`), or None.

    The tightest limit of the process's cgroup and its ancestors counts. Neither onnxruntime nor
    `os.cpu_count()` reads it (Python 3.13's `os.process_cpu_count()` reads only the affinity mask).
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None  # not Linux, or no cgroups
    limits = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2, unified hierarchy
            limits += [_v2_quota(d) for d in _cgroup_dirs(root, root / "unified", path)]
        elif "cpu" in controllers.split(","):  # cgroup v1, the cpu controller's hierarchy
            mounts = [root / controllers, root / "cpu", root / "cpu,cpuacct"]
            mount = next((m for m in mounts if m.is_dir()), None)
            if mount is not None:
                limits += [_v1_quota(d) for d in _cgroup_dirs(mount, None, path)]
    limits = [q for q in limits if q is not None]
    return min(limits) if limits else None


def physical_cores() -> int:
    """Physical cores this process may run on: hyper-threads slow ORT's intra-op pool down, not up."""
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # macOS, Windows
        allowed = set(range(os.cpu_count() or 1))
    cores = set()
    for cpu in allowed:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text(), (topology / "core_id").read_text()))
        except OSError:
            return max(1, len(allowed))  # no sysfs topology: count logical CPUs
    return max(1, len(cores))


def input_dtypes(session: ort.InferenceSession) -> dict:
    """{input name: numpy dtype} for every input the graph declares (feed only those)."""
    return {i.name: _numpy_dtype(i.type) for i in session.get_inputs()}


def tensorrt_cache_dir() -> Path:
    """Where TensorRT engines are cached: $TOOLKIT_TRT_CACHE, else ~/.cache/toolkit/tensorrt."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    cache = Path(os.environ.get("TOOLKIT_TRT_CACHE") or Path(base) / "toolkit" / "tensorrt")
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ProviderError(f"{cache}: cannot create the TensorRT engine cache ({e.strerror}); "
                            "set TOOLKIT_TRT_CACHE to a writable directory") from e
    return cache



# ---------------------------------------------------------------------------- helpers


def _cgroup_dirs(mount: Path, fallback: Path | None, path: str) -> list[Path]:
    """The cgroup's directory and its ancestors up to the mount; a cgroup namespace or a
    non-namespaced container (whose /proc/self/cgroup names a host path) shows only the mount."""
    for base in (mount, fallback):
        if base is None or not base.is_dir():
            continue
        here = base / path.strip("/")
        if not here.is_dir():
            return [base]
        dirs = [here]
        while here != base:
            here = here.parent
            dirs.append(here)
        return dirs
    return []


def _v2_quota(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _v1_quota(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def _create_session(model_path: Path, options, providers: list[str]) -> ort.InferenceSession:
    try:
        session = ort.InferenceSession(str(model_path), sess_options=options,
                                       providers=[_with_options(p) for p in providers])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/RuntimeError types
        if providers[0] != CPU and _is_provider_failure(e):
            raise ProviderError(f"{model_path}: {providers[0]} failed to start ({e}); {GPU_HINT}") from e
        raise ArtifactError(f"{model_path}: onnxruntime cannot load the model ({e}); "
                            "re-run `toolkit export --force`") from e
    attached = session.get_providers()
    # onnxruntime only logs an error when CUDA cannot load its libraries and runs on CPU instead
    # (https://github.com/microsoft/onnxruntime/issues/23372): compare what attached with what was asked.
    if providers[0] != CPU and providers[0] not in attached:
        raise ProviderError(
            f"{model_path}: {providers[0]} was requested but onnxruntime attached only {', '.join(attached)} "
            f"(no GPU visible, or CUDA/cuDNN libraries not found); {GPU_HINT}, or use provider 'cpu'"
        )
    return session


def _with_options(provider: str):
    if provider == CUDA:
        # TF32 matmuls (onnxruntime's CUDA default on Ampere and newer) moved fp32 probabilities by
        # 5e-4 on an H200, 500x the fp32 parity limit; fp32 must mean fp32. fp16 is unaffected.
        return provider, {"device_id": CUDA_DEVICE_ID, "use_tf32": 0}
    if provider == TENSORRT:
        # Building TensorRT engines takes minutes per input shape: keep them across processes.
        # Precision stays the variant's own (no trt_fp16_enable), so fp32 stays fp32.
        cache = tensorrt_cache_dir()
        return provider, {"device_id": CUDA_DEVICE_ID, "trt_engine_cache_enable": True,
                          "trt_engine_cache_path": str(cache), "trt_timing_cache_enable": True,
                          "trt_timing_cache_path": str(cache)}
    return provider


def _is_provider_failure(error: Exception) -> bool:
    text = str(error).lower()
    return any(word in text for word in ("cuda", "cudnn", "tensorrt", "provider", "libcublas", "gpu"))


def _numpy_dtype(onnx_type: str):
    return {"tensor(int64)": np.int64, "tensor(int32)": np.int32}.get(onnx_type, np.int64)
