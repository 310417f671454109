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
        if cells[1] in ("A", "B", "C"):  # 2026-12 table: file | tier | source | size | exact | note
            org, name = fname[: -len(".json")].split("__", 1)
            rows[fname] = {"model_id": f"{org}/{name}", "source": f"tier {cells[1]}: {source}",
                           "official_params": cells[3]}
            continue
        rows[fname] = {"model_id": cells[1].split(" ")[0], "source": source,
                       "official_params": cells[4]}
    return rows


# Short names people type (issue 8: "gemma-3-12b", "qwen3.5-35b-a3b", "deepseek-v3.2", ...).
# Each alias names one checkpoint; the first entry to claim an alias keeps it.
SHORT_ALIASES: dict[str, tuple[str, ...]] = {
    "Qwen__Qwen3-Coder-480B-A35B-Instruct": ("qwen3-coder-480b-a35b", "qwen3-coder-480b"),
    "Qwen__Qwen3-VL-30B-A3B-Instruct": ("qwen3-vl-30b-a3b", "qwen3-vl-30b"),
    "Qwen__Qwen3-VL-8B-Instruct": ("qwen3-vl-8b",),
    "Qwen__Qwen3.5-35B-A3B": ("qwen3.5-35b",),
    "Qwen__Qwen3-Next-80B-A3B-Instruct": ("qwen3-next-80b-a3b", "qwen3-next-80b", "qwen3-next"),
    "Qwen__Qwen2.5-72B-Instruct": ("qwen2.5-72b",),
    "Qwen__Qwen2.5-7B-Instruct": ("qwen2.5-7b",),
    "Qwen__Qwen3-235B-A22B": ("qwen3-235b",),
    "Qwen__Qwen3-30B-A3B": ("qwen3-30b",),
    "deepseek-ai__DeepSeek-V3.2": ("deepseek-v3.2",),
    "deepseek-ai__DeepSeek-V4-Flash": ("deepseek-v4-flash", "deepseek-v4"),
    "meta-llama__Llama-4-Maverick-17B-128E-Instruct": ("llama-4-maverick", "llama-4-maverick-17b"),
    "meta-llama__Llama-4-Scout-17B-16E-Instruct": ("llama-4-scout", "llama-4-scout-17b"),
    "meta-llama__Llama-3.2-11B-Vision": ("llama-3.2-11b-vision", "llama-3.2-vision"),
    "nvidia__NVIDIA-Nemotron-3-Nano-30B-A3B-BF16": ("nemotron-3-nano", "nemotron-3-nano-30b-a3b",
                                                     "nvidia-nemotron-3-nano-30b-a3b"),
    "nvidia__Llama-3_3-Nemotron-Super-49B-v1": ("nemotron-super-49b", "llama-3.3-nemotron-super-49b"),
    "moonshotai__Kimi-K2-Instruct": ("kimi-k2",),
    "zai-org__GLM-4.7-FP8": ("glm-4.7",),
    "google__gemma-4-26B-A4B": ("gemma-4-26b",),
    "google__gemma-3-1b-it": ("gemma-3-1b",),
    "google__gemma-3-4b-it": ("gemma-3-4b",),
    "google__gemma-3-12b-it": ("gemma-3-12b",),
    "google__gemma-2-27b-it": ("gemma-2-27b",),
    "google__gemma-2-9b-it": ("gemma-2-9b",),
    "google__gemma-3n-E4B": ("gemma-3n",),
    "allenai__OLMo-2-0325-32B": ("olmo-2-32b", "olmo2-32b"),
    "allenai__Olmo-3-7B-Instruct": ("olmo-3-7b", "olmo3-7b"),
    "mistralai__Mistral-Small-3.1-24B-Instruct-2503": ("mistral-small-3.1-24b", "mistral-small-3.1"),
    "mistralai__Mistral-7B-v0.1": ("mistral-7b",),
    "mistralai__Mixtral-8x7B-v0.1": ("mixtral-8x7b",),
    "HuggingFaceTB__SmolLM3-3B": ("smollm3",),
    "ai21labs__Jamba-v0.1": ("jamba",),
    "openai__gpt-oss-120b": (),
}


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
        aliases = [name.lower(), *SHORT_ALIASES.get(f.stem, ())]
        entry = {"id": f"{org}/{name}", "file": f.name, "source": row["source"],
                 "official_params": row["official_params"], "aliases": aliases}
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
