"""MiMo-V2-Flash (``mimo_v2_flash``): hybrid full / sliding-window GQA with sinks + sigmoid MoE.

SOURCE: transformers 5.25.0 ``models/mimo_v2_flash/{configuration,modeling}_mimo_v2_flash.py``:
MiMoV2FlashAttention q/k of ``head_dim`` and v of ``v_head_dim`` (``attention_bias`` on q/k/v,
none on o), o_proj [hidden, heads*v_head_dim]; sliding-window layers have twice the KV heads and
per-head ``sinks``; MiMoV2FlashMoE = fp32 router ``gate.weight`` + ``e_score_correction_bias``
buffer + experts of ``moe_intermediate_size``, no shared expert; dense layers of
``intermediate_size``. Defaults: full attention at layer 0 and every 6th, layer 0 dense.

The Hub config spells the schedule ``hybrid_layer_pattern`` (0 full, 1 sliding) and
``moe_layer_freq`` (0 dense, 1 MoE) and gives the sliding layers' shapes as ``swa_*`` keys
(``swa_num_key_value_heads`` = 2 x ``num_key_value_heads``, what transformers builds), with
``add_swa_attention_sink_bias`` / ``add_full_attention_sink_bias``; both spellings are read
(``layer_types`` / ``mlp_layer_types`` first). Window: ``sliding_window_size`` + 1 tokens
(the query plus that many previous; MiMoV2FlashConfig.__post_init__), else ``sliding_window``.
Checkpoint names: per-expert ``mlp.experts.{e}.*`` and ``self_attn.attention_sink_bias``
(conversion_mapping.py ``mimo_v2_flash``). MTP layers are built by neither transformers nor
this reading and are not counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from vramplan import inventory as inv
from vramplan.errors import ConfigError
from vramplan.inventory import TensorGroup
from vramplan.model import hf_config as hc
from vramplan.model.spec import AttentionSpec, LayerSpec, MlpSpec, ModelSpec

MODEL_TYPES = ("mimo_v2_flash",)
ARCHITECTURES = ("MiMoV2FlashForCausalLM",)
HANDLES = frozenset({"moe", "pattern", "sliding_window", "layer_types"})


def _schedule(text: Mapping[str, Any], n: int, names_key: str, names: tuple[str, str],
              flags_key: str, default: list[bool]) -> list[bool]:
    """Per layer True for the second kind: ``names_key`` (strings) > ``flags_key`` (0/1)."""
    raw = text.get(names_key)
    if raw is not None:
        if not isinstance(raw, list) or len(raw) < n or any(x not in names for x in raw[:n]):
            raise ConfigError(f"config.json {names_key}", f"must give {names[0]!r} or "
                              f"{names[1]!r} for each of the {n} layers", "fix it in config.json")
        return [x == names[1] for x in raw[:n]]
    raw = text.get(flags_key)
    if raw is not None:
        if not isinstance(raw, list) or len(raw) < n or any(x not in (0, 1) for x in raw[:n]):
            raise ConfigError(f"config.json {flags_key}", f"must give 0 or 1 for each of the {n} "
                              "layers", "fix it in config.json")
        return [x == 1 for x in raw[:n]]
    return default


def spec(cfg: Mapping[str, Any], model_id: str = "local",
         extra_quant: Mapping[str, Any] | None = None) -> ModelSpec:
    text = hc.text_config(cfg)
    n = hc.read_int(text, "num_hidden_layers")
    heads = hc.read_int(text, "num_attention_heads")
    kv = hc.read_int(text, "num_key_value_heads", 4)
    hd = hc.read_int(text, "head_dim", 192)
    vd = hc.read_int(text, "v_head_dim", 128)
    swa_heads = hc.read_int(text, "swa_num_attention_heads", heads)
    swa_kv = hc.read_int(text, "swa_num_key_value_heads", 2 * kv)
    swa_hd = hc.read_int(text, "swa_head_dim", hd)
    swa_vd = hc.read_int(text, "swa_v_head_dim", vd)
    if swa_heads != heads:
        raise ConfigError("config.json swa_num_attention_heads", "differs from "
                          "num_attention_heads; not modelled", "pass the safetensors headers")
    if hc.read_int0(text, "n_shared_experts", 0):
        raise ConfigError("config.json n_shared_experts", "MiMo-V2-Flash has no shared expert",
                          "set it to 0 / null (as published)")
    if text.get("sliding_window_size") is not None:
        window = hc.read_int(text, "sliding_window_size") + 1
    else:
        window = hc.read_int(text, "sliding_window", 129)
    sliding = _schedule(text, n, "layer_types", ("full_attention", "sliding_attention"),
                        "hybrid_layer_pattern",
                        [not (i == 0 or (i + 1) % 6 == 0) for i in range(n)])
    sparse = _schedule(text, n, "mlp_layer_types", ("dense", "sparse"), "moe_layer_freq",
                       [i > 0 for i in range(n)])
    n_exp = hc.read_int(text, "n_routed_experts", 256)
    top_k = hc.read_int(text, "num_experts_per_tok", 8)
    if top_k > n_exp:
        raise ConfigError("config.json num_experts_per_tok", f"{top_k} is more than the {n_exp} "
                          "experts", "fix it in config.json")
    e_inter = hc.read_int(text, "moe_intermediate_size", 2048)
    sinks = {True: text.get("add_swa_attention_sink_bias", True) is not False,
             False: bool(text.get("add_full_attention_sink_bias", False))}

    def layer_fn(t: Mapping[str, Any], i: int) -> LayerSpec:
        if sliding[i]:
            attn = AttentionSpec(kind="sliding", num_heads=heads, num_kv_heads=swa_kv,
                                 head_dim=swa_hd, v_head_dim=swa_vd, window_tokens=window)
        else:
            attn = AttentionSpec(kind="full", num_heads=heads, num_kv_heads=kv, head_dim=hd,
                                 v_head_dim=vd)
        if sparse[i]:
            mlp = MlpSpec(kind="moe", intermediate_size=0, num_experts=n_exp, top_k=top_k,
                          expert_intermediate_size=e_inter, score_correction_bias=True)
        else:
            mlp = MlpSpec(kind="dense", intermediate_size=hc.read_int(t, "intermediate_size"))
        return LayerSpec(index=i, attention=attn, mlp=mlp)

    s = hc.generic_spec(cfg, model_id, extra_quant, model_type="mimo_v2_flash",
                        family="mimo_v2_flash", layer_fn=layer_fn)
    return replace(s, attention_bias=bool(text.get("attention_bias", False)), mtp_layers=0,
                   family_params=(("sink_layers", tuple(i for i in range(n)
                                                        if sinks[sliding[i]])),))


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    h, v, pre = spec.hidden_size, spec.vocab_size, spec.prefix
    raw = spec.param("sink_layers", ())
    sink_layers = set(raw) if isinstance(raw, tuple) else set()
    out: list[TensorGroup] = [TensorGroup(f"{pre}.embed_tokens.weight", (v, h), "embedding", None,
                                          "vocab")]
    for layer in spec.layers:
        i, a, m = layer.index, layer.attention, layer.mlp
        lp = f"{pre}.layers.{i}"
        p = f"{lp}.self_attn"
        qd, kd, vd = a.num_heads * a.head_dim, a.num_kv_heads * a.head_dim, \
            a.num_kv_heads * a.v_head_dim
        out += [inv._lin(f"{p}.q_proj.weight", qd, h, "attention", i, "column"),
                inv._lin(f"{p}.k_proj.weight", kd, h, "attention", i, "kv"),
                inv._lin(f"{p}.v_proj.weight", vd, h, "attention", i, "kv")]
        if spec.attention_bias:
            out += [inv._vec(f"{p}.q_proj.bias", qd, "attention", i, "column"),
                    inv._vec(f"{p}.k_proj.bias", kd, "attention", i, "kv"),
                    inv._vec(f"{p}.v_proj.bias", vd, "attention", i, "kv")]
        out.append(inv._lin(f"{p}.o_proj.weight", h, a.num_heads * a.v_head_dim, "attention", i,
                            "row"))
        if i in sink_layers:
            out.append(inv._vec(f"{p}.attention_sink_bias", a.num_heads, "attention", i,
                                "column"))
        out += [inv._vec(f"{lp}.input_layernorm.weight", h, "norm", i),
                inv._vec(f"{lp}.post_attention_layernorm.weight", h, "norm", i)]
        if m.kind == "moe":
            mp = f"{lp}.mlp"
            e, ei = m.num_experts, m.expert_intermediate_size
            out += [inv._lin(f"{mp}.gate.weight", e, h, "router", i, "replicated"),
                    inv._vec(f"{mp}.gate.e_score_correction_bias", e, "router", i, buffer=True)]
            out += inv._experts(mp, i, e, (("gate_proj", (ei, h), "expert_column"),
                                           ("up_proj", (ei, h), "expert_column"),
                                           ("down_proj", (h, ei), "expert_row")))
        else:
            out += inv._gated_mlp(f"{lp}.mlp", h, m.intermediate_size, "mlp", i)
    out.append(inv._vec(f"{pre}.norm.weight", h, "norm", None))
    if not spec.tie_word_embeddings:
        out.append(TensorGroup(f"{spec.lm_head_name}.weight", (v, h), "lm_head", None, "vocab",
                               linear=True))
    return out, []
