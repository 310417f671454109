"""SmolLM3 (HuggingFaceTB/SmolLM3-3B): a Llama-layout decoder with NoPE layers.

Source: transformers 5.25.0 ``models/smollm3/configuration_smollm3.py`` (SmolLM3Config) and
``modeling_smollm3.py`` (SmolLM3Attention, SmolLM3DecoderLayer).

* Tensors are Llama's: q/k/v/o (bias = ``attention_bias``), gated MLP (bias = ``mlp_bias``),
  ``input_layernorm`` + ``post_attention_layernorm``; ``tie_word_embeddings`` defaults to True.
* ``no_rope_layers[i] == 0`` marks a NoPE layer (no rotary embedding); default
  ``int((i + 1) % no_rope_layer_interval != 0)``. It changes no tensor and no cache size.
* ``layer_types`` default (when omitted): ``sliding_attention`` for NoPE layers when
  ``use_sliding_window`` and ``sliding_window`` are set, else ``full_attention``. A layer attends
  through a window only when ``use_sliding_window`` is true and its type is
  ``sliding_attention`` (SmolLM3Attention.sliding_window).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vramplan.errors import ConfigError
from vramplan.families._dense import decoder_tensors, read_layer_types, with_defaults
from vramplan.inventory import TensorGroup, _layer
from vramplan.model import hf_config
from vramplan.model.spec import AttnKind, LayerSpec, ModelSpec

MODEL_TYPES = ("smollm3",)
ARCHITECTURES = ("SmolLM3ForCausalLM",)
HANDLES = frozenset({"pattern", "layer_types", "sliding_window"})

_SOURCE = "transformers 5.25.0 SmolLM3Config"
_DEFAULTS: dict[str, object] = {"tie_word_embeddings": True, "max_position_embeddings": 32768}


def layer_kinds(text: Mapping[str, Any], n_layers: int) -> tuple[list[AttnKind], list[int],
                                                                    list[str]]:
    """Per layer (attention kind, uses-RoPE flag) and notes, as SmolLM3Config.__post_init__ and
    SmolLM3Attention derive them."""
    notes: list[str] = []
    interval = hf_config.read_int(text, "no_rope_layer_interval", 4)
    rope = hf_config.read_int_list(text, "no_rope_layers") or [
        int((i + 1) % interval != 0) for i in range(n_layers)]
    if len(rope) < n_layers:
        raise ConfigError("config.json no_rope_layers", f"has {len(rope)} entries for {n_layers} "
                          "layers", "make it as long as num_hidden_layers")
    use_sw = bool(text.get("use_sliding_window", False))
    window = hf_config.read_opt_int(text, "sliding_window")
    types = read_layer_types(text, n_layers)
    if types is None:
        types = ["sliding_attention" if use_sw and window is not None and not rope[i]
                 else "full_attention" for i in range(n_layers)]
    kinds: list[AttnKind] = []
    for t in types:
        sliding = t == "sliding_attention" and use_sw and window is not None
        kinds.append("sliding" if sliding else "full")
    if "sliding_attention" in types and "sliding" not in kinds:
        notes.append("layer_types lists sliding_attention layers but use_sliding_window is off "
                     "(or sliding_window unset): they attend over the whole context "
                     "(transformers SmolLM3Attention)")
    return kinds, rope[:n_layers], notes


def spec(cfg: Mapping[str, Any], model_id: str,
         extra_quant: Mapping[str, Any] | None) -> ModelSpec:
    cfg2, notes = with_defaults(cfg, _DEFAULTS, _SOURCE)
    text = hf_config.text_config(cfg2)
    n_layers = hf_config.read_int(text, "num_hidden_layers")
    kinds, rope, kind_notes = layer_kinds(text, n_layers)
    heads = hf_config.read_int(text, "num_attention_heads")
    kv_heads = hf_config.read_int(text, "num_key_value_heads", heads)
    hidden = hf_config.read_int(text, "hidden_size")
    head_dim = hf_config.read_int(text, "head_dim") if text.get("head_dim") is not None \
        else hidden // heads
    window = hf_config.read_opt_int(text, "sliding_window")

    def layer_fn(t: Mapping[str, Any], i: int) -> LayerSpec:
        attn = hf_config.attention_spec(t, "smollm3", kinds[i], heads, kv_heads, head_dim,
                                        window, None)
        return LayerSpec(index=i, attention=attn,
                         mlp=hf_config.core_mlp(t, "llama", "smollm3", i, n_layers))

    s = hf_config.generic_spec(cfg2, model_id, extra_quant, model_type="smollm3",
                               family="smollm3", notes=notes + kind_notes, layer_fn=layer_fn)
    return dataclasses.replace(s, family_params=(("no_rope_layers", tuple(rope)),))


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    """Llama layout: embed, per layer q/k/v/o + 2 norms + gated MLP, final norm, lm_head."""
    return decoder_tensors(spec, lambda s, lp, layer: _layer(s, lp, layer)), []
