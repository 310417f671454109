"""vLLM (V1 engine) memory model: the budget, the profile run, and the paged KV cache.

How vLLM sizes memory (restated from the sources read; ``@vX`` = the release wheel, its
commit in ``PROFILES``):

* budget = gpu_memory_utilization x total device memory (``Worker.init_device``,
  vllm/v1/worker/gpu_worker.py). Memory outside the budget is never used by vLLM itself except
  the CUDA context (and, from 0.11, NCCL set up before the baseline snapshot).
* ``Worker.determine_available_memory`` runs ``profile_run`` under ``memory_profiling``
  (vllm/utils/__init__.py@0.10.2, vllm/utils/mem_utils.py from 0.11): KV memory = budget -
  model weights - torch peak increase - non-torch increase [- CUDA graph estimate, applied by
  default from 0.20.0: envs.VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS defaults to 1 there].
* ``profile_run``: one dummy forward of max_num_batched_tokens tokens, then the dummy sampler on
  min(max_num_seqs, tokens) rows of fp32 logits with top-k and top-p set
  (``GPUModelRunner._dummy_sampler_run``).
* KV pages (vllm/v1/kv_cache_interface.py): page = block_size x kv_heads/rank x (K+V width) x
  dtype bytes (MLA: one latent, no x2). Hybrid models are grouped (vllm/v1/core/kv_cache_utils.py
  ``_get_kv_cache_groups_uniform_page_size``); num_blocks = available // (page x group_size);
  every worker uses the smallest num_blocks.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from functools import lru_cache

from vramplan.engines import multimodal
from vramplan.engines.base import EngineResult, Setup, register_engine
from vramplan.errors import InputError
from vramplan.host_ram import PROCESS_BASELINE_BYTES, vllm_host_ram
from vramplan.kv import (
    compressed_bytes_per_token,
    has_state,
    layer_bytes_per_token,
    linear_state_bytes,
    shares_kv,
    state_bytes_per_sequence,
    state_dtypes,
)
from vramplan.model.spec import ModelSpec
from vramplan.result import Component, DeviceEstimate
from vramplan.units import GIB, MIB

SRC = "vllm-project/vllm"


@dataclass(frozen=True, slots=True)
class Profile:
    """What changed between releases (each flag checked in that release's wheel)."""

    version: str
    commit: str  # vllm/_version.py __commit_id__ of the release wheel
    util_092: bool = False  # config/cache.py CacheConfig.gpu_memory_utilization 0.9 -> 0.92
    graph_estimate_applied: bool = False  # envs VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS default
    tokens_from_concurrency: bool = False  # "GPU KV cache size" = int(concurrency x len)
    sampler_inplace: bool = False  # Triton top-k/top-p in place for >= 8 rows (no full sort)
    graph_sizes_step16: bool = False  # capture sizes 8-step to 256, then 16-step
    tier_160gib: bool = False  # get_batch_defaults: >= 160 GiB GPUs get 16384 tokens
    typo_fixed: bool = False  # the max-len error spells "models's" up to 0.21
    gb10_small_tier: bool = False  # GB10 (cc 12.1) kept on the small batch tier

    @property
    def default_util(self) -> float:
        return 0.92 if self.util_092 else 0.9


def _profiles(rows: tuple[tuple[str, str, str], ...]) -> tuple[Profile, ...]:
    """Rows of (version, commit, flags switched on at that release); flags accumulate."""
    out, cur = [], Profile("", "")
    for version, commit, changes in rows:
        cur = replace(cur, version=version, commit=commit, **{f: True for f in changes.split()})
        out.append(cur)
    return tuple(out)


# SOURCE: the release wheels of vllm on PyPI, commit from vllm/_version.py (0.10.0 has none).
# A version between two rows behaves as the older row.
PROFILES: tuple[Profile, ...] = _profiles((
    ("0.10.0", "v0.10.0", ""), ("0.10.1.1", "g1da94e673", ""), ("0.10.2", "g26b999c71", ""),
    ("0.11.0", "gf71952c1c", ""), ("0.12.0", "g4fd9d6a85", "graph_sizes_step16"),
    ("0.13.0", "g72506c983", ""), ("0.14.1", "gd7de043d5", ""), ("0.16.0", "g89a77b108", ""),
    ("0.17.1", "g95c0f928c", "sampler_inplace"), ("0.19.1", "gb1388b1fb", ""),
    ("0.20.0", "gb8160878f", "util_092 graph_estimate_applied"),
    ("0.20.2", "gbc150f502", "tokens_from_concurrency"), ("0.21.0", "gad7125a43", ""),
    ("0.22.1", "g0decac0d9", "typo_fixed"), ("0.26.0", "gffd46bfab", ""),
    ("0.27.1", "g6e448d0ea", ""), ("0.28.0", "g2cf0a6915", "tier_160gib"),
    ("0.33.0", "g4ba787ec9", "gb10_small_tier"),
))

# ---------------------------------------------------------------- named constants
# SOURCE: config/cache.py CacheConfig.block_size default on CUDA (16 tokens).
DEFAULT_BLOCK_SIZE = 16
# SOURCE: config/cache.py BlockSize = Literal[1, 8, 16, 32, 64, 128] (the CLI's choices).
VLLM_BLOCK_SIZES = (1, 8, 16, 32, 64, 128)
# SOURCE: engine/arg_utils.py _set_default_args_v1 (0.10-0.11) / get_batch_defaults (0.12+),
# usage context OPENAI_API_SERVER (``vllm serve``): tokens, seqs per tier.
BATCH_TIER_SMALL = (2048, 256)  # < 70 GiB reported, or any A100
BATCH_TIER_LARGE = (8192, 1024)  # >= 70 GiB and not A100 (H100, H200, MI300X)
BATCH_TIER_HUGE = (16384, 1024)  # >= 160 GiB, from 0.28 (B200/B300)
# SOURCE: envs.VLLM_FUSED_MOE_CHUNK_SIZE default (fused_moe.py processes tokens in chunks).
FUSED_MOE_CHUNK_TOKENS = 32768
# Sampler bytes per logit element (rows x vocab) at its peak, during the full-vocab sort of
# apply_top_k_top_p (v1/sample/ops/topk_topp_sampler.py): model-dtype logits 2 + fp32 copy 4 +
# sorted values 4 + int64 indices 8 + radix-sort scratch (double-buffered keys 4 + values 8 and
# the int64 iota input 8) = 38. ASSUMPTION for the scratch term (cub segmented sort); the sum
# reproduces the llm-d H100 peaks (0.11.0: 4.76, 5.56, 5.64, 7.38 GiB) within 1-2 %.
SORT_SAMPLER_BYTES_PER_LOGIT = 38
# From 0.17 rows >= 8 use the in-place Triton top-k/top-p kernel (topk_topp_triton.py):
# logits 2 + fp32 copy 4 + softmax probs 4 + exponential noise 4 = 14. ASSUMPTION: the
# FlashInfer path (default from 0.21 on supported GPUs) needs no more than this.
INPLACE_SAMPLER_BYTES_PER_LOGIT = 14
INPLACE_SAMPLER_MIN_ROWS = 8
# ASSUMPTION (calibrated, scripts/accuracy.py --calibrate): memory per captured CUDA graph per
# piecewise segment (decoder layers + 1); the pool for the largest batch adds one forward.
GRAPH_BYTES_PER_SEGMENT = int(0.34 * MIB)
# Non-torch increase during profiling (cuBLAS/attention workspaces; NCCL and custom all-reduce
# buffers at tp*pp > 1). Measured: 0.02-0.33 GiB at TP=1 (median 0.13), 0.54 GiB at TP=2
# (llm-d-planner empirical table, H100, 0.11.0). ASSUMPTION: constant for every tp > 1.
NON_TORCH_TP1_BYTES = int(0.13 * GIB)
NON_TORCH_MULTI_GPU_EXTRA_BYTES = int(0.41 * GIB)
# ASSUMPTION: CUDA context + kernel images per process, outside the budget (ollama reserves
# 457 MiB per CUDA GPU for the same thing, ml/device.go MinimumMemory).
CUDA_CONTEXT_BYTES = 457 * MIB
VLLM_KV_DTYPES = ("fp32", "fp16", "bf16", "fp8", "fp8_e4m3", "fp8_e5m2")


def parse_version(text: str) -> tuple[int, ...]:
    """``0.26.1rc1.dev156+g0eec`` -> (0, 26, 1)."""
    m = re.match(r"v?(\d+(?:\.\d+)*)", text.strip())
    if not m:
        raise InputError("--engine", f"cannot read vLLM version {text!r}", "write e.g. vllm==0.11.0")
    return tuple(int(p) for p in m.group(1).split("."))


def select_profile(version: str | None) -> Profile:
    """The newest profile not newer than ``version`` (default: the newest known release)."""
    if not version:
        return PROFILES[-1]
    want = parse_version(version)
    if want < parse_version(PROFILES[0].version):
        raise InputError("--engine", f"vLLM {version} predates the V1 memory profiler modelled "
                         "here", f"use vllm=={PROFILES[0].version} or newer")
    best = [p for p in PROFILES if parse_version(p.version) <= want][-1]
    return replace(best, version=version) if best.version != version else best


# ---------------------------------------------------------------- defaults and sizes

def batch_defaults(prof: Profile, reported_bytes: int, gpu_name: str, cc: str) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) for ``vllm serve`` on this GPU (see BATCH_TIER_*)."""
    if prof.tier_160gib and reported_bytes >= 160 * GIB:
        return BATCH_TIER_HUGE
    gb10 = prof.gb10_small_tier and cc == "12.1"
    if reported_bytes >= 70 * GIB and "a100" not in gpu_name.lower() and not gb10:
        return BATCH_TIER_LARGE
    return BATCH_TIER_SMALL


def capture_sizes(prof: Profile, max_num_seqs: int, max_tokens: int) -> int:
    """Number of CUDA graph batch sizes: [1, 2, 4] + multiples of 8 (then 16 past 256) up to
    min(2 x max_num_seqs, 512) (config/vllm.py _set_cudagraph_sizes; 8-step only before 0.12)."""
    top = min(2 * max_num_seqs, 512, max_tokens) if prof.graph_sizes_step16 else \
        min(2 * max_num_seqs, 512)
    sizes = [s for s in (1, 2, 4) if s <= top]
    if prof.graph_sizes_step16:
        sizes += list(range(8, min(top, 255) + 1, 8)) + list(range(256, top + 1, 16))
    else:
        sizes += list(range(8, top + 1, 8))
    return len(sizes)


def rope_cache_bytes(spec: ModelSpec, act_bytes: int) -> int:
    """cos/sin cache of the rotary embedding: max_position_embeddings x rotary_dim x dtype bytes,
    one buffer shared by all layers (rotary_embedding/base.py, registered at load time so it is
    part of "Model loading took")."""
    a = spec.layers[0].attention
    rot = a.qk_rope_head_dim if a.kind == "mla" else a.head_dim
    return spec.max_position_embeddings * rot * act_bytes if a.kind != "linear" else 0


def mxfp4_marlin_factor(spec: ModelSpec, tp: int) -> float:
    """Marlin MXFP4 MoE pads each expert to intermediate%128 and hidden%256 on GPUs below SM90
    (quantization/mxfp4.py Mxfp4MoEMethod.create_weights): stored/checkpoint byte ratio."""
    m = next((lay.mlp for lay in spec.layers if lay.mlp.kind == "moe"), None)
    if m is None:
        return 1.0
    i = m.expert_intermediate_size // tp
    return (math.ceil(i / 128) * 128 * math.ceil(spec.hidden_size / 256) * 256) / \
        (i * spec.hidden_size)


# ---------------------------------------------------------------- activation peak

def forward_peak_bytes(spec: ModelSpec, tokens: int, tp: int, act_bytes: int) -> int:
    """Torch peak of one dummy forward over ``tokens`` tokens on one rank.

    tokens x dtype x (3H + max(attention, mlp)): residual, normed input and layer output [T, H]
    live across the layer; attention holds q/k/v + its output; a dense MLP holds gate_up (2I/tp)
    and the activation (I/tp); fused MoE holds router logits (E), the shared workspace
    top_k x max(2I/tp, H), the activation cache top_k x I/tp, its output H and a shared expert
    (3 x I_shared/tp) (fused_moe.py fused_experts_impl, chunks of FUSED_MOE_CHUNK_TOKENS).
    """
    h = spec.hidden_size
    widest = 0
    for layer in spec.layers:
        a, m = layer.attention, layer.mlp
        heads = max(1, a.num_heads // tp)
        if a.kind == "mla":
            attn = heads * (a.qk_nope_head_dim + a.qk_rope_head_dim) + a.kv_lora_rank + \
                a.qk_rope_head_dim + heads * (a.qk_nope_head_dim + 2 * a.v_head_dim)
        elif a.kind == "linear" and a.linear is not None:
            lin = a.linear
            attn = 2 * (2 * lin.num_key_heads * lin.key_head_dim +
                        2 * lin.num_value_heads * lin.value_head_dim) // tp
        elif a.kind == "linear" and a.mamba is not None:
            # ASSUMPTION: in_proj output (z, xBC, dt) and the conv output live together
            mb = a.mamba
            attn = 2 * (2 * mb.d_inner + 2 * mb.n_groups * mb.d_state + mb.num_heads) // tp
        elif a.kind == "none":
            attn = 0
        else:
            kv = max(1, a.num_kv_heads // tp)
            attn = heads * a.head_dim + 2 * kv * a.head_dim + heads * a.v_head_dim
        if m.kind == "moe":
            i = m.expert_intermediate_size // tp
            mlp = m.num_experts + m.top_k * (max(2 * i, h) + i) + h + \
                3 * m.shared_intermediate_size // tp
            mlp_tokens = min(tokens, FUSED_MOE_CHUNK_TOKENS)
            widest = max(widest, attn * tokens, mlp * mlp_tokens)
        else:
            widest = max(widest, attn * tokens, 3 * m.intermediate_size // tp * tokens)
    return (3 * h * tokens + widest) * act_bytes


def sampler_peak_bytes(prof: Profile, spec: ModelSpec, tokens: int, rows: int,
                       act_bytes: int) -> int:
    """Peak of the dummy sampler run: the forward's hidden states [T, H] stay alive, plus
    rows x vocab x bytes-per-logit (SORT_/INPLACE_SAMPLER_BYTES_PER_LOGIT); V1 gathers the full
    vocab on every TP rank."""
    inplace = prof.sampler_inplace and rows >= INPLACE_SAMPLER_MIN_ROWS
    per = INPLACE_SAMPLER_BYTES_PER_LOGIT if inplace else SORT_SAMPLER_BYTES_PER_LOGIT
    return tokens * spec.hidden_size * act_bytes + 2 * rows * spec.hidden_size * act_bytes + \
        rows * spec.vocab_size * per


# ---------------------------------------------------------------- KV cache specs

@dataclass(frozen=True, slots=True)
class LayerKv:
    kind: str  # full | sliding | chunked | mla | mamba
    page_bytes: int  # one block of one layer
    window: int = 0
    block_tokens: int = 0  # tokens per block when page unification enlarged it (0: the stage's)


def unify_page_sizes(specs: list[LayerKv], block: int) -> list[LayerKv]:
    """Attention layers with different page sizes (Gemma-4: 8 KV heads x 256 on sliding layers,
    2 x 512 on full ones) get the largest page: a smaller page's block holds ratio x more
    tokens (vllm/v1/core/kv_cache_utils.py unify_kv_cache_spec_page_size: block_size x
    max_page // page; vLLM raises NotImplementedError when the pages do not divide, then the
    pages are kept as they are here). Mamba pages are already padded to the attention page."""
    pages = {s.page_bytes for s in specs if s.kind != "mamba" and s.page_bytes}
    if len(pages) < 2:
        return specs
    top = max(pages)
    if any(top % p for p in pages):
        return specs
    return [s if s.kind == "mamba" or not s.page_bytes or s.page_bytes == top else
            LayerKv(s.kind, top, s.window, block * (top // s.page_bytes)) for s in specs]


def layer_kv_specs(spec: ModelSpec, layers: range, kv_dtype: str, tp: int,
                   block: int, conv_dtype: str | None = None,
                   ssm_dtype: str | None = None) -> tuple[list[LayerKv], int]:
    """Cached per (spec, stage, dtype, tp, block, state dtypes): see ``_layer_kv_specs``.
    The state dtypes default to ``kv.state_dtypes(spec)`` (vLLM's "auto")."""
    if conv_dtype is None or ssm_dtype is None:
        conv_dtype, ssm_dtype = state_dtypes(spec)
    specs, used = _layer_kv_specs(spec, layers, kv_dtype, tp, block, conv_dtype, ssm_dtype)
    return list(specs), used


@lru_cache(maxsize=512)
def _layer_kv_specs(spec: ModelSpec, layers: range, kv_dtype: str, tp: int,
                    block: int, conv_dtype: str, ssm_dtype: str
                    ) -> tuple[tuple[LayerKv, ...], int]:
    """Per-layer KV spec of one pipeline stage and the block size actually used.

    Mamba/linear-attention hybrids raise the attention block to 16 x cdiv(state, 16 x
    attention page per token) and pad the state to that page (model_executor/models/config.py
    HybridAttentionMambaModelConfig, prefix caching off). A layer's state is its MambaSpec
    page (conv state in ``conv_dtype`` + SSM state in ``ssm_dtype``, v1/kv_cache_interface.py
    MambaSpec.page_size_bytes); layers without a mixer (kind "none") register no cache; a
    Falcon-H1 layer registers both an attention and a mamba cache."""
    # a layer reading another layer's cache (kv_sharing_target_layer_name) has no KV spec
    sel = [lay.attention for lay in spec.layers if lay.index in layers
           and not shares_kv(lay.attention)]
    states = [linear_state_bytes(a, conv_dtype, tp, ssm_dtype) for a in sel if has_state(a)]
    per_tok = [layer_bytes_per_token(a, kv_dtype, tp) for a in sel if a.has_kv]
    if states and per_tok:
        need = 16 * math.ceil(max(states) / (16 * per_tok[0]))
        block = max(block, need)
    out: list[LayerKv] = []
    for a in sel:
        if has_state(a):
            state = linear_state_bytes(a, conv_dtype, tp, ssm_dtype)
            out.append(LayerKv("mamba", block * per_tok[0] if per_tok else state))
        if a.kind in ("linear", "none"):
            continue
        page = block * layer_bytes_per_token(a, kv_dtype, tp)
        kind = a.kind
        if kind == "cross":  # CrossAttentionSpec: sized by the encoder tokens
            out.append(LayerKv("cross", page, a.encoder_tokens))
            continue
        out.append(LayerKv(kind, page, a.window_tokens or 0 if kind in ("sliding", "chunked")
                           else 0))
        if a.compress_rate:  # DeepSeek-V4 compressed entries: a cache growing with the context
            # ASSUMPTION: one full-attention-like spec of compressed bytes per token
            out.append(LayerKv("full", block * compressed_bytes_per_token(a, kv_dtype)))
    return tuple(unify_page_sizes(out, block)), block


def blocks_per_request(lk: LayerKv, max_len: int, batched: int, block: int) -> int:
    """Blocks one request of ``max_len`` tokens holds in a layer (KVCacheSpec
    max_memory_usage_bytes / page): full and MLA cdiv(len, block); sliding window
    cdiv(min(window - 1 + batched, len), block) + 1; chunked cdiv(min(chunk + batched, len),
    block); mamba 1; cross-attention cdiv(encoder tokens, block) (vllm/v1/kv_cache_interface.py
    CrossAttentionSpec.max_memory_usage_bytes: max_num_encoder_input_tokens)."""
    if lk.kind == "mamba":
        return 1
    block = lk.block_tokens or block
    if lk.kind == "cross":
        return -(-lk.window // block)
    if lk.kind == "sliding" and lk.window:
        return -(-min(lk.window - 1 + batched, max_len) // block) + 1
    if lk.kind == "chunked" and lk.window:
        return -(-min(lk.window + batched, max_len) // block)
    return -(-max_len // block)


def kv_groups(specs: list[LayerKv]) -> tuple[int, list[LayerKv]]:
    """(group_size, one representative spec per KV cache group): layers of one type are split
    into groups of the smallest type's layer count (kv_cache_utils.py
    _get_kv_cache_groups_uniform_page_size); a uniform model is one group of all layers."""
    types: dict[tuple[str, int, int], list[LayerKv]] = {}
    for s in specs:
        types.setdefault((s.kind, s.window, s.block_tokens), []).append(s)
    if len(types) == 1:
        return len(specs), [specs[0]]
    size = min(len(v) for v in types.values())
    groups = [v[0] for v in types.values() for _ in range(-(-len(v) // size))]
    return size, groups


def needed_bytes(specs: list[LayerKv], max_len: int, batched: int, block: int) -> int:
    """KV bytes one request of ``max_len`` needs on this stage (max_memory_usage_bytes summed)."""
    return sum(blocks_per_request(s, max_len, batched, block) * s.page_bytes for s in specs)


def estimate_max_len(specs: list[LayerKv], max_len: int, batched: int, block: int,
                     available: int) -> int:
    """Binary search over [1, max_len] for the longest request that fits (estimate_max_model_len)."""
    if needed_bytes(specs, 1, batched, block) > available:
        return 0
    lo, hi, best = 1, max_len, 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if needed_bytes(specs, mid, batched, block) <= available:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


# ---------------------------------------------------------------- the engine

@dataclass(frozen=True, slots=True)
class StagePlan:
    """One pipeline stage (every TP rank of it is identical)."""

    weights: int
    activation: int
    non_torch: int
    graph: int
    available_kv: int
    specs: list[LayerKv]
    block: int


def allocated_kv_bytes(s: StagePlan) -> int:
    """KV tensors a worker allocates: its own num_blocks x page x group_size. Workers keep their
    tensors when the engine lowers num_blocks to the smallest worker's (unify_kv_cache_configs
    only shrinks the count), so each GPU fills its budget."""
    if not s.specs or s.available_kv <= 0:
        return 0
    size, _ = kv_groups(s.specs)
    return s.available_kv // (s.specs[0].page_bytes * size) * s.specs[0].page_bytes * size


def _opt(setup: Setup, name: str) -> object:
    return setup.workload.options.get(name)


def _gib(b: int | float) -> str:
    return f"{b / GIB:.2f} GiB"


class VllmEngine:
    name = "vllm"
    tensor_parallel = True  # shards tensors over --tensor-parallel-size ranks
    # --dtype auto casts a float32 checkpoint to 16-bit: "Following the common practice, we use
    # float16 for float32 models" (vllm/config.py _get_and_verify_dtype, v0.5-0.10.0); from 0.10.1
    # the platform's preferred dtype (bfloat16 on Ampere+). Both are 2 bytes per weight.
    fp32_served_as = "bfloat16"

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.version = profile.version

    # -- inputs ----------------------------------------------------------------------------
    def _settings(self, setup: Setup) -> dict[str, int | float | bool]:
        prof, wl, spec, gpu = self.profile, setup.workload, setup.model.inventory.spec, setup.gpu
        util = _opt(setup, "gpu_memory_utilization")
        util_f = prof.default_util if util is None else float(str(util))
        if not 0 < util_f <= 1:
            raise InputError("--gpu-memory-utilization", f"must be in (0, 1], got {util_f}",
                             f"e.g. --gpu-memory-utilization {prof.default_util}")
        if setup.parallel.devices > setup.gpu_count:
            raise InputError("--tp/--pp", f"tp x pp = {setup.parallel.devices} needs more GPUs "
                             f"than the {setup.gpu_count} given",
                             f"use --gpus {setup.parallel.devices} or lower --tp/--pp")
        if wl.kv_dtype not in VLLM_KV_DTYPES:
            raise InputError("--kv-dtype", f"vLLM has no {wl.kv_dtype} KV cache",
                             "use auto, fp16, bf16 or fp8")
        mml_opt = _opt(setup, "max_model_len")
        if mml_opt is not None:
            mml = int(str(mml_opt))
        elif not wl.context_is_default:
            mml = wl.context_tokens
        else:
            mml = spec.max_position_embeddings  # ModelConfig: derived from the HF config
        if mml < 1:
            raise InputError("--max-model-len", f"must be at least 1, got {mml}", "e.g. 8192")
        d_tokens, d_seqs = batch_defaults(prof, gpu.memory_reported_bytes, gpu.name,
                                          gpu.cuda_compute_capability)
        seqs_opt, tok_opt = _opt(setup, "max_num_seqs"), _opt(setup, "max_num_batched_tokens")
        tokens = int(str(tok_opt)) if tok_opt is not None else min(d_tokens, d_seqs * mml)
        seqs = int(str(seqs_opt)) if seqs_opt is not None else min(d_seqs, tokens)
        if tokens < 1 or seqs < 1:
            raise InputError("--max-num-seqs/--max-num-batched-tokens", "must be at least 1",
                             "e.g. --max-num-seqs 256")
        if seqs > tokens:  # SchedulerConfig validation
            raise InputError("--max-num-batched-tokens", f"{tokens} is below max_num_seqs {seqs}",
                             f"use --max-num-batched-tokens {seqs} or more")
        block_opt = _opt(setup, "block_size")
        block = int(str(block_opt)) if block_opt is not None else DEFAULT_BLOCK_SIZE
        if block not in VLLM_BLOCK_SIZES:
            raise InputError("--block-size", f"{block} is not a vLLM block size",
                             f"use one of {', '.join(map(str, VLLM_BLOCK_SIZES))} (default 16)")
        if block < 1:
            raise InputError("--block-size", f"must be positive, got {block}", "use 16")
        offload = float(str(_opt(setup, "cpu_offload_gb") or 0.0))
        if offload < 0:
            raise InputError("--cpu-offload-gb", "must be >= 0", "e.g. --cpu-offload-gb 8")
        return {"util": util_f, "mml": mml, "tokens": tokens, "seqs": seqs, "block": block,
                "eager": bool(_opt(setup, "enforce_eager")), "offload": offload}

    # -- one stage ---------------------------------------------------------------------------
    def _stage(self, setup: Setup, st: dict[str, int | float | bool], stage: int) -> StagePlan:
        prof, spec, par = self.profile, setup.model.inventory.spec, setup.parallel
        shard = setup.shards[stage]
        act_bytes = spec.bytes_per_param
        w = shard.weights_bytes
        if setup.model.scheme.method == "mxfp4" and setup.gpu.cuda_compute_capability and \
                setup.gpu.cuda_compute_capability < "9.0":
            ex = shard.bytes_by_role.get("routed_expert", 0)
            w += int(ex * (mxfp4_marlin_factor(spec, 1 if par.ep else par.tp) - 1))
        w += rope_cache_bytes(spec, act_bytes)
        mm = multimodal.vllm_stage(setup, st, stage)  # encoder TP split, encoder profile run
        w += mm.weights_delta_bytes
        w = max(0, w - int(float(st["offload"]) * GIB))
        tokens, seqs = int(st["tokens"]), int(st["seqs"])
        act = forward_peak_bytes(spec, tokens, par.tp, act_bytes)
        if shard.has_head:
            act = max(act, sampler_peak_bytes(prof, spec, tokens, min(seqs, tokens), act_bytes))
        act = mm.activation(act)
        non_torch = NON_TORCH_TP1_BYTES + (NON_TORCH_MULTI_GPU_EXTRA_BYTES
                                           if par.devices > 1 else 0)
        graph = 0
        if not st["eager"]:
            n = capture_sizes(prof, seqs, tokens)
            graph = n * (len(shard.layers) + 1) * GRAPH_BYTES_PER_SEGMENT
        budget = int(setup.gpu.memory_reported_bytes * float(st["util"]))
        avail = budget - w - act - non_torch - (graph if prof.graph_estimate_applied else 0)
        conv_dt, ssm_dt = self._state_dtypes(setup)
        specs, block = layer_kv_specs(spec, shard.layers, setup.workload.kv_dtype,
                                      par.tp, int(st["block"]), conv_dt, ssm_dt)
        return StagePlan(w, act, non_torch, graph, avail, specs, block)

    @staticmethod
    def _state_dtypes(setup: Setup) -> tuple[str, str]:
        """(conv, SSM) state dtypes from --mamba-cache-dtype / --mamba-ssm-cache-dtype
        (CacheConfig, default "auto"; ``kv.state_dtypes``)."""
        spec = setup.model.inventory.spec
        conv = str(_opt(setup, "mamba_cache_dtype") or "auto")
        ssm = str(_opt(setup, "mamba_ssm_cache_dtype") or "auto")
        for flag, val in (("--mamba-cache-dtype", conv), ("--mamba-ssm-cache-dtype", ssm)):
            if val not in ("auto", "float32", "float16", "bfloat16", "fp32", "fp16", "bf16"):
                raise InputError(flag, f"vLLM has no {val!r} mamba state dtype",
                                 "use auto, float32, float16 or bfloat16")
        return state_dtypes(spec, conv, ssm)

    # -- the estimate ------------------------------------------------------------------------
    def estimate(self, setup: Setup) -> EngineResult:
        prof, wl, par, gpu = self.profile, setup.workload, setup.parallel, setup.gpu
        spec = setup.model.inventory.spec
        st = self._settings(setup)
        util, mml = float(st["util"]), int(st["mml"])
        stages = [self._stage(setup, st, s) for s in range(len(setup.shards))]
        total = gpu.memory_reported_bytes
        budget = int(total * util)
        failure, fix, notes = None, None, []
        if spec.model_type.startswith("mllama") and \
                tuple(int(x) for x in prof.version.split(".")[:2]) >= (0, 11):
            failure = ("vLLM no longer serves MllamaForConditionalGeneration: it was removed with "
                       "the V0 engine (vllm PR #24907, in v0.11.0)")
            fix = "use --engine transformers, or vLLM 0.10.x (--engine vllm==0.10.2)"
        if failure is None and mml > spec.max_position_embeddings:
            failure = (f"vLLM refuses max_model_len {mml:,}: above the model's "
                       f"max_position_embeddings {spec.max_position_embeddings:,} "
                       "(ModelConfig max-length check)")
            fix = (f"--max-model-len {spec.max_position_embeddings} "
                   "(or VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 with RoPE scaling)")
        tight = min(stages, key=lambda s: s.available_kv)
        group_size, groups = kv_groups(tight.specs) if tight.specs else (1, [])
        page = tight.specs[0].page_bytes if tight.specs else 0
        tokens_batched = int(st["tokens"])
        blocks_req = sum(blocks_per_request(g, mml, tokens_batched, tight.block) for g in groups)
        num_blocks = min(max(0, s.available_kv) // (page * group_size) if page else 0
                         for s in stages)
        concurrency = num_blocks / blocks_req if blocks_req else 0.0
        if prof.tokens_from_concurrency:
            kv_tokens = int(concurrency * mml)
        else:
            kv_tokens = num_blocks // max(1, len(groups)) * tight.block
        if failure is None:
            failure, fix = self._failure(setup, st, stages, total, budget)
        if failure is None and tight.specs:
            need = needed_bytes(tight.specs, mml, tokens_batched, tight.block)
            if need > tight.available_kv:
                best = estimate_max_len(tight.specs, mml, tokens_batched, tight.block,
                                        tight.available_kv)
                owner = "model's" if prof.typo_fixed else "models's"
                failure = (f"vLLM stops at KV sizing: one request at the {owner} max seq len "
                           f"({mml}) needs {_gib(need)} of KV cache, more than the "
                           f"{_gib(tight.available_kv)} available"
                           + (f"; its estimated maximum model length is {best}" if best else ""))
                fix = (f"--max-model-len {best}" if best else "more GPUs") + \
                    " or a higher --gpu-memory-utilization"
        if setup.model.scheme.source == "--quant" and setup.model.scheme.method in ("awq", "gptq"):
            notes.append(f"vLLM cannot quantize to {setup.model.scheme.method} at load time: the "
                         "estimate stands for a pre-quantized checkpoint of this model")
        if failure is None and wl.batch > concurrency:
            notes.append(f"KV cache holds {concurrency:.2f} requests of {mml:,} tokens; "
                         f"{wl.batch} concurrent requests will queue")
        ok = failure is None
        devices = []
        for s_idx, s in enumerate(stages):
            kv_bytes = allocated_kv_bytes(s) if ok else 0
            comps = self._components(s, kv_bytes, util, total, budget, ok)
            for r in range(par.tp):
                idx = s_idx * par.tp + r
                devices.append(DeviceEstimate(f"GPU{idx}", "gpu", gpu.name, total, comps))
        hr = vllm_host_ram(setup.model, par.devices, int(float(st["offload"]) * GIB))
        host = hr.anonymous_peak_bytes
        ram = setup.host_ram_bytes
        if ram is not None and host > ram and (failure is None or hr.pinned_offload_bytes):
            failure = (f"host RAM: {_gib(host)} of anonymous memory ({_gib(hr.pinned_offload_bytes)}"
                       f" pinned by --cpu-offload-gb, {hr.processes} processes x "
                       f"{_gib(PROCESS_BASELINE_BYTES)}) > {_gib(ram)} of RAM: the kernel's OOM "
                       "killer ends vLLM while it loads (pinned pages cannot be swapped)")
            fix = ("lower --cpu-offload-gb, add RAM, or use more GPUs; for MoE models, llama.cpp "
                   "with --n-cpu-moe keeps the experts in mmap'd, reclaimable page cache")
        figures = self._figures(st, stages, num_blocks, page, group_size, kv_tokens,
                                concurrency, tight.block, ok)
        figures["kv_bytes_per_request"] = max(
            (needed_bytes(s.specs, mml, tokens_batched, s.block) for s in stages), default=0)
        figures["unreserved_bytes"] = total - budget
        conv_dt, ssm_dt = self._state_dtypes(setup)
        state = state_bytes_per_sequence(spec, conv_dt, ssm_dt)
        if state:
            # one copy of the recurrent state (no TP split) at vLLM's state dtypes; each state
            # layer holds one page per request, padded to the attention page
            figures["state_bytes_per_sequence"] = state
            figures["mamba_state_dtypes"] = [conv_dt, ssm_dt]
            figures["mamba_page_bytes"] = next(
                (s.page_bytes for s in tight.specs if s.kind == "mamba"), 0)
        figures["host_ram"] = hr.as_dict()
        if mm_figs := multimodal.vllm_stage(setup, st, 0).figures:
            figures["multimodal"] = mm_figs
        return EngineResult(devices=tuple(devices), host_ram_bytes=host, figures=figures,
                            assumptions=self._assumptions(st, stages), failure=failure, fix=fix,
                            command=self._command(setup, st), notes=tuple(notes),
                            context_tokens=int(st["mml"]))

    def _failure(self, setup: Setup, st: dict[str, int | float | bool], stages: list[StagePlan],
                 total: int, budget: int) -> tuple[str | None, str | None]:
        """vLLM's first failure in start-up order: snapshot check, weight load, profile run,
        KV sizing (the max-len check is done by the caller)."""
        util = float(st["util"])
        free = total - CUDA_CONTEXT_BYTES
        if free < budget:
            top = math.floor(free / total * 100) / 100
            return (f"vLLM refuses to start: free memory after the CUDA context ({_gib(free)} of "
                    f"{_gib(total)}) is below the requested {util} x total = {_gib(budget)} "
                    "(Worker.init_device snapshot check)",
                    f"--gpu-memory-utilization {top}")
        worst = max(stages, key=lambda s: s.weights)
        per_gpu_room = budget - worst.activation - worst.non_torch
        tp = setup.parallel.tp
        if worst.weights > free:
            need = worst.weights * tp
            n = 1
            while n * max(1, per_gpu_room) < need * 1.15 and n < 1024:
                n *= 2
            off = math.ceil((worst.weights - per_gpu_room * 0.85) / GIB)
            return (f"CUDA out of memory while loading weights: {_gib(worst.weights)} per GPU "
                    f"cannot load into {_gib(free)} free on {setup.gpu.name} (torch "
                    "OutOfMemoryError in load_model)",
                    f"--tensor-parallel-size {n} on {n} GPUs, or --cpu-offload-gb {off}, or a "
                    "smaller quantization")
        peak = max(stages, key=lambda s: s.weights + s.activation + s.non_torch)
        if peak.weights + peak.activation + peak.non_torch > free:
            return (f"CUDA out of memory in the profile run: weights {_gib(peak.weights)} + "
                    f"activation peak {_gib(peak.activation)} exceed {_gib(free)}",
                    "lower --max-num-batched-tokens and --max-num-seqs, or use more GPUs")
        tight = min(stages, key=lambda s: s.available_kv)
        if tight.available_kv <= 0 and tight.specs:
            used = budget - tight.available_kv
            u = math.ceil((used / total + 0.02) * 100) / 100
            return (f"vLLM stops with \"No available memory for the cache blocks\": weights, "
                    f"activations and overheads take {_gib(used)} of the {util} x "
                    f"{_gib(total)} = {_gib(budget)} budget",
                    f"--gpu-memory-utilization {u}" if u <= 0.98 else
                    "more GPUs (--tensor-parallel-size) or --cpu-offload-gb")
        return None, None

    def _components(self, s: StagePlan, kv_bytes: int, util: float, total: int, budget: int,
                    ok: bool) -> tuple[Component, ...]:
        prof = self.profile
        src = f"{SRC} v1/worker/gpu_worker.py@{prof.commit}"
        graph_where = ("estimated and subtracted before KV sizing" if prof.graph_estimate_applied
                       else "captured after KV allocation, in the (1 - util) headroom")
        return (
            Component("model weights", s.weights, "per-rank shard + rotary cos/sin cache",
                      "vramplan.placement; vLLM \"Model loading took\"", "weights"),
            Component("activation peak", s.activation, "max(dummy forward of "
                      "max_num_batched_tokens, hidden states + sampler logits)",
                      f"{SRC} GPUModelRunner.profile_run@{prof.commit}", "activation"),
            Component("non-torch memory", s.non_torch, "cuBLAS/attention workspaces"
                      " (+ NCCL/all-reduce buffers when tp*pp > 1)",
                      "measured medians (ASSUMPTION)", "overhead"),
            Component("CUDA graph", s.graph, graph_where, src, "overhead"),
            Component("KV cache", kv_bytes, f"available = {util} x {_gib(total)} - weights - "
                      "activation - non-torch" + (" - CUDA graph" if prof.graph_estimate_applied
                                                  else ""), src, "kv_cache"),
            Component("CUDA context", CUDA_CONTEXT_BYTES, "outside the budget",
                      "ollama ml/device.go MinimumMemory (ASSUMPTION)", "overhead"),
        )

    def _figures(self, st: dict[str, int | float | bool], stages: list[StagePlan],
                 num_blocks: int, page: int, group_size: int, kv_tokens: int,
                 concurrency: float, block: int, ok: bool) -> dict[str, object]:
        ranks = [{"weights_bytes": s.weights, "activation_peak_bytes": s.activation,
                  "non_torch_bytes": s.non_torch, "cuda_graph_bytes": s.graph,
                  "kv_cache_bytes": allocated_kv_bytes(s) if ok else 0,
                  "available_kv_cache_bytes": s.available_kv} for s in stages]
        return {"ranks": ranks, "kv_cache_tokens": kv_tokens if ok else 0,
                "max_concurrency": round(concurrency, 2) if ok else 0.0,
                "num_gpu_blocks": num_blocks, "block_size": block,
                "gpu_memory_utilization": float(st["util"]), "max_model_len": int(st["mml"]),
                "max_num_seqs": int(st["seqs"]),
                "max_num_batched_tokens": int(st["tokens"]), "vllm_version": self.version,
                "vllm_commit": self.profile.commit}

    def _assumptions(self, st: dict[str, int | float | bool],
                     stages: list[StagePlan]) -> tuple[str, ...]:
        prof, util = self.profile, float(st["util"])
        out = [f"vLLM {prof.version} (profile from release {prof.commit}); `vllm serve` batch "
               f"defaults: max_num_batched_tokens {st['tokens']}, max_num_seqs {st['seqs']}",
               f"vLLM preallocates {util} of the GPU; the unreserved {1 - util:.2f} is free in "
               "nvidia-smi" + ("" if prof.graph_estimate_applied else
                               " except the CUDA graphs captured into it"),
               "non-torch memory and CUDA context are medians of measured runs (ASSUMPTION)"]
        if st["eager"]:
            out.append("--enforce-eager: no CUDA graphs")
        if any(sp.kind == "mamba" for s in stages for sp in s.specs):
            out.append(f"hybrid Mamba/linear-attention model: prefix caching off (the hybrid "
                       f"default since PR #23716), so the attention block is raised to "
                       f"{max(s.block for s in stages)} tokens and each state layer holds one "
                       "state page per request, padded to the attention page. ASSUMPTION: "
                       "builds with PR #50991 (Aug 2026) turn prefix caching on for hybrids "
                       "(mamba_cache_mode align: chunk-aligned blocks, more state pages) - "
                       "not modelled")
        return tuple(out)

    def _command(self, setup: Setup, st: dict[str, int | float | bool]) -> str:
        par, qm, wl = setup.parallel, setup.model, setup.workload
        parts = ["vllm serve", qm.inventory.spec.model_id,
                 f"--tensor-parallel-size {par.tp}"]
        if par.pp > 1:
            parts.append(f"--pipeline-parallel-size {par.pp}")
        parts += [f"--max-model-len {st['mml']}", f"--gpu-memory-utilization {st['util']}"]
        if qm.scheme.source == "--quant" and qm.scheme.method != "none":
            meth = {"bnb-nf4": "bitsandbytes", "bnb-fp4": "bitsandbytes",
                    "bnb-int8": "bitsandbytes"}.get(qm.scheme.method, qm.scheme.method)
            parts.append(f"--quantization {meth}")
        if wl.kv_dtype.startswith("fp8"):
            parts.append(f"--kv-cache-dtype {wl.kv_dtype}")
        for flag, name in (("--max-num-seqs", "max_num_seqs"),
                           ("--max-num-batched-tokens", "max_num_batched_tokens"),
                           ("--block-size", "block_size"), ("--cpu-offload-gb", "cpu_offload_gb"),
                           ("--mamba-cache-dtype", "mamba_cache_dtype"),
                           ("--mamba-ssm-cache-dtype", "mamba_ssm_cache_dtype")):
            if _opt(setup, name) is not None:
                parts.append(f"{flag} {_opt(setup, name)}")
        if st["eager"]:
            parts.append("--enforce-eager")
        parts += multimodal.vllm_stage(setup, st, 0).flags
        if par.ep:
            parts.append("--enable-expert-parallel")
        return " ".join(parts)


def factory(version: str | None) -> VllmEngine:
    """``get_engine("vllm==0.10.2")`` -> the 0.10.2 profile; no version: the newest."""
    return VllmEngine(select_profile(version))


register_engine("vllm", factory)
