"""``plan`` (best ways to run a model on given hardware), ``hardware`` (fewest GPUs per kind) and
``fit`` (which catalog models run on given hardware)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vramplan import api
from vramplan.engines.base import engine_names
from vramplan.errors import InputError
from vramplan.hardware.gpus import Gpu, get_gpu, load_catalog
from vramplan.hardware.host import (
    HostMemory,
    describe_host,
    detect_host_ram,
    detect_local,
    link_pcie_gen,
    resolve_host,
    typical_host,
)
from vramplan.kv import resolve_kv_dtype
from vramplan.placement import Parallelism
from vramplan.plan import llamacpp
from vramplan.plan.candidates import Cand, Run, verify
from vramplan.plan.offload import describe
from vramplan.plan.search import (
    COUNTS,
    ENGINE_ORDER,
    MAX_GPUS,
    Group,
    engines_for,
    rank_key,
    rejections,
    resolve,
    screen,
    search_group,
)
from vramplan.plan.types import FitRow, HardwareRow, PlanOption, PlanResult, Suggestion
from vramplan.units import GIB, fmt_bytes

MIN_CONTEXT = 8192  # ASSUMPTION: the shortest context worth planning for when none is given
ALTERNATIVE_KINDS = ("h200", "h100-sxm", "b200", "a100-80gb-sxm", "mi300x", "rtx-pro-6000",
                     "rtx-5090", "rtx-4090")
HARDWARE_COUNTS = (1, 2, 4, 8, 16)
# ASSUMPTION: more than 8 GPUs means several nodes; only planned for datacenter parts whose
# GPU link is at least this fast (NVLink/Infinity Fabric class), never for PCIe-only cards.
MULTI_NODE_LINK = 300 * 10**9


def _resolve_gpu(gpu: str | None, gpus: int | None) -> tuple[list[Gpu], int | None, list[str]]:
    """GPU kinds to search, the fixed count (None: search counts), and notes."""
    if gpus is not None and (isinstance(gpus, bool) or gpus < 1 or gpus > MAX_GPUS):
        raise InputError("--gpus", f"must be between 1 and {MAX_GPUS}, got {gpus}",
                         "e.g. --gpus 2")
    if gpu is None:
        return [g for g in load_catalog()], gpus, []
    if gpu.strip().lower() == "auto":
        found = detect_local()
        if not found:
            raise InputError("--gpu auto", "no GPU detected (no NVML, nvidia-smi or Apple "
                             "silicon)", "name it, e.g. --gpu rtx-4090")
        name, total = found[0]
        try:
            g = get_gpu(name)
        except InputError:
            raise InputError("--gpu auto", f"detected {name!r} ({fmt_bytes(total)}), which is not "
                             "in the GPU catalog", "name the closest one with --gpu") from None
        return [g], gpus or len(found), [f"detected {len(found)} x {name}"]
    # A named GPU is the user's hardware: one of it unless --gpus says more (the fewest-GPU
    # question has its own listing, "Smallest GPU-only setups", and `vramplan hardware`).
    return [get_gpu(gpu)], gpus or 1, ([] if gpus else ["one GPU assumed: set --gpus"])


def _resolve_ram(ram: int | str | None) -> tuple[int | None, list[str]]:
    if ram is None:
        return None, []
    if isinstance(ram, str):
        if ram.strip().lower() != "auto":
            from vramplan.units import parse_bytes

            return _resolve_ram(parse_bytes(ram, "--ram"))
        found = detect_host_ram()
        if not found:
            raise InputError("--ram auto", "could not read the installed RAM",
                             "give it, e.g. --ram 64GiB")
        return found, [f"detected {fmt_bytes(found)} of host RAM"]
    if isinstance(ram, bool) or ram <= 0:
        raise InputError("--ram", f"must be a positive size, got {ram}", "e.g. --ram 128GiB")
    return int(ram), []


def _validate(context: int | None, concurrency: int, min_tps: float | None) -> None:
    if context is not None and (context < 1 or context > api.MAX_CONTEXT_TOKENS):
        raise InputError("--context", f"must be between 1 and {api.MAX_CONTEXT_TOKENS:,} tokens, "
                         f"got {context:,}", "e.g. --context 32768")
    if isinstance(concurrency, bool) or concurrency < 1 or concurrency > api.MAX_BATCH:
        raise InputError("--concurrency", f"must be between 1 and {api.MAX_BATCH}, got "
                         f"{concurrency}", "e.g. --concurrency 8")
    if min_tps is not None and not 0 <= min_tps <= 1e6:
        raise InputError("--min-tokens-per-s", f"must be between 0 and 1e6, got {min_tps}",
                         "e.g. --min-tokens-per-s 10")


def _run(model: str | Mapping[str, Any], context: int | None, concurrency: int,
         ram: int | None, min_tps: float | None, host: HostMemory | None = None) -> Run:
    lm = api.load(model)
    spec = lm.spec
    if context is not None and context > spec.max_position_embeddings:
        raise InputError("--context", f"{context:,} tokens is beyond {spec.model_id}'s trained "
                         f"context of {spec.max_position_embeddings:,}",
                         f"use --context {spec.max_position_embeddings} or less")
    ctx = context or min(spec.max_position_embeddings, api.DEFAULT_CONTEXT_CAP)
    kvd = "auto"
    if spec.quantization_config:
        from vramplan.quant.schemes import scheme_from_config

        kvd = scheme_from_config(spec.quantization_config).kv_cache_dtype or "auto"
    return Run(lm, model, ctx, concurrency, resolve_kv_dtype(kvd, spec), ram,
               host or (typical_host(ram) if ram else None), min_tps, context is not None,
               frozenset(engine_names()))


def _groups(run: Run, gpu: Gpu, counts: Sequence[int], engines: Iterable[str] | None,
            offload: bool, floor_4bit: bool = False) -> list[Group]:
    out = []
    for engine, family in engines_for(engines, gpu):
        out.append(search_group(run, engine, family, gpu, counts, "gpu", floor_4bit))
        if offload and (family == "gguf" or engine == "vllm"):
            out.append(search_group(run, engine, family, gpu, counts[:1], "offload"))
    return out


def _options(run: Run, groups: list[Group]) -> list[PlanOption]:
    for g in sorted(groups, key=lambda g: -(g.found[0].decode if g.found else 0)):
        if g.found:
            resolve(run, g)
    return sorted((g.option for g in groups if g.option), key=rank_key)


def _largest_context(run: Run, o: PlanOption, gpu: Gpu, top: int) -> PlanOption:
    """The same engine, quantization, count and placement at the largest context (a multiple of
    1024 tokens, at most ``top``) that the screen admits, checked by the engine model."""
    family = "gguf" if o.engine in ("llamacpp", "ollama") else "st"
    placement = "offload" if o.host_ram_bytes > 2 * GIB or o.engine_options.get(
        "cpu_offload_gb") else "gpu"
    quant = None if o.quant == "checkpoint" else o.quant
    short = run.context

    def cand(ctx: int) -> Cand | None:
        run.context = ctx
        try:
            c = screen(run, o.engine, family, quant, gpu, o.gpu_count, placement)
        finally:
            run.context = short
        return c if c.ok else None

    first = min(top, o.max_context_tokens) // 1024 * 1024
    if first > short:  # the engine's own room first (the screen is only an approximation)
        c0 = _same_layout(run, o, gpu, quant, first) if family == "gguf" else \
            _screen_any(run, o, gpu, quant, first)
        if c0 is not None:
            run.context = first
            try:
                got0 = verify(run, c0)
            finally:
                run.context = short
            if isinstance(got0, PlanOption) and got0.fits:
                return got0
    lo, hi = short // 1024, top // 1024
    best: Cand | None = None
    while lo < hi:  # screen-feasible contexts are a prefix: binary search its end
        mid = (lo + hi + 1) // 2
        c = cand(mid * 1024)
        if c is not None:
            lo, best = mid, c
        else:
            hi = mid - 1
    if best is None:
        return o
    run.context = lo * 1024
    try:
        got = verify(run, best)
    finally:
        run.context = short
    return got if isinstance(got, PlanOption) and got.fits else o


def _screen_any(run: Run, o: PlanOption, gpu: Gpu, quant: str | None, ctx: int) -> Cand:
    """A safetensors candidate at ``ctx`` whatever the screen says (the engine decides)."""
    short, run.context = run.context, ctx
    try:
        c = screen(run, o.engine, "st", quant, gpu, o.gpu_count,
                   "offload" if o.engine_options.get("cpu_offload_gb") else "gpu")
    finally:
        run.context = short
    if not c.ok and not c.options.get("cpu_offload_gb"):
        c.ok = True
        c.speed = {}
    return c


def _same_layout(run: Run, o: PlanOption, gpu: Gpu, quant: str | None, ctx: int) -> Cand | None:
    """The option's llama.cpp placement unchanged (same -ngl / --n-cpu-moe) at ``ctx``."""
    if quant is None:
        return None
    qm = llamacpp_priced(run, quant)
    return Cand(o.engine, "gguf", quant, qm, gpu, o.gpu_count, Parallelism(),
                "offload" if o.engine_options else "gpu", dict(o.engine_options), ok=True)


