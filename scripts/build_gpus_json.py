"""Regenerate src/vramplan/data/gpus.json from the maintained gpus.toml (run after editing it).

    python scripts/build_gpus_json.py
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "src" / "vramplan" / "data"


def main() -> None:
    data = tomllib.loads((DATA / "gpus.toml").read_text(encoding="utf-8"))
    (DATA / "gpus.json").write_text(json.dumps(data, indent=0, sort_keys=True) + "\n")
    print(f"{len(data['gpu'])} GPUs -> {DATA / 'gpus.json'}")


if __name__ == "__main__":
    main()
