"""Generate the parameter-count parity fixture ``tests/data/param_parity.json``.

Dev-only. This script is NOT part of vramplan and is never imported or run by the test suite or
CI. It needs ``torch`` and ``transformers``, which vramplan does not depend on, so run it from a
separate virtual environment, for example::

    python3 -m venv /work/parity-venv
    /work/parity-venv/bin/pip install torch transformers
    /work/parity-venv/bin/python scripts/gen_param_parity.py \
        [--models-dir ../shared/models] [--extra-dir tests/data/configs] \
        [--out tests/data/param_parity.json] [--only STEM ...]

Default paths are resolved relative to the repository root (the parent of ``scripts/``).
``--extra-dir`` (repeatable; default ``tests/data/configs`` when it exists) adds configs that
were constructed for the tests; their ``_vramplan_*`` keys (``_vramplan_source``) are dropped
before building. ``--only`` regenerates just those stems and keeps every other entry of the
existing fixture.

Gemma-3n's vision tower is a ``timm`` model (``TimmWrapperModel``): put ``timm``, ``pillow`` and
``torchvision`` (its C extension is not needed to build the modules) on ``PYTHONPATH`` to count
it; without them that model gets an ``error`` entry (and its ``params_text`` from the text model
alone). A config transformers has no class for (remote code such as ``nemotron-nas``) gets an
``error`` entry; the other models are unaffected and the exit status is 0 unless ``--strict``.

What it does: for every ``<org>__<name>.json`` config in the models directory (``*.hf_quant_config
.json`` side files are skipped) it builds the transformers config from the JSON alone (the Hub is
never contacted, ``trust_remote_code`` is always False), drops ``quantization_config`` so FP8 /
mxfp4 / compressed-tensors checkpoints instantiate in plain dtype (parameter counts do not depend
on it), instantiates the model on the ``meta`` device (nothing is allocated) and records the ground
truth that vramplan's parameter counter must reproduce exactly:

* ``params_total``: sum of ``numel`` over unique parameters (tied weights once, like
  ``model.parameters()``);
* ``params_text``: the same without the vision / audio towers and their projectors (parameter
  names matching ``TOWER_NAME``: vision, visual, audio, multi_modal_projector, mm_projector,
  embed_vision, embed_audio);
* ``params_with_ties``: the same over ``named_parameters(remove_duplicate=False)``;
* ``groups``: parameters grouped by name with every integer path component replaced by ``*``
  (count, total numel, shape of the first member);
* ``buffers_persistent``: persistent buffers a checkpoint would store (rotary ``inv_freq`` skipped);
* tie / MTP / class information.

Model type ``kimi_k2`` is built with the DeepseekV3 config and model classes (its architecture is
``DeepseekV3ForCausalLM``). The model class is the one named in ``architectures`` when transformers
has it (so Llama-4 Scout gets ``Llama4ForConditionalGeneration`` with its vision tower), otherwise
the ``AutoModelForCausalLM`` mapping for the config. At the end a table compares ``params_total``
with the "computed" figures in ``SOURCES.md``, and ``params_text`` / ``params_total`` with
the "exact params text / whole" column of its "Added 2026-12" table.
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
DEFAULT_EXTRA_DIR = REPO_ROOT / "tests" / "data" / "configs"

# model_type values that transformers does not know, mapped to the one to build them with.
MODEL_TYPE_ALIASES = {"kimi_k2": "deepseek_v3"}

# Config keys that only matter for remote code or for loading, never for shapes.
DROP_KEYS = ("model_type", "auto_map", "quantization_config")

# Config fields that give the number of MTP / next-n prediction layers, per family.
MTP_KEYS = ("num_nextn_predict_layers", "mtp_num_hidden_layers", "num_mtp_layers")

# Parameter names of vision / audio towers and their projectors into the text model.
TOWER_NAME = re.compile(r"vision|visual|audio|multi_modal_projector|mm_projector")

_INT_COMPONENT = re.compile(r"^\d+$")
_INT_LIST = re.compile(r"\[\s*(\d+(?:,\s*\d+)*)\s*\]")


def name_pattern(name: str) -> str:
    """Replace every integer path component of a dotted name with ``*``."""
    return ".".join("*" if _INT_COMPONENT.match(part) else part for part in name.split("."))


class Unbuildable(Exception):
    """transformers has no class for this config (remote code); recorded as an ``error``."""


def build_config(raw: dict[str, Any]) -> tuple[PretrainedConfig, str]:
    """Build a transformers config from a raw config.json dict. Returns (config, model_type)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    cfg = {k: v for k, v in raw.items() if k not in DROP_KEYS}
    model_type = MODEL_TYPE_ALIASES.get(raw["model_type"], raw["model_type"])
    if model_type not in CONFIG_MAPPING:
        remote = " (remote code: auto_map " + ", ".join(
            f"{k}={v}" for k, v in raw["auto_map"].items()) + ")" if raw.get("auto_map") else ""
        raise Unbuildable(f"transformers {transformers.__version__} has no config class for "
                          f"model_type {model_type!r}{remote}; trust_remote_code is never used")
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

    params_text = sum(p.numel() for n, p in unique if not TOWER_NAME.search(n))
    names = [n for n, _ in all_named]
    text_names = [n for n in names if not TOWER_NAME.search(n)]
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
        "params_text": params_text,
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


def parse_sources_2026(sources_md: Path) -> dict[str, tuple[int | None, int | None]]:
    """Map file stem -> (text, whole) from the "exact params text / whole" column of the
    "Added 2026-12" table of SOURCES.md ("-" where transformers could not build it: None)."""
    out: dict[str, tuple[int | None, int | None]] = {}
    if not sources_md.is_file():
        return out
    pair = re.compile(r"^([\d,]+|-) / ([\d,]+|-)$")
    for line in sources_md.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or not cells[0].endswith(".json"):
            continue
        m = pair.match(cells[4])
        if m:
            text, whole = (None if g == "-" else int(g.replace(",", "")) for g in m.groups())
            out[cells[0][: -len(".json")]] = (text, whole)
    return out


