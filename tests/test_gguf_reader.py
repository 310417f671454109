"""GGUF header reading: gguf-package path vs bounded pure parser, prefixes, corruption, fuzz."""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any, Literal

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vramplan.errors import HeaderError
from vramplan.model.gguf_reader import (
    MAX_ARRAY_LEN,
    MAX_STRING_BYTES,
    MAX_TENSORS,
    GgufHeader,
    NeedMoreBytes,
    parse_gguf_header_bytes,
    read_gguf_header,
)
from vramplan.quant.ggml_types import tensor_bytes

Q = gguf.GGMLQuantizationType
N_EMBD = 256
N_VOCAB = 300

# name -> (GGML type, ggml ne)
TENSORS: dict[str, tuple[Q, tuple[int, ...]]] = {
    "token_embd.weight": (Q.Q4_K, (N_EMBD, N_VOCAB)),
    "output.weight": (Q.Q6_K, (N_EMBD, N_VOCAB)),
    "output_norm.weight": (Q.F32, (N_EMBD,)),
    "blk.0.attn_norm.weight": (Q.F32, (N_EMBD,)),
    "blk.0.attn_q.weight": (Q.Q4_0, (N_EMBD, N_EMBD)),
    "blk.0.attn_k.weight": (Q.Q8_0, (N_EMBD, 128)),
    "blk.0.attn_v.weight": (Q.F16, (N_EMBD, 128)),
    "blk.0.attn_output.weight": (Q.IQ4_XS, (N_EMBD, N_EMBD)),
    "blk.0.ffn_gate_exps.weight": (Q.MXFP4, (N_EMBD, 64, 4)),
    "blk.0.ffn_down.weight": (Q.BF16, (512, N_EMBD)),
    "blk.0.ffn_up.weight": (Q.Q5_K, (N_EMBD, 512)),
}


def _tensor_data(qtype: Q, ne: tuple[int, ...]) -> np.ndarray[Any, Any]:
    rows = list(reversed(ne[1:]))
    if qtype == Q.F32:
        return np.arange(int(np.prod(ne)), dtype=np.float32).reshape(*rows, ne[0])
    if qtype == Q.F16:
        return np.ones((*rows, ne[0]), dtype=np.float16)
    nbytes_row = tensor_bytes(qtype.name, (ne[0],))
    return np.full((*rows, nbytes_row), 7, dtype=np.uint8)


def write_model(path: Path, endian: gguf.GGUFEndian = gguf.GGUFEndian.LITTLE) -> Path:
    w = gguf.GGUFWriter(path, "llama", endianess=endian)
    w.add_name("tiny test model")
    w.add_file_type(15)
    w.add_block_count(1)
    w.add_context_length(8192)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(512)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_dimension_count(64)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_expert_count(4)
    w.add_expert_used_count(2)
    w.add_sliding_window(4096)
    w.add_bool("test.flag", True)
    w.add_int8("test.i8", -3)
    w.add_uint64("test.u64", 2**40 + 5)
    w.add_float64("test.f64", 0.125)
    w.add_array("test.short_ints", [1, 2, 3])
    w.add_array("test.short_strs", ["a", "bé", ""])
    w.add_array("test.long_ints", list(range(5000)))
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"tok{i}" for i in range(N_VOCAB)])
    w.add_token_scores([float(i) for i in range(N_VOCAB)])
    w.add_token_types([1] * N_VOCAB)
    w.add_token_merges([f"t o{i}" for i in range(50)])
    w.add_string("tokenizer.chat_template", "{{ messages }}")
    for name, (qtype, ne) in TENSORS.items():
        data = _tensor_data(qtype, ne)
        raw = qtype if qtype not in (Q.F32, Q.F16) else None
        w.add_tensor(name, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="module")
def model_bytes(model_file: Path) -> bytes:
    return model_file.read_bytes()


BACKENDS = pytest.mark.parametrize("backend", ["pure", "gguf"])


