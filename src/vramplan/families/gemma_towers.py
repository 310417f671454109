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


def tower_tensors(tower: TowerSpec, spec: ModelSpec) -> list[TensorGroup]:
    """Dispatch on ``tower.family``."""
    if tower.family == "gemma3_siglip":
        return siglip_tensors(tower, spec.hidden_size)
    raise KeyError(tower.family)
