"""EXAONE 4.0 (LGAI-EXAONE/EXAONE-4.0-32B, -1.2B): post-norm decoder with per-head q/k norms and
3 local : 1 global layers.

Source: transformers 5.25.0 ``models/exaone4/{configuration,modeling}_exaone4.py``
(Exaone4Config, Exaone4Attention, Exaone4DecoderLayer).

Per layer: ``self_attn.{q,k,v,o}_proj`` (no bias), ``self_attn.{q,k}_norm [head_dim]`` (per
head), ``post_attention_layernorm`` and ``post_feedforward_layernorm`` (no input norm), gated
MLP. ``head_dim`` from the config, else hidden // heads.
Layers: ``layer_types`` as written. When omitted, Exaone4Config derives them from an integer
``sliding_window_pattern`` (sliding unless ``(i + 1) % pattern == 0``); the published configs
write the pattern as a string such as ``"LLLG"`` (L local = sliding, G global = full), which is
read here cyclically. ``sliding_window`` null means no windowed layer (Exaone4Config sets the
pattern to 0 then).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vramplan.errors import ConfigError
from vramplan.families._dense import (
    decoder_tensors,
    dense_spec,
    post_norm_layer,
    read_layer_types,
    with_defaults,
)
from vramplan.inventory import TensorGroup
from vramplan.model import hf_config
from vramplan.model.spec import AttnKind, LayerSpec, ModelSpec

MODEL_TYPES = ("exaone4",)
ARCHITECTURES = ("Exaone4ForCausalLM",)
HANDLES = frozenset({"sliding_window", "layer_types", "pattern"})

_DEFAULTS: dict[str, object] = {"tie_word_embeddings": False, "max_position_embeddings": 2048,
                                "sliding_window": 4096, "num_key_value_heads": 32}


def layer_types(text: Mapping[str, Any], n_layers: int, window: int | None) -> tuple[list[str],
                                                                                     list[str]]:
    """Per-layer types and notes (see the module docstring)."""
    types = read_layer_types(text, n_layers)
    if types is not None:
        return types, []
    if window is None:
        return ["full_attention"] * n_layers, []
    pattern = text.get("sliding_window_pattern", 4)
    if isinstance(pattern, str) and pattern and set(pattern.upper()) <= {"L", "G"}:
        p = pattern.upper()
        note = (f"layer_types absent: sliding_window_pattern {pattern!r} read cyclically "
                "(L sliding, G full)")
        return ["sliding_attention" if p[i % len(p)] == "L" else "full_attention"
                for i in range(n_layers)], [note]
    if isinstance(pattern, int) and not isinstance(pattern, bool) and pattern > 0:
        return ["sliding_attention" if (i + 1) % pattern else "full_attention"
                for i in range(n_layers)], []
    raise ConfigError("config.json sliding_window_pattern",
                      f"{pattern!r} is neither a positive integer nor an L/G string",
                      "add layer_types to config.json")


def spec(cfg: Mapping[str, Any], model_id: str,
         extra_quant: Mapping[str, Any] | None) -> ModelSpec:
    cfg2, notes = with_defaults(cfg, _DEFAULTS, "transformers 5.25.0 Exaone4Config",
                                keep_null=frozenset({"sliding_window"}))
    text = hf_config.text_config(cfg2)
    n_layers = hf_config.read_int(text, "num_hidden_layers")
    hidden = hf_config.read_int(text, "hidden_size")
    heads = hf_config.read_int(text, "num_attention_heads")
    kv_heads = hf_config.read_int(text, "num_key_value_heads", heads)
    head_dim = hf_config.read_int(text, "head_dim") if text.get("head_dim") is not None \
        else hidden // heads
    window = hf_config.read_opt_int(text, "sliding_window")
    types, more = layer_types(text, n_layers, window)
    notes += more
    kinds: list[AttnKind] = ["sliding" if t == "sliding_attention" and window else "full"
                             for t in types]
    return dense_spec(cfg2, model_id, extra_quant, model_type="exaone4", family="exaone4",
                      kinds=kinds, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                      window=window, notes=notes)


def _exaone_layer(spec: ModelSpec, lp: str, layer: LayerSpec) -> list[TensorGroup]:
    a = layer.attention
    return post_norm_layer(spec, lp, layer, a.head_dim, a.head_dim)


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    """Embed, per layer (q/k/v/o, per-head q/k norms, 2 post-norms, gated MLP), final norm,
    lm_head unless tied."""
    return decoder_tensors(spec, _exaone_layer), []
