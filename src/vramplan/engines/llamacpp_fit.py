"""llama-server's ``--fit`` (on by default since ~b7400), restated.

Read at ggml-org/llama.cpp common/fit.cpp 08033df02cc32f3706271c068aaeaeecf94922a1
(``common_params_fit_impl``), defaults in common/common.h (``fit_params_target`` 1024 MiB,
``fit_params_min_ctx`` 4096). Every measurement llama.cpp makes (a dry-run load without
allocation) is replaced by vramplan's own layout of the same configuration, so the search lands
where llama.cpp's would as far as the layout is right.

(1) if every GPU keeps >= 1024 MiB free with the initial parameters, nothing changes; (2) if the
user gave no context, shrink it by linear interpolation between 4096 and the trained context
(rounded down to 256; with several GPUs after subtracting (n_gpu + 1) x 1/2 layer (dense) or 1/6
layer (MoE) of expected waste); if even 4096 does not fit, use 4096 and go on; (3) unless the user
set -ngl, -ts or -ot, fill GPUs back to front with whole layers (MoE: with all experts on the CPU)
to the largest count that fits, the output layer going to the last GPU; (4) for MoE, when all
dense parts fit, turn expert-on-CPU layers into full layers front to back, then try one more
layer with attention+up (then +gate) on the GPU, else attention only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vramplan.engines.llamacpp_memory import CPU, FRACTIONS, Config, ModelView, layout, with_ctx
from vramplan.units import MIB

__all__ = ["FIT_MARGIN", "FIT_MIN_CTX", "Resolved", "fit", "fit_flags"]

FIT_MARGIN = 1024 * MIB  # common.h fit_params_target
FIT_MIN_CTX = 4096  # common.h fit_params_min_ctx


@dataclass(frozen=True, slots=True)
class Resolved:
    """The flags after llama.cpp's defaults."""

    cfg: Config
    ctx_auto: bool  # no -c: start from the trained context, --fit may shrink it
    user_placement: bool  # -ngl / -ot / --n-cpu-moe / -ts given: --fit leaves placement alone
    fit: bool
    pad: int
    notes: tuple[str, ...]
    flags: tuple[str, ...]  # the user's flags, for the command line
    n_cpu_moe: int  # -1: none; n_layer: --cpu-moe


def _mem(view: ModelView, cfg: Config, pad: int) -> list[int]:
    lo = layout(view, cfg, pad)
    return [lo.total(g) for g in cfg.gpu_names[:cfg.n_gpu]]


def fit(view: ModelView, r: Resolved) -> tuple[Config, list[str]]:
    """What llama-server's --fit does to ``r.cfg`` (see the module docstring)."""
    cfg, pad, log = r.cfg, r.pad, []
    nd = cfg.n_gpu
    free = list(cfg.free_bytes)
    targets = [f - FIT_MARGIN for f in free]
    m = _mem(view, cfg, pad)
    if all(m[i] <= targets[i] for i in range(nd)):
        return cfg, ["--fit: every GPU keeps >= 1024 MiB free, no change"]
    streams = 1 if cfg.unified else cfg.n_seq
    if r.ctx_auto and cfg.n_ctx > FIT_MIN_CTX * streams:
        ctx_max, ctx_min = cfg.n_ctx, FIT_MIN_CTX * streams
        target = sum(targets)
        if nd > 1:
            lo = layout(view, cfg, pad)
            per_layer = sum(lo.model.get(g, 0) for g in cfg.gpu_names) // max(1, view.n_layer)
            target -= (nd + 1) * per_layer // (6 if view.n_expert else 2)
        cmin = with_ctx(cfg, ctx_min, pad)
        used_min, used_max = sum(_mem(view, cmin, pad)), sum(m)
        if target > used_min and used_max > used_min:
            n = ctx_min + (ctx_max - ctx_min) * (target - used_min) // (used_max - used_min)
            n = max(n - n % (256 * streams), ctx_min)
            cfg = with_ctx(cfg, n, pad)
            log.append(f"--fit: context reduced from {ctx_max} to {cfg.n_ctx}")
            if nd <= 1:
                return cfg, log
        else:
            cfg = cmin
            log.append(f"--fit: even {ctx_min} tokens leave too little room: n_ctx = {ctx_min}")
    if r.user_placement:
        log.append("--fit: -ngl/-ot/--n-cpu-moe set by the user, layer placement left alone")
        return cfg, log
    return _fit_layers(view, cfg, pad, targets, log)


