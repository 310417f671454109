"""Weight quantization: exact stored bytes of every tensor under a scheme.

A scheme comes either from the checkpoint (``quantization_config`` in config.json, or ModelOpt's
``hf_quant_config.json``; it always wins) or from ``--quant`` applied to an unquantized model.
Byte counts follow each format's real storage layout (the tensors a checkpoint stores); see each
``*_bytes`` function for its source.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping
from typing import Any

from vramplan.errors import ConfigError, InputError
from vramplan.inventory import TensorGroup, TensorInventory

# The priced-model types live in quant/types.py (a leaf, so gguf_pricing needs no import of this
# module); re-exported here, where callers have always found them.
from vramplan.quant.types import NONE as NONE
from vramplan.quant.types import QuantizedModel as QuantizedModel
from vramplan.quant.types import QuantScheme as QuantScheme
from vramplan.quant.types import WeightEntry as WeightEntry

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "fp8": 1, "int8": 1}
# Roles whose tensors stay in the model dtype under every weight-only scheme unless the
# checkpoint says otherwise (vLLM: VocabParallelEmbedding/ParallelLMHead unquantized by default,
# MoE routers built as ReplicatedLinear with quant_config=None, e.g. vllm/model_executor/models/
# qwen3_moe.py; AutoAWQ/GPTQModel skip lm_head by default).
UNQUANTIZED_ROLES = frozenset({"embedding", "lm_head", "router", "norm", "vision", "audio"})


# ---------------------------------------------------------------- per-format byte formulas

def awq_bytes(out_f: int, in_f: int, bits: int, group: int) -> int:
    """AWQ GEMM layout: qweight int32 [K, N*b/32], qzeros int32 [K/g, N*b/32], scales fp16 [K/g, N].

    bytes = K*N*b/8 + G*N*b/8 + G*N*2 with G = ceil(K/g). K = in_features, N = out_features.
    Source: vllm/model_executor/layers/quantization/awq.py (AWQLinearMethod.create_weights).
    """
    g = in_f if group in (-1, 0) else group
    n_groups = math.ceil(in_f / g)
    n_packed = math.ceil(out_f * bits / 32) * 4
    return in_f * n_packed + n_groups * n_packed + n_groups * out_f * 2


def gptq_bytes(out_f: int, in_f: int, bits: int, group: int) -> int:
    """GPTQ layout: qweight int32 [K*b/32, N], qzeros int32 [G, N*b/32], scales fp16 [G, N], g_idx int32 [K].

    bytes = K*N*b/8 + G*N*b/8 + G*N*2 + 4K with G = ceil(K/g) (g = -1: G = 1).
    Source: vllm/model_executor/layers/quantization/gptq.py (GPTQLinearMethod.create_weights).
    """
    n_groups = 1 if group in (-1, 0) else math.ceil(in_f / group)
    qweight = math.ceil(in_f * bits / 32) * 4 * out_f
    qzeros = n_groups * math.ceil(out_f * bits / 32) * 4
    return qweight + qzeros + n_groups * out_f * 2 + in_f * 4


def fp8_bytes(out_f: int, in_f: int, strategy: str, block: tuple[int, int] | None) -> int:
    """FP8 E4M3 weight (1 B/elem) + scales.

    tensor: one fp32 weight_scale (vLLM Fp8LinearMethod); channel: fp32 per output row
    (compressed-tensors strategy "channel"); block: fp32 weight_scale_inv [ceil(N/bo), ceil(K/bi)]
    (DeepSeek-V3 / Qwen3-FP8 checkpoints, vllm/model_executor/layers/quantization/fp8.py).
    """
    n = out_f * in_f
    if strategy == "block" and block:
        return n + math.ceil(out_f / block[0]) * math.ceil(in_f / block[1]) * 4
    if strategy == "channel":
        return n + out_f * 4
    return n + 4


def int8_bytes(out_f: int, in_f: int) -> int:
    """INT8 W8A8 (and bitsandbytes LLM.int8): int8 weight + fp32 scale per output row (SCB)."""
    return out_f * in_f + out_f * 4


def bnb4_bytes(numel: int, double_quant: bool) -> int:
    """bitsandbytes NF4/FP4: 2 values per byte; absmax per 64-element block.

    Without double quant absmax is fp32 (4 B/block). With it absmax is uint8 per block plus an
    fp32 nested absmax per 256 blocks and a 256-entry fp32 code book.
    Source: bitsandbytes/functional.py quantize_4bit (blocksize 64), QuantState.
    """
    blocks = math.ceil(numel / 64)
    packed = math.ceil(numel / 2)
    if double_quant:
        return packed + blocks + math.ceil(blocks / 256) * 4 + 256 * 4 + 4 + 16 * 4
    return packed + blocks * 4 + 16 * 4


def mxfp4_bytes(numel: int) -> int:
    """OCP MXFP4: 4-bit E2M1 values, one uint8 E8M0 scale per 32 elements: numel*17/32 bytes.

    Source: gpt-oss checkpoint layout (*_blocks uint8 [.., K/32, 16], *_scales uint8 [.., K/32]).
    """
    return math.ceil(numel / 2) + math.ceil(numel / 32)


# ---------------------------------------------------------------- scheme parsing

def scheme_from_config(qc: Mapping[str, Any]) -> QuantScheme:
    """Read a checkpoint's quantization_config (or ModelOpt hf_quant_config.json)."""
    if "quantization" in qc and "producer" in qc:  # ModelOpt hf_quant_config.json
        q = qc["quantization"]
        algo = str(q.get("quant_algo", "")).upper()
        excl = tuple(str(x) for x in q.get("exclude_modules") or ())
        kv = "fp8" if str(q.get("kv_cache_quant_algo", "")).upper() == "FP8" else None
        if algo == "FP8":
            return QuantScheme("fp8", 8, fp8_strategy="tensor", skip_modules=excl,
                               kv_cache_dtype=kv, source="hf_quant_config.json",
                               label="fp8 (ModelOpt, per-tensor)")
        raise ConfigError("hf_quant_config.json quant_algo", f"{algo!r} is not supported yet",
                          "use a FP8 ModelOpt checkpoint or pass --quant")
    method = str(qc.get("quant_method", "")).lower()
    src = "checkpoint quantization_config"
    skip = tuple(str(x) for x in (qc.get("modules_to_not_convert") or qc.get("ignore") or ()))
    if method == "fp8":
        block = qc.get("weight_block_size")
        if block:
            b = (int(block[0]), int(block[1]))
            return QuantScheme("fp8", 8, fp8_block=b, fp8_strategy="block", skip_modules=skip,
                               source=src, label=f"fp8 block {b[0]}x{b[1]}")
        return QuantScheme("fp8", 8, skip_modules=skip, source=src, label="fp8 per-tensor")
    if method in ("awq", "gptq"):
        bits = int(qc.get("bits", qc.get("w_bit", 4)))
        group = int(qc.get("group_size", qc.get("q_group_size", 128)))
        lm = bool(qc.get("lm_head", False))
        return QuantScheme(method, bits, group_size=group, desc_act=bool(qc.get("desc_act")),
                           quantize_lm_head=lm, skip_modules=skip, source=src,
                           label=f"{method} {bits}-bit g{group}")
    if method == "bitsandbytes":
        if qc.get("load_in_4bit"):
            qtype = str(qc.get("bnb_4bit_quant_type", "fp4"))
            dq = bool(qc.get("bnb_4bit_use_double_quant", False))
            skip = tuple(str(x) for x in (qc.get("llm_int8_skip_modules") or ()))
            return QuantScheme(f"bnb-{qtype}", 4, double_quant=dq, skip_modules=skip, source=src,
                               label=f"bitsandbytes {qtype}{' double-quant' if dq else ''}")
        return QuantScheme("bnb-int8", 8, source=src, label="bitsandbytes LLM.int8")
    if method == "mxfp4":
        return QuantScheme("mxfp4", 4, skip_modules=skip, only_experts=True, source=src,
                           label="mxfp4 (MoE experts)")
    if method == "compressed-tensors":
        return _compressed_tensors(qc, src)
    raise ConfigError("config.json quantization_config.quant_method",
                      f"{method!r} is not supported", "supported: fp8, awq, gptq, bitsandbytes, "
                      "mxfp4, compressed-tensors; or override with --quant")


