"""Speed: decode and prefill rates from bytes moved and FLOPs done, with named efficiencies.

Decode (one step = one new token for each of ``batch`` sequences) is a pipeline of times, summed
because llama.cpp and vLLM run the stages of one step one after another:

    step = Σ_gpu stages max(bytes_read / (B_gpu * GPU_BANDWIDTH_EFFICIENCY),
                            flops / (F_gpu * COMPUTE_EFFICIENCY))
         + host_bytes_read / (B_host * HOST_BANDWIDTH_EFFICIENCY)      experts/layers on the CPU
         + streamed_bytes / (B_pcie * PCIE_EFFICIENCY)                 vLLM --cpu-offload-gb
         + layers * 2 * all_reduce(batch * hidden * 2 B)               tensor parallel
         + layers * LAYER_OVERHEAD_S                                   launches, syncs

bytes_read per device = dense weights + routed experts x coverage(batch) + KV cache read at the
given depth. coverage(b) = 1 - (1 - top_k/n_experts)^b is the expected share of a layer's experts
that b tokens touch under uniform routing (ASSUMPTION). Prefill is compute-bound:
2 x active params x tokens (+ 2 x heads x head_dim x T x min(T, window) per attention layer)
over F_gpu x COMPUTE_EFFICIENCY, plus host-held weights copied over PCIe once per micro-batch
(llama.cpp offloads big-batch matmuls of CPU tensors to the GPU). TTFT = prefill time of the
prompt. All efficiencies are fitted by ``scripts/calibrate_speed.py`` on
``tests/data/measured_speed.json`` (one factor per mechanism, never per case).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from vramplan.hardware.gpus import Gpu
from vramplan.hardware.host import (
    HostMemory,
    describe_host,
    link_pcie_gen,
    pcie_bytes_per_s,
    typical_host,
)
from vramplan.kv import (
    compressed_bytes_per_token,
    has_state,
    layer_bytes_per_token,
    linear_state_bytes,
    state_dtypes,
)
from vramplan.model.spec import ModelSpec
from vramplan.placement import Parallelism
from vramplan.plan.offload import Residence, WeightSplit, split_cached
from vramplan.quant.schemes import QuantizedModel
from vramplan.result import Estimate
from vramplan.units import GIB

__all__ = ["SpeedSetup", "decode_terms", "estimate_speed", "prefill_terms", "speed_dict"]

# --- efficiencies (fitted by scripts/calibrate_speed.py; see tests/data/measured_speed.json) ---
# Share of peak DRAM bandwidth a decode step's weight and KV reads reach on a GPU (llama.cpp
# mmvq/mmv kernels, vLLM Marlin/cuBLAS GEMV). Fitted on the llama-bench tg rows.
GPU_BANDWIDTH_EFFICIENCY = 0.86
# Share of peak dense tensor throughput reached by prefill GEMMs (llama.cpp pp512, vLLM TTFT).
COMPUTE_EFFICIENCY = 0.475
# The same for Apple GPUs (no tensor cores: Metal simdgroup matmuls on the ALUs, whose peak the
# catalog gives), fitted on the Apple llama-bench pp512 rows.
METAL_COMPUTE_EFFICIENCY = 0.65
# Share of peak host DRAM bandwidth the CPU reaches when it computes offloaded experts/layers
# (ggml CPU backend). Fitted on the llama.cpp offload and CPU-only rows.
HOST_BANDWIDTH_EFFICIENCY = 0.55
# The same share for the GPU of an Apple M-series SoC (Metal): its GPU cannot draw the SoC's
# full bandwidth, and k-quant dequantization on its ALUs adds to the reads. Fitted on the Apple
# llama-bench rows.
METAL_BANDWIDTH_EFFICIENCY = 0.64
# Fixed time per decoder layer per step: kernel launches, syncs, small ops (norms, rope, router).
LAYER_OVERHEAD_S = 65e-6
# Extra time per decoder layer per step without CUDA graphs (PyTorch eager: every kernel launched
# from Python): vLLM --enforce-eager, and HF transformers generate() (ASSUMPTION: same cost).
# Fitted on the one eager case (speed-081, Qwen3-14B-AWQ on A100, 40 layers: TPOT 20.6 ms).
EAGER_LAYER_OVERHEAD_S = 350e-6
# Extra time per decoder layer whose tensors sit in host RAM (llama.cpp): the scheduler's
# GPU<->CPU split, activation copies both ways and the CPU thread-pool barrier. Fitted on the one
# partial-offload case with a stated configuration (speed-062).
HOST_LAYER_OVERHEAD_S = 225e-6
# ASSUMPTION: share of PCIe peak reached by pinned host-to-device copies; cudaMemcpy of pinned
# buffers reaches ~25 of 31.5 GB/s on gen4 x16 (NVIDIA nvbandwidth / bandwidthTest figures).
PCIE_EFFICIENCY = 0.8
# Per-hop latency of a ring all-reduce over NVLink: a small all-reduce over tp GPUs takes
# 2 (tp - 1) hops. Fitted on the TP=8 DeepSeek-R1 serving rows (so it also absorbs their MLA/MoE
# dispatch overhead); nccl-tests put a bare 8-GPU all-reduce of a few KiB at ~10-20 us, i.e.
# ~1 us per hop. ASSUMPTION: over PCIe a hop takes PCIE_LATENCY_FACTOR times as long.
ALLREDUCE_HOP_LATENCY_S = 2.5e-6
PCIE_LATENCY_FACTOR = 3.0
# llama.cpp copies CPU-resident weights to the GPU for matmuls of at least this many tokens
# (ggml/src/ggml-cuda/ggml-cuda.cu ggml_backend_cuda_device_offload_op: min_batch_size = 32).
OFFLOAD_MIN_BATCH = 32
LLAMACPP_UBATCH = 512  # llama.cpp default --ubatch-size
VLLM_CHUNK_TOKENS = 8192  # vLLM V1 default max_num_batched_tokens (chunked prefill)
# Range reported around each value: the spread of the calibration residuals (see
# scripts/calibrate_speed.py output): most measured cases fall inside [low, high] x value.
# Calibration: measured/model 10th-90th percentile 0.89-1.09 (decode), 0.90-1.18 (prefill) on
# the cases inside the model's scope; the ranges are a little wider for engines/builds.
DECODE_RANGE = (0.85, 1.15)
PREFILL_RANGE = (0.8, 1.25)
HOST_RANGE = (0.6, 1.3)  # wider when host RAM is involved: its speed is often not stated


@dataclass(frozen=True, slots=True)
class SpeedSetup:
    """What the speed model needs: the priced model, hardware, parallelism and workload."""

    qm: QuantizedModel
    gpu: Gpu
    gpu_count: int
    par: Parallelism
    engine: str
    batch: int
    depth_tokens: int  # KV tokens each sequence has when the step runs
    prompt_tokens: int  # tokens prefilled for TTFT
    kv_dtype: str
    host: HostMemory | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    host_kind_known: bool = False  # False: the memory kind/channels of ``host`` are assumed

    @property
    def spec(self) -> ModelSpec:
        return self.qm.inventory.spec


def coverage(batch: int, fraction: float) -> float:
    """Expected share of one layer's experts that ``batch`` tokens touch: 1 - (1 - k/E)^batch."""
    if fraction <= 0:
        return 0.0
    return 1.0 - (1.0 - fraction) ** max(batch, 1)


