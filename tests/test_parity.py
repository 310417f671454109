"""Exact parameter counts: every catalog config against transformers on the meta device.

The fixture ``data/param_parity.json`` is produced by ``scripts/gen_param_parity.py`` (dev-only,
torch + transformers); this test needs neither. transformers keeps DeepSeek-V3/GLM's
``e_score_correction_bias`` as a persistent buffer, not a parameter: vramplan counts it as a
buffer (stored in checkpoints, priced in weights), so ``params_total`` matches transformers and
``params_total + buffers`` matches ``params_total_plus_buffers``.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import DATA, catalog_files
from vramplan.inventory import build_inventory
from vramplan.model.hf_config import spec_from_config

PARITY = json.loads((DATA / "param_parity.json").read_text())["models"]


@pytest.mark.parametrize("path", catalog_files(), ids=lambda p: p.stem)
def test_params_total_matches_transformers(path):  # type: ignore[no-untyped-def]
    truth = PARITY[path.stem]
    spec = spec_from_config(json.loads(path.read_text()), path.stem)
    inv = build_inventory(spec)
    assert inv.params_total == truth["params_total"]
    assert inv.params_total + inv.buffers_total == truth["params_total_plus_buffers"]
    assert spec.tie_word_embeddings == truth["tied"]


def test_every_catalog_model_is_in_the_fixture() -> None:
    assert {p.stem for p in catalog_files()} <= set(PARITY)


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
