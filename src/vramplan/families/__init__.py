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
    "nemotron_h": "vramplan.families.hybrid",
    "jamba": "vramplan.families.hybrid",
    "granitemoehybrid": "vramplan.families.hybrid",
    "falcon_h1": "vramplan.families.hybrid",
    "lfm2": "vramplan.families.hybrid",

    # -- moe_mla --

    # -- dense --

    # -- other --

}

# model_type (top level or text_config) -> family name
MODEL_TYPES: dict[str, str] = {
    # -- gemma --

    # -- qwen_vl --

    # -- hybrid --
    "nemotron_h": "nemotron_h",
    "jamba": "jamba",
    "granitemoehybrid": "granitemoehybrid",
    "falcon_h1": "falcon_h1",
    "lfm2": "lfm2",

    # -- moe_mla --

    # -- dense --

    # -- other --

}

# architectures[0] -> family name (recovers a renamed model_type)
ARCHITECTURES: dict[str, str] = {
    # -- gemma --

    # -- qwen_vl --

    # -- hybrid --
    "NemotronHForCausalLM": "nemotron_h",
    "JambaForCausalLM": "jamba",
    "GraniteMoeHybridForCausalLM": "granitemoehybrid",
    "FalconH1ForCausalLM": "falcon_h1",
    "Lfm2ForCausalLM": "lfm2",

    # -- moe_mla --

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
