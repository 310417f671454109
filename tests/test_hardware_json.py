"""gpus.json (loaded at start-up) must equal the maintained gpus.toml."""

from __future__ import annotations

import json
import tomllib

from tests.conftest import ROOT

DATA = ROOT / "src" / "vramplan" / "data"


def test_gpus_json_matches_toml() -> None:
    toml = tomllib.loads((DATA / "gpus.toml").read_text(encoding="utf-8"))
    assert json.loads((DATA / "gpus.json").read_text(encoding="utf-8")) == toml, \
        "run: python scripts/build_gpus_json.py"
