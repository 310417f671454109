"""The built-in catalog: real published config.json files shipped with the package.

Each entry keeps the source of its file (see ``scripts/build_catalog.py`` and SOURCES.md).
Models are addressed by exact Hugging Face id or by alias (case-insensitive).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from vramplan.errors import UnknownModelError

DATA_DIR = Path(__file__).resolve().parent.parent / "data"  # package data (see pyproject)


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    id: str
    file: str
    source: str
    aliases: tuple[str, ...]
    official_params: str
    hf_quant_config: str | None

    def load_config(self) -> dict[str, Any]:
        data = (DATA_DIR / "models" / self.file).read_text(encoding="utf-8")
        return dict(json.loads(data))

    def load_hf_quant_config(self) -> dict[str, Any] | None:
        if not self.hf_quant_config:
            return None
        data = (DATA_DIR / "models" / self.hf_quant_config).read_text(encoding="utf-8")
        return dict(json.loads(data))


@lru_cache(maxsize=1)
def catalog() -> tuple[CatalogEntry, ...]:
    raw = json.loads((DATA_DIR / "catalog.json").read_text(encoding="utf-8"))
    return tuple(
        CatalogEntry(id=e["id"], file=e["file"], source=e["source"], aliases=tuple(e["aliases"]),
                     official_params=e.get("official_params", ""),
                     hf_quant_config=e.get("hf_quant_config"))
        for e in raw["models"])


@lru_cache(maxsize=1)
def _index() -> dict[str, CatalogEntry]:
    idx: dict[str, CatalogEntry] = {}
    for e in catalog():
        idx[e.id.lower()] = e
        for a in e.aliases:
            idx.setdefault(a.lower(), e)
    return idx


def find(name: str) -> CatalogEntry | None:
    """Exact id or alias, case-insensitive; None when absent."""
    return _index().get(name.strip().lower())


def suggestions(name: str, n: int = 3) -> list[str]:
    key = name.strip().lower()
    keys = list(_index())
    close = [k for k in keys if key and key in k]
    close += [k for k in difflib.get_close_matches(key, keys, n=n * 2, cutoff=0.5)
              if k not in close]
    out: list[str] = []
    for k in close:
        mid = _index()[k].id
        if mid not in out:
            out.append(mid)
    return out[:n]


def lookup(name: str) -> CatalogEntry:
    e = find(name)
    if e is None:
        sug = suggestions(name)
        hint = f"did you mean: {', '.join(sug)}?" if sug else "see `vramplan models`"
        raise UnknownModelError("MODEL", f"{name!r} is not in the built-in catalog", hint)
    return e


def search(query: str | None = None) -> list[CatalogEntry]:
    if not query:
        return list(catalog())
    q = query.lower()
    return [e for e in catalog() if q in e.id.lower() or any(q in a for a in e.aliases)]
