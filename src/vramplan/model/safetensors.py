"""safetensors headers: exact tensor names, dtypes and shapes without reading any weights.

Format: 8-byte little-endian header length N, then N bytes of JSON
``{name: {"dtype": "BF16", "shape": [...], "data_offsets": [a, b]}, "__metadata__": {...}}``.
Source: huggingface/safetensors docs (format section). Like hf-mem, bytes come from the header.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from vramplan.errors import HeaderError

# SOURCE: safetensors Dtype enum (safetensors/src/tensor.rs), bytes per element
DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "I16": 16,
              "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "I64": 64,
              "U64": 64, "F64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}
MAX_HEADER_BYTES = 100 * 2**20  # safetensors itself refuses headers above 100 MB


@dataclass(frozen=True, slots=True)
class HeaderTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.ceil(math.prod(self.shape) * DTYPE_BITS[self.dtype] / 8)


def parse_header(header_json: bytes, where: str = "safetensors header") -> list[HeaderTensor]:
    """Parse the JSON part of a safetensors header into tensors (metadata dropped)."""
    try:
        obj = json.loads(header_json)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HeaderError(where, f"is not valid JSON ({exc.__class__.__name__})",
                          "re-download the file; it may be truncated or not safetensors") from None
    if not isinstance(obj, dict):
        raise HeaderError(where, "is not a JSON object", "re-download the file")
    out = []
    for name, info in obj.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            raise HeaderError(where, f"entry {name!r} is not an object", "re-download the file")
        dtype, shape = info.get("dtype"), info.get("shape")
        if dtype not in DTYPE_BITS:
            raise HeaderError(where, f"tensor {name!r} has unknown dtype {dtype!r}",
                              "re-download the file")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise HeaderError(where, f"tensor {name!r} has a bad shape {shape!r}",
                              "re-download the file")
        out.append(HeaderTensor(str(name), str(dtype), tuple(shape)))
    return out


def read_local_header(path: Path) -> list[HeaderTensor]:
    """Read only the header of a local .safetensors file."""
    where = f"{path.name} header"
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise HeaderError(where, "is shorter than 8 bytes", "re-download the file")
            (n,) = struct.unpack("<Q", head)
            if n <= 0 or n > MAX_HEADER_BYTES:
                raise HeaderError(where, f"declares an implausible length {n}",
                                  "the file is corrupt or not safetensors; re-download it")
            data = fh.read(n)
    except OSError as exc:
        raise HeaderError(where, f"cannot be read ({exc.strerror})", "check the path") from None
    if len(data) < n:
        raise HeaderError(where, f"is truncated ({len(data)} of {n} bytes)",
                          "re-download the file")
    return parse_header(data, where)
