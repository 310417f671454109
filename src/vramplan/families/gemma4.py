"""Gemma 4: ``gemma4`` (Gemma4ForConditionalGeneration) and ``gemma4_text`` (Gemma4ForCausalLM).

Source: transformers 5.25.0 ``models/gemma4/{configuration,modeling}_gemma4.py``.

Text decoder layer (Gemma4TextDecoderLayer):

* attention (Gemma4TextAttention): sliding layers use ``head_dim`` and ``num_key_value_heads``;
  full layers use ``global_head_dim`` (default 512) and, when ``attention_k_eq_v``,
  ``num_global_key_value_heads`` (Gemma4TextConfig ``per_layer_config``). Full layers with
  ``attention_k_eq_v`` have no ``v_proj`` (V is computed from the K projection, then normed
  without scale and without RoPE, so the cache still stores K and V separately). q_norm always;
  k_norm, k_proj, v_proj only on layers that keep their own cache.
* KV sharing: the last ``num_kv_shared_layers`` layers reuse the cache of the last non-shared
  layer of the same type (``kv_sharing_modes``) and have no k/v projections;
  ``use_double_wide_mlp`` doubles their MLP width.
* four RMSNorms + a ``layer_scalar`` persistent buffer [1]; a dense GeGLU MLP in every layer;
  with ``enable_moe_block`` a routed MoE *in addition* (router: proj [E, H], scale [H],
  per_expert_scale [E]; experts gate_up_proj [E, 2I, H], down_proj [E, H, I];
  post_feedforward_layernorm_1/_2, pre_feedforward_layernorm_2). The dense MLP runs for every
  token beside the experts, so the spec carries it as the always-on (shared) part of the MoE.
* per-layer embeddings (``hidden_size_per_layer_input`` P > 0): per layer
  per_layer_input_gate [P, H], per_layer_projection [H, P], post_per_layer_input_norm [H];
  model embed_tokens_per_layer [vocab_size_per_layer_input, L*P], per_layer_model_projection
  [L*P, H], per_layer_projection_norm [P].

Layer layout: ``layer_types``, else sliding iff ``(i + 1) % 6``; the last layer is forced to
full attention (Gemma4TextConfig.__post_init__).

Towers (``families/gemma_towers.py``): Gemma4VisionModel + embed_vision, Gemma4AudioModel +
embed_audio. Names follow the checkpoint (``model.language_model.*``, ``model.vision_tower.*``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vramplan.errors import ConfigError
from vramplan.families.gemma3 import layer_kinds, replace_text, with_defaults
from vramplan.inventory import TensorGroup, _gated_mlp, _lin, _vec
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

MODEL_TYPES = ("gemma4", "gemma4_text")
ARCHITECTURES = ("Gemma4ForConditionalGeneration", "Gemma4ForCausalLM")
HANDLES: frozenset[str] = frozenset({"sliding_window", "pattern", "layer_types", "moe", "vision",
                                     "audio"})

# Gemma4TextConfig class defaults (transformers 5.25.0).
TEXT_DEFAULTS: dict[str, object] = {
    "vocab_size": 262_144, "head_dim": 256, "num_key_value_heads": 4,
    "max_position_embeddings": 131_072, "sliding_window": 512, "tie_word_embeddings": True,
    "vocab_size_per_layer_input": 262_144, "hidden_size_per_layer_input": 256,
    "global_head_dim": 512,
}
VISION_DEFAULTS: dict[str, object] = {
    "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 16,
    "num_attention_heads": 12, "num_key_value_heads": 12, "head_dim": 64, "patch_size": 16,
    "position_embedding_size": 10 * 1024, "use_clipped_linears": False, "standardize": False,
    "model_type": "gemma4_vision",
}
AUDIO_DEFAULTS: dict[str, object] = {
    "hidden_size": 1024, "num_hidden_layers": 12, "num_attention_heads": 8,
    "subsampling_conv_channels": (128, 32), "conv_kernel_size": 5, "use_clipped_linears": True,
    "output_proj_dims": 1536, "model_type": "gemma4_audio",
}
VISION_TOKENS_DEFAULT = 280  # vision_config.default_output_length of the published Gemma 4 configs


def kv_sources(kinds: list[AttnKind], n_shared: int) -> list[int | None]:
    """Per layer: the layer whose cache it reads (None: its own).

    The last ``n_shared`` layers reuse the last earlier non-shared layer of the same type
    (Gemma4TextConfig / Gemma3nTextConfig ``kv_sharing_modes``, transformers 5.25.0).
    """
    n = len(kinds)
    if n_shared <= 0:
        return [None] * n
    if n_shared > n:
        raise ConfigError("config.json num_kv_shared_layers",
                          f"{n_shared} is more than the {n} layers", "fix it in config.json")
    first = n - n_shared
    out: list[int | None] = [None] * n
    for i in range(first, n):
        src = next((j for j in range(first - 1, -1, -1) if kinds[j] == kinds[i]), None)
        if src is None:
            raise ConfigError("config.json num_kv_shared_layers",
                              f"layer {i} ({kinds[i]}) has no earlier layer of its type to share "
                              "a cache with", "fix num_kv_shared_layers or layer_types")
        out[i] = src
    return out


def _tower_config(sub: Mapping[str, Any], defaults: Mapping[str, object]) -> tuple[
        tuple[str, object], ...]:
    """A tower sub-config over its class defaults, frozen (keys the defaults do not name are
    dropped; shared with gemma3n)."""
    full = {**defaults, **{k: v for k, v in sub.items() if v is not None and k in defaults}}
    frozen = freeze(full)
    assert isinstance(frozen, tuple)
    return frozen


def spec(cfg: Mapping[str, Any], model_id: str = "local",
         extra_quant: Mapping[str, Any] | None = None) -> ModelSpec:
    """config.json -> ModelSpec for gemma4 / gemma4_text (see the module docstring)."""
    notes: list[str] = []
    top_type = str(cfg.get("model_type", ""))
    multimodal = top_type == "gemma4" and isinstance(cfg.get("text_config"), Mapping)
    text = with_defaults(hf_config.text_config(cfg), TEXT_DEFAULTS, "gemma4_text", notes)
    n_layers = hf_config.read_int(text, "num_hidden_layers")
    kinds = layer_kinds(text, n_layers, 6)
    if not text.get("layer_types"):
        notes.append("layer_types absent: every 6th layer full attention, the rest sliding "
                     "(Gemma4TextConfig default layout)")
    if kinds and kinds[-1] != "full":
        kinds[-1] = "full"
        notes.append("last layer forced to full attention (Gemma4TextConfig)")
    window = hf_config.read_int(text, "sliding_window")
    if text.get("use_bidirectional_attention") == "all":
        window = window // 2 + 1
    heads = hf_config.read_int(text, "num_attention_heads")
    kv_heads = hf_config.read_int(text, "num_key_value_heads")
    head_dim = hf_config.read_int(text, "head_dim")
    g_head_dim = hf_config.read_int(text, "global_head_dim")
    k_eq_v = bool(text.get("attention_k_eq_v", False))
    g_kv = hf_config.read_opt_int(text, "num_global_key_value_heads")
    g_kv_heads = g_kv if (k_eq_v and g_kv is not None) else kv_heads
    for name, kvh in (("num_key_value_heads", kv_heads), ("num_global_key_value_heads", g_kv_heads)):
        if heads % kvh:
            raise ConfigError(f"config.json {name}", f"{kvh} does not divide "
                              f"num_attention_heads {heads}", f"fix {name} in config.json")
    inter = hf_config.read_int(text, "intermediate_size")
    n_shared = hf_config.read_int0(text, "num_kv_shared_layers", 0)
    sources = kv_sources(kinds, n_shared)
    double_wide = bool(text.get("use_double_wide_mlp", False))
    moe = bool(text.get("enable_moe_block", False))
    n_exp = top_k = moe_inter = 0
    if moe:
        n_exp = hf_config.read_int(text, "num_experts")
        top_k = hf_config.read_int(text, "top_k_experts")
        moe_inter = hf_config.read_int(text, "moe_intermediate_size")
        if top_k > n_exp:
            raise ConfigError("config.json top_k_experts", f"{top_k} is more than the {n_exp} "
                              "experts", "fix it in config.json")

    def layer_fn(_text: Mapping[str, Any], i: int) -> LayerSpec:
        kind = kinds[i]
        full = kind == "full"
        attn = AttentionSpec(kind=kind, num_heads=heads,
                             num_kv_heads=g_kv_heads if full else kv_heads,
                             head_dim=g_head_dim if full else head_dim,
                             v_head_dim=g_head_dim if full else head_dim,
                             window_tokens=None if full else window,
                             kv_shared_with=sources[i])
        width = inter * (2 if double_wide and sources[i] is not None else 1)
        if moe:
            mlp = MlpSpec(kind="moe", intermediate_size=width, num_experts=n_exp, top_k=top_k,
                          expert_intermediate_size=moe_inter, shared_intermediate_size=width)
        else:
            mlp = MlpSpec(kind="dense", intermediate_size=width)
        return LayerSpec(index=i, attention=attn, mlp=mlp)

    base = hf_config.generic_spec(replace_text(cfg, text), model_id, extra_quant,
                                  model_type="gemma4_text", family="gemma4", notes=notes,
                                  layer_fn=layer_fn)
    ple = hf_config.read_int0(text, "hidden_size_per_layer_input", 0)
    towers: list[TowerSpec] = []
    if multimodal:
        vc = cfg.get("vision_config")
        if isinstance(vc, Mapping):
            tokens = cfg.get("vision_soft_tokens_per_image") or vc.get("default_output_length")
            if not isinstance(tokens, int) or tokens <= 0:
                tokens = VISION_TOKENS_DEFAULT
                notes.append(f"ASSUMPTION: an image costs {tokens} tokens (vision_soft_tokens_"
                             "per_image absent)")
            towers.append(TowerSpec(kind="vision", model_type="gemma4_vision",
                                    family="gemma4_vision",
                                    config=_tower_config(vc, VISION_DEFAULTS),
                                    tokens_per_item=tokens))
        ac = cfg.get("audio_config")
        if isinstance(ac, Mapping):
            towers.append(TowerSpec(kind="audio", model_type="gemma4_audio",
                                    family="gemma4_audio",
                                    config=_tower_config(ac, AUDIO_DEFAULTS)))
    bias = bool(text.get("attention_bias", False))
    params: dict[str, object] = {
        "attention_k_eq_v": k_eq_v,
        "hidden_size_per_layer_input": ple,
        "vocab_size_per_layer_input": hf_config.read_int(text, "vocab_size_per_layer_input")
        if ple else 0,
    }
    return dataclasses.replace(
        base, towers=tuple(towers), qk_norm=True, norms_per_layer=4, attention_bias=bias,
        attention_out_bias=bias, mlp_bias=False,
        family_params=tuple(sorted(params.items())),
        prefix="model.language_model" if multimodal else "model",
        lm_head_name="lm_head", notes=tuple(dict.fromkeys([*base.notes, *notes])))


def int_param(spec: ModelSpec, key: str) -> int:
    """An integer ``family_params`` entry (0 when absent)."""
    val = spec.param(key, 0)
    return val if isinstance(val, int) else 0


def _attention(spec: ModelSpec, p: str, i: int, a: AttentionSpec, k_eq_v: bool
               ) -> list[TensorGroup]:
    """q/k/v/o of one Gemma4TextAttention (module docstring)."""
    h, bias = spec.hidden_size, spec.attention_bias
    qd, kvd = a.num_heads * a.head_dim, a.num_kv_heads * a.head_dim
    out = [_lin(f"{p}.q_proj.weight", qd, h, "attention", i, "column"),
           _vec(f"{p}.q_norm.weight", a.head_dim, "norm", i)]
    if bias:
        out.append(_vec(f"{p}.q_proj.bias", qd, "attention", i, "column"))
    if a.kv_shared_with is None:
        projs = ("k_proj",) if (k_eq_v and a.kind == "full") else ("k_proj", "v_proj")
        for name in projs:
            out.append(_lin(f"{p}.{name}.weight", kvd, h, "attention", i, "kv"))
            if bias:
                out.append(_vec(f"{p}.{name}.bias", kvd, "attention", i, "kv"))
        out.append(_vec(f"{p}.k_norm.weight", a.head_dim, "norm", i))
    out.append(_lin(f"{p}.o_proj.weight", h, qd, "attention", i, "row"))
    if bias:
        out.append(_vec(f"{p}.o_proj.bias", h, "attention", i))
    return out


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    """Gemma4TextModel tensors in checkpoint naming (module docstring)."""
    h, v, pre = spec.hidden_size, spec.vocab_size, spec.prefix
    n = spec.num_layers
    ple = int_param(spec, "hidden_size_per_layer_input")
    k_eq_v = bool(spec.param("attention_k_eq_v", False))
    out = [TensorGroup(f"{pre}.embed_tokens.weight", (v, h), "embedding", None, "vocab")]
    if ple:
        vp = int_param(spec, "vocab_size_per_layer_input")
        out += [TensorGroup(f"{pre}.embed_tokens_per_layer.weight", (vp, n * ple), "embedding",
                            None, "replicated"),
                _lin(f"{pre}.per_layer_model_projection.weight", n * ple, h, "mlp", None,
                     "replicated"),
                _vec(f"{pre}.per_layer_projection_norm.weight", ple, "norm", None)]
    for layer in spec.layers:
        i = layer.index
        lp = f"{pre}.layers.{i}"
        out += _attention(spec, f"{lp}.self_attn", i, layer.attention, k_eq_v)
        norms = ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                 "post_feedforward_layernorm"]
        m = layer.mlp
        if m.kind == "moe":
            norms += ["post_feedforward_layernorm_1", "post_feedforward_layernorm_2",
                      "pre_feedforward_layernorm_2"]
        out += [_vec(f"{lp}.{nm}.weight", h, "norm", i) for nm in norms]
        out.append(_vec(f"{lp}.layer_scalar", 1, "norm", i, buffer=True))
        if m.kind == "moe":
            e, mi = m.num_experts, m.expert_intermediate_size
            out += _gated_mlp(f"{lp}.mlp", h, m.shared_intermediate_size, "shared_expert", i)
            out += [_lin(f"{lp}.router.proj.weight", e, h, "router", i, "replicated"),
                    _vec(f"{lp}.router.scale", h, "router", i),
                    _vec(f"{lp}.router.per_expert_scale", e, "router", i),
                    TensorGroup(f"{lp}.experts.gate_up_proj", (e, 2 * mi, h), "routed_expert", i,
                                "expert_column", linear=True, stacked_experts=e),
                    TensorGroup(f"{lp}.experts.down_proj", (e, h, mi), "routed_expert", i,
                                "expert_row", linear=True, stacked_experts=e)]
        else:
            out += _gated_mlp(f"{lp}.mlp", h, m.intermediate_size, "mlp", i)
        if ple:
            out += [_lin(f"{lp}.per_layer_input_gate.weight", ple, h, "mlp", i, "replicated"),
                    _lin(f"{lp}.per_layer_projection.weight", h, ple, "mlp", i, "replicated"),
                    _vec(f"{lp}.post_per_layer_input_norm.weight", h, "norm", i)]
    out.append(_vec(f"{pre}.norm.weight", h, "norm", None))
    if not spec.tie_word_embeddings:
        out.append(_lin(f"{spec.lm_head_name}.weight", v, h, "lm_head", None, "vocab"))
    return out, []
