"""toolkit: BERT multi-label text classifiers from PyTorch to production ONNX.

Stages, one module each: data -> modeling -> train -> export -> validate -> bench, and
`toolkit.runtime` for applications (numpy + onnxruntime + tokenizers only). This package
import is light: nothing here imports torch.
"""
from toolkit.config import Variant
from toolkit.errors import ArtifactError, DataError, ExportError, ModelError, ProviderError, ToolkitError, ValidationFailed

__version__ = "0.1.0"
__all__ = ["Variant", "ToolkitError", "DataError", "ModelError", "ArtifactError", "ExportError", "ProviderError",
           "ValidationFailed", "__version__"]
