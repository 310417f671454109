"""Qwen multimodal and Qwen3.5 families: Qwen2-VL, Qwen2.5-VL, Qwen3-VL (dense / MoE), Qwen3.5 (dense / MoE).

Text models (``text_config``, or the top level for Qwen2.5-VL's flat config.json):

* ``qwen3_vl``: Qwen3 dense decoder (q/k RMSNorm) under ``model.language_model``
  (transformers models/qwen3_vl/modeling_qwen3_vl.py @ 5.25.0).
* ``qwen3_vl_moe``: Qwen3-MoE decoder (routed experts, no shared expert; ``mlp_only_layers`` and
  ``decoder_sparse_step`` choose dense layers). The checkpoint stores each layer's experts as two
  stacked tensors ``mlp.experts.gate_up_proj`` [E, H, 2I] and ``mlp.experts.down_proj`` [E, I, H]
  (transformers 5.25.0 transposes them to [E, 2I, H] / [E, H, I] on load: conversion_mapping.py
  ``qwen3_vl_moe``; vLLM qwen3_vl_moe.py loads the fused layout).
* ``qwen3_5`` / ``qwen3_5_moe``: hybrid per ``layer_types``: Gated DeltaNet ``linear_attn``
  (in_proj_qkv / in_proj_z / in_proj_b / in_proj_a, conv1d, dt_bias, A_log, gated RMSNorm,
  out_proj) and gated full attention (q_proj yields query + output gate: 2 * heads * head_dim
  rows) with q/k RMSNorm (models/qwen3_5/modeling_qwen3_5.py, models/qwen3_5_moe/
  modeling_qwen3_5_moe.py @ 5.25.0). Every Qwen3.5-MoE layer is sparse: 256 routed experts +
  one shared expert with a sigmoid gate. The main model's experts are stored stacked
  (``mlp.experts.gate_up_proj`` [E, 2I, H], ``mlp.experts.down_proj`` [E, H, I]: transformers has
  no conversion for ``qwen3_5_moe``; vLLM qwen3_5.py loads them "without transpose"); the
  inventory lists them in vramplan's stacked convention [E, in, out] (``quant.schemes
  ._linear_dims``), i.e. transposed relative to the file, same numel.
* ``qwen2_vl`` / ``qwen2_5_vl``: Qwen2 dense decoder (q/k/v biases; models/qwen2_vl/
  modeling_qwen2_vl.py, models/qwen2_5_vl/modeling_qwen2_5_vl.py @ 5.25.0). Released checkpoints
  name the text model ``model.*`` and the tower ``visual.*`` (transformers renames on load).

MTP: Qwen3.5 checkpoints carry ``mtp_num_hidden_layers`` (1) next-token-prediction blocks
(``mtp.fc``, ``mtp.pre_fc_norm_embedding``, ``mtp.pre_fc_norm_hidden``, ``mtp.norm``,
``mtp.layers.{k}``: one gated full-attention decoder layer); transformers does not instantiate
them (``_keys_to_ignore_on_load_unexpected = [r"^mtp.*"]``) and vLLM loads them only as a
speculative draft (vllm/model_executor/models/qwen3_5_mtp.py). They are reported separately. In
the MoE checkpoint the MTP experts are stored per expert (``mtp.layers.0.mlp.experts.{e}.
gate_proj.weight``...), unlike the main layers.

Vision towers: ``families/towers_qwen_vl.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from vramplan.errors import ConfigError
from vramplan.inventory import Role, TensorGroup, _gated_mlp, _lin, _moe, _vec
from vramplan.model import hf_config
from vramplan.model.spec import (
    AttentionSpec,
    AttnKind,
    LayerSpec,
    LinearAttnSpec,
    MlpSpec,
    ModelSpec,
    TowerSpec,
    freeze,
)

FAMILY = "qwen_vl"
MODEL_TYPES = ("qwen2_vl", "qwen2_vl_text", "qwen2_5_vl", "qwen2_5_vl_text", "qwen3_vl",
               "qwen3_vl_text", "qwen3_vl_moe", "qwen3_vl_moe_text", "qwen3_5", "qwen3_5_text",
               "qwen3_5_moe", "qwen3_5_moe_text")
ARCHITECTURES = ("Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration",
                 "Qwen3VLForConditionalGeneration", "Qwen3VLMoeForConditionalGeneration",
                 "Qwen3_5ForConditionalGeneration", "Qwen3_5MoeForConditionalGeneration",
                 "Qwen3_5ForCausalLM", "Qwen3_5MoeForCausalLM")
# Sliding-window text layers (Qwen2.5-VL use_sliding_window) are not claimed: such a config is
# refused rather than read with full attention.
HANDLES = frozenset({"moe", "linear_attention", "layer_types", "vision"})

# model_type (top level or text_config) -> variant
_VARIANTS: dict[str, str] = {t: t.removesuffix("_text") for t in MODEL_TYPES}

# Structural defaults of the transformers 5.25.0 text config classes, used when config.json
# omits the key (models/<type>/configuration_<type>.py: Qwen2VLTextConfig, Qwen2_5_VLTextConfig,
# Qwen3VLTextConfig, Qwen3VLMoeTextConfig, Qwen3_5TextConfig, Qwen3_5MoeTextConfig).
_TEXT_DEFAULTS: dict[str, dict[str, int]] = {
    "qwen2_vl": {"vocab_size": 152064, "hidden_size": 8192, "intermediate_size": 29568,
                 "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
                 "max_position_embeddings": 32768},
    "qwen2_5_vl": {"vocab_size": 152064, "hidden_size": 8192, "intermediate_size": 29568,
                   "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
                   "max_position_embeddings": 32768},
    "qwen3_vl": {"vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 22016,
                 "num_hidden_layers": 32, "num_attention_heads": 32, "head_dim": 128,
                 "max_position_embeddings": 128000},
    "qwen3_vl_moe": {"vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 5632,
                     "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 16,
                     "max_position_embeddings": 128000, "moe_intermediate_size": 1408,
                     "num_experts_per_tok": 4, "num_experts": 60},
    "qwen3_5": {"vocab_size": 248320, "hidden_size": 4096, "intermediate_size": 12288,
                "num_hidden_layers": 32, "num_attention_heads": 16, "num_key_value_heads": 4,
                "max_position_embeddings": 32768, "head_dim": 256},
    "qwen3_5_moe": {"vocab_size": 248320, "hidden_size": 2048, "num_hidden_layers": 40,
                    "num_attention_heads": 16, "num_key_value_heads": 2,
                    "max_position_embeddings": 32768, "head_dim": 256,
                    "moe_intermediate_size": 512, "shared_expert_intermediate_size": 512,
                    "num_experts_per_tok": 8, "num_experts": 256},
}
_LINEAR_DEFAULTS = {"linear_conv_kernel_dim": 4, "linear_key_head_dim": 128,
                    "linear_value_head_dim": 128, "linear_num_key_heads": 16,
                    "linear_num_value_heads": 32}
# Vision config defaults (Qwen2VLVisionConfig, Qwen2_5_VLVisionConfig, Qwen3VLVisionConfig,
# Qwen3_5VisionConfig @ 5.25.0)
_VISION_DEFAULTS: dict[str, dict[str, int]] = {
    "qwen2_vl": {"depth": 32, "embed_dim": 1280, "hidden_size": 3584, "mlp_ratio": 4,
                 "num_heads": 16, "in_channels": 3, "patch_size": 14, "spatial_merge_size": 2,
                 "temporal_patch_size": 2},
    "qwen2_5_vl": {"depth": 32, "hidden_size": 3584, "intermediate_size": 3420, "num_heads": 16,
                   "in_channels": 3, "patch_size": 14, "spatial_merge_size": 2,
                   "temporal_patch_size": 2, "out_hidden_size": 3584},
    "qwen3_vl": {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16,
                 "in_channels": 3, "patch_size": 16, "spatial_merge_size": 2,
                 "temporal_patch_size": 2, "out_hidden_size": 3584,
                 "num_position_embeddings": 2304},
}
_DEEPSTACK_DEFAULT = (8, 16, 24)  # Qwen3VLVisionConfig.deepstack_visual_indexes
_QWEN2 = ("qwen2_vl", "qwen2_5_vl")  # Qwen2 text decoder, released checkpoints named model.* / visual.*


_ARCH_VARIANTS = {
    "Qwen2VLForConditionalGeneration": "qwen2_vl",
    "Qwen2_5_VLForConditionalGeneration": "qwen2_5_vl", "Qwen3VLForConditionalGeneration": "qwen3_vl",
    "Qwen3VLMoeForConditionalGeneration": "qwen3_vl_moe",
    "Qwen3_5ForConditionalGeneration": "qwen3_5", "Qwen3_5ForCausalLM": "qwen3_5",
    "Qwen3_5MoeForConditionalGeneration": "qwen3_5_moe", "Qwen3_5MoeForCausalLM": "qwen3_5_moe",
}


def variant_of(cfg: Mapping[str, Any]) -> str:
    """qwen2_vl | qwen2_5_vl | qwen3_vl | qwen3_vl_moe | qwen3_5 | qwen3_5_moe: from ``architectures[0]``
    when it is one of ours (a renamed model_type is recovered by it), else the model_type(s)."""
    archs = cfg.get("architectures")
    if isinstance(archs, list) and archs and str(archs[0]) in _ARCH_VARIANTS:
        return _ARCH_VARIANTS[str(archs[0])]
    top = str(cfg.get("model_type", ""))
    tc = cfg.get("text_config")
    text_type = str(tc.get("model_type", "")) if isinstance(tc, Mapping) else ""
    for t in (top, text_type):
        if t in _VARIANTS:
            return _VARIANTS[t]
    raise ConfigError("config.json model_type", f"{top!r} is not a Qwen-VL / Qwen3.5 type",
                      f"use one of {', '.join(MODEL_TYPES)}")


def _filled(cfg: Mapping[str, Any], variant: str, notes: list[str]) -> dict[str, Any]:
    """config.json with the text config's missing structural keys set to the class defaults."""
    defaults = dict(_TEXT_DEFAULTS[variant])
    if variant.startswith("qwen3_5"):
        defaults.update(_LINEAR_DEFAULTS)
    out = dict(cfg)
    nested = isinstance(cfg.get("text_config"), Mapping)
    text = dict(cfg["text_config"]) if nested else out
    for key, val in defaults.items():
        if text.get(key) is None:
            text[key] = val
            notes.append(f"text {key} absent: transformers {variant} default {val}")
    if nested:
        out["text_config"] = text
    return out


