"""Exact weight bytes from safetensors headers (a local folder or the Hub), as hf-mem does.

Every stored tensor (qweight, scales, zeros, g_idx, weight_scale_inv, *_blocks ...) is attached
to the inventory tensor whose module it belongs to, so roles, layers and TP splits still apply.
The headers also check the inventory: ``header_check`` compares the parameters they hold with the
inventory's; where the two differ the headers win for weights (``entries_from_headers`` prices
only what the headers store; ``header_inventory`` rebuilds the inventory from them for a
``--quant`` formula).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from vramplan.inventory import Role, TensorGroup, TensorInventory
from vramplan.model.safetensors import DTYPE_BITS, HeaderTensor
from vramplan.quant.schemes import QuantizedModel, QuantScheme, WeightEntry
from vramplan.result import HeaderCheck

_EXPERT = re.compile(r"\.experts\.\d+\.")
_LAYER = re.compile(r"layers\.(\d+)\.")
_SUFFIXES = ("_blocks", "_scales")
# Vision / audio towers and their projectors: their "layers.N" are not decoder layers.
_TOWER = re.compile(r"vision|visual|audio|multi_modal_projector|mm_projector")
# Quantization side tensors and stored rotary tables: not parameters of the model. Sources: AWQ
# (qzeros, scales), GPTQ (+ g_idx), FP8 (weight_scale_inv, weight_scale, input_scale), ModelOpt /
# compressed-tensors (weight_scale_2, *_global_scale, weight_zero_point, weight_shape, k/v_scale),
# bitsandbytes (weight.absmax, weight.quant_map, weight.nested_*, weight.quant_state.*, SCB,
# weight_format), MXFP4 (*_scales), rotary_emb.inv_freq.
_AUX = re.compile(
    r"(^|[._])(qzeros|scales|g_idx|weight_scale_inv|weight_scale|weight_scale_2|input_scale|"
    r"input_global_scale|weight_global_scale|weight_zero_point|weight_g_idx|weight_shape|"
    r"k_scale|v_scale|q_scale|zeros|SCB|weight_format|absmax|quant_map|nested_absmax|"
    r"nested_quant_map|inv_freq)$|\.weight\.quant_state\.")
_FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F4", "F6_E2M3",
                           "F6_E3M2"})
_SHOW = 5  # names listed per side of a mismatch
# Stored names of packed weights that stand for their module's ``weight`` (AWQ/GPTQ, compressed-
# tensors pack-quantized, MXFP4).
_PACKED = (".qweight", ".weight_packed", "_blocks")


def _guess_role(name: str) -> Role:
    n = name.lower()
    for key, role in (("embed", "embedding"), ("lm_head", "lm_head"), ("vision", "vision"),
                      ("visual", "vision"), ("audio", "audio"), ("norm", "norm"),
                      ("shared_expert", "shared_expert"),
                      ("experts", "routed_expert"), ("gate.", "router"), ("attn", "attention")):
        if key in n:
            return role  # type: ignore[return-value]
    return "mlp"


def _is_mtp(name: str, n_layers: int) -> bool:
    """A next-n / MTP tensor: ``mtp.*`` or a decoder layer index beyond the main layers."""
    if name.startswith("mtp."):
        return True
    m = _LAYER.search(name)
    return bool(m and int(m.group(1)) >= n_layers and not _TOWER.search(name))


def _group_for(by_name: dict[str, TensorGroup], name: str) -> TensorGroup | None:
    """The inventory tensor a stored tensor belongs to (by name, else by its module)."""
    key = _EXPERT.sub(".experts.{e}.", name)
    group = by_name.get(key)
    if group is None:
        module = key.rsplit(".", 1)[0]
        group = by_name.get(module + ".weight")
        if group is None:
            for suf in _SUFFIXES:
                if key.endswith(suf):
                    group = by_name.get(key[: -len(suf)])
    return group


def _tied_copy(inv: TensorInventory, name: str) -> bool:
    return inv.spec.tie_word_embeddings and name.endswith("lm_head.weight")


def entries_from_headers(inv: TensorInventory, headers: Sequence[HeaderTensor],
                         scheme: QuantScheme) -> QuantizedModel:
    """Sum header bytes per inventory group; tensors beyond the main layers count as MTP.

    Only what the headers store is priced (an inventory tensor without a header entry costs
    nothing; a header tensor no inventory tensor explains is priced under a guessed role), so the
    headers win for weights; ``header_check`` says whether the two agree.
    """
    by_name: dict[str, TensorGroup] = {g.name: g for g in inv.tensors}
    sums: dict[str, int] = {}
    extra: dict[str, tuple[TensorGroup, int]] = {}
    mtp = 0
    n_layers = inv.spec.num_layers
    for t in headers:
        if _is_mtp(t.name, n_layers):
            mtp += t.nbytes
            continue
        group = _group_for(by_name, t.name)
        if group is None and _tied_copy(inv, t.name):
            continue  # tied: engines reuse the embedding (vLLM skips the stored copy)
        if group is None:
            m = _LAYER.search(t.name)
            layer = int(m.group(1)) if m and not _TOWER.search(t.name) else None
            g = TensorGroup(t.name, t.shape, _guess_role(t.name), layer)
            extra[t.name] = (g, t.nbytes)
            continue
        sums[group.name] = sums.get(group.name, 0) + t.nbytes
    entries = [WeightEntry(g, sums[g.name], "checkpoint") for g in inv.tensors if g.name in sums]
    entries += [WeightEntry(g, b, "checkpoint") for g, b in extra.values()]
    notes: tuple[str, ...] = (f"weights: exact bytes from {len(headers)} safetensors header entries",)
    if inv.spec.tie_word_embeddings and any(t.name.endswith("lm_head.weight") for t in headers):
        notes += ("checkpoint stores lm_head.weight although embeddings are tied; not loaded",)
    return QuantizedModel(inv, scheme, tuple(entries), mtp, notes,
                          header_check=header_check(inv, headers, scheme))


def _values(t: HeaderTensor, scheme: QuantScheme) -> int | None:
    """Parameters one stored tensor holds: its element count, or for a packed integer tensor
    of a quantized checkpoint ``numel * dtype_bits / scheme.bits`` (AWQ/GPTQ/compressed-tensors
    int32 ``qweight`` / ``weight_packed``: 32/bits values each; MXFP4 ``*_blocks``, NF4 and
    NVFP4 uint8: 2 each; int8: 1). None for an integer tensor of an unquantized checkpoint."""
    n = 1
    for d in t.shape:
        n *= d
    if t.dtype in _FLOAT_DTYPES:
        return n
    if t.dtype == "BOOL" or scheme.method in ("none", "gguf") or scheme.bits >= 16:
        return None
    return n * DTYPE_BITS[t.dtype] // scheme.bits


def header_check(inv: TensorInventory, headers: Sequence[HeaderTensor],
                 scheme: QuantScheme) -> HeaderCheck:
    """Compare the inventory's stored parameters (params + persistent buffers) with the headers'.

    Excluded from the headers' count (known extras, see ``HeaderCheck``): MTP / next-n layers
    (``params_mtp`` covers them), a stored copy of a tied ``lm_head``, quantization side tensors
    and ``inv_freq`` (``_AUX``), integer tensors of an unquantized checkpoint (position ids).
    ``scheme`` is the checkpoint's own format (for the bits of packed integer weights).
    """
    inventory = inv.params_total + inv.buffers_total
    by_name: dict[str, TensorGroup] = {g.name: g for g in inv.tensors}
    n_layers = inv.spec.num_layers
    total = 0
    seen: set[str] = set()
    unmatched: list[str] = []
    for t in headers:
        if _is_mtp(t.name, n_layers) or _AUX.search(t.name) or _tied_copy(inv, t.name):
            continue
        values = _values(t, scheme)
        if values is None:
            continue
        total += values
        group = by_name.get(_EXPERT.sub(".experts.{e}.", t.name))
        if group is None and t.name.endswith(_PACKED):
            group = _group_for(by_name, t.name)  # a packed weight stands for its module's
        if group is None:
            unmatched.append(t.name)
        else:
            seen.add(group.name)
    missing = [g.name for g in inv.tensors if g.name not in seen]
    if total == inventory:
        return HeaderCheck(inventory, total, len(headers))
    return HeaderCheck(inventory, total, len(headers), tuple(unmatched[:_SHOW]),
                       tuple(missing[:_SHOW]),
                       f"{len(unmatched)} header tensors unexplained, {len(missing)} inventory "
                       "tensors absent from the headers")


def header_inventory(inv: TensorInventory, headers: Sequence[HeaderTensor]) -> TensorInventory:
    """The inventory rebuilt from an unquantized checkpoint's headers (the headers win): each
    stored tensor keeps the role / layer / split of the inventory tensor it belongs to, or a role
    guessed from its name (a 2-D ``*.weight`` outside embeddings, norms and towers counts as a
    linear weight that ``--quant`` applies to). MTP tensors and a tied ``lm_head`` copy are left
    out, as in ``entries_from_headers``."""
    by_name: dict[str, TensorGroup] = {g.name: g for g in inv.tensors}
    n_layers = inv.spec.num_layers
    out: list[TensorGroup] = []
    for t in headers:
        if _is_mtp(t.name, n_layers) or _AUX.search(t.name) or _tied_copy(inv, t.name):
            continue
        group = _group_for(by_name, t.name)
        if group is not None:
            same = t.shape == group.shape
            out.append(TensorGroup(t.name, t.shape, group.role, group.layer, group.split,
                                   linear=group.linear and (same or len(t.shape) == 2),
                                   buffer=group.buffer,
                                   stacked_experts=group.stacked_experts if same else 0))
            continue
        role = _guess_role(t.name)
        m = _LAYER.search(t.name)
        layer = int(m.group(1)) if m and not _TOWER.search(t.name) else None
        linear = (len(t.shape) == 2 and t.name.endswith(".weight")
                  and role not in ("embedding", "norm", "vision", "audio"))
        out.append(TensorGroup(t.name, t.shape, role, layer, linear=linear))
    return TensorInventory(spec=inv.spec, tensors=tuple(out), mtp_tensors=inv.mtp_tensors)
