"""Test helper: write GGUF tensors (ggml ne order) with gguf.GGUFWriter, zero-filled."""

from __future__ import annotations

from collections.abc import Mapping

import gguf
import numpy as np

from vramplan.quant.ggml_types import tensor_bytes

Q = gguf.GGMLQuantizationType


def write_tensors(w: gguf.GGUFWriter, tensors: Mapping[str, tuple[Q, tuple[int, ...]]]) -> None:
    """Add each ``name: (type, ne)`` tensor, then write header, metadata and data and close.

    F32 tensors are float arrays; quantized ones are raw rows of ``tensor_bytes(type, ne0)``.
    """
    for name, (qt, ne) in tensors.items():
        rows = list(reversed(ne[1:]))
        if qt == Q.F32:
            w.add_tensor(name, np.zeros((*rows, ne[0]), dtype=np.float32))
        else:
            nb = tensor_bytes(qt.name, (ne[0],))
            w.add_tensor(name, np.zeros((*rows, nb), dtype=np.uint8), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
