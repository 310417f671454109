"""Which structure a config.json describes, so that nothing is silently read as a plain decoder.

A config's *structure keys* are the ones that change which tensors exist or how the cache grows:
experts, MLA, sparse-attention indexers, linear attention, Mamba/SSM mixers, hybrid layer
patterns, cross-attention, per-layer lists, per-block configs, vision/audio towers. Each family
declares the categories it interprets (``HANDLES``); ``unexplained`` returns the keys of every
other category present, and ``hf_config.spec_from_config`` refuses such a config (or, with
safetensors headers at hand, takes weights from them and marks the KV approximate).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Training-only knobs that share a name with MoE structure but create no tensors.
_IGNORED = frozenset({
    "router_aux_loss_coef", "router_z_loss_coef", "output_router_logits", "router_jitter_noise",
    "moe_aux_loss_coef", "aux_loss_alpha", "seq_aux", "norm_topk_prob", "routed_scaling_factor",
    "topk_method", "scoring_func", "n_group", "topk_group", "use_mamba_kernels", "use_mambapy",
    "mamba_hidden_act", "mamba_ssm_cache_dtype", "mamba_ssm_dtype", "ssm_dtype", "moe_router_dtype",
    "mamba_chunk_size", "time_step_limit", "time_step_min", "time_step_max", "time_step_floor",
    "time_step_rank", "mamba_dt_min", "mamba_dt_max", "mamba_dt_init_floor",
    "router_temperature", "moe_router_enable_expert_bias", "use_mamba_kernel",
    "expert_dtype", "vision_start_token_id", "vision_end_token_id", "vision_token_id",
    "vision_feature_layer", "vision_feature_select_strategy", "image_token_index",
    "rope_interleave",
})

# (category, predicate on the key name) in the order they are tried.
_CATEGORIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("indexer", re.compile(r"^index_")),
    ("mla", re.compile(r"^(kv_lora_rank|q_lora_rank)$")),
    ("mamba", re.compile(r"mamba|ssm|^d_state$|^d_conv$|^conv_kernel$|^conv_L_cache$")),
    ("linear_attention", re.compile(r"^linear_|^full_attention_interval$")),
    ("moe", re.compile(r"expert|(^|_)moe(_|$)|^num_experts")),
    ("cross_attention", re.compile(r"cross_attention")),
    ("block_configs", re.compile(r"^block_configs$")),
    ("pattern", re.compile(r"pattern|_period$|_offset$|_interval$|every_n|layers_block_type"
                           r"|^swa_layers$|^global_|_global_|^no_rope_layers$|^attention_chunk_size$"
                           r"|interleave")),
)
_PER_LAYER_KEYS = ("hidden_size", "intermediate_size", "num_attention_heads",
                   "num_key_value_heads", "head_dim", "moe_intermediate_size")
KNOWN_LAYER_TYPES = frozenset({"full_attention", "sliding_attention"})
TOWER_KEYS = {"vision_config": "vision", "audio_config": "audio", "vision_tower": "vision",
              "mm_vision_tower": "vision", "speech_config": "audio"}


def _truthy(v: Any) -> bool:
    if v is None or v is False:
        return False
    if isinstance(v, int | float) and not isinstance(v, bool):
        return v != 0
    if isinstance(v, list | tuple | dict | str):
        return len(v) > 0
    return True


def categories(cfg: Mapping[str, Any], text: Mapping[str, Any]) -> dict[str, list[str]]:
    """Structure category -> the keys (as written) that put the config in it."""
    out: dict[str, list[str]] = {}

    def add(cat: str, key: str) -> None:
        out.setdefault(cat, [])
        if key not in out[cat]:
            out[cat].append(key)

    for key, val in text.items():
        if key in _IGNORED or not _truthy(val):
            continue
        if key == "layer_types":
            kinds = {str(t) for t in val} if isinstance(val, list) else {"?"}
            if kinds - KNOWN_LAYER_TYPES:
                add("layer_types:" + ",".join(sorted(kinds - KNOWN_LAYER_TYPES)), key)
            continue
        if key in _PER_LAYER_KEYS and isinstance(val, list):
            add("per_layer_lists", key)
            continue
        if key == "sliding_window" and text.get("use_sliding_window", True) is not False \
                and not text.get("layer_types"):
            add("sliding_window", key)
            continue
        for cat, pat in _CATEGORIES:
            if pat.search(key):
                add(cat, key)
                break
    for key, kind in TOWER_KEYS.items():
        if _truthy(cfg.get(key)):
            add(kind, key)
    return out


# Category of a config whose model_type and architectures name no family vramplan knows.
UNKNOWN_FAMILY = "unknown_family"


def unexplained(cfg: Mapping[str, Any], text: Mapping[str, Any],
                handles: frozenset[str], *, family_known: bool = True) -> dict[str, list[str]]:
    """Categories present in the config that the family does not interpret.

    A ``layer_types:<kinds>`` category is explained when the family handles ``layer_types`` or
    that exact category. A config of no known family (``family_known`` False: neither its
    ``model_type`` nor its ``architectures`` class is registered) is in ``UNKNOWN_FAMILY``
    whatever its keys: a plain decoder's family-specific tensors are not written in config.json
    (OLMo-2's full-width q/k norms, Qwen2's q/k/v biases, Gemma-2's extra norms: each of these
    configs renamed reads as a Llama with the wrong count), so a generic reading is never exact
    by construction.
    """
    found = categories(cfg, text)
    out = {cat: keys for cat, keys in found.items()
           if cat not in handles and not (cat.startswith("layer_types:") and "layer_types" in handles)}
    if not family_known:
        out[UNKNOWN_FAMILY] = ["model_type"] + (["architectures"] if cfg.get("architectures")
                                                else [])
    return out
