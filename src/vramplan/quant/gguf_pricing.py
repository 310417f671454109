"""Price an HF model as a GGUF file type (``--quant q4_k_m``): llama.cpp's own per-tensor mix.

Each inventory group is renamed and merged as ``convert_hf_to_gguf.py`` would: per-expert groups
become one ``blk.N.ffn_*_exps`` tensor of ggml shape ``(in, out, n_expert)``, other tensors go
through ``gguf_mix.hf_to_gguf_shapes`` (which also splits gpt-oss ``gate_up`` and MLA
``kv_b_proj``). Each GGUF tensor gets the type ``llama-quantize`` would choose
(``gguf_mix.predict_mix``, one pass over the whole model because of its per-layer counters) and its
bytes come from the exact ggml block sizes. Roles, layers and TP splits are the inventory's. The
vision tower is not part of the text GGUF (llama.cpp keeps it in a separate mmproj file) and is
priced at the model dtype.
"""

from __future__ import annotations

import re

from vramplan.errors import InputError
from vramplan.inventory import Role, Split, TensorGroup, TensorInventory
from vramplan.quant.ggml_types import ggml_type, tensor_bytes
from vramplan.quant.gguf_mix import (
    MixContext,
    ftype_default_type,
    hf_to_gguf_name,
    hf_to_gguf_shapes,
    predict_mix,
)
from vramplan.quant.types import QuantScheme, WeightEntry

# GGUF name -> (role, TP split) for tensors read from a GGUF file, where no HF inventory exists
# (gguf TensorNameMap naming). Exact patterns: "output." alone would also match "attn_output.".
_ROLE_PATTERNS: tuple[tuple[str, Role, Split], ...] = (
    (r"^token_embd\.", "embedding", "vocab"), (r"^output_norm\.", "norm", "replicated"),
    (r"^output\.", "lm_head", "vocab"), (r"ffn_down_exps", "routed_expert", "expert_row"),
    (r"_exps\b", "routed_expert", "expert_column"), (r"_shexp\b", "shared_expert", "column"),
    (r"ffn_gate_inp|exp_probs_b", "router", "replicated"), (r"norm", "norm", "replicated"),
    (r"\.attn_[kv]\.", "attention", "kv"), (r"\.attn_output\.", "attention", "row"),
    (r"\.(attn|ssm)", "attention", "column"), (r"\.ffn_down\.", "mlp", "row"),
)
_ROLES = tuple((re.compile(p), role, split) for p, role, split in _ROLE_PATTERNS)


def gguf_role(name: str) -> tuple[Role, Split]:
    """Role and TP split of a GGUF tensor, from its llama.cpp name."""
    for pat, role, split in _ROLES:
        if pat.search(name):
            return role, split
    return "mlp", "column"


def _gguf_tensors(g: TensorGroup, model_type: str, hparams: dict[str, int]
                  ) -> dict[str, tuple[int, ...]]:
    """GGUF name -> ggml ne of the tensor(s) one inventory group becomes ({} if unmapped)."""
    # Llama 4 / Gemma 3 text tower (language_model.model.*), Gemma 3n / Gemma 4 / Qwen-VL /
    # InternVL (model.language_model.*): the converter names the text model as model.*
    name = g.name.removeprefix("language_model.").replace("model.language_model.", "model.", 1)
    if g.count > 1:  # per-expert group: one merged 3-D tensor
        gname = hf_to_gguf_name(name.replace("{e}", "0"), model_type)
        return {gname: (*reversed(g.shape), g.count)} if gname else {}
    if name.endswith("mlp.gate_up_proj.weight") and g.layer is not None:
        # phi3 keeps gate+up fused as one ffn_up of 2*n_ff rows (convert_hf_to_gguf.py Phi3)
        return {f"blk.{g.layer}.ffn_up.weight": (g.shape[1], g.shape[0])}
    if not g.stacked_experts and hf_to_gguf_name(name, model_type) is None:
        return {}
    return hf_to_gguf_shapes({name: g.shape}, model_type, hparams)


def gguf_entries(inv: TensorInventory, scheme: QuantScheme) -> tuple[tuple[WeightEntry, ...], int]:
    """WeightEntries (one per GGUF tensor, GGUF-named) and the MTP bytes, for the ftype."""
    spec = inv.spec
    model_type = "deepseek_v3" if spec.model_type == "kimi_k2" else spec.model_type
    a = spec.layers[0].attention
    hparams = {"num_attention_heads": a.num_heads, "qk_nope_head_dim": a.qk_nope_head_dim,
               "v_head_dim": a.v_head_dim, "kv_lora_rank": a.kv_lora_rank}
    per_group: list[tuple[TensorGroup, dict[str, tuple[int, ...]]]] = []
    shapes: dict[str, tuple[int, ...]] = {}
    for g in inv.tensors:
        t = {} if g.role in ("vision", "audio") else _gguf_tensors(g, model_type, hparams)
        per_group.append((g, t))
        shapes.update(t)
    if not shapes:
        raise InputError("--quant", f"no GGUF tensor names for model_type {spec.model_type!r}",
                         "use a safetensors quantization (awq, fp8) for this model")
    moe = next((la.mlp for la in spec.layers if la.mlp.kind == "moe"), None)
    size_class = "70B" if (not moe and 60e9 < inv.params_total < 80e9) else None
    ctx = MixContext(n_layer=spec.num_layers, n_expert=moe.num_experts if moe else 0,
                     n_head=a.num_heads, n_head_kv=a.num_kv_heads,
                     tied_embeddings=spec.tie_word_embeddings, model_size_class=size_class,
                     arch=model_type)
    mix = predict_mix(shapes, scheme.gguf_ftype, ctx)
    base = ggml_type(ftype_default_type(scheme.gguf_ftype))
    entries: list[WeightEntry] = []
    for g, t in per_group:
        if g.role in ("vision", "audio"):
            entries.append(WeightEntry(g, g.numel * spec.bytes_per_param, "bf16 (mmproj)"))
            continue
        if not t:
            # ASSUMPTION: a tensor the converter's name table does not know is stored at the
            # ftype's base type when its rows allow, else F16.
            ne = tuple(reversed(g.shape))
            typ = base if len(ne) >= 2 and ne[0] % base.block_elems == 0 else ggml_type("F16")
            entries.append(WeightEntry(g, tensor_bytes(typ, ne), typ.name))
            continue
        for gname, ne in t.items():
            typ = ggml_type(mix[gname])
            group = TensorGroup(gname, tuple(reversed(ne)), g.role, g.layer, g.split,
                                linear=len(ne) >= 2, stacked_experts=ne[2] if len(ne) == 3 else 0)
            entries.append(WeightEntry(group, tensor_bytes(typ, ne), typ.name))
    return tuple(entries), 0
