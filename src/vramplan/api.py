"""The pipeline in one call: model -> spec -> inventory -> quantization -> placement -> engine.

``estimate()`` is what the CLI, the HTTP API and the web page call; it returns an ``Estimate``
tree, and ``vramplan.report.to_dict`` gives the one JSON object all interfaces print.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from vramplan.engines import multimodal
from vramplan.engines.base import Setup, Workload, default_engine, get_engine
from vramplan.errors import InputError
from vramplan.explain import explain_lines
from vramplan.hardware.gpus import Gpu, custom_gpu, get_gpu
from vramplan.inventory import TensorInventory, build_inventory
from vramplan.kv import resolve_kv_dtype, summarize
from vramplan.model.hf_config import spec_from_config
from vramplan.model.source import ModelSource, load_model
from vramplan.model.spec import ModelSpec
from vramplan.placement import Parallelism, place
from vramplan.quant.from_headers import entries_from_headers
from vramplan.quant.schemes import (
    NONE,
    QuantizedModel,
    quantize_model,
    scheme_from_config,
    scheme_from_name,
)
from vramplan.result import Estimate, ModelSummary

MAX_CONTEXT_TOKENS = 1 << 24  # 16,777,216: beyond any released model's context
MAX_BATCH = 1 << 16
DEFAULT_CONTEXT_CAP = 32768  # ASSUMPTION: default context when none is given (capped trained ctx)


@dataclass(frozen=True, slots=True, eq=False)  # identity hash: cached per load
class LoadedModel:
    source: ModelSource
    spec: ModelSpec
    inventory: TensorInventory


@lru_cache(maxsize=64)
def _load_cached(name: str, allow_hub: bool, allow_local: bool) -> LoadedModel:
    src = load_model(name, allow_hub=allow_hub, allow_local=allow_local)
    return _from_source(src)


@lru_cache(maxsize=64)
def _load_inline(canonical_json: str) -> LoadedModel:
    """A pasted config.json, cached by its canonical JSON text (sorted keys)."""
    cfg = json.loads(canonical_json)
    src = ModelSource(str(cfg.get("_name_or_path") or "config"), "inline", "inline config", cfg)
    return _from_source(src)


def _from_source(src: ModelSource) -> LoadedModel:
    # A GGUF's tensor table is a header too: its weights are priced from it (quant/gguf_weights).
    spec = spec_from_config(src.config, src.model_id, extra_quant=src.hf_quant_config,
                            headers_available=bool(src.header_tensors) or src.origin == "gguf")
    return LoadedModel(src, spec, build_inventory(spec))


def load(model: str | Mapping[str, Any], *, allow_hub: bool = True,
         allow_local: bool = True) -> LoadedModel:
    """Resolve a catalog name, local path, Hub id, or an already-parsed config dict."""
    if isinstance(model, Mapping):
        try:
            canonical = json.dumps(model, sort_keys=True)
        except (TypeError, ValueError):
            raise InputError("config", "is not plain JSON", "pass the model's config.json") \
                from None
        return _load_inline(canonical)
    if not isinstance(model, str) or not model.strip():
        raise InputError("MODEL", "is empty", "name a model, e.g. qwen3-8b")
    return _load_cached(model.strip(), allow_hub, allow_local)


@lru_cache(maxsize=256)
def _priced(lm: LoadedModel, quant: str | None) -> QuantizedModel:
    spec = lm.spec
    if lm.source.origin == "gguf":
        from vramplan.quant.gguf_weights import priced_for_source

        return priced_for_source(lm.inventory, lm.source, quant)
    ckpt = scheme_from_config(spec.quantization_config) if spec.quantization_config else None
    if quant:
        scheme = scheme_from_name(quant)
        if ckpt is not None and scheme.method not in ("gguf",) and \
                scheme.method != ckpt.method and scheme.method != "none":
            raise InputError("--quant", f"{lm.source.model_id} is already quantized "
                             f"({ckpt.name}); its quantization_config wins",
                             "drop --quant, or use the unquantized model")
        if ckpt is not None and scheme.method in (ckpt.method, "none"):
            scheme = ckpt
    else:
        scheme = ckpt or NONE
    headers = lm.source.header_tensors
    if headers and scheme.method != "gguf" and (ckpt is not None or not quant):
        return entries_from_headers(lm.inventory, headers, scheme)
    if not headers:
        return quantize_model(lm.inventory, scheme)
    # --quant on an unquantized checkpoint: the formula prices the stored tensors, so where the
    # headers disagree with the config's inventory the inventory is rebuilt from them.
    from vramplan.quant.from_headers import header_check, header_inventory

    check = header_check(lm.inventory, headers, ckpt or NONE)
    inv = lm.inventory if check.match is not False else header_inventory(lm.inventory, headers)
    qm = quantize_model(inv, scheme)
    return QuantizedModel(qm.inventory, qm.scheme, qm.entries, qm.mtp_bytes, qm.notes,
                          header_check=check)


@lru_cache(maxsize=16)
def _cast_loaded(lm: LoadedModel, dtype: str, engine: str) -> LoadedModel:
    """A float32 checkpoint as an engine serves it with ``--dtype auto`` (16-bit weights and KV).

    Stored header bytes would be the fp32 file, not what the engine holds, so weights are priced
    from the inventory at the served dtype."""
    note = (f"float32 checkpoint: {engine} --dtype auto serves it in 16-bit ({dtype}), "
            "2 bytes per weight")
    spec = replace(lm.spec, torch_dtype=dtype, notes=(*lm.spec.notes, note))
    return LoadedModel(replace(lm.source, header_tensors=()), spec, build_inventory(spec))


def resolve_gpu(gpu: str | None, vram: int | None) -> Gpu:
    if vram is not None:
        if vram <= 0:
            raise InputError("--vram", "must be positive", "write it like --vram 24GiB")
        return custom_gpu(vram, name=f"custom {gpu}" if gpu else "custom")
    return get_gpu(gpu or "h100-sxm")


def unified_host_notes(hw: Gpu, ram_kind: str | None, ram_channels: int | None,
                       pcie_gen: int | None) -> list[str]:
    """The note that a unified-memory device ignores --ram-kind/--ram-channels/--pcie-gen."""
    given = [f for f, v in (("--ram-kind", ram_kind), ("--ram-channels", ram_channels),
                            ("--pcie-gen", pcie_gen)) if v is not None]
    if not given or not hw.unified_memory:
        return []
    return [f"{hw.name} has unified memory (CPU and GPU share one RAM, no PCIe link): "
            f"{', '.join(given)} ignored"]


def validate_workload(context: int, batch: int, spec: ModelSpec) -> None:
    if context <= 0:
        raise InputError("--context", f"must be at least 1 token, got {context}",
                         "e.g. --context 8192")
    if context > MAX_CONTEXT_TOKENS:
        raise InputError("--context", f"{context:,} tokens is beyond any model's context",
                         f"use at most {spec.max_position_embeddings:,} (the model's trained "
                         "context)")
    if batch <= 0 or batch > MAX_BATCH:
        raise InputError("--batch", f"must be between 1 and {MAX_BATCH}, got {batch}",
                         "e.g. --batch 1")


def estimate(model: str | Mapping[str, Any], *, gpu: str | None = None, gpus: int | None = None,
             vram: int | None = None, quant: str | None = None, context: int | None = None,
             batch: int = 1, kv_dtype: str = "auto", tp: int | None = None, pp: int = 1,
             ep: bool = False, engine: str = "auto",
             engine_options: Mapping[str, Any] | None = None, allow_hub: bool = True,
             ram: int | None = None, allow_local: bool = True, ram_kind: str | None = None,
             ram_channels: int | None = None, pcie_gen: int | None = None,
             text_only: bool = False) -> Estimate:
    """Estimate memory for running ``model`` on ``gpus`` x ``gpu`` (see README for each term).

    ``ram_kind`` (e.g. ``"DDR5-6400"``), ``ram_channels`` and ``pcie_gen`` describe the host
    for the speed of offload (default: dual-channel DDR5-5600, the GPU's PCIe generation).
    ``text_only`` (same as ``engine_options={"text_only": True}``) serves the text model alone:
    the vision / audio towers are not loaded, by the engine's own mechanism
    (``vramplan.engines.multimodal``)."""
    from vramplan.hardware.host import resolve_host

    host = resolve_host(ram, ram_kind, ram_channels, pcie_gen)  # validated before any work
    lm = load(model, allow_hub=allow_hub, allow_local=allow_local)
    spec = lm.spec
    hw = resolve_gpu(gpu, vram)
    host_notes = unified_host_notes(hw, ram_kind, ram_channels, pcie_gen)
    if host_notes:
        host = None
    eng = get_engine(default_engine(lm.source.origin) if engine == "auto" else engine)
    served = getattr(eng, "fp32_served_as", None)
    if served and spec.torch_dtype == "float32" and lm.source.origin != "gguf":
        lm = _cast_loaded(lm, served, eng.name)
        spec = lm.spec
    if getattr(eng, "tensor_parallel", True):
        tp_ = tp if tp is not None else max(1, (gpus or 1) // max(pp, 1))
    else:
        if (tp or 1) > 1 or pp > 1:
            raise InputError("--tp/--pp", f"{eng.name} does not use tensor or pipeline "
                             "parallelism", f"drop --tp/--pp; {eng.name} spreads layers over "
                             "--gpus")
        tp_ = 1
    par = Parallelism(tp=tp_, pp=pp, ep=ep)
    n_gpus = gpus if gpus is not None else par.devices
    if n_gpus < par.devices:
        raise InputError("--gpus", f"{n_gpus} GPUs cannot hold tp={par.tp} x pp={par.pp}",
                         f"use --gpus {par.devices} or lower --tp/--pp")
    ctx_default = context is None
    ctx = context if context is not None else min(spec.max_position_embeddings,
                                                  DEFAULT_CONTEXT_CAP)
    validate_workload(ctx, batch, spec)
    qm = _priced(lm, quant)
    opts = dict(engine_options or {})
    if text_only:
        opts["text_only"] = True
    mm_towers = multimodal.towers(lm.inventory)
    mm = multimodal.towers_loaded(eng.name, eng.version, spec,
                                  tuple(t.kind for t in mm_towers), opts)
    if mm.dropped:
        qm = multimodal.without_towers(qm, mm.dropped)
    mm_notes = list(mm.notes)
    if opts.get("text_only") and not mm_towers:
        mm_notes.append("--text-only: the model has no vision/audio tower, nothing to leave out")
    if opts.get("mmproj") and not mm_towers:
        mm_notes.append("--mmproj: this model's config (or GGUF header) describes no vision "
                        "tower, so the mmproj buffers are NOT counted; estimate the Hugging Face "
                        "model id to include them")
    kvd = kv_dtype
    if kvd == "auto" and qm.scheme.kv_cache_dtype:
        kvd = qm.scheme.kv_cache_dtype
    kvd = resolve_kv_dtype(kvd, spec)
    shards = place(qm, par)
    wl = Workload(ctx, batch, kvd, ctx_default, opts)
    setup = Setup(qm, hw, n_gpus, par, tuple(shards), wl, ram)
    res = eng.estimate(setup)
    if mm_towers:
        mm_figs = {**multimodal.summary(lm.inventory, qm, mm), **res.figures.get("multimodal", {})}
        res = replace(res, figures={**res.figures, "multimodal": mm_figs})
    res = replace(res, notes=res.notes + tuple(mm_notes))
    kvs = summarize(spec, kvd)
    inv = lm.inventory
    summary = ModelSummary(
        id=lm.source.model_id, origin=lm.source.origin, source=lm.source.source,
        model_type=spec.model_type, architecture=spec.architecture,
        params_total=inv.params_total, params_active=inv.params_active,
        params_by_role=inv.params_by_role(), params_mtp=inv.params_mtp,
        buffers_total=inv.buffers_total, num_layers=spec.num_layers,
        max_context_tokens=spec.max_position_embeddings, quant=qm.scheme.name,
        quant_source=qm.scheme.source, weights_from_headers=bool(lm.source.header_tensors))
    notes = list(spec.notes) + list(qm.notes) + list(res.notes) + host_notes
    if ctx > spec.max_position_embeddings:
        notes.append(f"context {ctx:,} is beyond the trained {spec.max_position_embeddings:,}")
    assumptions = list(res.assumptions)
    if qm.header_check is not None and qm.header_check.assumption():
        assumptions.insert(0, str(qm.header_check.assumption()))
    if res.context_tokens is not None and res.context_tokens != ctx:
        ctx = res.context_tokens
        if ctx_default:
            assumptions.insert(0, f"context: {ctx:,} tokens, {eng.name}'s default for this "
                               "model; set --context")
    elif ctx_default:
        assumptions.insert(0, f"context: {ctx:,} tokens (default: the model's "
                           f"{spec.max_position_embeddings:,} capped at {DEFAULT_CONTEXT_CAP:,};"
                           " set --context)")
    est = Estimate(
        model=summary, engine=eng.name, engine_version=eng.version, gpu=hw.name,
        gpu_count=n_gpus, context_tokens=ctx, batch=batch, kv_dtype=kvd, tp=par.tp, pp=par.pp,
        weights_bytes=qm.weights_bytes, kv_cache_bytes_per_token=kvs.bytes_per_token,
        kv_cache_bytes_per_token_all_layers=kvs.bytes_per_token_all_layers,
        kv_window_bytes_per_sequence=kvs.window_bytes_per_sequence,
        # the engine's own state dtypes where it reports them (llama.cpp: f32)
        kv_state_bytes_per_sequence=int(res.figures.get("state_bytes_per_sequence",
                                                        kvs.state_bytes_per_sequence)),
        devices=res.devices,
        host_ram_bytes=res.host_ram_bytes, engine_figures=res.figures, failure=res.failure,
        fix=res.fix, command=res.command, assumptions=tuple(assumptions), notes=tuple(notes),
        header_check=qm.header_check)
    from vramplan.speed import estimate_speed

    est = replace(est, speed=estimate_speed(est, qm, hw, host if host is not None else ram,
                                            engine_options=opts))
    return _with_explain(est, lm, qm, kvs)


def model_info(model: str | Mapping[str, Any], *, allow_hub: bool = True) -> dict[str, Any]:
    """What ``vramplan info`` prints: params by role, active params, KV bytes/token, quant."""
    lm = load(model, allow_hub=allow_hub)
    spec, inv = lm.spec, lm.inventory
    kvs = summarize(spec, resolve_kv_dtype("auto", spec))
    q = scheme_from_config(spec.quantization_config) if spec.quantization_config else None
    return {
        "id": lm.source.model_id, "origin": lm.source.origin, "source": lm.source.source,
        "model_type": spec.model_type, "architecture": spec.architecture,
        "layers": spec.num_layers, "hidden_size": spec.hidden_size, "vocab_size": spec.vocab_size,
        "max_context_tokens": spec.max_position_embeddings,
        "tie_word_embeddings": spec.tie_word_embeddings,
        "params_total": inv.params_total, "params_active": inv.params_active,
        "params_by_role": inv.params_by_role(), "params_mtp": inv.params_mtp,
        "buffers_total": inv.buffers_total,
        "kv_cache_bytes_per_token": kvs.bytes_per_token,
        "kv_cache_bytes_per_token_all_layers": kvs.bytes_per_token_all_layers,
        "kv_window_bytes_per_sequence": kvs.window_bytes_per_sequence,
        "kv_state_bytes_per_sequence": kvs.state_bytes_per_sequence,
        "attention_layers": {"full": kvs.full_layers, "windowed": kvs.windowed_layers,
                             "linear": kvs.linear_layers},
        "quantization": q.name if q else "none", "notes": list(spec.notes),
        "towers": [t.as_dict() for t in multimodal.towers(inv)],
    }


def _with_explain(est: Estimate, lm: LoadedModel, qm: QuantizedModel, kvs: Any) -> Estimate:
    return replace(est, explain=tuple(explain_lines(est, lm.spec, lm.inventory, qm, kvs)))
