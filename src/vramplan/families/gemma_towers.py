"""Vision / audio towers of the Gemma families (and their projectors into the text model).

Builders keyed by ``TowerSpec.family`` (``families.TOWER_MODULES``):

* ``gemma3_siglip``: SigLIP vision transformer (transformers 5.25.0 models/siglip/modeling_siglip.py
  SiglipVisionModel) + Gemma3MultiModalProjector (models/gemma3/modeling_gemma3.py).
* ``gemma4_vision`` / ``gemma4_audio``: Gemma4VisionModel / Gemma4AudioModel + their
  Gemma4MultimodalEmbedder (models/gemma4/modeling_gemma4.py).
* ``gemma3n_audio`` / ``gemma3n_vision``: Gemma3nAudioEncoder / the timm MobileNetV5 encoder +
  Gemma3nMultimodalEmbedder (models/gemma3n/modeling_gemma3n.py).

All tower tensors are replicated under tensor parallelism (engines run encoders whole per rank).
"""

from __future__ import annotations

from vramplan.errors import ConfigError
from vramplan.inventory import Role, TensorGroup
from vramplan.model.spec import ModelSpec, TowerSpec


def _int(tower: TowerSpec, key: str) -> int:
    val = tower.get(key)
    if isinstance(val, bool) or not isinstance(val, int) or val <= 0:
        raise ConfigError(f"config.json {tower.kind}_config.{key}",
                          f"must be a positive integer, got {val!r}", "fix the value in config.json")
    return val


def _t(name: str, shape: tuple[int, ...], role: Role, linear: bool = False,
       buffer: bool = False, count: int = 1) -> TensorGroup:
    return TensorGroup(name, shape, role, None, "replicated", linear=linear, count=count,
                       buffer=buffer)


