"""Priced-model types: a quantization scheme, one priced tensor, the priced model.

A leaf of ``quant/`` (imports only ``inventory`` and ``result``): ``schemes.py`` (formats, parsing,
``quantize_model``), ``gguf_pricing.py`` (GGUF file types), ``from_headers.py`` and
``gguf_weights.py`` build these, so data flows one way: types <- gguf_pricing <- schemes.
``quant.schemes`` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vramplan.inventory import TensorGroup, TensorInventory

if TYPE_CHECKING:
    from vramplan.result import HeaderCheck


@dataclass(frozen=True, slots=True)
class QuantScheme:
    """How linear weights are stored. ``method`` names the format; other fields its parameters."""

    method: str  # none | fp8 | int8 | awq | gptq | bnb-nf4 | bnb-fp4 | bnb-int8 | mxfp4 | gguf
    bits: int = 16
    group_size: int = 0  # AWQ/GPTQ group (-1: one group per input row, i.e. per-channel)
    fp8_block: tuple[int, int] | None = None  # FP8 block scales [out, in], e.g. (128, 128)
    fp8_strategy: str = "tensor"  # tensor | channel | block
    desc_act: bool = False  # GPTQ act-order (g_idx is stored either way)
    double_quant: bool = False  # bitsandbytes nested quantization of absmax
    quantize_lm_head: bool = False
    skip_modules: tuple[str, ...] = ()  # modules_to_not_convert / ignore / exclude_modules
    only_experts: bool = False  # MXFP4 in gpt-oss: only the MoE experts are quantized
    gguf_ftype: str = ""  # for method gguf: Q4_K_M, Q8_0, ...
    kv_cache_dtype: str | None = None  # when the checkpoint also fixes the KV cache dtype
    source: str = "--quant"  # "checkpoint quantization_config", "hf_quant_config.json", "--quant"
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.method


NONE = QuantScheme(method="none", label="none", source="checkpoint dtype")


@dataclass(frozen=True, slots=True)
class WeightEntry:
    group: TensorGroup
    bytes: int  # stored bytes of the whole group (all experts)
    fmt: str  # "bf16", "awq-4bit-g128", "fp8-block128", "Q4_K", ...


@dataclass(frozen=True, slots=True, eq=False)
class QuantizedModel:
    """Priced weights; totals are computed once (identity-hashed so stages can cache on it)."""

    inventory: TensorInventory
    scheme: QuantScheme
    entries: tuple[WeightEntry, ...]
    mtp_bytes: int
    notes: tuple[str, ...] = field(default=())
    header_check: HeaderCheck | None = None  # inventory vs the checkpoint's tensor headers
    weights_bytes: int = field(init=False)
    _by_role: tuple[tuple[str, int], ...] = field(init=False)
    _by_format: tuple[tuple[str, int, int], ...] = field(init=False)  # (fmt, bytes, params)

    def __post_init__(self) -> None:
        roles: dict[str, int] = {}
        fmts: dict[str, tuple[int, int]] = {}
        total = 0
        for e in self.entries:
            total += e.bytes
            roles[e.group.role] = roles.get(e.group.role, 0) + e.bytes
            b, n = fmts.get(e.fmt, (0, 0))
            fmts[e.fmt] = (b + e.bytes, n + e.group.numel)
        object.__setattr__(self, "weights_bytes", total)
        object.__setattr__(self, "_by_role", tuple(roles.items()))
        object.__setattr__(self, "_by_format", tuple((f, b, n) for f, (b, n) in fmts.items()))

    def bytes_by_role(self) -> dict[str, int]:
        return dict(self._by_role)

    def bytes_by_format(self) -> dict[str, int]:
        return {f: b for f, b, _ in self._by_format}

    def params_by_format(self) -> dict[str, int]:
        return {f: n for f, _, n in self._by_format}
