"""Exact parameter counts: every model of the parity fixture against transformers on the meta device.

The fixture ``data/param_parity.json`` is produced by ``scripts/gen_param_parity.py`` (dev-only,
torch + transformers) over ``../shared/models`` and the constructed ``data/configs``; this test
needs neither torch nor the network. Each fixture model is read from the catalog, else
``../shared/models`` (beside the repository; skipped where absent), else ``data/configs``, and
checked on the whole model (``params_total``, towers included) and the text model alone
(``params_text`` against ``TensorInventory.params_text``).

transformers keeps DeepSeek-V3/GLM's ``e_score_correction_bias`` as a persistent buffer, not a
parameter: vramplan counts it as a buffer (stored in checkpoints, priced in weights), so
``params_total`` matches transformers and ``params_total + buffers`` matches
``params_total_plus_buffers``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, MODELS, ROOT, catalog_files
from vramplan.inventory import build_inventory
from vramplan.model.hf_config import spec_from_config

PARITY: dict[str, dict[str, Any]] = json.loads((DATA / "param_parity.json").read_text())["models"]
SHARED = ROOT.parent / "shared" / "models"
CONSTRUCTED = DATA / "configs"

# Models whose family is not implemented on this branch yet: strict xfail (an XPASS fails, so a
# family that lands must take its model off this list). The integrator empties it.
NOT_YET: dict[str, str] = {
}


def config_path(stem: str) -> Path | None:
    """Where the config of a fixture model is: catalog, ../shared/models, tests/data/configs."""
    for folder in (MODELS, SHARED, CONSTRUCTED):
        p = folder / f"{stem}.json"
        if p.is_file():
            return p
    return None


def load(path: Path) -> dict[str, Any]:
    """A config.json without the ``_vramplan_*`` keys of constructed test configs."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in raw.items() if not k.startswith("_vramplan")}


def _cases() -> list[Any]:
    out = []
    for stem in sorted(PARITY):
        marks = [pytest.mark.xfail(reason=NOT_YET[stem], strict=True)] if stem in NOT_YET else []
        out.append(pytest.param(stem, id=stem, marks=marks))
    return out


@pytest.mark.parametrize("stem", _cases())
def test_params_match_transformers(stem: str) -> None:
    truth = PARITY[stem]
    path = config_path(stem)
    if path is None:
        pytest.skip(f"{stem}.json is not in the catalog, {SHARED} or {CONSTRUCTED}")
    if "params_total" not in truth and "params_text" not in truth:
        pytest.skip(f"no transformers ground truth: {truth.get('error', '?')[:200]}")
    spec = spec_from_config(load(path), stem)
    inv = build_inventory(spec)
    got: dict[str, Any] = {"params_text": inv.params_text}
    want: dict[str, Any] = {"params_text": truth["params_text"]}
    if "params_total" in truth:
        got.update(params_total=inv.params_total,
                   params_total_plus_buffers=inv.params_total + inv.buffers_total,
                   tied=spec.tie_word_embeddings)
        want.update(params_total=truth["params_total"],
                    params_total_plus_buffers=truth["params_total_plus_buffers"],
                    tied=any(a.endswith("lm_head.weight") for a in truth["tied_aliases"]))
    assert got == want


def test_every_catalog_model_is_in_the_fixture() -> None:
    assert {p.stem for p in catalog_files()} <= set(PARITY)


def test_every_shared_and_constructed_config_is_in_the_fixture() -> None:
    """A config added without regenerating the fixture would go unchecked."""
    stems = {p.stem for d in (SHARED, CONSTRUCTED) if d.is_dir() for p in d.glob("*.json")
             if not p.name.endswith(".hf_quant_config.json")}
    assert stems - set(PARITY) == set()


def test_not_yet_list_names_fixture_models() -> None:
    assert set(NOT_YET) <= set(PARITY)


def test_qwen3_next_mtp_matches_checkpoint_count() -> None:
    """GGX's safetensors scan of Qwen3-Next-80B-A3B-Instruct counts 81,324,862,720 stored
    parameters including mtp.* (shared/models/SOURCES.md)."""
    from tests.conftest import load_config

    inv = build_inventory(spec_from_config(load_config("Qwen__Qwen3-Next-80B-A3B-Instruct")))
    assert inv.params_total + inv.params_mtp == 81_324_862_720


@pytest.mark.parametrize(("stem", "active_b"), [
    ("Qwen__Qwen3-235B-A22B", 22.0), ("Qwen__Qwen3-30B-A3B", 3.3),
    ("deepseek-ai__DeepSeek-V3", 37.0), ("mistralai__Mixtral-8x7B-v0.1", 12.9),
    ("moonshotai__Kimi-K2-Instruct", 32.0),
])
def test_active_params_match_model_cards(stem: str, active_b: float) -> None:
    """Cards: Qwen3 22B/3.3B activated, DeepSeek-V3 37B, Mixtral 12.9B, Kimi K2 32B (±3 %)."""
    from tests.conftest import load_config

    inv = build_inventory(spec_from_config(load_config(stem)))
    assert inv.params_active / 1e9 == pytest.approx(active_b, rel=0.03)
