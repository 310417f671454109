"""Read the header of a GGUF file: metadata needed for memory planning and the tensor table.

Two ways in, one result (:class:`GgufHeader`):

* :func:`read_gguf_header` memory-maps a local file (only the header pages are touched). With
  ``backend="gguf"`` it uses the ``gguf`` package's ``GGUFReader``; if that fails (for example on
  a GGML type newer than the installed ``gguf`` package) the pure parser runs over the same file
  and reports what is wrong. The default ``backend="pure"`` runs the parser below directly:
  GGUFReader builds numpy views for every tokenizer string and takes about 25 s on a header with a
  152k-token vocabulary and 280k merges, against about 0.6 s here. Both give equal results.
* :func:`parse_gguf_header_bytes` is a bounded pure-Python parser of GGUF v2/v3 that works on a
  *prefix* of the file, for HTTP range reads from the Hub: when the prefix ends inside the header
  it raises :class:`NeedMoreBytes` with the prefix length needed so far; fetch that many bytes (or
  more) and call again.

GGUF layout (little-endian unless the version reads byte-swapped): magic ``GGUF``; u32 version;
u64 tensor count; u64 key/value count; the key/values (string key, u32 value type, value, where a
string is u64 length + UTF-8 bytes and an array is u32 element type + u64 count + elements);
the tensor infos (string name, u32 n_dims, n_dims x u64 ``ne``, u32 GGML type, u64 offset
relative to the data section); padding to ``general.alignment`` (default 32); tensor data.

The pure parser never trusts a length: every count is capped (tensors, key/values, string bytes,
array elements) and checked against the bytes actually present before anything is read or
allocated, so corrupt or hostile input ends in :class:`~vramplan.errors.HeaderError` (or
:class:`NeedMoreBytes`, a subclass) and never in another exception or a large allocation.

Big arrays (the tokenizer's tokens, scores, token types and merges, or any array over
``MAX_KEPT_ARRAY`` elements) are not kept: only their lengths, in ``GgufHeader.array_lengths``.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from vramplan.errors import HeaderError, InputError
from vramplan.quant.ggml_types import ggml_type, tensor_bytes

__all__ = [
    "GgufHeader",
    "GgufTensor",
    "MetaValue",
    "NeedMoreBytes",
    "parse_gguf_header_bytes",
    "read_gguf_header",
]

Scalar: TypeAlias = str | int | float | bool
MetaValue: TypeAlias = Scalar | tuple[Scalar, ...]

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_TENSORS = 1_000_000
MAX_KV = 100_000
MAX_STRING_BYTES = 64 * 2**20
MAX_ARRAY_LEN = 2**28
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_KEPT_ARRAY = 1024
_DROPPED_ARRAYS = frozenset({"tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                             "tokenizer.ggml.token_type", "tokenizer.ggml.merges"})
_WHERE = "GGUF header"
# value type id -> struct code (8 = string, 9 = array are handled apart)
_SCALAR_FMT = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q",
               11: "q", 12: "d"}


class NeedMoreBytes(HeaderError):
    """The prefix ends inside the header; ``required`` is the prefix length needed so far.

    ``required`` is a lower bound (a string array is only walked as far as the bytes go), so a
    reader over the network should fetch ``suggested`` bytes (at least double the prefix).
    """

    def __init__(self, required: int, have: int) -> None:
        self.required = required
        self.have = have
        self.suggested = max(required, 2 * have)
        super().__init__(_WHERE, f"the first {have} bytes end inside the header "
                         f"(at least {required} needed)", "read a longer prefix of the file")


@dataclass(frozen=True, slots=True)
class GgufTensor:
    """One tensor: ggml shape ``shape_ne`` (``ne[0]`` = row length first), absolute data offset."""

    name: str
    ggml_type_name: str
    shape_ne: tuple[int, ...]
    n_bytes: int
    offset: int


@dataclass(frozen=True, slots=True)
class GgufHeader:
    """What vramplan needs from a GGUF header. Absent keys are None.

    ``n_head``/``n_head_kv``/``n_ff`` are tuples when the file stores them per layer.
    ``key_length``/``value_length`` fall back to ``n_embd // n_head`` as llama.cpp does.
    ``file_bytes`` is the real file size when known, else the end of the last tensor's data.
    """

    version: int
    arch: str
    metadata: dict[str, MetaValue]
    array_lengths: dict[str, int]
    tensors: tuple[GgufTensor, ...]
    alignment: int
    data_offset: int
    file_bytes: int
    name: str | None = None
    file_type: int | None = None
    n_layer: int | None = None
    n_embd: int | None = None
    n_head: int | tuple[int, ...] | None = None
    n_head_kv: int | tuple[int, ...] | None = None
    key_length: int | None = None
    value_length: int | None = None
    n_ctx_train: int | None = None
    n_vocab: int | None = None
    n_ff: int | tuple[int, ...] | None = None
    n_ff_exp: int | None = None
    expert_count: int | None = None
    expert_used_count: int | None = None
    expert_shared_count: int | None = None
    leading_dense_block_count: int | None = None
    sliding_window: int | None = None
    sliding_window_pattern: MetaValue | None = None
    kv_lora_rank: int | None = None
    q_lora_rank: int | None = None
    key_length_mla: int | None = None
    value_length_mla: int | None = None
    rope_dim: int | None = None
    rope_dim_swa: int | None = None
    key_length_swa: int | None = None
    value_length_swa: int | None = None
    nextn_predict_layers: int | None = None
    ssm_conv_kernel: int | None = None
    ssm_inner_size: int | None = None
    ssm_state_size: int | None = None
    ssm_group_count: int | None = None
    split_count: int | None = None

    @property
    def tensor_bytes(self) -> int:
        """Sum of all tensor data (no alignment padding)."""
        return sum(t.n_bytes for t in self.tensors)

    def type_counts(self) -> dict[str, int]:
        """GGML type name -> number of tensors stored in it."""
        return dict(Counter(t.ggml_type_name for t in self.tensors))


# --- the pure parser -------------------------------------------------------------------------


def _bad(what: str, fix: str = "the file is corrupt or not a GGUF file; download it again") -> (
        HeaderError):
    return HeaderError(_WHERE, what, fix)


class _Cursor:
    def __init__(self, data: Any, file_size: int | None, endian: str = "<") -> None:
        self.data = data
        self.have = len(data)
        self.file_size = file_size
        self.pos = 0
        self.endian = endian

    def need(self, n: int) -> None:
        end = self.pos + n
        if end <= self.have:
            return
        if self.file_size is not None and end > self.file_size:
            raise _bad(f"file ends at byte {self.file_size} but the header needs {end}",
                       "the file is truncated; download it again")
        raise NeedMoreBytes(end, self.have)

    def scalar(self, code: str) -> Any:
        size = struct.calcsize(code)
        self.need(size)
        (value,) = struct.unpack_from(self.endian + code, self.data, self.pos)
        self.pos += size
        return value

    def u32(self) -> int:
        return int(self.scalar("I"))

    def u64(self) -> int:
        return int(self.scalar("Q"))

    def raw_string(self, what: str) -> bytes:
        n = self.u64()
        if n > MAX_STRING_BYTES:
            raise _bad(f"{what} claims {n} bytes (limit {MAX_STRING_BYTES})")
        self.need(n)
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return out

    def skip_string(self, what: str) -> None:
        n = self.u64()
        if n > MAX_STRING_BYTES:
            raise _bad(f"{what} claims {n} bytes (limit {MAX_STRING_BYTES})")
        self.need(n)
        self.pos += n


def _read_value(cur: _Cursor, vtype: int, key: str) -> tuple[MetaValue | None, int | None]:
    """(value, None) for kept values; (None, length) for arrays that are only counted."""
    if vtype in _SCALAR_FMT:
        return cur.scalar(_SCALAR_FMT[vtype]), None
    if vtype == 8:
        return cur.raw_string(f"value of {key}").decode("utf-8", "replace"), None
    if vtype != 9:
        raise _bad(f"key {key} has unknown value type {vtype}")
    etype = cur.u32()
    count = cur.u64()
    if count > MAX_ARRAY_LEN:
        raise _bad(f"array {key} claims {count} elements (limit {MAX_ARRAY_LEN})")
    keep = count <= MAX_KEPT_ARRAY and key not in _DROPPED_ARRAYS
    if etype in _SCALAR_FMT:
        code = _SCALAR_FMT[etype]
        size = struct.calcsize(code) * count
        cur.need(size)
        if keep:
            values = struct.unpack_from(f"{cur.endian}{count}{code}", cur.data, cur.pos)
            cur.pos += size
            return tuple(values), None
        cur.pos += size
        return None, count
    if etype == 8:
        cur.need(8 * count)  # every string has at least its 8-byte length
        if keep:
            return tuple(cur.raw_string(f"element of {key}").decode("utf-8", "replace")
                         for _ in range(count)), None
        for _ in range(count):
            cur.skip_string(f"element of {key}")
        return None, count
    raise _bad(f"array {key} has unsupported element type {etype}")


def parse_gguf_header_bytes(data: bytes | bytearray | memoryview | mmap.mmap,
                            file_size: int | None = None) -> GgufHeader:
    """Parse a GGUF header from ``data``, which may be only a prefix of the file.

    ``file_size`` is the full file size if known (then a short file is reported as truncated
    instead of raising :class:`NeedMoreBytes`, and tensor data is checked to lie inside it).
    """
    cur = _Cursor(data, file_size)
    cur.need(4)
    if bytes(data[0:4]) != GGUF_MAGIC:
        raise _bad("the file does not start with the GGUF magic",
                   "this is not a GGUF file (is it safetensors or a partial download?)")
    cur.pos = 4
    version = cur.u32()
    if version & 0xFFFF == 0 and version != 0:  # written on a big-endian machine
        cur.endian = ">"
        version = struct.unpack(">I", struct.pack("<I", version))[0]
    if version == 1:
        raise _bad("GGUF version 1 is not supported", "convert the model again with llama.cpp")
    if version not in (2, 3):
        raise _bad(f"unknown GGUF version {version}", "update vramplan or check the file")
    n_tensors, n_kv = cur.u64(), cur.u64()
    if n_tensors > MAX_TENSORS:
        raise _bad(f"tensor count {n_tensors} is over the limit of {MAX_TENSORS}")
    if n_kv > MAX_KV:
        raise _bad(f"key/value count {n_kv} is over the limit of {MAX_KV}")
    metadata: dict[str, MetaValue] = {}
    lengths: dict[str, int] = {}
    for _ in range(n_kv):
        key = _utf8(cur.raw_string("a key"), "a key")
        if key in metadata or key in lengths:
            raise _bad(f"duplicate key {key!r}")
        value, length = _read_value(cur, cur.u32(), key)
        if value is not None:
            metadata[key] = value
        else:
            lengths[key] = length if length is not None else 0
    raw_tensors: list[tuple[str, tuple[int, ...], int, int]] = []
    for _ in range(n_tensors):
        name = _utf8(cur.raw_string("a tensor name"), "a tensor name")
        n_dims = cur.u32()
        if not 1 <= n_dims <= MAX_DIMS:
            raise _bad(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
        ne = tuple(cur.u64() for _ in range(n_dims))
        raw_tensors.append((name, ne, cur.u32(), cur.u64()))
    alignment = _alignment(metadata)
    data_offset = -(-cur.pos // alignment) * alignment
    return _build_header(version, metadata, lengths, raw_tensors, alignment, data_offset,
                         file_size)


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(f"{what} is not valid UTF-8") from None


def _alignment(metadata: Mapping[str, MetaValue]) -> int:
    value = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or (
            value & (value - 1)):
        raise _bad(f"general.alignment {value!r} is not a power of two")
    return value


# --- shared: raw pieces -> GgufHeader ---------------------------------------------------------


def _build_header(version: int, metadata: dict[str, MetaValue], lengths: dict[str, int],
                  raw_tensors: list[tuple[str, tuple[int, ...], int, int]], alignment: int,
                  data_offset: int, file_size: int | None) -> GgufHeader:
    tensors: list[GgufTensor] = []
    seen: set[str] = set()
    for name, ne, type_id, rel_offset in raw_tensors:
        if name in seen:
            raise _bad(f"duplicate tensor {name!r}")
        seen.add(name)
        n_elems = 1
        for d in ne:
            n_elems *= d
        if n_elems >= 2**63:
            raise _bad(f"tensor {name!r} has {n_elems} elements")
        try:
            gt = ggml_type(type_id)
            n_bytes = tensor_bytes(gt, ne)
        except InputError as exc:
            raise _bad(f"tensor {name!r}: {exc.problem}", exc.fix) from None
        if rel_offset % alignment:
            raise _bad(f"tensor {name!r} data offset {rel_offset} is not aligned to {alignment}")
        offset = data_offset + rel_offset
        if file_size is not None and offset + n_bytes > file_size:
            raise _bad(f"tensor {name!r} data ends past the end of the file ({file_size} bytes)",
                       "the file is truncated; download it again")
        tensors.append(GgufTensor(name, gt.name, ne, n_bytes, offset))
    end = max((t.offset + t.n_bytes for t in tensors), default=data_offset)
    arch_v = metadata.get("general.architecture")
    arch = arch_v if isinstance(arch_v, str) else ""

    def num(key: str) -> int | None:
        v = metadata.get(key.format(arch=arch))
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    def num_or_list(key: str) -> int | tuple[int, ...] | None:
        v = metadata.get(key.format(arch=arch))
        if isinstance(v, tuple) and v and all(
                isinstance(x, int) and not isinstance(x, bool) for x in v):
            return tuple(int(x) for x in v)
        return num(key)

    n_embd, n_head = num("{arch}.embedding_length"), num_or_list("{arch}.attention.head_count")
    head0 = n_head[0] if isinstance(n_head, tuple) else n_head
    head_dim = n_embd // head0 if n_embd and head0 else None
    key_length = num("{arch}.attention.key_length") or head_dim
    n_vocab = num("{arch}.vocab_size") or lengths.get("tokenizer.ggml.tokens")
    if n_vocab is None and isinstance(metadata.get("tokenizer.ggml.tokens"), tuple):
        n_vocab = len(metadata["tokenizer.ggml.tokens"])  # type: ignore[arg-type]
    name_v = metadata.get("general.name")
    return GgufHeader(
        version=version, arch=arch, metadata=metadata, array_lengths=lengths,
        tensors=tuple(tensors), alignment=alignment, data_offset=data_offset,
        file_bytes=file_size if file_size is not None else end,
        name=name_v if isinstance(name_v, str) else None,
        file_type=num("general.file_type"),
        n_layer=num("{arch}.block_count"), n_embd=n_embd, n_head=n_head,
        n_head_kv=num_or_list("{arch}.attention.head_count_kv"),
        key_length=key_length,
        value_length=num("{arch}.attention.value_length") or key_length,
        n_ctx_train=num("{arch}.context_length"), n_vocab=n_vocab,
        n_ff=num_or_list("{arch}.feed_forward_length"),
        n_ff_exp=num("{arch}.expert_feed_forward_length"),
        expert_count=num("{arch}.expert_count"),
        expert_used_count=num("{arch}.expert_used_count"),
        expert_shared_count=num("{arch}.expert_shared_count"),
        leading_dense_block_count=num("{arch}.leading_dense_block_count"),
        sliding_window=num("{arch}.attention.sliding_window"),
        sliding_window_pattern=metadata.get(f"{arch}.attention.sliding_window_pattern"),
        kv_lora_rank=num("{arch}.attention.kv_lora_rank"),
        q_lora_rank=num("{arch}.attention.q_lora_rank"),
        key_length_mla=num("{arch}.attention.key_length_mla"),
        value_length_mla=num("{arch}.attention.value_length_mla"),
        rope_dim=num("{arch}.rope.dimension_count"),
        rope_dim_swa=num("{arch}.rope.dimension_count_swa"),
        key_length_swa=num("{arch}.attention.key_length_swa"),
        value_length_swa=num("{arch}.attention.value_length_swa"),
        nextn_predict_layers=num("{arch}.nextn_predict_layers"),
        ssm_conv_kernel=num("{arch}.ssm.conv_kernel"),
        ssm_inner_size=num("{arch}.ssm.inner_size"),
        ssm_state_size=num("{arch}.ssm.state_size"),
        ssm_group_count=num("{arch}.ssm.group_count"),
        split_count=num("split.count"),
    )


# --- the gguf package path -------------------------------------------------------------------


def read_gguf_header(path: str | os.PathLike[str],
                     backend: Literal["pure", "gguf"] = "pure") -> GgufHeader:
    """Read a local GGUF file's header (pure parser, or ``gguf.GGUFReader`` with fallback)."""
    try:
        file_size = os.path.getsize(path)
    except OSError as exc:
        raise HeaderError(_WHERE, f"cannot open {os.fspath(path)!r}: {exc.strerror}",
                          "check the path") from None
    if backend == "gguf":
        try:
            pieces = _read_with_gguf(path)
        except Exception:  # any failure of the gguf package: let the bounded parser explain it
            pieces = None
        if pieces is not None:
            version, metadata, lengths, raw, alignment, data_offset = pieces
            return _build_header(version, _checked(metadata), lengths, raw, alignment,
                                 data_offset, file_size)
    if file_size == 0:
        raise _bad("the file is empty", "download it again")
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return parse_gguf_header_bytes(mm, file_size)
    except OSError as exc:
        raise HeaderError(_WHERE, f"cannot read {os.fspath(path)!r}: {exc.strerror}",
                          "check the path and permissions") from None


