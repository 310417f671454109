"""Exact weights of a GGUF source (local file or Hub) from its header's tensor table.

The price stage of a GGUF source: one ``WeightEntry`` per GGUF tensor with its real GGML type and
exact byte count, named as llama.cpp names it (``blk.3.ffn_up_exps.weight``), roles from
``gguf_pricing.gguf_role``. The header comes from the resolve stage (``model/gguf_source.py``
``local_header``, ``model/gguf_hub.py`` ``hub_header``), which never imports this module: data
flows one way, resolve -> price. ``api._priced`` calls ``priced_for_source`` for origin ``"gguf"``.
"""

from __future__ import annotations

import re

from vramplan.inventory import TensorGroup, TensorInventory
from vramplan.model.gguf_hub import HUB_KEY, hub_header
from vramplan.model.gguf_reader import GgufHeader
from vramplan.model.gguf_source import local_header
from vramplan.model.model_source import ModelSource
from vramplan.quant.gguf_mix import FTYPES
from vramplan.quant.gguf_pricing import gguf_role
from vramplan.quant.types import QuantizedModel, QuantScheme, WeightEntry

_BLK = re.compile(r"^blk\.(\d+)\.")


def _ftype_name(file_type: int | None) -> str:
    for name, (fid, _) in FTYPES.items():
        if fid == file_type:
            return name
    return "mixed"


def quantized_from_gguf(inv: TensorInventory, h: GgufHeader, path: str = "") -> QuantizedModel:
    """Exact weights: one entry per tensor of the file (nextn/MTP blocks are not loaded)."""
    n_layer = inv.spec.num_layers
    entries: list[WeightEntry] = []
    mtp = 0
    for t in h.tensors:
        m = _BLK.match(t.name)
        layer = int(m.group(1)) if m else None
        if layer is not None and layer >= n_layer:  # nextn blocks: llama.cpp skips them
            mtp += t.n_bytes
            continue
        role, split = gguf_role(t.name)
        group = TensorGroup(t.name, tuple(reversed(t.shape_ne)), role, layer, split,
                            linear=len(t.shape_ne) >= 2)
        entries.append(WeightEntry(group, t.n_bytes, t.ggml_type_name))
    ftype = _ftype_name(h.file_type)
    scheme = QuantScheme(method="gguf", gguf_ftype=ftype if ftype in FTYPES else "",
                         source=f"GGUF header {path}".rstrip(), label=f"GGUF {ftype} (file)")
    notes = (f"weights from the GGUF header: {len(entries)} tensors, exact GGML types",)
    return QuantizedModel(inv, scheme, tuple(entries), mtp, notes)


def priced_for_source(inv: TensorInventory, source: ModelSource,
                      quant: str | None) -> QuantizedModel:
    """The ``api._priced`` hook for origin ``"gguf"``: the file's own tensors, never re-priced."""
    if source.config.get(HUB_KEY):  # a file on the Hub
        h, name = hub_header(source, quant)
    else:
        h, name = local_header(source, quant)
    return quantized_from_gguf(inv, h, name)
