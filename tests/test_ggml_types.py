"""GGML type table: block geometry against the gguf package and against ggml-common.h."""

from __future__ import annotations

import pytest
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from vramplan.errors import InputError
from vramplan.quant.ggml_types import (
    GGML_TYPES,
    GgmlType,
    bits_per_weight,
    ggml_type,
    is_quantized,
    row_bytes,
    tensor_bytes,
)

# gguf-py still sizes Q8_1 with the old two-float header (4 + 4 + 32 = 40); ggml-common.h has
# used two halves since early 2024 (static_assert: 2 * sizeof(ggml_half) + QK8_1 = 36). Q8_1 is an
# activation-only type that never appears in GGUF files, so the stale entry is harmless.
_KNOWN_GGUF_PY_DIFFERENCES = {"Q8_1": (32, 40)}


def test_matches_gguf_package_for_every_shared_type() -> None:
    ours = {t.name: t for t in GGML_TYPES}
    shared = 0
    for qt, (blk, size) in GGML_QUANT_SIZES.items():
        if qt.name not in ours:
            continue
        shared += 1
        t = ours[qt.name]
        assert t.type_id == int(qt), qt.name
        allowed = {(t.block_elems, t.block_bytes), _KNOWN_GGUF_PY_DIFFERENCES.get(qt.name)}
        assert (blk, size) in allowed, qt.name
    assert shared >= 33


def test_every_type_the_gguf_package_knows_is_in_the_table() -> None:
    ours = {t.name for t in GGML_TYPES}
    missing = [qt.name for qt in GGMLQuantizationType if qt.name not in ours]
    assert not missing, f"add these GGML types to ggml_types.py: {missing}"


def test_names_and_ids_are_unique() -> None:
    assert len({t.name for t in GGML_TYPES}) == len(GGML_TYPES)
    assert len({t.type_id for t in GGML_TYPES}) == len(GGML_TYPES)


@pytest.mark.parametrize(
    ("name", "elems", "nbytes", "bpw"),
    [
        ("Q4_0", 32, 18, 4.5), ("Q4_1", 32, 20, 5.0), ("Q5_0", 32, 22, 5.5),
        ("Q5_1", 32, 24, 6.0), ("Q8_0", 32, 34, 8.5), ("Q8_1", 32, 36, 9.0),
        ("Q2_K", 256, 84, 2.625), ("Q3_K", 256, 110, 3.4375), ("Q4_K", 256, 144, 4.5),
        ("Q5_K", 256, 176, 5.5), ("Q6_K", 256, 210, 6.5625), ("Q8_K", 256, 292, 9.125),
        ("IQ1_S", 256, 50, 1.5625), ("IQ1_M", 256, 56, 1.75), ("IQ2_XXS", 256, 66, 2.0625),
        ("IQ2_XS", 256, 74, 2.3125), ("IQ2_S", 256, 82, 2.5625), ("IQ3_XXS", 256, 98, 3.0625),
        ("IQ3_S", 256, 110, 3.4375), ("IQ4_NL", 32, 18, 4.5), ("IQ4_XS", 256, 136, 4.25),
        ("TQ1_0", 256, 54, 1.6875), ("TQ2_0", 256, 66, 2.0625), ("MXFP4", 32, 17, 4.25),
        ("NVFP4", 64, 36, 4.5), ("Q1_0", 128, 18, 1.125), ("Q2_0", 64, 18, 2.25),
        ("F32", 1, 4, 32.0), ("F16", 1, 2, 16.0), ("BF16", 1, 2, 16.0), ("F64", 1, 8, 64.0),
        ("I8", 1, 1, 8.0), ("I16", 1, 2, 16.0), ("I32", 1, 4, 32.0), ("I64", 1, 8, 64.0),
    ],
)
def test_block_structs(name: str, elems: int, nbytes: int, bpw: float) -> None:
    t = ggml_type(name)
    assert (t.block_elems, t.block_bytes) == (elems, nbytes)
    assert bits_per_weight(name) == bpw
    assert t.bits_per_weight == bpw


def test_lookup_forms() -> None:
    q4k = ggml_type("Q4_K")
    assert ggml_type("q4_k") is q4k
    assert ggml_type("GGML_TYPE_Q4_K") is q4k
    assert ggml_type(12) is q4k
    assert ggml_type(q4k) is q4k
    assert ggml_type(int(GGMLQuantizationType.MXFP4)).name == "MXFP4"
    for bad in ("Q4_K_M", "fp8", 4, 31, 99, True):
        with pytest.raises(InputError):
            ggml_type(bad)


def test_is_quantized() -> None:
    assert not any(is_quantized(n) for n in ("F32", "F16", "BF16", "F64", "I8", "I32"))
    assert all(is_quantized(n) for n in ("Q4_0", "Q6_K", "IQ2_XXS", "MXFP4", "TQ1_0"))


def test_row_and_tensor_bytes() -> None:
    assert row_bytes("Q4_0", 4096) == 128 * 18
    assert row_bytes("Q6_K", 4096) == 16 * 210
    assert row_bytes("F16", 7) == 14
    assert tensor_bytes("Q4_K", (4096, 14336)) == 14336 * 16 * 144
    assert tensor_bytes("MXFP4", (2880, 2880, 32)) == 2880 * 32 * 90 * 17
    assert tensor_bytes("F32", (4096,)) == 4 * 4096
    assert tensor_bytes("F32", ()) == 4
    assert tensor_bytes("Q8_0", (64, 0)) == 0
    with pytest.raises(InputError):
        row_bytes("Q4_K", 4000)  # not a multiple of 256
    with pytest.raises(InputError):
        tensor_bytes("Q8_0", (100, 3))
    with pytest.raises(InputError):
        row_bytes("F16", -1)


def test_row_is_the_first_dimension() -> None:
    # ne[0] is the row: (256, 3) has 3 rows of one Q4_K block; (3, 256) does not fit blocks
    assert tensor_bytes("Q4_K", (256, 3)) == 3 * 144
    with pytest.raises(InputError):
        tensor_bytes("Q4_K", (3, 256))


def test_dataclass_is_frozen() -> None:
    t = ggml_type("Q8_0")
    assert isinstance(t, GgmlType)
    with pytest.raises(AttributeError):
        t.block_bytes = 1  # type: ignore[misc]