def _at_own_context(run: Run, gpu: Gpu, counts: Sequence[int], engines: Iterable[str] | None,
                    offload: bool) -> tuple[list[PlanOption], list[Group]]:
    """No --context: plan at MIN_CONTEXT (best quality that fits), then give each option the
    largest context it has room for, up to the model's context capped at 32k."""
    top = run.context
    run.context = min(MIN_CONTEXT, top)
    groups = _groups(run, gpu, counts, engines, offload)
    out = [_largest_context(run, o, gpu, top) for o in _options(run, groups)]
    run.context = top
    return sorted(out, key=rank_key), groups


def _host(ram: int | None, kinds: Sequence[Gpu], named: bool, ram_kind: str | None,
          ram_channels: int | None, pcie_gen: int | None) -> tuple[HostMemory | None, list[str]]:
    """The described host (``hardware.host.resolve_host``), and what the plan says about it;
    a named unified-memory device ignores the host options (with a note)."""
    host = resolve_host(ram, ram_kind, ram_channels, pcie_gen)
    if named and kinds and kinds[0].unified_memory:
        notes = api.unified_host_notes(kinds[0], ram_kind, ram_channels, pcie_gen)
        return (typical_host(ram) if ram else None), notes
    out = []
    if host is not None:
        out.append(f"host RAM bandwidth (offload speed): {describe_host(host)}")
    if pcie_gen is not None or (named and kinds):
        gen, why = link_pcie_gen(kinds[0].pcie_gen if named and kinds else 0, host)
        out.append(f"PCIe gen{gen} x16 to each GPU ({why})" if named else
                   f"PCIe: the slot is gen{pcie_gen}; each GPU links at the lower of it and "
                   "its own generation")
    return host, out


