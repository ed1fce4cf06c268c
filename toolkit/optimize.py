"""Old import path of `toolkit.export.optimize` (fusions and fp16): the same module object under this name."""
import sys

from toolkit.export import optimize as _optimize

sys.modules[__name__] = _optimize  # one module, so a monkeypatch through either name reaches the code
