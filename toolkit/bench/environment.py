"""Where the numbers were taken: machine, package versions, and CPU contention from /proc (Linux).

Nothing here imports torch: a `--no-baseline` run stays torch-free, and torch's CUDA version is
recorded only when the run itself imported torch.
"""
from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from toolkit import artifacts
from toolkit.bench.results import MachineInfo

log = logging.getLogger(__name__)

BUSY_SAMPLE_S = 0.5  # how long to watch the machine before a run: enough to catch a running job, cheap per run
VERSIONED = ("toolkit", "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "onnxruntime-gpu",
             "tokenizers", "numpy", "matplotlib")


class OtherCpu:
    """CPU time other processes used during a block, as a share of the machine's capacity (Linux).

    /proc/stat counts every process's non-idle time; this process's own user+system time (all
    its threads) is subtracted, so what remains is the competition the numbers suffered from.
    `share` stays None where /proc/stat is unavailable.
    """

    share: Optional[float] = None

    def __enter__(self) -> "OtherCpu":
        self._start = proc_stat(), own_cpu_seconds()
        return self

    def __exit__(self, *exc) -> None:
        (start_stat, start_own), end_stat, end_own = self._start, proc_stat(), own_cpu_seconds()
        if start_stat is None or end_stat is None:
            return
        ticks = os.sysconf("SC_CLK_TCK")
        total = (end_stat[0] - start_stat[0]) / ticks
        busy = total - (end_stat[1] - start_stat[1]) / ticks
        if total > 0:
            self.share = round(min(1.0, max(0.0, busy - (end_own - start_own)) / total), 3)


def machine_info() -> MachineInfo:
    """CPU model, cores (logical and physical), memory, OS, and the GPU from nvidia-smi when present."""
    gpu = nvidia_smi()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        load = None
    return MachineInfo(cpu=cpu_model(), logical_cores=logical_cores(), physical_cores=physical_cores(),
                       memory_gb=memory_gb(), os=platform.platform(), python=platform.python_version(),
                       gpu=gpu.get("name"), gpu_driver=gpu.get("driver"), gpu_memory=gpu.get("memory"),
                       load_average=load, cpu_busy=cpu_busy())


def uptime() -> str:
    """`uptime`'s line (time up, users, load averages), which benchmarks record before and after a run."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def versions() -> dict:
    """Installed versions of what shapes the numbers, onnxruntime's providers, and torch's CUDA if torch ran."""
    import onnxruntime as ort

    found = artifacts.library_versions(names=VERSIONED)
    found["python"] = platform.python_version()
    found["onnxruntime_providers"] = ort.get_available_providers()
    torch = sys.modules.get("torch")  # only when this run imported it (baseline or preset build)
    if torch is not None:
        found["torch_cuda"] = torch.version.cuda
    return found


def physical_cores() -> int:
    from toolkit.runtime import physical_cores as cores

    return cores()


def logical_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux: platform's answer below
    return platform.processor() or platform.machine() or "unknown CPU"


def memory_gb() -> Optional[float]:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 ** 2, 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_busy(seconds: float = BUSY_SAMPLE_S) -> Optional[float]:
    """Share of the machine's CPU time other processes used over the next `seconds`; None off Linux."""
    with OtherCpu() as other:
        time.sleep(seconds)
    return other.share


def proc_stat() -> Optional[tuple[int, int]]:
    """(total, idle + iowait) clock ticks of all CPUs since boot, from /proc/stat; None off Linux."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    return sum(values[:8]), values[3] + values[4]  # user..steal; guest time is already inside user


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def nvidia_smi() -> dict:
    """GPU name, driver and memory from nvidia-smi; {} when there is no nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {}
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("nvidia-smi failed (%s); the GPU is not recorded", e)
        return {}
    gpus = [[c.strip() for c in line.split(",")] for line in out.strip().splitlines() if line.strip()]
    if not gpus or len(gpus[0]) < 3:
        return {}
    return {"name": " + ".join(g[0] for g in gpus), "driver": gpus[0][1], "memory": gpus[0][2]}