@BACKENDS
def test_reader_fields(model_file: Path, backend: Literal["pure", "gguf"]) -> None:
    h = read_gguf_header(model_file, backend)
    assert h.version == 3 and h.arch == "llama" and h.name == "tiny test model"
    assert (h.n_layer, h.n_embd, h.n_head, h.n_head_kv) == (1, N_EMBD, 4, 2)
    assert (h.key_length, h.value_length) == (64, 64)  # n_embd / n_head default
    assert (h.n_ctx_train, h.n_ff, h.rope_dim, h.file_type) == (8192, 512, 64, 15)
    assert (h.expert_count, h.expert_used_count, h.sliding_window) == (4, 2, 4096)
    assert h.n_vocab == N_VOCAB  # from the token list length
    assert h.kv_lora_rank is None and h.split_count is None
    md = h.metadata
    assert md["test.flag"] is True and md["test.i8"] == -3 and md["test.u64"] == 2**40 + 5
    assert md["test.f64"] == 0.125
    assert md["test.short_ints"] == (1, 2, 3) and md["test.short_strs"] == ("a", "bé", "")
    assert md["tokenizer.chat_template"] == "{{ messages }}"
    assert isinstance(md["llama.attention.layer_norm_rms_epsilon"], float)
    for big in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
                "tokenizer.ggml.merges", "test.long_ints"):
        assert big not in md
    assert h.array_lengths == {"tokenizer.ggml.tokens": N_VOCAB, "tokenizer.ggml.scores": N_VOCAB,
                               "tokenizer.ggml.token_type": N_VOCAB,
                               "tokenizer.ggml.merges": 50, "test.long_ints": 5000}
    assert h.file_bytes == model_file.stat().st_size
    assert h.alignment == 32 and h.data_offset % 32 == 0


@BACKENDS
def test_tensors_agree_with_gguf_reader(model_file: Path,
                                        backend: Literal["pure", "gguf"]) -> None:
    h = read_gguf_header(model_file, backend)
    ref = gguf.GGUFReader(model_file)
    assert [t.name for t in h.tensors] == [t.name for t in ref.tensors]
    for ours, theirs in zip(h.tensors, ref.tensors, strict=True):
        qtype, ne = TENSORS[ours.name]
        assert ours.ggml_type_name == qtype.name and ours.shape_ne == ne
        assert ours.offset == theirs.data_offset
        assert ours.n_bytes == theirs.n_bytes == tensor_bytes(qtype.name, ne)
    assert h.tensor_bytes == sum(t.n_bytes for t in ref.tensors)
    assert h.type_counts()["F32"] == 2
    assert h.tensors[-1].offset + h.tensors[-1].n_bytes <= h.file_bytes


def test_pure_parser_agrees_with_reader(model_file: Path, model_bytes: bytes) -> None:
    via_gguf = read_gguf_header(model_file, "gguf")
    assert parse_gguf_header_bytes(model_bytes, len(model_bytes)) == via_gguf
    assert read_gguf_header(model_file, "pure") == via_gguf


def test_big_endian_file(tmp_path: Path) -> None:
    path = write_model(tmp_path / "be.gguf", gguf.GGUFEndian.BIG)
    h = read_gguf_header(path, "gguf")
    assert h.n_embd == N_EMBD and h.metadata["test.short_ints"] == (1, 2, 3)
    assert read_gguf_header(path) == h
    data = path.read_bytes()
    assert parse_gguf_header_bytes(data, len(data)) == h


def test_prefix_reads_converge(model_bytes: bytes) -> None:
    full = parse_gguf_header_bytes(model_bytes, len(model_bytes))
    size, rounds = 16, 0
    while True:
        rounds += 1
        try:
            h = parse_gguf_header_bytes(model_bytes[:size])
            break
        except NeedMoreBytes as exc:
            assert exc.required > size and exc.have == size
            size = exc.required
    assert size <= full.data_offset and rounds < 5000
    size, doubling_rounds = 16, 0
    while True:  # what a Hub range reader does: fetch ``suggested`` bytes each time
        doubling_rounds += 1
        try:
            parse_gguf_header_bytes(model_bytes[:size])
            break
        except NeedMoreBytes as exc:
            assert exc.suggested >= exc.required
            size = exc.suggested
    assert doubling_rounds <= 16
    assert h.tensors == full.tensors and h.metadata == full.metadata
    # without the file size the end of the last tensor stands in for it
    assert h.file_bytes == full.tensors[-1].offset + full.tensors[-1].n_bytes


