"""Planner candidates: screen one (engine, quantization, GPU kind, count, placement) fast, then
check the survivors with the engine model and turn them into ``PlanOption``s.

The safetensors screen is the planner's own arithmetic (per-GPU weights from ``plan.offload``, KV
from ``vramplan.kv``, a generic activation/overhead term, the engine's share of GPU memory); the
GGUF screen is the llama.cpp engine's memory model (``plan.llamacpp``). The screen only decides
which candidates are worth an engine call (``api.estimate``, ~5 ms each), which gives the verdict,
devices and command.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from vramplan import api
from vramplan.api import _priced as priced
from vramplan.engines.generic import CUDA_CONTEXT_BYTES, NCCL_BYTES
from vramplan.errors import VramplanError
from vramplan.hardware.gpus import Gpu
from vramplan.hardware.host import HostMemory
from vramplan.placement import Parallelism, check_tp
from vramplan.plan import llamacpp
from vramplan.plan.llamacpp import FIT_MARGIN
from vramplan.plan.offload import activation_bytes, describe, options_from_figures, split_cached
from vramplan.plan.types import PlanOption
from vramplan.quant.schemes import QuantizedModel
from vramplan.result import DeviceEstimate
from vramplan.speed import SpeedSetup, kv_read_bytes, speed_dict
from vramplan.units import GIB, fmt_bytes

# Share of reported GPU memory each engine lets weights + KV + activations use by default:
# vLLM gpu_memory_utilization 0.9 (0.92 in newest), SGLang mem_fraction_static ~0.85-0.88
# (server_args.py), transformers/llama.cpp/generic: all of it (their own margins are modelled).
ENGINE_SHARE = {"vllm": 0.9, "sglang": 0.85}
VLLM_CHUNK = 8192  # vLLM max_num_batched_tokens default (activation peak of the profile run)
# Below this decode rate an option that streams weights over PCIe is reported as rejected.
MIN_USEFUL_TOKENS_PER_S = 1.0


@dataclass
class Run:
    """Resolved inputs shared by every candidate of one search."""

    lm: Any  # api.LoadedModel
    model_arg: Any  # what the caller passed (name, path or config), for api.estimate
    context: int  # tokens per sequence to fit
    concurrency: int
    kv_dtype: str  # resolved for safetensors engines
    ram_bytes: int | None
    host: HostMemory | None
    min_tokens_per_s: float | None
    context_given: bool
    registered: frozenset[str] = frozenset()
    engine_calls: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def spec(self) -> Any:
        return self.lm.spec


@dataclass
class Cand:
    """A candidate setup and what the screen found."""

    engine: str
    family: str  # st | gguf
    quant: str | None
    qm: QuantizedModel
    gpu: Gpu
    n: int
    par: Parallelism
    placement: str  # gpu | offload
    options: dict[str, Any] = field(default_factory=dict)
    ok: bool = False
    reason: str = ""
    gpu_bytes: int = 0  # screen: largest per-GPU total
    host_bytes: int = 0
    speed: dict[str, Any] = field(default_factory=dict)

    @property
    def decode(self) -> float:
        v = (self.speed.get("decode_tokens_per_s") or {}).get("value")
        return float(v) if v is not None else 0.0

    def label(self) -> str:
        q = self.qm.scheme.name
        return f"{self.n} x {self.gpu.name}, {q}" + (", offload" if self.placement != "gpu"
                                                      else "")


def parallel_options(spec: Any, n: int, engine: str) -> list[Parallelism]:
    """TP over all n GPUs (at most 8: one node); expert parallel when TP cannot split the
    experts; else TP x PP (PP across nodes beyond 8 GPUs)."""
    if engine == "transformers" or n == 1:
        return [Parallelism()]
    out = []
    for tp in [d for d in range(min(n, 8), 0, -1) if n % d == 0]:  # TP within a node of 8
        for ep in ((False, True) if spec.is_moe else (False,)):
            par = Parallelism(tp=tp, pp=n // tp, ep=ep)
            if par.pp > spec.num_layers:
                continue
            try:
                check_tp(spec, par)
            except VramplanError:
                continue
            out.append(par)
            break
        if out:
            return out
    return out


def _speed(run: Run, c: Cand, context: int) -> dict[str, Any]:
    engine = "llamacpp" if c.family == "gguf" else c.engine
    s = SpeedSetup(c.qm, c.gpu, c.n, c.par, engine, run.concurrency, context // 2, context,
                   "fp16" if c.family == "gguf" else run.kv_dtype, run.host, c.options)
    return speed_dict(s)


def screen_st(run: Run, engine: str, quant: str | None, gpu: Gpu, n: int,
              placement: str) -> Cand:
    """vLLM / SGLang / transformers / generic: per-GPU weights + KV + activations + overhead
    against the engine's share of reported memory."""
    spec = run.spec
    qm = priced(run.lm, quant)
    pars = parallel_options(spec, n, engine)
    if not pars:
        c = Cand(engine, "st", quant, qm, gpu, n, Parallelism(), placement)
        c.reason = f"{n} GPUs cannot split the model (heads/experts not divisible)"
        return c
    par = pars[0]
    c = Cand(engine, "st", quant, qm, gpu, n, par, placement)
    sp = split_cached(qm, par, n, engine)
    if engine == "transformers":
        w = math.ceil(sum(s.total_bytes for s in sp.stages) / n)
        kv = math.ceil(kv_read_bytes(spec, tuple(range(spec.num_layers)), run.context,
                                     run.concurrency, run.kv_dtype, 1) / n)
    else:
        w = max(s.total_bytes for s in sp.stages)
        kv = max(kv_read_bytes(spec, s.layers, run.context, run.concurrency, run.kv_dtype,
                               par.tp) for s in sp.stages)
    over = activation_bytes(spec, min(run.context * run.concurrency, VLLM_CHUNK),
                                 min(run.concurrency, 256), par.tp) + CUDA_CONTEXT_BYTES + (
        NCCL_BYTES if n > 1 else 0)
    usable = int(gpu.memory_reported_bytes * ENGINE_SHARE.get(engine, 1.0))
    c.gpu_bytes = w + kv + over
    if placement == "gpu":
        c.ok = c.gpu_bytes <= usable
        if not c.ok:
            c.reason = (f"weights {fmt_bytes(w)} + KV {fmt_bytes(kv)} + activations/overhead "
                        f"{fmt_bytes(over)} per GPU > {fmt_bytes(usable)} usable on "
                        f"{gpu.name}" + (f" x {n} (TP={par.tp}, PP={par.pp})" if n > 1 else ""))
    else:  # vLLM --cpu-offload-gb: stream the excess over PCIe every step
        excess = c.gpu_bytes - usable
        if excess <= 0:
            return c  # not an offload case
        off = math.ceil(excess / GIB) + 1
        if off * GIB >= w:
            c.reason = f"even --cpu-offload-gb {off} leaves no room for KV and activations"
            return c
        c.options = {"cpu_offload_gb": off}
        c.host_bytes = off * GIB * n
        c.speed = _speed(run, c, run.context)
        if c.decode < MIN_USEFUL_TOKENS_PER_S:
            c.reason = (f"--cpu-offload-gb {off} would stream {off} GiB per GPU over PCIe every "
                        f"token: ~{c.decode:.2f} tok/s")
        elif run.ram_bytes is None:
            c.reason = (f"--cpu-offload-gb {off} (~{c.decode:.1f} tok/s) needs host RAM: give "
                        "--ram to plan it")
        elif c.host_bytes > llamacpp.host_usable_bytes(run.ram_bytes):
            c.reason = (f"--cpu-offload-gb {off} needs {fmt_bytes(c.host_bytes)} of pinned host "
                        f"RAM, more than {fmt_bytes(run.ram_bytes)} installed allows")
        else:
            c.ok = True
    if c.ok and not c.speed:
        c.speed = _speed(run, c, run.context)
    return c


