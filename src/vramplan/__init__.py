"""vramplan: will this LLM run on my hardware? Exact, explained memory per engine.

Public API::

    import vramplan
    est = vramplan.estimate("qwen3-235b-a22b", gpu="rtx 4090", quant="awq")
    est.fits, est.weights_bytes, [d.total_bytes for d in est.devices]
    vramplan.to_dict(est)   # the same JSON object as `vramplan estimate --json`
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Estimate",
    "InputError",
    "VramplanError",
    "__version__",
    "estimate",
    "model_info",
    "to_dict",
]

if TYPE_CHECKING:
    from vramplan.api import estimate, model_info
    from vramplan.errors import ConfigError, InputError, VramplanError
    from vramplan.report import to_dict
    from vramplan.result import Estimate

_LAZY = {
    "estimate": "vramplan.api", "model_info": "vramplan.api", "to_dict": "vramplan.report",
    "Estimate": "vramplan.result", "VramplanError": "vramplan.errors",
    "InputError": "vramplan.errors", "ConfigError": "vramplan.errors",
}


def __getattr__(name: str) -> Any:
    """Import lazily so ``import vramplan`` (and the CLI) stay fast."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