@dataclass(frozen=True, slots=True)
class _LayerSums:
    """Per-token KV bytes and attention widths of a set of layers, grouped by window."""

    kv_by_window: tuple[tuple[int | None, int], ...]  # (window or None, bytes/token)
    state_bytes: int  # linear-attention state per sequence
    width_by_window: tuple[tuple[int | None, float], ...]  # (window, heads/tp x (d_k + d_v))


_SUMS: dict[tuple[Any, ...], tuple[ModelSpec, _LayerSums]] = {}


def _sums(spec: ModelSpec, layers: tuple[int, ...], kv_dtype: str, tp: int) -> _LayerSums:
    key = (id(spec), layers, kv_dtype, tp)
    hit = _SUMS.get(key)
    if hit is not None and hit[0] is spec:
        return hit[1]
    want = set(layers)
    kv: dict[int | None, int] = {}
    width: dict[int | None, float] = {}
    state = 0
    conv_dt, ssm_dt = state_dtypes(spec)  # recurrent state at the engines' state dtypes
    for layer in spec.layers:
        if layer.index not in want:
            continue
        a = layer.attention
        if has_state(a):
            state += linear_state_bytes(a, conv_dt, tp, ssm_dt)
        if a.kind in ("linear", "none"):
            continue
        if a.kind == "cross":
            state += layer_bytes_per_token(a, kv_dtype, tp) * a.encoder_tokens
            continue
        w = a.window_tokens if a.kind in ("sliding", "chunked") and a.window_tokens else None
        kv[w] = kv.get(w, 0) + layer_bytes_per_token(a, kv_dtype, tp)
        if a.compress_rate:  # DeepSeek-V4 compressed entries are read over the whole context
            kv[None] = kv.get(None, 0) + compressed_bytes_per_token(a, kv_dtype)
        dk = a.kv_lora_rank + a.qk_rope_head_dim if a.kind == "mla" else a.head_dim
        dv = a.kv_lora_rank if a.kind == "mla" else a.v_head_dim
        width[w] = width.get(w, 0.0) + (a.num_heads / tp) * (dk + dv)
    out = _LayerSums(tuple(kv.items()), state, tuple(width.items()))
    if len(_SUMS) > 8192:
        _SUMS.clear()
    _SUMS[key] = (spec, out)
    return out


