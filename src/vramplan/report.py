"""One serializer: the JSON object ``--json``, the Python API and the HTTP API all return."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from vramplan.result import Component, DeviceEstimate, Estimate


def _component(c: Component) -> dict[str, Any]:
    d: dict[str, Any] = {"name": c.name, "bytes": c.bytes, "category": c.category}
    if c.formula:
        d["formula"] = c.formula
    if c.source:
        d["source"] = c.source
    if c.children:
        d["children"] = [_component(x) for x in c.children]
    return d


def device_dict(d: DeviceEstimate) -> dict[str, Any]:
    return {
        "name": d.name,
        "kind": d.kind,
        "label": d.label,
        "capacity_bytes": d.capacity_bytes,
        "capacity_known": d.capacity_known,
        "weights_bytes": d.weights_bytes,
        "kv_cache_bytes": d.kv_cache_bytes,
        "activation_bytes": d.activation_bytes,
        "overhead_bytes": d.overhead_bytes,
        "total_bytes": d.total_bytes,
        "free_bytes": d.free_bytes,
        "fits": d.fits,
        "components": [_component(c) for c in d.components],
    }


def to_dict(est: Estimate) -> dict[str, Any]:
    m = est.model
    out: dict[str, Any] = {
        "model": asdict(m),
        "engine": {"name": est.engine, "version": est.engine_version, **est.engine_figures},
        "gpu": est.gpu,
        "gpu_count": est.gpu_count,
        "context_tokens": est.context_tokens,
        "batch": est.batch,
        "kv_dtype": est.kv_dtype,
        "tp": est.tp,
        "pp": est.pp,
        "weights_bytes": est.weights_bytes,
        "kv_cache_bytes_per_token": est.kv_cache_bytes_per_token,
        "kv_cache_bytes_per_token_all_layers": est.kv_cache_bytes_per_token_all_layers,
        "kv_window_bytes_per_sequence": est.kv_window_bytes_per_sequence,
        "kv_state_bytes_per_sequence": est.kv_state_bytes_per_sequence,
        "fits": est.fits,
        "failure": est.failure,
        "fix": est.fix,
        "devices": [device_dict(d) for d in est.devices],
        "host_ram_bytes": est.host_ram_bytes,
        "command": est.command,
        "assumptions": list(est.assumptions),
        "notes": list(est.notes),
        "explain": [asdict(x) for x in est.explain],
        # inventory vs the checkpoint's tensor headers (null when no headers were read)
        "header_check": est.header_check.to_dict() if est.header_check is not None else None,
    }
    if est.speed is not None:
        out["speed"] = est.speed
    return out
