"""Resolve a model name: built-in catalog, local path (config.json or folder), or Hub id.

The resolve stage flows one way: this module dispatches to ``gguf_source`` (a local ``.gguf``) and
``gguf_hub`` (a GGUF on the Hub), which build the same ``ModelSource`` (``model_source.py``, a
leaf, re-exported here); pricing a GGUF source is the price stage's (``quant/gguf_weights.py``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from vramplan.errors import ConfigError, UnknownModelError
from vramplan.model import catalog
from vramplan.model.model_source import ModelSource as ModelSource
from vramplan.model.safetensors import HeaderTensor, read_local_header

MAX_CONFIG_BYTES = 4 * 2**20  # a real config.json is a few KiB
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_GGUF = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+:[\w.+/-]+$")  # org/repo:file.gguf | :Q4_K_M


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(what, "is larger than 4 MiB", "pass the model's config.json")
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(what, f"is not valid JSON (line {exc.lineno}: {exc.msg})",
                          "fix or re-download the file") from None
    except UnicodeDecodeError:
        raise ConfigError(what, "is not UTF-8 text", "pass the model's config.json") from None
    except OSError as exc:
        raise ConfigError(what, f"cannot be read ({exc.strerror})", "check the path") from None
    if not isinstance(data, dict):
        raise ConfigError(what, "is not a JSON object", "pass the model's config.json")
    return data


def load_local(path: Path) -> ModelSource:
    folder = path if path.is_dir() else path.parent
    cfg_path = path / "config.json" if path.is_dir() else path
    if not cfg_path.exists():
        raise UnknownModelError("MODEL", f"{path} has no config.json",
                                "pass a config.json or a model folder")
    cfg = _read_json(cfg_path, str(cfg_path))
    hq = None
    if path.is_dir() and (folder / "hf_quant_config.json").exists():
        hq = _read_json(folder / "hf_quant_config.json", "hf_quant_config.json")
    headers: list[HeaderTensor] = []
    if path.is_dir():
        for st in sorted(folder.glob("*.safetensors")):
            headers += read_local_header(st)
    name = str(cfg.get("_name_or_path") or folder.name or "local")
    return ModelSource(name, "local", str(cfg_path), cfg, hq, tuple(headers))


def load_model(name: str, *, allow_hub: bool = True, allow_local: bool = True) -> ModelSource:
    """Catalog first (works offline), then a local path (unless ``allow_local`` is False, as for
    the HTTP server, which never reads files a request names), then the Hub."""
    entry = catalog.find(name)
    if entry is not None:
        return ModelSource(entry.id, "catalog", entry.source, entry.load_config(),
                           entry.load_hf_quant_config())
    p = Path(name).expanduser()
    if allow_local and p.exists():
        if p.suffix.lower() == ".gguf":
            from vramplan.model.gguf_source import load_gguf_source

            return load_gguf_source(p)
        return load_local(p)
    if allow_hub and _HUB_GGUF.match(name):
        from vramplan.model.gguf_hub import load_hub_gguf

        return load_hub_gguf(name)
    if allow_hub and _HUB_ID.match(name):
        from vramplan.model import hub

        try:
            cfg = hub.fetch_config(name)
        except hub.NoConfigError:  # a GGUF-only repo: read a .gguf header instead
            from vramplan.model.gguf_hub import load_hub_gguf

            return load_hub_gguf(name)
        headers = hub.fetch_safetensors_headers(name)
        return ModelSource(name, "hub", f"huggingface.co/{name}", cfg, None, tuple(headers))
    sug = catalog.suggestions(name)
    hint = f"did you mean: {', '.join(sug)}?" if sug else \
        "see `vramplan models`, or pass a config.json path or a Hub id (org/name)"
    raise UnknownModelError("MODEL", f"{name!r} is not a built-in model, a local path or a Hub id",
                            hint)
