"""`toolkit export`: a PyTorch checkpoint -> one directory with ONNX fp32, fp16 and int8 variants.

One job per module:
- `pipeline`: `export_model`, the orchestrator (fp32 with optimum, the variants, parity, manifest);
- `optimize`: onnxruntime's transformer fusions per model family, then fp16;
- `int8`: the int8 recipes (per-token dynamic int8, smoothing, the gated float-fallback search, static QDQ).

The pipeline's public names are re-exported here, so `from toolkit.export import export_model`
works. `toolkit.optimize` and `toolkit.quantize` are the same modules under their old names.
"""
from toolkit.export.pipeline import (PRECISION, ExportResult, VariantResult, export_model, format_summary,
                                     requested_variants)

__all__ = ["PRECISION", "ExportResult", "VariantResult", "export_model", "format_summary", "requested_variants"]
