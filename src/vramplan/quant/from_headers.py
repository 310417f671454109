"""Exact weight bytes from safetensors headers (a local folder or the Hub), as hf-mem does.

Every stored tensor (qweight, scales, zeros, g_idx, weight_scale_inv, *_blocks ...) is attached
to the inventory tensor whose module it belongs to, so roles, layers and TP splits still apply.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from vramplan.inventory import Role, TensorGroup, TensorInventory
from vramplan.model.safetensors import HeaderTensor
from vramplan.quant.schemes import QuantizedModel, QuantScheme, WeightEntry

_EXPERT = re.compile(r"\.experts\.\d+\.")
_LAYER = re.compile(r"layers\.(\d+)\.")
_SUFFIXES = ("_blocks", "_scales")


def _guess_role(name: str) -> Role:
    n = name.lower()
    for key, role in (("embed", "embedding"), ("lm_head", "lm_head"), ("vision", "vision"),
                      ("visual", "vision"), ("audio", "audio"), ("norm", "norm"),
                      ("shared_expert", "shared_expert"),
                      ("experts", "routed_expert"), ("gate.", "router"), ("attn", "attention")):
        if key in n:
            return role  # type: ignore[return-value]
    return "mlp"


def entries_from_headers(inv: TensorInventory, headers: Sequence[HeaderTensor],
                         scheme: QuantScheme) -> QuantizedModel:
    """Sum header bytes per inventory group; tensors beyond the main layers count as MTP."""
    by_name: dict[str, TensorGroup] = {g.name: g for g in inv.tensors}
    sums: dict[str, int] = {}
    extra: dict[str, tuple[TensorGroup, int]] = {}
    mtp = 0
    n_layers = inv.spec.num_layers
    for t in headers:
        m = _LAYER.search(t.name)
        if t.name.startswith("mtp.") or (m and int(m.group(1)) >= n_layers
                                          and "vision" not in t.name):
            mtp += t.nbytes
            continue
        key = _EXPERT.sub(".experts.{e}.", t.name)
        group = by_name.get(key)
        if group is None:
            module = key.rsplit(".", 1)[0]
            group = by_name.get(module + ".weight")
            if group is None:
                for suf in _SUFFIXES:
                    if key.endswith(suf):
                        group = by_name.get(key[: -len(suf)])
        if group is None and inv.spec.tie_word_embeddings and key.endswith("lm_head.weight"):
            continue  # tied: engines reuse the embedding (vLLM skips the stored copy)
        if group is None:
            layer = int(m.group(1)) if m else None
            g = TensorGroup(t.name, t.shape, _guess_role(t.name), layer)
            extra[t.name] = (g, t.nbytes)
            continue
        sums[group.name] = sums.get(group.name, 0) + t.nbytes
    entries = [WeightEntry(g, sums[g.name], "checkpoint") for g in inv.tensors if g.name in sums]
    entries += [WeightEntry(g, b, "checkpoint") for g, b in extra.values()]
    notes: tuple[str, ...] = (f"weights: exact bytes from {len(headers)} safetensors header entries",)
    if inv.spec.tie_word_embeddings and any(t.name.endswith("lm_head.weight") for t in headers):
        notes += ("checkpoint stores lm_head.weight although embeddings are tied; not loaded",)
    return QuantizedModel(inv, scheme, tuple(entries), mtp, notes)