def _checked(metadata: dict[str, MetaValue]) -> dict[str, MetaValue]:
    _alignment(metadata)
    return metadata


_Pieces = tuple[int, dict[str, MetaValue], dict[str, int],
                list[tuple[str, tuple[int, ...], int, int]], int, int]


def _read_with_gguf(path: str | os.PathLike[str]) -> _Pieces:
    from gguf import GGUFReader, GGUFValueType

    reader = GGUFReader(path, "r")
    version = int(reader.fields["GGUF.version"].parts[0][0])
    metadata: dict[str, MetaValue] = {}
    lengths: dict[str, int] = {}
    for key, fld in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        main = fld.types[0]
        if main == GGUFValueType.ARRAY:
            count = len(fld.data)
            if count > MAX_KEPT_ARRAY or key in _DROPPED_ARRAYS:
                lengths[key] = count
            elif count and fld.types[-1] == GGUFValueType.STRING:
                metadata[key] = tuple(bytes(fld.parts[i]).decode("utf-8", "replace")
                                      for i in fld.data)
            else:
                metadata[key] = tuple(fld.parts[i][0].item() for i in fld.data)
        elif main == GGUFValueType.STRING:
            metadata[key] = bytes(fld.parts[-1]).decode("utf-8", "replace")
        else:
            metadata[key] = fld.parts[-1][0].item()
    data_offset = int(reader.data_offset)
    raw = [(t.name, tuple(int(d) for d in t.shape), int(t.tensor_type),
            int(t.data_offset) - data_offset) for t in reader.tensors]
    return version, metadata, lengths, raw, int(reader.alignment), data_offset
