"""ERNIE-4.5 MoE (``ernie4_5_moe``): dense prefix, then experts + shared experts every interval.

SOURCE: transformers 5.25.0 ``models/ernie4_5_moe/{configuration,modeling}_ernie4_5_moe.py``:
attention q/k/v/o with ``use_bias`` biases; layer i is MoE when ``(i + 1) % moe_layer_interval
== 0`` and ``moe_layer_start_index <= i <= moe_layer_end_index`` (-1: the last layer), else a
dense MLP of ``intermediate_size`` (with ``use_bias``); MoE = fp32 router ``gate.weight``
[E, hidden] + ``moe_statics.e_score_correction_bias`` [1, E] (an ``nn.Parameter`` with
requires_grad False, so transformers counts it as a parameter) + E experts of
``moe_intermediate_size`` + one shared MLP of ``moe_intermediate_size *
moe_num_shared_experts``; ``lm_head`` has a bias with ``use_bias``. Checkpoint names: per-expert
``mlp.experts.{e}.gate_proj/up_proj/down_proj`` and ``mlp.moe_statics.e_score_correction_bias``
(conversion_mapping.py ``ernie4_5_moe``). The MTP layer (``num_nextn_predict_layers``) is built
by neither transformers nor vLLM's ernie45_moe.py: not counted.
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

MODEL_TYPES = ("ernie4_5_moe",)
ARCHITECTURES = ("Ernie4_5_MoeForCausalLM",)
HANDLES = frozenset({"moe"})


def moe_layers(text: Mapping[str, Any], n: int) -> list[bool]:
    """Ernie4_5_MoeDecoderLayer: (i+1) % interval == 0 and start <= i <= end (end -1 -> n-1)."""
    interval = hc.read_int(text, "moe_layer_interval", 1)
    start = hc.read_int0(text, "moe_layer_start_index", 1)
    end_raw = text.get("moe_layer_end_index", -1)
    if end_raw is None or end_raw == -1:
        end = n - 1
    elif isinstance(end_raw, int) and not isinstance(end_raw, bool) and end_raw >= 0:
        end = end_raw
    else:
        raise ConfigError("config.json moe_layer_end_index", f"must be -1 or a layer index, got "
                          f"{end_raw!r}", "fix it in config.json")
    return [(i + 1) % interval == 0 and start <= i <= end for i in range(n)]


def spec(cfg: Mapping[str, Any], model_id: str = "local",
         extra_quant: Mapping[str, Any] | None = None) -> ModelSpec:
    text = hc.text_config(cfg)
    n = hc.read_int(text, "num_hidden_layers")
    hidden = hc.read_int(text, "hidden_size")
    heads = hc.read_int(text, "num_attention_heads")
    kv_heads = hc.read_int(text, "num_key_value_heads", heads)
    head_dim = hc.read_int(text, "head_dim", hidden // heads)
    moe = moe_layers(text, n)
    n_exp = hc.read_int(text, "moe_num_experts", text.get("num_experts", 64))
    top_k = hc.read_int(text, "moe_k", text.get("num_experts_per_tok", 6))
    if top_k > n_exp:
        raise ConfigError("config.json moe_k", f"{top_k} is more than the {n_exp} experts",
                          "fix it in config.json")
    e_inter = hc.read_int(text, "moe_intermediate_size", 1536)
    shared = hc.read_int0(text, "moe_num_shared_experts", 2) * e_inter

    def layer_fn(t: Mapping[str, Any], i: int) -> LayerSpec:
        attn = hc.attention_spec(t, "llama", "full", heads, kv_heads, head_dim, None, None)
        if moe[i]:
            mlp = MlpSpec(kind="moe", intermediate_size=0, num_experts=n_exp, top_k=top_k,
                          expert_intermediate_size=e_inter, shared_intermediate_size=shared)
        else:
            mlp = MlpSpec(kind="dense", intermediate_size=hc.read_int(t, "intermediate_size"))
        return LayerSpec(index=i, attention=attn, mlp=mlp)

    s = hc.generic_spec(cfg, model_id, extra_quant, model_type="ernie4_5_moe",
                        family="ernie45_moe", layer_fn=layer_fn)
    bias = bool(text.get("use_bias", False))
    return replace(s, attention_bias=bias, attention_out_bias=bias, mlp_bias=bias, mtp_layers=0)


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    h, v, pre = spec.hidden_size, spec.vocab_size, spec.prefix
    bias = spec.mlp_bias
    out: list[TensorGroup] = [TensorGroup(f"{pre}.embed_tokens.weight", (v, h), "embedding", None,
                                          "vocab")]
    for layer in spec.layers:
        i, a, m = layer.index, layer.attention, layer.mlp
        lp = f"{pre}.layers.{i}"
        out += inv._attention(spec, f"{lp}.self_attn", i, a, "attention")
        out += [inv._vec(f"{lp}.input_layernorm.weight", h, "norm", i),
                inv._vec(f"{lp}.post_attention_layernorm.weight", h, "norm", i)]
        p = f"{lp}.mlp"
        if m.kind != "moe":
            out += inv._gated_mlp(p, h, m.intermediate_size, "mlp", i, bias=bias)
            continue
        e, ei = m.num_experts, m.expert_intermediate_size
        out += [inv._lin(f"{p}.gate.weight", e, h, "router", i, "replicated"),
                TensorGroup(f"{p}.moe_statics.e_score_correction_bias", (1, e), "router", i)]
        out += inv._experts(p, i, e, (("gate_proj", (ei, h), "expert_column"),
                                      ("up_proj", (ei, h), "expert_column"),
                                      ("down_proj", (h, ei), "expert_row")))
        if m.shared_intermediate_size:
            out += inv._gated_mlp(f"{p}.shared_experts", h, m.shared_intermediate_size,
                                  "shared_expert", i, bias=bias)
    out.append(inv._vec(f"{pre}.norm.weight", h, "norm", None))
    if not spec.tie_word_embeddings:
        out.append(TensorGroup(f"{spec.lm_head_name}.weight", (v, h), "lm_head", None, "vocab",
                               linear=True))
    if bias:  # the head's bias exists even when its weight is tied to the embedding
        out.append(inv._vec(f"{spec.lm_head_name}.bias", v, "lm_head", None, "vocab"))
    return out, []
