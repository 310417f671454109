"""Shared fixtures. No test may touch the network: the Hub is forced offline."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# CI runs the property/fuzz tests derandomized (same examples every run, no flaky landing);
# locally they explore new examples and remember failures in .hypothesis/.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
MODELS = ROOT / "src" / "vramplan" / "data" / "models"


def catalog_files() -> list[Path]:
    return sorted(p for p in MODELS.glob("*.json") if not p.name.endswith(".hf_quant_config.json"))


def load_config(stem: str) -> dict[str, Any]:
    return dict(json.loads((MODELS / f"{stem}.json").read_text()))


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the real entry point ``vramplan.cli.app:main``; return (exit code, stdout, stderr)."""
    from vramplan.cli.app import main

    def _run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exc:
            main(list(args))
        out = capsys.readouterr()
        code = exc.value.code
        return (code if isinstance(code, int) else 0), out.out, out.err

    return _run


def measured_params(cases: list[dict[str, Any]]) -> list[Any]:
    """One pytest param per measured component of each matched case; a case's documented miss
    (``xfail[key]``) is a strict xfail carrying its reason and number."""
    out = []
    for c in cases:
        if c["unmatched"]:
            continue
        for key in c["measured"]:
            marks = [pytest.mark.xfail(reason=c["xfail"][key], strict=True)] if key in c.get(
                "xfail", {}) else []
            out.append(pytest.param(c, key, id=f"{c['id']}:{key}", marks=marks))
    return out