def _compressed_tensors(qc: Mapping[str, Any], src: str) -> QuantScheme:
    groups = qc.get("config_groups") or {}
    if not isinstance(groups, Mapping) or not groups:
        raise ConfigError("quantization_config.config_groups", "is empty",
                          "check the compressed-tensors config")
    w = next(iter(groups.values())).get("weights") or {}
    bits = int(w.get("num_bits", 8))
    typ = str(w.get("type", "int"))
    strategy = str(w.get("strategy", "tensor"))
    ignore = tuple(str(x) for x in qc.get("ignore") or ())
    kv = qc.get("kv_cache_scheme")
    kv_dtype = "fp8" if isinstance(kv, Mapping) and kv.get("num_bits") == 8 else None
    if typ == "float" and bits == 8:
        block = w.get("block_structure")
        if strategy == "block" and block:
            b = (int(block[0]), int(block[1]))
            return QuantScheme("fp8", 8, fp8_block=b, fp8_strategy="block", skip_modules=ignore,
                               kv_cache_dtype=kv_dtype, source=src, label="fp8 block (c-t)")
        return QuantScheme("fp8", 8, fp8_strategy=strategy, skip_modules=ignore,
                           kv_cache_dtype=kv_dtype, source=src,
                           label=f"fp8 per-{strategy} (compressed-tensors)")
    if typ == "int" and bits == 8:
        return QuantScheme("int8", 8, skip_modules=ignore, source=src, label="int8 w8a8 (c-t)")
    if typ == "int" and bits == 4:
        group = int(w.get("group_size") or 128)
        return QuantScheme("gptq", 4, group_size=group, skip_modules=ignore, source=src,
                           label=f"int4 g{group} (compressed-tensors)")
    raise ConfigError("quantization_config.config_groups.weights",
                      f"{typ} {bits}-bit is not supported", "override with --quant")


