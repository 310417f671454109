"""Model families: one module per architecture family, spanning normalize and enumerate.

The built-in Llama-style core (``model/hf_config.py`` + ``inventory.py``) handles llama, mistral,
qwen2/3, gemma/gemma2, phi3, the Qwen/DeepSeek/GLM/Mixtral/gpt-oss MoEs, Llama 4 and Qwen3-Next.
Every other family lives in ``vramplan/families/<name>.py`` and is registered here. A family
module defines:

* ``MODEL_TYPES``: the Hugging Face ``model_type`` values it reads (top level or ``text_config``);
* ``ARCHITECTURES``: the ``architectures`` class names (a config whose ``model_type`` was renamed
  is recovered by them);
* ``HANDLES``: the structure categories it interprets (``vramplan.model.structure``); a config
  with structure outside them is refused instead of silently mis-sized;
* ``spec(cfg, model_id, extra_quant) -> ModelSpec``: config.json -> spec (usually
  ``hf_config.generic_spec`` with the family's layers, ``towers`` and ``family_params``);
* ``tensors(spec) -> (main, mtp)``: the checkpoint's tensors (``inventory`` helpers).

Vision / audio towers are enumerated by ``families/towers*.py`` builders, keyed by
``TowerSpec.family`` in ``TOWER_MODULES``. Modules are imported only when a config needs them
(CLI start-up budget).
"""

from __future__ import annotations

import importlib
from types import ModuleType

# family name -> module (imported on demand)
FAMILY_MODULES: dict[str, str] = {
    # -- gemma --

    # -- qwen_vl --

    # -- hybrid --

    # -- moe_mla --
    "deepseek_v32": "vramplan.families.deepseek_v32",
    "glm_moe_dsa": "vramplan.families.deepseek_v32",
    "glm4_moe_lite": "vramplan.families.glm4_moe_lite",
    "minimax_m2": "vramplan.families.minimax_m2",
    "nemotron_nas": "vramplan.families.nemotron_nas",
    "deepseek_v4": "vramplan.families.deepseek_v4",
    "phimoe": "vramplan.families.phimoe",
    "hunyuan_moe": "vramplan.families.hunyuan_moe",
    "ernie45_moe": "vramplan.families.ernie45_moe",
    "mimo_v2_flash": "vramplan.families.mimo_v2_flash",

    # -- dense --

    # -- other --

}

# model_type (top level or text_config) -> family name
MODEL_TYPES: dict[str, str] = {
    # -- gemma --

    # -- qwen_vl --

    # -- hybrid --

    # -- moe_mla --
    "deepseek_v32": "deepseek_v32",
    "glm_moe_dsa": "glm_moe_dsa",
    "glm4_moe_lite": "glm4_moe_lite",
    "minimax_m2": "minimax_m2",
    "nemotron-nas": "nemotron_nas",
    "deepseek_v4": "deepseek_v4",
    "phimoe": "phimoe",
    "hunyuan_v1_moe": "hunyuan_moe",
    "ernie4_5_moe": "ernie45_moe",
    "mimo_v2_flash": "mimo_v2_flash",

    # -- dense --

    # -- other --

}

# architectures[0] -> family name (recovers a renamed model_type)
ARCHITECTURES: dict[str, str] = {
    # -- gemma --

    # -- qwen_vl --

    # -- hybrid --

    # -- moe_mla --
    "DeepseekV32ForCausalLM": "deepseek_v32",
    "GlmMoeDsaForCausalLM": "glm_moe_dsa",
    "Glm4MoeLiteForCausalLM": "glm4_moe_lite",
    "MiniMaxM2ForCausalLM": "minimax_m2",
    "DeciLMForCausalLM": "nemotron_nas",
    "DeepseekV4ForCausalLM": "deepseek_v4",
    "PhimoeForCausalLM": "phimoe",
    "PhiMoEForCausalLM": "phimoe",
    "HunYuanMoEV1ForCausalLM": "hunyuan_moe",
    "Ernie4_5_MoeForCausalLM": "ernie45_moe",
    "MiMoV2FlashForCausalLM": "mimo_v2_flash",

    # -- dense --

    # -- other --

}

# TowerSpec.family -> module with ``tower_tensors(tower, text_hidden) -> list[TensorGroup]``
TOWER_MODULES: dict[str, str] = {
    # -- gemma --

    # -- qwen_vl --

    # -- hybrid --

    # -- moe_mla --

    # -- dense --

    # -- other --

}


def family_module(family: str) -> ModuleType | None:
    """The module of a registered family, or None for the built-in core families."""
    path = FAMILY_MODULES.get(family)
    return importlib.import_module(path) if path else None


def family_for(model_type: str) -> str | None:
    return MODEL_TYPES.get(model_type)


def tower_module(tower_family: str) -> ModuleType:
    path = TOWER_MODULES.get(tower_family)
    if path is None:
        raise KeyError(tower_family)
    return importlib.import_module(path)
