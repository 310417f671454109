"""Predict the per-tensor GGML types that llama.cpp's quantizer writes for a file type.

``llama-quantize`` does not store every weight in the type its name suggests: a "Q4_K_M" file
mixes Q4_K, Q6_K and F32. This module restates the selection rules of ggml-org/llama.cpp
``src/llama-quant.cpp`` (read at commit 007dbbf3fd17eefe9b47fee45f48f7ba5e62b714; functions
``tensor_allows_quantization``, ``tensor_get_category``, ``llama_tensor_get_type_impl``,
``tensor_type_fallback``, ``llama_ftype_get_default_type``, ``init_quantize_state_counters``) in our
own words, so that the bytes of a quantized GGUF can be predicted from tensor shapes alone.

Mechanism, in order, for each tensor (tensors are visited sorted by block number, then name, as
the model loader's ``weight_name_comparer`` orders them; non-block tensors come first):

1. Only tensors of 2 or more dimensions whose name ends in ``weight`` are touched; norms
   (``_norm.weight``), expert routers (``ffn_gate_inp.weight``), position/token-type embeddings,
   conv1d and a few tiny tensors keep their source type (F32 from the converter).
2. For F16/BF16/F32 file types every such tensor simply takes that type.
3. Otherwise a category is derived from the name by substring (``attn_v``/``attn_qkv``/``attn_kv_b``
   count as "value-like"; ``ffn_down`` also matches ``ffn_down_exps`` and ``ffn_down_shexp``) and
   per-ftype upgrades apply: output (and a tied token embedding) goes to Q6_K (Q8_0 for
   MXFP4_MOE, Q5_K for the 1-2 bit i-quants); Q4_K_M/Q5_K_M give Q6_K to value-like tensors and
   ``ffn_down`` on "use_more_bits" layers (first and last eighth, and every third layer between);
   models with exactly 8 experts get Q8_0 for attention V/K; GQA >= 4 upgrades V; and so on.
4. Value-like tensors are counted in visiting order (``i_attention_wv`` over ``n_attention_wv``).
   ``ffn_down``/``ffn_gate``/``ffn_up`` use a running counter in dense models, but in MoE models
   (``n_expert > 1``) the block number parsed from the name, over ``n_layer`` blocks: a merged
   ``ffn_down_exps`` is one tensor per layer, so the decision is per layer, not per expert.
5. If a row length (``ne[0]``) is not a multiple of the chosen block, the type falls back
   (i-quants -> IQ4_NL, Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then F16);
   the engine refuses types without a fallback, and so do we (InputError).

Since that commit a fused ``attn_qkv`` is treated as value-like (its old dedicated branch is now
unreachable), which we follow. User overrides (``--tensor-type``, ``--pure``,
``--output-tensor-type``) are not modelled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # gguf pulls in numpy (~200 ms): imported only when names are mapped
    import gguf

from vramplan.errors import InputError
from vramplan.quant.ggml_types import ggml_type, tensor_bytes

__all__ = ["FTYPES", "MixContext", "allows_quantization", "ftype_default_type",
           "hf_to_gguf_name", "hf_to_gguf_shapes", "mix_bytes", "predict_mix", "tensor_category"]

# llama_ftype name -> (id in llama.h, default GGML type from llama_ftype_get_default_type)
FTYPES: dict[str, tuple[int, str]] = {
    "F32": (0, "F32"), "F16": (1, "F16"), "Q4_0": (2, "Q4_0"), "Q4_1": (3, "Q4_1"),
    "Q8_0": (7, "Q8_0"), "Q5_0": (8, "Q5_0"), "Q5_1": (9, "Q5_1"), "Q2_K": (10, "Q2_K"),
    "Q3_K_S": (11, "Q3_K"), "Q3_K_M": (12, "Q3_K"), "Q3_K_L": (13, "Q3_K"),
    "Q4_K_S": (14, "Q4_K"), "Q4_K_M": (15, "Q4_K"), "Q5_K_S": (16, "Q5_K"),
    "Q5_K_M": (17, "Q5_K"), "Q6_K": (18, "Q6_K"), "IQ2_XXS": (19, "IQ2_XXS"),
    "IQ2_XS": (20, "IQ2_XS"), "Q2_K_S": (21, "Q2_K"), "IQ3_XS": (22, "IQ3_S"),
    "IQ3_XXS": (23, "IQ3_XXS"), "IQ1_S": (24, "IQ1_S"), "IQ4_NL": (25, "IQ4_NL"),
    "IQ3_S": (26, "IQ3_S"), "IQ3_M": (27, "IQ3_S"), "IQ2_S": (28, "IQ2_XS"),
    "IQ2_M": (29, "IQ2_S"), "IQ4_XS": (30, "IQ4_XS"), "IQ1_M": (31, "IQ1_M"),
    "BF16": (32, "BF16"), "TQ1_0": (36, "TQ1_0"), "TQ2_0": (37, "TQ2_0"),
    "MXFP4_MOE": (38, "MXFP4"), "NVFP4": (39, "NVFP4"), "Q1_0": (40, "Q1_0"),
    "Q2_0": (41, "Q2_0"),
}
_FTYPE_BY_ID = {fid: name for name, (fid, _) in FTYPES.items()}

# categories (tensor_get_category)
OUTPUT, TOKEN_EMBD, ATTN_QKV, ATTN_KV_B, ATTN_V, ATTN_K, ATTN_Q, ATTN_OUTPUT = (
    "output", "token_embd", "attn_qkv", "attn_kv_b", "attn_v", "attn_k", "attn_q", "attn_output")
FFN_UP, FFN_GATE, FFN_DOWN, OTHER = "ffn_up", "ffn_gate", "ffn_down", "other"
_VALUE_LIKE = frozenset({ATTN_V, ATTN_QKV, ATTN_KV_B})

_IQ_LOW = frozenset({"IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"})
_IQ_LOW_OUTPUT = _IQ_LOW | {"IQ3_XXS"}
_NEEDS_IMATRIX = _IQ_LOW | {"IQ3_XXS", "Q2_K_S"}
_MOE8_ATTN_OUT = frozenset({"Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL",
                            "Q4_K_S", "Q4_K_M", "IQ3_S", "IQ3_M", "IQ4_XS"})
_FALLBACK = {
    **dict.fromkeys(("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S",
                     "IQ4_XS"), "IQ4_NL"),
    **dict.fromkeys(("Q2_0", "Q2_K", "Q3_K", "TQ1_0", "TQ2_0"), "Q4_0"),
    "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
}
# substrings whose presence keeps a tensor in its source type (tensor_allows_quantization)
_NO_QUANT_PARTS = (
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
    "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
    "indexer.q_proj.weight", "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.",
    "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
    *(f"time_mix_{p}.weight" for p in ("first", "w0", "w1", "w2", "v0", "v1", "v2", "a0", "a1",
                                       "a2", "g1", "g2", "decay_w1", "decay_w2", "lerp_fused")),
)
_NO_QUANT_NAMES = frozenset({"position_embd.weight", "token_types.weight"})
_BLK_RE = re.compile(r"^blk\.([+-]?\d+)")


@dataclass(frozen=True, slots=True)
class MixContext:
    """Model facts the quantizer consults.

    ``n_layer`` counts every block in the file (including MTP/NextN blocks). ``n_expert`` is the
    routed expert count (0 or 1 for dense). ``n_head_kv`` may be per-layer; layer 0 is used, as in
    ``hparams.n_gqa()``. ``tied_embeddings=None`` infers tying from the absence of
    ``output.weight`` (what the quantizer does). ``model_size_class`` matters only as ``"70B"``.
    ``has_imatrix=None`` assumes an importance matrix for the ftypes that cannot be made without
    one (IQ1/IQ2/IQ3_XXS, Q2_K_S) and none otherwise.
    """

    n_layer: int
    n_expert: int = 0
    n_head: int = 0
    n_head_kv: int | tuple[int, ...] = 0
    tied_embeddings: bool | None = None
    model_size_class: str | None = None
    arch: str | None = None
    has_imatrix: bool | None = None

    def n_gqa(self) -> int:
        kv = self.n_head_kv[0] if isinstance(self.n_head_kv, tuple) else self.n_head_kv
        if not kv:
            return 0
        return self.n_head // kv


def _ftype_name(ftype: str | int) -> str:
    if isinstance(ftype, int) and not isinstance(ftype, bool):
        name = _FTYPE_BY_ID.get(ftype)
    else:
        key = str(ftype).strip().upper()
        for prefix in ("LLAMA_FTYPE_", "MOSTLY_", "ALL_"):
            key = key.removeprefix(prefix)
        name = key if key in FTYPES else None
    if name is None:
        raise InputError("file type", f"unknown llama.cpp file type {ftype!r}",
                         "use a name such as Q4_K_M, Q8_0, IQ4_XS or MXFP4_MOE")
    return name


def ftype_default_type(ftype: str | int) -> str:
    """The base GGML type of a file type (``Q4_K_M`` -> ``Q4_K``, ``IQ2_M`` -> ``IQ2_S``)."""
    return FTYPES[_ftype_name(ftype)][1]


def tensor_category(name: str) -> str:
    """Broad category of a GGUF tensor name, by the same substring tests as the quantizer."""
    if name == "output.weight":
        return OUTPUT
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return TOKEN_EMBD
    for part, cat in (("attn_qkv.weight", ATTN_QKV), ("attn_kv_b.weight", ATTN_KV_B),
                      ("attn_v.weight", ATTN_V), ("attn_k.weight", ATTN_K),
                      ("attn_q.weight", ATTN_Q), ("attn_output.weight", ATTN_OUTPUT),
                      ("ffn_up", FFN_UP), ("ffn_gate", FFN_GATE), ("ffn_down", FFN_DOWN)):
        if part in name:
            return cat
    return OTHER


def _n_dims(shape: Sequence[int]) -> int:
    """ggml_n_dims: trailing dimensions of size 1 do not count; at least 1."""
    n = len(shape)
    while n > 1 and shape[n - 1] == 1:
        n -= 1
    return max(n, 1)


def allows_quantization(name: str, shape: Sequence[int]) -> bool:
    """Whether llama-quantize converts this tensor at all (else it keeps its source type)."""
    if _n_dims(shape) < 2 or not name.endswith("weight"):
        return False
    if name in _NO_QUANT_NAMES:
        return False
    return not any(part in name for part in _NO_QUANT_PARTS)


def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    if i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8:
        return True
    return (i_layer - n_layers // 8) % 3 == 2  # left side is >= 0 here


class _State:
    def __init__(self, ctx: MixContext, ftype: str, tied: bool, n_attention_wv: int) -> None:
        self.ctx = ctx
        self.ftype = ftype
        self.tied = tied
        self.n_attention_wv = n_attention_wv
        self.n_layer = ctx.n_layer
        self.i_attention_wv = 0
        self.i_ffn = {FFN_DOWN: 0, FFN_GATE: 0, FFN_UP: 0}
        self.imatrix = ctx.has_imatrix if ctx.has_imatrix is not None else (
            ftype in _NEEDS_IMATRIX)

    def layer_info(self, cat: str, name: str) -> tuple[int, int]:
        if self.ctx.n_expert > 1:
            m = _BLK_RE.match(name)
            if m is None:
                raise InputError("tensor name", f"cannot find the block number in {name!r}",
                                 "MoE tensors must be named blk.<i>.<...>")
            i_layer = int(m.group(1))
            if not 0 <= i_layer < self.n_layer:
                raise InputError("n_layer", f"block {i_layer} of {name!r} is outside "
                                 f"[0, {self.n_layer})", "pass the file's block_count")
            return i_layer, self.n_layer
        return self.i_ffn[cat], self.n_layer


def _choose(st: _State, new: str, name: str, ne: Sequence[int], cat: str) -> str:
    """The ftype-specific rules (llama_tensor_get_type_impl)."""
    ft, ctx = st.ftype, st.ctx
    gqa, n_exp = ctx.n_gqa(), ctx.n_expert
    falcon = ctx.arch == "falcon"
    if cat == OUTPUT or (st.tied and cat == TOKEN_EMBD):
        if ft == "MXFP4_MOE" or falcon or ne[0] % ggml_type(new).block_elems:
            return "Q8_0"
        if ft in _IQ_LOW_OUTPUT:
            return "Q5_K"
        return new if new == "Q8_0" else "Q6_K"
    if ft == "MXFP4_MOE":
        ne2 = ne[2] if len(ne) > 2 else 1
        bailing = ctx.arch == "bailingmoe3"
        if ne2 > 1 and (not bailing or cat in (FFN_UP, FFN_GATE, FFN_DOWN)):
            return "MXFP4"
        return "Q8_0"
    if cat == TOKEN_EMBD:
        if ft in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
            return "Q2_K"
        if ft in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
            return "IQ3_S"
        if ft in ("TQ1_0", "TQ2_0", "Q2_0"):
            return "Q4_K"
        return new
    if ft in _IQ_LOW:
        high = "IQ3_S" if ft in ("IQ2_S", "IQ2_M") else "Q2_K"
        if cat in _VALUE_LIKE:
            new = "Q4_K" if gqa >= 4 or n_exp >= 4 else high
            st.i_attention_wv += 1
        elif n_exp == 8 and cat == ATTN_K:
            new = "Q4_K"
        elif cat == FFN_DOWN:
            if st.i_ffn[FFN_DOWN] < st.n_layer // 8:
                new = high
            st.i_ffn[FFN_DOWN] += 1
        elif cat == ATTN_OUTPUT:
            if n_exp == 8:
                new = "Q5_K"
            elif ft in ("IQ1_S", "IQ1_M"):
                new = "IQ2_XXS"
            elif ft in ("IQ2_S", "IQ2_M"):
                new = "IQ3_S"
        return new
    if cat in _VALUE_LIKE:
        i, n = st.i_attention_wv, st.n_attention_wv
        if ft == "Q2_K":
            new = "Q4_K" if gqa >= 4 else "Q3_K"
        elif ft == "Q2_K_S" and gqa >= 4:
            new = "Q4_K"
        elif ft == "IQ3_XXS":
            new = "Q4_K" if gqa >= 4 else ("IQ3_XXS" if st.imatrix else "IQ3_S")
        elif ft in ("IQ3_XS", "IQ3_S") and gqa >= 4:
            new = "Q4_K"
        elif ft == "IQ3_M":
            new = "Q4_K"
        elif ft == "Q3_K_M":
            new = "Q5_K" if i < 2 else "Q4_K"
        elif ft == "Q3_K_L":
            new = "Q5_K"
        elif ft in ("IQ4_NL", "IQ4_XS") and gqa >= 4:
            new = "Q5_K"
        elif ft in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n):
            new = "Q6_K"
        elif ft == "Q4_K_S" and i < 4:
            new = "Q5_K"
        if (ctx.model_size_class or "").upper() == "70B" and new in ("Q3_K", "Q4_K"):
            new = "Q5_K"  # 8 query heads share each V head: a small tensor worth more bits
        if n_exp == 8:
            new = "Q8_0"
        st.i_attention_wv += 1
    elif cat == ATTN_K:
        if n_exp == 8:
            new = "Q8_0"
        elif ft == "IQ3_XS":
            new = "IQ3_XXS"
        elif ft == "IQ3_XXS":
            new = "IQ2_S"
    elif cat == ATTN_Q:
        if ft == "IQ3_XS":
            new = "IQ3_XXS"
        elif ft == "IQ3_XXS":
            new = "IQ2_S"
    elif cat == FFN_DOWN:
        i, n = st.layer_info(FFN_DOWN, name)
        more = _use_more_bits(i, n)
        if ft == "Q2_K":
            new = "Q3_K"
        elif ft == "Q2_K_S":
            if i < n // 8:
                new = "Q4_K"
        elif ft == "IQ3_XXS" and not st.imatrix:
            new = "Q4_K" if i < n // 8 else "Q3_K"
        elif ft == "Q3_K_M":
            new = "Q5_K" if i < n // 16 else ("Q4_K" if not falcon or more else "Q3_K")
        elif ft == "IQ3_M" and (i < n // 8 or (n_exp == 8 and more)):
            new = "Q4_K"
        elif ft == "Q3_K_L":
            new = "Q4_K" if falcon else "Q5_K"
        elif ft == "Q4_K_M":
            if falcon:
                new = "Q6_K" if i < n // 16 else ("Q5_K" if more else "Q4_K")
            elif more:
                new = "Q6_K"
        elif i < n // 8 and ft in ("IQ4_NL", "IQ4_XS") and not st.imatrix:
            new = "Q5_K"
        elif ft == "Q5_K_M" and more:
            new = "Q6_K"
        elif ft == "Q4_K_S" and not falcon and i < n // 8:
            new = "Q5_K"
        elif ft in ("Q4_0", "Q5_0") and st.imatrix and i < n // 8:
            new = "Q4_1" if ft == "Q4_0" else "Q5_1"
        st.i_ffn[FFN_DOWN] += 1
    elif cat == ATTN_OUTPUT:
        if falcon:
            if ft == "Q3_K_L":
                new = "Q4_K"
        elif n_exp == 8:
            if ft in _MOE8_ATTN_OUT:
                new = "Q5_K"
        else:
            new = {"Q2_K": "Q3_K", "IQ3_XXS": "IQ3_S", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K",
                   "IQ3_M": "Q4_K"}.get(ft, new)
    elif cat in (FFN_GATE, FFN_UP):
        i, n = st.layer_info(cat, name)
        if ft == "IQ3_XS" and n // 8 <= i < 7 * n // 8:
            new = "IQ3_XXS"
        st.i_ffn[cat] += 1
    return new


def _fallback(name: str, ne0: int, target: str) -> str:
    if ne0 % ggml_type(target).block_elems == 0:
        return target
    alt = _FALLBACK.get(target)
    if alt is None:
        raise InputError("tensor shape", f"{name}: row length {ne0} does not fit {target} blocks "
                         "and llama-quantize has no fallback for it", "choose another file type")
    return alt if ne0 % ggml_type(alt).block_elems == 0 else "F16"


def _items(tensors: Mapping[str, Sequence[int]] | Iterable[tuple[str, Sequence[int]]],
           ) -> list[tuple[str, tuple[int, ...]]]:
    pairs = tensors.items() if isinstance(tensors, Mapping) else tensors
    return [(str(n), tuple(int(d) for d in s)) for n, s in pairs]


def _order_key(name: str) -> tuple[int, str]:
    m = _BLK_RE.match(name)
    return (int(m.group(1)) if m else -1, name)


def predict_mix(
    tensors: Mapping[str, Sequence[int]] | Iterable[tuple[str, Sequence[int]]],
    ftype: str | int,
    ctx: MixContext,
    source_types: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """GGUF tensor name -> GGML type name that ``llama-quantize <ftype>`` would write.

    ``tensors`` gives each tensor's ggml shape (``ne[0]`` first, e.g. ``attn_q`` of Llama-3-8B is
    ``(4096, 4096)``, ``ffn_up_exps`` is ``(n_embd, n_ff_exp, n_expert)``). Tensors the quantizer
    leaves alone keep ``source_types[name]`` (default F32, what convert_hf_to_gguf writes for
    them). The result is in the input order.
    """
    ft = _ftype_name(ftype)
    default = FTYPES[ft][1]
    items = _items(tensors)
    names = [n for n, _ in items]
    if len(set(names)) != len(names):
        raise InputError("tensors", "duplicate tensor names", "give each tensor once")
    tied = ctx.tied_embeddings if ctx.tied_embeddings is not None else (
        "output.weight" not in names)
    n_wv = sum(1 for n in names if tensor_category(n) in _VALUE_LIKE)
    st = _State(ctx, ft, tied, n_wv)
    src = source_types or {}
    quantized_default = ggml_type(default).quantized
    chosen: dict[str, str] = {}
    for name, ne in sorted(items, key=lambda it: _order_key(it[0])):
        if not allows_quantization(name, ne):
            chosen[name] = ggml_type(src.get(name, "F32")).name
            continue
        if not quantized_default:
            chosen[name] = default
            continue
        new = _choose(st, default, name, ne, tensor_category(name))
        chosen[name] = _fallback(name, ne[0], new)
    return {n: chosen[n] for n in names}


def mix_bytes(
    tensors: Mapping[str, Sequence[int]] | Iterable[tuple[str, Sequence[int]]],
    mix: Mapping[str, str],
) -> int:
    """Exact tensor-data bytes of ``tensors`` stored in the types of ``mix`` (no padding)."""
    return sum(tensor_bytes(mix[n], ne) for n, ne in _items(tensors))


# --- Hugging Face names -> GGUF names --------------------------------------------------------

_HF_ARCH = {
    "llama": "LLAMA", "mistral": "LLAMA", "mixtral": "LLAMA", "qwen2": "QWEN2",
    "qwen2_moe": "QWEN2MOE", "qwen3": "QWEN3", "qwen3_moe": "QWEN3MOE",
    "deepseek_v2": "DEEPSEEK2", "deepseek_v3": "DEEPSEEK2", "gpt_oss": "GPT_OSS",
    "glm4_moe": "GLM4_MOE", "gemma2": "GEMMA2", "gemma3_text": "GEMMA3", "gemma3": "GEMMA3",
    "qwen3_next": "QWEN3NEXT", "llama4_text": "LLAMA4", "phi3": "PHI3", "kimi_k2": "DEEPSEEK2",
    "gemma3n_text": "GEMMA3N", "gemma4_text": "GEMMA4",
    # Qwen-VL text models (families/qwen_vl.py): plain Qwen2 / Qwen3 decoder tensor names
    "qwen2_vl": "QWEN2VL", "qwen2_5_vl": "QWEN2VL", "qwen3_vl_text": "QWEN3VL",
    "qwen3_vl_moe_text": "QWEN3VLMOE",
    # -- hybrid --
    "nemotron_h": "NEMOTRON_H_MOE", "jamba": "JAMBA", "granitemoehybrid": "GRANITE_HYBRID",
    "falcon_h1": "FALCON_H1", "lfm2": "LFM2",
    # dense / MoE families whose llama.cpp arch keeps the HF tensor names gguf's TensorNameMap
    # knows (every tensor of their inventories maps; tests/test_gguf_mix.py); GLM-4.7-Flash is
    # converted as deepseek2 (MLA + MoE)
    "olmo2": "OLMO2", "olmo3": "OLMO2", "smollm3": "SMOLLM3", "exaone4": "EXAONE4",
    "cohere2": "COHERE2", "minimax_m2": "MINIMAXM2", "glm4_moe_lite": "DEEPSEEK2",
    "ernie4_5_moe": "ERNIE4_5_MOE", "hunyuan_v1_moe": "HUNYUAN_MOE", "mimo_v2_flash": "MIMO2",
}
# Renames convert_hf_to_gguf.py makes before its name table, as regex swaps on the HF name
# (Mamba2Model / NemotronHModel / GraniteHybridModel.modify_tensors): a Mamba-2 dt_bias is stored
# as ssm_dt.bias; Nemotron-H's per-expert up/down merge into ffn_{up,down}_exps; granite's stacked
# input_linear [E, 2I, H] and shared_mlp.input_linear split into gate and up halves.
_HF_RENAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "nemotron_h": ((r"\.mixer\.dt_bias$", ".mixer.dt_proj.bias"),
                   (r"^backbone\.layers\.(\d+)\.mixer\.experts\.", r"model.layers.\1.mlp.experts.")),
    "granitemoehybrid": ((r"\.mamba\.dt_bias$", ".mamba.dt_proj.bias"),
                         (r"\.block_sparse_moe\.input_linear\.", ".mlp.experts.gate_up_proj."),
                         (r"\.shared_mlp\.input_linear\.", ".mlp.shared_expert.gate_up_proj.")),
    "falcon_h1": ((r"\.mamba\.dt_bias$", ".mamba.dt_proj.bias"),),
}


def _hf_rename(hf_name: str, model_type: str) -> str:
    for a, b in _HF_RENAMES.get(model_type, ()):
        hf_name = re.sub(a, b, hf_name)
    return hf_name
_EXPERT_RE = re.compile(r"\.experts\.(\d+)\.")
_BLOCK_NUM_RE = re.compile(r"\.(\d+)\.")
_NAME_MAPS: dict[str, gguf.TensorNameMap] = {}


def _name_map(model_type: str) -> gguf.TensorNameMap:
    arch = _HF_ARCH.get(model_type)
    if arch is None:
        raise InputError("model_type", f"no GGUF name mapping for {model_type!r}",
                         f"supported: {', '.join(sorted(_HF_ARCH))}")
    if arch not in _NAME_MAPS:  # gguf's TensorNameMap is the converter's own table
        import gguf

        _NAME_MAPS[arch] = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch], 1)
    return _NAME_MAPS[arch]


def _split_hf(hf_name: str) -> tuple[str, int | None, int | None]:
    """Strip the per-expert index and the block number: (template, block, expert)."""
    expert = None
    m = _EXPERT_RE.search(hf_name)
    if m:
        expert = int(m.group(1))
        hf_name = hf_name[: m.start()] + ".experts." + hf_name[m.end():]
    hf_name = hf_name.replace("e_score_correction_bias", "e_score_correction.bias")
    block = None
    m = _BLOCK_NUM_RE.search(hf_name)
    if m:
        block = int(m.group(1))
        hf_name = hf_name[: m.start()] + ".0." + hf_name[m.end():]
    return hf_name, block, expert


def hf_to_gguf_name(hf_name: str, model_type: str = "llama") -> str | None:
    """GGUF tensor name for a Hugging Face tensor name, or None when the converter has none.

    Uses gguf's ``TensorNameMap`` (what convert_hf_to_gguf.py uses). A per-expert HF tensor
    (``model.layers.3.mlp.experts.7.up_proj.weight``) maps to the merged per-layer GGUF tensor
    (``blk.3.ffn_up_exps.weight``): GGUF stores all experts of a layer as one 3-D tensor.
    """
    if hf_name.endswith(".rotary_emb.inv_freq"):
        return None
    template, block, _ = _split_hf(_hf_rename(hf_name, model_type))
    nmap = _name_map(model_type)
    name = nmap.get_name(template, try_suffixes=(".weight", ".bias"))
    if name is None and model_type in _HF_RENAMES and "gate_up_proj" in template:
        # a fused gate+up the converter splits: it maps when its gate half does
        name = nmap.get_name(template.replace("gate_up_proj", "gate_proj"),
                             try_suffixes=(".weight", ".bias"))
    if name is None:
        return None
    if block is not None:
        name = name.replace("blk.0.", f"blk.{block}.", 1)
    return name


def hf_to_gguf_shapes(
    hf_shapes: Mapping[str, Sequence[int]],
    model_type: str = "llama",
    hparams: Mapping[str, object] | None = None,
) -> dict[str, tuple[int, ...]]:
    """Turn HF tensor shapes (PyTorch order, outermost first) into GGUF names and ggml ``ne``.

    * 2-D ``[out, in]`` becomes ``ne = (in, out)``; 1-D stays.
    * Per-expert tensors of one layer are merged: ``ne = (in, out, n_expert)``.
    * A fused ``gate_up_proj`` the converter keeps fused (Gemma 4 ``ffn_gate_up_exps``) stays
      one tensor.
    * gpt-oss ``experts.gate_up_proj`` (bf16 ``[E, in, 2*ff]`` or MXFP4 ``_blocks``
      ``[E, 2*ff, in/32, 16]``) splits into ``ffn_gate_exps`` and ``ffn_up_exps``; ``_scales``
      are part of the MXFP4 blocks and are dropped.
    * DeepSeek MLA ``kv_b_proj`` splits into ``attn_k_b`` ``(qk_nope, kv_lora_rank, n_head)`` and
      ``attn_v_b`` ``(kv_lora_rank, v_head_dim, n_head)`` as the converter does, when ``hparams``
      gives ``num_attention_heads``, ``qk_nope_head_dim`` and ``v_head_dim``.

    Names the converter does not map (rotary caches, vision towers, MTP extras) are skipped.
    """
    hp = hparams or {}
    out: dict[str, tuple[int, ...]] = {}
    experts: dict[str, dict[int, tuple[int, ...]]] = {}
    for hf_name, shape in hf_shapes.items():
        dims = tuple(int(d) for d in shape)
        hf_name = _hf_rename(hf_name, model_type)
        if hf_name.endswith("_scales") and ".experts." in hf_name:
            continue
        name_in = hf_name
        if hf_name.endswith(".rotary_emb.inv_freq"):
            continue  # a runtime cache, never converted
        if hf_name.endswith(".sinks"):
            name_in = hf_name + ".weight"
        elif ".experts." in hf_name and not hf_name.endswith((".weight", ".bias")) and (
                model_type != "gpt_oss"):
            name_in = hf_name + ".weight"
        if model_type == "gpt_oss" and ".experts." in hf_name:
            dims, name_in = _gpt_oss_expert(hf_name, dims)
        fused = hf_to_gguf_name(name_in, model_type) if "gate_up_proj" in name_in else None
        if fused is not None and "gate_up" in fused:
            _put(out, experts, name_in, dims, model_type)  # kept fused (Gemma 4 ffn_gate_up_exps)
            continue
        if "gate_up_proj" in name_in:
            half = dims  # gpt-oss shapes come back already split
            if model_type != "gpt_oss":  # fused [..., 2*ff, in] weight or [..., 2*ff] bias
                k = -1 if name_in.endswith(".bias") else -2
                half = dims[:k] + (dims[k] // 2,) + (dims[k + 1:] if k == -2 else ())
            for part in ("gate_proj", "up_proj"):
                _put(out, experts, name_in.replace("gate_up_proj", part), half, model_type)
            continue
        if name_in.endswith("kv_b_proj.weight") and all(
                k in hp for k in ("num_attention_heads", "qk_nope_head_dim", "v_head_dim")):
            n_head, nope, v_dim = (int(str(hp[k])) for k in (
                "num_attention_heads", "qk_nope_head_dim", "v_head_dim"))
            rank = dims[-1]
            _put(out, experts, name_in.replace("kv_b_proj", "k_b_proj"),
                 (n_head, rank, nope), model_type)
            _put(out, experts, name_in.replace("kv_b_proj", "v_b_proj"),
                 (n_head, v_dim, rank), model_type)
            continue
        _put(out, experts, name_in, dims, model_type)
    for gname, per_expert in experts.items():
        shapes = set(per_expert.values())
        if len(shapes) != 1:
            raise InputError("tensor shapes", f"experts of {gname} differ in shape",
                             "check the checkpoint")
        out[gname] = tuple(reversed(shapes.pop())) + (len(per_expert),)
    return out


def _gpt_oss_expert(hf_name: str, dims: tuple[int, ...]) -> tuple[tuple[int, ...], str]:
    """gpt-oss merged experts to ``[E, out, in]`` order with a ``.weight``/``.bias`` suffix."""
    div = 2 if "gate_up" in hf_name else 1  # gate and up are interleaved along "out"
    if hf_name.endswith("_blocks"):  # [E, out, in/32, 16 bytes of 32 fp4 values]
        return (dims[0], dims[1] // div, dims[2] * dims[3] * 2), hf_name[:-7] + ".weight"
    if hf_name.endswith("_bias"):  # [E, out]
        return (dims[0], dims[1] // div), hf_name[:-5] + ".bias"
    if len(dims) == 3:  # bf16 [E, in, out]
        return (dims[0], dims[2] // div, dims[1]), hf_name + ".weight"
    return dims, hf_name


def _put(out: dict[str, tuple[int, ...]], experts: dict[str, dict[int, tuple[int, ...]]],
         hf_name: str, dims: tuple[int, ...], model_type: str) -> None:
    gname = hf_to_gguf_name(hf_name, model_type)
    if gname is None:
        return
    expert = _split_hf(hf_name)[2]
    if expert is not None:
        experts.setdefault(gname, {})[expert] = dims
    else:
        out[gname] = tuple(reversed(dims))
