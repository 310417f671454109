"""Generate the parameter-count parity fixture ``tests/data/param_parity.json``.

Dev-only. This script is NOT part of vramplan and is never imported or run by the test suite or
CI. It needs ``torch`` and ``transformers``, which vramplan does not depend on, so run it from a
separate virtual environment, for example::

    python3 -m venv /work/parity-venv
    /work/parity-venv/bin/pip install torch transformers
    /work/parity-venv/bin/python scripts/gen_param_parity.py \
        [--models-dir ../shared/models] [--out tests/data/param_parity.json]

Default paths are resolved relative to the repository root (the parent of ``scripts/``).

What it does: for every ``<org>__<name>.json`` config in the models directory (``*.hf_quant_config
.json`` side files are skipped) it builds the transformers config from the JSON alone (the Hub is
never contacted, ``trust_remote_code`` is always False), drops ``quantization_config`` so FP8 /
mxfp4 / compressed-tensors checkpoints instantiate in plain dtype (parameter counts do not depend
on it), instantiates the model on the ``meta`` device (nothing is allocated) and records the ground
truth that vramplan's parameter counter must reproduce exactly:

* ``params_total``: sum of ``numel`` over unique parameters (tied weights once, like
  ``model.parameters()``);
* ``params_with_ties``: the same over ``named_parameters(remove_duplicate=False)``;
* ``groups``: parameters grouped by name with every integer path component replaced by ``*``
  (count, total numel, shape of the first member);
* ``buffers_persistent``: persistent buffers a checkpoint would store (rotary ``inv_freq`` skipped);
* tie / MTP / class information.

Model type ``kimi_k2`` is built with the DeepseekV3 config and model classes (its architecture is
``DeepseekV3ForCausalLM``). The model class is the one named in ``architectures`` when transformers
has it (so Llama-4 Scout gets ``Llama4ForConditionalGeneration`` with its vision tower), otherwise
the ``AutoModelForCausalLM`` mapping for the config. At the end a table compares ``params_total``
with the "computed" figures in ``SOURCES.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = REPO_ROOT.parent / "shared" / "models"
DEFAULT_OUT = REPO_ROOT / "tests" / "data" / "param_parity.json"

# model_type values that transformers does not know, mapped to the one to build them with.
MODEL_TYPE_ALIASES = {"kimi_k2": "deepseek_v3"}

# Config keys that only matter for remote code or for loading, never for shapes.
DROP_KEYS = ("model_type", "auto_map", "quantization_config")

# Config fields that give the number of MTP / next-n prediction layers, per family.
MTP_KEYS = ("num_nextn_predict_layers", "mtp_num_hidden_layers", "num_mtp_layers")

_INT_COMPONENT = re.compile(r"^\d+$")
_INT_LIST = re.compile(r"\[\s*(\d+(?:,\s*\d+)*)\s*\]")


def name_pattern(name: str) -> str:
    """Replace every integer path component of a dotted name with ``*``."""
    return ".".join("*" if _INT_COMPONENT.match(part) else part for part in name.split("."))


def build_config(raw: dict[str, Any]) -> tuple[PretrainedConfig, str]:
    """Build a transformers config from a raw config.json dict. Returns (config, model_type)."""
    cfg = {k: v for k, v in raw.items() if k not in DROP_KEYS}
    model_type = MODEL_TYPE_ALIASES.get(raw["model_type"], raw["model_type"])
    config = AutoConfig.for_model(model_type, **cfg)
    return config, model_type


def resolve_model_classes(config: PretrainedConfig, raw: dict[str, Any]) -> list[type]:
    """Candidate model classes, best first: the ``architectures`` class, then the Auto mapping."""
    candidates: list[type] = []
    for arch in raw.get("architectures") or []:
        cls = getattr(transformers, arch, None)
        if isinstance(cls, type) and cls not in candidates:
            candidates.append(cls)
    try:
        auto_cls = AutoModelForCausalLM._model_mapping[type(config)]
    except KeyError:
        auto_cls = None
    if auto_cls is not None and auto_cls not in candidates:
        candidates.append(auto_cls)
    return candidates


def instantiate(config: PretrainedConfig, raw: dict[str, Any]) -> tuple[torch.nn.Module, str, list]:
    """Instantiate on the meta device, trying each candidate class. Returns (model, cls, errors)."""
    errors: list[str] = []
    for cls in resolve_model_classes(config, raw):
        try:
            with torch.device("meta"):
                model = cls._from_config(config)
            return model, cls.__name__, errors
        except Exception as exc:  # noqa: BLE001 - record and try the next class
            errors.append(f"{cls.__name__}: {type(exc).__name__}: {exc}")
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
        return model, type(model).__name__, errors
    except Exception as exc:  # noqa: BLE001
        errors.append(f"AutoModelForCausalLM: {type(exc).__name__}: {exc}")
    raise RuntimeError("; ".join(errors))


def persistent_buffers(model: torch.nn.Module) -> dict[str, int]:
    """Persistent buffers (what a state_dict / checkpoint stores), grouped by name pattern."""
    out: dict[str, int] = {}
    for mod_name, module in model.named_modules():
        non_persistent = getattr(module, "_non_persistent_buffers_set", set())
        for buf_name, buf in module._buffers.items():
            if buf is None or buf_name in non_persistent:
                continue
            if buf_name in ("inv_freq", "original_inv_freq"):
                continue
            full = f"{mod_name}.{buf_name}" if mod_name else buf_name
            pat = name_pattern(full)
            out[pat] = out.get(pat, 0) + buf.numel()
    return out


def layer_indices(names: list[str], prefix_re: re.Pattern[str]) -> set[int]:
    found: set[int] = set()
    for n in names:
        m = prefix_re.search(n)
        if m:
            found.add(int(m.group(1)))
    return found


def describe_model(raw: dict[str, Any], config: PretrainedConfig, model: torch.nn.Module) -> dict:
    unique = list(model.named_parameters())
    all_named = list(model.named_parameters(remove_duplicate=False))
    params_total = sum(p.numel() for _, p in unique)
    params_with_ties = sum(p.numel() for _, p in all_named)
    unique_names = {n for n, _ in unique}
    first_name_of: dict[int, str] = {id(p): n for n, p in reversed(all_named)}
    tied_aliases = {n: first_name_of[id(p)] for n, p in all_named if n not in unique_names}

    groups: dict[str, dict[str, Any]] = {}
    for n, p in unique:
        g = groups.setdefault(name_pattern(n), {"count": 0, "numel": 0, "shape": list(p.shape)})
        g["count"] += 1
        g["numel"] += p.numel()

    text_cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    n_layers = getattr(text_cfg, "num_hidden_layers", None)
    mtp_cfg = {k: raw.get(k, raw.get("text_config", {}).get(k)) for k in MTP_KEYS}
    mtp_cfg = {k: v for k, v in mtp_cfg.items() if v is not None}

    names = [n for n, _ in all_named]
    text_names = [n for n in names if "vision" not in n]
    idx = layer_indices(text_names, re.compile(r"(?:^|\.)layers\.(\d+)\."))
    mtp_names = [n for n in names if re.search(r"(^|\.)(mtp|nextn|eh_proj|enorm|hnorm)(\.|_|$)", n)]
    extra_layers = sorted(i for i in idx if n_layers is not None and i >= n_layers)

    buffers = persistent_buffers(model)
    notes: list[str] = []
    if buffers:
        notes.append(
            "persistent buffers (stored in checkpoints) are not parameters: params_total excludes "
            "them; params_total_plus_buffers includes them"
        )
    if raw.get("model_type") == "qwen3_next" and not (mtp_names or extra_layers):
        notes.append(
            "config has no MTP key, but Qwen3-Next checkpoints ship mtp.* weights; transformers "
            "does not instantiate them"
        )
    if any(v for v in mtp_cfg.values()) and not (mtp_names or extra_layers):
        notes.append("MTP/next-n layers in the config are not instantiated by transformers")
    return {
        "params_total": params_total,
        "params_total_plus_buffers": params_total + sum(buffers.values()),
        "params_with_ties": params_with_ties,
        "tied": bool(tied_aliases),
        "tie_word_embeddings_config": bool(getattr(text_cfg, "tie_word_embeddings", False)),
        "tied_aliases": tied_aliases,
        "buffers_persistent": buffers,
        "num_hidden_layers": n_layers,
        "decoder_layers_instantiated": len(idx),
        "mtp_layers_in_config": mtp_cfg,
        "mtp_instantiated": bool(mtp_names or extra_layers),
        "groups": groups,
        "notes": notes,
    }


def parse_sources(sources_md: Path) -> dict[str, dict[str, Any]]:
    """Map file stem -> {"computed", "stored", "official"} parsed from SOURCES.md's table.

    ``computed`` is the formula count in the cross-checks column; ``stored`` is a safetensors
    parameter count quoted in the weights column ("N params"), which may include MTP weights or
    a stored copy of a tied ``lm_head``.
    """
    out: dict[str, dict[str, Any]] = {}
    if not sources_md.is_file():
        return out
    for line in sources_md.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or not cells[0].endswith(".json"):
            continue
        stem = cells[0][: -len(".json")]
        m = re.search(r"computed (?:unique params )?([\d,]{5,})", cells[3])
        computed = int(m.group(1).replace(",", "")) if m else None
        weights = cells[5] if len(cells) > 5 else ""
        m = re.search(r"([\d,]{9,})\*{0,2} (?:stored )?params", weights)
        m = m or re.search(r"GGX count ([\d,]{9,})", cells[3])
        stored = int(m.group(1).replace(",", "")) if m else None
        out[stem] = {"computed": computed, "stored": stored, "official": cells[4]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", nargs="*", help="only these file stems (debugging)")
    args = ap.parse_args(argv)

    models_dir = args.models_dir if args.models_dir.is_absolute() else REPO_ROOT / args.models_dir
    out_path = args.out if args.out.is_absolute() else REPO_ROOT / args.out

    files = sorted(
        p for p in models_dir.glob("*.json") if not p.name.endswith(".hf_quant_config.json")
    )
    if args.only:
        files = [p for p in files if p.stem in set(args.only)]

    models: dict[str, Any] = {}
    for path in files:
        stem = path.stem
        t0 = time.monotonic()
        raw = json.loads(path.read_text(encoding="utf-8"))
        entry: dict[str, Any] = {
            "model_type": raw.get("model_type"),
            "quantization_config_dropped": "quantization_config" in raw,
        }
        try:
            config, built_as = build_config(raw)
            entry["config_class"] = type(config).__name__
            if built_as != raw.get("model_type"):
                entry["built_as_model_type"] = built_as
            model, cls_name, tried = instantiate(config, raw)
            entry["model_class"] = cls_name
            if tried:
                entry["failed_classes"] = tried
            entry.update(describe_model(raw, config, model))
            del model
        except Exception as exc:  # noqa: BLE001 - record the failure in the fixture
            entry["error"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        dt = time.monotonic() - t0
        print(f"{stem}: {entry.get('params_total', entry.get('error'))} ({dt:.1f}s)", flush=True)
        models[stem] = entry

    fixture = {
        "generated_by": "scripts/gen_param_parity.py",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "notes": (
            "Instantiated on the meta device from the config.json alone. quantization_config is "
            "dropped before instantiation (quantization_config_dropped=true): counts are for the "
            "plain-dtype model. MTP/next-n layers are not instantiated by transformers unless "
            "mtp_instantiated is true. groups are over unique parameters; tied_aliases maps each "
            "tied duplicate name to the parameter it shares storage with. Fused 3-D expert tensors "
            "(experts.gate_up_proj / experts.down_proj) are transformers' in-memory layout; many "
            "checkpoints store per-expert 2-D tensors with the same total numel."
        ),
        "models": models,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(fixture, indent=1, sort_keys=True)
    # Put integer lists (shapes) on one line: "[\n   152064,\n   8192\n  ]" -> "[152064, 8192]".
    text = _INT_LIST.sub(
        lambda m: "[" + ", ".join(m.group(1).replace(",", " ").split()) + "]", text
    )
    out_path.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {out_path}")

    sources = parse_sources(models_dir / "SOURCES.md")
    print()
    header = (
        f"{'model':<55} {'params_total':>18} {'SOURCES computed':>18} {'diff':>16}"
        f" {'SOURCES stored':>18} {'diff':>16}  official"
    )
    print(header)
    print("-" * len(header))
    for stem, entry in models.items():
        total = entry.get("params_total")
        src = sources.get(stem, {})
        computed = src.get("computed")
        stored = src.get("stored")
        total_s = f"{total:,}" if total is not None else "ERROR"
        cols = []
        for ref in (computed, stored):
            ref_s = f"{ref:,}" if ref is not None else ""
            diff = f"{total - ref:+,}" if total is not None and ref is not None else ""
            cols.append(f"{ref_s:>18} {diff:>16}")
        official = src.get("official", "")
        print(f"{stem:<55} {total_s:>18} {' '.join(cols)}  {official}")
    return 1 if any("error" in e for e in models.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
