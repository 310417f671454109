"""Phi-3.5-MoE (``phimoe``): Mixtral-style sparse MoE with biased attention and LayerNorms.

SOURCE: transformers 5.25.0 ``models/phimoe/modeling_phimoe.py``: PhimoeAttention q/k/v/o with
``attention_bias`` biases (o_proj included); PhimoeTopKRouter [E, hidden] (no bias); E experts
(gate/up/down of ``intermediate_size``); ``input_layernorm`` / ``post_attention_layernorm`` /
final ``norm`` are ``nn.LayerNorm`` (weight and bias); ``lm_head`` has a bias when
``lm_head_bias``. Checkpoint names are Mixtral's (conversion_mapping.py ``phimoe``:
``block_sparse_moe.gate`` -> ``mlp.router``, ``experts.{e}.w1/w3`` -> ``gate_up_proj``).
A ``sliding_window`` below ``max_position_embeddings`` makes every layer a sliding-window layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from vramplan import inventory as inv
from vramplan.inventory import TensorGroup
from vramplan.model import hf_config as hc
from vramplan.model.spec import AttnKind, LayerSpec, ModelSpec

MODEL_TYPES = ("phimoe",)
ARCHITECTURES = ("PhimoeForCausalLM", "PhiMoEForCausalLM")
HANDLES = frozenset({"moe", "sliding_window"})


def spec(cfg: Mapping[str, Any], model_id: str = "local",
         extra_quant: Mapping[str, Any] | None = None) -> ModelSpec:
    text = hc.text_config(cfg)
    n = hc.read_int(text, "num_hidden_layers")
    heads = hc.read_int(text, "num_attention_heads")
    kv_heads = hc.read_int(text, "num_key_value_heads", heads)
    hidden = hc.read_int(text, "hidden_size")
    head_dim = hc.read_int(text, "head_dim", hidden // heads)
    max_pos = hc.read_int(text, "max_position_embeddings", 131072)
    window = hc.read_opt_int(text, "sliding_window")
    kind: AttnKind = "sliding" if window and window < max_pos else "full"

    def layer_fn(t: Mapping[str, Any], i: int) -> LayerSpec:
        attn = hc.attention_spec(t, "llama", kind, heads, kv_heads, head_dim, window, None)
        return LayerSpec(index=i, attention=attn, mlp=hc.core_mlp(t, "mixtral", "phimoe", i, n))

    s = hc.generic_spec(cfg, model_id, extra_quant, model_type="phimoe", family="phimoe",
                        layer_fn=layer_fn)
    bias = bool(text.get("attention_bias", False))
    return replace(s, attention_bias=bias, attention_out_bias=bias,
                   family_params=(("lm_head_bias", bool(text.get("lm_head_bias", False))),))


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    """The core Mixtral layout (q/k/v/o biases from the spec) + LayerNorm biases + head bias."""
    base = inv.build_inventory(replace(spec, family="mixtral"))
    out: list[TensorGroup] = []
    for t in base.tensors:
        out.append(t)
        if t.role == "norm" and (t.name.endswith("layernorm.weight")
                                 or t.name == f"{spec.prefix}.norm.weight"):
            out.append(inv._vec(t.name[:-len("weight")] + "bias", t.shape[0], "norm", t.layer))
    if spec.param("lm_head_bias") and not spec.tie_word_embeddings:
        out.append(inv._vec(f"{spec.lm_head_name}.bias", spec.vocab_size, "lm_head", None,
                            "vocab"))
    return out, list(base.mtp_tensors)
