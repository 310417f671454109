"""Pixtral vision tower and its projector into the text model (Mistral 3.x / Pixtral-12B).

Source: transformers 5.25.0 ``models/pixtral/{configuration,modeling}_pixtral.py``
(PixtralVisionConfig, PixtralVisionModel, PixtralAttentionLayer, PixtralAttention, PixtralMLP),
``models/mistral3/modeling_mistral3.py`` (Mistral3MultiModalProjector, Mistral3PatchMerger) and
``models/llava/modeling_llava.py`` (LlavaMultiModalProjector).

Tower (checkpoint names ``vision_tower.*``): ``patch_conv.weight [d, C, p, p]`` (no bias),
``ln_pre.weight [d]``; per layer ``attention.{q,k,v,o}_proj [d, d]`` (no bias),
``attention_norm.weight``, ``ffn_norm.weight``, ``feed_forward.{gate,up}_proj [I, d]``,
``feed_forward.down_proj [d, I]``. The 2-D RoPE has no stored tensors.
Projector (``multi_modal_projector.*``), kind ``mistral3``: ``norm.weight [d]``,
``patch_merger.merging_layer.weight [d, d * m^2]``, ``linear_1 [text_h, d * F]``,
``linear_2 [text_h, text_h]`` (biases when ``multimodal_projector_bias``); kind ``llava``: only
``linear_1`` / ``linear_2`` (bias default True). F = number of vision feature layers, m =
``spatial_merge_size``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vramplan.errors import ConfigError
from vramplan.inventory import TensorGroup, _lin, _vec
from vramplan.model import hf_config
from vramplan.model.spec import ModelSpec, TowerSpec, freeze

# PixtralVisionConfig class defaults (configuration_pixtral.py, 5.25.0).
PIXTRAL_DEFAULTS: dict[str, object] = {
    "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
    "num_attention_heads": 16, "num_channels": 3, "image_size": 1024, "patch_size": 16,
}
_KEEP = frozenset(PIXTRAL_DEFAULTS) | {"model_type", "head_dim"}


def image_tokens(image_size: int, patch_size: int, merge: int) -> int:
    """Text-context tokens of one largest image: ``n * (n + 1)``, n = image_size // (patch * m).

    Each row of n (merged) patches is followed by ``[IMG_BREAK]``, the last by ``[IMG_END]``
    (transformers PixtralProcessor / mistral_common image tokenizer).
    """
    n = image_size // (patch_size * merge)
    return n * (n + 1)


def pixtral_tower(vc_raw: object, *, projector: str, text_hidden: int, merge: int,
                  feature_layers: int, bias: bool) -> tuple[TowerSpec, list[str]]:
    """A TowerSpec for a Pixtral vision config (absent keys: PixtralVisionConfig defaults)."""
    notes: list[str] = []
    if not isinstance(vc_raw, Mapping):
        raise ConfigError("config.json vision_config", "must be an object",
                          "fix vision_config in config.json")
    vc: dict[str, Any] = {k: v for k, v in vc_raw.items() if k in _KEEP}
    for k, v in PIXTRAL_DEFAULTS.items():
        if vc.get(k) is None:
            vc[k] = v
            notes.append(f"vision_config.{k} absent: {v} (PixtralVisionConfig default)")
    p = "vision_config."
    for k in PIXTRAL_DEFAULTS:
        hf_config.read_int(vc, k, field_prefix=p)
    if feature_layers < 1 or merge < 1:
        raise ConfigError("config.json vision_feature_layer / spatial_merge_size",
                          "must name at least one layer and a merge of at least 1",
                          "fix them in config.json")
    vc["projector"] = {"kind": projector, "text_hidden_size": text_hidden,
                       "spatial_merge_size": merge, "feature_layers": feature_layers,
                       "bias": bias}
    frozen = freeze(vc)
    assert isinstance(frozen, tuple)
    img = int(vc["image_size"])
    patch = int(vc["patch_size"])
    tower = TowerSpec(kind="vision", model_type=str(vc.get("model_type", "pixtral")),
                      family="pixtral", config=frozen,
                      tokens_per_item=image_tokens(img, patch, merge if projector == "mistral3"
                                                   else 1))
    return tower, notes


def tower_tensors(tower: TowerSpec, spec: ModelSpec) -> list[TensorGroup]:
    """Pixtral tower + projector tensors (see the module docstring for shapes)."""
    c = dict(tower.config)

    def num(key: str, src: Mapping[str, object] = c) -> int:
        val = src[key]
        assert isinstance(val, int)
        return val

    d, inter, ch, patch = num("hidden_size"), num("intermediate_size"), num("num_channels"), \
        num("patch_size")
    p = "vision_tower"
    out = [TensorGroup(f"{p}.patch_conv.weight", (d, ch, patch, patch), "vision", None),
           _vec(f"{p}.ln_pre.weight", d, "vision", None)]
    for j in range(num("num_hidden_layers")):
        lp = f"{p}.transformer.layers.{j}"
        out += [_lin(f"{lp}.attention.{n}.weight", d, d, "vision", None, "replicated")
                for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
        out += [_vec(f"{lp}.attention_norm.weight", d, "vision", None),
                _vec(f"{lp}.ffn_norm.weight", d, "vision", None),
                _lin(f"{lp}.feed_forward.gate_proj.weight", inter, d, "vision", None, "replicated"),
                _lin(f"{lp}.feed_forward.up_proj.weight", inter, d, "vision", None, "replicated"),
                _lin(f"{lp}.feed_forward.down_proj.weight", d, inter, "vision", None,
                     "replicated")]
    items = c["projector"]
    assert isinstance(items, tuple)
    proj: dict[str, object] = dict(items)
    th, m, f = num("text_hidden_size", proj), num("spatial_merge_size", proj), \
        num("feature_layers", proj)
    bias = bool(proj["bias"])
    q = "multi_modal_projector"
    if proj["kind"] == "mistral3":
        out += [_vec(f"{q}.norm.weight", d, "vision", None),
                _lin(f"{q}.patch_merger.merging_layer.weight", d, d * m * m, "vision", None,
                     "replicated")]
    out.append(_lin(f"{q}.linear_1.weight", th, d * f, "vision", None, "replicated"))
    if bias:
        out.append(_vec(f"{q}.linear_1.bias", th, "vision", None))
    out.append(_lin(f"{q}.linear_2.weight", th, th, "vision", None, "replicated"))
    if bias:
        out.append(_vec(f"{q}.linear_2.bias", th, "vision", None))
    return out
