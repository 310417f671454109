"""Copy the real published config.json files from ../shared/models into the package catalog.

Dev-only. Each catalog entry keeps the source row of ``SOURCES.md`` (repository @ commit : path)
so every built-in model says where its config came from. Run from the repo root:

    python scripts/build_catalog.py [--models-dir ../shared/models]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "src" / "vramplan" / "data" / "models"


def parse_sources(md: str) -> dict[str, dict[str, str]]:
    """Rows of the SOURCES.md 'Files' table keyed by file name."""
    rows: dict[str, dict[str, str]] = {}
    abbrev = {
        "AIC": "ai-dynamo/aiconfigurator@095f58a51c4ca8e61b66ec108d86f223f8d559ce",
        "ISIM": "inference-sim/inference-sim",
        "GGX": "gogongxt/python@ec9962697819add8f24ce1b180cf98ca6a53c40f",
    }
    for line in md.splitlines():
        if not line.startswith("| ") or ".json" not in line.split("|")[1]:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        fname = cells[0]
        source = cells[2]
        for k, v in abbrev.items():
            source = re.sub(rf"^{k}\b", v, source)
        rows[fname] = {"model_id": cells[1].split(" ")[0], "source": source,
                       "official_params": cells[4]}
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", default=str(ROOT.parent / "shared" / "models"))
    args = ap.parse_args()
    src = Path(args.models_dir)
    rows = parse_sources((src / "SOURCES.md").read_text())
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    entries = []
    for f in sorted(src.glob("*.json")):
        if f.name.endswith(".hf_quant_config.json"):
            continue
        row = rows.get(f.name)
        if row is None:
            raise SystemExit(f"{f.name}: no row in SOURCES.md")
        shutil.copyfile(f, OUT_DIR / f.name)
        org, name = f.stem.split("__", 1)
        entry = {"id": f"{org}/{name}", "file": f.name, "source": row["source"],
                 "official_params": row["official_params"], "aliases": [name.lower()]}
        hq = src / f"{f.stem}.hf_quant_config.json"
        if hq.exists():
            shutil.copyfile(hq, OUT_DIR / hq.name)
            entry["hf_quant_config"] = hq.name
        entries.append(entry)
    (OUT_DIR.parent / "catalog.json").write_text(
        json.dumps({"generated_by": "scripts/build_catalog.py", "models": entries}, indent=1) + "\n")
    print(f"{len(entries)} models -> {OUT_DIR}")


if __name__ == "__main__":
    main()
