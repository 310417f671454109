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
class HeaderCheck:
    """The tensor inventory (from config.json) against the checkpoint's own tensor headers.

    ``inventory_params`` = parameters + persistent buffers (what a checkpoint stores);
    ``header_params`` = the values the headers hold for the main model: MTP / next-n layers, a
    stored copy of a tied ``lm_head``, rotary ``inv_freq`` and quantization side tensors
    (scales, zero points, ``g_idx``) excluded, packed integer weights unpacked at the scheme's
    bits (AWQ/GPTQ ``qweight``: 32/bits values per int32). None when they cannot be counted
    (``reason`` says why). When they differ the headers win for weights.
    """

    inventory_params: int
    header_params: int | None
    header_tensors: int  # header entries read (all of them)
    unmatched: tuple[str, ...] = ()  # header tensors no inventory tensor explains (first few)
    missing: tuple[str, ...] = ()  # inventory tensors absent from the headers (first few)
    reason: str = ""

    @property
    def match(self) -> bool | None:
        if self.header_params is None:
            return None
        return self.header_params == self.inventory_params

    @property
    def difference(self) -> int | None:
        """header_params - inventory_params (parameters the config's reading misses if > 0)."""
        if self.header_params is None:
            return None
        return self.header_params - self.inventory_params

    def to_dict(self) -> dict[str, Any]:
        return {"inventory_params": self.inventory_params, "header_params": self.header_params,
                "difference": self.difference, "match": self.match,
                "header_tensors": self.header_tensors, "unmatched": list(self.unmatched),
                "missing": list(self.missing), "reason": self.reason}

    def assumption(self) -> str | None:
        """The assumption line of a mismatch (None when the headers agree)."""
        if self.match is not False:
            return None
        d = self.difference or 0
        more = ("; unexplained header tensors: " + ", ".join(self.unmatched)) if self.unmatched \
            else ""
        more += ("; absent from the headers: " + ", ".join(self.missing)) if self.missing else ""
        return (f"weights: the checkpoint headers hold {self.header_params:,} parameters, the "
                f"config.json reading {self.inventory_params:,} ({d:+,}); weights are taken from "
                f"the headers, the per-layer KV and activations follow config.json{more}")


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
    header_check: HeaderCheck | None = None  # set when the weights' tensor headers were read

    @property
    def fits(self) -> bool:
        return self.failure is None and all(d.fits for d in self.devices)
