"""Errors that are shown to the user as one line.

Tree::

    VramplanError                 any failure the CLI prints as one line (exit 2)
    ├── InputError                bad user input or a bad model definition: names the field and the fix
    │   ├── ConfigError           a config.json / quantization config that cannot be understood
    │   ├── UnknownModelError     a model name not in the catalog, not a path, not reachable on the Hub
    │   ├── UnknownGpuError       a GPU name not in the hardware catalog
    │   ├── HeaderError           an unreadable safetensors or GGUF header
    │   └── ParallelismError      tp/pp/ep that cannot split the model
    └── OfflineError              the Hub was needed but cannot be reached
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "HeaderError",
    "InputError",
    "OfflineError",
    "ParallelismError",
    "UnknownGpuError",
    "UnknownModelError",
    "VramplanError",
]


class VramplanError(Exception):
    """Base class: the message is displayed to the user as one line."""


class InputError(VramplanError):
    """Bad input. ``field`` names what is wrong, ``fix`` says what to do."""

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        msg = f"{field}: {problem}"
        if fix:
            msg += f"; {fix}"
        super().__init__(msg)


class ConfigError(InputError):
    """A model config that cannot be understood."""


class UnknownModelError(InputError):
    """A model name that resolves to nothing."""


class UnknownGpuError(InputError):
    """A GPU name that is not in the hardware catalog."""


class HeaderError(InputError):
    """An unreadable or corrupt safetensors/GGUF header."""


class ParallelismError(InputError):
    """A tensor/pipeline/expert parallel size that cannot split the model."""


class OfflineError(VramplanError):
    """The Hugging Face Hub was needed but could not be reached."""
