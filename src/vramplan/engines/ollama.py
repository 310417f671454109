"""Ollama engine model: Ollama's own choices (context, slots, KV type, layers) mapped onto llama.cpp.

Sources read at ollama/ollama (mirror HEAD fb30760, v0.33.0-rc2) and its tags: server/routes.go
(VRAM-tier default context, commit 0334ffa62, first in v0.15.5), envconfig/config.go
(OLLAMA_CONTEXT_LENGTH default 2048 before v0.6.7, 4096 from v0.6.7, 0 = by VRAM tier from
v0.15.5; OLLAMA_NUM_PARALLEL default 1), llm/server.go at v0.19.0 (``llamaServer.Load``,
``buildLayout``, ``assignLayers``, ``findBestFit``, ``greedyFit``), fs/ggml/ggml.go at v0.19.0
(``GraphSize``, ``kvCacheBytesPerElement``), ml/device.go (``MinimumMemory`` 457 MiB, Metal
512 MiB), and llm/llama_server.go + server/sched.go at HEAD (from v0.30.0, commit 9db4bdbad:
GGUF models run on upstream ``llama-server -c num_ctx*np -np np``, no -ngl so ``--fit`` places
the layers, ``-b = -ub`` from the automatic generation batch).

Eras (version-tagged): before v0.30.0 Ollama picks the number of GPU layers itself from its own
estimate (per layer: blk weights + its KV at f16=2 / q8_0=1 / q4_0=0.5 bytes per element; the
graph from ``GraphSize``; per GPU 457 MiB + OLLAMA_GPU_OVERHEAD reserved plus one layer as a
buffer; layers packed from the last one down, the output layer leaving the GPU first) and hands
it to its vendored llama.cpp (ec98e2002 for v0.15.5-v0.29). Ollama <= v0.12.10 used
llm/memory.go:estimateGPULayers, modelled here with the same packing (ASSUMPTION: close, not
identical). From v0.30.0 llama-server's own --fit decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from vramplan.engines.base import EngineResult, Setup, register_engine
from vramplan.engines.llamacpp import (
    LlamaCppEngine,
    gpu_capacity,
    gpu_prefix,
    model_view,
    resolve,
)
from vramplan.engines.llamacpp_memory import ModelView
from vramplan.errors import InputError
from vramplan.units import GIB, MIB, fmt_bytes

MIN_MEMORY = {"CUDA": 457 * MIB, "ROCm": 457 * MIB, "MTL": 512 * MIB}  # ml/device.go
# Ollama's KV estimate bytes per element (fs/ggml/ggml.go kvCacheBytesPerElement)
KV_BYTES = {"q8_0": 1.0, "q4_0": 0.5, "f32": 4.0}
# architectures forced to one slot (server/sched.go load)
SINGLE_SLOT = frozenset({"mllama", "qwen3vl", "qwen3vlmoe", "qwen35", "qwen35moe", "qwen3next",
                         "qwen3_next", "lfm2", "lfm2moe", "nemotron_h", "nemotron_h_moe"})


@dataclass(frozen=True, slots=True)
class OllamaProfile:
    version: tuple[int, int, int]
    default_ctx: int  # 0: by VRAM tier
    llama_server: bool  # v0.30.0+: upstream llama-server with --fit
    llama_build: int  # llama.cpp build behaviour of the runner


PROFILES: tuple[OllamaProfile, ...] = (
    OllamaProfile((0, 5, 0), 2048, False, 5000),
    OllamaProfile((0, 6, 7), 4096, False, 5000),
    OllamaProfile((0, 12, 11), 4096, False, 6700),
    OllamaProfile((0, 15, 5), 0, False, 7400),  # vendored llama.cpp ec98e2002 (Dec 2025)
    OllamaProfile((0, 30, 0), 0, True, 10488),  # llama-server, LLAMA_CPP_VERSION pin
)


def ollama_profile(version: str | None) -> OllamaProfile:
    if not version or version in ("latest", "newest"):
        return PROFILES[-1]
    m = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.(\d+))?(?:-rc\d+)?", version.strip())
    if not m:
        raise InputError("--engine", f"Ollama version {version!r} is not like 0.19.0",
                         "write it as ollama==0.19.0")
    v = (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    return max((p for p in PROFILES if p.version <= v), key=lambda p: p.version,
               default=PROFILES[0])


def default_num_ctx(prof: OllamaProfile, total_vram: int) -> int:
    """VRAM tier (server/routes.go Serve): >= 47 GiB -> 262144, >= 23 GiB -> 32768, else 4096,
    on the sum over GPUs of total memory minus OLLAMA_GPU_OVERHEAD."""
    if prof.default_ctx:
        return prof.default_ctx
    if total_vram >= 47 * GIB:
        return 262144
    return 32768 if total_vram >= 23 * GIB else 4096


def graph_size(view: ModelView, ctx: int, batch: int, kv_total: int) -> tuple[int, int]:
    """Ollama's compute-graph estimate (fs/ggml/ggml.go GraphSize): (partial, full) offload.

    llama: full = max(4b(1+4e+c(1+h)), 4b(e+v)), partial = 4be + max(4b(1+e+max(c,e)) +
    e^2*9/16 + 4c(bh + d*h_kv), 4b(e+v) + e*v*105/128); qwen2: full = max(4b(e+v),
    4b(1+2e+c+ch)), partial = max(4b(e+v) + e*v*105/128, 4(b(1+2e+c(1+h)) + e(1+c))); any other
    architecture here (Ollama special-cases a few more): both = gqa * kv_total / 6.
    b = num_batch, c = num_ctx * num_parallel, e = n_embd, h = heads, v = vocab, d = head dim.
    """
    la = view.layers[0]
    b, c, e, v, h = batch, ctx, view.n_embd, view.n_vocab, max(x.n_head for x in view.layers)
    d = la.q_width // max(1, la.n_head)
    h_kv = max(1, max(x.k_width for x in view.layers) // max(1, d))
    if view.model_type == "qwen2":
        full = max(4 * b * (e + v), 4 * b * (1 + 2 * e + c + c * h))
        partial = max(4 * b * (e + v) + e * v * 105 // 128, 4 * (b * (1 + 2 * e + c * (1 + h))
                                                                + e * (1 + c)))
        return partial, full
    if view.model_type in ("llama", "mistral", "llama4_text"):
        full = max(4 * b * (1 + 4 * e + c * (1 + h)), 4 * b * (e + v))
        partial = 4 * b * e + max(4 * b * (1 + e + max(c, e)) + e * e * 9 // 16
                                  + 4 * c * (b * h + d * h_kv),
                                  4 * b * (e + v) + e * v * 105 // 128)
        return partial, full
    h_kv_min = max(1, min((x.k_width for x in view.layers if x.k_width), default=d) // max(1, d))
    g = (h // h_kv_min) * kv_total // 6
    return g, g


def estimate_layers(view: ModelView, ctx: int, batch: int, kv_type: str, n_gpu: int,
                    free: list[int], min_mem: int, overhead: int, metal: bool = False
                    ) -> tuple[int, tuple[int, ...], dict[str, Any]]:
    """GPU layers Ollama (< v0.30) gives its runner, per GPU (llm/server.go llamaServer.Load):
    the free memory less one layer (blk.0 + its KV) as a buffer, less MinimumMemory, the
    overhead and, once a GPU is used, the larger graph estimate; then assignLayers."""
    bpe = KV_BYTES.get(kv_type, 2.0)
    blk = [0] * view.n_layer
    out_w = emb = 0
    for t in view.tensors:
        if t.layer is not None and t.layer < view.n_layer:
            blk[t.layer] += t.nbytes
        elif t.layer == view.n_layer:
            out_w += t.nbytes
        elif t.name == "token_embd.weight":
            emb = t.nbytes
    if not view.has_output:
        out_w += emb
    kv = [int(ctx * (la.k_width + la.v_width) * bpe) for la in view.layers]
    layers = [blk[i] + kv[i] for i in range(view.n_layer)] + [out_w]
    partial, full = graph_size(view, ctx, batch, sum(kv))
    if metal:  # "On Metal there's no partial offload overhead"
        partial = full
    gfree = [max(0, f - (blk[0] + kv[0])) for f in free[:n_gpu]]
    graph = [0] * n_gpu
    counts = [0] * n_gpu
    used = 0
    while True:
        counts = assign_layers(layers, [max(0, f - min_mem - overhead - g)
                                        for f, g in zip(gfree, graph, strict=True)])
        n_used = sum(1 for c in counts if c)
        if n_used <= used:
            break
        used = n_used
        graph = [max(partial, full) if c else g for c, g in zip(counts, graph, strict=True)]
    count = sum(counts)
    n_total = view.n_layer + 1
    # all layers, or (output layer dropped first) the last `count` repeating layers
    on_gpu = set(range(n_total)) if count >= n_total else \
        set(range(view.n_layer - count, view.n_layer))
    est = {"gpu_layers": count, "layers_per_gpu": counts,
           "weights_gpu_bytes": sum(layers[i] - (kv[i] if i < view.n_layer else 0)
                                    for i in on_gpu),
           "weights_cpu_bytes": sum(layers[i] - (kv[i] if i < view.n_layer else 0)
                                    for i in range(n_total) if i not in on_gpu),
           "kv_gpu_bytes": sum(kv[i] for i in on_gpu if i < view.n_layer),
           "kv_cpu_bytes": sum(kv[i] for i in range(view.n_layer) if i not in on_gpu),
           "graph_bytes": (full if count >= n_total else partial) if count else 0,
           "graph_partial_bytes": partial, "graph_full_bytes": full}
    return count, tuple(counts), est


def assign_layers(layers: list[int], avail: list[int]) -> list[int]:
    """assignLayers: pack onto as few GPUs as possible; if not everything fits, drop the output
    layer (the last entry) and pack again. findBestFit balances several GPUs by searching the
    smallest capacity factor that still places the most layers."""
    counts = [0] * len(avail)
    for lay in (layers, layers[:-1]):
        for k in range(1, len(avail) + 1):
            counts = [0] * (len(avail) - k) + _best_fit(lay, avail[:k])
            if sum(counts) == len(lay):
                break
        if sum(counts) == len(layers):
            return counts
    return counts


def _best_fit(layers: list[int], avail: list[int]) -> list[int]:
    best = _greedy(layers, avail, 1.0)
    lo, hi = 0.0, 1.0
    while hi - lo > 1e-6:
        mid = (lo + hi) / 2
        c = _greedy(layers, avail, mid)
        if sum(c) == sum(best):
            hi, best = mid, c
        else:
            lo = mid
    return best


def _greedy(layers: list[int], avail: list[int], cap: float) -> list[int]:
    """greedyFit: from the last layer down, spilling to the previous GPU when one is full."""
    counts = [0] * len(avail)
    dev = len(avail) - 1
    space = int(avail[dev] * cap) if avail else 0
    for i in range(len(layers) - 1, -1, -1):
        while layers[i] > space:
            dev -= 1
            if dev < 0:
                return counts
            space = int(avail[dev] * cap)
        space -= layers[i]
        counts[dev] += 1
    return counts


class OllamaEngine:
    """Ollama's defaults and layer choice, then llama.cpp's buffers (``ollama==0.19.0``)."""

    name = "ollama"
    tensor_parallel = False  # llama.cpp layer split underneath

    def __init__(self, version: str | None = None) -> None:
        self.profile = ollama_profile(version)
        self.version = version or ".".join(map(str, self.profile.version)) + "+"
        self.llama = LlamaCppEngine(f"b{self.profile.llama_build}")

    def estimate(self, setup: Setup) -> EngineResult:
        o = dict(setup.workload.options)
        wl = setup.workload
        view, vnotes = model_view(setup)
        prof = self.profile
        prefix = gpu_prefix(setup)
        cap = gpu_capacity(setup)
        overhead = int(o.get("gpu_overhead", 0))
        total_vram = sum(cap - overhead for _ in range(setup.gpu_count))
        env: list[str] = []
        if o.get("num_ctx") is not None:
            num_ctx, why = int(o["num_ctx"]), "num_ctx"
            env.append(f"OLLAMA_CONTEXT_LENGTH={num_ctx}")
        elif not wl.context_is_default:
            num_ctx, why = wl.context_tokens, "--context"
            env.append(f"OLLAMA_CONTEXT_LENGTH={num_ctx}")
        else:
            num_ctx = default_num_ctx(prof, total_vram)
            why = (f"default for {fmt_bytes(total_vram)} of VRAM" if not prof.default_ctx
                   else "default")
        if num_ctx <= 0:
            raise InputError("--num-ctx", f"must be positive, got {num_ctx}", "e.g. --num-ctx 8192")
        notes = list(vnotes)
        if num_ctx > view.n_ctx_train:
            notes.append(f"num_ctx {num_ctx:,} clamped to the trained {view.n_ctx_train:,}")
            num_ctx = view.n_ctx_train
        np_ = int(o.get("num_parallel") or 1)
        if np_ > 1:
            env.append(f"OLLAMA_NUM_PARALLEL={np_}")
        if np_ > 1 and view.model_type in SINGLE_SLOT:
            notes.append(f"{view.model_type}: Ollama forces one slot")
            np_ = 1
        fa_env = o.get("flash_attn")
        fa = "auto" if fa_env in (None, "auto") else str(fa_env)
        if fa == "auto" and not _fa_supported(setup):
            fa = "off"
            notes.append("flash attention off: Ollama enables it only on CUDA compute >= 7.0 "
                         "(not 7.2), ROCm, Metal and Vulkan (ml/device.go FlashAttentionSupported)")
        if fa_env not in (None, "auto"):
            env.append(f"OLLAMA_FLASH_ATTENTION={'1' if fa == 'on' else '0'}")
        kvt = str(o.get("cache_type_k") or "").lower()
        if kvt:
            env.append(f"OLLAMA_KV_CACHE_TYPE={kvt}")
            if kvt not in ("f16", "q8_0", "q4_0"):
                notes.append(f"OLLAMA_KV_CACHE_TYPE={kvt} unsupported: f16 used")
                kvt = ""
            elif kvt != "f16" and fa != "on" and not prof.llama_server:
                notes.append("a quantized OLLAMA_KV_CACHE_TYPE needs OLLAMA_FLASH_ATTENTION=1: "
                             "Ollama falls back to f16")
                kvt = ""
        nb = int(o.get("batch_size") or 512)
        ctx_total = num_ctx * np_
        lopts: dict[str, Any] = {"ctx_size": ctx_total, "parallel": np_, "flash_attn": fa,
                                 "ubatch_size": nb, "batch_size": nb if prof.llama_server
                                 else nb * np_}
        if kvt:
            lopts["cache_type_k"] = lopts["cache_type_v"] = kvt
        figures: dict[str, Any] = {"num_ctx": num_ctx, "num_ctx_source": why,
                                   "num_parallel": np_, "num_batch": nb}
        lp = self.llama.profile
        split: tuple[float, ...] = ()
        if prof.llama_server:
            if o.get("batch_size") is None:
                nb = self._auto_batch(view, ctx_total, cap * setup.gpu_count, fa,
                                      constrained=prefix == "CUDA" and cap <= 8 * GIB)
                lopts["ubatch_size"] = lopts["batch_size"] = nb
                figures["num_batch"] = nb
            if o.get("n_gpu_layers") is not None:
                lopts["n_gpu_layers"] = o["n_gpu_layers"]
            r = resolve(setup, view, lp, lopts)
        else:
            free = [int(o.get("gpu_free_bytes", cap)) for _ in range(setup.gpu_count)]
            if o.get("n_gpu_layers") is not None:
                ngl = int(o["n_gpu_layers"])
                est: dict[str, Any] = {}
            else:
                ngl, counts, est = estimate_layers(view, ctx_total, nb, kvt or "f16",
                                                   setup.gpu_count, free,
                                                   MIN_MEMORY.get(prefix, 457 * MIB), overhead,
                                                   metal=prefix == "MTL")
                split = tuple(float(c) for c in counts) if setup.gpu_count > 1 else ()
            lopts["n_gpu_layers"] = ngl
            r = resolve(setup, view, lp, lopts)
            r = replace(r, fit=False, cfg=replace(r.cfg, split=split))
            figures["ollama_estimate"] = est
        cmd = " ".join([*env, "ollama", "run", _model_name(setup)])
        res = self.llama.result(setup, view, r, tuple(notes), command=cmd, extra_figures=figures)
        assumptions = (f"Ollama {'.'.join(map(str, prof.version))}+ profile: num_ctx {num_ctx:,} "
                       f"({why}), {np_} slot(s), num_batch {figures['num_batch']}",
                       *res.assumptions)
        return replace(res, assumptions=assumptions)

    @staticmethod
    def _auto_batch(view: ModelView, ctx: int, available: int, fa: str,
                    constrained: bool = False) -> int:
        """server/sched.go automaticGenerationBatch: 512, 1024 above 4k tokens, 2048 above 32k,
        stepped down while the pre-flight estimate (file + f16 KV) exceeds 60 % / 75 % of the
        available memory or the 2 GiB / 768 MiB surcharge does not fit under 80 %."""
        if fa == "off":  # CUDA without flash attention: 256 on <= 8 GiB cards above 4k tokens
            return 256 if constrained and ctx > 4096 else 512
        predicted = sum(t.nbytes for t in view.tensors) + sum(
            2 * ctx * la.k_width * 2 for la in view.layers if la.k_width)
        batch = 2048 if ctx > 32768 else 1024 if ctx > 4096 else 512
        while batch > 512:
            head = 60 if batch >= 2048 else 75
            surcharge = 2 * GIB if batch >= 2048 else 768 * MIB
            thr = available * 80 // 100
            if predicted <= available * head // 100 and predicted <= thr \
                    and surcharge <= thr - predicted:
                break
            batch = 1024 if batch > 1024 else 512
        return batch


def _fa_supported(setup: Setup) -> bool:
    g = setup.gpu
    if g.vendor.lower() != "nvidia" or not g.cuda_compute_capability:
        return True
    try:
        cc = tuple(int(x) for x in g.cuda_compute_capability.split("."))
    except ValueError:
        return True
    return cc >= (7, 0) and cc != (7, 2)


def _model_name(setup: Setup) -> str:
    qm = setup.model
    base = qm.inventory.spec.model_id.split("/")[-1].lower()
    tag = (qm.scheme.gguf_ftype or "fp16").lower()
    return f"{base}:{tag}"


def factory(version: str | None) -> OllamaEngine:
    return OllamaEngine(version)


register_engine("ollama", factory)

__all__ = ["PROFILES", "OllamaEngine", "OllamaProfile", "assign_layers", "default_num_ctx",
           "estimate_layers", "graph_size", "ollama_profile"]
