"""KV cache (and recurrent state) bytes, per layer type.

Per token and layer:
  full / sliding / chunked attention: kv_heads * (head_dim_k + head_dim_v) * bytes/elem
  MLA latent (DeepSeek V2/V3, Kimi K2):  (kv_lora_rank + qk_rope_head_dim) * bytes/elem, one "head"
    + the sparse-attention indexer's key cache where there is one (DeepSeek-V3.2, GLM-5)
  linear attention (Gated DeltaNet):    0 per token; a constant state per sequence
  cross-attention (Mllama):             K/V of the encoder (image) tokens, constant per sequence
  no mixer (Nemotron-H MLP layers):     nothing
Sliding-window layers hold at most ``window`` tokens, chunked-local layers at most one chunk.
A layer that reads another layer's cache (``AttentionSpec.kv_shared_with``: Gemma-3n's last
``num_kv_shared_layers``) stores nothing: vLLM gives it no KV cache spec of its own
(``kv_sharing_target_layer_name``: vllm/model_executor/models/gemma3n.py@034f08e Gemma3nAttention),
llama.cpp allocates cache only for the first ``n_layer_kv_from_start`` layers
(src/llama-model.cpp, LLM_ARCH_GEMMA3N).
Sources: vllm/v1/kv_cache_interface.py (AttentionSpec.page_size_bytes, MLAAttentionSpec,
SlidingWindowSpec), llama.cpp src/llama-kv-cache.cpp; see docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from vramplan.errors import InputError
from vramplan.model.spec import AttentionSpec, ModelSpec

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
    d = kv_dtype.lower().replace("float16", "fp16").replace("bfloat16", "bf16")
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


def layer_bytes_per_token(attn: AttentionSpec, kv_dtype: str, tp: int = 1) -> int:
    """K+V bytes one token adds to one layer on one TP rank (0 for linear attention, no mixer and
    a layer that reuses another layer's cache; a cross-attention layer's per-token figure applies
    to its encoder tokens).

    An MLA layer with a sparse-attention indexer adds its key cache
    (``indexer_bytes_per_token``)."""
    if attn.kind in ("linear", "none") or attn.kv_shared_with is not None:
        return 0
    if attn.kind == "mla":
        return mla_row_bytes(attn, kv_dtype) + indexer_bytes_per_token(attn)
    heads = kv_heads_per_rank(attn, tp)
    return row_bytes(heads * attn.head_dim, kv_dtype) + row_bytes(heads * attn.v_head_dim,
                                                                   kv_dtype)


def linear_state_bytes(attn: AttentionSpec, state_dtype: str, tp: int = 1) -> int:
    """Constant per-sequence state of a Gated DeltaNet layer on one TP rank.

    conv state: (conv_kernel - 1) * (2*key_dim + value_dim); recurrent state:
    num_value_heads * key_head_dim * value_head_dim. Source: vllm/model_executor/layers/mamba/
    mamba_utils.py (MambaStateShapeCalculator.gated_delta_net_state_shape).
    """
    lin = attn.linear
    if lin is None:
        return 0
    key_dim = lin.num_key_heads * lin.key_head_dim
    value_dim = lin.num_value_heads * lin.value_head_dim
    conv = (lin.conv_kernel - 1) * (2 * key_dim + value_dim) // tp
    ssm = lin.num_value_heads * lin.key_head_dim * lin.value_head_dim // tp
    return row_bytes(conv + ssm, state_dtype)


def cached_tokens(attn: AttentionSpec, context_tokens: int) -> int:
    """Tokens a layer keeps for one sequence of ``context_tokens``: windowed layers are capped,
    cross-attention layers keep their encoder tokens whatever the text length."""
    if attn.kind in ("linear", "none") or attn.kv_shared_with is not None:
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
    state_bytes_per_sequence: int  # linear-attention (recurrent) state + cross-attention K/V
    full_layers: int
    windowed_layers: int
    linear_layers: int


@lru_cache(maxsize=512)
def summarize(spec: ModelSpec, kv_dtype: str, tp: int = 1) -> KvSummary:
    full = windowed = linear = 0
    per_tok = per_tok_all = window_b = state_b = 0
    for layer in spec.layers:
        a = layer.attention
        if a.kv_shared_with is not None or a.kind == "none":
            continue  # reads another layer's cache, or has no mixer: stores none
        b = layer_bytes_per_token(a, kv_dtype, tp)
        per_tok_all += b
        if a.kind == "linear":
            linear += 1
            state_b += linear_state_bytes(a, kv_dtype, tp)
        elif a.kind == "cross":
            per_tok_all -= b
            state_b += b * a.encoder_tokens
        elif a.kind in ("sliding", "chunked"):
            windowed += 1
            window_b += b * (a.window_tokens or 0)
        else:
            full += 1
            per_tok += b
    return KvSummary(kv_dtype, per_tok, per_tok_all, window_b, state_b, full, windowed, linear)


@lru_cache(maxsize=512)
def _layer_table(spec: ModelSpec, kv_dtype: str, tp: int) -> tuple[tuple[int, int, int, int], ...]:
    """Per layer: (index, bytes/token, window cap or 0, constant state bytes), cached."""
    out = []
    for layer in spec.layers:
        a = layer.attention
        if a.kind == "linear":
            out.append((layer.index, 0, 0, linear_state_bytes(a, kv_dtype, tp)))
        elif a.kind == "cross":
            out.append((layer.index, 0, 0, layer_bytes_per_token(a, kv_dtype, tp) *
                        a.encoder_tokens))
        else:
            cap = a.window_tokens if a.kind in ("sliding", "chunked") and a.window_tokens else 0
            out.append((layer.index, layer_bytes_per_token(a, kv_dtype, tp), cap or 0, 0))
    return tuple(out)


def kv_cache_bytes(spec: ModelSpec, context_tokens: int, sequences: int, kv_dtype: str,
                   tp: int = 1, layers: range | None = None) -> int:
    """Total KV bytes: Σ_layers bytes_per_token(layer) * min(context, window) * sequences + states.

    ``layers`` restricts the sum to one pipeline stage. Assumes no prefix sharing and every
    sequence at ``context_tokens``.
    """
    total = 0
    for idx, per_tok, cap, state in _layer_table(spec, kv_dtype, tp):
        if layers is not None and idx not in layers:
            continue
        tokens = min(context_tokens, cap) if cap else context_tokens
        total += (per_tok * tokens + state) * sequences
    return total
