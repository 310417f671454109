"""Mistral 3.x multimodal (Mistral-Small-3.1/3.2, Magistral-Small, Devstral-Small with vision,
Ministral 3): a Mistral text decoder + Pixtral vision tower + patch-merger projector.

Source: transformers 5.25.0 ``models/mistral3/{configuration,modeling}_mistral3.py``
(Mistral3Config, Mistral3ForConditionalGeneration, Mistral3MultiModalProjector),
``models/mistral/configuration_mistral.py`` (MistralConfig) and
``models/ministral3/configuration_ministral3.py`` (Ministral3Config); tower in
``families/towers_pixtral.py``.

The text model is the Llama layout (q/k/v/o without bias, ``head_dim`` read from the config,
which for these models is 128 != hidden/heads; gated MLP; two RMSNorms). A text config that omits
``sliding_window`` gets MistralConfig's default 4096 (every layer windowed); Ministral3Config's
default is None. Checkpoint naming (conversion_mapping.py "llava", which mistral3 uses):
``language_model.model.*``, ``language_model.lm_head.weight``, ``vision_tower.*``,
``multi_modal_projector.*``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vramplan.errors import ConfigError
from vramplan.families._dense import composite_tie, decoder_tensors, with_defaults
from vramplan.families.towers_pixtral import PIXTRAL_DEFAULTS, pixtral_tower
from vramplan.inventory import TensorGroup, _layer
from vramplan.model import hf_config
from vramplan.model.spec import LayerSpec, ModelSpec

MODEL_TYPES = ("mistral3",)
ARCHITECTURES = ("Mistral3ForConditionalGeneration",)
HANDLES = frozenset({"vision", "sliding_window"})

# text model_type -> (its config class, class defaults of the keys that size or window it)
TEXT_DEFAULTS: dict[str, tuple[str, dict[str, object]]] = {
    "mistral": ("MistralConfig", {
        "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "max_position_embeddings": 131072, "sliding_window": 4096}),
    "ministral3": ("Ministral3Config", {
        "vocab_size": 131072, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 34, "num_attention_heads": 32, "num_key_value_heads": 8,
        "head_dim": 128, "max_position_embeddings": 262144, "sliding_window": None}),
}
# Mistral3Config.sub_configs_defaults["vision_config"].init_kwargs (used when vision_config is
# absent altogether).
MISTRAL3_VISION: dict[str, object] = {**PIXTRAL_DEFAULTS, "image_size": 1540, "patch_size": 14,
                                      "head_dim": 64, "model_type": "pixtral"}


def feature_layers(cfg: Mapping[str, Any], default: int) -> int:
    """Number of vision feature layers concatenated into linear_1: 1 for an int
    ``vision_feature_layer``, its length for a list (Mistral3MultiModalProjector)."""
    v = cfg.get("vision_feature_layer", default)
    if isinstance(v, list):
        return len(v)
    return 1


def text_spec(cfg: Mapping[str, Any], model_id: str, extra_quant: Mapping[str, Any] | None, *,
              family: str, tie_class_default: bool) -> ModelSpec:
    """The Mistral / Ministral 3 text model nested in ``text_config`` of a composite config.

    Absent text keys take the text class's defaults (``TEXT_DEFAULTS``); the tie flag follows
    ``composite_tie``. The checkpoint prefix is ``language_model.model`` and the head
    ``language_model.lm_head``.
    """
    tc = cfg.get("text_config")
    if not isinstance(tc, Mapping):
        raise ConfigError("config.json text_config", "is missing",
                          f"a {cfg.get('model_type')} config nests its language model in "
                          "text_config")
    text_type = str(tc.get("model_type", "mistral"))
    if text_type not in TEXT_DEFAULTS:
        raise ConfigError("config.json text_config.model_type",
                          f"{text_type!r} is not a text model vramplan reads under "
                          f"{cfg.get('model_type')}", f"use one of {', '.join(TEXT_DEFAULTS)}")
    cls, defaults = TEXT_DEFAULTS[text_type]
    cfg2, notes = with_defaults(cfg, defaults, f"transformers 5.25.0 {cls}",
                                keep_null=frozenset({"sliding_window"}))
    text = hf_config.text_config(cfg2)
    n_layers = hf_config.read_int(text, "num_hidden_layers")
    max_pos = hf_config.read_int(text, "max_position_embeddings")
    # Mistral and Ministral 3 window every layer when sliding_window < max positions.
    kinds = hf_config.core_attention_kinds(text, "mistral", n_layers, max_pos)
    hidden = hf_config.read_int(text, "hidden_size")
    heads = hf_config.read_int(text, "num_attention_heads")
    kv_heads = hf_config.read_int(text, "num_key_value_heads", heads)
    head_dim = hf_config.read_int(text, "head_dim") if text.get("head_dim") is not None \
        else hidden // heads
    window = hf_config.read_opt_int(text, "sliding_window")

    def layer_fn(t: Mapping[str, Any], i: int) -> LayerSpec:
        attn = hf_config.attention_spec(t, family, kinds[i], heads, kv_heads, head_dim,
                                        window, None)
        return LayerSpec(index=i, attention=attn,
                         mlp=hf_config.core_mlp(t, "llama", text_type, i, n_layers))

    tie, tie_notes = composite_tie(cfg, class_default=tie_class_default, text_default=False,
                                   model_type=str(cfg.get("model_type")))
    s = hf_config.generic_spec(cfg2, model_id, extra_quant, model_type=text_type, family=family,
                               notes=notes + tie_notes, layer_fn=layer_fn)
    return dataclasses.replace(s, tie_word_embeddings=tie, attention_bias=False, mlp_bias=False,
                               prefix="language_model.model",
                               lm_head_name="language_model.lm_head")


def spec(cfg: Mapping[str, Any], model_id: str,
         extra_quant: Mapping[str, Any] | None) -> ModelSpec:
    s = text_spec(cfg, model_id, extra_quant, family="mistral3", tie_class_default=True)
    vc = cfg.get("vision_config")
    vnotes: list[str] = []
    if vc is None:
        vc = dict(MISTRAL3_VISION)
        vnotes.append("vision_config absent: Mistral3Config's default Pixtral tower")
    merge = hf_config.read_int(cfg, "spatial_merge_size", 2)
    tower, more = pixtral_tower(vc, projector="mistral3", text_hidden=s.hidden_size, merge=merge,
                                feature_layers=feature_layers(cfg, -1),
                                bias=bool(cfg.get("multimodal_projector_bias", False)))
    return dataclasses.replace(s, towers=(tower,), notes=(*s.notes, *vnotes, *more))


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    """Llama layout under ``language_model.model``; lm_head ``language_model.lm_head`` unless
    tied."""
    return decoder_tensors(spec, lambda s, lp, layer: _layer(s, lp, layer)), []