def _kinds(text: Mapping[str, Any], variant: str, n_layers: int) -> list[AttnKind]:
    """Per-layer mixer: Qwen3.5 follows layer_types (default: every ``full_attention_interval``-th
    layer full, transformers Qwen3_5TextConfig.__post_init__); the others attend fully."""
    lt = text.get("layer_types")
    allowed = {"full_attention", "linear_attention"} if variant.startswith("qwen3_5") \
        else {"full_attention"}
    if isinstance(lt, list) and lt:
        if len(lt) != n_layers:
            raise ConfigError("config.json layer_types", f"has {len(lt)} entries for {n_layers} "
                              "layers", "make layer_types as long as num_hidden_layers")
        bad = sorted({str(t) for t in lt} - allowed)
        if bad:
            raise ConfigError("config.json layer_types", f"{variant} has no {', '.join(bad)} layers",
                              f"use {' / '.join(sorted(allowed))}")
        return ["linear" if t == "linear_attention" else "full" for t in lt]
    if lt is not None and not isinstance(lt, list):
        raise ConfigError("config.json layer_types", "must be a list", "fix it in config.json")
    if not variant.startswith("qwen3_5"):
        return ["full"] * n_layers
    interval = hf_config.read_int(text, "full_attention_interval", 4)
    return ["full" if (i + 1) % interval == 0 else "linear" for i in range(n_layers)]


