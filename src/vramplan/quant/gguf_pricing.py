"""Price an HF model as a GGUF file type (``--quant q4_k_m``): llama.cpp's own per-tensor mix.

HF tensors are renamed and merged as ``convert_hf_to_gguf.py`` would (``gguf_mix.hf_to_gguf_shapes``),
each GGUF tensor gets the type ``llama-quantize`` would choose (``gguf_mix.predict_mix``), and its
bytes come from the exact ggml block sizes (``ggml_types.tensor_bytes``). The vision tower is not
part of the text GGUF (llama.cpp keeps it in a separate mmproj file) and is priced at the model dtype.
"""

from __future__ import annotations

import re

from vramplan.inventory import Role, Split, TensorGroup, TensorInventory
from vramplan.quant.ggml_types import ggml_type, tensor_bytes
from vramplan.quant.gguf_mix import (
    MixContext,
    ftype_default_type,
    hf_to_gguf_name,
    hf_to_gguf_shapes,
    predict_mix,
)
from vramplan.quant.schemes import QuantScheme, WeightEntry

_BLK = re.compile(r"^blk\.(\d+)\.")
# GGUF name fragment -> (role, TP split) for the llama.cpp tensor names (gguf TensorNameMap).
_ROLES: tuple[tuple[str, Role, Split], ...] = (
    ("token_embd", "embedding", "vocab"), ("output_norm", "norm", "replicated"),
    ("output.", "lm_head", "vocab"), ("_exps", "routed_expert", "expert_column"),
    ("_shexp", "shared_expert", "column"), ("ffn_gate_inp", "router", "replicated"),
    ("exp_probs_b", "router", "replicated"), ("norm", "norm", "replicated"),
    ("attn_k.", "attention", "kv"), ("attn_v.", "attention", "kv"),
    ("attn_output", "attention", "row"), ("attn", "attention", "column"),
    ("ssm", "attention", "column"), ("ffn_down", "mlp", "row"), ("ffn", "mlp", "column"),
)


def _role(name: str) -> tuple[Role, Split]:
    for frag, role, split in _ROLES:
        if frag in name:
            if role == "routed_expert" and "ffn_down" in name:
                return role, "expert_row"
            return role, split
    return "mlp", "column"


def gguf_entries(inv: TensorInventory, scheme: QuantScheme) -> tuple[tuple[WeightEntry, ...], int]:
    """WeightEntries (one per GGUF tensor) and the MTP bytes, for ``scheme.gguf_ftype``."""
    spec = inv.spec
    hf: dict[str, tuple[int, ...]] = {}
    fused: dict[str, tuple[int, ...]] = {}
    vision: list[WeightEntry] = []
    model_type = "deepseek_v3" if spec.model_type == "kimi_k2" else spec.model_type
    base = ggml_type(ftype_default_type(scheme.gguf_ftype))
    for g in inv.tensors:
        name = g.name.removeprefix("language_model.")  # Llama 4 text tower
        if g.role == "vision":
            vision.append(WeightEntry(g, g.numel * spec.bytes_per_param, "bf16 (mmproj)"))
        elif g.count == 1 and not g.stacked_experts and \
                hf_to_gguf_name(name, model_type) is None:
            # ASSUMPTION: a tensor the converter's name table does not know (e.g. phi3's fused
            # qkv_proj) is stored at the ftype's base type when its rows allow, else F16.
            ne = tuple(reversed(g.shape))
            t = base if len(ne) >= 2 and ne[0] % base.block_elems == 0 else ggml_type("F16")
            vision.append(WeightEntry(g, tensor_bytes(t, ne), t.name))
        elif g.count > 1:
            for e in range(g.count):
                hf[name.replace("{e}", str(e))] = g.shape
        elif name.endswith("mlp.gate_up_proj.weight") and g.layer is not None:
            # phi3 keeps gate+up fused as one ffn_up of 2*n_ff rows (convert_hf_to_gguf.py Phi3)
            fused[f"blk.{g.layer}.ffn_up.weight"] = (g.shape[1], g.shape[0])
        else:
            hf[name] = g.shape
    a = spec.layers[0].attention
    hparams = {"num_attention_heads": a.num_heads, "qk_nope_head_dim": a.qk_nope_head_dim,
               "v_head_dim": a.v_head_dim, "kv_lora_rank": a.kv_lora_rank}
    shapes = hf_to_gguf_shapes(hf, model_type, hparams)
    shapes.update(fused)
    moe = next((la.mlp for la in spec.layers if la.mlp.kind == "moe"), None)
    size_class = "70B" if (not moe and 60e9 < inv.params_total < 80e9) else None
    ctx = MixContext(n_layer=spec.num_layers, n_expert=moe.num_experts if moe else 0,
                     n_head=a.num_heads, n_head_kv=a.num_kv_heads,
                     tied_embeddings=spec.tie_word_embeddings, model_size_class=size_class,
                     arch=model_type)
    mix = predict_mix(shapes, scheme.gguf_ftype, ctx)
    entries: list[WeightEntry] = []
    for name, ne in shapes.items():
        t = ggml_type(mix[name])
        m = _BLK.match(name)
        role, split = _role(name)
        group = TensorGroup(name, tuple(reversed(ne)), role, int(m.group(1)) if m else None, split,
                            linear=len(ne) >= 2)
        entries.append(WeightEntry(group, tensor_bytes(t, ne), t.name))
    return tuple(entries + vision), 0
