"""Qwen-VL vision towers: Qwen2-VL, Qwen2.5-VL, Qwen3-VL (with DeepStack mergers) and Qwen3.5.

Tower families (``TowerSpec.family``):

* ``qwen3_vl``: transformers ``Qwen3VLVisionModel`` (models/qwen3_vl/modeling_qwen3_vl.py @ 5.25.0);
  Qwen3.5 / Qwen3.5-MoE use the same blocks (``Qwen3_5VisionModel``, models/qwen3_5/
  modeling_qwen3_5.py @ 5.25.0) without DeepStack mergers. Checkpoint prefix ``model.visual``
  (no conversion mapping in transformers 5.25.0: checkpoint names == module names).
* ``qwen2_vl``: ``Qwen2VisionTransformerPretrainedModel`` (models/qwen2_vl/modeling_qwen2_vl.py
  @ 5.25.0): LayerNorm blocks with an fc1/fc2 MLP. Same checkpoint naming as Qwen2.5-VL.
* ``qwen2_5_vl``: ``Qwen2_5_VisionTransformerPretrainedModel`` (models/qwen2_5_vl/
  modeling_qwen2_5_vl.py @ 5.25.0). The released checkpoints store it as ``visual.*`` (and the
  text model as ``model.*``); transformers renames them to ``model.visual`` /
  ``model.language_model`` on load (conversion_mapping.py ``Qwen2VLForConditionalGeneration``).

Image cost (dynamic resolution, not stated by config.json): the processor resizes an image so
that each side is a multiple of ``patch_size * spatial_merge_size`` and the pixel count lies in
the processor's ``[min_pixels, max_pixels]`` (``smart_resize``, models/qwen2_vl/
image_processing_qwen2_vl.py @ 5.25.0); every ``(patch*merge)^2`` pixels become one context token:
``tokens = h_bar * w_bar / (patch_size * spatial_merge_size)^2`` (Qwen3-VL/3.5: 32x32 px per
token; Qwen2.5-VL: 28x28 px per token), plus the vision start/end tokens. ``TowerSpec
.tokens_per_item`` is therefore 0 (not stated); ``image_tokens`` computes it for a given size.
"""

from __future__ import annotations

import math

from vramplan.errors import InputError
from vramplan.inventory import TensorGroup, _lin, _vec
from vramplan.model.spec import ModelSpec, TowerSpec


def _i(tower: TowerSpec, key: str, default: int) -> int:
    v = tower.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        return default
    return v


