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
    "gemma3": "vramplan.families.gemma3",
    "gemma4": "vramplan.families.gemma4",
    "gemma3n": "vramplan.families.gemma3n",

    # -- qwen_vl --
    "qwen_vl": "vramplan.families.qwen_vl",
    "internvl": "vramplan.families.internvl",

    # -- hybrid --
    "nemotron_h": "vramplan.families.hybrid",
    "jamba": "vramplan.families.hybrid",
    "granitemoehybrid": "vramplan.families.hybrid",
    "falcon_h1": "vramplan.families.hybrid",
    "lfm2": "vramplan.families.hybrid",

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
    "smollm3": "vramplan.families.smollm3",
    "olmo2": "vramplan.families.olmo2",
    "mllama": "vramplan.families.mllama",
    "mistral3": "vramplan.families.mistral3",
    "cohere2": "vramplan.families.cohere2",
    "exaone4": "vramplan.families.exaone4",
    "llava": "vramplan.families.llava",

    # -- other --

}

# model_type (top level or text_config) -> family name
MODEL_TYPES: dict[str, str] = {
    # -- gemma --
    "gemma3": "gemma3",
    "gemma3_text": "gemma3",
    "gemma4": "gemma4",
    "gemma4_text": "gemma4",
    "gemma3n": "gemma3n",
    "gemma3n_text": "gemma3n",

    # -- qwen_vl --
    "qwen2_vl": "qwen_vl", "qwen2_vl_text": "qwen_vl",
    "qwen2_5_vl": "qwen_vl", "qwen2_5_vl_text": "qwen_vl", "qwen3_vl": "qwen_vl",
    "qwen3_vl_text": "qwen_vl", "qwen3_vl_moe": "qwen_vl", "qwen3_vl_moe_text": "qwen_vl",
    "qwen3_5": "qwen_vl", "qwen3_5_text": "qwen_vl", "qwen3_5_moe": "qwen_vl",
    "qwen3_5_moe_text": "qwen_vl", "internvl": "internvl",

    # -- hybrid --
    "nemotron_h": "nemotron_h",
    "jamba": "jamba",
    "granitemoehybrid": "granitemoehybrid",
    "falcon_h1": "falcon_h1",
    "lfm2": "lfm2",

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
    "smollm3": "smollm3",
    "olmo2": "olmo2",
    "olmo3": "olmo2",
    "mllama": "mllama",
    "mllama_text_model": "mllama",
    "mistral3": "mistral3",
    "cohere2": "cohere2",
    "exaone4": "exaone4",
    "llava": "llava",  # Pixtral tower only; other LLaVA towers are refused by the module

    # -- other --

}

# architectures[0] -> family name (recovers a renamed model_type)
ARCHITECTURES: dict[str, str] = {
    # -- gemma --
    "Gemma3ForCausalLM": "gemma3",
    "Gemma3ForConditionalGeneration": "gemma3",
    "Gemma4ForConditionalGeneration": "gemma4",
    "Gemma4ForCausalLM": "gemma4",
    "Gemma3nForConditionalGeneration": "gemma3n",
    "Gemma3nForCausalLM": "gemma3n",

    # -- qwen_vl --
    "Qwen2VLForConditionalGeneration": "qwen_vl",
    "Qwen2_5_VLForConditionalGeneration": "qwen_vl", "Qwen3VLForConditionalGeneration": "qwen_vl",
    "Qwen3VLMoeForConditionalGeneration": "qwen_vl", "Qwen3_5ForConditionalGeneration": "qwen_vl",
    "Qwen3_5MoeForConditionalGeneration": "qwen_vl", "Qwen3_5ForCausalLM": "qwen_vl",
    "Qwen3_5MoeForCausalLM": "qwen_vl", "InternVLForConditionalGeneration": "internvl",

    # -- hybrid --
    "NemotronHForCausalLM": "nemotron_h",
    "JambaForCausalLM": "jamba",
    "GraniteMoeHybridForCausalLM": "granitemoehybrid",
    "FalconH1ForCausalLM": "falcon_h1",
    "Lfm2ForCausalLM": "lfm2",

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
    "SmolLM3ForCausalLM": "smollm3",
    "Olmo2ForCausalLM": "olmo2",
    "Olmo3ForCausalLM": "olmo2",
    "MllamaForConditionalGeneration": "mllama",
    "MllamaForCausalLM": "mllama",
    "Mistral3ForConditionalGeneration": "mistral3",
    "Cohere2ForCausalLM": "cohere2",
    "Exaone4ForCausalLM": "exaone4",
    "LlavaForConditionalGeneration": "llava",

    # -- other --

}

# TowerSpec.family -> module with ``tower_tensors(tower, text_hidden) -> list[TensorGroup]``
TOWER_MODULES: dict[str, str] = {
    # -- gemma --
    "gemma3_siglip": "vramplan.families.gemma_towers",
    "gemma4_vision": "vramplan.families.gemma_towers",
    "gemma4_audio": "vramplan.families.gemma_towers",
    "gemma3n_vision": "vramplan.families.gemma_towers",
    "gemma3n_audio": "vramplan.families.gemma_towers",

    # -- qwen_vl --
    "qwen3_vl": "vramplan.families.towers_qwen_vl",
    "qwen2_5_vl": "vramplan.families.towers_qwen_vl",
    "qwen2_vl": "vramplan.families.towers_qwen_vl",
    "internvl": "vramplan.families.internvl",

    # -- hybrid --

    # -- moe_mla --

    # -- dense --
    "mllama_vision": "vramplan.families.towers_mllama",
    "pixtral": "vramplan.families.towers_pixtral",

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