def screen_gguf(run: Run, engine: str, quant: str, gpu: Gpu, n: int, placement: str) -> Cand:
    """llama.cpp / Ollama: the llama.cpp engine's memory of the placement the planner chooses
    (plan.llamacpp)."""
    qm = priced(run.lm, quant)
    c = Cand(engine, "gguf", quant, qm, gpu, n, Parallelism(), placement)
    if placement == "gpu":
        lay = llamacpp.layout(qm, gpu, n, run.context, run.concurrency, "fp16", None, {})
    else:
        found = llamacpp.solve_offload(qm, gpu, n, run.context, run.concurrency, "fp16",
                                       run.ram_bytes)
        if found is None or not found.options:
            c.reason = _gguf_reason(run, qm, gpu, n)
            return c
        lay = found
    c.options = dict(lay.options)
    c.gpu_bytes = max(lay.gpu_bytes, default=0)
    c.host_bytes = lay.host_ram_bytes
    c.ok = lay.gpu_fits
    if c.ok:
        c.speed = _speed(run, c, run.context)
    else:
        c.reason = (f"{fmt_bytes(c.gpu_bytes)} per GPU > {fmt_bytes(lay.usable_bytes)} usable on "
                    f"{gpu.name}" + (f" x {n}" if n > 1 else "")
                    + f" ({fmt_bytes(lay.gpu_capacity_bytes)} less the {fmt_bytes(FIT_MARGIN)} "
                    "--fit keeps free)")
    return c


