"""The search: engines x quantizations x GPU counts/parallelism x offload x context.

Per (engine, placement) group the planner keeps the *best-quality* quantization that fits (and
meets ``min_tokens_per_s`` when one does), at the fewest GPUs when the count is free; options
from different groups are then ranked: fits, meets the rate, faster, fewer GPUs, less memory.
(Ranking quantizations by speed alone would always pick the smallest, lossiest one.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from vramplan.engines.base import engine_names
from vramplan.hardware.gpus import Gpu
from vramplan.plan.candidates import Cand, Run, screen_gguf, screen_st, verify
from vramplan.plan.types import PlanOption, Rejection
from vramplan.quant.schemes import scheme_from_config

ENGINE_ORDER = ("vllm", "sglang", "llamacpp", "ollama", "transformers", "generic")
ST_ENGINES = ("vllm", "sglang", "transformers")
GGUF_ENGINES = ("llamacpp", "ollama")
GGUF_QUANTS = ("q8_0", "q6_k", "q5_k_m", "q4_k_m", "q3_k_m", "q2_k")
LOSSY = frozenset({"q3_k_m", "q2_k"})  # below 4 bits: not used for the hardware question
COUNTS = (1, 2, 4, 8)
MAX_GPUS = 16
PER_GROUP = 3  # screened candidates kept per group, tried in order if the engine says no


@dataclass
class Group:
    engine: str
    family: str  # st | gguf
    placement: str  # gpu | offload
    found: list[Cand] = field(default_factory=list)
    fails: list[Cand] = field(default_factory=list)
    option: PlanOption | None = None
    failures: list[str] = field(default_factory=list)


def engines_for(engines: Iterable[str] | None, gpu: Gpu) -> list[tuple[str, str]]:
    """(engine, family) pairs to search on ``gpu``: registered engines (llama.cpp always: its
    engine model is built in and is the planner's GGUF screen too), ``generic`` standing in for
    the serving engines when none is registered."""
    reg = set(engine_names())
    want = {e.lower().replace(".", "").replace("-", "") for e in engines} if engines else None
    out: list[tuple[str, str]] = []
    st = [e for e in ST_ENGINES if e in reg and (want is None or e in want)]
    if not [e for e in ST_ENGINES if e in reg] and (want is None or want & {"vllm", "generic"}):
        st = ["generic"]
    for e in st:
        if _runs_on(e, gpu):
            out.append((e, "st"))
    for e in GGUF_ENGINES:
        if (e == "llamacpp" or e in reg) and (want is None or e in want) and _runs_on(e, gpu):
            out.append((e, "gguf"))
    return sorted(out, key=lambda x: ENGINE_ORDER.index(x[0]))


def _runs_on(engine: str, gpu: Gpu) -> bool:
    """Vendor support: vLLM/SGLang CUDA + ROCm (+ Gaudi for vLLM); llama.cpp everywhere but Gaudi;
    transformers on CUDA/ROCm/MPS."""
    gaudi = gpu.key.startswith("gaudi")
    if engine in ("vllm", "generic"):
        return gpu.vendor in ("nvidia", "amd") or gaudi
    if engine == "sglang":
        return gpu.vendor in ("nvidia", "amd")
    if engine == "transformers":
        return gpu.vendor in ("nvidia", "amd", "apple")
    return not gaudi


def quants_for(lm: Any, family: str, engine: str, gpu: Gpu, floor_4bit: bool) -> list[str | None]:
    """Best quality first. Safetensors: the checkpoint's own (None), then FP8, AWQ, GPTQ 4-bit
    for an unquantized checkpoint; GGUF: Q8_0 ... Q2_K (MXFP4_MOE first for MXFP4 models)."""
    qc = lm.spec.quantization_config
    ckpt = scheme_from_config(qc) if qc else None
    if family == "gguf":
        gg: list[str | None] = [q for q in GGUF_QUANTS if not (floor_4bit and q in LOSSY)]
        return (["mxfp4_moe", *gg]) if ckpt is not None and ckpt.method == "mxfp4" else gg
    if ckpt is not None:
        return [None]
    fp8_ok = bool(gpu.fp8_dense_tflops) or (gpu.vendor == "nvidia" and
                                            gpu.cuda_compute_capability >= "8.0")
    out: list[str | None] = [None]
    if fp8_ok and engine != "transformers":
        out.append("fp8")
    return out + ["awq", "gptq"]


def screen(run: Run, engine: str, family: str, quant: str | None, gpu: Gpu, n: int,
           placement: str) -> Cand:
    if family == "gguf":
        assert quant is not None
        return screen_gguf(run, engine, quant, gpu, n, placement)
    return screen_st(run, engine, quant, gpu, n, placement)


# ASSUMPTION: with no --min-tokens-per-s, a group prefers the best quantization that still
# decodes this fast (interactive use); when none does, the fastest one.
DEFAULT_TARGET_TOKENS_PER_S = 5.0


def _order(run: Run, found: list[Cand]) -> list[Cand]:
    """4-bit or better before 3/2-bit; within each, those reaching the rate target in quality
    order, then the others fastest first."""
    target = run.min_tokens_per_s if run.min_tokens_per_s is not None else \
        DEFAULT_TARGET_TOKENS_PER_S
    def key(c: Cand) -> tuple[bool, bool, float]:
        lossy = (c.quant or "") in LOSSY
        meets = c.decode >= target
        return (lossy, not meets, 0.0 if meets else -c.decode)  # sort is stable: quality order

    return sorted(found, key=key)


def search_group(run: Run, engine: str, family: str, gpu: Gpu, counts: Iterable[int],
                 placement: str, floor_4bit: bool = False) -> Group:
    """Fewest GPUs first; at that count the best-quality quantizations that screen OK (see
    ``_order`` for the rate target)."""
    g = Group(engine, family, placement)
    quants = quants_for(run.lm, family, engine, gpu, floor_4bit)
    target = run.min_tokens_per_s if run.min_tokens_per_s is not None else \
        DEFAULT_TARGET_TOKENS_PER_S
    for n in counts:
        for q in quants:
            try:
                c = screen(run, engine, family, q, gpu, n, placement)
            except Exception as e:  # a quantization this model cannot take (GGUF names...)
                if not isinstance(e, ValueError | KeyError | LookupError) and \
                        e.__class__.__name__ not in ("InputError", "ConfigError",
                                                     "ParallelismError"):
                    raise
                continue
            (g.found if c.ok else g.fails).append(c)
            meeting = [f for f in g.found if f.decode >= target]
            if meeting and len(g.found) >= PER_GROUP:  # best ones + fallbacks for the engine
                break
        if g.found:
            g.found = _order(run, g.found)[:PER_GROUP]
            return g
    return g


def resolve(run: Run, g: Group) -> PlanOption | None:
    """Ask the engine about the group's candidates in order; the first that it accepts wins."""
    for c in g.found:
        got = verify(run, c)
        if isinstance(got, PlanOption):
            g.option = got
            return got
        g.failures.append(f"{c.label()}: {got}")
    return None


# Decode rates within this factor count as a tie, which the engine order then breaks (the
# speed model's own spread is ~10 %, see speed.DECODE_RANGE).
SPEED_TIE = 1.05


def rank_key(o: PlanOption) -> tuple[Any, ...]:
    """Fits, meets the rate, faster (5 % buckets), engine order, fewer GPUs, less memory."""
    dec = o.decode_tokens_per_s or 0.0
    bucket = int(math.log(dec) / math.log(SPEED_TIE)) if dec > 0 else -10**6
    eng = ENGINE_ORDER.index(o.engine) if o.engine in ENGINE_ORDER else len(ENGINE_ORDER)
    return (not o.fits, not o.meets_min_tokens_per_s, -bucket, eng, o.gpu_count,
            o.gpu_count * max((d.capacity_bytes for d in o.devices if d.kind == "gpu"),
                              default=0))


ENGINE_LABEL = {"vllm": "vLLM", "sglang": "SGLang", "llamacpp": "llama.cpp", "ollama": "Ollama",
                "transformers": "transformers", "generic": "generic"}


def rejections(groups: list[Group], gpu: Gpu, n: int) -> list[Rejection]:
    """One line per engine that has no option here, from its smallest quantization's screen."""
    out = []
    for engine in dict.fromkeys(g.engine for g in groups):
        mine = [g for g in groups if g.engine == engine]
        if any(g.option for g in mine):
            continue
        parts, setup = [], f"{n} x {gpu.name}"
        for g in mine:
            if g.failures:
                parts.append(g.failures[-1])
            elif g.fails:
                last = g.fails[-1]
                setup = last.label()
                parts.append(last.reason if g.placement == "gpu" else
                             f"{'host-RAM offload' if g.family == 'gguf' else 'offload'}: "
                             f"{last.reason}")
        if engine == "vllm" and any(g.placement == "gpu" for g in mine):
            parts = [p for p in parts if p]
            if not any("offload" in p for p in parts):
                parts.append("vLLM has no expert offload to host RAM beyond --cpu-offload-gb")
            else:
                parts = [p.replace("offload: --cpu-offload-gb", "vLLM has no expert offload to "
                                   "host RAM beyond --cpu-offload-gb; --cpu-offload-gb")
                         for p in parts]
        if parts:
            out.append(Rejection(engine, setup, f"{ENGINE_LABEL.get(engine, engine)}: " +
                                 "; ".join(dict.fromkeys(parts))))
    return out
