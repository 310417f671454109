"""GLM-4.7-Flash (``glm4_moe_lite``): DeepSeek-style MLA attention + the GLM-4.5 MoE.

SOURCE: transformers 5.25.0 ``models/glm4_moe_lite/{configuration,modeling}_glm4_moe_lite.py``:
Glm4MoeLiteAttention is DeepSeek-V3 MLA (``q_a_proj``/``q_a_layernorm``/``q_b_proj`` or
``q_proj`` without ``q_lora_rank``, ``kv_a_proj_with_mqa``, ``kv_a_layernorm``, ``kv_b_proj``,
``o_proj``); Glm4MoeLiteMoE is the GLM-4.5 MoE (fp32 router ``gate.weight`` + the
``e_score_correction_bias`` buffer, routed experts, ``n_shared_experts`` shared experts).
Tensors are the built-in core's ``glm4_moe`` layout with MLA attention.

Dense layers: transformers builds ``mlp_layer_types = ["dense"] + ["sparse"] * (n - 1)`` when the
config has none and ignores ``first_k_dense_replace``; vLLM (deepseek_v2.py, which serves this
model) reads ``first_k_dense_replace``. Both agree on the published config (1); we read
``mlp_layer_types`` when given, else ``first_k_dense_replace`` (default 1, the class default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from vramplan import inventory as inv
from vramplan.errors import ConfigError
from vramplan.inventory import TensorGroup
from vramplan.model import hf_config as hc
from vramplan.model.spec import LayerSpec, MlpSpec, ModelSpec

MODEL_TYPES = ("glm4_moe_lite",)
ARCHITECTURES = ("Glm4MoeLiteForCausalLM",)
HANDLES = frozenset({"moe", "mla"})


def sparse_layers(text: Mapping[str, Any], n_layers: int) -> list[bool]:
    """Per layer: True for a MoE layer (``mlp_layer_types`` "sparse", else i >= first_k_dense)."""
    raw = text.get("mlp_layer_types")
    if raw is not None:
        if not isinstance(raw, list) or len(raw) < n_layers or \
                any(t not in ("dense", "sparse") for t in raw[:n_layers]):
            raise ConfigError("config.json mlp_layer_types",
                              f"must list 'dense' or 'sparse' for each of the {n_layers} layers",
                              "fix mlp_layer_types in config.json")
        return [t == "sparse" for t in raw[:n_layers]]
    first = hc.read_int0(text, "first_k_dense_replace", 1)
    return [i >= first for i in range(n_layers)]


def spec(cfg: Mapping[str, Any], model_id: str = "local",
         extra_quant: Mapping[str, Any] | None = None) -> ModelSpec:
    text = hc.text_config(cfg)
    n_layers = hc.read_int(text, "num_hidden_layers")
    sparse = sparse_layers(text, n_layers)
    # the core MoE reader keys the dense prefix on first_k_dense_replace; feed it per layer
    moe_text = {**text, "first_k_dense_replace": 0, "moe_layer_freq": 1}

    def layer_fn(t: Mapping[str, Any], i: int) -> LayerSpec:
        heads = hc.read_int(t, "num_attention_heads")
        attn = hc.attention_spec(t, "glm4_moe", "mla", heads, heads, 0, None, None)
        if sparse[i]:
            mlp = hc.core_mlp(moe_text, "glm4_moe", "glm4_moe_lite", i, n_layers)
        else:
            mlp = MlpSpec(kind="dense", intermediate_size=hc.read_int(t, "intermediate_size"))
        return LayerSpec(index=i, attention=attn, mlp=mlp)

    return hc.generic_spec(cfg, model_id, extra_quant, model_type="glm4_moe_lite",
                           family="glm4_moe_lite", layer_fn=layer_fn)


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    """The core ``glm4_moe`` layout (MLA branch of ``inventory._attention``)."""
    base = inv.build_inventory(replace(spec, family="glm4_moe"))
    return list(base.tensors), list(base.mtp_tensors)
