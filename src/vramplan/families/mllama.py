"""Llama 3.2 Vision (mllama): a Llama text decoder with interleaved cross-attention layers, plus a
tiled ViT with a gated global transformer.

Source: transformers 5.25.0 ``models/mllama/configuration_mllama.py`` (MllamaConfig,
MllamaTextConfig, MllamaVisionConfig) and ``modeling_mllama.py`` (MllamaTextModel,
MllamaSelfAttentionDecoderLayer, MllamaCrossAttentionDecoderLayer, MllamaTextCrossAttention,
MllamaVisionModel, MllamaVisionEncoderLayer, MllamaModel.multi_modal_projector,
MllamaForConditionalGeneration._prepare_static_cache).

Text model (``num_hidden_layers`` layers in all):
* a layer listed in ``cross_attention_layers`` (default [3, 8, ..., 38]) is a cross-attention
  decoder layer INSTEAD of a self-attention one: ``cross_attn.{q,k,v,o}_proj``, per-head
  ``cross_attn.{q,k}_norm [head_dim]``, scalar gates ``cross_attn_attn_gate`` and
  ``cross_attn_mlp_gate``, the two RMSNorms and the gated MLP. Its keys and values are the
  projected image tokens, so its cache is sized by those, not by the text:
  ``max_num_tiles * ((image_size // patch_size)**2 + 1)`` tokens per image (4 * 1025 = 4100 for
  the 11B/90B configs), as ``_prepare_static_cache`` allocates it;
* every other layer is a Llama self-attention layer;
* a top-level ``mllama_text_model`` config is MllamaForCausalLM: the same text model under
  ``model.*`` / ``lm_head``, no tower, cross-attention layers holding no image tokens;
* ``embed_tokens`` has ``vocab_size + 8`` rows (image and padding tokens); ``lm_head`` has
  ``vocab_size`` rows and is never tied (MllamaForConditionalGeneration has no tied keys).
head_dim is ``hidden_size // num_attention_heads`` in both attentions.

Checkpoint naming (safetensors; transformers renames on load, conversion_mapping.py "mllama"):
``language_model.model.*``, ``language_model.lm_head.weight``, ``vision_model.*``,
``multi_modal_projector.{weight,bias}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vramplan.errors import ConfigError
from vramplan.families._dense import decoder_tensors, with_defaults
from vramplan.inventory import TensorGroup, _attention, _gated_mlp, _layer, _vec
from vramplan.model import hf_config
from vramplan.model.spec import AttentionSpec, LayerSpec, ModelSpec, TowerSpec, freeze

MODEL_TYPES = ("mllama", "mllama_text_model")
ARCHITECTURES = ("MllamaForConditionalGeneration", "MllamaForCausalLM")
HANDLES = frozenset({"cross_attention", "vision"})

_TEXT_SOURCE = "transformers 5.25.0 MllamaTextConfig"
_TEXT_DEFAULTS: dict[str, object] = {
    "cross_attention_layers": [3, 8, 13, 18, 23, 28, 33, 38],
    "max_position_embeddings": 131072,
}
# MllamaVisionConfig class defaults (configuration_mllama.py, 5.25.0).
VISION_DEFAULTS: dict[str, object] = {
    "hidden_size": 1280, "num_hidden_layers": 32, "num_global_layers": 8, "attention_heads": 16,
    "num_channels": 3, "intermediate_size": 5120, "vision_output_dim": 7680, "image_size": 448,
    "patch_size": 14, "max_num_tiles": 4,
    "supported_aspect_ratios": [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]],
}


def image_tokens(vc: Mapping[str, Any]) -> int:
    """Encoder tokens one image puts in every cross-attention layer's cache.

    ``max_num_tiles * ((image_size // patch_size)**2 + 1)`` (one class token per tile); the
    vision model pads each tile to a multiple of 8 patches internally but slices the padding off
    before the projector (MllamaVisionModel.forward), and ``_prepare_static_cache`` allocates
    exactly this many per image. ASSUMPTION: every image uses all ``max_num_tiles`` tiles (a
    cache sized for the largest image, as the static cache is).
    """
    p = "vision_config."
    image = hf_config.read_int(vc, "image_size", field_prefix=p)
    patch = hf_config.read_int(vc, "patch_size", field_prefix=p)
    tiles = hf_config.read_int(vc, "max_num_tiles", field_prefix=p)
    return tiles * ((image // patch) ** 2 + 1)


def _vision_config(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    vc_raw = cfg.get("vision_config")
    notes: list[str] = []
    if vc_raw is None:
        vc: dict[str, Any] = {}
        notes.append("vision_config absent: MllamaVisionConfig defaults (the 11B/90B tower)")
    elif isinstance(vc_raw, Mapping):
        vc = dict(vc_raw)
    else:
        raise ConfigError("config.json vision_config", "must be an object",
                          "fix vision_config in config.json")
    for k, v in VISION_DEFAULTS.items():
        if vc.get(k) is None:
            vc[k] = v
    if not isinstance(vc["supported_aspect_ratios"], list) or not vc["supported_aspect_ratios"]:
        raise ConfigError("config.json vision_config.supported_aspect_ratios",
                          "must be a non-empty list of [rows, cols]", "fix it in config.json")
    return vc, notes


def spec(cfg: Mapping[str, Any], model_id: str,
         extra_quant: Mapping[str, Any] | None) -> ModelSpec:
    cfg2, notes = with_defaults(cfg, _TEXT_DEFAULTS, _TEXT_SOURCE)
    text = hf_config.text_config(cfg2)
    # A top-level MllamaTextConfig is MllamaForCausalLM: the text model alone (model.*,
    # lm_head), no tower, so its cross-attention layers never receive image states.
    text_only = cfg.get("model_type") == "mllama_text_model" or (
        cfg.get("architectures") == ["MllamaForCausalLM"] and "text_config" not in cfg)
    if text_only:
        vc: dict[str, Any] = {}
        notes.append("MllamaForCausalLM (text only): no vision tower; the cross-attention "
                     "layers are loaded but hold no image tokens")
    else:
        vc, vnotes = _vision_config(cfg)
        notes += vnotes
    n_layers = hf_config.read_int(text, "num_hidden_layers")
    hidden = hf_config.read_int(text, "hidden_size")
    heads = hf_config.read_int(text, "num_attention_heads")
    kv_heads = hf_config.read_int(text, "num_key_value_heads", heads)
    if hidden % heads:
        raise ConfigError("config.json text_config.hidden_size",
                          f"{hidden} is not divisible by num_attention_heads {heads}",
                          "fix the text config")
    head_dim = hidden // heads  # MllamaTextSelfAttention / CrossAttention ignore any head_dim
    cross = set(hf_config.read_int_list(text, "cross_attention_layers"))
    if any(i >= n_layers for i in cross):
        raise ConfigError("config.json text_config.cross_attention_layers",
                          f"lists a layer beyond the {n_layers} layers",
                          "use indices below num_hidden_layers")
    enc = 0 if text_only else image_tokens(vc)

    def layer_fn(t: Mapping[str, Any], i: int) -> LayerSpec:
        mlp = hf_config.core_mlp(t, "llama", "mllama", i, n_layers)
        if i in cross:
            attn = AttentionSpec(kind="cross", num_heads=heads, num_kv_heads=kv_heads,
                                 head_dim=head_dim, v_head_dim=head_dim, encoder_tokens=enc)
        else:
            attn = AttentionSpec(kind="full", num_heads=heads, num_kv_heads=kv_heads,
                                 head_dim=head_dim, v_head_dim=head_dim)
        return LayerSpec(index=i, attention=attn, mlp=mlp)

    if text.get("tie_word_embeddings") or cfg.get("tie_word_embeddings"):
        notes.append("tie_word_embeddings ignored: Mllama's embedding has vocab_size + 8 rows "
                     "and lm_head is never tied (MllamaForConditionalGeneration)")
    # vLLM served Mllama only on its V0 engine; V0 encoder-decoder support was removed
    # (vllm-project/vllm PR #24907, merged 2025-09-15: Whisper is the one encoder-decoder model
    # left).
    notes.append("vLLM releases after the V0 engine's removal (PR #24907, Sept 2025) do not "
                 "serve Mllama; transformers and SGLang do")
    cfg3 = dict(cfg2)
    if text_only:
        cfg3["tie_word_embeddings"] = False
    else:
        cfg3["text_config"] = {**text, "tie_word_embeddings": False}
    s = hf_config.generic_spec(cfg3, model_id, extra_quant, model_type="mllama", family="mllama",
                               notes=notes, layer_fn=layer_fn)
    params = (("cross_attention_layers", tuple(sorted(cross))), ("image_tokens", enc))
    if text_only:
        return dataclasses.replace(s, tie_word_embeddings=False, attention_bias=False,
                                   mlp_bias=False, family_params=params)
    vc["text_hidden_size"] = hidden
    tower = TowerSpec(kind="vision", model_type=str(vc.get("model_type", "mllama_vision_model")),
                      family="mllama_vision", config=_tower_items(vc), tokens_per_item=1)
    return dataclasses.replace(s, tie_word_embeddings=False, attention_bias=False,
                               mlp_bias=False, prefix="language_model.model",
                               lm_head_name="language_model.lm_head", towers=(tower,),
                               family_params=params)


def _tower_items(vc: Mapping[str, Any]) -> tuple[tuple[str, object], ...]:
    """The tower's config keys that size tensors, frozen (label maps etc. dropped), with
    ``num_attention_heads`` aliasing ``attention_heads``."""
    keep = set(VISION_DEFAULTS) | {"model_type", "text_hidden_size"}
    items = {k: v for k, v in vc.items() if k in keep}
    # the engines' tower code reads num_attention_heads (MllamaVisionConfig.attribute_map)
    items["num_attention_heads"] = items["attention_heads"]
    frozen = freeze(items)
    assert isinstance(frozen, tuple)
    return frozen


def _cross_layer(spec: ModelSpec, lp: str, layer: LayerSpec) -> list[TensorGroup]:
    """MllamaCrossAttentionDecoderLayer: cross_attn q/k/v/o + per-head q/k norms, 2 gates, 2
    norms, gated MLP."""
    i, h, a = layer.index, spec.hidden_size, layer.attention
    p = f"{lp}.cross_attn"
    out = _attention(dataclasses.replace(spec, qk_norm=False), p, i, a, "attention")
    out += [_vec(f"{p}.q_norm.weight", a.head_dim, "norm", i),
            _vec(f"{p}.k_norm.weight", a.head_dim, "norm", i),
            _vec(f"{lp}.cross_attn_attn_gate", 1, "attention", i),
            _vec(f"{lp}.cross_attn_mlp_gate", 1, "mlp", i)]
    out += [_vec(f"{lp}.{n}.weight", h, "norm", i)
            for n in ("input_layernorm", "post_attention_layernorm")]
    out += _gated_mlp(f"{lp}.mlp", h, layer.mlp.intermediate_size, "mlp", i)
    return out


def _text_layer(spec: ModelSpec, lp: str, layer: LayerSpec) -> list[TensorGroup]:
    if layer.attention.kind == "cross":
        return _cross_layer(spec, lp, layer)
    return _layer(spec, lp, layer)


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    """Embed ``[vocab + 8, hidden]``, self/cross layers, final norm, lm_head ``[vocab, hidden]``."""
    return decoder_tensors(spec, _text_layer, embed_rows=spec.vocab_size + 8), []
