"""Engine registry: every engine model (built-in or third-party) plugs in here.

An engine model turns a ``Setup`` (priced, placed model + hardware + workload) into an
``EngineResult``: per-device components named as the engine names them, the figures the engine
itself logs, the failure it would raise, and the command that reproduces the setup.
To add an engine: write a module with a class implementing ``EngineModel`` and call
``register_engine("name", factory)`` at import; list the module in ``BUILTIN_MODULES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from vramplan.errors import InputError
from vramplan.hardware.gpus import Gpu
from vramplan.placement import Parallelism, StageShard
from vramplan.quant.schemes import QuantizedModel
from vramplan.result import DeviceEstimate


@dataclass(frozen=True, slots=True)
class Workload:
    context_tokens: int  # tokens per sequence (max_model_len / n_ctx)
    batch: int  # concurrent sequences
    kv_dtype: str  # resolved KV cache dtype (vramplan.kv.KV_DTYPES)
    context_is_default: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)  # engine flags, engine spelling


@dataclass(frozen=True, slots=True)
class Setup:
    model: QuantizedModel
    gpu: Gpu
    gpu_count: int
    parallel: Parallelism
    shards: tuple[StageShard, ...]
    workload: Workload
    host_ram_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class EngineResult:
    devices: tuple[DeviceEstimate, ...]
    host_ram_bytes: int
    figures: dict[str, Any]
    assumptions: tuple[str, ...]
    command: str
    failure: str | None = None
    fix: str | None = None
    notes: tuple[str, ...] = ()
    # The context the engine actually runs with (vLLM max_model_len, llama.cpp n_ctx) when it
    # differs from what was asked, e.g. the engine's own default; None: the workload's.
    context_tokens: int | None = None


class EngineModel(Protocol):
    name: str
    version: str
    # False for engines that spread layers over GPUs instead of sharding tensors (llama.cpp
    # layer split, transformers device_map): api.estimate then keeps tp=1 on --gpus GPUs.
    tensor_parallel: bool

    def estimate(self, setup: Setup) -> EngineResult: ...


EngineFactory = Callable[[str | None], EngineModel]
_REGISTRY: dict[str, EngineFactory] = {}
# Built-in engines: name -> module that registers it. A module is imported only when its engine
# is asked for (start-up time: llama.cpp's and the speed model's modules cost ~50 ms).
BUILTIN_MODULES: dict[str, str] = {
    "generic": "vramplan.engines.generic",
    "vllm": "vramplan.engines.vllm",
    "llamacpp": "vramplan.engines.llamacpp",
    "ollama": "vramplan.engines.ollama",
    "sglang": "vramplan.engines.sglang",
    "transformers": "vramplan.engines.transformers",
}
_ALIASES = {"llamaserver": "llamacpp", "hf": "transformers"}


def register_engine(name: str, factory: EngineFactory) -> None:
    """Register an engine model under ``name`` (third-party engines use this too)."""
    _REGISTRY[name] = factory


def _load(name: str) -> bool:
    """Import the built-in module of ``name`` if needed; False when it is not installed."""
    if name in _REGISTRY:
        return True
    mod = BUILTIN_MODULES.get(name)
    if mod is None:
        return False
    try:
        importlib.import_module(mod)
    except ModuleNotFoundError as e:
        if e.name != mod:  # a real missing dependency inside the module
            raise
        return False
    return name in _REGISTRY


def engine_names() -> list[str]:
    """Every available engine (built-in ones are imported to check they register)."""
    return sorted({n for n in BUILTIN_MODULES if _load(n)} | set(_REGISTRY))


def _canonical(name: str) -> str:
    n = name.strip().lower().replace("-", "").replace(".", "").replace("_", "")
    return _ALIASES.get(n, n)


def get_engine(spec: str) -> EngineModel:
    """``vllm``, ``vllm==0.10.2``, ``llamacpp``: the named engine at a version (default newest)."""
    name, _, version = spec.partition("==")
    name = _canonical(name)
    if not _load(name):
        raise InputError("--engine", f"unknown engine {spec!r}",
                         f"choose one of: {', '.join(engine_names())}")
    return _REGISTRY[name](version.strip() or None)


def default_engine(origin: str) -> str:
    """vLLM for safetensors models, llama.cpp for GGUF files; generic if those are missing."""
    want = "llamacpp" if origin == "gguf" else "vllm"
    return want if _load(want) else "generic"
