"""Runners: one model on one provider, as a timed step (fixed shapes) or a model call (real text).

ONNX variants run in `toolkit.runtime.open_session`'s session, unmodified on every provider
(TensorRT included: each variant's own precision, the runtime's engine cache), so the bench
times exactly the session apps get. PyTorch eager is the baseline; torch is imported only by
the PyTorch runners, so a `--no-baseline` run never loads it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from toolkit import runtime
from toolkit.bench.results import PYTORCH_FP16, PYTORCH_FP32
from toolkit.config import BenchConfig, Provider, Variant
from toolkit.errors import ProviderError

log = logging.getLogger(__name__)


class OrtRunner:
    """One ONNX variant in one onnxruntime session on one provider."""

    def __init__(self, variant: str, path: Path, provider: str, threads: int, session=None, classifier=None):
        self.variant = variant
        self.session = session if session is not None else runtime.open_session(path, provider, threads)
        self.classifier = classifier  # real-text mode: the runtime's EmotionClassifier over this session
        attached = self.session.get_providers()[0]
        self.provider = runtime.SHORT_NAMES.get(attached, attached)
        self.device = device_of(self.provider)
        self.threads = int(self.session.get_session_options().intra_op_num_threads or threads)
        self.input_types = runtime.input_dtypes(self.session)
        self.outputs = [o.name for o in self.session.get_outputs()]

    def feeds(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Feed only what the graph declares: some exports drop token_type_ids.
        return {n: inputs[n].astype(t, copy=False) for n, t in self.input_types.items()}

    def fixed_step(self, inputs: dict[str, np.ndarray]) -> Callable[[], None]:
        feeds = self.feeds(inputs)
        if self.device == "cpu":
            return lambda: self.session.run(self.outputs, feeds)
        return self._device_step(feeds)

    def _device_step(self, feeds: dict[str, np.ndarray]) -> Callable[[], None]:
        """IO binding: inputs copied to the GPU once, outputs left there; synchronized around each run."""
        import onnxruntime as ort

        binding = self.session.io_binding()
        for name, array in feeds.items():
            # a device copy made once per case; the binding shares ownership of it
            value = ort.OrtValue.ortvalue_from_numpy(array, "cuda", runtime.CUDA_DEVICE_ID)
            binding.bind_ortvalue_input(name, value)
        for name in self.outputs:
            binding.bind_output(name, "cuda", runtime.CUDA_DEVICE_ID)

        def step() -> None:
            binding.synchronize_inputs()
            self.session.run_with_iobinding(binding)
            binding.synchronize_outputs()

        return step


class TorchRunner:
    """PyTorch eager (torch.inference_mode) on one device and dtype: the baseline."""

    def __init__(self, variant: str, loaded, device: str, dtype, threads: int):
        import torch

        from toolkit.modeling import forward_input_names

        self.variant = variant
        self.loaded = loaded
        self.device = device
        self.provider = device
        self.threads = torch.get_num_threads() if device == "cpu" else threads
        self.model = loaded.model.to(device=device, dtype=dtype).eval()
        self.attention = getattr(self.model.config, "_attn_implementation", None)  # sdpa or eager: recorded
        self.input_names = forward_input_names(self.model, loaded.tokenizer)  # e.g. DistilBERT: no token_type_ids

    def feeds(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The inputs `model.forward` takes, the others (a BERT tokenizer's token_type_ids) dropped."""
        return {k: v for k, v in inputs.items() if k in self.input_names}

    def forward(self, inputs: dict[str, np.ndarray]):
        import torch

        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for k, v in self.feeds(inputs).items()}
        with torch.inference_mode():
            return torch.sigmoid(self.model(**tensors).logits.float()).cpu().numpy()

    def fixed_step(self, inputs: dict[str, np.ndarray]) -> Callable[[], None]:
        import torch

        tensors = {k: torch.from_numpy(v).to(self.device) for k, v in self.feeds(inputs).items()}
        cuda = self.device != "cpu"

        def step() -> None:
            with torch.inference_mode():
                self.model(**tensors)
            if cuda:
                torch.cuda.synchronize()  # kernels are asynchronous: wait for them inside the timed region

        return step


