"""DeepSeek-V4 (``deepseek_v4``): shared-KV MQA with compressed sparse attention, mHC, hash MoE.

SOURCE: transformers 5.25.0 ``models/deepseek_v4/{configuration,modeling}_deepseek_v4.py``.
Per layer (DeepseekV4DecoderLayer):

* attention (DeepseekV4Attention): ``q_a_proj`` [q_lora, H] + ``q_a_norm`` + ``q_b_proj``
  [heads*head_dim, q_lora] (the per-head q norm has no weight), ``kv_proj`` [head_dim, H] (one
  KV head, K = V) + ``kv_norm``, grouped output ``o_a_proj`` [o_groups*o_lora_rank,
  heads*head_dim/o_groups] + ``o_b_proj`` [H, o_groups*o_lora_rank], per-head ``sinks``;
* ``layer_types`` (or legacy ``compress_ratios`` 0/4/128): ``sliding_attention`` has no
  compressor; ``heavily_compressed_attention`` (HCA, ratio 128) a compressor with ``kv_proj`` /
  ``gate_proj`` [head_dim, H], ``position_bias`` [ratio, head_dim], ``kv_norm``;
  ``compressed_sparse_attention`` (CSA, ratio 4) the same at 2*head_dim (two overlapping series)
  plus a lightning indexer (its own compressor at 2*index_head_dim, ``q_b_proj``
  [index_n_heads*index_head_dim, q_lora], ``scorer.weights_proj`` [index_n_heads, H]);
* MoE (DeepseekV4SparseMoeBlock): router ``gate`` [E, H]; the first ``num_hash_layers``
  (``mlp_layer_types`` "hash_moe") route by a frozen ``tid2eid`` [vocab, top_k] buffer, the
  others carry the ``e_score_correction_bias`` buffer; E routed experts and one shared MLP of
  ``moe_intermediate_size`` (DeepseekV4MLP reads ``intermediate_size`` = moe_intermediate_size);
* two Manifold-Constrained Hyper-Connections (``attn_hc`` / ``ffn_hc``): ``fn``
  [(2+hc_mult)*hc_mult, hc_mult*H], ``base`` [(2+hc_mult)*hc_mult], ``scale`` [3];
* model: ``embed``, final ``norm``, ``hc_head`` (``hc_fn`` [hc, hc*H], ``hc_base`` [hc],
  ``hc_scale`` [1]), ``head``.

Tensor names are the checkpoint's (DeepSeek's own layout, no ``model.`` prefix), which
transformers renames on load (conversion_mapping.py ``deepseek_v4``: ``attn.`` -> ``self_attn.``,
``ffn.`` -> ``mlp.``, ``wq_a`` -> ``q_a_proj``, ``wkv`` -> ``kv_proj``, ``wgate`` -> ``gate_proj``,
``ape`` -> ``position_bias``, ``attn_sink`` -> ``sinks``, ``hc_attn_fn`` -> ``attn_hc.fn``, ...;
experts ``w1``/``w3`` -> ``gate_up_proj``, ``w2`` -> ``down_proj``).

KV cache: the spec keeps what the existing engines can model, each layer's sliding window
(``sliding_window`` tokens of one shared K=V head of ``head_dim``); the compressed entries
(CSA: one per 4 tokens + the indexer's keys; HCA: one per 128 tokens) grow with the context and
are NOT in the engines' KV figures: ``compressed_kv_bytes_per_token`` states them and the spec's
notes say so. Routed experts in FP4 (``expert_dtype``) are priced as the checkpoint scheme
(FP8 block) says, also stated in the notes.
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

MODEL_TYPES = ("deepseek_v4",)
ARCHITECTURES = ("DeepseekV4ForCausalLM",)
HANDLES = frozenset({"moe", "indexer", "mla", "sliding_window", "layer_types"})

SLIDING, CSA, HCA = "sliding_attention", "compressed_sparse_attention", \
    "heavily_compressed_attention"
_RATIO_TO_TYPE = {0: SLIDING, 4: CSA, 128: HCA}


def layer_types(text: Mapping[str, Any], n: int) -> list[str]:
    """Per-layer attention type: ``layer_types`` > legacy ``compress_ratios`` > the V4-Pro default
    (2 x HCA, then CSA/HCA alternating) of DeepseekV4Config.__post_init__ (truncated to n)."""
    raw = text.get("layer_types")
    if raw is None and text.get("compress_ratios") is not None:
        ratios = text["compress_ratios"]
        if not isinstance(ratios, list) or any(r not in _RATIO_TO_TYPE for r in ratios):
            raise ConfigError("config.json compress_ratios", "must list 0, 4 or 128 per layer",
                              "fix compress_ratios in config.json")
        raw = [_RATIO_TO_TYPE[r] for r in ratios]
    if raw is None:
        raw = [HCA] * min(n, 2) + [CSA if i % 2 else HCA for i in range(max(n - 2, 0))]
    if not isinstance(raw, list) or len(raw) < n or any(t not in (SLIDING, CSA, HCA)
                                                         for t in raw[:n]):
        raise ConfigError("config.json layer_types", f"must give one of {SLIDING}, {CSA}, {HCA} "
                          f"for each of the {n} layers", "fix layer_types in config.json")
    return [str(t) for t in raw]


def compress_rates(text: Mapping[str, Any]) -> dict[str, int]:
    """``compress_rates`` (default CSA 4, HCA 128; legacy compress_rate_csa / _hca)."""
    rates = {CSA: 4, HCA: 128}
    given = text.get("compress_rates")
    if isinstance(given, Mapping):
        for k in rates:
            if given.get(k) is not None:
                rates[k] = hc.read_int(given, k, field_prefix="compress_rates.")
    for key, t in (("compress_rate_csa", CSA), ("compress_rate_hca", HCA)):
        if text.get(key) is not None:
            rates[t] = hc.read_int(text, key)
    return rates


def mlp_types(text: Mapping[str, Any], n: int) -> list[bool]:
    """Per layer: True for a hash-routed MoE (``mlp_layer_types`` "hash_moe", else the first
    ``num_hash_layers``, default 3)."""
    raw = text.get("mlp_layer_types")
    if raw is not None:
        if not isinstance(raw, list) or len(raw) < n or \
                any(t not in ("hash_moe", "moe") for t in raw[:n]):
            raise ConfigError("config.json mlp_layer_types", "must give 'hash_moe' or 'moe' per "
                              "layer", "fix mlp_layer_types in config.json")
        return [t == "hash_moe" for t in raw[:n]]
    k = hc.read_int0(text, "num_hash_layers", 3)
    return [i < k for i in range(n)]


def spec(cfg: Mapping[str, Any], model_id: str = "local",
         extra_quant: Mapping[str, Any] | None = None) -> ModelSpec:
    text = hc.text_config(cfg)
    n = hc.read_int(text, "num_hidden_layers")
    heads = hc.read_int(text, "num_attention_heads")
    head_dim = hc.read_int(text, "head_dim", 512)
    window = hc.read_int(text, "sliding_window", 128)
    o_groups = hc.read_int(text, "o_groups", 8)
    if (heads * head_dim) % o_groups:
        raise ConfigError("config.json o_groups", f"{o_groups} does not divide "
                          f"num_attention_heads*head_dim", "fix o_groups in config.json")
    if hc.read_int(text, "num_key_value_heads", 1) != 1:
        raise ConfigError("config.json num_key_value_heads", "DeepSeek-V4 has one shared K=V "
                          "head", "set num_key_value_heads to 1")
    types = layer_types(text, n)
    hashed = mlp_types(text, n)
    n_exp = hc.read_int(text, "n_routed_experts", 256)
    top_k = hc.read_int(text, "num_experts_per_tok", 6)
    e_inter = hc.read_int(text, "moe_intermediate_size", 2048)
    if top_k > n_exp:
        raise ConfigError("config.json num_experts_per_tok", f"{top_k} is more than the {n_exp} "
                          "experts", "fix it in config.json")
    # DeepseekV4MoE has one shared expert of moe_intermediate_size whatever n_shared_experts says
    # (DeepseekV4Config.attribute_map intermediate_size -> moe_intermediate_size, 5.25.0)
    shared = e_inter

    rates = compress_rates(text)
    index_dim = hc.read_int(text, "index_head_dim", 128)

    def layer_fn(t: Mapping[str, Any], i: int) -> LayerSpec:
        # K = V: one cached vector of head_dim per token (v_head_dim 0), kept for the window;
        # CSA / HCA layers also keep one compressed entry per compress_rate context tokens
        # (K=V at head_dim, plus the indexer's key at index_head_dim for CSA).
        rate = rates[CSA] if types[i] == CSA else rates[HCA] if types[i] == HCA else 0
        cdim = head_dim + (index_dim if types[i] == CSA else 0) if rate else 0
        attn = AttentionSpec(kind="sliding", num_heads=heads, num_kv_heads=1, head_dim=head_dim,
                             v_head_dim=0, window_tokens=window,
                             q_lora_rank=hc.read_int(t, "q_lora_rank", 1024),
                             compress_rate=rate, compressed_dim=cdim)
        mlp = MlpSpec(kind="moe", intermediate_size=0, num_experts=n_exp, top_k=top_k,
                      expert_intermediate_size=e_inter, shared_intermediate_size=shared,
                      score_correction_bias=not hashed[i])
        return LayerSpec(index=i, attention=attn, mlp=mlp)

    s = hc.generic_spec(cfg, model_id, extra_quant, model_type="deepseek_v4", family="deepseek_v4",
                        layer_fn=layer_fn)
    params: tuple[tuple[str, object], ...] = (
        ("compress_rate_csa", rates[CSA]), ("compress_rate_hca", rates[HCA]),
        ("hash_layers", tuple(i for i in range(n) if hashed[i])),
        ("hc_mult", hc.read_int(text, "hc_mult", 4)),
        ("index_head_dim", hc.read_int(text, "index_head_dim", 128)),
        ("index_n_heads", hc.read_int(text, "index_n_heads", 64)),
        ("layer_types", tuple(types[:n])),
        ("mtp_layer_type", types[n] if len(types) > n else SLIDING),
        ("o_groups", o_groups), ("o_lora_rank", hc.read_int(text, "o_lora_rank", 1024)),
    )
    s = replace(s, family_params=params, prefix="", lm_head_name="head")
    per_tok = compressed_kv_bytes_per_token(s, 2)
    notes = [f"DeepSeek-V4 compressed attention: each layer keeps a {window}-token window of "
             f"one K=V head plus, in CSA/HCA layers, one compressed entry per "
             f"{rates[CSA]}/{rates[HCA]} context tokens ({per_tok} B per context token at "
             "bf16, indexer keys included); ASSUMPTION: engines store the entries at the KV "
             "dtype, replicated per TP rank"]
    if str(text.get("expert_dtype", "")).lower() == "fp4":
        notes.append("expert_dtype fp4: the checkpoint's routed experts are MXFP4 (vLLM "
                     "DeepseekV4FP8Config), priced here as the quantization_config says (FP8 "
                     "block): routed-expert weights are overestimated ~1.9x")
    return replace(s, notes=(*s.notes, *notes))


def compressed_kv_bytes_per_token(spec: ModelSpec, elem_bytes: int) -> int:
    """Bytes per context token of the compressed caches, all layers (rounded down).

    CSA layer: head_dim / csa_rate (compressed K=V) + index_head_dim / csa_rate (indexer keys);
    HCA layer: head_dim / hca_rate; times ``elem_bytes``. SOURCE: transformers 5.25.0
    DeepseekV4CSACache / DeepseekV4HCACache (one entry per ``compress_rate`` tokens).
    """
    types = spec.param("layer_types", ())
    csa = _int_param(spec, "compress_rate_csa", 4)
    hca = _int_param(spec, "compress_rate_hca", 128)
    ihd = _int_param(spec, "index_head_dim", 128)
    total = 0.0
    for layer, t in zip(spec.layers, types if isinstance(types, tuple) else (), strict=False):
        d = layer.attention.head_dim
        if t == CSA:
            total += (d + ihd) / csa
        elif t == HCA:
            total += d / hca
    return int(total * elem_bytes)


def _int_param(spec: ModelSpec, key: str, default: int) -> int:
    v = spec.param(key, default)
    return int(v) if isinstance(v, int) else default


def _layer(spec: ModelSpec, lp: str, i: int | None, layer: LayerSpec, ltype: str, hashed: bool,
           role: inv.Role | None = None) -> list[TensorGroup]:
    h, a, m = spec.hidden_size, layer.attention, layer.mlp
    hcm = _int_param(spec, "hc_mult", 4)
    groups, o_rank = _int_param(spec, "o_groups", 8), _int_param(spec, "o_lora_rank", 1024)
    ihd, ihn = _int_param(spec, "index_head_dim", 128), _int_param(spec, "index_n_heads", 64)
    q_lora = a.q_lora_rank or 0
    d, nh = a.head_dim, a.num_heads
    ar: inv.Role = role or "attention"
    nr: inv.Role = role or "norm"
    out: list[TensorGroup] = [inv._vec(f"{lp}.attn_norm.weight", h, nr, i),
                              inv._vec(f"{lp}.ffn_norm.weight", h, nr, i)]
    for site in ("attn", "ffn"):
        out += [TensorGroup(f"{lp}.hc_{site}_fn", ((2 + hcm) * hcm, hcm * h), nr, i),
                inv._vec(f"{lp}.hc_{site}_base", (2 + hcm) * hcm, nr, i),
                inv._vec(f"{lp}.hc_{site}_scale", 3, nr, i)]
    p = f"{lp}.attn"
    out += [inv._lin(f"{p}.wq_a.weight", q_lora, h, ar, i, "replicated"),
            inv._vec(f"{p}.q_norm.weight", q_lora, nr, i),
            inv._lin(f"{p}.wq_b.weight", nh * d, q_lora, ar, i, "column"),
            inv._lin(f"{p}.wkv.weight", d, h, ar, i, "replicated"),
            inv._vec(f"{p}.kv_norm.weight", d, nr, i),
            inv._lin(f"{p}.wo_a.weight", groups * o_rank, nh * d // groups, ar, i, "column"),
            inv._lin(f"{p}.wo_b.weight", h, groups * o_rank, ar, i, "row"),
            inv._vec(f"{p}.attn_sink", nh, ar, i, "column")]
    if ltype in (CSA, HCA):
        rate = _int_param(spec, "compress_rate_csa" if ltype == CSA else "compress_rate_hca",
                          4 if ltype == CSA else 128)
        width = 2 * d if ltype == CSA else d
        c = f"{p}.compressor"
        out += [inv._lin(f"{c}.wkv.weight", width, h, ar, i, "replicated"),
                inv._lin(f"{c}.wgate.weight", width, h, ar, i, "replicated"),
                TensorGroup(f"{c}.ape", (rate, width), ar, i),
                inv._vec(f"{c}.norm.weight", d, nr, i)]
        if ltype == CSA:
            x = f"{p}.indexer"
            out += [inv._lin(f"{x}.wq_b.weight", ihn * ihd, q_lora, ar, i, "replicated"),
                    TensorGroup(f"{x}.weights_proj.weight", (ihn, h), ar, i),
                    inv._lin(f"{x}.compressor.wkv.weight", 2 * ihd, h, ar, i, "replicated"),
                    inv._lin(f"{x}.compressor.wgate.weight", 2 * ihd, h, ar, i, "replicated"),
                    TensorGroup(f"{x}.compressor.ape", (rate, 2 * ihd), ar, i),
                    inv._vec(f"{x}.compressor.norm.weight", ihd, nr, i)]
    f = f"{lp}.ffn"
    e, ei = m.num_experts, m.expert_intermediate_size
    out.append(inv._lin(f"{f}.gate.weight", e, h, role or "router", i, "replicated"))
    if hashed:
        out.append(TensorGroup(f"{f}.gate.tid2eid", (spec.vocab_size, m.top_k), role or "router",
                               i, buffer=True))
    else:
        out.append(inv._vec(f"{f}.gate.bias", e, role or "router", i, buffer=True))
    exp = inv._experts(f, i if i is not None else -1,
                       e, (("w1", (ei, h), "expert_column"), ("w3", (ei, h), "expert_column"),
                           ("w2", (h, ei), "expert_row")))
    if role is not None or i is None:
        exp = [replace(t, role=role or t.role, layer=i) for t in exp]
    out += exp
    if m.shared_intermediate_size:
        out += inv._gated_mlp(f"{f}.shared_experts", h, m.shared_intermediate_size,
                              role or "shared_expert", i, names=("w1", "w3", "w2"))
    return out


def _hc_head(prefix: str, h: int, hcm: int, role: inv.Role) -> list[TensorGroup]:
    return [TensorGroup(f"{prefix}hc_head_fn", (hcm, hcm * h), role, None),
            inv._vec(f"{prefix}hc_head_base", hcm, role, None),
            inv._vec(f"{prefix}hc_head_scale", 1, role, None)]


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    h, v = spec.hidden_size, spec.vocab_size
    hcm = _int_param(spec, "hc_mult", 4)
    types = spec.param("layer_types", ())
    types_t = types if isinstance(types, tuple) else ()
    hashed_raw = spec.param("hash_layers", ())
    hashed = set(hashed_raw) if isinstance(hashed_raw, tuple) else set()
    out: list[TensorGroup] = [TensorGroup("embed.weight", (v, h), "embedding", None, "vocab")]
    for layer in spec.layers:
        ltype = str(types_t[layer.index]) if layer.index < len(types_t) else SLIDING
        out += _layer(spec, f"layers.{layer.index}", layer.index, layer, ltype,
                      layer.index in hashed)
    out.append(inv._vec("norm.weight", h, "norm", None))
    out += _hc_head("", h, hcm, "norm")
    if not spec.tie_word_embeddings:
        out.append(TensorGroup("head.weight", (v, h), "lm_head", None, "vocab", linear=True))
    mtp: list[TensorGroup] = []
    if spec.layers:
        # DeepSeek-V4 MTP block (checkpoint ``mtp.{k}``; DeepSeek's inference/model.py MTPBlock,
        # as quoted in public ports): e_proj / h_proj [H, H], enorm / hnorm / norm, its own
        # hc_head, one full decoder block of the layer type after the last
        # (compress_ratios[num_hidden_layers]: sliding, no compressor or indexer) with a
        # learned-routing MoE (gate.bias); embedding and head shared with the main model.
        last = spec.layers[-1]
        mtype = str(spec.param("mtp_layer_type", SLIDING))
        for k in range(spec.mtp_layers):
            mp = f"mtp.{k}"
            mtp += _layer(spec, mp, None, replace(last, mlp=replace(last.mlp,
                                                                    score_correction_bias=True)),
                          mtype, False, role="mtp")
            mtp += [inv._lin(f"{mp}.e_proj.weight", h, h, "mtp", None, "replicated"),
                    inv._lin(f"{mp}.h_proj.weight", h, h, "mtp", None, "replicated"),
                    inv._vec(f"{mp}.enorm.weight", h, "mtp", None),
                    inv._vec(f"{mp}.hnorm.weight", h, "mtp", None),
                    inv._vec(f"{mp}.norm.weight", h, "mtp", None)]
            mtp += _hc_head(f"{mp}.", h, hcm, "mtp")
    return out, mtp