def _linear_attn(text: Mapping[str, Any]) -> LinearAttnSpec:
    lin = LinearAttnSpec(
        num_key_heads=hf_config.read_int(text, "linear_num_key_heads"),
        num_value_heads=hf_config.read_int(text, "linear_num_value_heads"),
        key_head_dim=hf_config.read_int(text, "linear_key_head_dim"),
        value_head_dim=hf_config.read_int(text, "linear_value_head_dim"),
        conv_kernel=hf_config.read_int(text, "linear_conv_kernel_dim"),
    )
    if lin.num_value_heads % lin.num_key_heads:
        raise ConfigError("config.json linear_num_value_heads",
                          f"{lin.num_value_heads} is not a multiple of linear_num_key_heads "
                          f"{lin.num_key_heads}", "fix it in config.json")
    return lin


def _mlp(text: Mapping[str, Any], variant: str, model_type: str, i: int, n: int) -> MlpSpec:
    if variant == "qwen3_vl_moe":
        # Qwen3VLMoeTextDecoderLayer: sparse unless in mlp_only_layers or off decoder_sparse_step
        return hf_config.core_mlp(text, "qwen_moe", model_type, i, n)
    if variant != "qwen3_5_moe":
        return MlpSpec(kind="dense", intermediate_size=hf_config.read_int(text, "intermediate_size"))
    # Qwen3_5MoeDecoderLayer: every layer is a Qwen3_5MoeSparseMoeBlock (routed + gated shared)
    n_exp = hf_config.read_int(text, "num_experts")
    top_k = hf_config.read_int(text, "num_experts_per_tok")
    if top_k > n_exp:
        raise ConfigError("config.json num_experts_per_tok",
                          f"{top_k} is more than the {n_exp} experts", "fix it in config.json")
    shared = hf_config.read_int0(text, "shared_expert_intermediate_size", 0)
    return MlpSpec(kind="moe", intermediate_size=hf_config.read_int0(text, "intermediate_size", 0),
                   num_experts=n_exp, top_k=top_k,
                   expert_intermediate_size=hf_config.read_int(text, "moe_intermediate_size"),
                   shared_intermediate_size=shared,
                   shared_expert_gate=shared > 0 or variant.startswith("qwen3_5"))


