"""SGLang engine model: a static share of GPU memory for weights + the KV pool, the rest headroom.

Mechanism (restated from the sources below; nothing is profiled by running a forward):
  pre    = free memory after CUDA/NCCL init, min over ranks      (init_torch_distributed)
  rest   = free_after_weights - pre * (1 - mem_fraction_static)   (_profile_available_bytes)
         = mem_fraction_static * pre - weights_delta
  tokens = rest // cell_size, rounded down to page_size, capped by --max-total-tokens,
           min over pipeline stages                              (DefaultPoolConfigurator)
  cell   = sum over attention layers of kv_heads_per_rank * (head_dim + v_head_dim) * bytes
           (MLA: (kv_lora_rank + qk_rope_head_dim) * bytes, replicated on every TP rank)
  hybrid sliding-window models: cell = full_per_token * n_full + ratio * swa_per_token * n_swa;
           full pool = tokens, SWA pool = int(tokens * ratio), ratio = --swa-full-tokens-ratio 0.8
The default mem_fraction_static = round((gpu_mem - reserved) / gpu_mem, 3) with reserved in MiB
from chunked_prefill_size, the decode CUDA-graph max batch and tp*pp (_handle_gpu_memory_settings).

Sources (file@commit, sgl-project/sglang):
  python/sglang/srt/server_args.py@001067ff (_handle_gpu_memory_settings, reserve_for_graph_mb,
    _generate_prefill_cuda_graph_batch_sizes); @469c63e5 (v0.1: fraction by tp size)
  python/sglang/srt/mem_cache/kv_cache_configurator.py@003fca80 (_profile_available_bytes and its
    ValueError text, resolve_max_num_reqs, _apply_token_constraints)
  python/sglang/srt/model_executor/pool_configurator.py@003fca80 (cell sizes, hybrid SWA split,
    MemoryPoolConfig "Not enough memory" RuntimeError)
  python/sglang/srt/model_executor/cuda_graph_config.py@08d6c016 (prefill graph default on CUDA)
  python/sglang/srt/mem_cache/kv_cache_configurator.py@003fca80 (_handle_max_mamba_cache,
    _calculate_mamba_ratio, resolve_max_num_reqs) and python/sglang/srt/configs/mamba_utils.py
    @02e208de (mamba2_state_dtype, Mamba2StateShape, mamba_cache_per_req): hybrid Mamba/GDN
    models first take a state pool out of ``rest`` (``mamba_pool``), then size the KV pool.
Version 0.5 (before the prefill CUDA-graph reserve) is taken from ../shared/research/engines.md
section 5 (secondary).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vramplan.engines import multimodal
from vramplan.engines.base import EngineResult, Setup, register_engine
from vramplan.engines.generic import CUDA_CONTEXT_BYTES, NCCL_BYTES, activation_peak_bytes
from vramplan.errors import InputError
from vramplan.kv import has_state, layer_bytes_per_token, linear_state_bytes, row_bytes
from vramplan.model.spec import ModelSpec
from vramplan.placement import StageShard
from vramplan.result import Component, DeviceEstimate
from vramplan.units import MIB, fmt_bytes

SRC_ARGS = "sglang server_args.py@001067ff _handle_gpu_memory_settings"
SRC_POOL = "sglang kv_cache_configurator.py@003fca80 _profile_available_bytes"
SRC_CELL = "sglang pool_configurator.py@003fca80 DefaultPoolConfigurator/HybridSWAPoolConfigurator"
SRC_MAMBA = "sglang kv_cache_configurator.py@003fca80 _handle_max_mamba_cache"
SWA_FULL_TOKENS_RATIO = 0.8  # SOURCE: ServerArgs.swa_full_tokens_ratio default (server_args.py)
METADATA_MIB = 512  # SOURCE: server_args.py reserve "Constant meta data (e.g., from attention backend)"
# ASSUMPTION: the CUDA caching allocator rounds each large weight allocation up to 2 MiB, wasting
# 1 MiB on average; SGLang's "mem usage" after loading is a free-memory delta that includes it.
ROUNDING_BYTES_PER_TENSOR = 1 * MIB
KV_DTYPE_FLAG = {"fp8": "fp8_e4m3", "fp8_e4m3": "fp8_e4m3", "fp8_e5m2": "fp8_e5m2"}
# SOURCE: ServerArgs.mamba_full_memory_ratio default: the state pool gets r / (1 + r) of rest.
MAMBA_FULL_MEMORY_RATIO = 0.9
# SOURCE: kv_cache_configurator.py MAMBA_CACHE_SIZE_MAX_RUNNING_REQUESTS_RATIO: state slots per
# running request (radix cache on, mamba_scheduler_strategy "no_buffer"; 1 with the radix cache
# disabled).
MAMBA_SLOTS_PER_REQUEST = 3
# SOURCE: configs/mamba_utils.py mamba2_state_dtype: conv state bfloat16 (SGLANG_MAMBA_CONV_DTYPE
# unset), SSM state float32 unless --mamba-ssm-dtype / config mamba_ssm_dtype says otherwise.
MAMBA_CONV_DTYPE = "bf16"
MAMBA_SSM_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


@dataclass(frozen=True, slots=True)
class SglangProfile:
    version: str
    fraction_rule: str  # "tp_table" (v0.1) | "reserve"
    prefill_graph_reserve: bool  # reserve_for_graph_mb counts prefill CUDA graphs (2026 main)
    source: str


PROFILES: dict[str, SglangProfile] = {
    "0.1": SglangProfile("0.1", "tp_table", False, "sglang server_args.py@469c63e5 __post_init__"),
    "0.5": SglangProfile("0.5", "reserve", False, "shared/research/engines.md section 5"),
    "main": SglangProfile("main", "reserve", True, SRC_ARGS),
}


def chunk_and_graph_defaults(gpu_mem_mib: float, tp: int) -> tuple[int, int]:
    """(chunked_prefill_size, decode cuda-graph max_bs) by GPU memory (server_args.py table)."""
    if gpu_mem_mib < 20 * 1024:
        return 2048, 8
    if gpu_mem_mib < 35 * 1024:
        return 2048, 24 if tp < 4 else 80
    if gpu_mem_mib < 60 * 1024:
        return 4096, 32 if tp < 4 else 160
    if gpu_mem_mib < 160 * 1024:
        return 8192, 256 if tp < 4 else 512
    return 16384, 512


def prefill_graph_sizes(max_bs: int) -> int:
    """Number of prefill CUDA-graph token sizes captured up to ``max_bs`` (server_args.py)."""
    sizes = [*range(4, 33, 4), *range(48, 257, 16), *range(288, 513, 32), *range(576, 1025, 64),
             *range(1280, 4097, 256), *range(4608, max_bs + 1, 512)]
    return sum(1 for s in sizes if s <= max_bs)


def default_mem_fraction(profile: SglangProfile, gpu_mem_mib: float, tp: int, pp: int, chunk: int,
                         max_bs: int, mla: bool, cuda: bool) -> tuple[float, float]:
    """Default mem_fraction_static and the reserved MiB behind it.

    reserve rule: reserved = 512 + 1.5 * max(chunk, 2048) + tp*pp/8 * 1024 + 2 * max_bs
      (+ prefill graphs on CUDA: 8 MiB per captured size, MLA 1.5 GiB; main only),
      floored at 10 GiB when gpu_mem > 60 GiB; fraction = round((gpu_mem - reserved)/gpu_mem, 3).
    tp_table rule (v0.1): 0.90 / 0.85 (tp>=2) / 0.82 (tp>=4) / 0.80 (tp>=8).
    """
    if profile.fraction_rule == "tp_table":
        return (0.80 if tp >= 8 else 0.82 if tp >= 4 else 0.85 if tp >= 2 else 0.90), 0.0
    reserved = METADATA_MIB + max(chunk, 2048) * 1.5 + tp * pp / 8 * 1024 + max_bs * 2
    if profile.prefill_graph_reserve and cuda:
        reserved += 1.5 * 1024 if mla else prefill_graph_sizes(chunk if not mla else 2048) * 8
    if gpu_mem_mib > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return round((gpu_mem_mib - reserved) / gpu_mem_mib, 3), reserved


def min_viable_fraction(available_after_weights: float, pre_model_load: float) -> float:
    """SGLang's "minimum viable = 1 - available/pre" (kv_cache_configurator.py ValueError)."""
    return 1 - available_after_weights / pre_model_load


