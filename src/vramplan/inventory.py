"""ModelSpec -> TensorInventory: every weight tensor the engine loads, with its role.

Names follow the Hugging Face checkpoint (safetensors) naming, so an inventory can be checked
against a real header. Shapes are PyTorch ``[out_features, in_features]`` for linears.
Identical per-expert tensors are kept as one ``TensorGroup`` with ``count`` = number of experts
(``name`` then contains ``{e}``), so DeepSeek-V3's 44k expert tensors stay ~1k entries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from vramplan.model.spec import AttentionSpec, LayerSpec, MlpSpec, ModelSpec, VisionSpec

Role = Literal["embedding", "attention", "mlp", "routed_expert", "shared_expert", "router", "norm",
               "lm_head", "vision", "audio", "mtp"]
# How tensor parallel splits a tensor (vLLM's linear layer classes):
#   column: ColumnParallelLinear, out dim / tp       row: RowParallelLinear, in dim / tp
#   kv: the K/V part of QKVParallelLinear: replicated once tp > num_kv_heads
#   vocab: VocabParallelEmbedding / ParallelLMHead   replicated: norms, routers, MLA a-projections
#   expert_column / expert_row: FusedMoE w13 / w2 (split on intermediate under TP, by expert under EP)
Split = Literal["column", "row", "kv", "vocab", "replicated", "expert_column", "expert_row"]

ROLES: tuple[Role, ...] = ("embedding", "attention", "mlp", "routed_expert", "shared_expert",
                           "router", "norm", "lm_head", "vision", "audio", "mtp")
# Encoder towers (and their projectors): loaded beside the text model, never quantized by default,
# not read per text token.
TOWER_ROLES: frozenset[str] = frozenset({"vision", "audio"})


@dataclass(frozen=True, slots=True)
class TensorGroup:
    """One tensor, or ``count`` identical tensors (the experts of one layer)."""

    name: str  # checkpoint name; "{e}" stands for the expert index when count > 1
    shape: tuple[int, ...]  # per tensor, [out, in] for linears
    role: Role
    layer: int | None  # decoder layer index; None for embeddings/head/final norm/vision
    split: Split = "replicated"
    linear: bool = False  # a 2-D Linear weight (what weight quantization applies to)
    count: int = 1  # identical tensors in the group (experts)
    buffer: bool = False  # persistent buffer (stored in the checkpoint, not a parameter)
    stacked_experts: int = 0  # >0: one 3-D tensor holding this many experts (gpt-oss, Llama 4)

    @property
    def numel(self) -> int:
        return math.prod(self.shape) * self.count


@dataclass(frozen=True, slots=True, eq=False)
class TensorInventory:
    """All tensors of a model; the aggregate counts are computed once at construction."""

    spec: ModelSpec
    tensors: tuple[TensorGroup, ...]  # main model (what plain inference loads)
    mtp_tensors: tuple[TensorGroup, ...]  # next-token-prediction layers, reported separately
    # Parameters as transformers counts them: unique tensors, tied embeddings once, no buffers.
    params_total: int = field(init=False)
    buffers_total: int = field(init=False)  # persistent buffers stored in the checkpoint
    params_mtp: int = field(init=False)
    # Parameters read per token: all dense parts + top_k/num_experts of the routed experts.
    # Convention (DeepSeek-V3 report, Qwen3 cards): embedding and head count fully; the vision
    # tower is excluded for text tokens.
    params_active: int = field(init=False)
    _by_role: tuple[tuple[str, int], ...] = field(init=False)

    def __post_init__(self) -> None:
        by_role = {r: 0 for r in ROLES}
        total = buffers = active = 0
        layers = {layer.index: layer for layer in self.spec.layers}
        for t in self.tensors:
            n = t.numel
            by_role[t.role] += n
            if t.buffer:
                buffers += n
            else:
                total += n
            if t.role in TOWER_ROLES:
                continue
            if t.role == "routed_expert" and t.layer is not None:
                mlp = layers[t.layer].mlp
                active += n * mlp.top_k // mlp.num_experts
            else:
                active += n
        mtp = sum(t.numel for t in self.mtp_tensors)
        by_role["mtp"] = mtp
        object.__setattr__(self, "params_total", total)
        object.__setattr__(self, "buffers_total", buffers)
        object.__setattr__(self, "params_mtp", mtp)
        object.__setattr__(self, "params_active", active)
        object.__setattr__(self, "_by_role", tuple((k, v) for k, v in by_role.items() if v))

    def params_by_role(self) -> dict[str, int]:
        return dict(self._by_role)

    @property
    def params_towers(self) -> int:
        """Parameters of the vision / audio towers and projectors (persistent buffers excluded,
        as in ``params_total``)."""
        return sum(t.numel for t in self.tensors if t.role in TOWER_ROLES and not t.buffer)

    @property
    def params_text(self) -> int:
        """Parameters of the text model alone (``--text-only``)."""
        return self.params_total - self.params_towers


def _lin(name: str, out: int, inp: int, role: Role, layer: int | None, split: Split,
         count: int = 1) -> TensorGroup:
    return TensorGroup(name, (out, inp), role, layer, split, linear=True, count=count)


def _vec(name: str, n: int, role: Role, layer: int | None, split: Split = "replicated",
         buffer: bool = False) -> TensorGroup:
    return TensorGroup(name, (n,), role, layer, split, buffer=buffer)


def _attention(spec: ModelSpec, p: str, i: int, a: AttentionSpec, role: Role) -> list[TensorGroup]:
    h = spec.hidden_size
    out: list[TensorGroup] = []
    if a.kind == "mla":
        qdim = a.num_heads * (a.qk_nope_head_dim + a.qk_rope_head_dim)
        if a.q_lora_rank:
            out.append(_lin(f"{p}.q_a_proj.weight", a.q_lora_rank, h, role, i, "replicated"))
            if spec.attention_bias:
                out.append(_vec(f"{p}.q_a_proj.bias", a.q_lora_rank, role, i))
            out.append(_vec(f"{p}.q_a_layernorm.weight", a.q_lora_rank, "norm", i))
            out.append(_lin(f"{p}.q_b_proj.weight", qdim, a.q_lora_rank, role, i, "column"))
        else:
            out.append(_lin(f"{p}.q_proj.weight", qdim, h, role, i, "column"))
        if spec.attention_bias:  # DeepseekV3Attention: q_a / kv_a / o carry attention_bias
            out.append(_vec(f"{p}.kv_a_proj_with_mqa.bias", a.kv_lora_rank + a.qk_rope_head_dim,
                            role, i))
        out.append(_lin(f"{p}.kv_a_proj_with_mqa.weight", a.kv_lora_rank + a.qk_rope_head_dim, h,
                        role, i, "replicated"))
        out.append(_vec(f"{p}.kv_a_layernorm.weight", a.kv_lora_rank, "norm", i))
        out.append(_lin(f"{p}.kv_b_proj.weight", a.num_heads * (a.qk_nope_head_dim + a.v_head_dim),
                        a.kv_lora_rank, role, i, "column"))
        out.append(_lin(f"{p}.o_proj.weight", h, a.num_heads * a.v_head_dim, role, i, "row"))
        if spec.attention_out_bias:
            out.append(_vec(f"{p}.o_proj.bias", h, role, i))
        return out
    if a.kind == "linear":
        lin = a.linear
        assert lin is not None
        key_dim = lin.num_key_heads * lin.key_head_dim
        value_dim = lin.num_value_heads * lin.value_head_dim
        conv_dim = 2 * key_dim + value_dim
        out.append(_lin(f"{p}.in_proj_qkvz.weight", 2 * key_dim + 2 * value_dim, h, role, i,
                        "column"))
        out.append(_lin(f"{p}.in_proj_ba.weight", 2 * lin.num_value_heads, h, role, i, "column"))
        out.append(TensorGroup(f"{p}.conv1d.weight", (conv_dim, 1, lin.conv_kernel), role, i,
                               "column"))
        out.append(_vec(f"{p}.dt_bias", lin.num_value_heads, role, i, "column"))
        out.append(_vec(f"{p}.A_log", lin.num_value_heads, role, i, "column"))
        out.append(_vec(f"{p}.norm.weight", lin.value_head_dim, "norm", i))
        out.append(_lin(f"{p}.out_proj.weight", h, value_dim, role, i, "row"))
        return out
    qd, kvd = a.num_heads * a.head_dim, a.num_kv_heads * a.head_dim
    if spec.family == "qwen3_next":
        qd_proj = 2 * qd  # gated attention: q_proj also produces the output gate
    else:
        qd_proj = qd
    if spec.family == "phi3":
        out.append(_lin(f"{p}.qkv_proj.weight", qd + 2 * kvd, h, role, i, "column"))
    else:
        out.append(_lin(f"{p}.q_proj.weight", qd_proj, h, role, i, "column"))
        out.append(_lin(f"{p}.k_proj.weight", kvd, h, role, i, "kv"))
        out.append(_lin(f"{p}.v_proj.weight", kvd, h, role, i, "kv"))
        if spec.attention_bias:
            out.append(_vec(f"{p}.q_proj.bias", qd_proj, role, i, "column"))
            out.append(_vec(f"{p}.k_proj.bias", kvd, role, i, "kv"))
            out.append(_vec(f"{p}.v_proj.bias", kvd, role, i, "kv"))
    out.append(_lin(f"{p}.o_proj.weight", h, qd, role, i, "row"))
    if spec.attention_out_bias:
        out.append(_vec(f"{p}.o_proj.bias", h, role, i))
    if spec.qk_norm:
        out.append(_vec(f"{p}.q_norm.weight", a.head_dim, "norm", i))
        out.append(_vec(f"{p}.k_norm.weight", a.head_dim, "norm", i))
    if spec.attention_sinks:
        out.append(_vec(f"{p}.sinks", a.num_heads, role, i, "column"))
    return out


def _gated_mlp(p: str, h: int, inter: int, role: Role, i: int | None, *, fused: bool = False,
               names: tuple[str, str, str] = ("gate_proj", "up_proj", "down_proj"),
               bias: bool = False) -> list[TensorGroup]:
    if fused:
        return [_lin(f"{p}.gate_up_proj.weight", 2 * inter, h, role, i, "column"),
                _lin(f"{p}.down_proj.weight", h, inter, role, i, "row")]
    g, u, d = names
    out = [_lin(f"{p}.{g}.weight", inter, h, role, i, "column"),
           _lin(f"{p}.{u}.weight", inter, h, role, i, "column"),
           _lin(f"{p}.{d}.weight", h, inter, role, i, "row")]
    if bias:
        out += [_vec(f"{p}.{g}.bias", inter, role, i, "column"),
                _vec(f"{p}.{u}.bias", inter, role, i, "column"), _vec(f"{p}.{d}.bias", h, role, i)]
    return out


def _experts(p: str, i: int, e: int,
             projs: tuple[tuple[str, tuple[int, int], Split], ...]) -> list[TensorGroup]:
    """Per-expert linears ``{p}.experts.{e}.{name}.weight``, one group of ``e`` tensors each."""
    return [TensorGroup(f"{p}.experts.{{e}}.{n}.weight", shape, "routed_expert", i, split,
                        linear=True, count=e) for n, shape, split in projs]


def _moe(spec: ModelSpec, lp: str, i: int, m: MlpSpec) -> list[TensorGroup]:
    h, e, inter = spec.hidden_size, m.num_experts, m.expert_intermediate_size
    fam = spec.family
    out: list[TensorGroup] = []
    if fam == "mixtral":
        p = f"{lp}.block_sparse_moe"
        out.append(_lin(f"{p}.gate.weight", e, h, "router", i, "replicated"))
        out += _experts(p, i, e, (("w1", (inter, h), "expert_column"),
                                  ("w3", (inter, h), "expert_column"),
                                  ("w2", (h, inter), "expert_row")))
        return out
    if fam in ("gpt_oss", "llama4"):
        # One stacked 3-D tensor per projection: [E, in, out] (transformers GptOssExperts, Llama4TextExperts)
        p = f"{lp}.mlp" if fam == "gpt_oss" else f"{lp}.feed_forward"
        rname = f"{p}.router"
        out.append(_lin(f"{rname}.weight", e, h, "router", i, "replicated"))
        if m.router_bias:
            out.append(_vec(f"{rname}.bias", e, "router", i))
        out.append(TensorGroup(f"{p}.experts.gate_up_proj", (e, h, 2 * inter), "routed_expert", i,
                               "expert_column", linear=True, stacked_experts=e))
        out.append(TensorGroup(f"{p}.experts.down_proj", (e, inter, h), "routed_expert", i,
                               "expert_row", linear=True, stacked_experts=e))
        if m.expert_bias:
            out.append(TensorGroup(f"{p}.experts.gate_up_proj_bias", (e, 2 * inter),
                                   "routed_expert", i, "expert_column", stacked_experts=e))
            out.append(TensorGroup(f"{p}.experts.down_proj_bias", (e, h), "routed_expert", i,
                                   "expert_row", stacked_experts=e))
        if m.shared_intermediate_size:
            out += _gated_mlp(f"{p}.shared_expert", h, m.shared_intermediate_size,
                              "shared_expert", i)
        return out
    p = f"{lp}.mlp"
    out.append(_lin(f"{p}.gate.weight", e, h, "router", i, "replicated"))
    if m.score_correction_bias:
        out.append(_vec(f"{p}.gate.e_score_correction_bias", e, "router", i, buffer=True))
    out += _experts(p, i, e, (("gate_proj", (inter, h), "expert_column"),
                              ("up_proj", (inter, h), "expert_column"),
                              ("down_proj", (h, inter), "expert_row")))
    if m.shared_intermediate_size:
        sname = "shared_experts" if fam in ("deepseek", "glm4_moe") else "shared_expert"
        out += _gated_mlp(f"{p}.{sname}", h, m.shared_intermediate_size, "shared_expert", i)
    if m.shared_expert_gate:
        out.append(_lin(f"{p}.shared_expert_gate.weight", 1, h, "router", i, "replicated"))
    return out


def _layer(spec: ModelSpec, lp: str, layer: LayerSpec, role_override: Role | None = None
           ) -> list[TensorGroup]:
    i = layer.index
    h = spec.hidden_size
    a = layer.attention
    attn_name = "linear_attn" if a.kind == "linear" else "self_attn"
    out = _attention(spec, f"{lp}.{attn_name}", i, a, "attention")
    norm_names = ["input_layernorm", "post_attention_layernorm"]
    if spec.norms_per_layer == 4:
        norm_names += ["pre_feedforward_layernorm", "post_feedforward_layernorm"]
    out += [_vec(f"{lp}.{n}.weight", h, "norm", i) for n in norm_names]
    if layer.mlp.kind == "moe":
        out += _moe(spec, lp, i, layer.mlp)
    else:
        mp = f"{lp}.feed_forward" if spec.family == "llama4" else f"{lp}.mlp"
        out += _gated_mlp(mp, h, layer.mlp.intermediate_size, "mlp", i,
                          fused=spec.family == "phi3", bias=spec.mlp_bias)
    if role_override is not None:
        out = [TensorGroup(t.name, t.shape, role_override, t.layer, t.split, t.linear, t.count,
                           t.buffer, t.stacked_experts) for t in out]
    return out


def _vision(v: VisionSpec) -> list[TensorGroup]:
    """Llama 4 vision tower + projector (transformers Llama4VisionModel, Llama4MultiModalProjector)."""
    p = "vision_model"
    d = v.hidden_size
    n_patches = (v.image_size // v.patch_size) ** 2 + 1
    out = [
        _lin(f"{p}.patch_embedding.linear.weight", d, v.num_channels * v.patch_size ** 2, "vision",
             None, "replicated"),
        _vec(f"{p}.class_embedding", d, "vision", None),
        TensorGroup(f"{p}.positional_embedding_vlm", (n_patches, d), "vision", None),
    ]
    for ln in ("layernorm_pre", "layernorm_post"):
        out += [_vec(f"{p}.{ln}.weight", d, "vision", None), _vec(f"{p}.{ln}.bias", d, "vision",
                                                                   None)]
    for j in range(v.num_layers):
        lp = f"{p}.model.layers.{j}"
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            out += [_lin(f"{lp}.self_attn.{n}.weight", d, d, "vision", None, "replicated"),
                    _vec(f"{lp}.self_attn.{n}.bias", d, "vision", None)]
        out += [_lin(f"{lp}.mlp.fc1.weight", v.intermediate_size, d, "vision", None, "replicated"),
                _vec(f"{lp}.mlp.fc1.bias", v.intermediate_size, "vision", None),
                _lin(f"{lp}.mlp.fc2.weight", d, v.intermediate_size, "vision", None, "replicated"),
                _vec(f"{lp}.mlp.fc2.bias", d, "vision", None)]
        for ln in ("input_layernorm", "post_attention_layernorm"):
            out += [_vec(f"{lp}.{ln}.weight", d, "vision", None),
                    _vec(f"{lp}.{ln}.bias", d, "vision", None)]
    out += [
        _lin(f"{p}.vision_adapter.mlp.fc1.weight", v.projector_input_dim, v.intermediate_size,
             "vision", None, "replicated"),
        _lin(f"{p}.vision_adapter.mlp.fc2.weight", v.projector_output_dim, v.projector_output_dim,
             "vision", None, "replicated"),
        _lin("multi_modal_projector.linear_1.weight", v.text_hidden_size, v.vision_output_dim,
             "vision", None, "replicated"),
    ]
    return out


def _mtp(spec: ModelSpec) -> list[TensorGroup]:
    """Next-token-prediction blocks shipped in the checkpoint but not used by plain decoding.

    ASSUMPTION: DeepSeek-V3/GLM-4.5 layout (enorm, hnorm, eh_proj, one full decoder layer, shared
    head norm + head, own embedding copy) as in the DeepSeek-V3 checkpoint; Qwen3-Next mtp.* layout.
    """
    if not spec.mtp_layers:
        return []
    h, v = spec.hidden_size, spec.vocab_size
    last = spec.layers[-1]
    out: list[TensorGroup] = []
    for k in range(spec.mtp_layers):
        if spec.family == "qwen3_next":
            lp = "mtp"
            # the MTP block uses full attention; a config with no full layer (interval beyond
            # the depth) falls back to the last layer's mixer
            full = next((layer for layer in spec.layers if layer.attention.kind == "full"), last)
            out += [_lin(f"{lp}.fc.weight", h, 2 * h, "mtp", None, "replicated"),
                    _vec(f"{lp}.pre_fc_norm_embedding.weight", h, "mtp", None),
                    _vec(f"{lp}.pre_fc_norm_hidden.weight", h, "mtp", None),
                    _vec(f"{lp}.norm.weight", h, "mtp", None)]
            layer = LayerSpec(index=spec.num_layers + k, attention=full.attention, mlp=last.mlp)
            out += _layer(spec, f"{lp}.layers.{k}", layer, role_override="mtp")
            continue
        idx = spec.num_layers + k
        lp = f"{spec.prefix}.layers.{idx}"
        layer = LayerSpec(index=idx, attention=last.attention, mlp=last.mlp)
        out += _layer(spec, lp, layer, role_override="mtp")
        out += [_vec(f"{lp}.enorm.weight", h, "mtp", None),
                _vec(f"{lp}.hnorm.weight", h, "mtp", None),
                _lin(f"{lp}.eh_proj.weight", h, 2 * h, "mtp", None, "replicated"),
                _vec(f"{lp}.shared_head.norm.weight", h, "mtp", None),
                _lin(f"{lp}.shared_head.head.weight", v, h, "mtp", None, "vocab"),
                TensorGroup(f"{lp}.embed_tokens.weight", (v, h), "mtp", None, "vocab")]
    return out


def tower_tensors(spec: ModelSpec) -> list[TensorGroup]:
    """The tensors of every vision / audio tower of ``spec`` (``vramplan.families`` builders)."""
    from vramplan import families

    out: list[TensorGroup] = []
    for tower in spec.towers:
        out += families.tower_module(tower.family).tower_tensors(tower, spec)
    return out


@lru_cache(maxsize=64)
def build_inventory(spec: ModelSpec) -> TensorInventory:
    """Enumerate the tensors of ``spec`` in checkpoint naming (cached: specs are immutable).

    Registered families (``vramplan.families``) enumerate their own text model; towers are
    appended from ``spec.towers``.
    """
    from vramplan import families

    module = families.family_module(spec.family)
    if module is not None:
        main, mtp = module.tensors(spec)
        return TensorInventory(spec=spec, tensors=tuple(main) + tuple(tower_tensors(spec)),
                               mtp_tensors=tuple(mtp))
    h, v = spec.hidden_size, spec.vocab_size
    pre = spec.prefix
    tensors: list[TensorGroup] = [
        TensorGroup(f"{pre}.embed_tokens.weight", (v, h), "embedding", None, "vocab")]
    for layer in spec.layers:
        tensors += _layer(spec, f"{pre}.layers.{layer.index}", layer)
    tensors.append(_vec(f"{pre}.norm.weight", h, "norm", None))
    if not spec.tie_word_embeddings:
        tensors.append(TensorGroup(f"{spec.lm_head_name}.weight", (v, h), "lm_head", None, "vocab",
                                   linear=True))
    if spec.vision is not None:
        tensors += _vision(spec.vision)
    tensors += tower_tensors(spec)
    return TensorInventory(spec=spec, tensors=tuple(tensors), mtp_tensors=tuple(_mtp(spec)))
