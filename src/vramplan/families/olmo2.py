"""OLMo 2 and Olmo 3 (allenai): post-norm decoders with full-width q/k RMSNorm.

Source: transformers 5.25.0 ``models/olmo2/{configuration,modeling}_olmo2.py`` (Olmo2Config,
Olmo2Attention, Olmo2DecoderLayer) and ``models/olmo3/{configuration,modeling}_olmo3.py``
(Olmo3Config, Olmo3Attention).

Per layer:
  ``self_attn.{q,k,v,o}_proj`` (bias on all four when ``attention_bias``);
  ``self_attn.q_norm [heads*head_dim]`` and ``self_attn.k_norm [kv_heads*head_dim]``: one RMSNorm
  over the whole projection, not per head;
  ``post_attention_layernorm`` and ``post_feedforward_layernorm`` (norm after each block, no
  ``input_layernorm``); gated MLP without biases.
Olmo 3 adds sliding-window layers: ``layer_types`` defaults (Olmo3Config.__post_init__) to
``sliding_attention`` unless ``(i + 1) % 4 == 0``, ``sliding_window`` to 4096.
"""

from __future__ import annotations

import dataclasses
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

MODEL_TYPES = ("olmo2", "olmo3")
ARCHITECTURES = ("Olmo2ForCausalLM", "Olmo3ForCausalLM")
# Olmo 3's windowed layers; an olmo2 config carrying these keys is refused in ``spec`` (OLMo 2
# has no windowed layers).
HANDLES = frozenset({"sliding_window", "layer_types"})

_ARCH_TYPES = {"Olmo2ForCausalLM": "olmo2", "Olmo3ForCausalLM": "olmo3"}
_DEFAULTS: dict[str, dict[str, object]] = {
    "olmo2": {"tie_word_embeddings": False, "max_position_embeddings": 2048},
    "olmo3": {"tie_word_embeddings": False, "max_position_embeddings": 2048,
              "sliding_window": 4096},
}


def olmo3_layer_types(text: Mapping[str, Any], n_layers: int) -> list[str]:
    """Olmo3Config.__post_init__: ``sliding_attention if (i + 1) % 4 != 0 else full_attention``
    when ``layer_types`` is omitted."""
    types = read_layer_types(text, n_layers)
    if types is None:
        return ["sliding_attention" if (i + 1) % 4 != 0 else "full_attention"
                for i in range(n_layers)]
    return types


def spec(cfg: Mapping[str, Any], model_id: str,
         extra_quant: Mapping[str, Any] | None) -> ModelSpec:
    text0 = hf_config.text_config(cfg)
    model_type = str(text0.get("model_type") or cfg.get("model_type"))
    archs = cfg.get("architectures")
    arch = archs[0] if isinstance(archs, list) and archs else None
    # the class named in architectures decides (a config renamed to an unknown model_type is
    # recovered as "olmo2", the registry's first type of this family)
    if arch in _ARCH_TYPES:
        model_type = _ARCH_TYPES[arch]
    elif model_type not in _DEFAULTS:
        model_type = "olmo2"
    cfg2, notes = with_defaults(cfg, _DEFAULTS[model_type],
                                f"transformers 5.25.0 {model_type.capitalize()}Config",
                                keep_null=frozenset({"sliding_window"}))
    text = hf_config.text_config(cfg2)
    n_layers = hf_config.read_int(text, "num_hidden_layers")
    hidden = hf_config.read_int(text, "hidden_size")
    heads = hf_config.read_int(text, "num_attention_heads")
    kv_heads = hf_config.read_int(text, "num_key_value_heads", heads)
    head_dim = hf_config.read_int(text, "head_dim") if text.get("head_dim") is not None \
        else hidden // heads
    window = hf_config.read_opt_int(text, "sliding_window")
    if model_type == "olmo2":
        if text.get("layer_types") is not None or window is not None:
            raise ConfigError("config.json sliding_window / layer_types",
                              "OLMo 2 has no sliding-window layers (Olmo2Config)",
                              "use model_type olmo3 for a windowed OLMo, or drop the keys")
        kinds: list[AttnKind] = ["full"] * n_layers
    else:
        types = olmo3_layer_types(text, n_layers)
        if text.get("layer_types") is None:
            notes.append("layer_types absent: Olmo3Config default, sliding_attention except "
                         "every 4th layer (full_attention)")
        kinds = ["sliding" if t == "sliding_attention" and window is not None else "full"
                 for t in types]
        if "sliding_attention" in types and window is None:
            notes.append("sliding_window is null: the sliding_attention layers attend over the "
                         "whole context (Olmo3Attention.sliding_window = None)")

    s = dense_spec(cfg2, model_id, extra_quant, model_type=model_type, family="olmo2",
                   kinds=kinds, heads=heads, kv_heads=kv_heads, head_dim=head_dim, window=window,
                   notes=notes)
    bias = bool(text.get("attention_bias", False))
    # o_proj has a bias too when attention_bias (Olmo2Attention); the MLP never has one.
    return dataclasses.replace(s, attention_bias=bias, attention_out_bias=bias, mlp_bias=False,
                               qk_norm=False)


def _olmo_layer(spec: ModelSpec, lp: str, layer: LayerSpec) -> list[TensorGroup]:
    a = layer.attention
    return post_norm_layer(spec, lp, layer, a.num_heads * a.head_dim, a.num_kv_heads * a.head_dim)


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    """Embed, per layer (q/k/v/o, full-width q_norm/k_norm, 2 post-norms, gated MLP), final norm,
    lm_head unless tied."""
    return decoder_tensors(spec, _olmo_layer), []