def image_tokens(height_px: int, width_px: int, patch_size: int, merge_size: int,
                 min_pixels: int, max_pixels: int) -> int:
    """Context tokens of one image of ``height_px`` x ``width_px`` under Qwen-VL dynamic resolution.

    ``f = patch_size * merge_size``; sides rounded to multiples of ``f``; if the area exceeds
    ``max_pixels`` both sides are scaled by ``sqrt(h*w/max_pixels)`` and floored to ``f``, if below
    ``min_pixels`` scaled up and ceiled; tokens = ``h_bar * w_bar / f^2`` (vision start/end markers
    excluded). Source: transformers models/qwen2_vl/image_processing_qwen2_vl.py ``smart_resize``
    @ 5.25.0 (also used by the Qwen2.5-VL, Qwen3-VL and Qwen3.5 processors).
    """
    if min(height_px, width_px, patch_size, merge_size) <= 0:
        raise InputError("image size", f"must be positive, got {height_px}x{width_px}",
                         "give the image height and width in pixels")
    f = patch_size * merge_size
    h_bar = round(height_px / f) * f
    w_bar = round(width_px / f) * f
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height_px * width_px / max_pixels)
        h_bar = max(f, math.floor(height_px / beta / f) * f)
        w_bar = max(f, math.floor(width_px / beta / f) * f)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height_px * width_px))
        h_bar = math.ceil(height_px * beta / f) * f
        w_bar = math.ceil(width_px * beta / f) * f
    return (h_bar // f) * (w_bar // f)


def _v(name: str, n: int) -> TensorGroup:
    """A vision 1-D parameter (norm weight / bias)."""
    return _vec(name, n, "vision", None)


def _lin_b(name: str, out: int, inp: int) -> list[TensorGroup]:
    """A vision Linear with bias (weight [out, in] + bias [out])."""
    return [_lin(f"{name}.weight", out, inp, "vision", None, "replicated"),
            _v(f"{name}.bias", out)]


def _qwen3_vl(tower: TowerSpec) -> list[TensorGroup]:
    """Qwen3-VL / Qwen3.5 vision tower + merger(s), prefix ``model.visual``.

    d = hidden_size, I = intermediate_size, m = d * spatial_merge_size^2, o = out_hidden_size:
    patch_embed Conv3d [d, in_channels, temporal_patch, patch, patch] + bias; pos_embed
    [num_position_embeddings, d]; per block: LayerNorm norm1/norm2 (w+b), attn.qkv [3d, d]+b,
    attn.proj [d, d]+b, mlp.linear_fc1 [I, d]+b, mlp.linear_fc2 [d, I]+b; merger: LayerNorm [d],
    linear_fc1 [m, m]+b, linear_fc2 [o, m]+b; one DeepStack merger per deepstack_visual_indexes
    entry with its LayerNorm after the spatial shuffle ([m]). Source: transformers
    models/qwen3_vl/modeling_qwen3_vl.py @ 5.25.0 (Qwen3VLVisionModel, Qwen3VLVisionPatchMerger).
    """
    p = "model.visual"
    d = _i(tower, "hidden_size", 1152)
    inter = _i(tower, "intermediate_size", 4304)
    depth = _i(tower, "depth", 27)
    ch = _i(tower, "in_channels", 3)
    ps = _i(tower, "patch_size", 16)
    tps = _i(tower, "temporal_patch_size", 2)
    merge = _i(tower, "spatial_merge_size", 2)
    out_h = _i(tower, "out_hidden_size", 3584)
    n_pos = _i(tower, "num_position_embeddings", 2304)
    deep = tower.get("deepstack_visual_indexes", ())
    n_deep = len(deep) if isinstance(deep, tuple) else 0
    m = d * merge * merge
    out: list[TensorGroup] = [
        TensorGroup(f"{p}.patch_embed.proj.weight", (d, ch, tps, ps, ps), "vision", None),
        _v(f"{p}.patch_embed.proj.bias", d),
        TensorGroup(f"{p}.pos_embed.weight", (n_pos, d), "vision", None),
    ]
    for j in range(depth):
        b = f"{p}.blocks.{j}"
        for n in ("norm1", "norm2"):
            out += [_v(f"{b}.{n}.weight", d), _v(f"{b}.{n}.bias", d)]
        out += _lin_b(f"{b}.attn.qkv", 3 * d, d) + _lin_b(f"{b}.attn.proj", d, d)
        out += _lin_b(f"{b}.mlp.linear_fc1", inter, d) + _lin_b(f"{b}.mlp.linear_fc2", d, inter)
    mergers = [(f"{p}.merger", d)] + [(f"{p}.deepstack_merger_list.{k}", m) for k in range(n_deep)]
    for name, norm_dim in mergers:
        out += [_v(f"{name}.norm.weight", norm_dim),
                _v(f"{name}.norm.bias", norm_dim)]
        out += _lin_b(f"{name}.linear_fc1", m, m) + _lin_b(f"{name}.linear_fc2", out_h, m)
    return out


def _qwen2_5_vl(tower: TowerSpec) -> list[TensorGroup]:
    """Qwen2.5-VL vision tower + merger, checkpoint prefix ``visual``.

    d = hidden_size, I = intermediate_size, m = d * spatial_merge_size^2, o = out_hidden_size:
    patch_embed Conv3d [d, in_channels, temporal_patch, patch, patch] (no bias); per block:
    RMSNorm norm1/norm2 [d], attn.qkv [3d, d]+b, attn.proj [d, d]+b, gated mlp gate/up [I, d]+b,
    down [d, I]+b; merger: RMSNorm ln_q [d], mlp.0 [m, m]+b, mlp.2 [o, m]+b. Window attention
    (window_size, fullatt_block_indexes) adds no weights. Source: transformers
    models/qwen2_5_vl/modeling_qwen2_5_vl.py @ 5.25.0.
    """
    p = "visual"
    d = _i(tower, "hidden_size", 3584)
    inter = _i(tower, "intermediate_size", 3420)
    depth = _i(tower, "depth", 32)
    ch = _i(tower, "in_channels", _i(tower, "in_chans", 3))
    ps = _i(tower, "patch_size", 14)
    tps = _i(tower, "temporal_patch_size", 2)
    merge = _i(tower, "spatial_merge_size", 2)
    out_h = _i(tower, "out_hidden_size", 3584)
    m = d * merge * merge
    out: list[TensorGroup] = [
        TensorGroup(f"{p}.patch_embed.proj.weight", (d, ch, tps, ps, ps), "vision", None)]
    for j in range(depth):
        b = f"{p}.blocks.{j}"
        out += [_v(f"{b}.norm1.weight", d), _v(f"{b}.norm2.weight", d)]
        out += _lin_b(f"{b}.attn.qkv", 3 * d, d) + _lin_b(f"{b}.attn.proj", d, d)
        out += (_lin_b(f"{b}.mlp.gate_proj", inter, d) + _lin_b(f"{b}.mlp.up_proj", inter, d)
                + _lin_b(f"{b}.mlp.down_proj", d, inter))
    out.append(_v(f"{p}.merger.ln_q.weight", d))
    out += _lin_b(f"{p}.merger.mlp.0", m, m) + _lin_b(f"{p}.merger.mlp.2", out_h, m)
    return out


def _qwen2_vl(tower: TowerSpec) -> list[TensorGroup]:
    """Qwen2-VL vision tower + merger, checkpoint prefix ``visual``.

    d = embed_dim, I = d * mlp_ratio, m = d * spatial_merge_size^2, o = hidden_size (the text
    width): patch_embed Conv3d [d, in_channels, temporal_patch, patch, patch] (no bias); per block:
    LayerNorm norm1/norm2 (w+b), attn.qkv [3d, d]+b, attn.proj [d, d]+b, mlp.fc1 [I, d]+b,
    mlp.fc2 [d, I]+b; merger: LayerNorm ln_q [d] (w+b), mlp.0 [m, m]+b, mlp.2 [o, m]+b. Source:
    transformers models/qwen2_vl/modeling_qwen2_vl.py @ 5.25.0
    (Qwen2VisionTransformerPretrainedModel, PatchMerger, VisionMlp).
    """
    p = "visual"
    d = _i(tower, "embed_dim", 1280)
    inter = d * _i(tower, "mlp_ratio", 4)
    depth = _i(tower, "depth", 32)
    ch = _i(tower, "in_channels", _i(tower, "in_chans", 3))
    ps = _i(tower, "patch_size", 14)
    tps = _i(tower, "temporal_patch_size", 2)
    merge = _i(tower, "spatial_merge_size", 2)
    out_h = _i(tower, "hidden_size", 3584)
    m = d * merge * merge
    out: list[TensorGroup] = [
        TensorGroup(f"{p}.patch_embed.proj.weight", (d, ch, tps, ps, ps), "vision", None)]
    for j in range(depth):
        b = f"{p}.blocks.{j}"
        for n in ("norm1", "norm2"):
            out += [_v(f"{b}.{n}.weight", d), _v(f"{b}.{n}.bias", d)]
        out += _lin_b(f"{b}.attn.qkv", 3 * d, d) + _lin_b(f"{b}.attn.proj", d, d)
        out += _lin_b(f"{b}.mlp.fc1", inter, d) + _lin_b(f"{b}.mlp.fc2", d, inter)
    out += [_v(f"{p}.merger.ln_q.weight", d), _v(f"{p}.merger.ln_q.bias", d)]
    out += _lin_b(f"{p}.merger.mlp.0", m, m) + _lin_b(f"{p}.merger.mlp.2", out_h, m)
    return out


def tower_tensors(tower: TowerSpec, spec: ModelSpec) -> list[TensorGroup]:
    """The tensors of one Qwen-VL vision tower (``tower.family``: qwen3_vl, qwen2_5_vl, qwen2_vl)."""
    if tower.family == "qwen2_vl":
        return _qwen2_vl(tower)
    if tower.family == "qwen2_5_vl":
        return _qwen2_5_vl(tower)
    return _qwen3_vl(tower)
