"""Hunyuan-A13B (``hunyuan_v1_moe``): GQA with per-head q/k RMSNorm, routed experts + a shared MLP.

SOURCE: transformers 5.25.0 ``models/hunyuan_v1_moe/modeling_hunyuan_v1_moe.py``:
HunYuanMoEV1Attention q/k/v/o (``attention_bias``) + ``query_layernorm`` / ``key_layernorm``
[head_dim]; HunYuanMoEV1Moe = fp32 router ``gate.wg`` [E, hidden] + E experts and a
``shared_mlp``, both of ``intermediate_size`` (transformers reads neither
``moe_intermediate_size`` nor ``num_shared_expert``); every layer is MoE. Checkpoint names:
per-expert ``mlp.experts.{e}.gate_proj/up_proj/down_proj`` (conversion_mapping.py
``hunyuan_v1_moe`` = ``qwen2_moe``).

The published config also carries per-layer lists (``moe_topk``, ``moe_intermediate_size``,
``num_shared_expert``); vLLM (hunyuan_v1.py) reads them per layer. Top-k is read per layer; a
``moe_intermediate_size`` other than ``intermediate_size`` or a shared-expert count other than 1
would make transformers and vLLM build different models, so such configs are refused.
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

MODEL_TYPES = ("hunyuan_v1_moe",)
ARCHITECTURES = ("HunYuanMoEV1ForCausalLM",)
HANDLES = frozenset({"moe", "per_layer_lists"})


def _per_layer(text: Mapping[str, Any], key: str, n: int, default: int) -> list[int]:
    raw = text.get(key)
    if raw is None:
        return [default] * n
    if isinstance(raw, int) and not isinstance(raw, bool):
        return [raw] * n
    if not isinstance(raw, list) or len(raw) < n or not all(
            isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in raw[:n]):
        raise ConfigError(f"config.json {key}", f"must be a positive integer or a list of "
                          f"{n}", "fix it in config.json")
    return [int(x) for x in raw[:n]]


def spec(cfg: Mapping[str, Any], model_id: str = "local",
         extra_quant: Mapping[str, Any] | None = None) -> ModelSpec:
    text = hc.text_config(cfg)
    n = hc.read_int(text, "num_hidden_layers")
    hidden = hc.read_int(text, "hidden_size")
    heads = hc.read_int(text, "num_attention_heads")
    kv_heads = hc.read_int(text, "num_key_value_heads", heads)
    head_dim = hc.read_int(text, "head_dim", hidden // heads)
    inter = hc.read_int(text, "intermediate_size")
    n_exp = hc.read_int(text, "num_experts", 1)
    top_k = _per_layer(text, "moe_topk", n, 1)
    if any(k > n_exp for k in top_k):
        raise ConfigError("config.json moe_topk", f"exceeds the {n_exp} experts", "fix it")
    if any(w != inter for w in _per_layer(text, "moe_intermediate_size", n, inter)):
        raise ConfigError("config.json moe_intermediate_size", "differs from intermediate_size; "
                          "transformers and vLLM would build different experts",
                          "pass the model folder with its *.safetensors headers")
    if any(s != 1 for s in _per_layer(text, "num_shared_expert", n, 1)):
        raise ConfigError("config.json num_shared_expert", "is not 1; transformers and vLLM "
                          "would build different shared MLPs",
                          "pass the model folder with its *.safetensors headers")

    def layer_fn(t: Mapping[str, Any], i: int) -> LayerSpec:
        attn = hc.attention_spec(t, "llama", "full", heads, kv_heads, head_dim, None, None)
        mlp = MlpSpec(kind="moe", intermediate_size=inter, num_experts=n_exp, top_k=top_k[i],
                      expert_intermediate_size=inter, shared_intermediate_size=inter)
        return LayerSpec(index=i, attention=attn, mlp=mlp)

    s = hc.generic_spec(cfg, model_id, extra_quant, model_type="hunyuan_v1_moe",
                        family="hunyuan_moe", layer_fn=layer_fn)
    return replace(s, attention_bias=bool(text.get("attention_bias", False)),
                   qk_norm=text.get("use_qk_norm", True) is not False)


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    h, v, pre = spec.hidden_size, spec.vocab_size, spec.prefix
    attn_spec = replace(spec, qk_norm=False, attention_out_bias=spec.attention_bias)
    out: list[TensorGroup] = [TensorGroup(f"{pre}.embed_tokens.weight", (v, h), "embedding", None,
                                          "vocab")]
    for layer in spec.layers:
        i, a, m = layer.index, layer.attention, layer.mlp
        lp = f"{pre}.layers.{i}"
        out += inv._attention(attn_spec, f"{lp}.self_attn", i, a, "attention")
        if spec.qk_norm:
            out += [inv._vec(f"{lp}.self_attn.query_layernorm.weight", a.head_dim, "norm", i),
                    inv._vec(f"{lp}.self_attn.key_layernorm.weight", a.head_dim, "norm", i)]
        out += [inv._vec(f"{lp}.input_layernorm.weight", h, "norm", i),
                inv._vec(f"{lp}.post_attention_layernorm.weight", h, "norm", i)]
        p = f"{lp}.mlp"
        e, ei = m.num_experts, m.expert_intermediate_size
        out.append(inv._lin(f"{p}.gate.wg.weight", e, h, "router", i, "replicated"))
        out += inv._experts(p, i, e, (("gate_proj", (ei, h), "expert_column"),
                                      ("up_proj", (ei, h), "expert_column"),
                                      ("down_proj", (h, ei), "expert_row")))
        out += inv._gated_mlp(f"{p}.shared_mlp", h, m.shared_intermediate_size, "shared_expert", i)
    out.append(inv._vec(f"{pre}.norm.weight", h, "norm", None))
    if not spec.tie_word_embeddings:
        out.append(TensorGroup(f"{spec.lm_head_name}.weight", (v, h), "lm_head", None, "vocab",
                               linear=True))
    return out, []
