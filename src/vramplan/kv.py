"""KV cache (and recurrent state) bytes, per layer type.

Per token and layer:
  full / sliding / chunked attention: kv_heads * (head_dim_k + head_dim_v) * bytes/elem
  MLA latent (DeepSeek V2/V3, Kimi K2):  (kv_lora_rank + qk_rope_head_dim) * bytes/elem, one "head"
    + the sparse-attention indexer's key cache where there is one (DeepSeek-V3.2, GLM-5)
  linear attention (Gated DeltaNet, Mamba-1/2, short conv): 0 per token; a constant state
  per sequence (``linear_state_bytes``)
  cross-attention (Mllama):             K/V of the encoder (image) tokens, constant per sequence
  no mixer (Nemotron-H MLP/MoE layers): nothing
Sliding-window layers hold at most ``window`` tokens, chunked-local layers at most one chunk.
A layer with ``attention.mamba`` keeps that state whatever its kind (Falcon-H1 runs attention
and Mamba-2 side by side, so its layers have both a per-token cache and a state).
A layer that reads another layer's cache (``AttentionSpec.kv_shared_with``, Gemma-3n/4;
``shares_kv``) stores nothing.
Sources: vllm/v1/kv_cache_interface.py (AttentionSpec.page_size_bytes, MLAAttentionSpec,
SlidingWindowSpec), llama.cpp src/llama-kv-cache.cpp; see docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from vramplan.errors import InputError
from vramplan.model.spec import AttentionSpec, MambaSpec, ModelSpec

# bytes per element as (block_elems, block_bytes): exact for llama.cpp's quantized cache types
# SOURCE: ggml/src/ggml-common.h block_q8_0 (32 elems, 34 B), block_q4_0 (32, 18), block_q5_0 ...
KV_DTYPES: dict[str, tuple[int, int]] = {
    "fp32": (1, 4),
    "fp16": (1, 2),
    "bf16": (1, 2),
    "fp8": (1, 1),
    "fp8_e4m3": (1, 1),
    "fp8_e5m2": (1, 1),
    "q8_0": (32, 34),
    "q5_1": (32, 24),
    "q5_0": (32, 22),
    "q4_1": (32, 20),
    "q4_0": (32, 18),
    "iq4_nl": (32, 18),
}


def resolve_kv_dtype(kv_dtype: str, spec: ModelSpec) -> str:
    """``auto`` means the model dtype (vLLM CacheConfig.cache_dtype="auto"; llama.cpp f16)."""
    d = kv_dtype.lower().replace("bfloat16", "bf16").replace("float16", "fp16")
    d = {"f16": "fp16", "f32": "fp32", "float32": "fp32"}.get(d, d)
    if d == "auto":
        return {"float32": "fp32", "float16": "fp16"}.get(spec.torch_dtype, "bf16")
    if d not in KV_DTYPES:
        raise InputError("--kv-dtype", f"unknown KV cache dtype {kv_dtype!r}",
                         f"choose one of: auto, {', '.join(KV_DTYPES)}")
    return d


def row_bytes(n_elems: int, kv_dtype: str) -> int:
    """Bytes of ``n_elems`` cache elements: ceil(n / block) * block_bytes (exact for ggml types)."""
    block, size = KV_DTYPES[kv_dtype]
    return math.ceil(n_elems / block) * size


def kv_heads_per_rank(attn: AttentionSpec, tp: int) -> int:
    """KV heads each TP rank stores: max(1, kv_heads // tp); MLA latent: 1 (replicated per rank).

    Source: vllm/config/model.py ModelConfig.get_num_kv_heads; MLA returns 1.
    """
    if attn.kind == "mla":
        return 1
    return max(1, attn.num_kv_heads // tp)


# vLLM's indexer key cache quantizes per block of this many values (Indexer.quant_block_size).
INDEXER_QUANT_BLOCK = 128


def indexer_bytes_per_token(attn: AttentionSpec) -> int:
    """Bytes one token adds to a layer's sparse-attention indexer key cache (0 without one).

    index_head_dim FP8 values + one fp32 scale per 128 values, whatever the KV dtype, one copy
    per TP rank: DeepSeek-V3.2 128 + 4 = 132 B. SOURCE: vllm/model_executor/models/
    deepseek_v2.py@002d6073aa034d4f5545d45021b0e56d1f3c3593 (Indexer: ``k_cache =
    DeepseekV32IndexerCache(head_dim=head_dim + head_dim // quant_block_size * 4,
    dtype=torch.uint8)``, an MLAAttentionSpec with one KV head; the backend,
    vllm/v1/attention/backends/mla/indexer.py DeepseekV32IndexerBackend, lays it out
    [num_blocks, block_size, head_size]). ASSUMPTION: the other engines keep the same cache.
    """
    ix = attn.indexer
    if ix is None:
        return 0
    return ix.head_dim + ix.head_dim // INDEXER_QUANT_BLOCK * 4


def mla_row_bytes(attn: AttentionSpec, kv_dtype: str) -> int:
    """Bytes of one token's MLA latent: (kv_lora_rank + qk_rope_head_dim) x bytes/elem.

    Sparse-attention (indexer) models on an FP8 cache use FlashMLA's ``fp8_ds_mla`` record
    instead: kv_lora_rank FP8 values + one fp32 scale per 128 of them + the RoPE part in bf16
    (DeepSeek-V3.2: 512 + 16 + 128 = 656 B). SOURCE: vllm/model_executor/models/config.py
    (DeepseekV32ForCausalLM.verify_and_update_config turns an fp8 cache into "fp8_ds_mla"),
    vllm/v1/attention/backends/mla/flashmla_sparse.py (get_kv_cache_shape: 656 B per token).
    """
    if attn.indexer is not None and KV_DTYPES[kv_dtype] == (1, 1):
        return attn.kv_lora_rank + attn.kv_lora_rank // 128 * 4 + attn.qk_rope_head_dim * 2
    return row_bytes(attn.kv_lora_rank + attn.qk_rope_head_dim, kv_dtype)


def shares_kv(attn: AttentionSpec) -> bool:
    """True for a layer reading another layer's K/V (``kv_shared_with``): it stores none."""
    return attn.kv_shared_with is not None


def layer_bytes_per_token(attn: AttentionSpec, kv_dtype: str, tp: int = 1) -> int:
    """K+V bytes one token adds to one layer on one TP rank (0 for linear attention, no mixer and
    a layer that reuses another layer's cache; a cross-attention layer's per-token figure applies
    to its encoder tokens).

    An MLA layer with a sparse-attention indexer adds its key cache
    (``indexer_bytes_per_token``)."""
    if attn.kind in ("linear", "none") or shares_kv(attn):
        return 0
    if attn.kind == "mla":
        return mla_row_bytes(attn, kv_dtype) + indexer_bytes_per_token(attn)
    heads = kv_heads_per_rank(attn, tp)
    return row_bytes(heads * attn.head_dim, kv_dtype) + row_bytes(heads * attn.v_head_dim,
                                                                   kv_dtype)


def mamba_state_elems(mb: MambaSpec, tp: int = 1) -> tuple[int, int]:
    """(conv state, SSM state) elements one sequence keeps in one Mamba layer on one TP rank.

    Mamba-2: conv (d_conv - 1) x (d_inner + 2 x groups x d_state) / tp, SSM heads/tp x head_dim
    x d_state; groups are padded to tp when tp does not divide n_groups (each head shard needs
    its groups): groups = n_groups + (0 if n_groups % tp == 0 else tp - n_groups).
    Mamba-1: conv (d_conv - 1) x d_inner / tp, SSM d_inner / tp x d_state.
    Short conv (LFM2): conv (L_cache - 1) x d_inner / tp, no SSM state.
    Source: vllm/model_executor/layers/mamba/mamba_utils.py@02d710837549
    (MambaStateShapeCalculator.mamba1_state_shape, mamba2_state_shape,
    extra_groups_for_head_shards, short_conv_state_shape); at tp = 1 the same element counts as
    llama.cpp's n_embd_r / n_embd_s (src/llama-hparams.cpp@01b77b579398).
    """
    if mb.kind == "mamba2":
        groups = mb.n_groups + (0 if mb.n_groups % tp == 0 else tp - mb.n_groups)
        conv = (mb.conv_kernel - 1) * ((mb.d_inner + 2 * groups * mb.d_state) // tp)
        return conv, (mb.num_heads // tp) * mb.head_dim * mb.d_state
    conv = (mb.conv_kernel - 1) * (mb.d_inner // tp)
    if mb.kind == "mamba1":
        return conv, (mb.d_inner // tp) * mb.d_state
    return conv, 0


def has_state(attn: AttentionSpec) -> bool:
    """True for layers that keep a constant recurrent/conv state per sequence."""
    return attn.mamba is not None or attn.linear is not None


def linear_state_bytes(attn: AttentionSpec, state_dtype: str, tp: int = 1,
                       ssm_dtype: str | None = None) -> int:
    """Constant per-sequence state of a recurrent layer on one TP rank, in bytes.

    Mamba-1/2 and short conv: ``mamba_state_elems`` (conv in ``state_dtype``, SSM state in
    ``ssm_dtype``, default ``state_dtype``). Gated DeltaNet: conv state
    (conv_kernel - 1) * (2*key_dim + value_dim) / tp and recurrent state num_value_heads/tp *
    key_head_dim * value_head_dim (MambaStateShapeCalculator.gated_delta_net_state_shape, same
    file). 0 for a layer without state.
    """
    if attn.mamba is not None:
        conv, ssm = mamba_state_elems(attn.mamba, tp)
        return row_bytes(conv, state_dtype) + (row_bytes(ssm, ssm_dtype or state_dtype)
                                               if ssm else 0)
    lin = attn.linear
    if lin is None:
        return 0
    key_dim = lin.num_key_heads * lin.key_head_dim
    value_dim = lin.num_value_heads * lin.value_head_dim
    conv = (lin.conv_kernel - 1) * (2 * key_dim + value_dim) // tp
    ssm = lin.num_value_heads * lin.key_head_dim * lin.value_head_dim // tp
    if ssm_dtype is None or ssm_dtype == state_dtype:
        return row_bytes(conv + ssm, state_dtype)
    return row_bytes(conv, state_dtype) + row_bytes(ssm, ssm_dtype)


def state_dtypes(spec: ModelSpec, mamba_cache_dtype: str = "auto",
                 mamba_ssm_cache_dtype: str = "auto") -> tuple[str, str]:
    """(conv state dtype, SSM state dtype) as vLLM resolves them.

    conv: ``--mamba-cache-dtype`` ("auto": the model dtype, not the KV cache dtype); SSM:
    ``--mamba-ssm-cache-dtype``, "auto" meaning the conv dtype, except for Nemotron-H whose
    config hook takes the HF config's ``mamba_ssm_cache_dtype`` (default float32).
    Sources: vllm/model_executor/layers/mamba/mamba_utils.py@02d710837549
    (MambaStateDtypeCalculator._mamba_state_dtype), vllm/model_executor/models/config.py
    (NemotronHForCausalLMConfig.update_mamba_ssm_cache_dtype, DEFAULT_MAMBA_SSM_CACHE_DTYPE).
    """
    conv = resolve_kv_dtype(mamba_cache_dtype, spec)
    if mamba_ssm_cache_dtype != "auto":
        return conv, resolve_kv_dtype(mamba_ssm_cache_dtype, spec)
    fam = spec.param("mamba_ssm_cache_dtype")
    if fam:
        return conv, resolve_kv_dtype(str(fam), spec)
    return conv, conv


def state_bytes_per_sequence(spec: ModelSpec, conv_dtype: str, ssm_dtype: str,
                             tp: int = 1) -> int:
    """Σ over the layers with state of ``linear_state_bytes`` (one sequence, one TP rank)."""
    return sum(linear_state_bytes(la.attention, conv_dtype, tp, ssm_dtype)
               for la in spec.layers if has_state(la.attention))


def cached_tokens(attn: AttentionSpec, context_tokens: int) -> int:
    """Tokens a layer keeps for one sequence of ``context_tokens``: windowed layers are capped,
    cross-attention layers keep their encoder tokens whatever the text length."""
    if attn.kind in ("linear", "none") or shares_kv(attn):
        return 0
    if attn.kind == "cross":
        return attn.encoder_tokens
    if attn.kind in ("sliding", "chunked") and attn.window_tokens:
        return min(context_tokens, attn.window_tokens)
    return context_tokens


@dataclass(frozen=True, slots=True)
class KvSummary:
    """KV figures of a model at one dtype, for one TP rank holding all layers."""

    kv_dtype: str
    bytes_per_token: int  # growth per token beyond every window (full-attention + MLA layers)
    bytes_per_token_all_layers: int  # as if every attention layer kept every token
    window_bytes_per_sequence: int  # sliding/chunked layers at their window cap
    # recurrent state (Mamba, GDN) at ``state_dtypes(spec)`` + cross-attention K/V
    state_bytes_per_sequence: int
    full_layers: int
    windowed_layers: int
    linear_layers: int  # layers keeping a recurrent state




@lru_cache(maxsize=512)
def summarize(spec: ModelSpec, kv_dtype: str, tp: int = 1) -> KvSummary:
    """Per-token KV at ``kv_dtype`` and the per-sequence state at vLLM's default state dtypes
    (``state_dtypes``: the state is not stored in the KV cache dtype). Layers without a mixer
    count nowhere."""
    full = windowed = linear = 0
    per_tok = per_tok_all = window_b = state_b = 0
    conv_dt, ssm_dt = state_dtypes(spec)
    for layer in spec.layers:
        a = layer.attention
        if has_state(a):
            linear += 1
            state_b += linear_state_bytes(a, conv_dt, tp, ssm_dt)
        if a.kind in ("linear", "none") or shares_kv(a):
            continue
        b = layer_bytes_per_token(a, kv_dtype, tp)
        if a.kind == "cross":
            state_b += b * a.encoder_tokens
            continue
        per_tok_all += b
        comp = compressed_bytes_per_token(a, kv_dtype)  # DeepSeek-V4: grows with the context
        per_tok += comp
        per_tok_all += comp
        if a.kind in ("sliding", "chunked"):
            windowed += 1
            window_b += b * (a.window_tokens or 0)
        else:
            full += 1
            per_tok += b
    return KvSummary(kv_dtype, per_tok, per_tok_all, window_b, state_b, full, windowed, linear)


def compressed_entry_bytes(attn: AttentionSpec, kv_dtype: str) -> int:
    """Bytes of one compressed entry of a DeepSeek-V4 layer: ``compressed_dim`` values at the KV
    dtype (0 without a compressor). A layer holds ceil(context / compress_rate) of them.

    SOURCE: transformers 5.25.0 models/deepseek_v4/modeling_deepseek_v4.py DeepseekV4HCACache /
    DeepseekV4CSACache (``compressed_kv["compressor"]`` one head_dim entry per compress_rate
    source tokens; CSA adds ``compressed_kv["indexer"]`` at index_head_dim). ASSUMPTION: the
    serving engines keep the same entries (replicated on every TP rank, like MLA).
    """
    if not attn.compress_rate or not attn.compressed_dim:
        return 0
    return row_bytes(attn.compressed_dim, kv_dtype)


def compressed_entries(context_tokens: int, compress_rate: int) -> int:
    """Compressed entries one sequence holds: ceil(context / compress_rate) (0 without one)."""
    return -(-context_tokens // compress_rate) if compress_rate else 0


def compressed_bytes(attn: AttentionSpec, kv_dtype: str, context_tokens: int) -> int:
    """``compressed_entries`` x ``compressed_entry_bytes`` for one sequence."""
    return compressed_entries(context_tokens, attn.compress_rate) * \
        compressed_entry_bytes(attn, kv_dtype)


def compressed_bytes_per_token(attn: AttentionSpec, kv_dtype: str) -> int:
    """The compressed cache's growth per context token, rounded down (for per-token figures)."""
    if not attn.compress_rate:
        return 0
    return compressed_entry_bytes(attn, kv_dtype) // attn.compress_rate


@lru_cache(maxsize=512)
def _layer_table(spec: ModelSpec, kv_dtype: str,
                 tp: int) -> tuple[tuple[int, int, int, int, int, int], ...]:
    """Per layer: (index, bytes/token, window cap or 0, constant state bytes, compress rate or 0,
    bytes per compressed entry), cached."""
    conv_dt, ssm_dt = state_dtypes(spec)
    out = []
    for layer in spec.layers:
        a = layer.attention
        state = linear_state_bytes(a, conv_dt, tp, ssm_dt)
        if a.kind == "cross":
            out.append((layer.index, 0, 0, layer_bytes_per_token(a, kv_dtype, tp) *
                        a.encoder_tokens, 0, 0))
            continue
        cap = a.window_tokens if a.kind in ("sliding", "chunked") and a.window_tokens else 0
        out.append((layer.index, layer_bytes_per_token(a, kv_dtype, tp), cap or 0, state,
                    a.compress_rate, compressed_entry_bytes(a, kv_dtype)))
    return tuple(out)


def kv_cache_bytes(spec: ModelSpec, context_tokens: int, sequences: int, kv_dtype: str,
                   tp: int = 1, layers: range | None = None) -> int:
    """Total KV bytes: Σ_layers bytes_per_token(layer) * min(context, window) * sequences + states
    (+ DeepSeek-V4's ceil(context / compress_rate) compressed entries, ``compressed_bytes``).

    ``layers`` restricts the sum to one pipeline stage. Assumes no prefix sharing and every
    sequence at ``context_tokens``.
    """
    total = 0
    for idx, per_tok, cap, state, rate, entry in _layer_table(spec, kv_dtype, tp):
        if layers is not None and idx not in layers:
            continue
        tokens = min(context_tokens, cap) if cap else context_tokens
        comp = compressed_entries(context_tokens, rate) * entry
        total += (per_tok * tokens + state + comp) * sequences
    return total