def text_only_params(config: PretrainedConfig) -> tuple[int, str] | None:
    """(params, class) of the text model alone, built from ``config.get_text_config()`` with the
    causal-LM class of that config; None where there is none (or it is the whole model)."""
    if not hasattr(config, "get_text_config"):
        return None
    text_cfg = config.get_text_config()
    if text_cfg is config:
        return None
    cls = AutoModelForCausalLM._model_mapping.get(type(text_cfg), None)
    if cls is None:
        return None
    with torch.device("meta"):
        model = cls._from_config(text_cfg)
    return sum(p.numel() for p in model.parameters()), cls.__name__


def load_raw(path: Path) -> dict[str, Any]:
    """A config.json without the ``_vramplan_*`` keys of constructed test configs."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in raw.items() if not k.startswith("_vramplan")}


def measure(raw: dict[str, Any]) -> dict[str, Any]:
    """One fixture entry; a config transformers cannot build gets ``error`` (never raises)."""
    entry: dict[str, Any] = {
        "model_type": raw.get("model_type"),
        "quantization_config_dropped": "quantization_config" in raw,
    }
    config = None
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
    except Unbuildable as exc:
        entry["error"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - record the failure in the fixture
        entry["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:600]}"
        traceback.print_exc()
    if "error" in entry and config is not None:
        try:
            got = text_only_params(config)
        except Exception as exc:  # noqa: BLE001
            print(f"  text model alone failed too: {type(exc).__name__}: {exc}", file=sys.stderr)
            got = None
        if got is not None:
            entry["params_text"], entry["params_text_class"] = got
    return entry


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    ap.add_argument("--extra-dir", type=Path, action="append", default=None,
                    help="another directory of configs (repeatable; default tests/data/configs)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", nargs="*", help="only these file stems; other entries are kept")
    ap.add_argument("--strict", action="store_true", help="exit 1 when any model has an error")
    args = ap.parse_args(argv)

    def resolve(p: Path) -> Path:
        return p if p.is_absolute() else REPO_ROOT / p

    models_dir = resolve(args.models_dir)
    out_path = resolve(args.out)
    extra_dirs = [resolve(d) for d in args.extra_dir] if args.extra_dir is not None else (
        [DEFAULT_EXTRA_DIR] if DEFAULT_EXTRA_DIR.is_dir() else [])

    files: dict[str, tuple[Path, str]] = {}
    for d, origin in [(models_dir, "shared")] + [(d, "constructed") for d in extra_dirs]:
        for p in sorted(d.glob("*.json")):
            if p.name.endswith(".hf_quant_config.json"):
                continue
            if p.stem in files:
                raise SystemExit(f"{p} has the same name as {files[p.stem][0]}")
            files[p.stem] = (p, origin)
    if args.only:
        unknown = set(args.only) - set(files)
        if unknown:
            raise SystemExit(f"--only: no such config: {', '.join(sorted(unknown))}")
        files = {k: v for k, v in files.items() if k in set(args.only)}

    models: dict[str, Any] = {}
    if args.only and out_path.is_file():
        models = dict(json.loads(out_path.read_text(encoding="utf-8"))["models"])
    for stem, (path, origin) in files.items():
        t0 = time.monotonic()
        entry = measure(load_raw(path))
        entry["origin"] = origin
        dt = time.monotonic() - t0
        print(f"{stem}: {entry.get('params_total', entry.get('error'))} ({dt:.1f}s)", flush=True)
        models[stem] = entry
    models = dict(sorted(models.items()))

    fixture = {
        "generated_by": "scripts/gen_param_parity.py",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "notes": (
            "Instantiated on the meta device from the config.json alone. quantization_config is "
            "dropped before instantiation (quantization_config_dropped=true): counts are for the "
            "plain-dtype model. params_text excludes vision/audio towers and their projectors. "
            "origin: shared (../shared/models) or constructed (tests/data/configs). An entry with "
            "error could not be built (its params_text, when present, is the text model alone). "
            "MTP/next-n layers are not instantiated by transformers unless "
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
    exact = parse_sources_2026(models_dir / "SOURCES.md")
    for stem, entry in models.items():
        if stem not in sources or stem in exact:
            continue
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

    mismatches = 0
    print()
    print(f"{'model (SOURCES.md Added 2026-12)':<55} {'text':>18} {'whole':>18}  vs SOURCES")
    for stem, (want_text, want_whole) in exact.items():
        entry = models.get(stem)
        if entry is None:
            continue
        got = (entry.get("params_text"), entry.get("params_total"))
        ok = got == (want_text, want_whole)
        flags = []
        for what, g, w in (("text", got[0], want_text), ("whole", got[1], want_whole)):
            if g != w:
                flags.append(f"{what} {g} != SOURCES {w}" if w is not None else
                             f"{what} {g} (SOURCES: -)")
                mismatches += w is not None
        cells = [f"{v:,}" if v is not None else "-" for v in got]
        print(f"{stem:<55} {cells[0]:>18} {cells[1]:>18}  {'ok' if ok else '; '.join(flags)}")
    errors = sorted(k for k, e in models.items() if "error" in e)
    for k in errors:
        print(f"ERROR {k}: {models[k]['error'][:300]}")
    print(f"{len(models)} models, {len(errors)} errors, {mismatches} mismatches with SOURCES.md")
    return 1 if args.strict and (errors or mismatches) else 0


if __name__ == "__main__":
    sys.exit(main())
