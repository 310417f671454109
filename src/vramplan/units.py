"""Units: the only place where byte counts are converted or parsed.

Inside vramplan every quantity of memory is an ``int`` of bytes; names carry the unit
(``weights_bytes``, ``context_tokens``). GB is 10**9 bytes (marketing figures), GiB is 2**30
(what CUDA, vLLM and llama.cpp print).
"""

from __future__ import annotations

import re

from vramplan.errors import InputError

KIB = 2**10
MIB = 2**20
GIB = 2**30
TIB = 2**40
KB = 10**3
MB = 10**6
GB = 10**9
TB = 10**12

_SUFFIX = {
    "": 1,
    "b": 1,
    "k": KB,
    "kb": KB,
    "kib": KIB,
    "m": MB,
    "mb": MB,
    "mib": MIB,
    "g": GB,
    "gb": GB,
    "gib": GIB,
    "t": TB,
    "tb": TB,
    "tib": TIB,
}

_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_bytes(text: str, field: str = "size") -> int:
    """Parse ``24GiB``, ``80GB``, ``512MiB`` or a plain byte count into integer bytes.

    ``G``/``GB`` are decimal (10**9), ``GiB`` binary (2**30), as on spec sheets and in engine logs.
    """
    m = _SIZE_RE.match(text)
    if not m:
        raise InputError(field, f"cannot read size {text!r}", "write it like 24GiB, 80GB or 512MiB")
    number, suffix = m.groups()
    mult = _SUFFIX.get(suffix.lower())
    if mult is None:
        raise InputError(field, f"unknown unit {suffix!r}", "use B, MB, MiB, GB, GiB, TB or TiB")
    value = int(float(number) * mult)
    if value <= 0:
        raise InputError(field, f"size must be positive, got {text!r}", "give a size above zero")
    return value


def parse_tokens(text: str | int, field: str = "context") -> int:
    """Parse a token count: ``8192``, ``32k`` (=32768), ``128K``, ``1M`` (=1048576)."""
    if isinstance(text, int):
        return text
    s = text.strip().lower().replace("_", "").replace(",", "")
    mult = 1
    if s.endswith("k"):
        mult, s = 1024, s[:-1]
    elif s.endswith("m"):
        mult, s = 1024 * 1024, s[:-1]
    try:
        return int(float(s) * mult)
    except ValueError:
        raise InputError(field, f"cannot read token count {text!r}", "write it like 8192 or 32k") from None


def gib(n_bytes: int | float) -> float:
    """Bytes to GiB (2**30) as a float, for display only."""
    return n_bytes / GIB


def fmt_bytes(n_bytes: int | float, binary: bool = True) -> str:
    """Human form: ``123.45 GiB`` (binary) or ``132.5 GB`` (decimal)."""
    units = (("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)) if binary else (
        ("TB", TB), ("GB", GB), ("MB", MB), ("kB", KB))
    sign = "-" if n_bytes < 0 else ""
    v = abs(n_bytes)
    for name, size in units:
        if v >= size:
            return f"{sign}{v / size:.2f} {name}"
    return f"{sign}{int(v)} B"


def fmt_count(n: int) -> str:
    """Parameter counts: ``235.09B``, ``8.03B``, ``596.05M``."""
    for name, size in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{name}"
    return str(n)
