"""GGML tensor types: block geometry, exact byte counts and derived bits per weight.

Every GGML storage type packs ``block_elems`` consecutive values of one row into a fixed
``block_bytes`` structure (plain types such as F32 are blocks of one element). The numbers below
restate the block structs of ggml (ggml-org/llama.cpp ``ggml/src/ggml-common.h``; type ids from
``ggml/include/ggml.h`` ``enum ggml_type``, which gguf's ``GGMLQuantizationType`` mirrors). The
comment beside each entry lists the struct members that add up to ``block_bytes``
(``half`` = 2 bytes).

Shape convention (the one ggml uses): a shape is given as ``ne`` with ``ne[0]`` first, where
``ne[0]`` is the innermost, contiguous dimension, i.e. the length of one row. A PyTorch weight of
shape ``[out_features, in_features]`` has ggml ``ne = [in_features, out_features]``. Blocks never
cross rows, so ``ne[0]`` must be a multiple of ``block_elems``.

Bits per weight are derived (``8 * block_bytes / block_elems``), never stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vramplan.errors import InputError

__all__ = [
    "GGML_TYPES",
    "GgmlType",
    "bits_per_weight",
    "ggml_type",
    "is_quantized",
    "row_bytes",
    "tensor_bytes",
]

QK_K = 256  # super-block length of the k-quants and i-quants


@dataclass(frozen=True, slots=True)
class GgmlType:
    """One GGML storage type: ``block_elems`` values are stored in ``block_bytes`` bytes."""

    name: str
    type_id: int
    block_elems: int
    block_bytes: int

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.block_bytes / self.block_elems

    @property
    def quantized(self) -> bool:
        """True for block-quantized types (what ggml calls ``ggml_is_quantized``)."""
        return self.name not in _PLAIN


_PLAIN = frozenset({"F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64"})

GGML_TYPES: tuple[GgmlType, ...] = (
    GgmlType("F32", 0, 1, 4),
    GgmlType("F16", 1, 1, 2),
    GgmlType("Q4_0", 2, 32, 2 + 16),  # half d; 32 x 4-bit quants
    GgmlType("Q4_1", 3, 32, 2 + 2 + 16),  # half d, half m; 32 x 4-bit
    GgmlType("Q5_0", 6, 32, 2 + 4 + 16),  # half d; 32 high bits; 32 x low 4 bits
    GgmlType("Q5_1", 7, 32, 2 + 2 + 4 + 16),  # half d, half m; high bits; low nibbles
    GgmlType("Q8_0", 8, 32, 2 + 32),  # half d; 32 x int8
    GgmlType("Q8_1", 9, 32, 2 + 2 + 32),  # half d, half s (sum); 32 x int8
    GgmlType("Q2_K", 10, QK_K, QK_K // 16 + QK_K // 4 + 2 + 2),  # scales; 2-bit qs; d; dmin
    GgmlType("Q3_K", 11, QK_K, QK_K // 8 + QK_K // 4 + 12 + 2),  # hmask; qs; 12 scale bytes; d
    GgmlType("Q4_K", 12, QK_K, 2 + 2 + 12 + QK_K // 2),  # d, dmin; 12 scale bytes; 4-bit qs
    GgmlType("Q5_K", 13, QK_K, 2 + 2 + 12 + QK_K // 8 + QK_K // 2),  # + high-bit plane
    GgmlType("Q6_K", 14, QK_K, QK_K // 2 + QK_K // 4 + QK_K // 16 + 2),  # ql; qh; int8 scales; d
    GgmlType("Q8_K", 15, QK_K, 4 + QK_K + 2 * (QK_K // 16)),  # float d; int8 qs; int16 bsums
    GgmlType("IQ2_XXS", 16, QK_K, 2 + 2 * (QK_K // 8)),  # half d; uint16 qs[QK_K/8]
    GgmlType("IQ2_XS", 17, QK_K, 2 + 2 * (QK_K // 8) + QK_K // 32),  # + 4-bit scales
    GgmlType("IQ3_XXS", 18, QK_K, 2 + 3 * QK_K // 8),  # half d; grid indices + signs/scales
    GgmlType("IQ1_S", 19, QK_K, 2 + QK_K // 8 + 2 * (QK_K // 32)),  # half d; qs; uint16 qh
    GgmlType("IQ4_NL", 20, 32, 2 + 16),  # half d; 32 x 4-bit non-linear indices
    GgmlType("IQ3_S", 21, QK_K, 2 + QK_K // 4 + QK_K // 32 + QK_K // 8 + QK_K // 64),
    GgmlType("IQ2_S", 22, QK_K, 2 + QK_K // 4 + QK_K // 32 + QK_K // 32),  # d; qs; qh; scales
    GgmlType("IQ4_XS", 23, QK_K, 2 + 2 + QK_K // 64 + QK_K // 2),  # d; scales_h; scales_l; qs
    GgmlType("I8", 24, 1, 1),
    GgmlType("I16", 25, 1, 2),
    GgmlType("I32", 26, 1, 4),
    GgmlType("I64", 27, 1, 8),
    GgmlType("F64", 28, 1, 8),
    GgmlType("IQ1_M", 29, QK_K, QK_K // 8 + QK_K // 16 + QK_K // 32),  # qs; qh; scales (no d)
    GgmlType("BF16", 30, 1, 2),
    # ids 31-33 (Q4_0_4_4 ...) and 36-38 (IQ4_NL_4_4 ...) were repacked runtime layouts and are
    # no longer accepted in GGUF files.
    GgmlType("TQ1_0", 34, QK_K, (QK_K - 4 * QK_K // 64) // 5 + QK_K // 64 + 2),  # base-3 packing
    GgmlType("TQ2_0", 35, QK_K, QK_K // 4 + 2),  # 2-bit ternary qs; half d
    GgmlType("MXFP4", 39, 32, 1 + 16),  # one E8M0 shared exponent; 32 x FP4 (E2M1)
    GgmlType("NVFP4", 40, 64, 4 + 32),  # four UE4M3 scales (one per 16); 64 x FP4 (E2M1)
    GgmlType("Q1_0", 41, 128, 2 + 128 // 8),  # half d; 1 sign bit per value
    # Q2_0 in mainline ggml uses 64-value groups; a third-party fork reuses id 42 with 128-value
    # groups, so a Q2_0 file from that fork is not readable by mainline engines.
    GgmlType("Q2_0", 42, 64, 2 + 64 // 4),  # half d; 2-bit codes
)

_BY_NAME: dict[str, GgmlType] = {t.name: t for t in GGML_TYPES}
_BY_ID: dict[int, GgmlType] = {t.type_id: t for t in GGML_TYPES}


def ggml_type(name_or_id: str | int | GgmlType) -> GgmlType:
    """Look a type up by name (case-insensitive, ``q4_k`` or ``GGML_TYPE_Q4_K``) or numeric id."""
    if isinstance(name_or_id, GgmlType):
        return name_or_id
    if isinstance(name_or_id, bool):  # bool is an int: refuse it explicitly
        raise InputError("ggml type", f"{name_or_id!r} is not a type", "give a name like Q4_K")
    if isinstance(name_or_id, int):
        found = _BY_ID.get(name_or_id)
        if found is None:
            raise InputError(
                "ggml type",
                f"unknown type id {name_or_id}",
                "the file may use a type newer than this vramplan; update vramplan",
            )
        return found
    key = str(name_or_id).strip().upper()
    if key.startswith("GGML_TYPE_"):
        key = key[len("GGML_TYPE_"):]
    found = _BY_NAME.get(key)
    if found is None:
        raise InputError(
            "ggml type",
            f"unknown type {name_or_id!r}",
            "use a GGML type name such as F16, Q8_0, Q4_K or IQ4_XS",
        )
    return found


def is_quantized(t: str | int | GgmlType) -> bool:
    """True for block-quantized types, False for F32/F16/BF16/F64 and the integer types."""
    return ggml_type(t).quantized


def row_bytes(t: str | int | GgmlType, n_elems: int) -> int:
    """Exact bytes of one row of ``n_elems`` values (a multiple of the block length)."""
    gt = ggml_type(t)
    if n_elems < 0:
        raise InputError("tensor shape", f"negative row length {n_elems}", "check the shape")
    if n_elems % gt.block_elems:
        raise InputError(
            "tensor shape",
            f"row length {n_elems} is not a multiple of {gt.name}'s block of {gt.block_elems}",
            "use a type whose block divides ne[0] (ggml rows cannot end mid-block)",
        )
    return n_elems // gt.block_elems * gt.block_bytes


def tensor_bytes(t: str | int | GgmlType, shape: Iterable[int]) -> int:
    """Exact bytes of a tensor whose ggml shape is ``shape`` (``ne[0]`` = row length first).

    This is ggml's ``ggml_nbytes`` for a contiguous tensor: ``row_bytes(ne[0])`` times the
    number of rows (the product of ``ne[1:]``). An empty shape is a scalar (one element).
    """
    dims = [int(d) for d in shape]
    if not dims:
        dims = [1]
    n_rows = 1
    for d in dims[1:]:
        if d < 0:
            raise InputError("tensor shape", f"negative dimension in {dims}", "check the shape")
        n_rows *= d
    return row_bytes(t, dims[0]) * n_rows


def bits_per_weight(t: str | int | GgmlType) -> float:
    """Storage bits per value, derived from the block geometry (e.g. Q4_K = 4.5, Q6_K = 6.5625)."""
    return ggml_type(t).bits_per_weight