def _tower(cfg: Mapping[str, Any], variant: str, notes: list[str]) -> TowerSpec | None:
    """The vision tower of a ConditionalGeneration config (its ints validated, defaults filled)."""
    vc = cfg.get("vision_config")
    if not isinstance(vc, Mapping):
        if "text_config" not in cfg and variant not in _QWEN2:
            return None  # a text-only *ForCausalLM config
        notes.append("vision_config absent: the tower is built from the transformers defaults")
        vc = {}
    fam = variant if variant in ("qwen2_vl", "qwen2_5_vl") else "qwen3_vl"
    items: dict[str, Any] = dict(vc)
    if "in_channels" not in items and "in_chans" in items:  # Qwen2.5-VL's published spelling
        items["in_channels"] = items["in_chans"]
    for key, default in _VISION_DEFAULTS[fam].items():
        items[key] = hf_config.read_int(items, key, default, field_prefix="vision_config.")
    if variant in ("qwen3_vl", "qwen3_vl_moe"):
        deep = items.get("deepstack_visual_indexes", list(_DEEPSTACK_DEFAULT))
        if not isinstance(deep, list | tuple) or not all(
                isinstance(x, int) and not isinstance(x, bool) for x in deep):
            raise ConfigError("config.json vision_config.deepstack_visual_indexes",
                              "must be a list of block indices", "fix it in config.json")
        items["deepstack_visual_indexes"] = list(deep)
    else:
        items["deepstack_visual_indexes"] = []  # Qwen3.5 / Qwen2.5-VL: no DeepStack mergers
    px = items["patch_size"] * items["spatial_merge_size"]
    notes.append(f"images: dynamic resolution, one context token per {px}x{px} pixels after the "
                 "processor's resize (tokens = height*width/(patch_size*spatial_merge_size)^2, "
                 "within its min/max_pixels)")
    frozen = freeze(items)
    assert isinstance(frozen, tuple)
    return TowerSpec(kind="vision", model_type=str(vc.get("model_type", variant)), family=fam,
                     config=frozen, tokens_per_item=0)