def kv_read_bytes(spec: ModelSpec, layers: tuple[int, ...], depth: int, batch: int, kv_dtype: str,
                  tp: int) -> int:
    """K+V bytes one decode step reads on one rank: Σ_layers bytes/token x min(depth, window) x
    batch, plus linear-attention state (read once per sequence). Also the KV bytes a cache
    sized for ``depth`` tokens x ``batch`` sequences holds (vramplan.kv.kv_cache_bytes)."""
    s = _sums(spec, tuple(layers), kv_dtype, tp)
    per_seq = sum(b * (depth if w is None else min(depth, w)) for w, b in s.kv_by_window)
    return (per_seq + s.state_bytes) * batch


def attention_flops(spec: ModelSpec, layers: tuple[int, ...], query_tokens: int, depth: int,
                    tp: int) -> float:
    """Score + value FLOPs: 2 x heads x (d_k + d_v) x query_tokens x keys, keys = min(depth,
    window) (for a causal prefill of T tokens pass depth = T/2, the mean key count)."""
    s = _sums(spec, tuple(layers), "fp16", tp)
    return sum(2.0 * wd * query_tokens * (depth if w is None else min(depth, w))
               for w, wd in s.width_by_window)


def peak_flops(gpu: Gpu, qm: QuantizedModel, engine: str) -> float:
    """Dense tensor FLOP/s a GEMM can use: FP8 for FP8 weights on vLLM/SGLang when the GPU has
    FP8 tensor cores, else BF16/FP16 (weight-only formats dequantize to 16-bit)."""
    if qm.scheme.method == "fp8" and gpu.fp8_dense_tflops and engine in ("vllm", "sglang"):
        return gpu.fp8_dense_tflops * 1e12
    if engine in ("llamacpp", "ollama") and "GeForce" in gpu.name:
        # ggml-cuda runs cuBLAS with CUBLAS_COMPUTE_16F: FP16 accumulate, twice the FP32-
        # accumulate rate the catalog gives for GeForce cards (see data/gpus.toml header)
        return 2 * gpu.bf16_dense_tflops * 1e12
    return gpu.bf16_dense_tflops * 1e12


def compute_efficiency(gpu: Gpu) -> float:
    """COMPUTE_EFFICIENCY, or METAL_COMPUTE_EFFICIENCY for Apple silicon."""
    return METAL_COMPUTE_EFFICIENCY if gpu.vendor == "apple" else COMPUTE_EFFICIENCY


def bandwidth_efficiency(gpu: Gpu) -> float:
    """GPU_BANDWIDTH_EFFICIENCY, or METAL_BANDWIDTH_EFFICIENCY for Apple silicon."""
    return METAL_BANDWIDTH_EFFICIENCY if gpu.vendor == "apple" else GPU_BANDWIDTH_EFFICIENCY


