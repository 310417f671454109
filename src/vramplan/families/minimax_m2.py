"""MiniMax-M2 / M2.5 (``minimax_m2``): GQA attention with whole-width q/k RMSNorm + sigmoid MoE.

SOURCE: transformers 5.25.0 ``models/minimax_m2/modeling_minimax_m2.py``: MiniMaxM2Attention has
``q_proj``/``k_proj``/``v_proj``/``o_proj`` (no biases) and ``q_norm`` over all query heads
(num_attention_heads*head_dim) and ``k_norm`` over all KV heads (``qk_norm_type: per_layer``);
MiniMaxM2SparseMoeBlock has the router ``gate`` [E, hidden], the persistent buffer
``e_score_correction_bias`` [E] and E experts (gate/up/down of ``intermediate_size``), no shared
expert. Checkpoint names are Mixtral's (transformers conversion_mapping.py ``minimax_m2`` =
``mixtral`` + ``.block_sparse_moe.e_score_correction_bias``): ``block_sparse_moe.gate``,
``block_sparse_moe.experts.{e}.w1/w2/w3``. The MTP modules of the config (``use_mtp``,
``num_mtp_modules``) are built neither by transformers nor by vLLM's minimax_m2.py, so none are
counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from vramplan import inventory as inv
from vramplan.errors import ConfigError
from vramplan.inventory import TensorGroup
from vramplan.model import hf_config as hc
from vramplan.model.spec import LayerSpec, ModelSpec

MODEL_TYPES = ("minimax_m2",)
ARCHITECTURES = ("MiniMaxM2ForCausalLM",)
HANDLES = frozenset({"moe"})


def spec(cfg: Mapping[str, Any], model_id: str = "local",
         extra_quant: Mapping[str, Any] | None = None) -> ModelSpec:
    text = hc.text_config(cfg)
    n_layers = hc.read_int(text, "num_hidden_layers")
    kinds = text.get("attn_type_list")
    if isinstance(kinds, list) and any(k != 1 for k in kinds):
        raise ConfigError("config.json attn_type_list", "has linear (lightning) attention layers, "
                          "which MiniMax-M2 does not build", "use a MiniMax-M2 config")
    if hc.read_int0(text, "shared_intermediate_size", 0):
        raise ConfigError("config.json shared_intermediate_size", "is non-zero, but MiniMax-M2 "
                          "has no shared expert", "set it to 0 (as published)")
    if str(text.get("qk_norm_type", "per_layer")) != "per_layer" and text.get("use_qk_norm"):
        raise ConfigError("config.json qk_norm_type", "only 'per_layer' (whole-width q/k norms) "
                          "is built by MiniMax-M2", "use qk_norm_type per_layer")
    heads = hc.read_int(text, "num_attention_heads")
    kv_heads = hc.read_int(text, "num_key_value_heads", heads)
    head_dim = hc.read_int(text, "head_dim")

    def layer_fn(t: Mapping[str, Any], i: int) -> LayerSpec:
        attn = hc.attention_spec(t, "llama", "full", heads, kv_heads, head_dim, None, None)
        mlp = hc.core_mlp(t, "mixtral", "minimax_m2", i, n_layers)
        return LayerSpec(index=i, attention=attn, mlp=replace(mlp, score_correction_bias=True))

    s = hc.generic_spec(cfg, model_id, extra_quant, model_type="minimax_m2", family="minimax_m2",
                        layer_fn=layer_fn)
    return replace(s, qk_norm=bool(text.get("use_qk_norm", True)))


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    """Embedding, per layer q/k/v/o + whole-width q/k norms + Mixtral-named MoE, norm, head."""
    h, v, pre = spec.hidden_size, spec.vocab_size, spec.prefix
    moe_spec = replace(spec, family="mixtral")
    out: list[TensorGroup] = [TensorGroup(f"{pre}.embed_tokens.weight", (v, h), "embedding", None,
                                          "vocab")]
    for layer in spec.layers:
        i, a, m = layer.index, layer.attention, layer.mlp
        lp = f"{pre}.layers.{i}"
        p = f"{lp}.self_attn"
        qd, kvd = a.num_heads * a.head_dim, a.num_kv_heads * a.head_dim
        out += [inv._lin(f"{p}.q_proj.weight", qd, h, "attention", i, "column"),
                inv._lin(f"{p}.k_proj.weight", kvd, h, "attention", i, "kv"),
                inv._lin(f"{p}.v_proj.weight", kvd, h, "attention", i, "kv"),
                inv._lin(f"{p}.o_proj.weight", h, qd, "attention", i, "row")]
        if spec.qk_norm:
            out += [inv._vec(f"{p}.q_norm.weight", qd, "norm", i, "column"),
                    inv._vec(f"{p}.k_norm.weight", kvd, "norm", i, "kv")]
        out += [inv._vec(f"{lp}.input_layernorm.weight", h, "norm", i),
                inv._vec(f"{lp}.post_attention_layernorm.weight", h, "norm", i)]
        out += inv._moe(moe_spec, lp, i, m)
        if m.score_correction_bias:
            out.append(inv._vec(f"{lp}.block_sparse_moe.e_score_correction_bias", m.num_experts,
                                "router", i, buffer=True))
    out.append(inv._vec(f"{pre}.norm.weight", h, "norm", None))
    if not spec.tie_word_embeddings:
        out.append(TensorGroup(f"{spec.lm_head_name}.weight", (v, h), "lm_head", None, "vocab",
                               linear=True))
    return out, []
