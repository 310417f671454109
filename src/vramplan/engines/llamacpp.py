"""llama.cpp (``llama-server``) engine model: buffers per device as llama.cpp logs them.

Sources read (restated, never copied): ggml-org/llama.cpp at ec98e2002 as vendored in
ollama/ollama 9db4bdbad^ (src/llama-model.cpp ``load_tensors``/``create_memory``,
src/llama-context.cpp ctor, src/llama-kv-cache*.cpp, common/common.h), common/fit.cpp at
08033df02cc32f3706271c068aaeaeecf94922a1, PRs #16653 (--fit), #17046 (n_ctx padded to 256),
#19067 (V-less MLA cache). The memory terms live in ``engines/llamacpp_memory.py``; this module
resolves the flags, predicts what ``--fit`` chooses, and turns the layout into an EngineResult.

``--fit`` is restated in ``engines/llamacpp_fit.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from vramplan.engines import multimodal
from vramplan.engines.base import EngineResult, Setup, register_engine
from vramplan.engines.llamacpp_fit import Resolved, fit, fit_flags
from vramplan.engines.llamacpp_memory import (
    CPU,
    Config,
    Layout,
    ModelView,
    build_view,
    is_gguf_priced,
    layout,
    logged_mapped_span,
    with_ctx,
)
from vramplan.errors import InputError
from vramplan.quant.ggml_types import tensor_bytes
from vramplan.quant.gguf_pricing import gguf_entries
from vramplan.quant.schemes import QuantScheme, WeightEntry
from vramplan.result import Component, DeviceEstimate
from vramplan.units import MIB, fmt_bytes

# ASSUMPTION: memory a GPU process holds outside llama.cpp's buffers (CUDA context, cuBLAS
# workspace, ggml's CUDA pool): the "unaccounted" column of llama_memory_breakdown_print. Ollama
# reserves the same per GPU (ml/device.go MinimumMemory: 457 MiB CUDA/ROCm, 512 MiB Metal).
UNACCOUNTED = {"CUDA": 457 * MIB, "ROCm": 457 * MIB, "MTL": 512 * MIB, "Vulkan": 457 * MIB}
CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
_CACHE_ALIASES = {"fp16": "f16", "fp32": "f32", "float16": "f16", "bfloat16": "bf16"}
EXPS_RE = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"  # common.h LLM_FFN_EXPS_REGEX (--cpu-moe)


@dataclass(frozen=True, slots=True)
class LlamaProfile:
    """Behaviour of llama.cpp builds from ``build`` on (builds are llama.cpp's bNNNN tags)."""

    build: int
    since: str
    fa_auto: bool  # --flash-attn defaults to auto (before: off)
    ngl_all: bool  # -ngl defaults to all layers (before: 0)
    np_auto: bool  # llama-server -np auto: 4 slots sharing one unified KV cache (before: 1)
    fit: bool  # --fit on by default (PR #16653)
    pad_256: bool  # n_ctx always padded to 256 (PR #17046); before 256 with FA, else 32
    v_less_mla: bool  # MLA cache keeps only the latent K (PR #19067)


# Build boundaries marked ~ are dated from the PRs, not from the release list.
PROFILES: tuple[LlamaProfile, ...] = (
    LlamaProfile(5000, "2025-04", False, False, False, False, False, False),
    LlamaProfile(6330, "~2025-08-30 (FA auto)", True, False, False, False, False, False),
    LlamaProfile(6700, "~2025-10 (ngl all, -np auto)", True, True, True, False, False, False),
    LlamaProfile(7400, "~2025-12 (--fit, pad 256)", True, True, True, True, True, False),
    LlamaProfile(7830, "~2026-01-24 (PR #19067 V-less MLA)", True, True, True, True, True, True),
    LlamaProfile(10488, "2026-08 (ollama v0.33 pin)", True, True, True, True, True, True),
)


def profile_for(version: str | None) -> LlamaProfile:
    """``b7780``, ``7780`` or None (newest) -> the profile in force at that build."""
    if not version or version in ("latest", "newest"):
        return PROFILES[-1]
    m = re.fullmatch(r"b?(\d+)", version.strip().lower())
    if not m:
        raise InputError("--engine", f"llama.cpp version {version!r} is not a build number",
                         "write it as llamacpp==b7780 (the bNNNN release tag)")
    b = int(m.group(1))
    return max((p for p in PROFILES if p.build <= b), key=lambda p: p.build, default=PROFILES[0])


def _cache_type(v: Any, flag: str) -> str:
    t = _CACHE_ALIASES.get(str(v).strip().lower(), str(v).strip().lower())
    if t not in CACHE_TYPES:
        raise InputError(flag, f"unknown cache type {v!r}", f"choose one of: {', '.join(CACHE_TYPES)}")
    return t


def gpu_prefix(setup: Setup) -> str:
    v = setup.gpu.vendor.lower()
    return "ROCm" if v == "amd" else "MTL" if v == "apple" else "CUDA"


def gpu_capacity(setup: Setup) -> int:
    g = setup.gpu
    return g.usable_bytes if g.unified_memory else g.memory_reported_bytes


def parse_overrides(text: str, gpu_names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``-ot regex=buft[,regex=buft]`` -> ((regex, device), ...); bad regex or buffer: InputError."""
    out = []
    for part in [p for p in str(text).split(",") if p.strip()]:
        if "=" not in part:
            raise InputError("--override-tensor", f"{part!r} is not regex=buffer",
                             "write it like --override-tensor 'ffn_.*_exps=CPU'")
        rx, _, buft = part.rpartition("=")
        try:
            re.compile(rx)
        except re.error as exc:
            raise InputError("--override-tensor", f"bad regex {rx!r}: {exc}",
                             "fix the pattern (Python/ECMAScript regex syntax)") from None
        b = buft.strip()
        m = re.fullmatch(r"(?i)(cuda|rocm|vulkan|mtl|metal|gpu|sycl)(\d+)", b)
        if b.upper() in ("CPU", "CUDA_HOST", "CPU_REPACK"):
            out.append((rx, CPU))
        elif m and int(m.group(2)) < len(gpu_names):
            out.append((rx, gpu_names[int(m.group(2))]))
        else:
            raise InputError("--override-tensor", f"unknown buffer type {b!r}",
                             f"use CPU or one of {', '.join(gpu_names)}")
    return tuple(out)


def resolve(setup: Setup, view: ModelView, prof: LlamaProfile,
            options: dict[str, Any] | None = None) -> Resolved:
    """Turn the engine flags (Workload.options, engine spelling) into a Config."""
    wl = setup.workload
    o = dict(wl.options if options is None else options)
    notes: list[str] = []
    flags: list[str] = []
    n_gpu = max(0, setup.gpu_count)
    prefix = gpu_prefix(setup)
    names = tuple(f"{prefix}{i}" for i in range(n_gpu))
    # sequences: explicit -np gives one stream per slot; llama-server's auto is 4 unified slots
    if o.get("parallel") is not None:
        n_seq = int(o["parallel"])
        if n_seq < 1:
            raise InputError("--parallel", f"must be at least 1, got {n_seq}", "e.g. --parallel 1")
        unified = bool(o.get("kv_unified", False))
        flags += ["-np", str(n_seq)] + (["--kv-unified"] if unified else [])
    elif wl.batch > 1:
        n_seq, unified = wl.batch, False
        flags += ["-np", str(n_seq)]
    else:
        n_seq, unified = (4, True) if prof.np_auto else (1, True)
    # KV types
    kd = wl.kv_dtype if wl.kv_dtype in CACHE_TYPES[3:] else "f16"
    type_k = _cache_type(o.get("cache_type_k", kd), "--cache-type-k")
    type_v = _cache_type(o.get("cache_type_v", kd), "--cache-type-v")
    if wl.kv_dtype not in ("fp16", "bf16", "f16") and wl.kv_dtype not in CACHE_TYPES and \
            "cache_type_k" not in o:
        notes.append(f"KV dtype {wl.kv_dtype} has no llama.cpp cache type: f16 used")
    for t, f in ((type_k, "--cache-type-k"), (type_v, "--cache-type-v")):
        if t != "f16":
            flags += [f, t]
    fa_opt = str(o.get("flash_attn") or ("auto" if prof.fa_auto else "off")).lower()
    if fa_opt not in ("on", "off", "auto", "true", "false", "1", "0"):
        raise InputError("--flash-attn", f"{fa_opt!r} is not on/off/auto", "use --flash-attn on")
    fa = fa_opt in ("on", "auto", "true", "1")
    if o.get("flash_attn"):
        flags += ["-fa", fa_opt]
    if not fa and type_v not in ("f16", "f32", "bf16"):
        raise InputError("--cache-type-v", f"a {type_v} V cache requires flash attention "
                         "(llama.cpp: \"V cache quantization requires flash_attn\")",
                         "add --flash-attn on, or use --cache-type-v f16")
    ub = int(o["ubatch_size"]) if o.get("ubatch_size") is not None else 512
    nb = int(o["batch_size"]) if o.get("batch_size") is not None else 2048
    if ub < 1 or nb < 1:
        raise InputError("--ubatch-size", "batch sizes must be positive", "e.g. --ubatch-size 512")
    if o.get("ubatch_size"):
        flags += ["-ub", str(ub)]
    if o.get("batch_size"):
        flags += ["-b", str(nb)]
    # context
    pad = 256 if (prof.pad_256 or fa) else 32
    ctx_auto = False
    if o.get("ctx_size") is not None:
        req = int(o["ctx_size"])
        if req < 0:
            raise InputError("--ctx-size", f"must be >= 0, got {req}", "0 means the trained context")
        n_ctx = req or view.n_ctx_train
        flags += ["-c", str(req)]
    elif not wl.context_is_default:  # --context is per sequence; -c is shared by the slots
        n_ctx = wl.context_tokens * (1 if unified else n_seq)
        flags += ["-c", str(n_ctx)]
    else:
        n_ctx, ctx_auto = view.n_ctx_train, True
    if ctx_auto and not unified and prof.fit:
        n_ctx = view.n_ctx_train * n_seq  # fit.cpp: n_ctx_train per stream
    if n_ctx // (1 if unified else n_seq) > view.n_ctx_train:
        notes.append(f"n_ctx_seq above the trained {view.n_ctx_train:,} tokens: llama.cpp warns "
                     "\"possible training context overflow\"")
    # placement
    user = False
    ngl = (view.n_layer + 1) if prof.ngl_all else 0
    if o.get("n_gpu_layers") is not None:
        ngl, user = int(o["n_gpu_layers"]), True
        flags += ["-ngl", str(ngl)]
        if ngl < 0:
            ngl = view.n_layer + 1
        elif ngl > view.n_layer + 1:
            notes.append(f"-ngl {ngl} is more than the {view.n_layer + 1} layers (with the output "
                         f"layer): llama.cpp clamps it to {view.n_layer + 1}")
    overrides: tuple[tuple[str, str], ...] = ()
    if o.get("override_tensor"):
        overrides = parse_overrides(str(o["override_tensor"]), names)
        user = True
        flags += ["-ot", f"'{o['override_tensor']}'"]
    n_cpu_moe = -1
    if o.get("cpu_moe"):
        n_cpu_moe, user = view.n_layer, True
        flags.append("--cpu-moe")
    elif o.get("n_cpu_moe") is not None:
        n_cpu_moe, user = int(o["n_cpu_moe"]), True
        if n_cpu_moe < 0:
            raise InputError("--n-cpu-moe", f"must be >= 0, got {n_cpu_moe}", "e.g. --n-cpu-moe 20")
        flags += ["--n-cpu-moe", str(n_cpu_moe)]
    if n_cpu_moe >= 0 and not view.n_expert:
        notes.append("--cpu-moe/--n-cpu-moe: the model has no experts, nothing moves")
    frac = tuple((il, "moe", CPU) for il in range(min(max(n_cpu_moe, 0), view.n_layer)))
    mmap = not o.get("no_mmap")
    if not mmap:
        flags.append("--no-mmap")
    cap = gpu_capacity(setup)
    unacc = UNACCOUNTED.get(prefix, 457 * MIB)
    cfg = Config(n_ctx=0, n_seq=n_seq, unified=unified, type_k=type_k, type_v=type_v,
                 flash_attn=fa, n_ubatch=ub, n_batch=nb, ngl=ngl, n_gpu=n_gpu,
                 overrides=overrides, layer_fraction=frac, mmap=mmap,
                 v_less_mla=prof.v_less_mla, gpu_names=names,
                 free_bytes=tuple(cap - unacc for _ in names))
    cfg = with_ctx(cfg, n_ctx, pad)
    fit = prof.fit and bool(o.get("fit", True)) and n_gpu > 0
    return Resolved(cfg, ctx_auto, user, fit, pad, tuple(notes), tuple(flags), n_cpu_moe)


# ------------------------------------------------------------------------------ the engine

def model_view(setup: Setup) -> tuple[ModelView, tuple[str, ...]]:
    """The llama.cpp view of the priced model; an HF model without a GGUF quant is priced as
    the F16/BF16 GGUF convert_hf_to_gguf writes (outtype auto follows the checkpoint dtype)."""
    qm = setup.model
    spec = qm.inventory.spec
    if is_gguf_priced(qm):
        entries = qm.entries
        notes: tuple[str, ...] = ()
    else:
        ftype = "F16" if spec.torch_dtype == "float16" else "BF16"
        scheme = QuantScheme(method="gguf", gguf_ftype=ftype, label=f"GGUF {ftype}")
        entries, _ = gguf_entries(qm.inventory, scheme)
        if qm.scheme.method == "mxfp4":  # convert_hf_to_gguf keeps gpt-oss's MXFP4 experts
            entries = tuple(
                WeightEntry(e.group, tensor_bytes("MXFP4", tuple(reversed(e.group.shape))),
                            "MXFP4") if e.group.role == "routed_expert" and e.group.linear
                else e for e in entries)
        what = "the checkpoint's" if qm.scheme.method == "none" else f"the {qm.scheme.name}"
        notes = (f"llama.cpp runs GGUF files: {what} weights priced as the {ftype} GGUF "
                 "convert_hf_to_gguf.py writes (give --quant q4_k_m etc. for a quantized file)",)
    return build_view(spec, entries), notes


def _max_fitting(lo_v: int, hi_v: int, fits: Any) -> int | None:
    """Largest v in [lo_v, hi_v] with fits(v) (fits monotone decreasing), None if none."""
    if not fits(lo_v):
        return None
    while hi_v > lo_v:
        mid = (lo_v + hi_v + 1) // 2
        lo_v, hi_v = (mid, hi_v) if fits(mid) else (lo_v, mid - 1)
    return lo_v


class LlamaCppEngine:
    """llama-server memory per device, version-tagged (``llamacpp==b7780``)."""

    name = "llamacpp"
    # convert_hf_to_gguf.py --outtype auto writes a float32 checkpoint as BF16 (it keys on the
    # first tensor's dtype: F16 only for float16 models).
    fp32_served_as = "bfloat16"
    tensor_parallel = False  # --split-mode layer: layers spread over GPUs, tensors never sharded

    def __init__(self, version: str | None = None) -> None:
        self.profile = profile_for(version)
        self.version = f"b{self.profile.build}" if version is None else str(version)

    def estimate(self, setup: Setup) -> EngineResult:
        view, notes = model_view(setup)
        r = resolve(setup, view, self.profile)
        return self.result(setup, view, r, notes)

    def plan(self, view: ModelView, r: Resolved) -> tuple[Config, list[str]]:
        if r.fit:
            return fit(view, r)
        return r.cfg, []

    def result(self, setup: Setup, view: ModelView, r: Resolved,
               notes: tuple[str, ...] = (), command: str | None = None,
               extra_figures: dict[str, Any] | None = None) -> EngineResult:
        cfg, fit_log = self.plan(view, r)
        lo = layout(view, cfg, r.pad)
        cap = gpu_capacity(setup)
        prefix = gpu_prefix(setup)
        unacc = UNACCOUNTED.get(prefix, 457 * MIB)
        host_name = f"{prefix}_Host" if prefix != "MTL" else CPU
        devices, figs = self._devices(setup, view, cfg, lo, cap, unacc, host_name)
        failure, fix = self._failure(setup, view, cfg, lo, r, cap, unacc)
        host = sum(c.bytes for c in devices[-1].components)
        n_out = view.n_layer + 1
        figures: dict[str, Any] = {
            "devices": figs, "n_ctx": cfg.n_ctx, "n_ctx_seq": cfg.n_ctx_seq,
            "n_seq_max": cfg.n_seq, "kv_unified": cfg.unified, "n_gpu_layers": lo.gpu_layers,
            "offloaded": f"{lo.gpu_layers}/{n_out} layers", "flash_attn": cfg.flash_attn,
            "n_batch": cfg.n_batch, "n_ubatch": cfg.n_ubatch, "type_k": cfg.type_k,
            "type_v": cfg.type_v, "kv_cells": lo.cells, "swa_cells": lo.swa_cells,
            "kv_k_bytes": lo.kv_k, "kv_v_bytes": lo.kv_v, "kv_total_bytes": lo.kv_k + lo.kv_v,
            "pipeline_copies": lo.pipeline_copies,
            "output_buffer_bytes": lo.output_bytes, "mmap": cfg.mmap,
            "build_profile": f"b{self.profile.build} ({self.profile.since})",
        }
        rs_seq = sum(la.rs_bytes for la in view.layers)
        if rs_seq:
            # llama-memory-recurrent.cpp: r_l/s_l f32 rows, max(1, n_seq_max) of them per layer
            figures["state_bytes_per_sequence"] = rs_seq
            figures["rs_buffer_bytes"] = sum(lo.rs.values())
        if r.fit:
            figures["fit"] = {"log": fit_log, "equivalent_flags": fit_flags(view, cfg)}
        figures.update(extra_figures or {})
        cmd = command or " ".join(["llama-server", "-m", gguf_file_name(setup), *r.flags])
        assumptions = [
            f"llama.cpp build profile b{self.profile.build} ({self.profile.since})",
            f"n_ctx {cfg.n_ctx:,} ({'trained context, --fit may shrink it' if r.ctx_auto else 'from -c'}"
            f"), {cfg.n_seq} sequence(s), {'unified' if cfg.unified else 'per-slot'} KV cache",
            f"flash attention {'on' if cfg.flash_attn else 'off'}; K {cfg.type_k}, V {cfg.type_v}; "
            f"n_ubatch {cfg.n_ubatch}",
            f"per GPU {fmt_bytes(unacc)} outside llama.cpp's buffers (CUDA context, cuBLAS, "
            "ggml pool; ASSUMPTION)",
            "CPU weights are " + ("mmap'd page cache (file-backed, reclaimable)" if cfg.mmap
                                  else "anonymous/pinned host memory (--no-mmap)"),
        ]
        res = EngineResult(devices=tuple(devices), host_ram_bytes=host, figures=figures,
                           assumptions=tuple(assumptions), command=cmd, failure=failure,
                           fix=fix, notes=tuple(notes) + r.notes + tuple(fit_log),
                           context_tokens=cfg.n_ctx_seq)
        # the mmproj tower, loaded after the text model (llama.cpp --mmproj; Ollama's projector)
        return multimodal.add_mmproj(setup, res, add_flag=command is None)

    def _devices(self, setup: Setup, view: ModelView, cfg: Config, lo: Layout, cap: int,
                 unacc: int, host_name: str) -> tuple[list[DeviceEstimate], dict[str, Any]]:
        src = "vramplan.engines.llamacpp_memory"
        figs: dict[str, Any] = {}
        devices = []
        for g in cfg.gpu_names[:cfg.n_gpu]:
            layers = [il for il, d in enumerate(lo.layer_dev[:-1]) if d == g]
            where = f"layers {layers[0]}-{layers[-1]}" if layers else "no repeating layers"
            comps = [
                Component("model buffer", lo.model.get(g, 0),
                          where + (" + output" if lo.layer_dev[-1] == g else "")
                          + (" (token_embd duplicated as output)" if lo.dup_output and
                             lo.layer_dev[-1] == g else ""), f"{src}.layout", "weights"),
                Component("KV buffer", lo.kv.get(g, 0) + lo.rs.get(g, 0),
                          f"{lo.cells} cells x {cfg.n_stream} stream(s), K {cfg.type_k} / "
                          f"V {cfg.type_v}" + (f"; SWA {lo.swa_cells} cells" if lo.swa_cells
                                               else "") + (f"; RS {fmt_bytes(lo.rs[g])}"
                                                           if lo.rs.get(g) else ""),
                          f"{src}._kv", "kv_cache"),
                Component("compute buffer", lo.compute.get(g, 0),
                          f"worst-case graph of {cfg.n_tokens} tokens"
                          + (f", {lo.pipeline_copies} pipeline copies" if lo.pipeline_copies > 1
                             else ""), f"{src}._compute", "activation"),
                Component("unaccounted", unacc, "CUDA context + cuBLAS + ggml pool",
                          "ollama ml/device.go MinimumMemory (ASSUMPTION)", "overhead"),
            ]
            figs[g] = {"model_buffer_bytes": lo.model.get(g, 0),
                       "kv_buffer_bytes": lo.kv.get(g, 0) + lo.rs.get(g, 0),
                       "compute_buffer_bytes": lo.compute.get(g, 0)}
            devices.append(DeviceEstimate(g, "gpu", setup.gpu.name, cap, tuple(comps)))
        cpu_w = lo.model.get(CPU, 0)
        mapped_name = "CPU_Mapped" if cfg.mmap else (host_name if cfg.n_gpu else CPU)
        span = logged_mapped_span(view, {t.name for t in lo.cpu_tensors}) if cfg.mmap else cpu_w
        comps = [
            Component(f"{mapped_name} model buffer", cpu_w,
                      f"{len(lo.cpu_tensors)} tensors on the CPU (token_embd always); "
                      f"llama.cpp logs the mapped file span {fmt_bytes(span)}",
                      "src/llama-model.cpp load_tensors", "weights"),
            Component("KV buffer", lo.kv.get(CPU, 0) + lo.rs.get(CPU, 0),
                      "KV of layers kept on the CPU", "vramplan.engines.llamacpp_memory._kv",
                      "kv_cache"),
            Component(f"{host_name if cfg.n_gpu else CPU} compute buffer", lo.compute.get(CPU, 0),
                      "f32 KQ mask + token embeddings lookup (+ CPU-side graph)",
                      "vramplan.engines.llamacpp_memory._compute", "activation"),
            Component("output buffer", lo.output_bytes, f"n_vocab {view.n_vocab} x {cfg.n_seq} "
                      "seq x 4 B logits", "src/llama-context.cpp output_reserve", "activation"),
        ]
        figs[CPU] = {"model_buffer_bytes": cpu_w, "model_buffer_logged_bytes": span,
                     "kv_buffer_bytes": lo.kv.get(CPU, 0) + lo.rs.get(CPU, 0),
                     "compute_buffer_bytes": lo.compute.get(CPU, 0),
                     "output_buffer_bytes": lo.output_bytes}
        total = sum(c.bytes for c in comps)
        # without --ram the host's capacity is unknown: the device is sized to its own use and
        # flagged (renderers say "not checked")
        ram = setup.host_ram_bytes or total
        devices.append(DeviceEstimate(CPU, "cpu", "host RAM", ram, tuple(comps),
                                      capacity_known=bool(setup.host_ram_bytes)))
        return devices, figs

    def _failure(self, setup: Setup, view: ModelView, cfg: Config, lo: Layout, r: Resolved,
                 cap: int, unacc: int) -> tuple[str | None, str | None]:
        room = cap - unacc
        for g in cfg.gpu_names[:cfg.n_gpu]:
            model, kv = lo.model.get(g, 0), lo.kv.get(g, 0) + lo.rs.get(g, 0)
            comp = lo.compute.get(g, 0)
            if model + kv + comp <= room:
                continue
            idx = g[len(gpu_prefix(setup)):]
            if model > room:
                what = (f"{g} model buffer of {fmt_bytes(model)}: cudaMalloc failed: out of memory"
                        f" on device {idx} -> \"unable to allocate {g} buffer\"")
            elif model + kv > room:
                what = (f"{g} KV buffer of {fmt_bytes(kv)} after {fmt_bytes(model)} of weights: "
                        "\"failed to allocate buffer for kv cache\"")
            else:
                what = (f"{g} compute buffer of {fmt_bytes(comp)}: \"failed to allocate compute "
                        "pp buffers\"")
            need = model + kv + comp + unacc
            return (f"llama.cpp runs out of memory: {what} ({fmt_bytes(need)} needed, "
                    f"{fmt_bytes(cap)} on the GPU)", self._fix(view, cfg, r, room))
        ram = setup.host_ram_bytes
        host = lo.model.get(CPU, 0) + lo.kv.get(CPU, 0) + lo.compute.get(CPU, 0)
        if ram and not cfg.mmap and host > ram:
            return (f"--no-mmap: {fmt_bytes(host)} of host buffers exceed {fmt_bytes(ram)} of RAM "
                    "(\"unable to allocate CPU buffer\")", "drop --no-mmap or offload more layers")
        return None, None

    def _fix(self, view: ModelView, cfg: Config, r: Resolved, room: int) -> str:
        def ok(c: Config) -> bool:
            lo = layout(view, c, r.pad)
            return all(lo.total(g) <= room for g in c.gpu_names[:c.n_gpu])

        fixes = []
        if view.n_expert and not cfg.layer_fraction:
            n = next((k for k in range(0, view.n_layer + 1) if ok(replace(cfg, layer_fraction=tuple(
                (il, "moe", CPU) for il in range(k))))), None)
            if n is not None:
                fixes.append(f"--n-cpu-moe {n}" if n < view.n_layer else "--cpu-moe")
        elif view.n_expert and r.n_cpu_moe >= 0 and r.n_cpu_moe < view.n_layer:
            fixes.append("--cpu-moe (or a larger --n-cpu-moe)")
        ngl = _max_fitting(0, min(cfg.ngl if cfg.ngl >= 0 else view.n_layer + 1, view.n_layer + 1),
                           lambda k: ok(replace(cfg, ngl=k)))
        if ngl is not None:
            fixes.append(f"-ngl {ngl}")
        lo_ctx = 256 if cfg.unified else 256 * cfg.n_seq
        c = _max_fitting(1, max(1, cfg.n_ctx // lo_ctx),
                         lambda k: ok(with_ctx(cfg, k * lo_ctx, r.pad)))
        if c is not None and c * lo_ctx < cfg.n_ctx:
            fixes.append(f"-c {c * lo_ctx}")
        if not fixes:
            return "the model does not fit even with every layer on the CPU: use more GPUs"
        return "use " + " or ".join(fixes) + (" (or let --fit choose: drop -ngl/-ot)"
                                              if r.user_placement and r.fit else "")


def gguf_file_name(setup: Setup) -> str:
    """The GGUF path for the command line: the file read, or the name a converted file gets."""
    qm = setup.model
    if qm.scheme.source.startswith("GGUF header "):
        return qm.scheme.source.removeprefix("GGUF header ")
    q = qm.scheme.gguf_ftype or ("F16" if qm.inventory.spec.torch_dtype == "float16" else "BF16")
    return f"{qm.inventory.spec.model_id.split('/')[-1]}-{q}.gguf"


def factory(version: str | None) -> LlamaCppEngine:
    return LlamaCppEngine(version)


register_engine("llamacpp", factory)

__all__ = ["PROFILES", "LlamaCppEngine", "LlamaProfile", "gguf_file_name", "gpu_capacity",
           "gpu_prefix", "model_view", "parse_overrides", "profile_for", "resolve"]
