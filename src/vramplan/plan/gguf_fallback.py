"""Price a GGUF file type when ``vramplan.quant.gguf_pricing`` is not installed yet.

``quant.schemes.quantize_model`` delegates GGUF mixes to ``quant.gguf_pricing``; until that module
lands the planner still needs llama.cpp options, so ``priced()`` falls back to this: each tensor
group of the inventory is renamed to its GGUF tensor (``quant.gguf_mix.hf_to_gguf_name``; the
experts of a layer merge into one ``ffn_*_exps`` tensor of ggml shape ``(in, out, n_expert)``),
``quant.gguf_mix.predict_mix`` picks the type ``llama-quantize`` writes for each, and the bytes are
``ggml_types.tensor_bytes`` of that type. Groups the converter does not map (vision towers) keep
their checkpoint bytes. Once ``gguf_pricing`` exists, ``priced()`` uses ``api._priced`` instead.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from typing import Any

from vramplan.errors import InputError
from vramplan.inventory import TensorGroup, TensorInventory
from vramplan.quant.schemes import QuantizedModel, QuantScheme, WeightEntry, scheme_from_name

__all__ = ["gguf_pricing_available", "price_gguf", "priced", "screen_priced"]


def gguf_pricing_available() -> bool:
    """True once the pipeline's own GGUF pricing module is installed."""
    return importlib.util.find_spec("vramplan.quant.gguf_pricing") is not None


def _gguf_tensors(g: TensorGroup, model_type: str, hparams: dict[str, Any]) -> dict[str, tuple[
        int, ...]]:
    """GGUF name -> ggml shape of the tensor(s) one inventory group becomes."""
    from vramplan.quant.gguf_mix import hf_to_gguf_name, hf_to_gguf_shapes

    if g.count > 1 and "{e}" in g.name:  # per-expert group: one merged 3-D tensor
        name = hf_to_gguf_name(g.name.replace("{e}", "0"), model_type)
        if name is None:
            return {}
        return {name: (*reversed(g.shape), g.count)}
    return hf_to_gguf_shapes({g.name: g.shape}, model_type, hparams)


_NAMES: dict[int, tuple[TensorInventory, list[dict[str, tuple[int, ...]]],
                        dict[str, tuple[int, ...]]]] = {}


def _names(inv: TensorInventory, hp: dict[str, Any]) -> tuple[list[dict[str, tuple[int, ...]]],
                                                               dict[str, tuple[int, ...]]]:
    """Per inventory group its GGUF tensors, and all of them (memoized: quant-independent)."""
    hit = _NAMES.get(id(inv))
    if hit is not None and hit[0] is inv:
        return hit[1], hit[2]
    per_group: list[dict[str, tuple[int, ...]]] = []
    shapes: dict[str, tuple[int, ...]] = {}
    for g in inv.tensors:
        try:
            t = _gguf_tensors(g, inv.spec.model_type, hp)
        except (InputError, KeyError, ValueError):
            t = {}
        t = {n: s for n, s in t.items() if n not in shapes}
        per_group.append(t)
        shapes.update(t)
    if len(_NAMES) > 128:
        _NAMES.clear()
    _NAMES[id(inv)] = (inv, per_group, shapes)
    return per_group, shapes


def price_gguf(inv: TensorInventory, scheme: QuantScheme) -> QuantizedModel:
    """Every inventory group priced as ``llama-quantize <ftype>`` would store it."""
    from vramplan.quant.ggml_types import tensor_bytes
    from vramplan.quant.gguf_mix import MixContext, predict_mix

    spec = inv.spec
    a0 = spec.layers[0].attention
    moe = next((la.mlp for la in spec.layers if la.mlp.kind == "moe"), None)
    hp = {"num_attention_heads": a0.num_heads, "qk_nope_head_dim": a0.qk_nope_head_dim,
          "v_head_dim": a0.v_head_dim}
    per_group, shapes = _names(inv, hp)
    if not shapes:
        raise InputError("--quant", f"no GGUF tensor names for model_type {spec.model_type!r}",
                         "use a safetensors quantization (awq, fp8) for this model")
    dense_70b = not spec.is_moe and 60e9 < inv.params_total < 80e9
    ctx = MixContext(n_layer=spec.num_layers, n_expert=moe.num_experts if moe else 0,
                     n_head=a0.num_heads, n_head_kv=a0.num_kv_heads,
                     tied_embeddings=spec.tie_word_embeddings,
                     model_size_class="70B" if dense_70b else None)
    mix = predict_mix(shapes, scheme.gguf_ftype, ctx)
    entries = []
    for g, t in zip(inv.tensors, per_group, strict=True):
        if t:
            b = sum(tensor_bytes(mix[n], s) for n, s in t.items())
            fmt = "+".join(sorted({mix[n] for n in t}))
        else:
            b, fmt = g.numel * spec.bytes_per_param, "bf16"
        entries.append(WeightEntry(g, b, fmt))
    return QuantizedModel(inv, scheme, tuple(entries), 0,
                          notes=("GGUF bytes from vramplan.plan.gguf_fallback (llama-quantize type "
                                 "rules; quant.gguf_pricing not installed)",))


@lru_cache(maxsize=256)
def _fallback_cached(lm: Any, quant: str | None) -> QuantizedModel:
    return price_gguf(lm.inventory, scheme_from_name(quant or ""))


def priced(lm: Any, quant: str | None) -> QuantizedModel:
    """``api._priced`` when it can price ``quant``, else the GGUF fallback above."""
    scheme = scheme_from_name(quant) if quant else None
    if scheme is not None and scheme.method == "gguf" and not gguf_pricing_available():
        return _fallback_cached(lm, quant)
    return api_priced(lm, quant)


def screen_priced(lm: Any, quant: str | None) -> QuantizedModel:
    """For the planner's screen: GGUF through this module always (same bytes as
    ``quant.gguf_pricing``, which expands every expert by name and is ~20-50x slower on large
    MoE models); the engine check still goes through ``api.estimate``."""
    scheme = scheme_from_name(quant) if quant else None
    if scheme is not None and scheme.method == "gguf":
        return _fallback_cached(lm, quant)
    return api_priced(lm, quant)


def api_priced(lm: Any, quant: str | None) -> QuantizedModel:
    from vramplan import api

    return api._priced(lm, quant)
