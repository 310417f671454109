"""Generate ``tests/data/class_defaults.json``: every family's transformers config class defaults.

Dev-only (torch + transformers, like ``gen_param_parity.py``; never run by the tests or CI):

    /work/parity-venv/bin/python scripts/gen_class_defaults.py [--out tests/data/class_defaults.json]

For each ``model_type`` it dumps ``AutoConfig.for_model(model_type).to_dict()`` (what a config
saved by transformers 5 with no overrides looks like: ``layer_types``, ``mlp_layer_types``,
``rope_parameters`` and every default spelled out) and the unique parameter count of the model
built from it on the meta device (image-text-to-text class when there is one, else causal LM).
The test ``tests/test_class_defaults.py`` requires vramplan to give exactly that count, or a
one-line ConfigError: these are configs of the families that are not in ../shared/models.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING,
    MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
TYPES = (
    # built-in core
    "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "qwen2_moe", "qwen3_moe",
    "mixtral", "deepseek_v2", "deepseek_v3", "glm4_moe", "gpt_oss", "llama4", "llama4_text",
    "qwen3_next",
    # family modules
    "cohere2", "deepseek_v32", "deepseek_v4", "ernie4_5_moe", "exaone4", "falcon_h1", "gemma3",
    "gemma3_text", "gemma3n", "gemma4", "gemma4_text", "glm4_moe_lite", "glm_moe_dsa",
    "granitemoehybrid", "hunyuan_v1_moe", "internvl", "jamba", "lfm2", "llava", "mimo_v2_flash",
    "minimax_m2", "mistral3", "mllama", "nemotron_h", "olmo2", "olmo3", "phimoe", "qwen2_5_vl",
    "qwen2_vl", "qwen3_5", "qwen3_5_moe", "qwen3_5_text", "qwen3_5_moe_text", "qwen3_vl", "gemma3n_text",
    "qwen3_vl_moe", "smollm3",
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "tests" / "data" / "class_defaults.json")
    args = ap.parse_args()
    out: dict[str, object] = {}
    for t in TYPES:
        try:
            cfg = AutoConfig.for_model(t)
        except Exception as exc:  # noqa: BLE001 - recorded
            out[t] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            continue
        cls = MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING.get(type(cfg), None) or \
            MODEL_FOR_CAUSAL_LM_MAPPING.get(type(cfg), None)
        if cls is None:
            out[t] = {"error": "no causal-LM or image-text-to-text class"}
            continue
        try:
            with torch.device("meta"):
                model = cls._from_config(cfg)
        except Exception as exc:  # noqa: BLE001 - recorded
            out[t] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            continue
        d = json.loads(json.dumps(cfg.to_dict(), default=str))
        d["architectures"] = [cls.__name__]
        out[t] = {"config": d, "class": cls.__name__,
                  "params_total": sum(p.numel() for p in model.parameters())}
        print(t, out[t]["params_total"], cls.__name__, flush=True)
        del model
    args.out.write_text(json.dumps({"generated_by": "scripts/gen_class_defaults.py",
                                    "transformers_version": transformers.__version__,
                                    "models": out}, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