def _gguf_reason(run: Run, qm: QuantizedModel, gpu: Gpu, n: int) -> str:
    if run.ram_bytes is None:
        return "does not fit in GPU memory, and no host RAM was given (--ram) for offload"
    lay = llamacpp.layout(qm, gpu, n, run.context, run.concurrency, "fp16", run.ram_bytes,
                          {"cpu_moe": True} if qm.inventory.spec.is_moe else
                          {"n_gpu_layers": 0})
    need = lay.host_ram_bytes
    return (f"even with all {'experts' if qm.inventory.spec.is_moe else 'layers'} in host RAM it "
            f"needs {fmt_bytes(need)} of RAM, more than the "
            f"{fmt_bytes(llamacpp.host_usable_bytes(run.ram_bytes))} usable of "
            f"{fmt_bytes(run.ram_bytes)}" if not lay.host_fits else
            "the GPU cannot hold the non-expert weights, KV cache and buffers")


# --------------------------------------------------------------------------- verification

def _kv_bytes_per_token(run: Run, d: DeviceEstimate) -> float:
    """KV bytes one more token of one sequence adds on ``d``: its KV (sized for exactly
    context x concurrency by these engines) over context x concurrency."""
    return d.kv_cache_bytes / max(run.context * run.concurrency, 1)


def capacity(run: Run, c: Cand, devices: tuple[DeviceEstimate, ...],
             figures: dict[str, Any]) -> tuple[int, int, str, str]:
    """(max context at the concurrency, max concurrency at the context, binding, detail)."""
    spec = run.spec
    max_pos = spec.max_position_embeddings
    kv_tokens = figures.get("kv_cache_tokens")
    tight = max(devices, key=lambda d: d.total_bytes / max(d.capacity_bytes, 1))
    if isinstance(kv_tokens, int) and kv_tokens > 0:  # a preallocating engine: KV pool size
        max_ctx = kv_tokens // run.concurrency
        max_conc = kv_tokens // max(run.context, 1)
        detail = (f"KV pool {kv_tokens:,} tokens on {tight.label} "
                  f"(weights {fmt_bytes(tight.weights_bytes)} of {fmt_bytes(tight.capacity_bytes)})")
        binding = "gpu_memory"
    else:
        best_ctx, best_conc, best = math.inf, math.inf, tight
        for d in devices:
            if d.kind == "cpu" and run.ram_bytes is None:
                continue  # host RAM not given: not a limit we know
            per = _kv_bytes_per_token(run, d)
            if per <= 0:
                continue
            free = max(d.free_bytes, 0)
            ctx = run.context + free / (per * run.concurrency)
            conc = run.concurrency + free / (per * run.context)
            if ctx < best_ctx:
                best_ctx, best = ctx, d
            best_conc = min(best_conc, conc)
        max_ctx = int(best_ctx) if best_ctx != math.inf else max_pos
        max_conc = int(best_conc) if best_conc != math.inf else run.concurrency
        binding = "host_ram" if best.kind == "cpu" else "gpu_memory"
        detail = (f"{best.name}: {fmt_bytes(best.total_bytes)} of {fmt_bytes(best.capacity_bytes)}"
                  f" (weights {fmt_bytes(best.weights_bytes)}, KV {fmt_bytes(best.kv_cache_bytes)})")
    if max_ctx >= max_pos:
        max_ctx, binding = max_pos, "model_context"
        detail = f"the model's trained context ({max_pos:,} tokens) before memory runs out"
    return max_ctx, max(max_conc, 0), binding, detail