@dataclass(frozen=True, slots=True)
class KvPool:
    tokens: int  # max_total_num_tokens (the full-attention pool for hybrid models)
    swa_tokens: int  # SWA pool tokens (0 when not hybrid)
    cell_bytes: int  # bytes per token of `tokens` (incl. ratio * SWA layers)
    k_bytes: int
    v_bytes: int
    swa_bytes: int
    mla: bool


def layer_groups(spec: ModelSpec, layers: range) -> tuple[list[int], list[int], bool]:
    """(full-pool layers, SWA-pool layers, hybrid?) on one stage. Sliding/chunked layers form the
    SWA pool only when the model also has full-attention layers; linear layers hold no KV here."""
    attn = [la for la in spec.layers if la.attention.has_kv]
    hybrid = any(la.attention.kind in ("sliding", "chunked") for la in attn) and any(
        la.attention.kind in ("full", "mla") for la in attn)
    full = [la.index for la in attn if la.index in layers and not (
        hybrid and la.attention.kind in ("sliding", "chunked"))]
    swa = [la.index for la in attn if la.index in layers and hybrid and la.attention.kind in (
        "sliding", "chunked")]
    return full, swa, hybrid


def cell_bytes(spec: ModelSpec, layers: range, kv_dtype: str, tp: int,
               ratio: float = SWA_FULL_TOKENS_RATIO) -> tuple[int, int, float]:
    """(full-pool bytes/token, SWA bytes/token, cell bytes/token incl. ratio) on one TP rank."""
    full, swa, _ = layer_groups(spec, layers)
    f = sum(layer_bytes_per_token(spec.layers[i].attention, kv_dtype, tp) for i in full)
    s = sum(layer_bytes_per_token(spec.layers[i].attention, kv_dtype, tp) for i in swa)
    return f, s, f + ratio * s


