"""LLaVA layout with a Pixtral vision tower (mistral-community/pixtral-12b).

Source: transformers 5.25.0 ``models/llava/{configuration,modeling}_llava.py`` (LlavaConfig,
LlavaForConditionalGeneration, LlavaMultiModalProjector); text model as in ``mistral3`` (Mistral
layout, MistralConfig defaults for absent keys: the Pixtral-12B config omits
``num_attention_heads``, 32); tower and projector in ``towers_pixtral``: no patch merger,
``linear_1`` / ``linear_2`` with biases (``multimodal_projector_bias`` default True).

Only the Pixtral tower is laid out here: a LLaVA config with another tower (CLIP, SigLIP) is
refused with its tower type named, rather than sized as something it is not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vramplan.errors import ConfigError
from vramplan.families import mistral3
from vramplan.families.towers_pixtral import pixtral_tower
from vramplan.inventory import TensorGroup
from vramplan.model.spec import ModelSpec

MODEL_TYPES = ("llava",)
ARCHITECTURES = ("LlavaForConditionalGeneration",)
HANDLES = frozenset({"vision", "sliding_window"})


def spec(cfg: Mapping[str, Any], model_id: str,
         extra_quant: Mapping[str, Any] | None) -> ModelSpec:
    vc = cfg.get("vision_config")
    vtype = vc.get("model_type") if isinstance(vc, Mapping) else None
    if vtype != "pixtral":
        raise ConfigError("config.json vision_config.model_type",
                          f"LLaVA with a {vtype or 'default (clip_vision_model)'} tower is not "
                          "laid out by vramplan (only the Pixtral tower is)",
                          "pass a model folder (or Hub id) with its *.safetensors headers for "
                          "exact weights")
    s = mistral3.text_spec(cfg, model_id, extra_quant, family="llava", tie_class_default=False)
    tower, notes = pixtral_tower(vc, projector="llava", text_hidden=s.hidden_size, merge=1,
                                 feature_layers=mistral3.feature_layers(cfg, -2),
                                 bias=bool(cfg.get("multimodal_projector_bias", True)))
    return dataclasses.replace(s, towers=(tower,), notes=(*s.notes, *notes))


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    """Same text layout as mistral3 (``language_model.model.*``)."""
    return mistral3.tensors(spec)
