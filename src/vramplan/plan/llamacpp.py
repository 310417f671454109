"""llama.cpp placement for the planner: the largest share of a model (``--n-cpu-moe N``, else
``-ngl N``) that fits on the GPU(s), and the host-RAM reserve.

The memory of each device is the llama.cpp engine's own model, not a second one: the flags are
resolved by ``engines.llamacpp.resolve`` (as ``vramplan estimate`` resolves them) and the buffers
sized by ``engines.llamacpp_memory.layout``, so the bytes here are the ones ``vramplan estimate``
prints for the same flags. What the planner adds is policy:

  GPU i : llama.cpp's buffers + the engine's unaccounted per-GPU memory must leave --fit's margin
          (``FIT_MARGIN``, 1024 MiB) free, the test --fit itself applies: a placement that passes
          it is one --fit leaves unchanged
  host  : the engine's host buffers must fit in RAM - max(4 GiB, 10 %) (``host_usable_bytes``)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vramplan.engines.base import Setup, Workload
from vramplan.engines.llamacpp import (
    UNACCOUNTED,
    gpu_capacity,
    gpu_prefix,
    model_view,
    profile_for,
    resolve,
)
from vramplan.engines.llamacpp_fit import FIT_MARGIN
from vramplan.engines.llamacpp_memory import ModelView
from vramplan.engines.llamacpp_memory import layout as memory_layout
from vramplan.hardware.gpus import Gpu
from vramplan.placement import Parallelism
from vramplan.plan.offload import WeightSplit, split_cached
from vramplan.quant.schemes import QuantizedModel
from vramplan.units import GIB, MIB

__all__ = ["FIT_MARGIN", "LlamaLayout", "host_usable_bytes", "layout", "solve_offload"]

# ASSUMPTION: RAM the OS, the desktop and llama-server's own process (outside the buffers the
# engine model counts) keep: max(4 GiB, 10 %) of the installed RAM.
HOST_RESERVE_FRACTION = 0.10
HOST_RESERVE_MIN_BYTES = 4 * GIB
PROFILE = profile_for(None)  # the build `--engine llamacpp` (the planner's check) models


def host_usable_bytes(ram_bytes: int) -> int:
    """RAM a model may take: installed minus max(4 GiB, 10 %) for the OS (ASSUMPTION)."""
    return ram_bytes - max(HOST_RESERVE_MIN_BYTES, int(ram_bytes * HOST_RESERVE_FRACTION))


@dataclass(frozen=True, slots=True)
class LlamaLayout:
    """One llama.cpp configuration: engine options and the engine's bytes per device."""

    options: dict[str, Any]  # engine options: {} / n_gpu_layers / n_cpu_moe / cpu_moe
    gpu_bytes: tuple[int, ...]  # per GPU: the device totals `vramplan estimate` shows
    gpu_capacity_bytes: int  # per GPU, what the engine budgets against
    host_ram_bytes: int  # the engine's host buffers (its CPU device total)
    host_usable_bytes: int | None  # host_usable_bytes(RAM); None: RAM not given
    split: WeightSplit  # where the weights live, for the speed model and the description

    @property
    def usable_bytes(self) -> int:
        """Per GPU: capacity less --fit's margin."""
        return self.gpu_capacity_bytes - FIT_MARGIN

    @property
    def gpu_fits(self) -> bool:
        return all(b <= self.usable_bytes for b in self.gpu_bytes)

    @property
    def host_fits(self) -> bool:
        return self.host_usable_bytes is None or self.host_ram_bytes <= self.host_usable_bytes

    @property
    def fits(self) -> bool:
        return self.gpu_fits and self.host_fits


def _setup(qm: QuantizedModel, gpu: Gpu, gpu_count: int, context: int, slots: int,
           kv_dtype: str, options: Mapping[str, Any]) -> Setup:
    """What ``api.estimate`` hands the engine for these flags (context given, not default)."""
    return Setup(qm, gpu, gpu_count, Parallelism(), (),
                 Workload(context, slots, kv_dtype, False, dict(options)))


_VIEWS: dict[int, tuple[QuantizedModel, ModelView]] = {}


def _view(setup: Setup) -> ModelView:
    """``engines.llamacpp.model_view`` memoized by the identity of the priced model."""
    qm = setup.model
    hit = _VIEWS.get(id(qm))
    if hit is not None and hit[0] is qm:
        return hit[1]
    if len(_VIEWS) > 512:
        _VIEWS.clear()
    view = model_view(setup)[0]
    _VIEWS[id(qm)] = (qm, view)
    return view


_BUFFERS: dict[tuple[Any, ...], tuple[QuantizedModel, tuple[int, ...], int]] = {}


def _buffers(qm: QuantizedModel, gpu: Gpu, gpu_count: int, context: int, slots: int,
             kv_dtype: str, options: Mapping[str, Any]) -> tuple[tuple[int, ...], int]:
    """(llama.cpp's buffers per GPU, host buffers) from the engine's layout, memoized.

    The bytes do not depend on the GPU kind: equal GPUs split layers equally whatever their
    memory, and the per-GPU unaccounted memory is added by the caller. --fit is not run: the
    planner only accepts placements that pass --fit's own test, which --fit leaves unchanged.
    """
    key = (id(qm), gpu_count, context, slots, kv_dtype, repr(sorted(options.items())))
    hit = _BUFFERS.get(key)
    if hit is not None and hit[0] is qm:
        return hit[1], hit[2]
    setup = _setup(qm, gpu, gpu_count, context, slots, kv_dtype, options)
    view = _view(setup)
    r = resolve(setup, view, PROFILE)
    lo = memory_layout(view, r.cfg, r.pad)
    gpus = tuple(lo.total(g) for g in r.cfg.gpu_names[:r.cfg.n_gpu])
    host = lo.host_total()
    if len(_BUFFERS) > 8192:
        _BUFFERS.clear()
    _BUFFERS[key] = (qm, gpus, host)
    return gpus, host


_LAYOUTS: dict[tuple[Any, ...], tuple[QuantizedModel, Gpu, LlamaLayout]] = {}


def layout(qm: QuantizedModel, gpu: Gpu, gpu_count: int, context: int, slots: int,
           kv_dtype: str, ram_bytes: int | None, options: Mapping[str, Any]) -> LlamaLayout:
    """The engine's bytes per device for one llama.cpp configuration (see module docstring);
    memoized by the identity of the priced model and the GPU (the planner's hottest call)."""
    opts = dict(options)
    key = (id(qm), id(gpu), gpu_count, context, slots, kv_dtype, ram_bytes,
           repr(sorted(opts.items())))
    hit = _LAYOUTS.get(key)
    if hit is not None and hit[0] is qm and hit[1] is gpu:
        return hit[2]
    buffers, host = _buffers(qm, gpu, gpu_count, context, slots, kv_dtype, opts)
    setup = _setup(qm, gpu, gpu_count, context, slots, kv_dtype, opts)
    unacc = UNACCOUNTED.get(gpu_prefix(setup), 457 * MIB)
    lay = LlamaLayout(opts, tuple(b + unacc for b in buffers), gpu_capacity(setup), host,
                      host_usable_bytes(ram_bytes) if ram_bytes else None,
                      split_cached(qm, Parallelism(), gpu_count, "llamacpp", opts))
    if len(_LAYOUTS) > 16384:
        _LAYOUTS.clear()
    _LAYOUTS[key] = (qm, gpu, lay)
    return lay


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