def _link(gpu: Gpu, pcie_gen: int | None = None) -> tuple[float, float]:
    """(bytes/s per direction, hop latency) of the GPU-to-GPU link: NVLink/IF, else PCIe (of
    generation ``pcie_gen``; default the GPU's, else 4)."""
    if gpu.interconnect_bytes_per_s:
        return gpu.interconnect_bytes_per_s / 2, ALLREDUCE_HOP_LATENCY_S
    return float(pcie_bytes_per_s(pcie_gen or gpu.pcie_gen or 4)), \
        ALLREDUCE_HOP_LATENCY_S * PCIE_LATENCY_FACTOR


def _allreduce_s(gpu: Gpu, tp: int, msg_bytes: float, pcie_gen: int | None = None) -> float:
    """Ring all-reduce: 2 (tp-1) hops x latency + 2 (tp-1)/tp x message / link bandwidth."""
    bw, hop = _link(gpu, pcie_gen)
    return 2 * (tp - 1) * hop + 2 * (tp - 1) / tp * msg_bytes / bw


def _pcie_gen(s: SpeedSetup) -> tuple[int, str]:
    """The GPU's PCIe link generation and why (``hardware.host.link_pcie_gen``); a unified-
    memory device has no host link to override."""
    return link_pcie_gen(s.gpu.pcie_gen, None if s.gpu.unified_memory else s.host)


def _pcie(s: SpeedSetup) -> float:
    return pcie_bytes_per_s(_pcie_gen(s)[0]) * PCIE_EFFICIENCY


def _host(s: SpeedSetup) -> HostMemory:
    return s.host or typical_host(64 * GIB)


def _split(s: SpeedSetup) -> WeightSplit:
    return split_cached(s.qm, s.par, s.gpu_count, s.engine, s.options)


def _step_reads(r: Residence, frac: float, batch: int) -> float:
    return r.dense_bytes + r.expert_bytes * coverage(batch, frac)


def _active_params(r: Residence, frac: float) -> float:
    return r.dense_params + r.expert_params * frac


def decode_terms(s: SpeedSetup, split: WeightSplit | None = None) -> dict[str, float]:
    """Seconds per decode step, by mechanism (their sum is the step time)."""
    sp = split or _split(s)
    spec, frac, b = s.spec, sp.expert_fraction, s.batch
    terms = dict.fromkeys(("gpu_memory_bandwidth", "gpu_compute", "host_memory_bandwidth",
                           "pcie", "interconnect", "launch_overhead"), 0.0)
    bw = s.gpu.bandwidth_bytes_per_s * bandwidth_efficiency(s.gpu)
    flops = peak_flops(s.gpu, s.qm, s.engine) * compute_efficiency(s.gpu)
    for st in sp.stages:
        mem = (_step_reads(st, frac, b) + kv_read_bytes(spec, st.layers, s.depth_tokens, b,
                                                        s.kv_dtype, sp.tp)) / bw
        comp = (2 * _active_params(st, frac) * b + attention_flops(spec, st.layers, b,
                                                                    s.depth_tokens, sp.tp)) / flops
        terms["gpu_memory_bandwidth" if mem >= comp else "gpu_compute"] += max(mem, comp)
    h = sp.host
    if h.total_bytes:
        if b >= OFFLOAD_MIN_BATCH and s.gpu_count > 0:  # copied to the GPU for the matmul
            terms["pcie"] += (h.dense_bytes + h.expert_bytes) / _pcie(s)
        else:
            kv = kv_read_bytes(spec, sp.kv_host_layers, s.depth_tokens, b, s.kv_dtype, 1)
            host_bw = _host(s).bandwidth_bytes_per_s * HOST_BANDWIDTH_EFFICIENCY
            terms["host_memory_bandwidth"] += (_step_reads(h, frac, b) + kv) / host_bw
        if s.gpu_count > 0:
            terms["launch_overhead"] += len(h.layers) * HOST_LAYER_OVERHEAD_S
    if sp.streamed.total_bytes:
        terms["pcie"] += sp.streamed.total_bytes / _pcie(s)  # each rank over its own link
    if sp.tp > 1:
        n_tp_layers = len(sp.stages[0].layers) if sp.stages else 0
        per = _allreduce_s(s.gpu, sp.tp, b * spec.hidden_size * 2, _pcie_gen(s)[0])
        terms["interconnect"] += 2 * per * n_tp_layers * len(sp.stages)
    eager = s.engine == "transformers" or bool(s.options.get("enforce_eager"))
    terms["launch_overhead"] += spec.num_layers * (EAGER_LAYER_OVERHEAD_S if eager
                                                   else LAYER_OVERHEAD_S)
    return terms