def _fit_layers(view: ModelView, cfg: Config, pad: int, targets: list[int],
                log: list[str]) -> tuple[Config, list[str]]:
    nd, hp, moe = cfg.n_gpu, view.n_layer, view.n_expert > 0
    names = cfg.gpu_names[:nd]
    over: list[str] = [CPU] * nd
    otype: list[str] = ["moe"] * nd

    def build(d: list[list[int]], ov: list[str], ot: list[str]) -> Config:
        ngl = sum(n for n, _ in d)
        il0, fr = hp + 1 - ngl, []
        for i in range(nd):
            il0 += d[i][0] - d[i][1]
            for il in range(il0, il0 + d[i][1]):
                first = il == il0
                fr.append((il, ot[i] if first else "moe", ov[i] if first else CPU))
            il0 += d[i][1]
        split = tuple(float(n) for n, _ in d) if nd > 1 else ()
        return replace(cfg, ngl=ngl, split=split, layer_fraction=tuple(fr))

    def mem(d: list[list[int]], ov: list[str] | None = None, ot: list[str] | None = None
            ) -> list[int]:
        return _mem(view, build(d, ov or over, ot or otype), pad)

    dev: list[list[int]] = [[0, 0] for _ in range(nd)]
    surplus = 0
    if moe:
        allcpu = replace(cfg, ngl=hp + 1, layer_fraction=tuple((il, "moe", CPU) for il in range(hp)))
        surplus = sum(t - u for t, u in zip(targets, _mem(view, allcpu, pad), strict=True))
    for i in reversed(range(nd)):
        left = hp + 1 - sum(dev[j][0] for j in range(i + 1, nd))

        def trial(k: int, i: int = i, base: list[list[int]] = dev) -> list[list[int]]:
            d = [list(x) for x in base]
            d[i] = [k, (k if i < nd - 1 else max(k - 1, 0)) if moe else 0]
            return d

        if left and mem(trial(left))[i] <= targets[i]:
            dev = trial(left)
            continue
        lo_k, hi_k = dev[i][0], left
        while hi_k - lo_k > 1:
            mid = (lo_k + hi_k) // 2
            lo_k, hi_k = (mid, hi_k) if mem(trial(mid))[i] <= targets[i] else (lo_k, mid)
        dev = trial(lo_k)
    log.append("--fit: layers per GPU (back to front" + (", experts on the CPU" if moe else "")
               + "): " + ", ".join(f"{n}={d[0]}" for n, d in zip(names, dev, strict=True)))
    if not moe or surplus <= 0:
        return build(dev, over, otype), log
    start = nd
    for i in reversed(range(nd)):
        if dev[i][0] > 0:
            start = i
            continue
        break
    i = 0
    while start < nd and i <= start:
        def convert(c: int, i: int = i, start: int = start,
                    base: list[list[int]] = dev) -> tuple[list[list[int]], int]:
            d, done, s = [list(x) for x in base], 0, start
            while s < nd:
                n = min(c - done, d[s][1])
                d[s][0] -= n
                d[s][1] -= n
                d[i][0] += n
                done += n
                if d[s][1] > 0:
                    break
                s += 1
            return d, s

        total_part = sum(dev[j][1] for j in range(start, nd))
        d_all, s_all = convert(total_part)
        if mem(d_all)[i] <= targets[i]:
            dev, start = d_all, s_all
        else:
            lo_c, hi_c = 0, total_part
            while hi_c - lo_c > 1:
                mid = (lo_c + hi_c) // 2
                lo_c, hi_c = (mid, hi_c) if mem(convert(mid)[0])[i] <= targets[i] else (lo_c, mid)
            dev, start = convert(lo_c)
        if start < nd and dev[start][0] > (0 if i < nd - 1 else 1) and dev[start][1] > 0:
            d = [list(x) for x in dev]
            d[start][0] -= 1
            d[start][1] -= 1
            d[i][0] += 1
            d[i][1] += 1
            ov = list(over)
            ov[i] = names[i + 1] if i < nd - 1 else CPU

            def ok(kind: str, d: list[list[int]] = d, ov: list[str] = ov, i: int = i) -> bool:
                ot = list(otype)
                ot[i] = kind
                mm = mem(d, ov, ot)
                return mm[i] < targets[i] and (i + 1 == nd or mm[i + 1] < targets[i + 1])

            if ok("up"):
                dev, over, otype[i] = d, ov, "up"
                if ok("gate"):
                    otype[i] = "gate"
            elif ok("attn"):
                dev, over, otype[i] = d, ov, "attn"
        log.append(f"--fit: {names[i]}: {dev[i][0]} layers"
                   + (" (output included)" if i == nd - 1 else "")
                   + f", {dev[i][1]} partial (experts elsewhere)")
        i += 1
    return build(dev, over, otype), log


def fit_flags(view: ModelView, cfg: Config) -> str:
    """The flags llama-fit-params would print for ``cfg`` (-c, -ngl, -ts, -ot), with the
    per-layer overrides grouped into one pattern per (fraction, device)."""
    out = [f"-c {cfg.n_ctx}", f"-ngl {cfg.ngl}"]
    if cfg.split:
        out.append("-ts " + ",".join(str(int(s)) for s in cfg.split))
    groups: dict[tuple[str, str], list[int]] = {}
    for il, k, d in cfg.layer_fraction:
        if il < view.n_layer:  # fit.cpp also names the output layer's index: it matches nothing
            groups.setdefault((k, d), []).append(il)
    ot = [rf"blk\.({'|'.join(map(str, ls))})\.{FRACTIONS[k]}={d}" for (k, d), ls in groups.items()]
    if ot:
        out.append("-ot '" + ",".join(ot) + "'")
    return " ".join(out)