_GGUF_FTYPES = ("q8_0", "q6_k", "q5_k_m", "q5_k_s", "q5_0", "q5_1", "q4_k_m", "q4_k_s", "q4_0",
                "q4_1", "q3_k_l", "q3_k_m", "q3_k_s", "q2_k", "iq4_xs", "iq4_nl", "iq3_xxs",
                "iq3_s", "iq2_xxs", "iq2_xs", "iq2_s", "iq1_s", "iq1_m", "mxfp4_moe", "tq1_0",
                "tq2_0")
QUANT_CHOICES = ("bf16", "fp16", "fp32", "fp8", "fp8-block", "int8", "awq", "gptq", "gptq-8bit",
                 "nf4", "nf4-dq", "fp4", "bnb-int8", "mxfp4") + _GGUF_FTYPES
_AWQ_RE = re.compile(r"^(awq|gptq)(?:-(?:int)?(\d)(?:bit)?)?(?:-g(-?\d+))?(-act)?$")


def scheme_from_name(name: str) -> QuantScheme:
    """Parse ``--quant``: bf16, fp8, fp8-block, int8, awq, gptq-8bit, gptq-4bit-g32, nf4, q4_k_m..."""
    n = name.strip().lower().replace("_", "-") if not name.lower().startswith(("q", "iq", "tq",
                                                                            "mxfp4-moe")) else \
        name.strip().lower()
    if n in ("bf16", "bfloat16", "fp16", "float16", "fp32", "float32", "none", "auto"):
        return QuantScheme("none", 16, label=n, source="--quant")
    if n == "fp8":
        return QuantScheme("fp8", 8, label="fp8 per-tensor (online)")
    if n == "fp8-block":
        return QuantScheme("fp8", 8, fp8_block=(128, 128), fp8_strategy="block",
                           label="fp8 block 128x128")
    if n in ("int8", "w8a8"):
        return QuantScheme("int8", 8, label="int8 w8a8")
    if n in ("nf4", "fp4", "nf4-dq", "fp4-dq"):
        base = n.split("-")[0]
        dq = n.endswith("-dq")
        return QuantScheme(f"bnb-{base}", 4, double_quant=dq,
                           label=f"bitsandbytes {base}{' double-quant' if dq else ''}")
    if n in ("bnb-int8", "llm.int8", "llm-int8"):
        return QuantScheme("bnb-int8", 8, label="bitsandbytes LLM.int8")
    if n == "mxfp4":
        return QuantScheme("mxfp4", 4, label="mxfp4")
    m = _AWQ_RE.match(n)
    if m:
        method, bits_s, group_s, act = m.groups()
        bits = int(bits_s or 4)
        group = int(group_s or 128)
        if bits not in (2, 3, 4, 8):
            raise InputError("--quant", f"{bits}-bit {method} is not a real format",
                             "use 4 or 8 bits")
        return QuantScheme(method, bits, group_size=group, desc_act=bool(act),
                           label=f"{method} {bits}-bit g{group}")
    if n.replace("-", "_") in _GGUF_FTYPES:
        ft = n.replace("-", "_").upper()
        return QuantScheme("gguf", 0, gguf_ftype=ft, label=f"GGUF {ft}")
    raise InputError("--quant", f"unknown quantization {name!r}",
                     f"choose one of: {', '.join(QUANT_CHOICES)}")


