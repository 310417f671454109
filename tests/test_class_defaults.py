"""Configs of every family that are NOT in ../shared/models: each transformers config class with
its defaults, and variants of it (``<type>~depth7``, ``~tie_flip``, ``~bias``, ``~kv1``, ``~mlp_bias``: the
class re-built with that change, patterns recomputed), as ``save_pretrained`` would write it
(transformers 5 spells out ``layer_types``, ``mlp_layer_types``, ``rope_parameters``, ...).
Fixture: ``scripts/gen_class_defaults.py`` (dev-only; parameter counts from the model built on
the meta device). vramplan must give the exact count, or refuse in one line (ConfigError) -
never a different number."""

from __future__ import annotations

import json

import pytest

from tests.conftest import DATA
from vramplan.errors import ConfigError
from vramplan.inventory import build_inventory
from vramplan.model.hf_config import spec_from_config

MODELS = json.loads((DATA / "class_defaults.json").read_text())["models"]
# Refused on purpose, with the reason the one-line error gives.
REFUSED = {
    "llava": "LLaVA with a CLIP tower: only the Pixtral tower is laid out",
    "deepseek_v2": "num_experts_per_tok is null in DeepseekV2Config: the routing is unknown",
}


# Variants refused on purpose (one-line ConfigError), with why.
REFUSED_VARIANTS = {
    "mllama~depth7": "cross_attention_layers name layers beyond the 7 (the class keeps the list)",
    "deepseek_v4~mlp_bias": "expert MLP biases are not laid out",
}


@pytest.mark.parametrize("model_type", sorted(t for t, v in MODELS.items() if "config" in v))
def test_class_defaults_exact_or_refused(model_type: str) -> None:
    entry = MODELS[model_type]
    if model_type.split("~")[0] in REFUSED or model_type in REFUSED_VARIANTS:
        with pytest.raises(ConfigError):
            spec_from_config(entry["config"], model_type)
        return
    inv = build_inventory(spec_from_config(entry["config"], model_type))
    assert inv.params_total == entry["params_total"]


def test_fixture_covers_every_registered_family() -> None:
    from vramplan import families

    assert len(MODELS) > 200  # classes x variants
    assert set(families.MODEL_TYPES) - {"nemotron-nas", "mllama_text_model", "qwen2_vl_text",
                                        "qwen2_5_vl_text", "qwen3_vl_text",
                                        "qwen3_vl_moe_text"} <= set(MODELS)


@pytest.mark.parametrize("model_type", sorted(t for t, v in MODELS.items() if "config" in v))
def test_class_defaults_renamed_model_type_exact_or_refused(model_type: str) -> None:
    """The same configs with ``model_type`` renamed (top level and text_config): recovered from
    ``architectures`` exactly, or refused - never another number."""
    entry = MODELS[model_type]
    cfg = dict(entry["config"], model_type="renamed_by_a_finetune")
    if isinstance(cfg.get("text_config"), dict):
        cfg["text_config"] = dict(cfg["text_config"], model_type="renamed_text")
    try:
        inv = build_inventory(spec_from_config(cfg, model_type))
    except ConfigError:
        return
    assert inv.params_total == entry["params_total"]