def plan(model: str | Mapping[str, Any], *, gpu: str | None = None, gpus: int | None = None,
         ram_bytes: int | str | None = None, context: int | None = None, concurrency: int = 1,
         min_tokens_per_s: float | None = None, engines: Iterable[str] | None = None,
         max_options: int = 8, explore: bool = True, ram_kind: str | None = None,
         ram_channels: int | None = None, pcie_gen: int | None = None) -> PlanResult:
    """Ranked ways to run ``model``: on ``gpus`` x ``gpu`` (``"auto"`` detects; ``None``
    searches the whole catalog), with ``ram_bytes`` of host RAM for offload (``"auto"``).
    ``ram_kind`` / ``ram_channels`` / ``pcie_gen`` describe the host for offload speed
    (default: dual-channel DDR5-5600, the GPU's PCIe generation).
    ``explore=False`` skips the other-hardware rows and the suggestions (``fit`` uses it)."""
    t0 = time.perf_counter()
    _validate(context, concurrency, min_tokens_per_s)
    resolve_host(None, ram_kind, ram_channels, pcie_gen)  # bad values fail before any search
    kinds, fixed, notes = _resolve_gpu(gpu, gpus)
    ram, ram_notes = _resolve_ram(ram_bytes)
    host, host_notes = _host(ram, kinds, gpu is not None, ram_kind, ram_channels, pcie_gen)
    run = _run(model, context, concurrency, ram, min_tokens_per_s, host)
    notes += ram_notes
    spec = run.spec
    alternatives: tuple[HardwareRow, ...] = ()
    suggestions: list[Suggestion] = []
    rejected = []
    if gpu is None:  # the whole catalog: fewest GPUs per kind, best first
        rows = _hardware_rows(run, kinds, engines, HARDWARE_COUNTS if fixed is None else
                              (fixed,), verify_top=max_options)
        options = sorted((r.option for r in rows if r.option is not None), key=rank_key)
        alternatives = tuple(rows)
    else:
        kind = kinds[0]
        counts = (fixed,) if fixed else COUNTS
        offload = ram is not None or "vllm" in run.registered
        if run.context_given:
            groups = _groups(run, kind, counts, engines, offload)
            options = _options(run, groups)
        else:
            options, groups = _at_own_context(run, kind, counts, engines, offload)
        rejected = rejections(groups, kind, counts[0])
        if explore and not any(o.fits and o.host_ram_bytes < 2 * GIB for o in options):
            alt = [k for k in ALTERNATIVE_KINDS if k != kind.key] + [kind.key]
            alternatives = tuple(_hardware_rows(run, [get_gpu(k) for k in alt], engines,
                                                HARDWARE_COUNTS, verify_top=len(alt)))
        if explore and not any(o.fits for o in options):
            suggestions = _suggest(run, kind, counts[0], engines, alternatives)
    if min_tokens_per_s is not None and options and not any(o.meets_min_tokens_per_s
                                                            for o in options):
        best = max(options, key=lambda o: o.decode_tokens_per_s or 0)
        suggestions.append(Suggestion("faster_setup", f"no option reaches {min_tokens_per_s:g} "
                                      f"tok/s; the fastest here gives "
                                      f"{best.decode_tokens_per_s or 0:.1f} ({best.engine}, "
                                      f"{best.quant_label})", best))
    assumptions = notes + [
        f"decode at a KV depth of half the context (mean over a sequence); TTFT for a full "
        f"{run.context:,}-token prompt" if run.context_given else
        "no --context: each option runs at the largest context it has room for (at most "
        f"{min(spec.max_position_embeddings, api.DEFAULT_CONTEXT_CAP):,})",
        "per engine and placement the best-quality quantization that fits is shown; AWQ/GPTQ "
        "stand for pre-quantized checkpoints of this model",
    ]
    assumptions += host_notes
    return PlanResult(spec.model_id, run.lm.inventory.params_total,
                      run.lm.inventory.params_active, kinds[0].key if gpu else None, fixed, ram,
                      context, concurrency, min_tokens_per_s, tuple(options[:max_options]),
                      tuple(rejected), alternatives, tuple(suggestions), tuple(assumptions),
                      time.perf_counter() - t0)