def siglip_tensors(tower: TowerSpec, text_hidden: int, p: str = "vision_tower.vision_model",
                   proj: str = "multi_modal_projector") -> list[TensorGroup]:
    """SigLIP vision tower + Gemma 3 projector.

    embeddings: patch conv [d, c, P, P] + bias [d]; position embedding [(S/P)^2, d] (S x S image,
    a [h, w] image_size gives (h/P)(w/P) positions); per encoder layer q/k/v/out_proj [d, d] + bias,
    fc1 [I, d] + bias, fc2 [d, I] + bias, layer_norm1/2 weight + bias; post_layernorm weight + bias;
    with ``vision_use_head`` the attention-pooling head (probe [1, 1, d], nn.MultiheadAttention
    in_proj [3d, d] + [3d], out_proj [d, d] + [d], layernorm, MLP). Projector:
    ``mm_input_projection_weight [d, text_hidden]``, ``mm_soft_emb_norm [d]``.
    Source: transformers 5.25.0 siglip/modeling_siglip.py, gemma3/modeling_gemma3.py.
    """
    d, inter = _int(tower, "hidden_size"), _int(tower, "intermediate_size")
    n, c, ps = _int(tower, "num_hidden_layers"), _int(tower, "num_channels"), _int(tower, "patch_size")
    img = tower.get("image_size")
    if isinstance(img, tuple) and len(img) == 2 and all(isinstance(x, int) for x in img):
        positions = (int(img[0]) // ps) * (int(img[1]) // ps)
    else:
        positions = (_int(tower, "image_size") // ps) ** 2
    r: Role = "vision"
    out = [_t(f"{p}.embeddings.patch_embedding.weight", (d, c, ps, ps), r),
           _t(f"{p}.embeddings.patch_embedding.bias", (d,), r),
           _t(f"{p}.embeddings.position_embedding.weight", (positions, d), r)]
    for j in range(n):
        lp = f"{p}.encoder.layers.{j}"
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out += [_t(f"{lp}.self_attn.{name}.weight", (d, d), r, linear=True),
                    _t(f"{lp}.self_attn.{name}.bias", (d,), r)]
        out += [_t(f"{lp}.mlp.fc1.weight", (inter, d), r, linear=True),
                _t(f"{lp}.mlp.fc1.bias", (inter,), r),
                _t(f"{lp}.mlp.fc2.weight", (d, inter), r, linear=True),
                _t(f"{lp}.mlp.fc2.bias", (d,), r)]
        for ln in ("layer_norm1", "layer_norm2"):
            out += [_t(f"{lp}.{ln}.weight", (d,), r), _t(f"{lp}.{ln}.bias", (d,), r)]
    out += [_t(f"{p}.post_layernorm.weight", (d,), r), _t(f"{p}.post_layernorm.bias", (d,), r)]
    if tower.get("vision_use_head", True):
        hp = f"{p}.head"
        out += [_t(f"{hp}.probe", (1, 1, d), r),
                _t(f"{hp}.attention.in_proj_weight", (3 * d, d), r, linear=True),
                _t(f"{hp}.attention.in_proj_bias", (3 * d,), r),
                _t(f"{hp}.attention.out_proj.weight", (d, d), r, linear=True),
                _t(f"{hp}.attention.out_proj.bias", (d,), r),
                _t(f"{hp}.layernorm.weight", (d,), r), _t(f"{hp}.layernorm.bias", (d,), r),
                _t(f"{hp}.mlp.fc1.weight", (inter, d), r, linear=True),
                _t(f"{hp}.mlp.fc1.bias", (inter,), r),
                _t(f"{hp}.mlp.fc2.weight", (d, inter), r, linear=True),
                _t(f"{hp}.mlp.fc2.bias", (d,), r)]
    out += [_t(f"{proj}.mm_input_projection_weight", (d, text_hidden), r, linear=True),
            _t(f"{proj}.mm_soft_emb_norm.weight", (d,), r)]
    return out


def _clip_buffers(name: str, on: bool, r: Role) -> list[TensorGroup]:
    """Gemma4ClippableLinear with ``use_clipped_linears``: input/output min/max scalar buffers."""
    if not on:
        return []
    return [_t(f"{name}.{b}", (), r, buffer=True)
            for b in ("input_min", "input_max", "output_min", "output_max")]


def _clip_lin(name: str, out_f: int, in_f: int, on: bool, r: Role) -> list[TensorGroup]:
    return [_t(f"{name}.linear.weight", (out_f, in_f), r, linear=True), *_clip_buffers(name, on, r)]


def gemma4_vision_tensors(tower: TowerSpec, text_hidden: int, p: str = "model.vision_tower",
                          proj: str = "model.embed_vision") -> list[TensorGroup]:
    """Gemma4VisionModel + embed_vision (transformers 5.25.0 gemma4/modeling_gemma4.py).

    patch_embedder.input_proj [d, 3 P^2], position_embedding_table [2, position_embedding_size, d];
    per encoder layer q [heads*hd, d], k/v [kv*hd, d], o [d, heads*hd] (Gemma4ClippableLinear:
    ``.linear.weight`` + 4 scalar buffers when ``use_clipped_linears``), q_norm/k_norm [hd],
    gate/up [I, d], down [d, I], four RMSNorms [d]; ``standardize``: std_bias/std_scale buffers
    [d]; embed_vision.embedding_projection [text_hidden, d] (its pre-norm has no weight).
    """
    d, inter = _int(tower, "hidden_size"), _int(tower, "intermediate_size")
    n, heads = _int(tower, "num_hidden_layers"), _int(tower, "num_attention_heads")
    kv, hd = _int(tower, "num_key_value_heads"), _int(tower, "head_dim")
    ps, pos = _int(tower, "patch_size"), _int(tower, "position_embedding_size")
    clip = bool(tower.get("use_clipped_linears", False))
    r: Role = "vision"
    out = [_t(f"{p}.patch_embedder.input_proj.weight", (d, 3 * ps * ps), r, linear=True),
           _t(f"{p}.patch_embedder.position_embedding_table", (2, pos, d), r)]
    for j in range(n):
        lp = f"{p}.encoder.layers.{j}"
        out += _clip_lin(f"{lp}.self_attn.q_proj", heads * hd, d, clip, r)
        out += _clip_lin(f"{lp}.self_attn.k_proj", kv * hd, d, clip, r)
        out += _clip_lin(f"{lp}.self_attn.v_proj", kv * hd, d, clip, r)
        out += _clip_lin(f"{lp}.self_attn.o_proj", d, heads * hd, clip, r)
        out += [_t(f"{lp}.self_attn.q_norm.weight", (hd,), r),
                _t(f"{lp}.self_attn.k_norm.weight", (hd,), r)]
        out += _clip_lin(f"{lp}.mlp.gate_proj", inter, d, clip, r)
        out += _clip_lin(f"{lp}.mlp.up_proj", inter, d, clip, r)
        out += _clip_lin(f"{lp}.mlp.down_proj", d, inter, clip, r)
        out += [_t(f"{lp}.{nm}.weight", (d,), r) for nm in (
            "input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
            "post_feedforward_layernorm")]
    if tower.get("standardize", False):
        out += [_t(f"{p}.std_bias", (d,), r, buffer=True), _t(f"{p}.std_scale", (d,), r, buffer=True)]
    out.append(_t(f"{proj}.embedding_projection.weight", (text_hidden, d), r, linear=True))
    return out


def gemma4_audio_tensors(tower: TowerSpec, text_hidden: int, p: str = "model.audio_tower",
                         proj: str = "model.embed_audio") -> list[TensorGroup]:
    """Gemma4AudioModel (USM conformer) + embed_audio (transformers 5.25.0 gemma4/modeling_gemma4.py).

    subsample: two conv [c_k, c_in, 3, 3] (no bias) + LayerNorm weight [c_k], input_proj_linear
    [d, (c0 // 4) c1]; per conformer layer: two feed-forwards (ffw_layer_1 [4d, d], ffw_layer_2
    [d, 4d], pre/post norms [d]), attention (q/k/v [d, d], post [d, d], relative_k_proj [d, d],
    per_dim_scale [d / heads]), light conv (linear_start [2d, d], depthwise conv [d, 1, k],
    linear_end [d, d], pre_layer_norm and conv_norm [d]), norm_pre_attn / norm_post_attn /
    norm_out [d]; Gemma4ClippableLinear adds 4 scalar buffers each when ``use_clipped_linears``;
    output_proj [out, d] + bias [out]; embed_audio.embedding_projection [text_hidden, out].
    """
    d, n = _int(tower, "hidden_size"), _int(tower, "num_hidden_layers")
    heads, k = _int(tower, "num_attention_heads"), _int(tower, "conv_kernel_size")
    out_dim = _int(tower, "output_proj_dims")
    ch = tower.get("subsampling_conv_channels")
    if not (isinstance(ch, tuple) and len(ch) == 2 and all(isinstance(c, int) and c > 0
                                                           for c in ch)):
        raise ConfigError("config.json audio_config.subsampling_conv_channels",
                          f"must be two positive integers, got {ch!r}", "fix it in config.json")
    c0, c1 = int(ch[0]), int(ch[1])
    clip = bool(tower.get("use_clipped_linears", True))
    hd = d // heads
    r: Role = "audio"
    sp = f"{p}.subsample_conv_projection"
    out = [_t(f"{sp}.layer0.conv.weight", (c0, 1, 3, 3), r), _t(f"{sp}.layer0.norm.weight", (c0,), r),
           _t(f"{sp}.layer1.conv.weight", (c1, c0, 3, 3), r), _t(f"{sp}.layer1.norm.weight", (c1,), r),
           _t(f"{sp}.input_proj_linear.weight", (d, (c0 // 4) * c1), r, linear=True)]
    for j in range(n):
        lp = f"{p}.layers.{j}"
        for ff in ("feed_forward1", "feed_forward2"):
            out += _clip_lin(f"{lp}.{ff}.ffw_layer_1", 4 * d, d, clip, r)
            out += _clip_lin(f"{lp}.{ff}.ffw_layer_2", d, 4 * d, clip, r)
            out += [_t(f"{lp}.{ff}.pre_layer_norm.weight", (d,), r),
                    _t(f"{lp}.{ff}.post_layer_norm.weight", (d,), r)]
        for nm in ("q_proj", "k_proj", "v_proj"):
            out += _clip_lin(f"{lp}.self_attn.{nm}", heads * hd, d, clip, r)
        out += _clip_lin(f"{lp}.self_attn.post", d, d, clip, r)
        out += [_t(f"{lp}.self_attn.relative_k_proj.weight", (heads * hd, d), r, linear=True),
                _t(f"{lp}.self_attn.per_dim_scale", (hd,), r)]
        out += _clip_lin(f"{lp}.lconv1d.linear_start", 2 * d, d, clip, r)
        out += _clip_lin(f"{lp}.lconv1d.linear_end", d, d, clip, r)
        out += [_t(f"{lp}.lconv1d.depthwise_conv1d.weight", (d, 1, k), r),
                _t(f"{lp}.lconv1d.pre_layer_norm.weight", (d,), r),
                _t(f"{lp}.lconv1d.conv_norm.weight", (d,), r)]
        out += [_t(f"{lp}.{nm}.weight", (d,), r) for nm in ("norm_pre_attn", "norm_post_attn",
                                                             "norm_out")]
    out += [_t(f"{p}.output_proj.weight", (out_dim, d), r, linear=True),
            _t(f"{p}.output_proj.bias", (out_dim,), r),
            _t(f"{proj}.embedding_projection.weight", (text_hidden, out_dim), r, linear=True)]
    return out


def _pair(tower: TowerSpec, key: str, i: int) -> tuple[int, int]:
    val = tower.get(key)
    if isinstance(val, tuple) and len(val) > i:
        x = val[i]
        if isinstance(x, tuple) and len(x) == 2 and all(isinstance(y, int) and y > 0 for y in x):
            return int(x[0]), int(x[1])
    raise ConfigError(f"config.json audio_config.{key}", f"must hold two [h, w] pairs, got {val!r}",
                      "fix it in config.json")


def _mm_embedder(proj: str, vocab: int, d: int, text_hidden: int, r: Role) -> list[TensorGroup]:
    """Gemma3nMultimodalEmbedder: embedding [vocab, d], hard/soft embedding norms [d],
    embedding_projection [text_hidden, d] (the post-projection norm has no weight)."""
    return [_t(f"{proj}.embedding.weight", (vocab, d), r),
            _t(f"{proj}.hard_embedding_norm.weight", (d,), r),
            _t(f"{proj}.soft_embedding_norm.weight", (d,), r),
            _t(f"{proj}.embedding_projection.weight", (text_hidden, d), r, linear=True)]


def gemma3n_audio_tensors(tower: TowerSpec, text_hidden: int, p: str = "model.audio_tower",
                          proj: str = "model.embed_audio") -> list[TensorGroup]:
    """Gemma3nAudioEncoder (USM conformer) + embed_audio (transformers 5.25.0 gemma3n/modeling_gemma3n.py).

    subsample: conv_k [c_k, c_in, kh, kw] (no bias) + norm [c_k] for k = 0, 1; the frequency axis
    goes f -> (f + 2 - kw) // sw + 1 per conv (padding 1 each side), input_proj_linear
    [d, c_1 * f_1]; per conformer layer: ffw_layer_start / ffw_layer_end (pre_layer_norm [d],
    ffw_layer_1 [4d, d], ffw_layer_2 [d, 4d], post_layer_norm [d]), attention (pre_attn_norm,
    per_dim_scale [d / heads], relative_position_embedding.pos_proj, q/k/v [d, d], post [d, d],
    post_norm), lconv1d (pre_layer_norm, linear_start [2d, d], depthwise_conv1d [d, 1, k],
    conv_norm, linear_end [d, d]), norm [d]; then the multimodal embedder.
    """
    d, n = _int(tower, "hidden_size"), _int(tower, "conf_num_hidden_layers")
    heads, k = _int(tower, "conf_num_attention_heads"), _int(tower, "conf_conv_kernel_size")
    ch = tower.get("sscp_conv_channel_size")
    if not (isinstance(ch, tuple) and len(ch) == 2 and all(isinstance(c, int) and c > 0
                                                           for c in ch)):
        raise ConfigError("config.json audio_config.sscp_conv_channel_size",
                          f"must be two positive integers, got {ch!r}", "fix it in config.json")
    f = _int(tower, "input_feat_size")
    r: Role = "audio"
    sp = f"{p}.subsample_conv_projection"
    out: list[TensorGroup] = []
    c_in = 1
    for i in range(2):
        kh, kw = _pair(tower, "sscp_conv_kernel_size", i)
        _sh, sw = _pair(tower, "sscp_conv_stride_size", i)
        c_out = int(ch[i])
        out += [_t(f"{sp}.conv_{i}.conv.weight", (c_out, c_in, kh, kw), r),
                _t(f"{sp}.conv_{i}.norm.weight", (c_out,), r)]
        f = (f + 2 - kw) // sw + 1
        c_in = c_out
    out.append(_t(f"{sp}.input_proj_linear.weight", (d, c_in * f), r, linear=True))
    hd = d // heads
    for j in range(n):
        lp = f"{p}.conformer.{j}"
        for ff in ("ffw_layer_start", "ffw_layer_end"):
            out += [_t(f"{lp}.{ff}.pre_layer_norm.weight", (d,), r),
                    _t(f"{lp}.{ff}.ffw_layer_1.weight", (4 * d, d), r, linear=True),
                    _t(f"{lp}.{ff}.ffw_layer_2.weight", (d, 4 * d), r, linear=True),
                    _t(f"{lp}.{ff}.post_layer_norm.weight", (d,), r)]
        ap = f"{lp}.attention"
        out += [_t(f"{ap}.pre_attn_norm.weight", (d,), r),
                _t(f"{ap}.attn.per_dim_scale", (hd,), r),
                _t(f"{ap}.attn.relative_position_embedding.pos_proj.weight", (heads * hd, d), r,
                   linear=True)]
        out += [_t(f"{ap}.attn.{nm}.weight", (heads * hd, d), r, linear=True)
                for nm in ("q_proj", "k_proj", "v_proj")]
        out += [_t(f"{ap}.post.weight", (d, heads * hd), r, linear=True),
                _t(f"{ap}.post_norm.weight", (d,), r)]
        cp = f"{lp}.lconv1d"
        out += [_t(f"{cp}.pre_layer_norm.weight", (d,), r),
                _t(f"{cp}.linear_start.weight", (2 * d, d), r, linear=True),
                _t(f"{cp}.depthwise_conv1d.weight", (d, 1, k), r),
                _t(f"{cp}.conv_norm.weight", (d,), r),
                _t(f"{cp}.linear_end.weight", (d, d), r, linear=True),
                _t(f"{lp}.norm.weight", (d,), r)]
    return out + _mm_embedder(proj, _int(tower, "vocab_size"), d, text_hidden, r)


# timm MobileNetV5-300M encoder (timm 1.0.31 timm/models/mobilenetv5.py, variant
# ``mobilenetv5_300m_enc``), restated as data: per stage a list of (block, repeat) where a block
# is ("er", kernel, expansion, out_ch) EdgeResidual, ("uir", start_dw_kernel, mid_dw_kernel,
# expansion, out_ch) UniversalInvertedResidual (kernel 0: no such depthwise conv) or
# ("mqa", heads, key_dim, kv_stride, dw_kernel) MobileAttention (multi-query, one K/V head).
_MNV5_300M: tuple[tuple[tuple[tuple[object, ...], int], ...], ...] = (
    ((("er", 3, 4, 128), 3),),
    ((("uir", 3, 5, 6, 256), 1), (("uir", 5, 0, 4, 256), 1), (("uir", 3, 0, 4, 256), 1),
     (("uir", 5, 0, 4, 256), 1), (("uir", 3, 0, 4, 256), 1)),
    ((("uir", 5, 5, 6, 640), 1), (("uir", 5, 0, 4, 640), 7), (("uir", 0, 0, 1, 640), 1),
     *(((("mqa", 12, 64, 2, 3), 1), (("uir", 0, 0, 2, 640), 1)) * 14)),
    ((("uir", 5, 5, 6, 1280), 1), *(((("mqa", 16, 96, 1, 3), 1), (("uir", 0, 0, 2, 1280), 1)) * 19)),
)
_MNV5_STEM = 64  # conv_stem: 3x3 conv with bias + RmsNorm2d
_MNV5_OUT = 2048  # MultiScaleFusionAdapter output channels (num_features)
_MNV5_MSFA_EXPANSION = 2  # its UIR ffn expansion over the concatenated last two stages


def _mnv5_tensors(p: str, r: Role) -> list[TensorGroup]:
    """Every weight of the MobileNetV5-300M encoder (norms are RmsNorm2d: weight only)."""
    out = [_t(f"{p}.conv_stem.conv.weight", (_MNV5_STEM, 3, 3, 3), r),
           _t(f"{p}.conv_stem.conv.bias", (_MNV5_STEM,), r),
           _t(f"{p}.conv_stem.bn.weight", (_MNV5_STEM,), r)]
    c = _MNV5_STEM
    stage_out: list[int] = []
    for s, stage in enumerate(_MNV5_300M):
        b = 0
        for block, repeat in stage:
            for _ in range(repeat):
                bp = f"{p}.blocks.{s}.{b}"
                kind = block[0]
                if kind == "er":
                    _k, k, e, co = block
                    assert isinstance(k, int) and isinstance(e, int) and isinstance(co, int)
                    mid = c * e
                    out += [_t(f"{bp}.conv_exp.weight", (mid, c, k, k), r),
                            _t(f"{bp}.bn1.weight", (mid,), r),
                            _t(f"{bp}.conv_pwl.weight", (co, mid, 1, 1), r),
                            _t(f"{bp}.bn2.weight", (co,), r)]
                    c = co
                elif kind == "uir":
                    _k, ks, km, e, co = block
                    assert isinstance(ks, int) and isinstance(km, int)
                    assert isinstance(e, int) and isinstance(co, int)
                    mid = c * e
                    if ks:
                        out += [_t(f"{bp}.dw_start.conv.weight", (c, 1, ks, ks), r),
                                _t(f"{bp}.dw_start.bn.weight", (c,), r)]
                    out += [_t(f"{bp}.pw_exp.conv.weight", (mid, c, 1, 1), r),
                            _t(f"{bp}.pw_exp.bn.weight", (mid,), r)]
                    if km:
                        out += [_t(f"{bp}.dw_mid.conv.weight", (mid, 1, km, km), r),
                                _t(f"{bp}.dw_mid.bn.weight", (mid,), r)]
                    out += [_t(f"{bp}.pw_proj.conv.weight", (co, mid, 1, 1), r),
                            _t(f"{bp}.pw_proj.bn.weight", (co,), r),
                            _t(f"{bp}.layer_scale.gamma", (co,), r)]
                    c = co
                else:
                    _k, heads, kd, stride, kdw = block
                    assert isinstance(heads, int) and isinstance(kd, int)
                    assert isinstance(stride, int) and isinstance(kdw, int)
                    out += [_t(f"{bp}.norm.weight", (c,), r),
                            _t(f"{bp}.attn.query.proj.weight", (heads * kd, c, 1, 1), r)]
                    for kv in ("key", "value"):
                        if stride > 1:
                            out += [_t(f"{bp}.attn.{kv}.down_conv.weight", (c, 1, kdw, kdw), r),
                                    _t(f"{bp}.attn.{kv}.norm.weight", (c,), r)]
                        out.append(_t(f"{bp}.attn.{kv}.proj.weight", (kd, c, 1, 1), r))
                    out += [_t(f"{bp}.attn.output.proj.weight", (c, heads * kd, 1, 1), r),
                            _t(f"{bp}.layer_scale.gamma", (c,), r)]
                b += 1
        stage_out.append(c)
    cin = stage_out[-2] + stage_out[-1]
    mid = cin * _MNV5_MSFA_EXPANSION
    out += [_t(f"{p}.msfa.ffn.pw_exp.conv.weight", (mid, cin, 1, 1), r),
            _t(f"{p}.msfa.ffn.pw_exp.bn.weight", (mid,), r),
            _t(f"{p}.msfa.ffn.pw_proj.conv.weight", (_MNV5_OUT, mid, 1, 1), r),
            _t(f"{p}.msfa.ffn.pw_proj.bn.weight", (_MNV5_OUT,), r),
            _t(f"{p}.msfa.norm.weight", (_MNV5_OUT,), r)]
    return out


def gemma3n_vision_tensors(tower: TowerSpec, text_hidden: int, p: str = "model.vision_tower",
                           proj: str = "model.embed_vision") -> list[TensorGroup]:
    """Gemma 3n vision: TimmWrapperModel(``mobilenetv5_300m_enc``) + embed_vision.

    Only the published encoder variant is laid out; its output width (2048) must equal
    vision_config.hidden_size, which the embedder uses.
    """
    arch = tower.get("architecture")
    if arch != "mobilenetv5_300m_enc":
        raise ConfigError("config.json vision_config.architecture",
                          f"timm encoder {arch!r} is not laid out by vramplan (only "
                          "mobilenetv5_300m_enc)", "use a Gemma 3n checkpoint's config.json, or "
                          "pass the model folder with its *.safetensors headers")
    d = _int(tower, "hidden_size")
    if d != _MNV5_OUT:
        raise ConfigError("config.json vision_config.hidden_size",
                          f"is {d}, but mobilenetv5_300m_enc outputs {_MNV5_OUT} channels",
                          f"set it to {_MNV5_OUT}")
    r: Role = "vision"
    return _mnv5_tensors(f"{p}.timm_model", r) + _mm_embedder(proj, _int(tower, "vocab_size"), d,
                                                              text_hidden, r)


def tower_tensors(tower: TowerSpec, spec: ModelSpec) -> list[TensorGroup]:
    """Dispatch on ``tower.family``."""
    if tower.family == "gemma3_siglip":
        return siglip_tensors(tower, spec.hidden_size)
    if tower.family == "gemma4_vision":
        return gemma4_vision_tensors(tower, spec.hidden_size)
    if tower.family == "gemma4_audio":
        return gemma4_audio_tensors(tower, spec.hidden_size)
    if tower.family == "gemma3n_audio":
        return gemma3n_audio_tensors(tower, spec.hidden_size)
    if tower.family == "gemma3n_vision":
        return gemma3n_vision_tensors(tower, spec.hidden_size)
    raise KeyError(tower.family)
