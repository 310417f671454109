"""Gemma 3: ``gemma3_text`` (Gemma3ForCausalLM) and ``gemma3`` (Gemma3ForConditionalGeneration).

Text model (transformers 5.25.0 ``models/gemma3/modeling_gemma3.py`` Gemma3TextModel): per layer
q/k/v/o projections (``attention_bias`` on all four), per-head q_norm / k_norm RMSNorm weights,
four RMSNorms (input, post_attention, pre_feedforward, post_feedforward) and a GeGLU MLP.
Embeddings are tied by default.

Layer layout (``configuration_gemma3.py`` Gemma3TextConfig.__post_init__): ``layer_types`` when
given, else layer ``i`` is ``sliding_attention`` iff ``(i + 1) % sliding_window_pattern`` (default
6: five sliding layers, then one full). ``use_bidirectional_attention`` (EmbeddingGemma) turns the
window into ``sliding_window // 2 + 1``.

Multimodal (``gemma3``): a SigLIP vision tower (``families/gemma_towers.py``) and
Gemma3MultiModalProjector (``mm_input_projection_weight [vision_hidden, text_hidden]``,
``mm_soft_emb_norm [vision_hidden]``); each image costs ``mm_tokens_per_image`` (default 256)
context tokens.

Checkpoint names: Gemma3ForCausalLM ``model.*``; Gemma3ForConditionalGeneration safetensors
``language_model.model.*``, ``vision_tower.vision_model.*``, ``multi_modal_projector.*``
(transformers maps them to ``model.language_model.*`` etc. at load, conversion_mapping.py "llava").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vramplan.errors import ConfigError
from vramplan.inventory import TensorGroup, _layer, _lin, _vec
from vramplan.model import hf_config
from vramplan.model.spec import (
    AttentionSpec,
    AttnKind,
    LayerSpec,
    MlpSpec,
    ModelSpec,
    TowerSpec,
    freeze,
)

MODEL_TYPES = ("gemma3", "gemma3_text")
ARCHITECTURES = ("Gemma3ForCausalLM", "Gemma3ForConditionalGeneration")
HANDLES: frozenset[str] = frozenset({"sliding_window", "pattern", "layer_types", "vision"})

# Gemma3TextConfig class defaults used when a key is absent (transformers 5.25.0).
TEXT_DEFAULTS: dict[str, object] = {
    "head_dim": 256,
    "num_key_value_heads": 4,
    "sliding_window": 4096,
    "max_position_embeddings": 131_072,
    "vocab_size": 262_208,
    "tie_word_embeddings": True,
}
# SiglipVisionConfig defaults (transformers 5.25.0 models/siglip/configuration_siglip.py).
SIGLIP_DEFAULTS: dict[str, object] = {
    "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "num_channels": 3, "image_size": 224, "patch_size": 16,
    "vision_use_head": True, "model_type": "siglip_vision_model",
}
MM_TOKENS_PER_IMAGE_DEFAULT = 256  # Gemma3Config.mm_tokens_per_image


def with_defaults(text: Mapping[str, Any], defaults: Mapping[str, object], model_type: str,
                  notes: list[str]) -> dict[str, Any]:
    """``text`` with the config class defaults filled in for absent (or null) keys, noted."""
    out = dict(text)
    for key, val in defaults.items():
        if out.get(key) is None:
            out[key] = val
            notes.append(f"{key} absent: {model_type} default {val}")
    return out


def replace_text(cfg: Mapping[str, Any], text: Mapping[str, Any]) -> dict[str, Any]:
    """The config with its text part (``text_config`` or the top level) replaced."""
    if isinstance(cfg.get("text_config"), Mapping):
        out = dict(cfg)
        out["text_config"] = dict(text)
        return out
    return dict(text)


def effective_window(text: Mapping[str, Any], bidirectional: bool) -> int:
    """Sliding window in tokens: ``sliding_window``, or ``sliding_window // 2 + 1`` for a
    bidirectional (EmbeddingGemma) model (Gemma3TextConfig.__post_init__, transformers 5.25.0)."""
    win = hf_config.read_int(text, "sliding_window")
    return win // 2 + 1 if bidirectional else win


def layer_kinds(text: Mapping[str, Any], n_layers: int, default_pattern: int) -> list[AttnKind]:
    """Per-layer attention kind: ``layer_types`` when present, else the class default pattern:
    sliding iff ``(i + 1) % pattern`` (Gemma 3 / Gemma 4: ``sliding_window_pattern``, default 6;
    Gemma-3n: 5, not configurable)."""
    lt = text.get("layer_types")
    mapping: dict[str, AttnKind] = {"full_attention": "full", "sliding_attention": "sliding"}
    if isinstance(lt, list) and lt:
        if len(lt) != n_layers:
            raise ConfigError("config.json layer_types", f"has {len(lt)} entries for {n_layers} "
                              "layers", "make layer_types as long as num_hidden_layers")
        bad = sorted({str(t) for t in lt} - set(mapping))
        if bad:
            raise ConfigError("config.json layer_types", f"unknown layer type {bad[0]!r}",
                              "use full_attention or sliding_attention")
        return [mapping[str(t)] for t in lt]
    pattern = hf_config.read_int0(text, "sliding_window_pattern", default_pattern)
    if pattern <= 0:
        raise ConfigError("config.json sliding_window_pattern", f"must be positive, got {pattern}",
                          "fix the value in config.json (Gemma 3 uses 6)")
    return ["sliding" if (i + 1) % pattern else "full" for i in range(n_layers)]


def siglip_tower(cfg: Mapping[str, Any], notes: list[str]) -> TowerSpec:
    """The SigLIP vision tower of a Gemma 3 (or PaliGemma-style) config, defaults filled."""
    vc = cfg.get("vision_config")
    if not isinstance(vc, Mapping):
        vc = {}
        notes.append("vision_config absent: SiglipVisionConfig defaults")
    full = {**SIGLIP_DEFAULTS, **{k: v for k, v in vc.items() if v is not None}}
    keep = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_channels", "image_size", "patch_size", "vision_use_head", "model_type")
    tokens = hf_config.read_int0(cfg, "mm_tokens_per_image", MM_TOKENS_PER_IMAGE_DEFAULT)
    frozen = freeze({k: full[k] for k in keep})
    assert isinstance(frozen, tuple)
    return TowerSpec(kind="vision", model_type=str(full["model_type"]), family="gemma3_siglip",
                     config=frozen, tokens_per_item=tokens)


def spec(cfg: Mapping[str, Any], model_id: str = "local",
         extra_quant: Mapping[str, Any] | None = None) -> ModelSpec:
    """config.json -> ModelSpec for gemma3 / gemma3_text (see the module docstring)."""
    notes: list[str] = []
    top_type = str(cfg.get("model_type", ""))
    multimodal = top_type == "gemma3" and isinstance(cfg.get("text_config"), Mapping)
    text = with_defaults(hf_config.text_config(cfg), TEXT_DEFAULTS, "gemma3_text", notes)
    n_layers = hf_config.read_int(text, "num_hidden_layers")
    kinds = layer_kinds(text, n_layers, 6)
    if "layer_types" not in text or not text.get("layer_types"):
        pat = text.get("sliding_window_pattern")
        notes.append(f"layer_types absent: every {pat or 6}th layer full attention, the rest "
                     "sliding (Gemma3TextConfig default layout)")
    window = effective_window(text, bool(text.get("use_bidirectional_attention")))
    heads = hf_config.read_int(text, "num_attention_heads")
    kv_heads = hf_config.read_int(text, "num_key_value_heads")
    head_dim = hf_config.read_int(text, "head_dim")
    inter = hf_config.read_int(text, "intermediate_size")
    if heads % kv_heads:
        raise ConfigError("config.json num_key_value_heads",
                          f"{kv_heads} does not divide num_attention_heads {heads}",
                          "fix num_key_value_heads in config.json")

    def layer_fn(_text: Mapping[str, Any], i: int) -> LayerSpec:
        kind = kinds[i]
        attn = AttentionSpec(kind=kind, num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim,
                             v_head_dim=head_dim,
                             window_tokens=window if kind == "sliding" else None)
        return LayerSpec(index=i, attention=attn, mlp=MlpSpec(kind="dense",
                                                              intermediate_size=inter))

    model_type = "gemma3_text"
    base = hf_config.generic_spec(replace_text(cfg, text), model_id, extra_quant,
                                  model_type=model_type, family="gemma3", notes=notes,
                                  layer_fn=layer_fn)
    towers: tuple[TowerSpec, ...] = ()
    if multimodal:
        towers = (siglip_tower(cfg, notes),)
    bias = bool(text.get("attention_bias", False))
    return dataclasses.replace(
        base, towers=towers, qk_norm=True, norms_per_layer=4, attention_bias=bias,
        attention_out_bias=bias, mlp_bias=False,
        prefix="language_model.model" if multimodal else "model",
        lm_head_name="language_model.lm_head" if multimodal else "lm_head",
        notes=tuple(dict.fromkeys([*base.notes, *notes])))


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    """Gemma3TextModel tensors (+ lm_head when untied), checkpoint names (module docstring)."""
    h, v, pre = spec.hidden_size, spec.vocab_size, spec.prefix
    out = [TensorGroup(f"{pre}.embed_tokens.weight", (v, h), "embedding", None, "vocab")]
    for layer in spec.layers:
        out += _layer(spec, f"{pre}.layers.{layer.index}", layer)
    out.append(_vec(f"{pre}.norm.weight", h, "norm", None))
    if not spec.tie_word_embeddings:
        out.append(_lin(f"{spec.lm_head_name}.weight", v, h, "lm_head", None, "vocab"))
    return out, []