def _hardware_rows(run: Run, kinds: Sequence[Gpu], engines: Iterable[str] | None,
                   counts: Sequence[int], verify_top: int) -> list[HardwareRow]:
    """Per kind: the fewest GPUs (GPU-only, 4-bit or better) and the best group at that count.
    The ``verify_top`` fastest kinds are checked by their engine models (all when equal)."""
    best: list[tuple[Gpu, Group | None, str]] = []
    for kind in kinds:
        kc = [n for n in counts if n <= 8 or kind.interconnect_bytes_per_s >= MULTI_NODE_LINK]
        groups = _groups(run, kind, kc, engines, offload=False, floor_4bit=True)
        ok = [g for g in groups if g.found]
        if not ok:
            fail = next((g.fails[-1].reason for g in groups if g.fails), "no engine runs here")
            best.append((kind, None, f"not with {kc[-1]} or fewer: {fail}"))
            continue
        ok.sort(key=lambda g: (g.found[0].n, ENGINE_ORDER.index(g.engine)))
        best.append((kind, ok[0], ""))
    order = sorted(best, key=lambda b: -(b[1].found[0].decode if b[1] else -1))
    rows: dict[str, HardwareRow] = {}
    for i, (kind, g, why) in enumerate(order):
        opt = None
        if g is not None and i < verify_top:
            opt = resolve(run, g)
            if opt is None:
                why = g.failures[-1] if g.failures else "the engine model says it does not fit"
        elif g is not None:
            opt = None
            why = f"screened: {g.found[0].n} x {kind.name} ({g.engine}, " \
                  f"{g.found[0].qm.scheme.name}), not checked by the engine model"
        n = opt.gpu_count if opt else (g.found[0].n if g is not None else None)
        rows[kind.key] = HardwareRow(kind.key, kind.name, n, opt, why)
    return [rows[k.key] for k in kinds]