def prefill_terms(s: SpeedSetup, split: WeightSplit | None = None) -> dict[str, float]:
    """Seconds to prefill ``prompt_tokens`` tokens of one sequence, by mechanism."""
    sp = split or _split(s)
    spec, frac, t = s.spec, sp.expert_fraction, max(s.prompt_tokens, 1)
    terms = dict.fromkeys(("gpu_compute", "gpu_memory_bandwidth", "pcie", "interconnect"), 0.0)
    flops = peak_flops(s.gpu, s.qm, s.engine) * compute_efficiency(s.gpu)
    bw = s.gpu.bandwidth_bytes_per_s * bandwidth_efficiency(s.gpu)
    llama = s.engine in ("llamacpp", "ollama") or sp.host.total_bytes > 0
    chunk = int(s.options.get("ubatch_size") or LLAMACPP_UBATCH) if llama else int(
        s.options.get("max_num_batched_tokens") or VLLM_CHUNK_TOKENS)
    n_chunks = math.ceil(t / max(chunk, 1))
    for st in sp.stages:
        comp = (2 * _active_params(st, frac) * t
                + attention_flops(spec, st.layers, t, max(t // 2, 1), sp.tp)) / flops
        mem = n_chunks * st.total_bytes / bw
        terms["gpu_compute" if comp >= mem else "gpu_memory_bandwidth"] += max(comp, mem)
    h = sp.host
    if h.total_bytes:  # copied per micro-batch, computed on the GPU
        terms["pcie"] += n_chunks * (h.dense_bytes + h.expert_bytes) / _pcie(s)
        terms["gpu_compute"] += (2 * _active_params(h, frac) * t + attention_flops(
            spec, sp.kv_host_layers, t, max(t // 2, 1), 1)) / flops
    if sp.streamed.total_bytes:
        terms["pcie"] += n_chunks * sp.streamed.total_bytes / _pcie(s)
    if sp.tp > 1 and sp.stages:
        per = _allreduce_s(s.gpu, sp.tp, t * spec.hidden_size * 2, _pcie_gen(s)[0])
        terms["interconnect"] += 2 * per * len(sp.stages[0].layers) * len(sp.stages)
    return terms


def _range(value: float | None, rng: tuple[float, float]) -> dict[str, float | None]:
    if value is None:
        return {"value": None, "low": None, "high": None}
    return {"value": round(value, 3), "low": round(value * rng[0], 3),
            "high": round(value * rng[1], 3)}


def speed_dict(s: SpeedSetup, split: WeightSplit | None = None) -> dict[str, Any]:
    """The ``speed`` object of ``estimate --json``: rates with a low/high range, and why."""
    assumptions: list[str] = []
    if s.gpu_count > 0 and (not s.gpu.bandwidth_bytes_per_s or not s.gpu.bf16_dense_tflops):
        return {"decode_tokens_per_s": _range(None, DECODE_RANGE),
                "prefill_tokens_per_s": _range(None, PREFILL_RANGE),
                "ttft_s": _range(None, PREFILL_RANGE), "bound_by": None,
                "assumptions": [f"{s.gpu.name}: bandwidth/TFLOPS unknown; no speed estimate"]}
    sp = split or _split(s)
    dec = decode_terms(s, sp)
    step = sum(dec.values())
    host_used = sp.host.total_bytes > 0
    rng = HOST_RANGE if host_used else DECODE_RANGE
    pre: dict[str, float] | None = prefill_terms(s, sp) if s.gpu_count > 0 else None
    ttft = sum(pre.values()) if pre else None
    bound = max(dec, key=lambda k: dec[k])
    assumptions.append(f"decode at a KV depth of {s.depth_tokens:,} tokens x {s.batch} "
                       f"sequence(s); bound by {bound.replace('_', ' ')} "
                       f"({dec[bound] / step:.0%} of the step)")
    gen, gen_src = _pcie_gen(s)
    if host_used:
        hm = _host(s)
        if s.host_kind_known:
            hm = replace(hm, kind_given=True, channels_given=True)
        assumptions.append(f"host RAM {describe_host(hm)}; CPU reaches "
                           f"{HOST_BANDWIDTH_EFFICIENCY:.0%} of it")
    if sp.streamed.total_bytes:
        assumptions.append(f"{sp.streamed.total_bytes / GIB:.1f} GiB per GPU streamed over PCIe "
                           f"gen{gen} x16 every step (--cpu-offload-gb; {gen_src})")
    elif host_used and s.gpu_count > 0:
        assumptions.append(f"host-RAM weights cross PCIe gen{gen} x16 for large batches and "
                           f"prefill ({gen_src})")
    if sp.tp > 1 and not s.gpu.interconnect_bytes_per_s:
        assumptions.append(f"all-reduce over PCIe gen{gen} x16 (no NVLink; {gen_src})")
    elif not host_used and not sp.streamed.total_bytes and s.host is not None and (
            s.host.pcie_gen or s.host.kind_given or s.host.channels_given) and \
            not s.gpu.unified_memory:
        assumptions.append(f"host memory and PCIe given but not used: nothing is read from host "
                           f"RAM or streamed over PCIe gen{gen} ({gen_src})")
    if sp.expert_fraction and s.batch > 1:
        assumptions.append(f"{s.batch} tokens touch {coverage(s.batch, sp.expert_fraction):.0%} "
                           "of each layer's experts (uniform routing)")
    if pre is None:
        assumptions.append("CPU-only: no CPU FLOPS figure, so no prefill estimate")
    out: dict[str, Any] = {
        "decode_tokens_per_s": _range(1.0 / step, rng),
        "prefill_tokens_per_s": _range(s.prompt_tokens / ttft if ttft else None, PREFILL_RANGE),
        "ttft_s": _range(ttft, (PREFILL_RANGE[1] ** -1, PREFILL_RANGE[0] ** -1)),
        "bound_by": bound,
        "decode_step_s": {k: round(v, 6) for k, v in dec.items() if v},
        "assumptions": assumptions,
    }
    if s.batch > 1:
        out["decode_tokens_per_s_total"] = _range(s.batch / step, rng)
    return out


def estimate_speed(est: Estimate, qm: QuantizedModel, gpu: Gpu,
                   host: HostMemory | int | None = None, *,
                   engine_options: Mapping[str, Any] | None = None,
                   depth_tokens: int | None = None,
                   prompt_tokens: int | None = None) -> dict[str, Any]:
    """Speed of the setup an ``Estimate`` describes (``api.estimate`` wires this in).

    ``host``: the host memory, or its size in bytes (then a typical dual-channel DDR5 desktop
    is assumed). ``engine_options``: the options the engine was given; when a llama.cpp-family
    engine placed the layers itself (--fit), its figures give the placement. Decode is given at
    a KV depth of ``depth_tokens`` (default: half the context, the mean depth of a sequence
    that fills it) and TTFT for a ``prompt_tokens`` prompt (default: the full context).
    """
    from vramplan.plan.offload import LLAMACPP_ENGINES, options_from_figures

    opts = dict(engine_options or {})
    if est.engine in LLAMACPP_ENGINES and not any(
            opts.get(k) is not None for k in ("n_gpu_layers", "n_cpu_moe", "cpu_moe",
                                              "override_tensor")):
        opts.update(options_from_figures(dict(est.engine_figures),
                                         qm.inventory.spec.num_layers) or {})
    hm = typical_host(host) if isinstance(host, int) and not isinstance(host, bool) else (
        host if isinstance(host, HostMemory) else None)
    ctx = est.context_tokens
    s = SpeedSetup(qm, gpu, est.gpu_count, Parallelism(est.tp, est.pp), est.engine, est.batch,
                   ctx // 2 if depth_tokens is None else depth_tokens,
                   ctx if prompt_tokens is None else prompt_tokens, est.kv_dtype, hm, opts)
    return speed_dict(s)
