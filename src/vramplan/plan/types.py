"""Planner results: ranked options, rejected setups, suggestions, hardware rows, fit rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vramplan.result import DeviceEstimate


@dataclass(frozen=True, slots=True)
class PlanOption:
    """One way to run the model: engine x quantization x hardware x parallelism x offload."""

    engine: str
    quant: str  # as passed to --quant ("q4_k_m", "awq", "checkpoint")
    quant_label: str  # "GGUF Q4_K_M", "awq 4-bit g128", "fp8 block 128x128"
    gpu: str  # catalog key
    gpu_name: str
    gpu_count: int
    tp: int
    pp: int
    ep: bool
    fits: bool
    devices: tuple[DeviceEstimate, ...]
    host_ram_bytes: int
    context_tokens: int
    concurrency: int
    decode_tokens_per_s: float | None
    prefill_tokens_per_s: float | None
    ttft_s: float | None
    speed: dict[str, Any]  # the full speed object (ranges, bound_by, assumptions)
    max_context_tokens: int
    max_concurrency: int
    binding_constraint: str  # gpu_memory | host_ram | model_context | gpu_compute ...
    binding_detail: str
    command: str
    placement: str  # "all layers on the GPU", "routed experts of layers 0-81 in host RAM"
    engine_options: dict[str, Any] = field(default_factory=dict)
    verified: bool = False  # memory checked by the engine model (not only the planner's screen)
    meets_min_tokens_per_s: bool = True
    notes: tuple[str, ...] = ()

    @property
    def weights_bytes(self) -> int:
        return sum(d.weights_bytes for d in self.devices)


@dataclass(frozen=True, slots=True)
class Rejection:
    """An engine or setup that cannot work, and why."""

    engine: str
    setup: str  # "1 x NVIDIA GeForce RTX 4090, awq"
    reason: str


@dataclass(frozen=True, slots=True)
class Suggestion:
    """The smallest change that makes something fit."""

    change: str  # more_ram | more_gpus | lower_quant | shorter_context | other_gpu
    detail: str
    option: PlanOption | None = None


@dataclass(frozen=True, slots=True)
class HardwareRow:
    """Fewest GPUs of one kind that run the model at the target (GPU-only)."""

    gpu: str
    gpu_name: str
    gpu_count: int | None  # None: not within the searched counts
    option: PlanOption | None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PlanResult:
    model: str
    params_total: int
    params_active: int
    gpu: str | None
    gpu_count: int | None
    ram_bytes: int | None
    context_tokens: int | None  # as asked (None: each option at the largest it has room for)
    concurrency: int
    min_tokens_per_s: float | None
    options: tuple[PlanOption, ...]
    rejected: tuple[Rejection, ...]
    alternatives: tuple[HardwareRow, ...] = ()
    suggestions: tuple[Suggestion, ...] = ()
    assumptions: tuple[str, ...] = ()
    elapsed_s: float = 0.0

    @property
    def fits(self) -> bool:
        return any(o.fits for o in self.options)


@dataclass(frozen=True, slots=True)
class FitRow:
    """``vramplan fit``: one catalog model on the given hardware (its best option, if any)."""

    model: str
    params_total: int
    option: PlanOption | None
    reason: str = ""