def spec(cfg: Mapping[str, Any], model_id: str = "local",
         extra_quant: Mapping[str, Any] | None = None) -> ModelSpec:
    """config.json -> ModelSpec for Qwen2-VL, Qwen2.5-VL, Qwen3-VL(-MoE) and Qwen3.5(-MoE)."""
    variant = variant_of(cfg)
    notes: list[str] = []
    full_cfg = _filled(cfg, variant, notes)
    text = hf_config.text_config(full_cfg)
    model_type = str(text.get("model_type") or cfg.get("model_type") or variant)
    n_layers = hf_config.read_int(text, "num_hidden_layers")
    if n_layers > 10_000:
        raise ConfigError("config.json num_hidden_layers", f"is implausibly large ({n_layers})",
                          "fix the value in config.json")
    kinds = _kinds(text, variant, n_layers)
    heads = hf_config.read_int(text, "num_attention_heads")
    kv_heads = hf_config.read_int(text, "num_key_value_heads", heads)
    hidden = hf_config.read_int(text, "hidden_size")
    head_dim = hf_config.read_int(text, "head_dim") if text.get("head_dim") is not None \
        else hidden // heads
    gated = variant.startswith("qwen3_5")
    lin = _linear_attn(text) if "linear" in kinds else None

    def layer_fn(t: Mapping[str, Any], i: int) -> LayerSpec:
        if kinds[i] == "linear":
            assert lin is not None
            attn = AttentionSpec(kind="linear", num_heads=heads, num_kv_heads=kv_heads,
                                 head_dim=head_dim, v_head_dim=head_dim, linear=lin)
        else:
            attn = AttentionSpec(kind="full", num_heads=heads, num_kv_heads=kv_heads,
                                 head_dim=head_dim, v_head_dim=head_dim, output_gate=gated)
        return LayerSpec(index=i, attention=attn, mlp=_mlp(t, variant, model_type, i, n_layers))

    base = hf_config.generic_spec(full_cfg, model_id, extra_quant, model_type=model_type,
                                  family=FAMILY, notes=notes, layer_fn=layer_fn)
    bias = variant in _QWEN2 or bool(text.get("attention_bias", False))
    mtp = 0
    if gated:
        mtp = hf_config.read_int0(text, "mtp_num_hidden_layers", 0)
        if mtp:
            notes.append(f"{mtp} MTP layer(s) (mtp.*) in the checkpoint: a speculative-decoding "
                         "draft, reported separately and not loaded for plain decoding")
        ssm = text.get("mamba_ssm_dtype")
        if ssm:
            # vllm/model_executor/models/config.py Qwen3_5ForConditionalGenerationConfig.
            # verify_and_update_config: --mamba-ssm-cache-dtype auto takes the config's
            # mamba_ssm_dtype (the conv state stays in the model dtype)
            notes.append(f"config mamba_ssm_dtype {ssm}: the Gated DeltaNet recurrent state is "
                         f"kept in {ssm} (vLLM takes it for --mamba-ssm-cache-dtype auto)")
    tie = _composite_tie(cfg, variant, base.tie_word_embeddings, notes)
    tower = _tower(cfg, variant, notes)
    params: list[tuple[str, object]] = [("variant", variant)]
    if gated and text.get("mamba_ssm_dtype"):
        params.append(("mamba_ssm_cache_dtype", str(text["mamba_ssm_dtype"])))
    if gated and text.get("mtp_use_dedicated_embeddings"):
        params.append(("mtp_dedicated_embeddings", True))
    return replace(
        base,
        attention_bias=bias,
        # o_proj bias follows attention_bias in Qwen3-VL / Qwen3.5; Qwen2(.5)-VL's o_proj has none
        attention_out_bias=bias and variant not in _QWEN2,
        qk_norm=variant not in _QWEN2,
        tie_word_embeddings=tie,
        mtp_layers=mtp,
        towers=(tower,) if tower else (),
        family_params=tuple(sorted(params)),
        prefix="model" if variant in _QWEN2 else "model.language_model",
        lm_head_name="lm_head",
        notes=tuple(base.notes) + tuple(n for n in notes if n not in base.notes),
    )


def _composite_tie(cfg: Mapping[str, Any], variant: str, text_tie: bool, notes: list[str]) -> bool:
    """Whether lm_head is tied, as transformers 5.25.0 decides for a composite (multimodal) config:
    the top-level ``tie_word_embeddings`` (class default False for Qwen2/2.5/3-VL(-MoE) and
    Qwen3.5(-MoE)); Qwen2(.5)-VL also forward a pre-v5 ``text_config`` True to the top
    (configuration_qwen2_vl.py / configuration_qwen2_5_vl.py ``__post_init__``). A flat text
    config keeps its own flag."""
    tc = cfg.get("text_config")
    if not isinstance(tc, Mapping):
        return text_tie
    top = cfg.get("tie_word_embeddings")
    inner = tc.get("tie_word_embeddings")
    tie = bool(top) if top is not None else False
    if variant in _QWEN2 and inner:
        tie = True
    if inner is not None and bool(inner) != tie:
        notes.append(f"text_config.tie_word_embeddings {inner} is not what ties lm_head here: "
                     f"the top-level flag does ({tie}; transformers 5.25.0)")
    return tie