def size_pool(spec: ModelSpec, layers: range, kv_dtype: str, tp: int, tokens: int,
              ratio: float) -> KvPool:
    """K/V bytes of a pool of ``tokens`` (SWA pool: int(tokens * ratio)) on one TP rank."""
    full, swa, hybrid = layer_groups(spec, layers)
    swa_tokens = int(tokens * ratio) if hybrid else 0
    k = v = sb = 0
    mla = False
    for i in full:
        a = spec.layers[i].attention
        if a.kind == "mla":
            mla = True
            k += tokens * layer_bytes_per_token(a, kv_dtype, tp)
            continue
        heads = max(1, a.num_kv_heads // tp)
        k += tokens * row_bytes(heads * a.head_dim, kv_dtype)
        v += tokens * row_bytes(heads * a.v_head_dim, kv_dtype)
    for i in swa:
        sb += swa_tokens * layer_bytes_per_token(spec.layers[i].attention, kv_dtype, tp)
    f, s, cell = cell_bytes(spec, layers, kv_dtype, tp, ratio)
    return KvPool(tokens, swa_tokens, math.ceil(cell), k, v, sb, mla)


def weight_tensors(shard: StageShard, spec: ModelSpec) -> int:
    """ASSUMPTION: large GPU tensors per rank after SGLang's fusions (qkv, gate_up, MoE w13/w2):
    4 per decoder layer + embedding + lm_head (one when tied)."""
    return 4 * len(shard.layers) + int(shard.has_embedding) + int(
        shard.has_head and not spec.tie_word_embeddings)


def mamba_cache_per_req(spec: ModelSpec, layers: range, tp: int, ssm_dtype: str) -> int:
    """State bytes of one request slot on one stage and TP rank: Σ over its Mamba/GDN layers of
    conv (bf16) + SSM (``ssm_dtype``) state (mamba_utils.py BaseLinearStateParams
    .mamba_cache_per_req; shapes as ``kv.mamba_state_elems``, TP-split like vLLM)."""
    return sum(linear_state_bytes(la.attention, MAMBA_CONV_DTYPE, tp, ssm_dtype)
               for la in spec.layers if la.index in layers and has_state(la.attention))


def mamba_pool(rest: int, per_req: int, ratio: float, max_size: int | None) -> tuple[int, int]:
    """(max_mamba_cache_size K, pool bytes) out of ``rest`` bytes (_handle_max_mamba_cache, no
    speculative decoding): budget = rest x r / (1 + r); K = (budget - per_req) // per_req, or
    --max-mamba-cache-size; the pool holds K + 1 slots (one padding slot)."""
    if max_size is not None:
        k = int(max_size)
    else:
        budget = rest * ratio / (1 + ratio)
        k = int((budget - per_req) // per_req) if per_req else 0
    return k, (k + 1) * per_req if k > 0 else 0


class SglangEngine:
    name = "sglang"
    tensor_parallel = True
    # --dtype auto: float32 checkpoints run in 16-bit (sglang/srt/configs/model_config.py
    # _get_and_verify_dtype, the same rule as vLLM's).
    fp32_served_as = "bfloat16"

    def __init__(self, profile: SglangProfile, requested: str | None = None) -> None:
        self.profile = profile
        self.version = requested or profile.version

    def _inputs(self, setup: Setup) -> dict[str, Any]:
        par, wl, opts = setup.parallel, setup.workload, setup.workload.options
        if par.devices > setup.gpu_count:
            raise InputError("--tp", f"tp={par.tp} x pp={par.pp} needs {par.devices} GPUs, only "
                             f"{setup.gpu_count} given", f"use --gpus {par.devices} or lower --tp")
        frac = opts.get("mem_fraction_static")
        if frac is not None and not (isinstance(frac, int | float) and 0 < frac < 1):
            raise InputError("--mem-fraction-static", f"must be between 0 and 1, got {frac!r}",
                             "omit it for SGLang's default, or use e.g. 0.85")
        if wl.kv_dtype not in ("bf16", "fp16", "fp32") and wl.kv_dtype not in KV_DTYPE_FLAG:
            raise InputError("--kv-dtype", f"SGLang has no {wl.kv_dtype} KV cache",
                             "use auto, fp8_e4m3 or fp8_e5m2")
        for key in ("chunked_prefill_size", "cuda_graph_max_bs", "max_total_tokens",
                    "max_running_requests", "page_size"):
            v = opts.get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v == 0):
                raise InputError("--" + key.replace("_", "-"), f"must be a non-zero integer, got "
                                 f"{v!r}", "omit it for SGLang's default")
        ssm = opts.get("mamba_ssm_dtype")
        if ssm is not None and ssm not in MAMBA_SSM_DTYPES:
            raise InputError("--mamba-ssm-dtype", f"SGLang has no {ssm!r} mamba SSM dtype",
                             "use float32, bfloat16 or float16")
        ratio = opts.get("mamba_full_memory_ratio")
        if ratio is not None and not (isinstance(ratio, int | float) and ratio > 0):
            raise InputError("--mamba-full-memory-ratio", f"must be > 0, got {ratio!r}",
                             "omit it for SGLang's default 0.9")
        size = opts.get("max_mamba_cache_size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
            raise InputError("--max-mamba-cache-size", f"must be a positive integer, got {size!r}",
                             "omit it for SGLang's default")
        return dict(opts)

    def estimate(self, setup: Setup) -> EngineResult:
        opts = self._inputs(setup)
        qm, wl, par, gpu = setup.model, setup.workload, setup.parallel, setup.gpu
        spec = qm.inventory.spec
        total = min(gpu.memory_reported_bytes, gpu.usable_bytes)
        gpu_mem_mib = total / MIB
        chunk_d, bs_d = chunk_and_graph_defaults(gpu_mem_mib, par.tp)
        chunk = int(opts.get("chunked_prefill_size") or chunk_d)
        max_bs = int(opts.get("cuda_graph_max_bs") or bs_d)
        mla = any(la.attention.kind == "mla" for la in spec.layers)
        frac_default, reserved = default_mem_fraction(self.profile, gpu_mem_mib, par.tp, par.pp,
                                                      chunk, max_bs, mla, gpu.vendor != "amd")
        frac = float(opts.get("mem_fraction_static") or frac_default)
        ctx_len = spec.max_position_embeddings if wl.context_is_default else wl.context_tokens
        page = int(opts.get("page_size") or 1)
        ratio = float(opts.get("swa_full_tokens_ratio") or SWA_FULL_TOKENS_RATIO)
        nccl = NCCL_BYTES if par.devices > 1 else 0
        pre = total - CUDA_CONTEXT_BYTES - nccl
        weights = [s.weights_bytes + weight_tensors(s, spec) * ROUNDING_BYTES_PER_TENSOR
                   for s in setup.shards]
        weights[0] += multimodal.sglang_weights_delta(qm, par.tp)  # encoder split over TP
        rests = [int(frac * pre) - w for w in weights]
        worst = min(range(len(rests)), key=lambda i: rests[i])
        figures: dict[str, Any] = {
            "mem_fraction_static": frac, "mem_fraction_static_is_default":
                opts.get("mem_fraction_static") is None, "reserved_mem_mib": reserved,
            "gpu_mem_mib": round(gpu_mem_mib), "chunked_prefill_size": chunk,
            "cuda_graph_max_bs": max_bs, "context_length": ctx_len, "page_size": page,
            "pre_model_load_memory_bytes": pre, "weights_bytes": max(weights),
            "available_after_weights_bytes": pre - weights[worst],
            "min_viable_mem_fraction_static": round(min_viable_fraction(
                pre - weights[worst], pre), 4)}
        cmd = self._command(spec, par.tp, par.pp, frac, opts, wl.kv_dtype, ctx_len,
                            wl.context_is_default)
        cmd = " ".join([cmd, *multimodal.sglang_flags(spec, opts, multimodal.has_towers(qm))])
        failure = fix = None
        pools: list[KvPool] = []
        mamba_k, mamba_bytes = self._mamba(setup, opts, rests, figures)
        if mamba_bytes:
            rests = [r - b for r, b in zip(rests, mamba_bytes, strict=True)]
            worst = min(range(len(rests)), key=lambda i: rests[i])
            if mamba_k <= 0 and rests[worst] + mamba_bytes[worst] > 0:
                failure = ("Not enough GPU memory for hybrid (mamba/linear-attention) state "
                           f"cache (SGLang RuntimeError at startup; max_mamba_cache_size="
                           f"{mamba_k})")
                fix = "raise --mem-fraction-static, lower --max-running-requests, or more GPUs"
        if failure is not None:
            tokens = 0
        elif rests[worst] <= 0:
            failure, fix = self._no_room(frac, figures["min_viable_mem_fraction_static"], par.tp,
                                         weights[worst] * par.tp, pre)
            tokens = 0
        else:
            cells = [cell_bytes(spec, s.layers, wl.kv_dtype, par.tp, ratio)[2] for s in setup.shards]
            per_stage = [int(r // c) if c else 10**12 for r, c in zip(rests, cells, strict=True)]
            tokens = min(per_stage) // page * page
            cap = opts.get("max_total_tokens")
            if cap is not None:
                tokens = min(tokens, int(cap)) // page * page
            if tokens <= 0:
                failure = ("Not enough memory. Please try to increase --mem-fraction-static "
                           f"(SGLang RuntimeError at startup; mem_fraction_static={frac})")
                fix = f"raise --mem-fraction-static or use --tp {par.tp * 2}"
        pools = [size_pool(spec, s.layers, wl.kv_dtype, par.tp, max(tokens, 0), ratio)
                 for s in setup.shards]
        reqs = self._max_running_requests(tokens, ctx_len, opts)
        if mamba_bytes:
            reqs = min(reqs, max(0, mamba_k) // MAMBA_SLOTS_PER_REQUEST)
        figures.update({"kv_pool_tokens": tokens, "kv_cache_tokens": tokens,
                        "kv_cache_bytes": max(p.k_bytes + p.v_bytes + p.swa_bytes for p in pools),
                        "kv_cell_bytes_per_token": max(p.cell_bytes for p in pools),
                        "max_running_requests": reqs})
        if any(p.swa_tokens for p in pools):
            figures.update({"full_pool_tokens": tokens, "swa_pool_tokens": pools[0].swa_tokens})
        devices, runtime = self._devices(setup, pools, weights, pre, frac, chunk, max_bs, reqs,
                                         ctx_len, nccl, total, mamba_bytes)
        headroom = pre - int(frac * pre)
        figures.update({"headroom_bytes": headroom, "runtime_estimate_bytes": runtime,
                        "cuda_graph_bytes": next(c.bytes for c in devices[0].components
                                                 if c.name == "cuda_graph")})
        if failure is None and runtime > headroom:
            need = 1 - runtime / pre
            failure = (f"CUDA out of memory during CUDA-graph capture or the first prefill: the "
                       f"runtime needs ~{fmt_bytes(runtime)} but mem_fraction_static={frac} leaves "
                       f"{fmt_bytes(headroom)} per GPU")
            fix = (f"lower --mem-fraction-static to {math.floor(need * 100) / 100:.2f}, or lower "
                   "--chunked-prefill-size / --cuda-graph-max-bs")
        notes = list(self._notes(spec, tokens, ctx_len, wl.batch))
        assumptions = (
            f"SGLang {self.profile.version} profile ({self.profile.source}); mem_fraction_static "
            f"{frac}" + (f" = round(({gpu_mem_mib:.0f} - {reserved:.0f}) MiB / {gpu_mem_mib:.0f}"
                         " MiB, 3)" if opts.get("mem_fraction_static") is None and reserved else ""),
            f"free memory before loading = CUDA total - CUDA context {fmt_bytes(CUDA_CONTEXT_BYTES)}"
            + (f" - NCCL {fmt_bytes(NCCL_BYTES)}" if nccl else "") + " (ASSUMPTION)",
            "weights + 1 MiB allocator rounding per large tensor (ASSUMPTION)",
            "headroom terms (activations, CUDA graphs, metadata) are estimates; SGLang profiles "
            "none of them before sizing the KV pool",
        ) + ((f"no profile recorded for sglang {self.version}: using the {self.profile.version} "
              "profile (ASSUMPTION)",) if self.version != self.profile.version else ())
        return EngineResult(devices=tuple(devices), host_ram_bytes=0, figures=figures,
                            assumptions=assumptions, command=cmd, failure=failure, fix=fix,
                            notes=tuple(notes))

    @staticmethod
    def _max_running_requests(tokens: int, ctx_len: int, opts: dict[str, Any]) -> int:
        """resolve_max_num_reqs: clamp(int(tokens/context*512), 2048, 4096), <= tokens // 2."""
        user = opts.get("max_running_requests")
        est = max(min(int(tokens / max(ctx_len, 1) * 512), 4096), 2048)
        return max(0, min(int(user) if user else est, tokens // 2))

    def _devices(self, setup: Setup, pools: list[KvPool], weights: list[int], pre: int,
                 frac: float, chunk: int, max_bs: int, reqs: int, ctx_len: int, nccl: int,
                 total: int, mamba_bytes: list[int] | None = None
                 ) -> tuple[list[DeviceEstimate], int]:
        spec, par = setup.model.inventory.spec, setup.parallel
        act = activation_peak_bytes(spec, chunk if chunk > 0 else 16384, max_bs, par.tp)
        graph_mib = 2 * max_bs + (prefill_graph_sizes(chunk) * 8 if self.profile.prefill_graph_reserve
                                  and setup.gpu.vendor != "amd" else 0)
        graphs = 0 if setup.workload.options.get("disable_cuda_graph") else graph_mib * MIB
        req_pool = (reqs + 1) * (ctx_len + 4) * 4
        runtime = act + graphs + req_pool + METADATA_MIB * MIB
        devices = []
        mamba = mamba_bytes or [0] * len(pools)
        for shard, pool, w, mb in zip(setup.shards, pools, weights, mamba, strict=True):
            kids: tuple[Component, ...] = (
                (Component("KV", pool.k_bytes, f"{pool.tokens} tokens x latent"),) if pool.mla
                else (Component("K", pool.k_bytes), Component("V", pool.v_bytes)))
            if pool.swa_tokens:
                kids += (Component("SWA K+V", pool.swa_bytes, f"{pool.swa_tokens} tokens"),)
            if mb:
                kids += (Component("mamba state", mb, "(max_mamba_cache_size + 1) x "
                                   "mamba_cache_per_req", SRC_MAMBA),)
            comps = [
                Component("weights", w, f"layers {shard.layers.start}-{shard.layers.stop - 1} "
                          f"({fmt_bytes(shard.weights_bytes)}) + allocator rounding",
                          "vramplan.placement; Load weight end ... mem usage", "weights"),
                Component("kv_cache", pool.k_bytes + pool.v_bytes + pool.swa_bytes + mb,
                          f"#tokens {pool.tokens} x {pool.cell_bytes} B/token: rest = "
                          f"{frac} x {fmt_bytes(pre)} - weights", SRC_POOL + "; " + SRC_CELL,
                          "kv_cache", kids),
                Component("activations", act, f"prefill chunk {chunk} tokens + logits for "
                          f"{max_bs} seqs (generic estimate)", "vramplan.engines.generic "
                          "(ASSUMPTION)", "activation"),
                Component("cuda_graph", graphs, f"{graph_mib} MiB: 2 MiB x max_bs {max_bs} (+8 MiB"
                          " per prefill graph)", SRC_ARGS + " reserve_for_graph_mb (ASSUMPTION)",
                          "overhead"),
                Component("req_to_token_pool", req_pool, f"({reqs} + 1) x ({ctx_len} + 4) x 4 B",
                          "sglang ReqToTokenPool (int32)", "overhead"),
                Component("attention_metadata", METADATA_MIB * MIB, "512 MiB", SRC_ARGS,
                          "overhead"),
                Component("cuda_context", CUDA_CONTEXT_BYTES, "CUDA context per GPU process",
                          "vramplan.engines.generic (ASSUMPTION)", "overhead"),
            ]
            if nccl:
                comps.append(Component("nccl", nccl, "NCCL + custom all-reduce, tp*pp > 1",
                                       "vramplan.engines.generic (ASSUMPTION)", "overhead"))
            for r in range(par.tp):
                devices.append(DeviceEstimate(f"GPU{shard.stage * par.tp + r}", "gpu",
                                              setup.gpu.name, total, tuple(comps)))
        return devices, runtime

    @staticmethod
    def _mamba(setup: Setup, opts: dict[str, Any], rests: list[int],
               figures: dict[str, Any]) -> tuple[int, list[int]]:
        """The hybrid state pool per stage (``mamba_pool``); (K, bytes per stage), ([], 0) when
        the model keeps no recurrent state."""
        spec, par = setup.model.inventory.spec, setup.parallel
        if not any(has_state(la.attention) for la in spec.layers):
            return 0, []
        ssm = MAMBA_SSM_DTYPES[str(opts.get("mamba_ssm_dtype") or "float32")]
        ratio = float(opts.get("mamba_full_memory_ratio") or MAMBA_FULL_MEMORY_RATIO)
        per_req = max(mamba_cache_per_req(spec, s.layers, par.tp, ssm) for s in setup.shards)
        user = opts.get("max_mamba_cache_size")
        sizes = [mamba_pool(max(r, 0), per_req, ratio, user) for r in rests]
        k = min(sz[0] for sz in sizes)
        figures.update({
            "mamba_cache_per_req_bytes": per_req, "max_mamba_cache_size": k,
            "mamba_pool_bytes": max(sz[1] for sz in sizes),
            "mamba_state_dtypes": [MAMBA_CONV_DTYPE, ssm],
            "state_bytes_per_sequence": mamba_cache_per_req(spec, range(spec.num_layers), 1,
                                                             ssm)})
        return k, [sz[1] for sz in sizes]

    @staticmethod
    def _no_room(frac: float, min_viable: float, tp: int, weights_all_ranks: int,
                 pre: int) -> tuple[str, str]:
        """Restates kv_cache_configurator.py's ValueError; fix: a viable fraction (< 0.95) or the
        smallest power-of-two tp whose per-rank weights stay under 80% of free memory."""
        suggested = math.ceil(min_viable * 1000) / 1000
        failure = (f"Loaded weights leave no GPU memory for the KV cache under "
                   f"--mem-fraction-static={frac} (SGLang ValueError at startup; minimum viable = "
                   f"1 - available/pre = {min_viable:.4f})")
        if suggested < 0.95:
            return failure, f"raise --mem-fraction-static above {suggested:.3f}, or use --tp {tp * 2}"
        need = tp * 2
        while weights_all_ranks / need > 0.8 * pre and need < 1024:
            need *= 2
        return failure, f"use --tp {need} (more GPUs) or a quantized checkpoint"

    @staticmethod
    def _notes(spec: ModelSpec, tokens: int, ctx_len: int, batch: int) -> list[str]:
        notes = []
        if any(la.attention.kind == "linear" and not has_state(la.attention)
           for la in spec.layers):
            notes.append("linear-attention state pool (mamba cache) not modelled: the KV pool is "
                         "sized as if the whole budget went to attention layers")
        if 0 < tokens < ctx_len * batch:
            notes.append(f"KV pool holds {tokens:,} tokens < context {ctx_len:,} x batch {batch}: "
                         f"about {tokens // max(ctx_len, 1)} full-length sequences run at once, the "
                         "rest queue")
        return notes

    @staticmethod
    def _command(spec: ModelSpec, tp: int, pp: int, frac: float, opts: dict[str, Any],
                 kv_dtype: str, ctx: int, ctx_default: bool) -> str:
        parts = ["python -m sglang.launch_server", f"--model-path {spec.model_id}", f"--tp {tp}"]
        if pp > 1:
            parts.append(f"--pp-size {pp}")
        parts.append(f"--mem-fraction-static {frac}")
        if not ctx_default:
            parts.append(f"--context-length {ctx}")
        if kv_dtype in KV_DTYPE_FLAG:
            parts.append(f"--kv-cache-dtype {KV_DTYPE_FLAG[kv_dtype]}")
        for key in ("chunked_prefill_size", "cuda_graph_max_bs", "max_total_tokens",
                    "max_running_requests", "page_size", "mamba_ssm_dtype",
                    "mamba_full_memory_ratio", "max_mamba_cache_size"):
            if opts.get(key) is not None:
                parts.append(f"--{key.replace('_', '-')} {opts[key]}")
        return " ".join(parts)


def factory(version: str | None) -> SglangEngine:
    """``sglang`` (newest main), ``sglang==0.5.x`` or ``sglang==0.1.x``; other versions map to the
    nearest older profile."""
    if version is None or version in ("main", "latest"):
        return SglangEngine(PROFILES["main"])
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        raise InputError("--engine", f"cannot read SGLang version {version!r}",
                         "write it like sglang==0.5.4") from None
    if (major, minor) < (0, 5):
        return SglangEngine(PROFILES["0.1"], version)
    return SglangEngine(PROFILES["0.5"], version)


register_engine("sglang", factory)