def _st_command(run: Run, c: Cand) -> str:
    """`vllm serve` when the engine gave none (generic engine)."""
    parts = ["vllm serve", run.spec.model_id, f"--tensor-parallel-size {c.par.tp}"]
    if c.par.pp > 1:
        parts.append(f"--pipeline-parallel-size {c.par.pp}")
    parts.append(f"--max-model-len {run.context}")
    if c.qm.scheme.source == "--quant" and c.qm.scheme.method == "fp8":
        parts.append("--quantization fp8")
    if c.par.ep:
        parts.append("--enable-expert-parallel")
    return " ".join(parts)


def verify(run: Run, c: Cand) -> PlanOption | str:
    """The engine's verdict on a screened candidate: a ``PlanOption`` or its failure text."""
    notes: list[str] = []
    run.engine_calls += 1
    try:
        est = api.estimate(run.model_arg, gpu=c.gpu.key, gpus=c.n,
                           quant=c.quant, context=run.context, batch=run.concurrency,
                           kv_dtype="auto", tp=c.par.tp, pp=c.par.pp, ep=c.par.ep,
                           engine=c.engine, engine_options=_engine_opts(run, c),
                           ram=run.ram_bytes)
    except VramplanError as e:
        return str(e)
    if not est.fits:
        return est.failure or "; ".join(f"{d.name} needs {fmt_bytes(d.total_bytes)} of "
                                        f"{fmt_bytes(d.capacity_bytes)}" for d in est.devices
                                        if not d.fits)
    conc = est.engine_figures.get("max_concurrency")
    if isinstance(conc, int | float) and conc < run.concurrency:
        return (f"KV cache holds {conc:.2f} requests of {run.context:,} tokens, fewer than "
                f"the {run.concurrency} asked")
    devices, host, figures = est.devices, est.host_ram_bytes, dict(est.engine_figures)
    command = est.command or (_st_command(run, c) if c.family == "st" else "")
    notes += [n for n in est.notes if "pre-quantized" in n]
    if c.engine == "ollama":  # speed follows the placement Ollama chose
        chosen = options_from_figures(figures, run.spec.num_layers)
        if chosen is not None and chosen != c.options:
            c.options = chosen
            c.speed = {}
    max_ctx, max_conc, binding, detail = capacity(run, c, devices, figures)
    sp = c.speed or _speed(run, c, run.context)
    dec = sp["decode_tokens_per_s"]["value"]
    meets = run.min_tokens_per_s is None or (dec is not None and dec >= run.min_tokens_per_s)
    placement = describe(split_cached(c.qm, c.par, c.n, c.engine, c.options),
                         run.spec.num_layers, c.n)
    label = c.qm.scheme.name
    if c.qm.scheme.method == "none":
        label = {"float32": "fp32", "float16": "fp16"}.get(run.spec.torch_dtype, "bf16") + \
            " (checkpoint)"
    if c.family == "gguf" and any(d.kind == "cpu" and d.weights_bytes > 2 * GIB
                                  for d in devices):
        notes.append("prefill copies the host-RAM weights over PCIe once per 512-token ubatch; "
                     "-ub 4096 -b 4096 speeds it up several times for a larger compute buffer")
    return PlanOption(
        engine=c.engine, quant=c.quant or "checkpoint", quant_label=label,
        gpu=c.gpu.key, gpu_name=c.gpu.name, gpu_count=c.n, tp=c.par.tp, pp=c.par.pp,
        ep=c.par.ep, fits=True, devices=tuple(devices), host_ram_bytes=host,
        context_tokens=run.context, concurrency=run.concurrency, decode_tokens_per_s=dec,
        prefill_tokens_per_s=sp["prefill_tokens_per_s"]["value"], ttft_s=sp["ttft_s"]["value"],
        speed=sp, max_context_tokens=max_ctx, max_concurrency=max_conc,
        binding_constraint=binding, binding_detail=detail, command=command, placement=placement,
        engine_options=dict(c.options), verified=True, meets_min_tokens_per_s=meets,
        notes=tuple(notes))


def _engine_opts(run: Run, c: Cand) -> dict[str, Any]:
    """Options for the engine check. Ollama places layers itself (llama-server --fit), so it
    gets none of the planner's placement, only its slot count."""
    if c.engine == "ollama":
        return {"num_parallel": run.concurrency} if run.concurrency > 1 else {}
    opts = dict(c.options)
    if c.par.ep:
        opts["enable_expert_parallel"] = True
    return opts
