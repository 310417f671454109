"""Gemma 3n: ``gemma3n`` (Gemma3nForConditionalGeneration) and ``gemma3n_text`` (Gemma3nForCausalLM).

Source: transformers 5.25.0 ``models/gemma3n/{configuration,modeling}_gemma3n.py``.

Text decoder layer (Gemma3nTextDecoderLayer):

* attention: q_proj [heads*hd, H], q_norm [hd], o_proj [H, heads*hd]; layers that keep their own
  cache also k_proj / v_proj [kv*hd, H] and k_norm [hd] (v_norm has no weight). The last
  ``num_kv_shared_layers`` layers reuse the cache of the last earlier layer of the same type
  (Gemma3nTextConfig.kv_sharing_modes) and have no k/v projections in transformers 5.25.0.
  NOTE: the published safetensors still hold k/v for those layers (transformers drops them on
  load: ``_keys_to_ignore_on_load_unexpected``); gemma-3n-E4B carries 15 x (2 x 512 x 2048 +
  256) = 31,461,120 such values. We count what transformers builds; vLLM
  (vllm/model_executor/models/gemma3n.py@034f08e) keeps a full qkv_proj in every layer and loads
  them (~63 MB in bf16 more than counted here), though shared layers store no KV.
* MLP: GeGLU with a per-layer ``intermediate_size`` (int or list). ``activation_sparsity_pattern``
  (Gaussian top-k on the gate) changes compute, not tensors.
* four RMSNorms; AltUp (n = ``altup_num_inputs``): correct_output_scale [H], correction_coefs
  [n, n], prediction_coefs [n^2, n], modality_router [n, H], router_norm [H]; LAuReL:
  linear_left [rank, H], linear_right [H, rank], post_laurel_norm [H]; per-layer input:
  per_layer_input_gate [P, H], per_layer_projection [H, P], post_per_layer_input_norm [H].
* model: embed_tokens [V, H], embed_tokens_per_layer [vocab_size_per_layer_input, L*P],
  per_layer_model_projection [L*P, H], per_layer_projection_norm [P], altup_projections and
  altup_unembed_projections (n - 1 each) [H, H], norm [H]; tied lm_head by default.

Layer layout: ``layer_types``, else full iff ``(i + 1) % 5 == 0``.

Towers (``families/gemma_towers.py``): the timm MobileNetV5-300M vision encoder and the USM
conformer audio encoder, each with a Gemma3nMultimodalEmbedder. Names follow the checkpoint
(``model.language_model.*``, ``model.vision_tower.timm_model.*``, ``model.audio_tower.*``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vramplan.errors import ConfigError
from vramplan.families.gemma3 import layer_kinds, replace_text, with_defaults
from vramplan.families.gemma4 import _attention, _tower_config, int_param, kv_sources
from vramplan.inventory import TensorGroup, _gated_mlp, _lin, _vec
from vramplan.model import hf_config
from vramplan.model.spec import AttentionSpec, LayerSpec, MlpSpec, ModelSpec, TowerSpec

MODEL_TYPES = ("gemma3n", "gemma3n_text")
ARCHITECTURES = ("Gemma3nForConditionalGeneration", "Gemma3nForCausalLM")
HANDLES: frozenset[str] = frozenset({"sliding_window", "pattern", "layer_types", "per_layer_lists",
                                     "vision", "audio"})

# Gemma3nTextConfig class defaults (transformers 5.25.0).
TEXT_DEFAULTS: dict[str, object] = {
    "vocab_size": 262_400, "head_dim": 256, "num_key_value_heads": 2,
    "max_position_embeddings": 32_768, "sliding_window": 512, "tie_word_embeddings": True,
    "vocab_size_per_layer_input": 262_144, "hidden_size_per_layer_input": 256,
    "altup_num_inputs": 4, "num_kv_shared_layers": 15, "laurel_rank": 64,
}
VISION_DEFAULTS: dict[str, object] = {
    "architecture": "mobilenetv5_300m_enc", "hidden_size": 2048, "vocab_size": 128,
    "model_type": "gemma3n_vision",
}
AUDIO_DEFAULTS: dict[str, object] = {
    "vocab_size": 128, "input_feat_size": 128, "hidden_size": 1536,
    "conf_num_attention_heads": 8, "conf_num_hidden_layers": 12, "conf_conv_kernel_size": 5,
    "sscp_conv_channel_size": (128, 32), "sscp_conv_kernel_size": ((3, 3), (3, 3)),
    "sscp_conv_stride_size": ((2, 2), (2, 2)), "model_type": "gemma3n_audio",
}
VISION_TOKENS_DEFAULT = 256  # Gemma3nConfig.vision_soft_tokens_per_image
AUDIO_TOKENS_DEFAULT = 188  # Gemma3nConfig.audio_soft_tokens_per_image


def _intermediate(text: Mapping[str, Any], n_layers: int) -> list[int]:
    """Per-layer MLP width: ``intermediate_size`` as one int or a list of ``n_layers`` ints."""
    val = text.get("intermediate_size")
    if isinstance(val, list):
        if len(val) != n_layers or not all(isinstance(x, int) and not isinstance(x, bool)
                                           and x > 0 for x in val):
            raise ConfigError("config.json intermediate_size",
                              f"must be one positive integer or {n_layers} of them",
                              "fix intermediate_size in config.json")
        return list(val)
    return [hf_config.read_int(text, "intermediate_size")] * n_layers


def spec(cfg: Mapping[str, Any], model_id: str = "local",
         extra_quant: Mapping[str, Any] | None = None) -> ModelSpec:
    """config.json -> ModelSpec for gemma3n / gemma3n_text (see the module docstring)."""
    notes: list[str] = []
    top_type = str(cfg.get("model_type", ""))
    multimodal = top_type == "gemma3n" and isinstance(cfg.get("text_config"), Mapping)
    text = with_defaults(hf_config.text_config(cfg), TEXT_DEFAULTS, "gemma3n_text", notes)
    n_layers = hf_config.read_int(text, "num_hidden_layers")
    kinds = layer_kinds(text, n_layers, 5)
    if not text.get("layer_types"):
        notes.append("layer_types absent: every 5th layer full attention, the rest sliding "
                     "(Gemma3nTextConfig default layout)")
    window = hf_config.read_int(text, "sliding_window")
    heads = hf_config.read_int(text, "num_attention_heads")
    kv_heads = hf_config.read_int(text, "num_key_value_heads")
    head_dim = hf_config.read_int(text, "head_dim")
    if heads % kv_heads:
        raise ConfigError("config.json num_key_value_heads",
                          f"{kv_heads} does not divide num_attention_heads {heads}",
                          "fix num_key_value_heads in config.json")
    inters = _intermediate(text, n_layers)
    sources = kv_sources(kinds, hf_config.read_int0(text, "num_kv_shared_layers", 0))
    n_alt = hf_config.read_int(text, "altup_num_inputs")

    def layer_fn(_text: Mapping[str, Any], i: int) -> LayerSpec:
        kind = kinds[i]
        attn = AttentionSpec(kind=kind, num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim,
                             v_head_dim=head_dim,
                             window_tokens=window if kind == "sliding" else None,
                             kv_shared_with=sources[i])
        return LayerSpec(index=i, attention=attn,
                         mlp=MlpSpec(kind="dense", intermediate_size=inters[i]))

    flat = dict(text)
    flat["intermediate_size"] = max(inters)  # generic_spec's shared checks read one int
    base = hf_config.generic_spec(replace_text(cfg, flat), model_id, extra_quant,
                                  model_type="gemma3n_text", family="gemma3n", notes=notes,
                                  layer_fn=layer_fn)
    towers: list[TowerSpec] = []
    if multimodal:
        vc = cfg.get("vision_config")
        if isinstance(vc, Mapping):
            towers.append(TowerSpec(
                kind="vision", model_type="gemma3n_vision", family="gemma3n_vision",
                config=_tower_config(vc, VISION_DEFAULTS),
                tokens_per_item=hf_config.read_int0(cfg, "vision_soft_tokens_per_image",
                                                    VISION_TOKENS_DEFAULT)))
        ac = cfg.get("audio_config")
        if isinstance(ac, Mapping):
            towers.append(TowerSpec(
                kind="audio", model_type="gemma3n_audio", family="gemma3n_audio",
                config=_tower_config(ac, AUDIO_DEFAULTS),
                tokens_per_item=hf_config.read_int0(cfg, "audio_soft_tokens_per_image",
                                                    AUDIO_TOKENS_DEFAULT)))
    bias = bool(text.get("attention_bias", False))
    params: dict[str, object] = {
        "hidden_size_per_layer_input": hf_config.read_int(text, "hidden_size_per_layer_input"),
        "vocab_size_per_layer_input": hf_config.read_int(text, "vocab_size_per_layer_input"),
        "altup_num_inputs": n_alt,
        "laurel_rank": hf_config.read_int(text, "laurel_rank"),
    }
    notes.append("transformers 5.25.0 builds no k/v projections for the KV-shared layers; the "
                 "checkpoint still stores them (not counted)")
    return dataclasses.replace(
        base, towers=tuple(towers), qk_norm=True, norms_per_layer=4, attention_bias=bias,
        attention_out_bias=bias, mlp_bias=False, family_params=tuple(sorted(params.items())),
        prefix="model.language_model" if multimodal else "model", lm_head_name="lm_head",
        notes=tuple(dict.fromkeys([*base.notes, *notes])))


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    """Gemma3nTextModel tensors in checkpoint naming (module docstring)."""
    h, v, pre, n = spec.hidden_size, spec.vocab_size, spec.prefix, spec.num_layers
    ple = int_param(spec, "hidden_size_per_layer_input")
    vp = int_param(spec, "vocab_size_per_layer_input")
    alt = int_param(spec, "altup_num_inputs") or 1
    rank = int_param(spec, "laurel_rank")
    out = [TensorGroup(f"{pre}.embed_tokens.weight", (v, h), "embedding", None, "vocab"),
           TensorGroup(f"{pre}.embed_tokens_per_layer.weight", (vp, n * ple), "embedding", None,
                       "replicated"),
           _lin(f"{pre}.per_layer_model_projection.weight", n * ple, h, "mlp", None, "replicated"),
           _vec(f"{pre}.per_layer_projection_norm.weight", ple, "norm", None)]
    for j in range(alt - 1):
        out += [_lin(f"{pre}.altup_projections.{j}.weight", h, h, "mlp", None, "replicated"),
                _lin(f"{pre}.altup_unembed_projections.{j}.weight", h, h, "mlp", None,
                     "replicated")]
    for layer in spec.layers:
        i = layer.index
        lp = f"{pre}.layers.{i}"
        out += _attention(spec, f"{lp}.self_attn", i, layer.attention, False)
        out += _gated_mlp(f"{lp}.mlp", h, layer.mlp.intermediate_size, "mlp", i)
        out += [_vec(f"{lp}.{nm}.weight", h, "norm", i) for nm in (
            "input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
            "post_feedforward_layernorm", "post_per_layer_input_norm", "altup.router_norm",
            "laurel.post_laurel_norm")]
        out += [_vec(f"{lp}.altup.correct_output_scale", h, "mlp", i),
                TensorGroup(f"{lp}.altup.correction_coefs.weight", (alt, alt), "mlp", i),
                TensorGroup(f"{lp}.altup.prediction_coefs.weight", (alt * alt, alt), "mlp", i),
                _lin(f"{lp}.altup.modality_router.weight", alt, h, "mlp", i, "replicated"),
                _lin(f"{lp}.laurel.linear_left.weight", rank, h, "mlp", i, "replicated"),
                _lin(f"{lp}.laurel.linear_right.weight", h, rank, "mlp", i, "replicated"),
                _lin(f"{lp}.per_layer_input_gate.weight", ple, h, "mlp", i, "replicated"),
                _lin(f"{lp}.per_layer_projection.weight", h, ple, "mlp", i, "replicated")]
    out.append(_vec(f"{pre}.norm.weight", h, "norm", None))
    if not spec.tie_word_embeddings:
        out.append(_lin(f"{spec.lm_head_name}.weight", v, h, "lm_head", None, "vocab"))
    return out, []
