"""Cohere 2 (Command-R7B, Command-A): parallel attention + MLP blocks, 3 sliding : 1 full layers.

Source: transformers 5.25.0 ``models/cohere2/{configuration,modeling}_cohere2.py``
(Cohere2Config, Cohere2Attention, Cohere2DecoderLayer, Cohere2LayerNorm).

* One ``input_layernorm`` per layer feeds both the attention and the MLP (parallel block);
  Cohere2LayerNorm has a weight and no bias; the final ``model.norm`` likewise.
* q/k/v/o (bias = ``attention_bias``), gated MLP without bias.
* ``head_dim`` is always ``hidden_size // num_attention_heads``: Cohere2Config.__post_init__
  overwrites any ``head_dim`` in the config.
* ``layer_types`` default: ``sliding_attention`` unless ``(i + 1) % sliding_window_pattern == 0``
  (pattern default 4); sliding layers attend through ``sliding_window`` (default 4096).
* ``tie_word_embeddings`` defaults to True (the checkpoints' ``use_embedding_sharing``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vramplan.families._dense import decoder_tensors, dense_spec, read_layer_types, with_defaults
from vramplan.inventory import TensorGroup, _attention, _gated_mlp, _vec
from vramplan.model import hf_config
from vramplan.model.spec import AttnKind, LayerSpec, ModelSpec

MODEL_TYPES = ("cohere2",)
ARCHITECTURES = ("Cohere2ForCausalLM",)
HANDLES = frozenset({"sliding_window", "layer_types", "pattern"})

_DEFAULTS: dict[str, object] = {"tie_word_embeddings": True, "max_position_embeddings": 8192,
                                "sliding_window": 4096}


def layer_types(text: Mapping[str, Any], n_layers: int) -> list[str]:
    """``layer_types`` as written, else Cohere2Config's default from ``sliding_window_pattern``."""
    types = read_layer_types(text, n_layers)
    if types is None:
        pattern = hf_config.read_int(text, "sliding_window_pattern", 4)
        return ["sliding_attention" if (i + 1) % pattern else "full_attention"
                for i in range(n_layers)]
    return types


def spec(cfg: Mapping[str, Any], model_id: str,
         extra_quant: Mapping[str, Any] | None) -> ModelSpec:
    cfg2, notes = with_defaults(cfg, _DEFAULTS, "transformers 5.25.0 Cohere2Config",
                                keep_null=frozenset({"sliding_window"}))
    text = hf_config.text_config(cfg2)
    n_layers = hf_config.read_int(text, "num_hidden_layers")
    hidden = hf_config.read_int(text, "hidden_size")
    heads = hf_config.read_int(text, "num_attention_heads")
    kv_heads = hf_config.read_int(text, "num_key_value_heads", heads)
    # Cohere2Attention (transformers 5.25.0): getattr(config, "head_dim", None) or
    # hidden_size // num_attention_heads
    head_dim = hf_config.read_int(text, "head_dim") if text.get("head_dim") else hidden // heads
    window = hf_config.read_opt_int(text, "sliding_window")
    types = layer_types(text, n_layers)
    kinds: list[AttnKind] = ["sliding" if t == "sliding_attention" and window else "full"
                             for t in types]
    return dense_spec(cfg2, model_id, extra_quant, model_type="cohere2", family="cohere2",
                      kinds=kinds, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                      window=window, notes=notes)


def _cohere_layer(spec: ModelSpec, lp: str, layer: LayerSpec) -> list[TensorGroup]:
    i, h = layer.index, spec.hidden_size
    out = _attention(spec, f"{lp}.self_attn", i, layer.attention, "attention")
    out.append(_vec(f"{lp}.input_layernorm.weight", h, "norm", i))
    out += _gated_mlp(f"{lp}.mlp", h, layer.mlp.intermediate_size, "mlp", i)
    return out


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    """Embed, per layer (q/k/v/o, one input_layernorm, gated MLP), final norm, lm_head unless
    tied (default tied)."""
    return decoder_tensors(spec, _cohere_layer), []
