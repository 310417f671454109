"""InternVL (transformers-native ``internvl``: InternVL3 / InternVL3.5 ``-hf`` checkpoints).

Structure (transformers models/internvl/modeling_internvl.py @ 5.25.0):

* text: ``AutoModel`` of ``text_config`` under ``model.language_model`` + ``lm_head``. Read here for
  the dense decoders InternVL ships with: ``qwen2`` (InternVL3: q/k/v biases), ``qwen3`` (InternVL3.5:
  q/k RMSNorm) and ``llama``; other text models (MoE, InternLM) are refused.
* vision: ``InternVLVisionModel`` (InternViT) under ``model.vision_tower``: CLS token, absolute
  position embeddings, Conv2d patch embedding, pre-norm blocks with separate q/k/v projections,
  optional q/k RMSNorm, layer-scale vectors ``lambda_1`` / ``lambda_2``.
* projector: ``model.multi_modal_projector``: LayerNorm over the pixel-shuffled features
  (``vision_hidden * (1/downsample_ratio)^2``), linear_1 to the text width, GELU, linear_2.

ASSUMPTION: the ``-hf`` checkpoints store these in-memory names (transformers' ``llava`` conversion
mapping, applied to ``internvl``, only renames the legacy ``language_model.*`` / ``vision_tower.*``
/ ``multi_modal_projector.*`` prefixes).

Image cost: ``image_seq_length`` tokens (256) per 448x448 tile = (image_size/patch_size)^2 *
downsample_ratio^2; the processor splits an image into 1..``max_patches`` (12) tiles plus a
thumbnail (models/got_ocr2/image_processing_got_ocr2.py ``crop_to_patches`` @ 5.25.0), so one
image costs 256 * (tiles + 1) tokens when tiled; ``TowerSpec.tokens_per_item`` is the per-tile cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from vramplan.errors import ConfigError
from vramplan.families.qwen_vl import _full_attn
from vramplan.inventory import TensorGroup, _gated_mlp, _lin, _vec
from vramplan.model import hf_config
from vramplan.model.spec import ModelSpec, TowerSpec, freeze

FAMILY = "internvl"
MODEL_TYPES = ("internvl",)
ARCHITECTURES = ("InternVLForConditionalGeneration",)
HANDLES = frozenset({"vision"})
_TEXT_TYPES = ("qwen2", "qwen3", "llama")

# InternVLVisionConfig defaults (transformers 5.25.0)
_VISION_INT_DEFAULTS = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                        "intermediate_size": 4096, "num_channels": 3}
_VISION_BOOL_DEFAULTS = {"attention_bias": False, "use_qk_norm": False, "use_mask_token": False,
                         "use_absolute_position_embeddings": True, "use_mean_pooling": True}


def _side(vc: Mapping[str, Any], key: str, default: int) -> int:
    """image_size / patch_size: an int or a [h, w] pair (square required)."""
    val = vc.get(key, default)
    if isinstance(val, list | tuple) and len(val) == 2 and val[0] == val[1]:
        val = val[0]
    if isinstance(val, bool) or not isinstance(val, int) or val <= 0:
        raise ConfigError(f"config.json vision_config.{key}", f"must be a positive integer or a "
                          f"square [n, n] pair, got {val!r}", "fix it in config.json")
    return val


def _tower(cfg: Mapping[str, Any], text_hidden: int) -> TowerSpec:
    vc = cfg.get("vision_config")
    vc = vc if isinstance(vc, Mapping) else {}
    items: dict[str, Any] = {}
    for key, default in _VISION_INT_DEFAULTS.items():
        items[key] = hf_config.read_int(vc, key, default, field_prefix="vision_config.")
    for key, bdefault in _VISION_BOOL_DEFAULTS.items():
        items[key] = bool(vc.get(key, bdefault))
    norm = str(vc.get("norm_type", "layer_norm"))
    if norm not in ("layer_norm", "rms_norm"):
        raise ConfigError("config.json vision_config.norm_type", f"unknown {norm!r}",
                          "use layer_norm or rms_norm")
    items["norm_type"] = norm
    items["image_size"] = _side(vc, "image_size", 448)
    items["patch_size"] = _side(vc, "patch_size", 14)
    ratio = cfg.get("downsample_ratio", 0.5)
    if not isinstance(ratio, int | float) or isinstance(ratio, bool) or not 0 < ratio <= 1:
        raise ConfigError("config.json downsample_ratio", f"must be in (0, 1], got {ratio!r}",
                          "fix it in config.json")
    items["shuffle"] = int(1 / ratio)  # transformers: int(1 / downsample_ratio)
    items["text_hidden_size"] = text_hidden
    side = items["image_size"] // items["patch_size"]
    per_tile = int(side * side * ratio * ratio)
    tokens = hf_config.read_int(cfg, "image_seq_length", per_tile)
    frozen = freeze(items)
    assert isinstance(frozen, tuple)
    return TowerSpec(kind="vision", model_type=str(vc.get("model_type", "internvl_vision")),
                     family="internvl", config=frozen, tokens_per_item=tokens)


def spec(cfg: Mapping[str, Any], model_id: str = "local",
         extra_quant: Mapping[str, Any] | None = None) -> ModelSpec:
    """config.json -> ModelSpec for InternVL with a dense Qwen2 / Qwen3 / Llama text model."""
    tc = cfg.get("text_config")
    if not isinstance(tc, Mapping):
        raise ConfigError("config.json text_config", "is missing",
                          "pass the InternVL -hf config.json (with text_config)")
    text_type = str(tc.get("model_type", "qwen2"))
    if text_type not in _TEXT_TYPES:
        raise ConfigError("config.json text_config.model_type", f"InternVL with a {text_type!r} "
                          "text model is not laid out", f"supported: {', '.join(_TEXT_TYPES)}")
    notes: list[str] = []
    fixed = dict(cfg)
    text = dict(tc)
    # transformers 5.25.0: the top-level tie_word_embeddings governs (InternVLConfig default True)
    tie = cfg.get("tie_word_embeddings")
    if tie is None:
        tie = True
        notes.append("tie_word_embeddings absent: InternVLConfig default is True")
    text["tie_word_embeddings"] = bool(tie)
    fixed["text_config"] = text
    base = hf_config.generic_spec(fixed, model_id, extra_quant, model_type=text_type,
                                  family=FAMILY, notes=notes)
    if any(layer.attention.kind != "full" for layer in base.layers):
        raise ConfigError("config.json text_config.use_sliding_window", "sliding-window text "
                          "layers are not laid out for InternVL", "set use_sliding_window false")
    tower = _tower(cfg, base.hidden_size)
    notes = list(base.notes)
    notes.append(f"images: {tower.tokens_per_item} context tokens per "
                 f"{tower.get('image_size')}px tile; the processor uses 1..12 tiles + a thumbnail "
                 "per image")
    return replace(base, attention_bias=text_type == "qwen2" or bool(text.get("attention_bias")),
                   attention_out_bias=text_type == "llama" and bool(text.get("attention_bias")),
                   qk_norm=text_type == "qwen3", mlp_bias=text_type == "llama"
                   and bool(text.get("mlp_bias")), towers=(tower,),
                   prefix="model.language_model", lm_head_name="lm_head", notes=tuple(notes))


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    """Text-model tensors (embed, decoder layers, norm, lm_head unless tied); no MTP."""
    h, v, pre = spec.hidden_size, spec.vocab_size, spec.prefix
    main = [TensorGroup(f"{pre}.embed_tokens.weight", (v, h), "embedding", None, "vocab")]
    for layer in spec.layers:
        lp, i = f"{pre}.layers.{layer.index}", layer.index
        main += _full_attn(spec, f"{lp}.self_attn", i, layer.attention)
        main += [_vec(f"{lp}.input_layernorm.weight", h, "norm", i),
                 _vec(f"{lp}.post_attention_layernorm.weight", h, "norm", i)]
        main += _gated_mlp(f"{lp}.mlp", h, layer.mlp.intermediate_size, "mlp", i,
                           bias=spec.mlp_bias)
    main.append(_vec(f"{pre}.norm.weight", h, "norm", None))
    if not spec.tie_word_embeddings:
        main.append(TensorGroup(f"{spec.lm_head_name}.weight", (v, h), "lm_head", None, "vocab",
                                linear=True))
    return main, []


def _i(tower: TowerSpec, key: str) -> int:
    v = tower.get(key)
    assert isinstance(v, int)
    return v


def tower_tensors(tower: TowerSpec, spec: ModelSpec) -> list[TensorGroup]:
    """InternViT + projector, prefix ``model.vision_tower`` / ``model.multi_modal_projector``.

    d = hidden_size, I = intermediate_size, n = (image_size/patch_size)^2, s = 1/downsample_ratio,
    t = text hidden: cls_token [1, 1, d]; mask_token [1, 1, d] if use_mask_token;
    position_embeddings [1, n+1, d] if absolute; patch Conv2d [d, channels, patch, patch] + bias;
    per layer: q/k/v [d, d] (+bias if attention_bias), projection_layer [d, d]+b, q_norm/k_norm [d]
    if use_qk_norm, fc1 [I, d]+b, fc2 [d, I]+b, layernorm_before/after [d] (+bias for LayerNorm),
    lambda_1/lambda_2 [d]; final layernorm [d]+b unless use_mean_pooling; projector LayerNorm
    [d*s^2]+b, linear_1 [t, d*s^2]+b, linear_2 [t, t]+b. Source: transformers
    models/internvl/modeling_internvl.py @ 5.25.0.
    """
    d, inter = _i(tower, "hidden_size"), _i(tower, "intermediate_size")
    ch, ps, img = _i(tower, "num_channels"), _i(tower, "patch_size"), _i(tower, "image_size")
    t, s = _i(tower, "text_hidden_size"), _i(tower, "shuffle")
    ln_bias = tower.get("norm_type") == "layer_norm"

    def vec(name: str, n: int) -> TensorGroup:
        return _vec(name, n, "vision", None)

    def lin(name: str, out: int, inp: int, bias: bool = True) -> list[TensorGroup]:
        g = [_lin(f"{name}.weight", out, inp, "vision", None, "replicated")]
        return g + [vec(f"{name}.bias", out)] if bias else g

    def norm(name: str, n: int, bias: bool) -> list[TensorGroup]:
        return [vec(f"{name}.weight", n)] + ([vec(f"{name}.bias", n)] if bias else [])

    p = "model.vision_tower"
    e = f"{p}.embeddings"
    out = [TensorGroup(f"{e}.cls_token", (1, 1, d), "vision", None)]
    if tower.get("use_mask_token"):
        out.append(TensorGroup(f"{e}.mask_token", (1, 1, d), "vision", None))
    if tower.get("use_absolute_position_embeddings"):
        out.append(TensorGroup(f"{e}.position_embeddings", (1, (img // ps) ** 2 + 1, d), "vision",
                               None))
    out += [TensorGroup(f"{e}.patch_embeddings.projection.weight", (d, ch, ps, ps), "vision", None),
            vec(f"{e}.patch_embeddings.projection.bias", d)]
    qkv_bias = bool(tower.get("attention_bias"))
    for j in range(_i(tower, "num_hidden_layers")):
        lp = f"{p}.encoder.layer.{j}"
        for n in ("q_proj", "k_proj", "v_proj"):
            out += lin(f"{lp}.attention.{n}", d, d, qkv_bias)
        out += lin(f"{lp}.attention.projection_layer", d, d)
        if tower.get("use_qk_norm"):
            out += [vec(f"{lp}.attention.q_norm.weight", d), vec(f"{lp}.attention.k_norm.weight", d)]
        out += lin(f"{lp}.mlp.fc1", inter, d) + lin(f"{lp}.mlp.fc2", d, inter)
        out += norm(f"{lp}.layernorm_before", d, ln_bias) + norm(f"{lp}.layernorm_after", d, ln_bias)
        out += [vec(f"{lp}.lambda_1", d), vec(f"{lp}.lambda_2", d)]
    if not tower.get("use_mean_pooling"):
        out += norm(f"{p}.layernorm", d, True)
    m = "model.multi_modal_projector"
    wide = d * s * s
    out += norm(f"{m}.layer_norm", wide, True) + lin(f"{m}.linear_1", t, wide)
    out += lin(f"{m}.linear_2", t, t)
    return out
