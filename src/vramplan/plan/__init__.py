"""The planner: the best ways to run a model on given hardware, the fewest GPUs per kind, and
which catalog models fit given hardware (issue 4). ``plan``, ``hardware`` and ``fit`` live in
``plan.planner``; ``plan_to_dict`` and friends in ``plan.report``. Imported lazily so that
``vramplan.speed`` can use ``plan.offload`` without loading the search."""

from __future__ import annotations

from typing import Any

__all__ = ["fit", "fit_to_dict", "hardware", "hardware_to_dict", "plan", "plan_to_dict"]


def __getattr__(name: str) -> Any:
    if name in ("plan", "hardware", "fit"):
        from vramplan.plan import planner

        return getattr(planner, name)
    if name in ("plan_to_dict", "hardware_to_dict", "fit_to_dict"):
        from vramplan.plan import report

        return getattr(report, name)
    raise AttributeError(name)
