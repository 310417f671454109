"""Llama 3.2 Vision (mllama) vision tower + projector: a tiled ViT with a gated global transformer.

Source: transformers 5.25.0 ``models/mllama/modeling_mllama.py`` (MllamaVisionModel,
MllamaVisionEncoder, MllamaVisionEncoderLayer, MllamaPrecomputedPositionEmbedding,
MllamaPrecomputedAspectRatioEmbedding, MllamaModel.multi_modal_projector). The tower's config
items come from ``families/mllama.py`` (MllamaVisionConfig defaults filled in, plus
``text_hidden_size``).
"""

from __future__ import annotations

from vramplan.inventory import TensorGroup, _lin, _vec
from vramplan.model.spec import ModelSpec, TowerSpec


def _vision_layer(p: str, d: int, inter: int, gated: bool) -> list[TensorGroup]:
    """MllamaVisionEncoderLayer: bias-free q/k/v/o, fc1/fc2 with biases, two LayerNorms (weight +
    bias), and in the global transformer the scalar gates ``gate_attn`` / ``gate_ffn``."""
    out = [_lin(f"{p}.self_attn.{n}.weight", d, d, "vision", None, "replicated")
           for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
    out += [_lin(f"{p}.mlp.fc1.weight", inter, d, "vision", None, "replicated"),
            _vec(f"{p}.mlp.fc1.bias", inter, "vision", None),
            _lin(f"{p}.mlp.fc2.weight", d, inter, "vision", None, "replicated"),
            _vec(f"{p}.mlp.fc2.bias", d, "vision", None)]
    for ln in ("input_layernorm", "post_attention_layernorm"):
        out += [_vec(f"{p}.{ln}.weight", d, "vision", None), _vec(f"{p}.{ln}.bias", d, "vision",
                                                                   None)]
    if gated:
        out += [_vec(f"{p}.gate_attn", 1, "vision", None), _vec(f"{p}.gate_ffn", 1, "vision", None)]
    return out


def tower_tensors(tower: TowerSpec, spec: ModelSpec) -> list[TensorGroup]:
    """MllamaVisionModel + multi_modal_projector, checkpoint names ``vision_model.*``.

    patch_embedding ``[d, C, p, p]`` (Conv2d, no bias); class_embedding ``[d]``;
    gated_positional_embedding: ``embedding [P, d]``, ``gate [1]``,
    ``tile_embedding.weight [A + 1, tiles * P * d]``; pre/post_tile_positional_embedding:
    ``embedding.weight [A + 1, tiles * d]``, ``gate [1]``; layernorm_pre/post (weight + bias);
    ``num_hidden_layers`` plain encoder layers and ``num_global_layers`` gated ones; projector
    ``[text_hidden, vision_output_dim]`` + bias. P = (image_size // patch_size)**2 + 1 patches per
    tile, A = len(supported_aspect_ratios) (``max_aspect_ratio_id``).
    """
    c = dict(tower.config)

    def num(key: str) -> int:
        val = c[key]
        assert isinstance(val, int)
        return val

    d, inter, ch, patch = num("hidden_size"), num("intermediate_size"), num("num_channels"), \
        num("patch_size")
    tiles = num("max_num_tiles")
    ratios = c["supported_aspect_ratios"]
    assert isinstance(ratios, tuple)
    n_ar = len(ratios) + 1
    n_patches = (num("image_size") // patch) ** 2 + 1
    p = "vision_model"
    out = [TensorGroup(f"{p}.patch_embedding.weight", (d, ch, patch, patch), "vision", None),
           _vec(f"{p}.class_embedding", d, "vision", None),
           TensorGroup(f"{p}.gated_positional_embedding.embedding", (n_patches, d), "vision",
                       None),
           _vec(f"{p}.gated_positional_embedding.gate", 1, "vision", None),
           TensorGroup(f"{p}.gated_positional_embedding.tile_embedding.weight",
                       (n_ar, tiles * n_patches * d), "vision", None)]
    for name in ("pre_tile_positional_embedding", "post_tile_positional_embedding"):
        out += [TensorGroup(f"{p}.{name}.embedding.weight", (n_ar, tiles * d), "vision", None),
                _vec(f"{p}.{name}.gate", 1, "vision", None)]
    for ln in ("layernorm_pre", "layernorm_post"):
        out += [_vec(f"{p}.{ln}.weight", d, "vision", None),
                _vec(f"{p}.{ln}.bias", d, "vision", None)]
    for j in range(num("num_hidden_layers")):
        out += _vision_layer(f"{p}.transformer.layers.{j}", d, inter, gated=False)
    for j in range(num("num_global_layers")):
        out += _vision_layer(f"{p}.global_transformer.layers.{j}", d, inter, gated=True)
    th = num("text_hidden_size")
    out += [_lin("multi_modal_projector.weight", th, num("vision_output_dim"), "vision", None,
                 "replicated"),
            _vec("multi_modal_projector.bias", th, "vision", None)]
    return out
