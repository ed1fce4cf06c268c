"""OpenVINO IR variants run behind the interface toolkit.runtime uses from an onnxruntime session.

`open_openvino(xml_path, ...)` compiles an IR (`.xml` + `.bin`) on OpenVINO's CPU plugin and returns an
`OpenVINOSession`: `get_inputs()`, `get_outputs()`, `get_providers()` and `run(output_names, feed)`,
the four calls `EmotionClassifier` makes on an onnxruntime `InferenceSession`. So tokenization,
length bucketing, thresholds and error messages stay the runtime's own, whichever backend runs.

Every setting that changes speed or numbers is set explicitly, never left to OpenVINO's defaults,
which depend on the CPU: on a CPU with AMX or AVX512-BF16, OpenVINO silently runs fp32 models in
bf16 unless `INFERENCE_PRECISION_HINT` says f32. Inputs keep dynamic batch and sequence axes.

Imports only numpy and openvino (no torch, no onnxruntime), like the rest of the runtime side.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Optional, Sequence

import numpy as np

from toolkit.errors import ArtifactError, ProviderError

log = logging.getLogger(__name__)

DEVICE = "CPU"  # OpenVINO's CPU plugin; its GPU/NPU plugins are not validated by toolkit
# What the runtime reports as its provider: the device this runs on, in onnxruntime's spelling, so
# that `EmotionClassifier.provider` reads "cpu" and the runtime's CPU checks hold for it.
ORT_DEVICE_NAME = "CPUExecutionProvider"
INSTALL_HINT = "pip install openvino (or `pip install toolkit[openvino]`)"
# LATENCY: one stream using every thread, best for one caller at a time (the runtime's predict and
# the CLI). THROUGHPUT: several streams of fewer threads each, best when many threads call at once
# (a Ray replica with concurrent batches); one synchronous call then uses only one stream's threads.
HINTS = ("LATENCY", "THROUGHPUT")
DEFAULT_HINT = "LATENCY"
HINT_ENV = "TOOLKIT_OPENVINO_HINT"  # THROUGHPUT for a process serving many concurrent calls
PRECISIONS = ("f32", "bf16")  # INFERENCE_PRECISION_HINT values toolkit uses (f16 is for GPUs)
_OV_TYPES = {"i64": "tensor(int64)", "i32": "tensor(int32)", "f32": "tensor(float)"}


@dataclass(frozen=True)
class TensorInfo:
    """An input or output as onnxruntime's NodeArg shows it: a name and an ONNX type string."""

    name: str
    type: str
    shape: tuple


def open_openvino(xml_path, threads: Optional[int] = None, precision: str = "f32",
                  hint: str = DEFAULT_HINT) -> "OpenVINOSession":
    """Compile an OpenVINO IR on the CPU with explicit threads, performance hint and precision.

    Args:
        xml_path: the IR's `.xml`; its `.bin` lies beside it with the same stem.
        threads: INFERENCE_NUM_THREADS; None means `toolkit.session.usable_cores()`.
        precision: INFERENCE_PRECISION_HINT, "f32" or "bf16". bf16 on a CPU without bf16 kernels
            (no AVX512-BF16 or AMX) runs f32 instead, with a logged warning: the scores stay right
            and only the speed differs.
        hint: PERFORMANCE_HINT, "LATENCY" or "THROUGHPUT" (see HINTS).

    Returns:
        An OpenVINOSession, safe to call from many threads (one infer request per thread).

    Raises:
        ProviderError: openvino is not installed, or a setting is not one OpenVINO accepts.
        ArtifactError: the IR is missing or OpenVINO cannot read or compile it.
    """
    ov = _import_openvino()
    xml_path = Path(xml_path)
    if hint not in HINTS:
        raise ProviderError(f"OpenVINO performance hint must be one of {', '.join(HINTS)}, got {hint!r}")
    if precision not in PRECISIONS:
        raise ProviderError(f"OpenVINO inference precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    for path in (xml_path, xml_path.with_suffix(".bin")):
        if not path.is_file():
            raise ArtifactError(f"{path}: OpenVINO IR file not found; re-run `toolkit export --force`")
    core = ov.Core()
    if precision == "bf16" and not has_bf16(core):
        log.warning("%s: this CPU has no bf16 kernels (AVX512-BF16 or AMX); running it at f32: same scores "
                    "within rounding, no bf16 speed-up", xml_path.name)
        precision = "f32"
    from toolkit.session import usable_cores

    config = {"INFERENCE_NUM_THREADS": int(threads) if threads else usable_cores(),
              "PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": precision}
    try:
        model = core.read_model(str(xml_path))
        compiled = core.compile_model(model, DEVICE, config)
    except Exception as e:  # openvino raises RuntimeError subclasses of its own
        raise ArtifactError(f"{xml_path}: OpenVINO {ov.__version__} cannot compile the IR ({_first_line(e)}); "
                            "re-run `toolkit export --force`") from e
    return OpenVINOSession(compiled, xml_path, config)


def open_variant(export_dir, entry: dict, provider: str = "cpu", threads: Optional[int] = None) -> "OpenVINOSession":
    """An export's OpenVINO variant as the runtime runs it: its manifest entry's file and inference
    precision, the performance hint from $TOOLKIT_OPENVINO_HINT (default LATENCY), on the CPU.

    Raises:
        ProviderError: a GPU provider was asked for (OpenVINO variants run on the CPU plugin),
            openvino is missing, or the hint is unknown.
        ArtifactError: the IR is missing or cannot be compiled.
    """
    name = str(getattr(provider, "value", provider)).strip().lower()
    if name not in ("auto", "cpu"):
        raise ProviderError(f"{entry.get('file')}: OpenVINO variants run on the CPU, not {provider!r}; "
                            "use provider cpu or auto, or an ONNX variant on the GPU")
    hint = os.environ.get(HINT_ENV, DEFAULT_HINT).strip().upper()
    return open_openvino(Path(export_dir) / entry["file"], threads, entry.get("inference_precision") or "f32", hint)


def openvino_trust_failures(verdict: Optional[dict], certified: bool) -> list[str]:
    """Why `variant="auto"` must not pick an OpenVINO variant ([] when it may).

    It needs openvino installed and a certified `toolkit validate` pass recorded on a CPU with this
    CPU's signature: kernels, and so speed and rounding, are chosen per ISA (AMX, VNNI, bf16).
    """
    if openvino_version() is None:
        return [f"openvino is not installed ({INSTALL_HINT})"]
    if verdict is not None and verdict.get("passed") is False:
        return list(verdict.get("failures") or ["failed validation"])
    if not certified:
        return ["no certified `toolkit validate` pass on this machine (OpenVINO variants need one)"]
    if verdict.get("cpu") != cpu_signature():
        return [f"validated on another CPU ({verdict.get('cpu') or 'unrecorded'}); run `toolkit validate` here"]
    return []


def has_bf16(core=None) -> bool:
    """Whether OpenVINO's CPU plugin has bf16 kernels on this CPU (AVX512-BF16 or AMX)."""
    ov = _import_openvino()
    core = core or ov.Core()
    return "BF16" in core.get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")


@functools.lru_cache(maxsize=None)  # the CPU does not change under a process; /proc/cpuinfo is long on big hosts
def cpu_signature() -> str:
    """The CPU as OpenVINO's kernel choice sees it: architecture, model name and the ISA extensions
    that change int8/bf16 kernels. `toolkit validate` records it with each verdict, and `auto`
    trusts an OpenVINO variant only where it was validated on a CPU with the same signature."""
    import platform

    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:  # not Linux
        model = platform.processor()
    isa = sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
                                           "amx_bf16", "amx_int8", "asimd", "sve"))
    return " | ".join([platform.machine(), model or "unknown CPU", " ".join(isa)])


