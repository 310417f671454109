"""llama.cpp placement for the planner: how many expert layers or layers fit on the GPU(s), the
memory of each device, and the ``llama-server`` command.

Used as the planner's own model while ``engines/llamacpp.py`` is not registered (and to choose
``--n-cpu-moe`` / ``-ngl`` before asking the real engine when it is). Placement follows
``plan.offload`` (llama.cpp's own rules); memory per device is:

  GPU i : weights of its layers (+ output head on the last) + KV of its layers x context x slots
          + compute buffer + CUDA context                    must fit in reported - LLAMA_MARGIN
  host  : token embedding + CPU-resident tensors (mmap page cache) + KV of CPU layers
          + HOST_BASELINE_BYTES                               must fit in RAM - HOST_RESERVE
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vramplan.engines.generic import CUDA_CONTEXT_BYTES
from vramplan.hardware.gpus import Gpu
from vramplan.placement import Parallelism
from vramplan.plan.offload import WeightSplit, activation_bytes, split_cached
from vramplan.quant.schemes import QuantizedModel
from vramplan.result import Component, DeviceEstimate
from vramplan.speed import kv_read_bytes
from vramplan.units import GIB, MIB

__all__ = ["LLAMA_MARGIN_BYTES", "LlamaLayout", "command", "gpu_capacity", "host_usable_bytes",
           "layer_regex", "layout", "solve_offload", "totals"]

# SOURCE: llama.cpp common/common.h fit_params_target default 1024 MiB (--fit keeps this free).
LLAMA_MARGIN_BYTES = 1024 * MIB
UBATCH = 512  # llama.cpp default -ub
# ASSUMPTION: llama-server's own resident memory besides weights and KV (tokenizer, buffers,
# CPU compute buffer, CUDA host allocations), ~0.5-1 GiB in `ps` for a loaded server.
HOST_BASELINE_BYTES = 1 * GIB
# ASSUMPTION: RAM the OS and desktop keep: max(4 GiB, 10 %) of the installed RAM.
HOST_RESERVE_FRACTION = 0.10
HOST_RESERVE_MIN_BYTES = 4 * GIB
SRC = "vramplan.plan.llamacpp (llama.cpp placement rules, no engine model registered)"


def host_usable_bytes(ram_bytes: int) -> int:
    """RAM a model may take: installed minus max(4 GiB, 10 %) for the OS (ASSUMPTION)."""
    return ram_bytes - max(HOST_RESERVE_MIN_BYTES, int(ram_bytes * HOST_RESERVE_FRACTION))


@dataclass(frozen=True, slots=True)
class LlamaLayout:
    """One llama.cpp configuration with its memory per device."""

    options: dict[str, Any]  # engine options: n_gpu_layers / n_cpu_moe
    devices: tuple[DeviceEstimate, ...]  # GPUs, then "CPU" when anything is in host RAM
    host_ram_bytes: int
    split: WeightSplit
    gpu_fits: bool
    host_fits: bool

    @property
    def fits(self) -> bool:
        return self.gpu_fits and self.host_fits


def _gpu_capacity(gpu: Gpu) -> int:
    return gpu.memory_reported_bytes - LLAMA_MARGIN_BYTES


_TOTALS: dict[tuple[Any, ...], tuple[QuantizedModel, int, int]] = {}


def totals(qm: QuantizedModel, gpu_count: int, context: int, slots: int, kv_dtype: str,
           options: Mapping[str, Any]) -> tuple[int, int]:
    """(largest per-GPU total, host total) of ``layout`` without building devices: what the
    catalog-wide screen needs (memoized; the bytes do not depend on the GPU kind)."""
    key = (id(qm), gpu_count, context, slots, kv_dtype, repr(sorted(options.items())))
    hit = _TOTALS.get(key)
    if hit is not None and hit[0] is qm:
        return hit[1], hit[2]
    spec = qm.inventory.spec
    sp = split_cached(qm, Parallelism(), gpu_count, "llamacpp", dict(options))
    fixed = activation_bytes(spec, UBATCH, slots, 1) + CUDA_CONTEXT_BYTES
    gpu = max((st.total_bytes + kv_read_bytes(spec, st.layers, context, slots, kv_dtype, 1)
               + fixed for st in sp.stages), default=0)
    host = sp.host.total_bytes + kv_read_bytes(spec, sp.kv_host_layers, context, slots,
                                               kv_dtype, 1) + HOST_BASELINE_BYTES
    if len(_TOTALS) > 8192:
        _TOTALS.clear()
    _TOTALS[key] = (qm, gpu, host)
    return gpu, host


def gpu_capacity(gpu: Gpu) -> int:
    """What llama.cpp may fill: reported memory minus the --fit margin."""
    return _gpu_capacity(gpu)


def layout(qm: QuantizedModel, gpu: Gpu, gpu_count: int, context: int, slots: int,
           kv_dtype: str, ram_bytes: int | None, options: Mapping[str, Any]) -> LlamaLayout:
    """Memory of each device for one llama.cpp configuration (see module docstring)."""
    spec = qm.inventory.spec
    opts = dict(options)
    sp = split_cached(qm, Parallelism(), gpu_count, "llamacpp", opts)
    compute = activation_bytes(spec, UBATCH, slots, 1)
    devices = []
    gpu_ok = True
    for i, st in enumerate(sp.stages):
        kv = kv_read_bytes(spec, st.layers, context, slots, kv_dtype, 1)
        comps = (
            Component("model buffer", st.total_bytes, f"{len(st.layers)} layers on CUDA{i}",
                      SRC, "weights"),
            Component("KV buffer", kv, f"{context:,} tokens x {slots} slot(s), {kv_dtype}",
                      "vramplan.kv", "kv_cache"),
            Component("compute buffer", compute, f"ubatch {UBATCH} (generic estimate)",
                      "vramplan.engines.generic (ASSUMPTION)", "activation"),
            Component("CUDA context", CUDA_CONTEXT_BYTES, "per GPU process",
                      "ollama ml/device.go MinimumMemory (ASSUMPTION)", "overhead"),
        )
        d = DeviceEstimate(f"CUDA{i}", "gpu", gpu.name, _gpu_capacity(gpu), comps)
        gpu_ok = gpu_ok and d.fits
        devices.append(d)
    host_kv = kv_read_bytes(spec, sp.kv_host_layers, context, slots, kv_dtype, 1)
    host_total = sp.host.total_bytes + host_kv + HOST_BASELINE_BYTES
    cap = host_usable_bytes(ram_bytes) if ram_bytes else host_total
    if sp.host.total_bytes > sp.host.embedding_bytes or host_kv:
        devices.append(DeviceEstimate("CPU", "cpu", "host RAM", cap, (
            Component("CPU model buffer", sp.host.total_bytes, "mmap'ed: token embedding + "
                      "CPU-resident tensors (page cache)", SRC, "weights"),
            Component("CPU KV buffer", host_kv, "KV of CPU layers", "vramplan.kv", "kv_cache"),
            Component("process baseline", HOST_BASELINE_BYTES, "llama-server itself",
                      "ASSUMPTION", "overhead"))))
    return LlamaLayout(opts, tuple(devices), host_total, sp, gpu_ok,
                       ram_bytes is None or host_total <= cap)


def solve_offload(qm: QuantizedModel, gpu: Gpu, gpu_count: int, context: int, slots: int,
                  kv_dtype: str, ram_bytes: int | None) -> LlamaLayout | None:
    """The fastest llama.cpp layout that fits: all on GPU; else (MoE) the fewest expert layers
    in host RAM (``--n-cpu-moe N``, as many expert layers on the GPU as fit beside the KV
    cache); else the most layers on the GPU (``-ngl``). None when even that does not fit."""
    n = qm.inventory.spec.num_layers
    full = layout(qm, gpu, gpu_count, context, slots, kv_dtype, ram_bytes, {})
    if full.fits:
        return full
    if ram_bytes is None:
        return None

    def search(key: str, lo: int, hi: int, more_is_gpu: bool) -> LlamaLayout | None:
        best = None
        while lo <= hi:  # GPU use is monotonic in N: binary search the boundary
            mid = (lo + hi) // 2
            lay = layout(qm, gpu, gpu_count, context, slots, kv_dtype, ram_bytes, {key: mid})
            if lay.gpu_fits:
                best = lay if lay.host_fits else best
                lo, hi = (mid + 1, hi) if more_is_gpu else (lo, mid - 1)
            else:
                lo, hi = (lo, mid - 1) if more_is_gpu else (mid + 1, hi)
        return best

    if qm.inventory.spec.is_moe:
        found = search("n_cpu_moe", 0, n, more_is_gpu=False)
        if found is not None:
            return found
    return search("n_gpu_layers", 0, n, more_is_gpu=True)


def _digits(x: int, y: int) -> str:
    return str(x) if x == y else f"[{x}-{y}]"


def _rng(a: str, b: str) -> list[str]:
    """Regex alternatives matching the fixed-width numbers a..b (same length)."""
    if a == b:
        return [a]
    if len(a) == 1:
        return [_digits(int(a), int(b))]
    if a[0] == b[0]:
        return [a[0] + x for x in _rng(a[1:], b[1:])]
    k = len(a) - 1
    out: list[str] = []
    first, last = int(a[0]), int(b[0])
    if a[1:] != "0" * k:
        out += [a[0] + x for x in _rng(a[1:], "9" * k)]
        first += 1
    tail: list[str] = []
    if b[1:] != "9" * k:
        tail = [b[0] + x for x in _rng("0" * k, b[1:])]
        last -= 1
    if first <= last:
        out.append(_digits(first, last) + "[0-9]" * k)
    return out + tail


def layer_regex(n: int) -> str:
    """Regex alternation matching the layer numbers 0..n-1 exactly: 0..23 -> [0-9]|1[0-9]|2[0-3]."""
    parts: list[str] = []
    lo = 0
    while lo < n:
        hi = min(n - 1, 10 ** len(str(lo)) - 1)
        parts += _rng(str(lo), str(hi))
        lo = hi + 1
    return "|".join(parts)


def command(qm: QuantizedModel, lay: LlamaLayout, context: int, slots: int, gpu_count: int,
            kv_dtype: str) -> str:
    """``llama-server`` with -ot for experts in host RAM (what --n-cpu-moe N expands to)."""
    spec = qm.inventory.spec
    name = spec.model_id.rsplit("/", 1)[-1]
    ft = qm.scheme.gguf_ftype or "F16"
    parts = ["llama-server", f"-m {name}-{ft}.gguf", f"-c {context * slots}"]
    if slots > 1:
        parts.append(f"-np {slots}")
    ngl = lay.options.get("n_gpu_layers")
    parts.append(f"-ngl {ngl if ngl is not None else 999}")
    n_moe = int(lay.options.get("n_cpu_moe") or 0)
    if n_moe >= spec.num_layers:
        parts.append('-ot "exps=CPU"')
    elif n_moe:
        parts.append(f'-ot "blk\\.({layer_regex(n_moe)})\\.ffn_(up|down|gate)_exps=CPU"')
    if gpu_count > 1:
        parts.append("--split-mode layer")
    if kv_dtype in ("q8_0", "q4_0"):
        parts.append(f"--cache-type-k {kv_dtype} --cache-type-v {kv_dtype}")
    parts.append("-fa on")
    return " ".join(parts)
