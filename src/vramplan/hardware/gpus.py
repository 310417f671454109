"""The accelerator catalog (``data/gpus.toml``) and GPU name lookup.

Every byte count is an ``int``; TFLOPS/TOPS are dense (no 2:4 sparsity). The conventions for
each field (GB vs GiB, what "reported" means) are written at the top of ``gpus.toml``.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from vramplan.errors import InputError, UnknownGpuError, VramplanError

__all__ = [
    "CatalogError",
    "Gpu",
    "custom_gpu",
    "get_gpu",
    "load_catalog",
    "parse_catalog",
    "search_gpus",
]

VENDORS = frozenset({"nvidia", "amd", "apple", "intel", "custom"})


class CatalogError(VramplanError):
    """A row of the packaged ``gpus.toml`` is malformed (a bug in vramplan's data)."""


@dataclass(frozen=True, slots=True)
class Gpu:
    """One accelerator. ``0`` in a bandwidth/TFLOPS field means *unknown* (e.g. ``--vram``);
    ``None`` in an optional precision field means unsupported or no published figure."""

    key: str
    name: str
    vendor: str
    memory_bytes: int  # marketing capacity, exact (see gpus.toml for GB vs GiB)
    memory_reported_bytes: int  # what cudaMemGetInfo / torch / Metal report as the total
    memory_type: str
    bandwidth_bytes_per_s: int  # 0 = unknown
    bf16_dense_tflops: float  # 0.0 = unknown
    source: str
    aliases: tuple[str, ...] = ()
    reported_source: str = ""
    reported_is_estimate: bool = False
    fp8_dense_tflops: float | None = None
    int8_dense_tops: float | None = None
    fp4_dense_tflops: float | None = None
    tdp_watts: int | None = None
    pcie_gen: int = 0  # 0 = integrated / unified, or unknown
    interconnect: str = ""
    interconnect_bytes_per_s: int = 0  # 0 = none / unknown
    unified_memory: bool = False
    gpu_share: float = 1.0  # fraction of unified memory the GPU may use
    cuda_compute_capability: str = ""
    assumption: str = ""

    @property
    def usable_bytes(self) -> int:
        """Memory the GPU may use: ``memory_bytes * gpu_share`` if unified, else all of it."""
        if self.unified_memory:
            return int(self.memory_bytes * self.gpu_share)
        return self.memory_bytes


# field name -> accepted TOML type; bool is checked apart because bool is a subclass of int
_REQUIRED: dict[str, type] = {
    "key": str, "name": str, "vendor": str, "memory_bytes": int, "memory_reported_bytes": int,
    "memory_type": str, "bandwidth_bytes_per_s": int, "bf16_dense_tflops": float, "source": str,
    "pcie_gen": int, "unified_memory": bool,
}
_OPTIONAL: dict[str, type] = {
    "aliases": list, "reported_source": str, "reported_is_estimate": bool,
    "fp8_dense_tflops": float, "int8_dense_tops": float, "fp4_dense_tflops": float,
    "tdp_watts": int, "interconnect": str, "interconnect_bytes_per_s": int, "gpu_share": float,
    "cuda_compute_capability": str, "assumption": str,
}
_KNOWN = {f.name for f in fields(Gpu)}  # == set(_REQUIRED) | set(_OPTIONAL), checked in tests


def _check_type(value: object, want: type) -> bool:
    if want is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if want is float:
        return isinstance(value, int | float)
    if want is list:
        return isinstance(value, list) and all(isinstance(a, str) and a for a in value)
    return isinstance(value, want)


def _parse_row(index: int, row: Any) -> Gpu:
    where = f"gpus.toml row {index}"
    if not isinstance(row, dict):
        raise CatalogError(f"{where}: expected a [[gpu]] table")
    where += f" ({row.get('key', '?')!r})"

    def bad(problem: str) -> CatalogError:
        return CatalogError(f"{where}: {problem}")

    if unknown := set(row) - _KNOWN:
        raise bad(f"unknown field(s) {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, want in (_REQUIRED | _OPTIONAL).items():
        if name not in row:
            if name in _REQUIRED:
                raise bad(f"missing field {name!r}")
        elif not _check_type(row[name], want):
            raise bad(f"field {name!r} must be {want.__name__}, got {row[name]!r}")
        else:
            value = row[name]
            values[name] = float(value) if want is float else value
    values["aliases"] = tuple(values.get("aliases", ()))
    gpu = Gpu(**values)
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", gpu.key):
        raise bad("key must be a lowercase slug like 'rtx-4090'")
    if gpu.vendor not in VENDORS - {"custom"}:
        raise bad(f"vendor must be one of nvidia/amd/apple/intel, got {gpu.vendor!r}")
    if gpu.memory_bytes <= 0 or gpu.bandwidth_bytes_per_s <= 0 or gpu.bf16_dense_tflops <= 0:
        raise bad("memory_bytes, bandwidth_bytes_per_s and bf16_dense_tflops must be positive")
    if not 0 < gpu.memory_reported_bytes <= gpu.memory_bytes:
        raise bad("memory_reported_bytes must be positive and at most memory_bytes")
    if not 0 < gpu.gpu_share <= 1:
        raise bad("gpu_share must be in (0, 1]")
    if not 0 <= gpu.pcie_gen <= 6:
        raise bad("pcie_gen must be 0 (integrated) or 1..6")
    if not gpu.source.startswith("https://"):
        raise bad("source must be an https:// URL")
    return gpu


def _norm(text: str) -> str:
    """Lowercase, drop vendor words and everything but letters and digits."""
    text = re.sub(r"\b(nvidia|geforce|amd|radeon|apple|intel|tesla)\b", " ", text.lower())
    return re.sub(r"[^a-z0-9]", "", text)


def _tokens(gpu: Gpu) -> set[str]:
    return {t for t in (_norm(gpu.key), _norm(gpu.name), *map(_norm, gpu.aliases)) if t}


def parse_catalog(text: str) -> tuple[Gpu, ...]:
    """Parse and validate catalog TOML text; raises :class:`CatalogError` on a bad row."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"gpus.toml is not valid TOML: {exc}") from None
    return parse_rows(data)


def parse_rows(data: dict[str, Any]) -> tuple[Gpu, ...]:
    """Validate the parsed catalog (``{"gpu": [row, ...]}``) into Gpu rows."""
    rows = data.get("gpu")
    if not isinstance(rows, list) or not rows:
        raise CatalogError("gpus.toml has no [[gpu]] tables")
    gpus = tuple(_parse_row(i, row) for i, row in enumerate(rows))
    owner: dict[str, str] = {}
    for gpu in gpus:
        for token in _tokens(gpu):
            if owner.setdefault(token, gpu.key) != gpu.key:
                raise CatalogError(f"gpus.toml: name or alias {token!r} is used by both "
                                   f"{owner[token]!r} and {gpu.key!r}")
    return gpus


@functools.cache
def load_catalog() -> tuple[Gpu, ...]:
    """All catalog rows, in file order (parsed once, then cached)."""
    # gpus.toml is the maintained source; gpus.json is its parse, generated by
    # scripts/build_gpus_json.py (tomllib costs ~35 ms at every CLI start on the dev machine;
    # tests/test_hardware_json.py keeps the two identical).
    path = Path(__file__).resolve().parent.parent / "data" / "gpus.json"
    return parse_rows(json.loads(path.read_text(encoding="utf-8")))


@functools.cache
def _index() -> dict[str, Gpu]:
    return {token: gpu for gpu in load_catalog() for token in _tokens(gpu)}


def _unique(gpus: list[Gpu]) -> list[Gpu]:
    return list({g.key: g for g in gpus}.values())


def _match(query: str) -> list[Gpu]:
    """Exact key/alias/name first, else every row with ``query`` inside a token."""
    index = _index()
    if query in index:
        return [index[query]]
    return _unique([gpu for token, gpu in index.items() if query in token])


def _suggest(query: str, matches: list[Gpu] | None = None) -> str:
    """``did you mean`` text: the ambiguous matches if given, else the closest names."""
    index = _index()
    if matches:
        keys = [g.key for g in matches[:8]]
    else:
        close = difflib.get_close_matches(query, list(index), n=10, cutoff=0.5)
        keys = [g.key for g in _unique([index[t] for t in close])][:5]
    if not keys:
        return "vramplan gpus lists all, or give --vram 24GiB"
    return f"did you mean: {', '.join(keys)}? (vramplan gpus lists all)"


_SIZE = re.compile(r"\b(\d+)\s*gb\b|\b(hbm|gddr)\w*")


def get_gpu(name: str) -> Gpu:
    """Find a catalog GPU by key, alias or name, forgiving case, spaces, dashes and the words
    NVIDIA/GeForce. A unique substring also works ("4090", "h100 sxm"); a memory size in the
    name ("rtx 3090 24gb") is accepted when it matches the card. Raises :class:`UnknownGpuError`.
    """
    query = _norm(name)
    if not query:
        raise UnknownGpuError("--gpu", f"unknown GPU {name!r}", _suggest(name.lower()))
    found = _match(query)
    if not found and _SIZE.search(name.lower()):
        sizes = {int(s) for s in re.findall(r"\b(\d+)\s*gb\b", name.lower())}
        stripped = _norm(_SIZE.sub(" ", name.lower()))
        found = [
            g for g in (_match(stripped) if stripped else [])
            if all(s in (round(g.memory_bytes / 2**30), round(g.memory_bytes / 10**9))
                   for s in sizes)
        ]
    if len(found) == 1:
        return found[0]
    if found:
        raise UnknownGpuError("--gpu", f"ambiguous GPU {name!r} ({len(found)} matches)",
                              _suggest(query, found))
    raise UnknownGpuError("--gpu", f"unknown GPU {name!r}", _suggest(query))


def search_gpus(query: str | None = None) -> list[Gpu]:
    """Rows whose key, name, alias, vendor or memory type contain ``query`` (all if empty)."""
    catalog = list(load_catalog())
    if not query or not query.strip():
        return catalog
    raw = query.strip().lower()
    if raw in VENDORS:
        return [g for g in catalog if g.vendor == raw]
    q = _norm(query) or re.sub(r"[^a-z0-9]", "", raw)
    return [g for g in catalog
            if any(q in t for t in _tokens(g)) or q in _norm(g.memory_type) or q == g.vendor]


def custom_gpu(vram_bytes: int, name: str = "custom") -> Gpu:
    """A GPU known only by its memory (``--vram 24GiB``): bandwidth and TFLOPS are 0 (unknown),
    and the given size is taken as both the capacity and what the runtime reports."""
    if isinstance(vram_bytes, bool) or not isinstance(vram_bytes, int) or vram_bytes <= 0:
        raise InputError("--vram", f"memory must be a positive byte count, got {vram_bytes!r}",
                         "write it like 24GiB or 80GB")
    return Gpu(
        key="custom", name=name, vendor="custom", memory_bytes=vram_bytes,
        memory_reported_bytes=vram_bytes, memory_type="unknown", bandwidth_bytes_per_s=0,
        bf16_dense_tflops=0.0, source="user input (--vram)",
        reported_source="given by --vram", assumption="only the memory size is known",
    )