def openvino_version() -> Optional[str]:
    """The installed openvino version, or None when it is not installed."""
    try:
        import openvino
    except ImportError:
        return None
    return openvino.__version__.split("-")[0]


class OpenVINOSession:
    """A compiled OpenVINO model behind onnxruntime's session calls (get_inputs, get_outputs, run).

    Attributes:
        path: the IR's `.xml`.
        config: the properties it was compiled with, as OpenVINO reports them back (threads, hint,
            precision, streams): what actually runs, for logs and benchmark records.
    """

    backend = "openvino"

    def __init__(self, compiled, path: Path, requested: dict):
        self._compiled = compiled
        self.path = Path(path)
        self.config = {key: _property_text(compiled.get_property(key)) for key in
                       (*requested, "NUM_STREAMS", "EXECUTION_MODE_HINT")}
        self._inputs = [TensorInfo(p.get_any_name(), _OV_TYPES.get(p.get_element_type().get_type_name(), "tensor(int64)"),
                                   tuple(str(d) for d in p.get_partial_shape())) for p in compiled.inputs]
        self._outputs = [TensorInfo(p.get_any_name(), _OV_TYPES.get(p.get_element_type().get_type_name(), "tensor(float)"),
                                    tuple(str(d) for d in p.get_partial_shape())) for p in compiled.outputs]
        self._local = threading.local()

    def get_inputs(self) -> list[TensorInfo]:
        return list(self._inputs)

    def get_outputs(self) -> list[TensorInfo]:
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        return [ORT_DEVICE_NAME]

    def get_session_options(self) -> SimpleNamespace:
        """The thread count, where onnxruntime's SessionOptions keeps it (bench records it per runner)."""
        return SimpleNamespace(intra_op_num_threads=int(self.config["INFERENCE_NUM_THREADS"]))

    def run(self, output_names: Optional[Sequence[str]], feed: dict) -> list[np.ndarray]:
        """Outputs for one feed ({input name: array}), as onnxruntime's `run` returns them.

        Raises:
            ArtifactError: a feed name the model does not declare, or OpenVINO failed on the batch.
        """
        unknown = sorted(set(feed) - {i.name for i in self._inputs})
        if unknown:
            raise ArtifactError(f"{self.path}: inputs {unknown} are not in the model "
                                f"(it takes {', '.join(i.name for i in self._inputs)})")
        names = [o.name for o in self._outputs] if not output_names else list(output_names)
        request = self._request()
        try:
            results = request.infer(feed)
        except Exception as e:  # openvino's RuntimeError types
            raise ArtifactError(f"{self.path}: OpenVINO inference failed ({_first_line(e)})") from e
        by_name = {port.get_any_name(): value for port, value in results.items()}
        # the request reuses its output buffers on the next call: hand out copies
        return [np.array(by_name[name], copy=True) for name in names]

    def _request(self):
        """This thread's infer request: one request must never run two inferences at once."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        return request


def _import_openvino():
    try:
        import openvino
    except ImportError as e:
        raise ProviderError(f"OpenVINO variants need the openvino package; {INSTALL_HINT}") from e
    return openvino


def _property_text(value) -> str:
    """'bf16' for OpenVINO's Type('bfloat16'), 'PERFORMANCE' for ExecutionMode.PERFORMANCE, else str()."""
    if hasattr(value, "get_type_name"):
        return value.get_type_name()
    return str(getattr(value, "name", value))


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