# ---------------------------------------------------------------- applying a scheme

def _skipped(name: str, patterns: tuple[str, ...]) -> bool:
    """modules_to_not_convert matching: exact module, a dotted prefix, a glob, a 're:' regex,
    or a bare component name such as "gate" (AutoAWQ style)."""
    module = name.rsplit(".", 1)[0] if name.endswith((".weight", ".bias")) else name
    parts = module.split(".")
    for p in patterns:
        if p.startswith("re:"):
            if re.match(p[3:], module):
                return True
        elif "*" in p:
            if fnmatch.fnmatch(module, p) or fnmatch.fnmatch(module, p + ".*"):
                return True
        elif module == p or module.startswith(p + ".") or module.endswith("." + p) or (
                "." not in p and p in parts):
            return True
    return False


def _linear_dims(g: TensorGroup) -> tuple[int, int, int]:
    """(experts, out_features, in_features) of a linear group. Stacked [E, in, out] (transformers
    GptOssExperts / Llama4TextExperts) or per-expert [out, in] with count."""
    if g.stacked_experts:
        return g.stacked_experts, g.shape[2], g.shape[1]
    return g.count, g.shape[0], g.shape[1]


def _quantizes(g: TensorGroup, s: QuantScheme) -> bool:
    if s.method == "none" or not g.linear:
        return False
    if g.role == "lm_head":
        if not s.quantize_lm_head:
            return False
    elif g.role in UNQUANTIZED_ROLES:
        return False
    if s.only_experts and g.role != "routed_expert":
        return False
    name = g.name.replace("{e}", "0")
    return not (s.skip_modules and _skipped(name, s.skip_modules))


def tensor_bytes(g: TensorGroup, s: QuantScheme, dtype_bytes: int) -> tuple[int, str]:
    """Stored bytes of one tensor group under scheme ``s`` and the format label."""
    if s.method == "gguf":
        raise InputError("--quant", "GGUF mixes are priced by the GGUF module",
                         "use quantize_model()")
    if not _quantizes(g, s):
        return g.numel * dtype_bytes, {2: "bf16", 4: "fp32", 1: "int8"}.get(dtype_bytes, "16-bit")
    n_exp, out_f, in_f = _linear_dims(g)
    m = s.method
    if m == "awq":
        per, fmt = awq_bytes(out_f, in_f, s.bits, s.group_size), f"awq-{s.bits}bit-g{s.group_size}"
    elif m == "gptq":
        per, fmt = gptq_bytes(out_f, in_f, s.bits, s.group_size), \
            f"gptq-{s.bits}bit-g{s.group_size}"
    elif m == "fp8":
        per = fp8_bytes(out_f, in_f, s.fp8_strategy, s.fp8_block)
        fmt = f"fp8-{s.fp8_strategy}"
    elif m in ("int8", "bnb-int8"):
        per, fmt = int8_bytes(out_f, in_f), m
    elif m in ("bnb-nf4", "bnb-fp4"):
        per, fmt = bnb4_bytes(out_f * in_f, s.double_quant), m + ("-dq" if s.double_quant else "")
    elif m == "mxfp4":
        per, fmt = mxfp4_bytes(out_f * in_f), "mxfp4"
    else:
        raise InputError("--quant", f"unknown method {m!r}", "see vramplan estimate --help")
    return per * n_exp, fmt


def quantize_model(inv: TensorInventory, scheme: QuantScheme) -> QuantizedModel:
    """Price every tensor of the inventory under ``scheme`` (GGUF mixes via quant.gguf_pricing)."""
    dtype_bytes = inv.spec.bytes_per_param
    if scheme.method == "gguf":
        from vramplan.quant.gguf_pricing import gguf_entries

        gg_entries, gg_mtp = gguf_entries(inv, scheme)
        return QuantizedModel(inv, scheme, gg_entries, gg_mtp)
    entries: list[WeightEntry] = []
    for g in inv.tensors:
        b, fmt = tensor_bytes(g, scheme, dtype_bytes)
        entries.append(WeightEntry(g, b, fmt))
    mtp = sum(tensor_bytes(g, scheme, dtype_bytes)[0] for g in inv.mtp_tensors)
    return QuantizedModel(inv, scheme, tuple(entries), mtp)
