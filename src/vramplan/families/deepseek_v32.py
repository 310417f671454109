"""DeepSeek-V3.2 (``deepseek_v32``) and GLM-5 (``glm_moe_dsa``): MLA + DeepSeek Sparse Attention.

Both are the DeepSeek-V3 / GLM-4.5 MoE decoder (built-in core: MLA attention, routed + shared
experts, ``first_k_dense_replace`` dense layers) plus a *lightning indexer* per attention layer
that picks the ``index_topk`` tokens each query attends to. The indexer adds tensors and its own
per-token key cache (``AttentionSpec.indexer``, priced by ``kv.indexer_bytes_per_token``).

SOURCE: transformers 5.25.0 ``models/deepseek_v32/modeling_deepseek_v32.py`` (DeepseekV32Indexer:
``wq_b`` [index_n_heads*index_head_dim, q_lora_rank], ``wk`` [index_head_dim, hidden],
``k_norm`` LayerNorm(index_head_dim) with weight and bias, ``weights_proj`` [index_n_heads, hidden];
DeepseekV32TopkRouter always carries ``e_score_correction_bias``; ``mlp_layer_types`` from
``first_k_dense_replace``) and ``models/glm_moe_dsa/{configuration,modeling}_glm_moe_dsa.py``
(``indexer_types``: a ``"shared"`` layer has no indexer and reuses the previous layer's top-k).
Checkpoint names are the Hub's (``model.layers.{i}.self_attn.indexer.wq_b.weight`` ...), the same
as transformers' in-memory names except the per-expert tensors (core layout).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from vramplan import inventory as inv
from vramplan.errors import ConfigError
from vramplan.inventory import TensorGroup
from vramplan.model import hf_config as hc
from vramplan.model.spec import IndexerSpec, LayerSpec, ModelSpec

MODEL_TYPES = ("deepseek_v32", "glm_moe_dsa")
ARCHITECTURES = ("DeepseekV32ForCausalLM", "GlmMoeDsaForCausalLM")
HANDLES = frozenset({"moe", "mla", "indexer", "layer_types"})

# the core layout each model type follows (inventory naming of MLA + MoE)
_CORE = {"deepseek_v32": "deepseek", "glm_moe_dsa": "glm4_moe"}


def indexer_types(text: Mapping[str, Any], n_layers: int) -> list[bool]:
    """Per layer: True where the layer runs its own indexer.

    DeepSeek-V3.2: every layer. GLM-5 (GlmMoeDsaConfig.__post_init__, transformers 5.25.0):
    ``indexer_types`` ("full"/"shared"), else ``index_topk_pattern`` ("F"/"S" string or list), else
    full where ``max(i - index_skip_topk_offset + 1, 0) % index_topk_freq == 0`` (defaults 2, 1).
    """
    if text.get("model_type") != "glm_moe_dsa":
        return [True] * n_layers
    raw = text.get("indexer_types")
    if raw is None:
        pat = text.get("index_topk_pattern")
        if pat is not None:
            raw = [{"F": "full", "S": "shared"}.get(c, c) for c in pat] if isinstance(pat, str) \
                else list(pat)
    if raw is not None:
        if not isinstance(raw, list) or len(raw) < n_layers or \
                any(t not in ("full", "shared") for t in raw[:n_layers]):
            raise ConfigError("config.json indexer_types",
                              f"must list 'full' or 'shared' for each of the {n_layers} layers",
                              "fix indexer_types / index_topk_pattern in config.json")
        return [t == "full" for t in raw[:n_layers]]
    freq = max(hc.read_int0(text, "index_topk_freq", 1), 1)
    offset = hc.read_int0(text, "index_skip_topk_offset", 2)
    return [max(i - offset + 1, 0) % freq == 0 for i in range(n_layers)]


def spec(cfg: Mapping[str, Any], model_id: str = "local",
         extra_quant: Mapping[str, Any] | None = None) -> ModelSpec:
    text = hc.text_config(cfg)
    model_type = str(text.get("model_type") or cfg.get("model_type"))
    if model_type not in _CORE:
        model_type = "deepseek_v32"
    n_layers = hc.read_int(text, "num_hidden_layers")
    lt = text.get("layer_types")
    if lt is not None and (not isinstance(lt, list) or set(lt) - {"indexed_attention"}):
        # transformers 5.25 DeepseekV32Config / GlmMoeDsaConfig: every layer "indexed_attention"
        raise ConfigError("config.json layer_types", "must list 'indexed_attention' per layer",
                          "fix layer_types in config.json")
    flags = indexer_types({**text, "model_type": model_type}, n_layers)
    core = _CORE[model_type]
    default_heads = 64 if model_type == "deepseek_v32" else 32

    def layer_fn(t: Mapping[str, Any], i: int) -> LayerSpec:
        heads = hc.read_int(t, "num_attention_heads")
        attn = hc.attention_spec(t, core, "mla", heads, heads, 0, None, None)
        if attn.q_lora_rank is None:
            raise ConfigError("config.json q_lora_rank", "is missing; the sparse-attention indexer "
                              "projects from the q latent", "add q_lora_rank to config.json")
        if flags[i]:
            attn = replace(attn, indexer=IndexerSpec(
                num_heads=hc.read_int(t, "index_n_heads", default_heads),
                head_dim=hc.read_int(t, "index_head_dim", 128),
                topk=hc.read_int(t, "index_topk", 2048)))
        mlp = hc.core_mlp(t, core, model_type, i, n_layers)
        if mlp.kind == "moe":
            # DeepseekV32TopkRouter / GlmMoeDsaTopkRouter always hold the correction bias
            mlp = replace(mlp, score_correction_bias=True)
        return LayerSpec(index=i, attention=attn, mlp=mlp)

    return hc.generic_spec(cfg, model_id, extra_quant, model_type=model_type,
                           family=model_type, layer_fn=layer_fn)


def indexer_tensors(p: str, i: int | None, hidden: int, q_lora_rank: int, ix: IndexerSpec,
                    role: inv.Role = "attention") -> list[TensorGroup]:
    """The lightning indexer of one layer (``{p}`` = ``...self_attn.indexer``).

    vLLM (deepseek_v2.py Indexer @002d6073aa03) keeps ``wq_b`` a quantized ReplicatedLinear and
    fuses ``wk`` + ``weights_proj`` into one unquantized replicated GEMM (FP8 ``wk`` is upcast
    to BF16 at load), so only ``wq_b`` is marked as a quantizable linear.
    """
    return [
        inv._lin(f"{p}.wq_b.weight", ix.num_heads * ix.head_dim, q_lora_rank, role, i,
                 "replicated"),
        TensorGroup(f"{p}.wk.weight", (ix.head_dim, hidden), role, i),
        inv._vec(f"{p}.k_norm.weight", ix.head_dim, "norm" if role != "mtp" else role, i),
        inv._vec(f"{p}.k_norm.bias", ix.head_dim, "norm" if role != "mtp" else role, i),
        TensorGroup(f"{p}.weights_proj.weight", (ix.num_heads, hidden), role, i),
    ]


def tensors(spec: ModelSpec) -> tuple[list[TensorGroup], list[TensorGroup]]:
    """The core DeepSeek-V3 / GLM-4.5 layout plus each layer's indexer (and the MTP layer's)."""
    core = replace(spec, family=_CORE.get(spec.model_type, "deepseek"))
    base = inv.build_inventory(core)
    h = spec.hidden_size
    extra: dict[int, list[TensorGroup]] = {}
    for layer in spec.layers:
        a = layer.attention
        if a.indexer is not None and a.q_lora_rank:
            extra[layer.index] = indexer_tensors(
                f"{spec.prefix}.layers.{layer.index}.self_attn.indexer", layer.index, h,
                a.q_lora_rank, a.indexer)
    main: list[TensorGroup] = []
    for t in base.tensors:
        main.append(t)
        # after a layer's o_proj, its indexer (keeps the checkpoint's per-layer order)
        if t.layer in extra and t.name.endswith("self_attn.o_proj.weight"):
            main += extra.pop(t.layer)
    mtp = list(base.mtp_tensors)
    last = spec.layers[-1].attention if spec.layers else None
    if last is not None and last.indexer is not None and last.q_lora_rank:
        for k in range(spec.mtp_layers):
            idx = spec.num_layers + k
            mtp += indexer_tensors(f"{spec.prefix}.layers.{idx}.self_attn.indexer", None, h,
                                   last.q_lora_rank, last.indexer, role="mtp")
    return main, mtp
