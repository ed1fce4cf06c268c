"""toolkit: BERT multi-label text classifiers from PyTorch to production ONNX.

Stages, one module each: data -> modeling -> train -> export -> validate -> bench, and
`toolkit.runtime` for applications (numpy + onnxruntime + tokenizers only).

Public surface (`__all__`): the runtime class `EmotionClassifier` and its `Prediction`, the
pipeline verbs `export_model`, `validate_export` and `run_bench`, `Variant` and the errors.
The runtime class and the verbs are imported on first use (PEP 562 `__getattr__`), so
`import toolkit` imports neither torch nor onnxruntime and stays fast.
"""
import importlib

from toolkit.config import Variant
from toolkit.errors import (ArtifactError, DataError, ExportError, ModelError, ProviderError, ToolkitError,
                            ValidationFailed)

__version__ = "0.1.0"

_LAZY = {
    "EmotionClassifier": "toolkit.runtime",
    "Prediction": "toolkit.runtime",
    "export_model": "toolkit.export",
    "validate_export": "toolkit.validate",
    "run_bench": "toolkit.bench",
}

__all__ = ["EmotionClassifier", "Prediction", "export_model", "validate_export", "run_bench", "Variant",
           "ToolkitError", "DataError", "ModelError", "ArtifactError", "ExportError", "ProviderError",
           "ValidationFailed", "__version__"]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'toolkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups find it without this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