@dataclass
class Plan:
    """One real-text row: a runner, how its texts are padded, and its units (one timed call each)."""

    runner: object
    variant: str
    padding: str
    seq_len: int
    batch: int
    units: list[Callable[[], object]]
    texts: int  # texts per pass
    tokens: int  # tokens fed to the model per pass, padding included


def torch_runners(export_dir: Path, manifest: dict, device: str, threads: int, fp16: bool = True) -> list[TorchRunner]:
    """PyTorch fp32 eager on the device; on CUDA also fp16 eager (unless `fp16` is off), the usual
    GPU deployment baseline."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ProviderError(f"the PyTorch baseline on CUDA needs a CUDA build of torch (this is {torch.__version__}, "
                            "no CUDA device visible); install one or pass --no-baseline")
    runners = [TorchRunner(PYTORCH_FP32, load_baseline(export_dir, manifest), device, torch.float32, threads)]
    if device == "cuda" and fp16:  # a second copy of the weights, converted to half
        runners.append(TorchRunner(PYTORCH_FP16, load_baseline(export_dir, manifest), device, torch.float16, threads))
    return runners


def load_baseline(export_dir: Path, manifest: dict):
    from toolkit.modeling import load_export_source

    # speed does not depend on the weights: a checkpoint retrained since the export still times right
    return load_export_source(export_dir, manifest, "the PyTorch baseline needs it: restore it, or pass --no-baseline",
                              check_sha256=False)


def open_per_provider(cfg: BenchConfig, providers: list[str], open_runners: Callable[[str], list],
                      notes: list[str]) -> tuple[list, list[str]]:
    """Runners for each provider. With --provider auto a GPU provider that does not start is skipped
    with a note (onnxruntime-gpu lists CUDA even on machines without a usable GPU); asked for by
    name, it is an error."""
    runners, used = [], []
    for provider in providers:
        try:
            runners += open_runners(provider)
        except ProviderError as e:
            if cfg.provider != "auto" or provider == Provider.CPU:
                raise
            notes.append(f"provider auto: {provider} is listed by onnxruntime but did not start, so this run is "
                         f"CPU only ({e})")
            log.warning(notes[-1])
            continue
        used.append(provider)
    return runners, used


def attention_of(runners) -> Optional[str]:
    """PyTorch's attention implementation (sdpa, eager) among the runners, None without a baseline."""
    return next((r.attention for r in runners if isinstance(r, TorchRunner)), None)


def device_of(provider: str) -> str:
    return Provider.CPU.value if provider == Provider.CPU else Provider.CUDA.value


def note_provider_quirks(runners, notes: list[str]) -> None:
    variants = {(r.variant, r.device) for r in runners}
    if (Variant.FP16, Provider.CPU) in variants:
        notes.append("fp16 on CPU: measured for completeness; onnxruntime's float16 CPU kernels depend on the CPU "
                     "(AVX512-FP16, ARM) and float32 casts fill the gaps; fp16 is the GPU variant")
    if any(r.provider == Provider.TENSORRT for r in runners):
        notes.append("tensorrt: sessions are toolkit.runtime's, so each variant keeps its own precision (no "
                     "trt_fp16_enable: fp32 stays fp32); nodes TensorRT cannot take (com.microsoft fused ops, "
                     "dynamic int8) run on CUDA/CPU")
    if (Variant.INT8, Provider.CUDA) in variants:
        notes.append("int8 on CUDA: dynamic-quantization ops (DynamicQuantizeLinear, MatMulInteger, ...) are CPU "
                     "kernels, so much of the int8 graph runs on the CPU with copies in between; int8 is the CPU "
                     "variant")


def bound(fn: Callable, *args) -> Callable[[], object]:
    """`fn(*args)` as a unit round_robin can time."""
    return lambda: fn(*args)
