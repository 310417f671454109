"""JSON for ``plan --json``, ``hardware --json`` and ``fit --json`` (devices as in ``estimate``)."""

from __future__ import annotations

from typing import Any

from vramplan.plan.types import FitRow, HardwareRow, PlanOption, PlanResult
from vramplan.report import device_dict


def option_dict(o: PlanOption) -> dict[str, Any]:
    return {
        "engine": o.engine, "quant": o.quant, "quant_label": o.quant_label, "gpu": o.gpu,
        "gpu_name": o.gpu_name, "gpu_count": o.gpu_count, "tp": o.tp, "pp": o.pp,
        "expert_parallel": o.ep, "fits": o.fits, "verified_by_engine_model": o.verified,
        "devices": [device_dict(d) for d in o.devices], "host_ram_bytes": o.host_ram_bytes,
        "context_tokens": o.context_tokens, "concurrency": o.concurrency,
        "decode_tokens_per_s": o.decode_tokens_per_s,
        "prefill_tokens_per_s": o.prefill_tokens_per_s, "ttft_s": o.ttft_s, "speed": o.speed,
        "max_context_tokens": o.max_context_tokens, "max_concurrency": o.max_concurrency,
        "binding_constraint": o.binding_constraint, "binding_detail": o.binding_detail,
        "meets_min_tokens_per_s": o.meets_min_tokens_per_s, "placement": o.placement,
        "engine_options": o.engine_options, "command": o.command, "notes": list(o.notes),
    }


def row_dict(r: HardwareRow) -> dict[str, Any]:
    return {"gpu": r.gpu, "gpu_name": r.gpu_name, "gpu_count": r.gpu_count,
            "option": option_dict(r.option) if r.option else None, "reason": r.reason}


def plan_to_dict(p: PlanResult) -> dict[str, Any]:
    """``options[]`` best first, ``rejected[]`` with reasons, alternatives and suggestions."""
    return {
        "model": p.model, "params_total": p.params_total, "params_active": p.params_active,
        "gpu": p.gpu, "gpu_count": p.gpu_count, "ram_bytes": p.ram_bytes,
        "context_tokens": p.context_tokens, "concurrency": p.concurrency,
        "min_tokens_per_s": p.min_tokens_per_s, "fits": p.fits,
        "options": [option_dict(o) for o in p.options],
        "rejected": [{"engine": r.engine, "setup": r.setup, "reason": r.reason}
                     for r in p.rejected],
        "alternatives": [row_dict(r) for r in p.alternatives],
        "suggestions": [{"change": s.change, "detail": s.detail,
                         "option": option_dict(s.option) if s.option else None}
                        for s in p.suggestions],
        "assumptions": list(p.assumptions), "elapsed_s": round(p.elapsed_s, 4),
    }


def hardware_to_dict(model: str, rows: tuple[HardwareRow, ...]) -> dict[str, Any]:
    return {"model": model, "rows": [row_dict(r) for r in rows]}


def fit_to_dict(rows: tuple[FitRow, ...]) -> dict[str, Any]:
    return {"models": [{"model": r.model, "params_total": r.params_total, "fits": r.option
                        is not None, "option": option_dict(r.option) if r.option else None,
                        "reason": r.reason} for r in rows]}
