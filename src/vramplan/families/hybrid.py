"""Mamba / SSM hybrid families: Nemotron-H (Mamba-2), Jamba (Mamba-1), granite-4.0-h (Mamba-2),
Falcon-H1 (attention and Mamba-2 side by side in every layer), LFM2 (short convolution).

Every layer has one token mixer (``AttentionSpec``: ``full`` attention, ``linear`` with a
``MambaSpec`` for a Mamba/short-conv mixer, or ``none``) and one feed-forward block (``MlpSpec``:
dense, moe or none). Falcon-H1 is the exception: its layers keep a ``full`` attention spec that
also carries the ``MambaSpec`` of the parallel Mamba-2 branch (``vramplan.kv`` counts the state
of any layer with ``attention.mamba``).

Sources (transformers 5.25.0, ``transformers/models/<type>/``):

* ``nemotron_h/configuration_nemotron_h.py`` (``hybrid_override_pattern`` M/*/-/E ->
  ``layers_block_type``), ``modeling_nemotron_h.py`` (NemotronHBlock: one ``norm`` + one
  ``mixer``; NemotronHMamba2Mixer, NemotronHAttention, NemotronHMLP (up/down, relu2),
  NemotronHMoE (non-gated experts, TopkRouter with ``e_score_correction_bias`` buffer,
  ``shared_experts``, optional ``fc1/fc2_latent_proj``)); checkpoint naming ``backbone.*`` and
  per-expert ``mixer.experts.{e}.up_proj.weight`` (conversion_mapping.py "nemotron_h").
* ``jamba/configuration_jamba.py`` (attention where ``i % attn_layer_period ==
  attn_layer_offset``, experts where ``i % expert_layer_period == expert_layer_offset``,
  ``mamba_dt_rank`` "auto" = ceil(hidden/16)), ``modeling_jamba.py`` (JambaMambaMixer,
  JambaMLP, JambaSparseMoeBlock with ``router``); checkpoint experts per expert
  ``feed_forward.experts.{e}.{gate,up,down}_proj.weight`` (conversion_mapping.py "jamba").
* ``granitemoehybrid/configuration_granitemoehybrid.py`` (``layer_types`` mamba/attention,
  ``mamba_d_head`` "auto" = expand x hidden / heads), ``modeling_granitemoehybrid.py`` (every
  layer: mixer + ``block_sparse_moe`` (router + stacked experts) + ``shared_mlp``, or the
  shared MLP alone when ``num_local_experts`` is 0); checkpoint naming
  ``block_sparse_moe.input_linear`` / ``output_linear`` / ``router.layer`` (conversion_mapping.py
  "granitemoe").
* ``falcon_h1/configuration_falcon_h1.py`` / ``modeling_falcon_h1.py`` (FalconH1DecoderLayer:
  ``self_attn`` and ``mamba`` side by side, ``feed_forward``, ``input_layernorm``,
  ``pre_ff_layernorm``; FalconH1Mixer sized by ``mamba_d_ssm``; gated norm only with
  ``mamba_rms_norm``; ``mup_vector`` is a non-persistent buffer).
* ``lfm2/configuration_lfm2.py`` / ``modeling_lfm2.py`` (``layer_types`` conv/full_attention or
  ``full_attn_idxs``; Lfm2ShortConv: in_proj 3H, depthwise conv over H with ``conv_L_cache``
  taps, out_proj; Lfm2MLP w1/w3/w2 with the auto-adjusted width; final ``embedding_norm``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from vramplan.errors import ConfigError
from vramplan.families._dense import decoder_tensors
from vramplan.inventory import Role, TensorGroup, _experts, _lin, _vec
from vramplan.model import hf_config as hf
from vramplan.model.spec import AttentionSpec, LayerSpec, MambaSpec, MlpSpec, ModelSpec

MODEL_TYPES = ("nemotron_h", "jamba", "granitemoehybrid", "falcon_h1", "lfm2")
ARCHITECTURES = ("NemotronHForCausalLM", "JambaForCausalLM", "GraniteMoeHybridForCausalLM",
                 "FalconH1ForCausalLM", "Lfm2ForCausalLM")
HANDLES: frozenset[str] = frozenset({"mamba", "moe", "pattern", "layer_types"})

_NO_MLP = MlpSpec(kind="none", intermediate_size=0)


def _attn(text: Mapping[str, Any], kind: str, mamba: MambaSpec | None = None) -> AttentionSpec:
    """The layer's mixer; head fields are the model's attention heads (0 widths never used)."""
    heads = hf.read_int(text, "num_attention_heads")
    kv = hf.read_int(text, "num_key_value_heads", heads)
    if text.get("head_dim") is not None:
        hd = hf.read_int(text, "head_dim")
    else:
        hd = hf.read_int(text, "hidden_size") // heads
    if kind == "full":
        return AttentionSpec(kind="full", num_heads=heads, num_kv_heads=kv, head_dim=hd,
                             v_head_dim=hd, mamba=mamba)
    if kind == "linear":
        return AttentionSpec(kind="linear", num_heads=heads, num_kv_heads=kv, head_dim=hd,
                             v_head_dim=hd, mamba=mamba)
    return AttentionSpec(kind="none", num_heads=heads, num_kv_heads=kv, head_dim=hd,
                         v_head_dim=hd)


# ------------------------------------------------------------------------------ Nemotron-H

_NEMOTRON_CODES = {"M": "mamba", "*": "attention", "-": "mlp", "E": "moe"}
_NEMOTRON_TYPES = {"linear_attention": "mamba", "mamba": "mamba", "full_attention": "attention",
                   "attention": "attention", "mlp": "mlp", "moe": "moe"}


def nemotron_pattern(text: Mapping[str, Any]) -> list[str]:
    """Per-layer block type: ``layers_block_type`` (5.x name) or ``hybrid_override_pattern``
    (M = Mamba-2, * = attention, - = MLP, E = MoE), as NemotronHConfig.__post_init__ reads them."""
    lbt = text.get("layers_block_type") or text.get("layer_types")
    if isinstance(lbt, list) and lbt:
        out = [_NEMOTRON_TYPES.get(str(t), "") for t in lbt]
        if "" in out:
            raise ConfigError("config.json layers_block_type", f"unknown block type in {lbt!r}",
                              "use mamba, attention, mlp or moe")
        return out
    pat = text.get("hybrid_override_pattern")
    if not isinstance(pat, str) or not pat:
        raise ConfigError("config.json hybrid_override_pattern", "is missing",
                          "add hybrid_override_pattern (e.g. \"M-M*-\") to config.json")
    bad = sorted(set(pat) - set(_NEMOTRON_CODES))
    if bad:
        raise ConfigError("config.json hybrid_override_pattern",
                          f"has unknown layer codes {''.join(bad)!r}",
                          "use M (Mamba-2), * (attention), - (MLP), E (MoE)")
    return [_NEMOTRON_CODES[c] for c in pat]


def _nemotron_mamba(text: Mapping[str, Any]) -> MambaSpec:
    heads = hf.read_int(text, "mamba_num_heads", 128)
    head_dim = hf.read_int(text, "mamba_head_dim", 64)
    groups = hf.read_int(text, "n_groups", text.get("mamba_n_groups", 8))
    if heads % groups:
        raise ConfigError("config.json n_groups", f"{groups} does not divide mamba_num_heads "
                          f"{heads}", "fix n_groups in config.json")
    return MambaSpec(kind="mamba2", d_inner=heads * head_dim,
                     d_state=hf.read_int(text, "ssm_state_size", 128),
                     conv_kernel=hf.read_int(text, "conv_kernel", text.get("mamba_d_conv", 4)),
                     num_heads=heads, head_dim=head_dim, n_groups=groups,
                     conv_bias=bool(text.get("use_conv_bias", text.get("mamba_conv_bias", True))),
                     proj_bias=bool(text.get("use_bias", False)))


def _nemotron_spec(cfg: Mapping[str, Any], model_id: str,
                   extra_quant: Mapping[str, Any] | None) -> ModelSpec:
    text = hf.text_config(cfg)
    kinds = nemotron_pattern(text)
    n = len(kinds)
    notes: list[str] = []
    declared = text.get("num_hidden_layers")
    if declared is not None and declared != n:
        notes.append(f"num_hidden_layers {declared} differs from the {n} layers of the block "
                     "pattern; the pattern counts (NemotronHConfig)")
    mamba = _nemotron_mamba(text) if "mamba" in kinds else None

    def layer(t: Mapping[str, Any], i: int) -> LayerSpec:
        k = kinds[i]
        if k == "mamba":
            return LayerSpec(i, _attn(t, "linear", mamba), _NO_MLP)
        if k == "attention":
            return LayerSpec(i, _attn(t, "full"), _NO_MLP)
        if k == "mlp":
            return LayerSpec(i, _attn(t, "none"), MlpSpec(
                kind="dense", intermediate_size=hf.read_int(t, "intermediate_size", 21504)))
        e = hf.read_int(t, "n_routed_experts", t.get("num_local_experts", 8))
        top_k = hf.read_int(t, "num_experts_per_tok", 2)
        if top_k > e:
            raise ConfigError("config.json num_experts_per_tok", f"{top_k} is more than the "
                              f"{e} experts", "fix it in config.json")
        shared = hf.read_int0(t, "moe_shared_expert_intermediate_size", 7688) \
            if hf.read_int0(t, "n_shared_experts", 1) else 0
        return LayerSpec(i, _attn(t, "none"), MlpSpec(
            kind="moe", intermediate_size=0, num_experts=e, top_k=top_k,
            expert_intermediate_size=hf.read_int(t, "moe_intermediate_size", 7688),
            shared_intermediate_size=shared, score_correction_bias=True))

    fixed = dict(text)
    fixed["num_hidden_layers"] = n
    fixed.setdefault("num_key_value_heads", 8)
    fixed.setdefault("max_position_embeddings", 4096)
    spec = hf.generic_spec(fixed, model_id, extra_quant, model_type="nemotron_h",
                           family="nemotron_h", layer_fn=layer, notes=notes)
    mtp = hf.read_int0(text, "num_nextn_predict_layers", 0)
    if mtp:
        notes.append(f"{mtp} MTP layers (mtp.*) are not enumerated; plain decoding does not "
                     "load them")
    ssm_dtype = str(text.get("mamba_ssm_cache_dtype") or "float32")
    params: dict[str, object] = {"mamba_ssm_cache_dtype": ssm_dtype}
    latent = text.get("moe_latent_size")
    if latent:
        params["moe_latent_size"] = hf.read_int(text, "moe_latent_size")
    if text.get("tie_word_embeddings"):
        # NemotronHForCausalLM._tied_weights_keys = {} (transformers 5.25.0): lm_head is its
        # own tensor whatever the flag says
        notes.append("tie_word_embeddings true: NemotronHForCausalLM never ties lm_head "
                     "(transformers 5.25.0 _tied_weights_keys = {}); counted untied")
    return replace(spec, prefix="backbone", notes=tuple(notes) + spec.notes,
                   family_params=tuple(sorted(params.items())), tie_word_embeddings=False)


def _nemotron_layer(spec: ModelSpec, lp: str, layer: LayerSpec) -> list[TensorGroup]:
    h, i, a, m = spec.hidden_size, layer.index, layer.attention, layer.mlp
    latent = int(str(spec.param("moe_latent_size", 0) or 0))
    out = [_vec(f"{lp}.norm.weight", h, "norm", i)]
    x = f"{lp}.mixer"
    if a.mamba is not None:
        out += _mamba2(x, i, h, a.mamba, norm=True)
    elif a.kind == "full":
        out += _qkvo(x, i, h, a)
    elif m.kind == "dense":
        out += [_lin(f"{x}.up_proj.weight", m.intermediate_size, h, "mlp", i, "column"),
                _lin(f"{x}.down_proj.weight", h, m.intermediate_size, "mlp", i, "row")]
        if spec.mlp_bias:
            out += [_vec(f"{x}.up_proj.bias", m.intermediate_size, "mlp", i, "column"),
                    _vec(f"{x}.down_proj.bias", h, "mlp", i)]
    elif m.kind == "moe":
        d_in = latent or h
        out.append(_lin(f"{x}.gate.weight", m.num_experts, h, "router", i, "replicated"))
        out.append(_vec(f"{x}.gate.e_score_correction_bias", m.num_experts, "router", i,
                        buffer=True))
        out += _experts(x, i, m.num_experts,
                        (("up_proj", (m.expert_intermediate_size, d_in), "expert_column"),
                         ("down_proj", (d_in, m.expert_intermediate_size), "expert_row")))
        if m.shared_intermediate_size:
            s = m.shared_intermediate_size
            out += [_lin(f"{x}.shared_experts.up_proj.weight", s, h, "shared_expert", i,
                         "column"),
                    _lin(f"{x}.shared_experts.down_proj.weight", h, s, "shared_expert", i,
                         "row")]
            if spec.mlp_bias:
                out += [_vec(f"{x}.shared_experts.up_proj.bias", s, "shared_expert", i,
                             "column"),
                        _vec(f"{x}.shared_experts.down_proj.bias", h, "shared_expert", i)]
        if latent:
            out += [_lin(f"{x}.fc1_latent_proj.weight", latent, h, "mlp", i, "replicated"),
                    _lin(f"{x}.fc2_latent_proj.weight", h, latent, "mlp", i, "replicated")]
            if spec.mlp_bias:
                out += [_vec(f"{x}.fc1_latent_proj.bias", latent, "mlp", i),
                        _vec(f"{x}.fc2_latent_proj.bias", h, "mlp", i)]
    return out


def _nemotron_tensors(spec: ModelSpec) -> list[TensorGroup]:
    return decoder_tensors(spec, _nemotron_layer, embed_name="embeddings", final_norm="norm_f")


def _qkvo(x: str, i: int, h: int, a: AttentionSpec, bias: bool = False,
          out_bias: bool = False) -> list[TensorGroup]:
    qd, kvd = a.num_heads * a.head_dim, a.num_kv_heads * a.head_dim
    out = [_lin(f"{x}.q_proj.weight", qd, h, "attention", i, "column"),
           _lin(f"{x}.k_proj.weight", kvd, h, "attention", i, "kv"),
           _lin(f"{x}.v_proj.weight", kvd, h, "attention", i, "kv"),
           _lin(f"{x}.o_proj.weight", h, a.num_heads * a.v_head_dim, "attention", i, "row")]
    if bias:
        out += [_vec(f"{x}.q_proj.bias", qd, "attention", i, "column"),
                _vec(f"{x}.k_proj.bias", kvd, "attention", i, "kv"),
                _vec(f"{x}.v_proj.bias", kvd, "attention", i, "kv")]
    if out_bias:
        out.append(_vec(f"{x}.o_proj.bias", h, "attention", i))
    return out


def _mamba2(x: str, i: int, h: int, mb: MambaSpec, *, norm: bool) -> list[TensorGroup]:
    """Mamba-2 mixer: in_proj -> [z (d_inner), xBC (conv_dim), dt (heads)], depthwise conv1d
    over conv_dim = d_inner + 2 * n_groups * d_state, dt_bias / A_log / D per head, gated
    RMSNorm over d_inner, out_proj (transformers NemotronHMamba2Mixer, Mamba2Mixer)."""
    conv_dim = mb.d_inner + 2 * mb.n_groups * mb.d_state
    proj = mb.d_inner + conv_dim + mb.num_heads
    out = [_lin(f"{x}.in_proj.weight", proj, h, "attention", i, "column"),
           TensorGroup(f"{x}.conv1d.weight", (conv_dim, 1, mb.conv_kernel), "attention", i,
                       "column")]
    if mb.proj_bias:
        out.append(_vec(f"{x}.in_proj.bias", proj, "attention", i, "column"))
    if mb.conv_bias:
        out.append(_vec(f"{x}.conv1d.bias", conv_dim, "attention", i, "column"))
    out += [_vec(f"{x}.dt_bias", mb.num_heads, "attention", i, "column"),
            _vec(f"{x}.A_log", mb.num_heads, "attention", i, "column"),
            _vec(f"{x}.D", mb.num_heads, "attention", i, "column")]
    if norm:
        out.append(_vec(f"{x}.norm.weight", mb.d_inner, "norm", i, "column"))
    out.append(_lin(f"{x}.out_proj.weight", h, mb.d_inner, "attention", i, "row"))
    if mb.proj_bias:
        out.append(_vec(f"{x}.out_proj.bias", h, "attention", i))
    return out


# ------------------------------------------------------------------------------ Jamba

def jamba_dt_rank(text: Mapping[str, Any]) -> int:
    """``mamba_dt_rank``: "auto" (the class default) is ceil(hidden_size / 16) (JambaConfig)."""
    raw = text.get("mamba_dt_rank", "auto")
    if raw == "auto" or raw is None:
        return math.ceil(hf.read_int(text, "hidden_size") / 16)
    return hf.read_int(text, "mamba_dt_rank")


def _jamba_spec(cfg: Mapping[str, Any], model_id: str,
                extra_quant: Mapping[str, Any] | None) -> ModelSpec:
    text = hf.text_config(cfg)
    hidden = hf.read_int(text, "hidden_size")
    a_per = hf.read_int(text, "attn_layer_period", 8)
    a_off = hf.read_int0(text, "attn_layer_offset", 4)
    e_per = hf.read_int(text, "expert_layer_period", 2)
    e_off = hf.read_int0(text, "expert_layer_offset", 1)
    if a_off >= a_per or e_off >= e_per:
        raise ConfigError("config.json attn_layer_offset/expert_layer_offset",
                          "must be smaller than its period", "fix the offsets in config.json")
    mamba = MambaSpec(kind="mamba1", d_inner=hf.read_int(text, "mamba_expand", 2) * hidden,
                      d_state=hf.read_int(text, "mamba_d_state", 16),
                      conv_kernel=hf.read_int(text, "mamba_d_conv", 4),
                      dt_rank=jamba_dt_rank(text),
                      conv_bias=bool(text.get("mamba_conv_bias", True)),
                      proj_bias=bool(text.get("mamba_proj_bias", False)))
    n_exp = hf.read_int0(text, "num_experts", 16)

    def layer(t: Mapping[str, Any], i: int) -> LayerSpec:
        attn = _attn(t, "full") if i % a_per == a_off else _attn(t, "linear", mamba)
        inter = hf.read_int(t, "intermediate_size", 14336)
        if n_exp > 1 and i % e_per == e_off:
            top_k = hf.read_int(t, "num_experts_per_tok", 2)
            if top_k > n_exp:
                raise ConfigError("config.json num_experts_per_tok", f"{top_k} is more than "
                                  f"the {n_exp} experts", "fix it in config.json")
            mlp = MlpSpec(kind="moe", intermediate_size=inter, num_experts=n_exp, top_k=top_k,
                          expert_intermediate_size=inter)
        else:
            mlp = MlpSpec(kind="dense", intermediate_size=inter)
        return LayerSpec(i, attn, mlp)

    fixed = dict(text)
    fixed.setdefault("num_hidden_layers", 32)
    fixed.setdefault("num_key_value_heads", 8)
    fixed.setdefault("max_position_embeddings", 262144)
    return hf.generic_spec(fixed, model_id, extra_quant, model_type="jamba", family="jamba",
                           layer_fn=layer)


def _mamba1(x: str, i: int, h: int, mb: MambaSpec, *, inner_norms: bool) -> list[TensorGroup]:
    """Mamba-1 mixer: in_proj -> [x, z] (2 d_inner), depthwise conv1d over d_inner, x_proj ->
    [dt (dt_rank), B, C (d_state each)], dt_proj, A_log [d_inner, d_state], D, out_proj; Jamba
    adds RMSNorms on dt, B and C (transformers JambaMambaMixer)."""
    d, r, n = mb.d_inner, mb.dt_rank, mb.d_state
    out = [_lin(f"{x}.in_proj.weight", 2 * d, h, "attention", i, "column")]
    if mb.proj_bias:
        out.append(_vec(f"{x}.in_proj.bias", 2 * d, "attention", i, "column"))
    out.append(TensorGroup(f"{x}.conv1d.weight", (d, 1, mb.conv_kernel), "attention", i,
                           "column"))
    if mb.conv_bias:
        out.append(_vec(f"{x}.conv1d.bias", d, "attention", i, "column"))
    out += [_lin(f"{x}.x_proj.weight", r + 2 * n, d, "attention", i, "row"),
            _lin(f"{x}.dt_proj.weight", d, r, "attention", i, "column"),
            _vec(f"{x}.dt_proj.bias", d, "attention", i, "column"),
            TensorGroup(f"{x}.A_log", (d, n), "attention", i, "column"),
            _vec(f"{x}.D", d, "attention", i, "column"),
            _lin(f"{x}.out_proj.weight", h, d, "attention", i, "row")]
    if mb.proj_bias:
        out.append(_vec(f"{x}.out_proj.bias", h, "attention", i))
    if inner_norms:
        out += [_vec(f"{x}.dt_layernorm.weight", r, "norm", i),
                _vec(f"{x}.b_layernorm.weight", n, "norm", i),
                _vec(f"{x}.c_layernorm.weight", n, "norm", i)]
    return out


def _jamba_layer(spec: ModelSpec, lp: str, layer: LayerSpec) -> list[TensorGroup]:
    h, i, a, m = spec.hidden_size, layer.index, layer.attention, layer.mlp
    out: list[TensorGroup] = []
    if a.mamba is not None:
        out += _mamba1(f"{lp}.mamba", i, h, a.mamba, inner_norms=True)
    else:
        out += _qkvo(f"{lp}.self_attn", i, h, a)
    out += [_vec(f"{lp}.input_layernorm.weight", h, "norm", i),
            _vec(f"{lp}.pre_ff_layernorm.weight", h, "norm", i)]
    fp = f"{lp}.feed_forward"
    if m.kind == "moe":
        e, inter = m.num_experts, m.expert_intermediate_size
        out.append(_lin(f"{fp}.router.weight", e, h, "router", i, "replicated"))
        out += _experts(fp, i, e, (("gate_proj", (inter, h), "expert_column"),
                                   ("up_proj", (inter, h), "expert_column"),
                                   ("down_proj", (h, inter), "expert_row")))
    else:
        inter = m.intermediate_size
        out += [_lin(f"{fp}.gate_proj.weight", inter, h, "mlp", i, "column"),
                _lin(f"{fp}.up_proj.weight", inter, h, "mlp", i, "column"),
                _lin(f"{fp}.down_proj.weight", h, inter, "mlp", i, "row")]
    return out


def _jamba_tensors(spec: ModelSpec) -> list[TensorGroup]:
    return decoder_tensors(spec, _jamba_layer, final_norm="final_layernorm")


# ------------------------------------------------------------------------------ granite-4.0-h

_GRANITE_TYPES = {"mamba": "mamba", "linear_attention": "mamba", "attention": "attention",
                  "full_attention": "attention"}


def _mamba2_from(text: Mapping[str, Any], d_inner: int, heads_key: str = "mamba_n_heads",
                 default_heads: int = 128) -> MambaSpec:
    """A Mamba-2 mixer from the ``mamba_*`` keys (GraniteMoeHybrid / FalconH1 naming):
    ``mamba_d_head`` "auto" = d_inner / heads, as their config classes resolve it."""
    heads = hf.read_int(text, heads_key, default_heads)
    raw_hd = text.get("mamba_d_head", "auto")
    if raw_hd in ("auto", None):
        if d_inner % heads:
            raise ConfigError("config.json mamba_n_heads", f"{heads} does not divide the Mamba "
                              f"width {d_inner}", "fix mamba_n_heads in config.json")
        head_dim = d_inner // heads
    else:
        head_dim = hf.read_int(text, "mamba_d_head")
    if head_dim * heads != d_inner:
        raise ConfigError("config.json mamba_d_head", f"{head_dim} x {heads} heads != Mamba "
                          f"width {d_inner}", "fix mamba_d_head / mamba_n_heads in config.json")
    return MambaSpec(kind="mamba2", d_inner=d_inner,
                     d_state=hf.read_int(text, "mamba_d_state", 256),
                     conv_kernel=hf.read_int(text, "mamba_d_conv", 4), num_heads=heads,
                     head_dim=head_dim, n_groups=hf.read_int(text, "mamba_n_groups", 1),
                     conv_bias=bool(text.get("mamba_conv_bias", True)),
                     proj_bias=bool(text.get("mamba_proj_bias", False)))


def _granite_spec(cfg: Mapping[str, Any], model_id: str,
                  extra_quant: Mapping[str, Any] | None) -> ModelSpec:
    text = hf.text_config(cfg)
    hidden = hf.read_int(text, "hidden_size")
    n = hf.read_int(text, "num_hidden_layers", 32)
    raw = text.get("layer_types") or text.get("layers_block_type") or ["mamba"] * n
    if not isinstance(raw, list) or len(raw) != n or any(str(t) not in _GRANITE_TYPES
                                                          for t in raw):
        raise ConfigError("config.json layer_types", f"must list mamba/attention for each of "
                          f"the {n} layers", "fix layer_types in config.json")
    kinds = [_GRANITE_TYPES[str(t)] for t in raw]
    mamba = _mamba2_from(text, hf.read_int(text, "mamba_expand", 2) * hidden) \
        if "mamba" in kinds else None
    e = hf.read_int0(text, "num_local_experts", 8)
    shared = hf.read_int(text, "shared_intermediate_size", 1024)

    def layer(t: Mapping[str, Any], i: int) -> LayerSpec:
        attn = _attn(t, "linear", mamba) if kinds[i] == "mamba" else _attn(t, "full")
        if e > 0:
            top_k = hf.read_int(t, "num_experts_per_tok", 2)
            if top_k > e:
                raise ConfigError("config.json num_experts_per_tok", f"{top_k} is more than "
                                  f"the {e} experts", "fix it in config.json")
            mlp = MlpSpec(kind="moe", intermediate_size=0, num_experts=e, top_k=top_k,
                          expert_intermediate_size=hf.read_int(t, "intermediate_size", 11008),
                          shared_intermediate_size=shared)
        else:
            mlp = MlpSpec(kind="dense", intermediate_size=shared)
        return LayerSpec(i, attn, mlp)

    fixed = dict(text)
    fixed.setdefault("max_position_embeddings", 2048)
    return hf.generic_spec(fixed, model_id, extra_quant, model_type="granitemoehybrid",
                           family="granitemoehybrid", layer_fn=layer)


def _granite_layer(spec: ModelSpec, lp: str, layer: LayerSpec) -> list[TensorGroup]:
    h, i, a, m = spec.hidden_size, layer.index, layer.attention, layer.mlp
    out: list[TensorGroup] = []
    if a.mamba is not None:
        out += _mamba2(f"{lp}.mamba", i, h, a.mamba, norm=True)
    else:
        out += _qkvo(f"{lp}.self_attn", i, h, a, bias=spec.attention_bias,
                     out_bias=spec.attention_bias)
    out += [_vec(f"{lp}.input_layernorm.weight", h, "norm", i),
            _vec(f"{lp}.post_attention_layernorm.weight", h, "norm", i)]
    s = m.shared_intermediate_size if m.kind == "moe" else m.intermediate_size
    if m.kind == "moe":
        e, inter = m.num_experts, m.expert_intermediate_size
        bp = f"{lp}.block_sparse_moe"
        out.append(_lin(f"{bp}.router.layer.weight", e, h, "router", i, "replicated"))
        out.append(TensorGroup(f"{bp}.input_linear.weight", (e, 2 * inter, h),
                               "routed_expert", i, "expert_column", linear=True,
                               stacked_experts=e))
        out.append(TensorGroup(f"{bp}.output_linear.weight", (e, h, inter),
                               "routed_expert", i, "expert_row", linear=True,
                               stacked_experts=e))
    role: Role = "shared_expert" if m.kind == "moe" else "mlp"
    out += [_lin(f"{lp}.shared_mlp.input_linear.weight", 2 * s, h, role, i, "column"),
            _lin(f"{lp}.shared_mlp.output_linear.weight", h, s, role, i, "row")]
    return out


def _granite_tensors(spec: ModelSpec) -> list[TensorGroup]:
    return decoder_tensors(spec, _granite_layer)


# ------------------------------------------------------------------------------ Falcon-H1

def _falcon_spec(cfg: Mapping[str, Any], model_id: str,
                 extra_quant: Mapping[str, Any] | None) -> ModelSpec:
    text = hf.text_config(cfg)
    hidden = hf.read_int(text, "hidden_size")
    d_ssm = text.get("mamba_d_ssm", 1024)
    d_inner = hf.read_int(text, "mamba_d_ssm") if d_ssm is not None else \
        hf.read_int(text, "mamba_expand", 2) * hidden
    mamba = _mamba2_from(text, d_inner)

    def layer(t: Mapping[str, Any], i: int) -> LayerSpec:
        return LayerSpec(i, _attn(t, "full", mamba),
                         MlpSpec(kind="dense",
                                 intermediate_size=hf.read_int(t, "intermediate_size", 14336)))

    fixed = dict(text)
    fixed.setdefault("num_key_value_heads", 8)
    fixed.setdefault("max_position_embeddings", 8192)
    spec = hf.generic_spec(fixed, model_id, extra_quant, model_type="falcon_h1",
                           family="falcon_h1", layer_fn=layer)
    params = {"mamba_rms_norm": bool(text.get("mamba_rms_norm", False)),
              "projectors_bias": bool(text.get("projectors_bias", False))}
    return replace(spec, family_params=tuple(sorted(params.items())))


def _falcon_layer(spec: ModelSpec, lp: str, layer: LayerSpec) -> list[TensorGroup]:
    h, i, a, m = spec.hidden_size, layer.index, layer.attention, layer.mlp
    norm = bool(spec.param("mamba_rms_norm", False))
    proj_bias = bool(spec.param("projectors_bias", False))
    out: list[TensorGroup] = []
    out += _qkvo(f"{lp}.self_attn", i, h, a, bias=spec.attention_bias,
                 out_bias=spec.attention_bias)
    assert a.mamba is not None
    mixer = _mamba2(f"{lp}.mamba", i, h, replace(a.mamba, proj_bias=False), norm=norm)
    if a.mamba.proj_bias:
        mixer.append(_vec(f"{lp}.mamba.in_proj.bias", a.mamba.d_inner * 2 + 2 *
                          a.mamba.n_groups * a.mamba.d_state + a.mamba.num_heads,
                          "attention", i, "column"))
    if proj_bias:
        mixer.append(_vec(f"{lp}.mamba.out_proj.bias", h, "attention", i))
    out += mixer
    fp = f"{lp}.feed_forward"
    out += [_lin(f"{fp}.gate_proj.weight", m.intermediate_size, h, "mlp", i, "column"),
            _lin(f"{fp}.up_proj.weight", m.intermediate_size, h, "mlp", i, "column"),
            _lin(f"{fp}.down_proj.weight", h, m.intermediate_size, "mlp", i, "row")]
    if spec.mlp_bias:
        out += [_vec(f"{fp}.gate_proj.bias", m.intermediate_size, "mlp", i, "column"),
                _vec(f"{fp}.up_proj.bias", m.intermediate_size, "mlp", i, "column"),
                _vec(f"{fp}.down_proj.bias", h, "mlp", i)]
    out += [_vec(f"{lp}.input_layernorm.weight", h, "norm", i),
            _vec(f"{lp}.pre_ff_layernorm.weight", h, "norm", i)]
    return out


def _falcon_tensors(spec: ModelSpec) -> list[TensorGroup]:
    return decoder_tensors(spec, _falcon_layer, final_norm="final_layernorm")


# ------------------------------------------------------------------------------ LFM2

def lfm2_ff_width(text: Mapping[str, Any]) -> int:
    """Lfm2MLP width: with ``block_auto_adjust_ff_dim``, int(2/3 x ff), times
    ``block_ffn_dim_multiplier``, rounded up to ``block_multiple_of`` (modeling_lfm2.py)."""
    key = "block_ff_dim" if text.get("block_ff_dim") is not None else "intermediate_size"
    ff = hf.read_int(text, key, 12288)
    if text.get("block_auto_adjust_ff_dim", True):
        ff = int(2 * ff / 3)
        mult = text.get("block_ffn_dim_multiplier", 1.0)
        if mult is not None:
            of = hf.read_int(text, "block_multiple_of", 256)
            ff = int(float(mult) * ff)
            ff = of * ((ff + of - 1) // of)
    return ff


def _lfm2_spec(cfg: Mapping[str, Any], model_id: str,
               extra_quant: Mapping[str, Any] | None) -> ModelSpec:
    text = hf.text_config(cfg)
    hidden = hf.read_int(text, "hidden_size")
    n = hf.read_int(text, "num_hidden_layers", 32)
    lt = text.get("layer_types")
    if lt is None:
        idxs = hf.read_int_list(text, "full_attn_idxs") if text.get("full_attn_idxs") is not None \
            else list(range(n))
        lt = ["full_attention" if i in idxs else "conv" for i in range(n)]
    if not isinstance(lt, list) or len(lt) != n or any(t not in ("conv", "full_attention")
                                                        for t in lt):
        raise ConfigError("config.json layer_types", f"must list conv/full_attention for each "
                          f"of the {n} layers", "fix layer_types in config.json")
    conv = MambaSpec(kind="short_conv", d_inner=hidden, d_state=0,
                     conv_kernel=hf.read_int(text, "conv_L_cache", 3),
                     conv_bias=bool(text.get("conv_bias", False)),
                     proj_bias=bool(text.get("conv_bias", False)))
    ff = lfm2_ff_width(text)

    def layer(t: Mapping[str, Any], i: int) -> LayerSpec:
        attn = _attn(t, "full") if lt[i] == "full_attention" else _attn(t, "linear", conv)
        return LayerSpec(i, attn, MlpSpec(kind="dense", intermediate_size=ff))

    fixed = {k: v for k, v in text.items() if k != "layer_types"}
    fixed.setdefault("num_key_value_heads", 8)
    fixed.setdefault("max_position_embeddings", 128_000)
    if fixed.get("tie_word_embeddings") is None:
        fixed["tie_word_embeddings"] = bool(text.get("tie_embedding", True))
    return hf.generic_spec(fixed, model_id, extra_quant, model_type="lfm2", family="lfm2",
                           layer_fn=layer)


def _lfm2_layer(spec: ModelSpec, lp: str, layer: LayerSpec) -> list[TensorGroup]:
    h, i, a, m = spec.hidden_size, layer.index, layer.attention, layer.mlp
    out: list[TensorGroup] = []
    if a.mamba is not None:
        cp, bias = f"{lp}.conv", a.mamba.conv_bias
        out += [TensorGroup(f"{cp}.conv.weight", (h, 1, a.mamba.conv_kernel), "attention", i,
                            "column"),
                _lin(f"{cp}.in_proj.weight", 3 * h, h, "attention", i, "column"),
                _lin(f"{cp}.out_proj.weight", h, h, "attention", i, "row")]
        if bias:
            out += [_vec(f"{cp}.conv.bias", h, "attention", i, "column"),
                    _vec(f"{cp}.in_proj.bias", 3 * h, "attention", i, "column"),
                    _vec(f"{cp}.out_proj.bias", h, "attention", i)]
    else:
        sp = f"{lp}.self_attn"
        qkvo = _qkvo(sp, i, h, a)
        qkvo[-1] = _lin(f"{sp}.out_proj.weight", h, a.num_heads * a.v_head_dim, "attention",
                        i, "row")
        out += qkvo + [_vec(f"{sp}.q_layernorm.weight", a.head_dim, "norm", i),
                       _vec(f"{sp}.k_layernorm.weight", a.head_dim, "norm", i)]
    fp = f"{lp}.feed_forward"
    out += [_lin(f"{fp}.w1.weight", m.intermediate_size, h, "mlp", i, "column"),
            _lin(f"{fp}.w3.weight", m.intermediate_size, h, "mlp", i, "column"),
            _lin(f"{fp}.w2.weight", h, m.intermediate_size, "mlp", i, "row"),
            _vec(f"{lp}.operator_norm.weight", h, "norm", i),
            _vec(f"{lp}.ffn_norm.weight", h, "norm", i)]
    return out


def _lfm2_tensors(spec: ModelSpec) -> list[TensorGroup]:
    return decoder_tensors(spec, _lfm2_layer, final_norm="embedding_norm")


# ------------------------------------------------------------------------------ dispatch

def spec(cfg: Mapping[str, Any], model_id: str = "local",
         extra_quant: Mapping[str, Any] | None = None) -> ModelSpec:
    text = hf.text_config(cfg)
    mt = str(text.get("model_type", cfg.get("model_type", "")))
    builder = {"jamba": _jamba_spec, "granitemoehybrid": _granite_spec,
               "falcon_h1": _falcon_spec, "lfm2": _lfm2_spec}.get(mt, _nemotron_spec)
    return builder(cfg, model_id, extra_quant)


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    builder = {"jamba": _jamba_tensors, "granitemoehybrid": _granite_tensors,
               "falcon_h1": _falcon_tensors, "lfm2": _lfm2_tensors}.get(spec.family,
                                                                        _nemotron_tensors)
    return builder(spec), []