def _suggest(run: Run, gpu: Gpu, n: int, engines: Iterable[str] | None,
             alternatives: Sequence[HardwareRow]) -> list[Suggestion]:
    """The smallest changes that make something fit: a shorter context, more RAM, a second GPU,
    other hardware."""
    out: list[Suggestion] = []
    base = run.context
    if run.context_given and base > MIN_CONTEXT:
        run.context = MIN_CONTEXT
        opts = _options(run, _groups(run, gpu, (n,), engines, run.ram_bytes is not None))
        run.context = base
        if opts and opts[0].fits:
            o = opts[0]
            out.append(Suggestion("shorter_context", f"--context {o.max_context_tokens // 1024 * 1024}"
                                  f": {o.engine} {o.quant_label} fits up to "
                                  f"{o.max_context_tokens:,} tokens", o))
    qm_best = None
    for q in ("q4_k_m", "q3_k_m", "q2_k"):
        try:
            qm = llamacpp_priced(run, q)
        except Exception:
            continue
        lay = llamacpp.solve_offload(qm, gpu, n, run.context, run.concurrency, "fp16",
                                     1 << 50)
        if lay is not None:
            need = lay.host_ram_bytes
            ram = _ram_for(need)
            if run.ram_bytes is None or ram > run.ram_bytes:
                qm_best = (q, ram, lay)
                break
    if qm_best is not None:
        q, ram, lay = qm_best
        out.append(Suggestion("more_ram", f"--ram {ram // GIB}GiB: llama.cpp {q.upper()} with "
                              f"{describe(lay.split, run.spec.num_layers)}"))
    for n2 in (n + 1, n * 2):
        if n2 <= MAX_GPUS:
            opts = _options(run, _groups(run, gpu, (n2,), engines, False))
            if opts and opts[0].fits:
                o = opts[0]
                out.append(Suggestion("more_gpus", f"{n2} x {gpu.name}: {o.engine} "
                                      f"{o.quant_label}, {o.decode_tokens_per_s or 0:.1f} tok/s",
                                      o))
                break
    for r in alternatives:
        if r.option is not None and r.gpu != gpu.key:
            out.append(Suggestion("other_gpu", f"{r.gpu_count} x {r.gpu_name}: {r.option.engine} "
                                  f"{r.option.quant_label}", r.option))
            break
    return out


def llamacpp_priced(run: Run, quant: str) -> Any:
    from vramplan.api import _priced

    return _priced(run.lm, quant)


def _ram_for(host_bytes: int) -> int:
    """Installed RAM (a common size) whose usable part holds ``host_bytes``."""
    for size in (16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048):
        if llamacpp.host_usable_bytes(size * GIB) >= host_bytes:
            return size * GIB
    return host_bytes * 2


def hardware(model: str | Mapping[str, Any], *, context: int | None = None,
             concurrency: int = 1, kinds: Sequence[str] | None = None,
             engines: Iterable[str] | None = None) -> tuple[HardwareRow, ...]:
    """Fewest GPUs of each catalog kind (or ``kinds``) that run ``model`` GPU-only at the
    context and concurrency, at 4-bit or better, each checked by its engine model."""
    _validate(context, concurrency, None)
    run = _run(model, context, concurrency, None, None)
    gl = [get_gpu(k) for k in kinds] if kinds else list(load_catalog())
    return tuple(_hardware_rows(run, gl, engines, HARDWARE_COUNTS, verify_top=len(gl)))


def fit(*, gpu: str, gpus: int | None = None, ram_bytes: int | str | None = None,
        context: int | None = None, models: Sequence[str] | None = None,
        engines: Iterable[str] | None = None, ram_kind: str | None = None,
        ram_channels: int | None = None, pcie_gen: int | None = None) -> tuple[FitRow, ...]:
    """Which catalog models run on ``gpus`` x ``gpu`` (+ RAM, described by ``ram_kind``,
    ``ram_channels``, ``pcie_gen`` as for ``plan``), at which quantization, context and
    speed: each model's best option."""
    from vramplan.model.catalog import catalog

    _validate(context, 1, None)
    resolve_host(None, ram_kind, ram_channels, pcie_gen)  # a bad value is the caller's error
    names = list(models) if models else [e.id for e in catalog()]
    rows = []
    for name in names:
        try:
            res = plan(name, gpu=gpu, gpus=gpus or 1, ram_bytes=ram_bytes, context=context,
                       engines=engines, max_options=1, explore=False, ram_kind=ram_kind,
                       ram_channels=ram_channels, pcie_gen=pcie_gen)
        except InputError as e:
            if e.field.startswith("--gpu") or e.field.startswith("--ram"):
                raise
            rows.append(FitRow(name, 0, None, str(e)))
            continue
        best = res.options[0] if res.options and res.options[0].fits else None
        why = "" if best else (res.rejected[0].reason if res.rejected else "nothing fits")
        rows.append(FitRow(res.model, res.params_total, best, why))
    rows.sort(key=lambda r: (r.option is None, -(r.params_total if r.option else 0)))
    return tuple(rows)
