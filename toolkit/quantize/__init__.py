"""Old import path of `toolkit.export.int8` (the int8 recipes): the same package and submodules under this name."""
import sys

from toolkit.export import int8 as _int8
from toolkit.export.int8 import dynamic, gate, graph, rewrite, search, smoothing, static

# One module object per file under both names, so `toolkit.quantize.rewrite` is `toolkit.export.int8.rewrite`
# (a monkeypatch through either name reaches the code) and no file is imported twice.
for _module in (dynamic, gate, graph, rewrite, search, smoothing, static):
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}"] = _module
sys.modules[__name__] = _int8