@BACKENDS
def test_truncated_and_foreign_files(tmp_path: Path, model_bytes: bytes,
                                     backend: Literal["pure", "gguf"]) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(model_bytes[: len(model_bytes) // 2])  # header intact, data cut
    with pytest.raises(HeaderError, match="truncated"):
        read_gguf_header(cut, backend)
    cut.write_bytes(model_bytes[:100])  # header cut
    with pytest.raises(HeaderError) as info:
        read_gguf_header(cut, backend)
    assert not isinstance(info.value, NeedMoreBytes) and "truncated" in str(info.value)
    other = tmp_path / "model.safetensors"
    other.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}" + b" " * 64)
    with pytest.raises(HeaderError, match="not a GGUF"):
        read_gguf_header(other, backend)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(HeaderError, match="empty"):
        read_gguf_header(empty, backend)
    with pytest.raises(HeaderError, match="cannot open"):
        read_gguf_header(tmp_path / "missing.gguf", backend)


# --- crafted headers --------------------------------------------------------------------------


def _s(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def mini_gguf(kvs: list[bytes], tensors: list[tuple[str, tuple[int, ...], int, int]],
              version: int = 3, n_tensors: int | None = None, n_kv: int | None = None) -> bytes:
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                                len(kvs) if n_kv is None else n_kv)
    out += b"".join(kvs)
    for name, ne, type_id, offset in tensors:
        out += _s(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
        out += struct.pack("<IQ", type_id, offset)
    return out


def kv_str(key: str, value: str) -> bytes:
    return _s(key) + struct.pack("<I", 8) + _s(value)


def kv_u32(key: str, value: int) -> bytes:
    return _s(key) + struct.pack("<II", 4, value)


ARCH = kv_str("general.architecture", "llama")


def test_type_newer_than_gguf_package(tmp_path: Path) -> None:
    # GGML type 42 (Q2_0) is unknown to gguf 0.19's enum: the fallback parser reads it
    head = mini_gguf([ARCH, kv_u32("llama.block_count", 1)], [("blk.0.attn_q.weight",
                                                               (64, 2), 42, 0)])
    pad = -len(head) % 32
    path = tmp_path / "q2_0.gguf"
    path.write_bytes(head + b"\0" * pad + b"\1" * 36)
    h = read_gguf_header(path, "gguf")
    assert h.tensors[0].ggml_type_name == "Q2_0" and h.tensors[0].n_bytes == 36
    assert read_gguf_header(path) == h
    bad = mini_gguf([ARCH], [("w", (64, 2), 77, 0)])
    with pytest.raises(HeaderError, match="unknown type id 77"):
        parse_gguf_header_bytes(bad)


@pytest.mark.parametrize(("data", "message"), [
    (mini_gguf([], [], version=1), "version 1"),
    (mini_gguf([], [], version=9), "unknown GGUF version"),
    (mini_gguf([], [], n_tensors=MAX_TENSORS + 1), "tensor count"),
    (mini_gguf([], [], n_kv=2**40), "key/value count"),
    (mini_gguf([struct.pack("<Q", MAX_STRING_BYTES + 1)], []), "claims"),
    (mini_gguf([_s("k") + struct.pack("<IIQ", 9, 4, MAX_ARRAY_LEN + 1)], []), "claims"),
    (mini_gguf([_s("k") + struct.pack("<II", 99, 0)], []), "unknown value type"),
    (mini_gguf([_s("k") + struct.pack("<IIQ", 9, 9, 1)], []), "unsupported element type"),
    (mini_gguf([ARCH, ARCH], []), "duplicate key"),
    (mini_gguf([_s(b"\xff\xfe") + struct.pack("<II", 4, 1)], []), "UTF-8"),
    (mini_gguf([kv_u32("general.alignment", 48)], []), "power of two"),
    (mini_gguf([ARCH], [("w", (32,), 0, 0), ("w", (32,), 0, 128)]), "duplicate tensor"),
    (mini_gguf([ARCH], [("w", (32, 1, 1, 1, 1), 0, 0)]), "dimensions"),
    (mini_gguf([ARCH], [("w", (100, 2), 8, 0)]), "not a multiple"),
    (mini_gguf([ARCH], [("w", (2**62, 2**62), 0, 0)]), "elements"),
    (mini_gguf([ARCH], [("w", (32,), 0, 5)]), "not aligned"),
])
def test_corrupt_headers(data: bytes, message: str) -> None:
    with pytest.raises(HeaderError, match=message) as info:
        parse_gguf_header_bytes(data)
    assert not isinstance(info.value, NeedMoreBytes)
    assert "\n" not in str(info.value)


def test_lengths_beyond_the_prefix_ask_for_more() -> None:
    # a legal array length that the prefix cannot hold yet: more bytes, not an error
    data = mini_gguf([_s("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 150_000)], [])
    with pytest.raises(NeedMoreBytes) as info:
        parse_gguf_header_bytes(data)
    assert info.value.required >= len(data) + 8 * 150_000 - 1
    # with the file size known, the same thing is a truncated file
    with pytest.raises(HeaderError, match="truncated"):
        parse_gguf_header_bytes(data, file_size=len(data))
    with pytest.raises(NeedMoreBytes):
        parse_gguf_header_bytes(b"GG")


def test_empty_array_and_missing_arch() -> None:
    data = mini_gguf([_s("x.empty") + struct.pack("<IIQ", 9, 4, 0)], [])
    h = parse_gguf_header_bytes(data)
    assert h.metadata == {"x.empty": ()} and h.arch == "" and h.tensors == ()
    assert isinstance(h, GgufHeader) and h.n_layer is None


def test_per_layer_head_counts() -> None:
    arr = _s("llama.attention.head_count_kv") + struct.pack("<IIQ3I", 9, 4, 3, 8, 0, 8)
    data = mini_gguf([ARCH, kv_u32("llama.attention.head_count", 32), arr,
                      kv_u32("llama.embedding_length", 4096)], [])
    h = parse_gguf_header_bytes(data)
    assert h.n_head == 32 and h.n_head_kv == (8, 0, 8) and h.key_length == 128


# --- fuzzing --------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _parse_or_error(data: bytes, file_size: int | None = None) -> None:
    start = time.perf_counter()
    try:
        h = parse_gguf_header_bytes(data, file_size)
        assert isinstance(h, GgufHeader)
    except HeaderError as exc:  # NeedMoreBytes is a HeaderError
        assert "\n" not in str(exc)
    assert time.perf_counter() - start < 2.0


@FUZZ
@given(st.binary(max_size=512))
def test_fuzz_random_bytes(data: bytes) -> None:
    _parse_or_error(data)
    _parse_or_error(b"GGUF" + data)
    _parse_or_error(b"GGUF\x03\x00\x00\x00" + data, file_size=len(data) + 8)


@FUZZ
@given(st.data())
def test_fuzz_truncations(model_bytes: bytes, data: st.DataObject) -> None:
    header_end = parse_gguf_header_bytes(model_bytes).data_offset
    cut = data.draw(st.integers(min_value=0, max_value=header_end + 64))
    _parse_or_error(model_bytes[:cut])
    _parse_or_error(model_bytes[:cut], file_size=cut)


@FUZZ
@given(st.data())
def test_fuzz_byte_flips(model_bytes: bytes, data: st.DataObject) -> None:
    header_end = parse_gguf_header_bytes(model_bytes).data_offset
    buf = bytearray(model_bytes[:header_end])
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        pos = data.draw(st.integers(min_value=0, max_value=len(buf) - 1))
        buf[pos] = data.draw(st.integers(min_value=0, max_value=255))
    _parse_or_error(bytes(buf))
    _parse_or_error(bytes(buf), file_size=len(model_bytes))
