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


# Variants: each class re-built with some defaults changed (what a real checkpoint of the family
# differs in), then saved again: depth (layer patterns recomputed), tying, attention bias,
# KV heads. Keys a class does not have are skipped.
VARIANTS: dict[str, dict[str, object]] = {
    "depth7": {"num_hidden_layers": 7},
    "tie_flip": {"tie_word_embeddings": "flip"},
    "bias": {"attention_bias": True},
    "kv1": {"num_key_value_heads": 1},
    "mlp_bias": {"mlp_bias": True},
    "head_dim64": {"head_dim": 64},
    "dense_first2": {"first_k_dense_replace": 2},
    "shared2": {"n_shared_experts": 2},
    "sparse_step2": {"decoder_sparse_step": 2},
    "no_shared": {"shared_expert_intermediate_size": 0},
    "q_lora_none": {"q_lora_rank": None},
    "moe_step2": {"interleave_moe_layer_step": 2},
    "mlp_only_0": {"mlp_only_layers": [0]},
}
# per-layer lists a class derives from other keys when they are absent (popped so that they follow
# the change, as in a checkpoint saved with it); hand-set patterns are kept
_DERIVED = ("mlp_layer_types", "moe_layers")
# a new depth also needs the layer patterns recomputed
_DEPTH_DERIVED = _DERIVED + ("layer_types", "no_rope_layers", "full_attn_idxs",
                             "hybrid_override_pattern", "compress_ratios",
                             "intermediate_size_per_layer")


def variant_config(t: str, change: dict[str, object]) -> object | None:
    """The class ``t`` re-built with ``change`` applied to its (text) config, or None when the
    class has none of the changed keys or refuses them."""
    base = AutoConfig.for_model(t).to_dict()
    text = base.get("text_config") if isinstance(base.get("text_config"), dict) else base
    applied = False
    for key, val in change.items():
        for target in {id(base): base, id(text): text}.values():
            if key not in target:
                continue
            if val == "flip":
                target[key] = not bool(target[key])
            else:
                target[key] = val
            for d in _DEPTH_DERIVED if key == "num_hidden_layers" else _DERIVED:
                if d != key:  # let the class recompute its derived per-layer lists
                    target.pop(d, None)
            applied = True
    if not applied:
        return None
    base.pop("model_type", None)
    try:
        return AutoConfig.for_model(t, **base)
    except Exception:  # noqa: BLE001 - an invalid combination for this class
        return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "tests" / "data" / "class_defaults.json")
    args = ap.parse_args()
    out: dict[str, object] = {}
    jobs: list[tuple[str, str, object]] = []
    for t in TYPES:
        try:
            jobs.append((t, t, AutoConfig.for_model(t)))
        except Exception as exc:  # noqa: BLE001 - recorded
            out[t] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            continue
        for name, change in VARIANTS.items():
            v = variant_config(t, change)
            if v is not None:
                jobs.append((f"{t}~{name}", t, v))
    for key, t, cfg in jobs:
        cls = MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING.get(type(cfg), None) or \
            MODEL_FOR_CAUSAL_LM_MAPPING.get(type(cfg), None)
        if cls is None:
            out[key] = {"error": "no causal-LM or image-text-to-text class"}
            continue
        try:
            with torch.device("meta"):
                model = cls._from_config(cfg)
        except Exception as exc:  # noqa: BLE001 - recorded
            if key == t:
                out[key] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            continue
        d = json.loads(json.dumps(cfg.to_dict(), default=str))
        d["architectures"] = [cls.__name__]
        out[key] = {"config": d, "class": cls.__name__,
                    "params_total": sum(p.numel() for p in model.parameters())}
        print(key, out[key]["params_total"], cls.__name__, flush=True)
        del model
    args.out.write_text(json.dumps({"generated_by": "scripts/gen_class_defaults.py",
                                    "transformers_version": transformers.__version__,
                                    "models": out}, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