# --- tensors -------------------------------------------------------------------------------------


def _full_attn(spec: ModelSpec, p: str, i: int, a: AttentionSpec) -> list[TensorGroup]:
    """Softmax attention: q_proj [(2 if gated) * heads*head_dim, H], k/v [kv*head_dim, H], o_proj
    [H, heads*head_dim], optional biases, q/k RMSNorm [head_dim] (transformers Qwen3VLTextAttention,
    Qwen3_5Attention, Qwen2_5_VLAttention @ 5.25.0)."""
    h = spec.hidden_size
    qd, kvd = a.num_heads * a.head_dim, a.num_kv_heads * a.head_dim
    q_rows = 2 * qd if a.output_gate else qd
    out = [_lin(f"{p}.q_proj.weight", q_rows, h, "attention", i, "column"),
           _lin(f"{p}.k_proj.weight", kvd, h, "attention", i, "kv"),
           _lin(f"{p}.v_proj.weight", kvd, h, "attention", i, "kv"),
           _lin(f"{p}.o_proj.weight", h, qd, "attention", i, "row")]
    if spec.attention_bias:
        out += [_vec(f"{p}.q_proj.bias", q_rows, "attention", i, "column"),
                _vec(f"{p}.k_proj.bias", kvd, "attention", i, "kv"),
                _vec(f"{p}.v_proj.bias", kvd, "attention", i, "kv")]
    if spec.attention_out_bias:
        out.append(_vec(f"{p}.o_proj.bias", h, "attention", i))
    if spec.qk_norm:
        out += [_vec(f"{p}.q_norm.weight", a.head_dim, "norm", i),
                _vec(f"{p}.k_norm.weight", a.head_dim, "norm", i)]
    return out


def _gdn(spec: ModelSpec, p: str, i: int, a: AttentionSpec) -> list[TensorGroup]:
    """Qwen3.5 Gated DeltaNet: key_dim = nk*dk, value_dim = nv*dv; in_proj_qkv [2*key_dim +
    value_dim, H], in_proj_z [value_dim, H], in_proj_b / in_proj_a [nv, H], conv1d [2*key_dim +
    value_dim, 1, kernel], dt_bias / A_log [nv], norm [dv], out_proj [H, value_dim]
    (transformers Qwen3_5GatedDeltaNet @ 5.25.0; same numel as Qwen3-Next's fused in_proj_qkvz /
    in_proj_ba)."""
    lin = a.linear
    assert lin is not None
    h = spec.hidden_size
    key_dim = lin.num_key_heads * lin.key_head_dim
    value_dim = lin.num_value_heads * lin.value_head_dim
    conv_dim = 2 * key_dim + value_dim
    r: Role = "attention"
    return [
        _lin(f"{p}.in_proj_qkv.weight", conv_dim, h, r, i, "column"),
        _lin(f"{p}.in_proj_z.weight", value_dim, h, r, i, "column"),
        _lin(f"{p}.in_proj_b.weight", lin.num_value_heads, h, r, i, "column"),
        _lin(f"{p}.in_proj_a.weight", lin.num_value_heads, h, r, i, "column"),
        TensorGroup(f"{p}.conv1d.weight", (conv_dim, 1, lin.conv_kernel), r, i, "column"),
        _vec(f"{p}.dt_bias", lin.num_value_heads, r, i, "column"),
        _vec(f"{p}.A_log", lin.num_value_heads, r, i, "column"),
        _vec(f"{p}.norm.weight", lin.value_head_dim, "norm", i),
        _lin(f"{p}.out_proj.weight", h, value_dim, r, i, "row"),
    ]


