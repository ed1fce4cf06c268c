"""Static int8 (`toolkit export --int8 static`): a QDQ model calibrated on training texts.

Calibration texts come from `--calibration-data` or the training data the checkpoint records
(`calibration_texts`); `_CalibrationReader` feeds them to onnxruntime's MinMax calibrator one at a
time. Weights only (MatMulConstBOnly): Q·K^T stays float.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from toolkit import artifacts
from toolkit.config import ExportConfig, Variant
from toolkit.errors import ExportError, first_line
from toolkit.export.int8.dynamic import PER_CHANNEL, REDUCE_RANGE
from toolkit.export.int8.graph import graph_inputs, logits_head_nodes

log = logging.getLogger(__name__)

STATIC_OP_TYPES = ("MatMul", "Gemm", "Gather")


def static_int8_variant(fp32_path: Path, out: Path, work: Path, loaded, texts: Sequence[str], describe: Callable):
    """Static int8 QDQ calibrated on training texts (MinMax), from the unfused graph so QDQ can wrap every MatMul.

    Args:
        fp32_path: the unfused fp32 graph; out: the export's build dir; work: its intermediates dir.
        loaded: the loaded checkpoint (its tokenizer feeds the calibration); texts: from `calibration_texts`.
        describe: export's file-facts function, (variant, path, seconds, settings) -> VariantResult.
    Returns:
        The VariantResult of `model_int8_static.onnx`.
    Raises:
        ExportError: calibration or the QDQ quantizer failed.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    started = time.perf_counter()
    log.info("quantizing to int8 (static QDQ, %d calibration texts)", len(texts))
    path = out / artifacts.variant_file(Variant.INT8_STATIC)
    prepared = work / ("prepared_" + fp32_path.name)
    try:
        # symbolic shape inference gives up on optimum's sdpa mask subgraph; ONNX shape inference suffices
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        excluded = logits_head_nodes(onnx.load(str(prepared), load_external_data=False))
        reader = _CalibrationReader(loaded.tokenizer, texts, graph_inputs(prepared), loaded.max_length)
        quantize_static(
            prepared, path, reader, quant_format=QuantFormat.QDQ, op_types_to_quantize=list(STATIC_OP_TYPES),
            per_channel=PER_CHANNEL, reduce_range=REDUCE_RANGE, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, nodes_to_exclude=excluded, calibrate_method=CalibrationMethod.MinMax,
            extra_options={"MatMulConstBOnly": True},  # weights only: Q·K^T stays float
        )
    except Exception as e:  # calibration and the QDQ quantizer raise assorted errors
        raise ExportError(f"{path.name}: static int8 quantization failed ({first_line(e)}); "
                          "use --int8 dynamic meanwhile") from e
    return describe(Variant.INT8_STATIC, path, time.perf_counter() - started,
                    {"mode": "static", "format": "QDQ", "calibration": "MinMax", "calibration_samples": len(texts),
                     "activation_type": "QUInt8", "weight_type": "QInt8", "per_channel": PER_CHANNEL,
                     "reduce_range": REDUCE_RANGE, "op_types": list(STATIC_OP_TYPES), "excluded_nodes": excluded})


def calibration_texts(cfg: ExportConfig, loaded) -> list[str]:
    """Up to `cfg.calibration_samples` training texts for static int8 calibration (seeded sample).

    From `cfg.calibration_data` (a dataset file or directory: its training split; a .txt file: one
    text per line), else from the training data recorded in the checkpoint.

    Raises:
        ExportError: no calibration source (a seed state_dict records none) or no texts in it.
    """
    from toolkit.config import DataConfig
    from toolkit.data import load_recorded_split, load_splits
    from toolkit.errors import DataError

    source = cfg.calibration_data
    spec = (loaded.meta or {}).get("data")
    if source is not None:
        source = Path(source)
        if source.is_file() and source.suffix.lower() == ".txt":
            try:
                texts = [line.strip() for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
            except (OSError, UnicodeDecodeError) as e:
                raise ExportError(f"{source}: cannot read calibration texts ({e}); pass a UTF-8 file, one text per line") from e
        else:
            texts = load_splits(DataConfig(path=source)).train.texts
    elif spec:
        try:  # the recorded training split, only if the data still matches its fingerprint
            texts = load_recorded_split(spec, "train").texts
        except DataError as e:
            raise ExportError(f"{e}; for --int8 static pass --calibration-data PATH (a dataset or a .txt file, "
                              "one text per line)") from e
    else:
        raise ExportError(f"{cfg.checkpoint}: --int8 static needs calibration texts and the checkpoint records no "
                          "training data; pass --calibration-data PATH (a dataset or a .txt file, one text per line)")
    if not texts:
        raise ExportError(f"{source or spec.get('path')}: no calibration texts; pass --calibration-data with texts")
    order = np.random.default_rng(0).permutation(len(texts))[: cfg.calibration_samples]
    return [texts[i] for i in order]


# ---------------------------------------------------------------------------- helpers


class _CalibrationReader:
    """Feeds calibration texts one at a time (no padding, so pad positions do not skew the ranges).

    onnxruntime's CalibrationDataReader is a protocol (`get_next`, checked by __subclasshook__), so
    this class needs no onnxruntime import at module load.
    """

    def __init__(self, tokenizer, texts: Sequence[str], input_names: list[str], max_length: int):
        self._items = iter(texts)
        self._tokenizer = tokenizer
        self._names = input_names
        self._max_length = max_length

    def get_next(self) -> Optional[dict]:
        text = next(self._items, None)
        if text is None:
            return None
        enc = self._tokenizer([text], truncation=True, max_length=self._max_length, return_tensors="np")
        return {n: enc[n].astype(np.int64) for n in self._names}

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item
