"""Result types: a tree of named components per device, summarized separately.

Every byte count is an int. ``to_dict`` (vramplan.report) turns these into the one JSON object
the CLI's ``--json``, the Python API and the HTTP API all return.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Component:
    """One named term of a memory estimate, with the math behind it."""

    name: str  # "weights", "kv_cache", "activations", "cuda_context", ...
    bytes: int
    formula: str = ""  # the formula with the real numbers
    source: str = ""  # paper / engine file the formula comes from
    category: str = ""  # weights | kv_cache | activation | overhead
    children: tuple[Component, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceEstimate:
    name: str  # "GPU0", "CUDA0", "CPU"
    kind: str  # gpu | cpu
    label: str  # "NVIDIA GeForce RTX 4090"
    capacity_bytes: int
    components: tuple[Component, ...]
    # False when the size is not known (host RAM without --ram): capacity_bytes is then the
    # device's own use, and no margin or verdict is read from it.
    capacity_known: bool = True

    def _sum(self, category: str) -> int:
        return sum(c.bytes for c in self.components if c.category == category)

    @property
    def weights_bytes(self) -> int:
        return self._sum("weights")

    @property
    def kv_cache_bytes(self) -> int:
        return self._sum("kv_cache")

    @property
    def activation_bytes(self) -> int:
        return self._sum("activation")

    @property
    def overhead_bytes(self) -> int:
        return self._sum("overhead")

    @property
    def total_bytes(self) -> int:
        return sum(c.bytes for c in self.components)

    @property
    def free_bytes(self) -> int:
        return self.capacity_bytes - self.total_bytes

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.capacity_bytes


@dataclass(frozen=True, slots=True)
class ExplainLine:
    term: str
    formula: str
    value: str
    source: str = ""


@dataclass(frozen=True, slots=True)
class ModelSummary:
    id: str
    origin: str  # catalog | local | hub
    source: str  # where the config came from
    model_type: str
    architecture: str
    params_total: int
    params_active: int
    params_by_role: dict[str, int]
    params_mtp: int
    buffers_total: int
    num_layers: int
    max_context_tokens: int
    quant: str
    quant_source: str
    weights_from_headers: bool


@dataclass(frozen=True, slots=True)
class Estimate:
    model: ModelSummary
    engine: str
    engine_version: str
    gpu: str
    gpu_count: int
    context_tokens: int
    batch: int
    kv_dtype: str
    tp: int
    pp: int
    weights_bytes: int  # all devices together (one copy of the model)
    kv_cache_bytes_per_token: int  # full-attention growth per token, one copy, no TP split
    kv_cache_bytes_per_token_all_layers: int
    kv_window_bytes_per_sequence: int
    kv_state_bytes_per_sequence: int
    devices: tuple[DeviceEstimate, ...]
    host_ram_bytes: int
    engine_figures: dict[str, Any]
    failure: str | None  # the engine's own error, predicted, when it would fail
    fix: str | None
    command: str
    assumptions: tuple[str, ...]
    notes: tuple[str, ...]
    explain: tuple[ExplainLine, ...] = field(default=())
    speed: dict[str, Any] | None = None

    @property
    def fits(self) -> bool:
        return self.failure is None and all(d.fits for d in self.devices)