def _stacked_moe(spec: ModelSpec, lp: str, i: int, m: MlpSpec) -> list[TensorGroup]:
    """Router [E, H]; stacked experts gate_up [E, H, 2I] and down [E, I, H] ([E, in, out]);
    shared expert gate/up [S, H], down [H, S] and its sigmoid gate [1, H] when present."""
    h, e, inter = spec.hidden_size, m.num_experts, m.expert_intermediate_size
    p = f"{lp}.mlp"
    out = [_lin(f"{p}.gate.weight", e, h, "router", i, "replicated"),
           TensorGroup(f"{p}.experts.gate_up_proj", (e, h, 2 * inter), "routed_expert", i,
                       "expert_column", linear=True, stacked_experts=e),
           TensorGroup(f"{p}.experts.down_proj", (e, inter, h), "routed_expert", i, "expert_row",
                       linear=True, stacked_experts=e)]
    if m.shared_intermediate_size:
        out += _gated_mlp(f"{p}.shared_expert", h, m.shared_intermediate_size, "shared_expert", i)
    if m.shared_expert_gate:
        out.append(_lin(f"{p}.shared_expert_gate.weight", 1, h, "router", i, "replicated"))
    return out


def _layer(spec: ModelSpec, lp: str, layer: LayerSpec, *, stacked: bool) -> list[TensorGroup]:
    i, h, a = layer.index, spec.hidden_size, layer.attention
    if a.kind == "linear":
        out = _gdn(spec, f"{lp}.linear_attn", i, a)
    else:
        out = _full_attn(spec, f"{lp}.self_attn", i, a)
    out += [_vec(f"{lp}.input_layernorm.weight", h, "norm", i),
            _vec(f"{lp}.post_attention_layernorm.weight", h, "norm", i)]
    if layer.mlp.kind == "moe":
        out += _stacked_moe(spec, lp, i, layer.mlp) if stacked else _moe(spec, lp, i, layer.mlp)
    else:
        out += _gated_mlp(f"{lp}.mlp", h, layer.mlp.intermediate_size, "mlp", i)
    return out


def _mtp(spec: ModelSpec) -> list[TensorGroup]:
    """Qwen3.5 MTP blocks: mtp.fc [H, 2H], mtp.pre_fc_norm_embedding / pre_fc_norm_hidden / norm
    [H], and per block one gated full-attention decoder layer with the model's MLP (per-expert
    tensors in the MoE checkpoint); the embedding and head are shared with the main model unless
    ``mtp_use_dedicated_embeddings``. Source: vllm/model_executor/models/qwen3_5_mtp.py
    (Qwen3_5MultiTokenPredictor) @ 01d99805d1ef.

    ASSUMPTION: a dedicated MTP embedding is stored as ``mtp.embed_tokens.weight`` [V, H] (no
    released config sets mtp_use_dedicated_embeddings).
    """
    if not spec.mtp_layers:
        return []
    h, v = spec.hidden_size, spec.vocab_size
    full = next((ly.attention for ly in spec.layers if ly.attention.kind == "full"), None)
    if full is None:
        a0 = spec.layers[0].attention
        full = AttentionSpec(kind="full", num_heads=a0.num_heads, num_kv_heads=a0.num_kv_heads,
                             head_dim=a0.head_dim, v_head_dim=a0.v_head_dim, output_gate=True)
    out = [_lin("mtp.fc.weight", h, 2 * h, "mtp", None, "replicated"),
           _vec("mtp.pre_fc_norm_embedding.weight", h, "mtp", None),
           _vec("mtp.pre_fc_norm_hidden.weight", h, "mtp", None),
           _vec("mtp.norm.weight", h, "mtp", None)]
    if spec.param("mtp_dedicated_embeddings", False):
        out.append(TensorGroup("mtp.embed_tokens.weight", (v, h), "mtp", None, "vocab"))
    for k in range(spec.mtp_layers):
        layer = LayerSpec(index=spec.num_layers + k, attention=full, mlp=spec.layers[-1].mlp)
        out += [replace(t, role="mtp") for t in _layer(spec, f"mtp.layers.{k}", layer,
                                                        stacked=False)]
    return out


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    """Text-model tensors in checkpoint naming (main, mtp); towers are added from ``spec.towers``."""
    h, v, pre = spec.hidden_size, spec.vocab_size, spec.prefix
    main = [TensorGroup(f"{pre}.embed_tokens.weight", (v, h), "embedding", None, "vocab")]
    for layer in spec.layers:
        main += _layer(spec, f"{pre}.layers.{layer.index}", layer, stacked=True)
    main.append(_vec(f"{pre}.norm.weight", h, "norm", None))
    if not spec.tie_word_embeddings:
        main.append(TensorGroup(f"{spec.lm_head_name}.weight", (v, h), "lm_head", None, "vocab",
                                linear=True))
    return main, _mtp(spec)
