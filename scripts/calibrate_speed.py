"""Calibrate the speed model's efficiency constants on published measured speeds.

    python scripts/calibrate_speed.py --build   # shared speed.json -> tests/data/measured_speed.json
    python scripts/calibrate_speed.py           # fit the constants, print every case's error

``--build`` turns each record of the shared measurement file into a case: what vramplan needs to
model it (catalog model or a config, quantization, GPU key, engine options, host memory, depth and
prompt length) plus the record's source, excerpt and notes, or the reason it cannot be modelled.
The fit searches one factor per mechanism (GPU bandwidth, per-layer overhead, compute, host DRAM)
over a grid, minimizing the sum of squared log errors with a cap (so that a single outlier cannot
pull a constant); the winning values are copied into ``vramplan/speed.py`` by hand.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT.parent / "shared" / "measured" / "speed.json"
CASES = ROOT / "tests" / "data" / "measured_speed.json"

# --- configs of models outside the catalog (transcribed from the Hub config.json) -------------
HUB = "https://huggingface.co/{}/blob/main/config.json"
LLAMA2_7B = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
             "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 32, "vocab_size": 32000, "max_position_embeddings": 4096,
             "tie_word_embeddings": False, "torch_dtype": "float16"}
LLAMA2_70B = {**LLAMA2_7B, "hidden_size": 8192, "intermediate_size": 28672,
              "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8}
LLAMA32_3B = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 3072,
              "intermediate_size": 8192, "num_hidden_layers": 28, "num_attention_heads": 24,
              "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256,
              "max_position_embeddings": 131072, "tie_word_embeddings": True,
              "torch_dtype": "bfloat16"}
QWEN3_4B = {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "hidden_size": 2560,
            "intermediate_size": 9728, "num_hidden_layers": 36, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
            "max_position_embeddings": 40960, "tie_word_embeddings": True,
            "torch_dtype": "bfloat16"}
QWEN3_14B = {**QWEN3_4B, "hidden_size": 5120, "intermediate_size": 17408,
             "num_hidden_layers": 40, "num_attention_heads": 40, "tie_word_embeddings": False}
AWQ = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}

L3_8B = {"model": "meta-llama/Llama-3.1-8B",
         "model_note": "Meta-Llama-3-8B has the tensor shapes of Llama-3.1-8B (rope differs)"}
L3_70B = {"model": "meta-llama/Llama-3.1-70B",
          "model_note": "Meta-Llama-3-70B has the tensor shapes of Llama-3.1-70B"}
L2_7B = {"model": {"config": LLAMA2_7B, "config_source": HUB.format("meta-llama/Llama-2-7b-hf")}}
L2_70B = {"model": {"config": LLAMA2_70B,
                    "config_source": HUB.format("meta-llama/Llama-2-70b-hf")}}
Q30 = {"model": "Qwen/Qwen3-30B-A3B"}
OSS20 = {"model": "openai/gpt-oss-20b", "quant": "mxfp4_moe"}
OSS120 = {"model": "openai/gpt-oss-120b", "quant": "mxfp4_moe"}
BENCH = {"engine": "llamacpp", "prompt_tokens": 512, "gen_tokens": 512}
BENCH128 = {"engine": "llamacpp", "prompt_tokens": 512, "gen_tokens": 128}
DDR5 = {"kind": "DDR5-5600", "channels": 2,
        "note": "AM5 desktop, DDR5 speed not stated: typical dual-channel DDR5-5600"}

# record id -> case fields, or a string: the reason it cannot be modelled
MAPPING: dict[str, dict[str, Any] | str] = {
    "speed-001": {**L3_8B, **BENCH, "quant": "q4_k_m", "gpu": "rtx-3070"},
    "speed-002": {**L3_8B, **BENCH, "quant": "q4_k_m", "gpu": "rtx-3080-10gb"},
    "speed-003": "RTX 3080 Ti is not in the GPU catalog",
    "speed-004": {**L3_8B, **BENCH, "quant": "q4_k_m", "gpu": "rtx-4070-ti"},
    "speed-005": {**L3_8B, **BENCH, "quant": "q4_k_m", "gpu": "rtx-4080"},
    "speed-006": {**L3_8B, **BENCH, "quant": "fp16", "gpu": "rtx-4080"},
    "speed-007": {**L3_8B, **BENCH, "quant": "q4_k_m", "gpu": "rtx-3090"},
    "speed-008": {**L3_8B, **BENCH, "quant": "fp16", "gpu": "rtx-3090"},
    "speed-010": {**L3_8B, **BENCH, "quant": "fp16", "gpu": "rtx-4090"},
    "speed-011": {**L3_70B, **BENCH, "quant": "q4_k_m", "gpu": "rtx-3090", "gpu_count": 2},
    "speed-013": {**L3_70B, **BENCH, "quant": "q4_k_m", "gpu": "rtx-3090", "gpu_count": 4},
    "speed-014": {**L3_70B, **BENCH, "quant": "fp16", "gpu": "rtx-3090", "gpu_count": 6},
    "speed-015": {**L3_70B, **BENCH, "quant": "fp16", "gpu": "rtx-4090", "gpu_count": 8},
    "speed-016": {**L3_8B, **BENCH, "quant": "q4_k_m", "gpu": "m1", "metrics": ["decode"],
                  "gpu_note": "7-core M1: same 68.25 GB/s as the catalog's 8-core M1; its "
                  "compute is 7/8, so prefill is not compared"},
    "speed-017": {**L3_8B, **BENCH, "quant": "q4_k_m", "gpu": "m1-max"},
    "speed-018": {**L3_70B, **BENCH, "quant": "q4_k_m", "gpu": "m1-max"},
    "speed-019": {**L3_8B, **BENCH, "quant": "q4_k_m", "gpu": "m2-ultra"},
    "speed-021": {**L3_70B, **BENCH, "quant": "fp16", "gpu": "m2-ultra"},
    "speed-022": {**L3_8B, **BENCH, "quant": "q4_k_m", "gpu": "m3-max-64gb"},
    "speed-023": {**L3_70B, **BENCH, "quant": "q4_k_m", "gpu": "m3-max-64gb"},
    "speed-024": {**L2_7B, **BENCH128, "quant": "q4_0", "gpu": "a100-80gb-sxm",
                  "gpu_note": "'A100 80GB' (form factor not stated; SXM assumed)",
                  "length_note": "lengths not stated: llama-bench defaults pp512/tg128"},
    "speed-026": {**L2_7B, **BENCH128, "quant": "q4_0", "gpu": "h100-pcie",
                  "length_note": "lengths not stated: llama-bench defaults pp512/tg128"},
    "speed-027": {**L2_7B, **BENCH128, "quant": "fp16", "gpu": "h100-pcie",
                  "length_note": "lengths not stated: llama-bench defaults pp512/tg128"},
    "speed-029": {**L2_70B, **BENCH128, "quant": "q4_0", "gpu": "rtx-a6000",
                  "length_note": "lengths not stated: llama-bench defaults pp512/tg128"},
    "speed-030": {**L2_70B, **BENCH128, "quant": "q4_0", "gpu": "rtx-6000-ada",
                  "length_note": "lengths not stated: llama-bench defaults pp512/tg128"},
    "speed-031": {**OSS20, "engine": "llamacpp", "gpu": "dgx-spark", "prompt_tokens": 2048,
                  "gen_tokens": 32, "options": {"ubatch_size": 2048}},
    "speed-033": {**Q30, "engine": "llamacpp", "quant": "q8_0", "gpu": "dgx-spark",
                  "prompt_tokens": 2048, "gen_tokens": 32, "options": {"ubatch_size": 2048},
                  "model_note": "Qwen3-Coder-30B-A3B has the tensor shapes of Qwen3-30B-A3B"},
    "speed-034": {"model": "Qwen/Qwen2.5-7B-Instruct", "engine": "llamacpp", "quant": "q8_0",
                  "gpu": "dgx-spark", "prompt_tokens": 2048, "gen_tokens": 32,
                  "options": {"ubatch_size": 2048},
                  "model_note": "Qwen2.5-Coder-7B has the tensor shapes of Qwen2.5-7B"},
    "speed-035": "gemma-3 (5:1 sliding-window pattern) is not a supported architecture",
    "speed-036": {**OSS20, "engine": "llamacpp", "gpu": "dgx-spark", "batch": 32,
                  "depth_tokens": 528, "metrics": ["decode_total"],
                  "options": {"ubatch_size": 2048}},
    "speed-037": {**OSS120, "engine": "llamacpp", "gpu": "dgx-spark", "batch": 32,
                  "depth_tokens": 528, "metrics": ["decode_total"],
                  "options": {"ubatch_size": 2048}},
    "speed-039": {"model": "meta-llama/Llama-3.1-8B", **BENCH128, "quant": "q4_k_m",
                  "gpu": "rtx-3080-10gb", "gpu_note": "'RTX 3080' (10 GB assumed)",
                  "length_note": "lengths not stated: llama-bench defaults pp512/tg128"},
    "speed-040": {**L3_8B, **BENCH128, "quant": "q6_k", "gpu": "rtx-4090",
                  "length_note": "llama-server log, lengths not stated: short prompt assumed"},
    "speed-041": {**L3_8B, "engine": "llamacpp", "prompt_tokens": 512, "gen_tokens": 128,
                  "quant": "q4_0", "gpu": "rtx-3090", "backend": "Vulkan"},
    "speed-042": {**OSS20, **BENCH128, "gpu": "rtx-3090", "backend": "Vulkan"},
    "speed-043": "Radeon RX 6700 XT is not in the GPU catalog",
    "speed-044": "Radeon RX 6800 XT is not in the GPU catalog",
    "speed-046": {**OSS20, "engine": "llamacpp", "prompt_tokens": 128, "gen_tokens": 128,
                  "gpu": "rtx-pro-6000", "options": {"ubatch_size": 2048}},
    "speed-047": "file is 307.2 GiB for 672 B parameters: not a Q8_0 (that would be 664 GiB); "
                 "its tensor types are unknown",
    "speed-048": {"model": "meta-llama/Llama-3.1-8B", **BENCH128, "quant": "q4_k_m",
                  "gpu": "m1-max"},
    "speed-049": {"model": "meta-llama/Llama-3.1-8B", **BENCH128, "quant": "q4_k_m",
                  "gpu": "m4", "gpu_note": "Mac mini M4 16GB: 10-core GPU, 120 GB/s as the "
                  "catalog's M4 (32GB)"},
    "speed-050": {"model": {"config": LLAMA32_3B,
                            "config_source": HUB.format("meta-llama/Llama-3.2-3B-Instruct")},
                  **BENCH128, "quant": "q4_k_m", "gpu": "m1-ultra",
                  "length_note": "tg from the README summary (tg128 assumed)"},
    "speed-052": "gemma-3 (5:1 sliding-window pattern) is not a supported architecture",
    "speed-053": {**L3_70B, **BENCH128, "quant": "q4_k_m", "gpu": "ryzen-ai-max-395",
                  "backend": "Vulkan"},
    "speed-056": "Qwen3.5-35B-A3B is not in the model catalog (hybrid attention, no config)",
    "speed-057": "Qwen3.5-35B-A3B is not in the model catalog (hybrid attention, no config)",
    "speed-058": "Qwen3.5-35B-A3B is not in the model catalog (hybrid attention, no config)",
    "speed-060": "Qwen3.5-122B-A10B is not in the model catalog",
    "speed-061": "64 GB of host RAM for a ~61 GiB model: page-cache thrashing, not bandwidth; "
                 "the source itself calls the run an outlier",
    "speed-062": {**Q30, "engine": "llamacpp", "quant": "iq4_xs", "gpu": "rtx-4080",
                  "prompt_tokens": 512, "gen_tokens": 128, "host": DDR5,
                  "options": {"override_tensor": r"blk\.3[4-9]\.ffn=CPU,blk\.4[0-9]\.ffn=CPU"},
                  "model_note": "custom mix (IQ4_XS experts, Q5_K attention) priced as IQ4_XS: "
                  "15.41 GiB vs the stated 15.4 GiB"},
    "speed-063": "llama.cpp configuration not described in the source (layers or experts "
                 "on which device unknown)",
    "speed-065": "KTransformers: an engine vramplan does not model (AMX/AVX-512 expert kernels)",
    "speed-067": "KTransformers: an engine vramplan does not model",
    "speed-068": "KTransformers: an engine vramplan does not model",
    "speed-069": "KTransformers + SGLang: an engine vramplan does not model",
    "speed-070": "GLM-4.7-Flash is not in the model catalog",
    "speed-071": "Llama-4-Maverick is not in the model catalog",
    "speed-072": "GPU model and host memory type not stated",
    "speed-074": "KTransformers: an engine vramplan does not model",
    "speed-076": {**Q30, "engine": "llamacpp", "quant": "q8_0", "gpu": "rtx-4090",
                  "gpu_count": 0, "prompt_tokens": 512, "gen_tokens": 128,
                  "metrics": ["decode"], "host": {"kind": "DDR4-2666", "channels": 12,
                                                  "note": "2 sockets x 6 channels"}},
    "speed-077": {**Q30, "engine": "llamacpp", "quant": "iq4_xs", "gpu": "rtx-4090",
                  "gpu_count": 0, "prompt_tokens": 512, "gen_tokens": 128,
                  "metrics": ["decode"], "host": DDR5},
    "speed-078": {**Q30, "engine": "llamacpp", "quant": "iq4_xs", "gpu": "rtx-4090",
                  "gpu_count": 0, "prompt_tokens": 512, "gen_tokens": 128,
                  "metrics": ["decode"], "host": DDR5, "backend": "ik_llama.cpp"},
    "speed-079": "GLM-4.7-Flash is not in the model catalog",
    "speed-080": "GLM-4.7-Flash is not in the model catalog",
    "speed-081": {"model": {"config": {**QWEN3_14B, "quantization_config": AWQ},
                            "config_source": HUB.format("Qwen/Qwen3-14B-AWQ")},
                  "engine": "vllm", "gpu": "a100-80gb-sxm", "prompt_tokens": 16000,
                  "depth_tokens": 16100, "metrics": ["decode_tpot", "ttft"],
                  "gpu_note": "'A100 80GB' (SXM assumed)", "options": {"enforce_eager": True}},
    "speed-083": {"model": {"base": "deepseek-ai/DeepSeek-R1", "quantization_config": AWQ},
                  "engine": "vllm", "gpu": "h100-sxm", "gpu_count": 8, "tp": 8,
                  "prompt_tokens": 128, "depth_tokens": 192, "metrics": ["decode_tpot"],
                  "model_note": "DeepSeek-R1-0528-AWQ: DeepSeek-R1 shapes with AWQ 4-bit"},
    "speed-084": "GPU count and precision not stated",
    "speed-085": {"model": {"config": QWEN3_4B, "config_source": HUB.format("Qwen/Qwen3-4B")},
                  "engine": "vllm", "gpu": "rtx-4090", "prompt_tokens": 128,
                  "depth_tokens": 192, "metrics": ["decode_tpot"]},
    "speed-086": "Llama-3.2-90B-Vision (mllama cross-attention) is not in the model catalog",
    "speed-087": {**OSS120, "quant": None, "engine": "vllm", "gpu": "mi300x", "batch": 64,
                  "prompt_tokens": 1024, "depth_tokens": 1536, "metrics": ["decode_tpot"]},
    "speed-088": {**OSS120, "quant": None, "engine": "vllm", "gpu": "mi300x", "batch": 96,
                  "prompt_tokens": 1024, "depth_tokens": 1536, "metrics": ["decode_tpot"]},
    "speed-090": {**OSS120, "quant": None, "engine": "vllm", "gpu": "mi300x", "batch": 256,
                  "prompt_tokens": 1024, "depth_tokens": 1536, "metrics": ["decode_tpot"]},
    "speed-091": {"model": "deepseek-ai/DeepSeek-R1", "engine": "sglang", "gpu": "h200",
                  "gpu_count": 8, "tp": 8, "batch": 8, "prompt_tokens": 1024,
                  "depth_tokens": 1536, "metrics": ["decode_tpot"]},
    "speed-092": {"model": "deepseek-ai/DeepSeek-R1", "engine": "sglang", "gpu": "h200",
                  "gpu_count": 8, "tp": 8, "batch": 16, "prompt_tokens": 1024,
                  "depth_tokens": 1536, "metrics": ["decode_tpot"]},
    "speed-094": {"model": "deepseek-ai/DeepSeek-R1", "engine": "sglang", "gpu": "h200",
                  "gpu_count": 8, "tp": 8, "batch": 64, "prompt_tokens": 1024,
                  "depth_tokens": 1536, "metrics": ["decode_tpot"]},
    "speed-095": {**OSS120, "quant": None, "engine": "vllm", "gpu": "dgx-spark",
                  "prompt_tokens": 128, "depth_tokens": 512, "metrics": ["decode"]},
    "speed-096": "NVFP4 is not a quantization vramplan prices; end-to-end rate includes prefill",
    "speed-097": {**OSS120, "quant": None, "engine": "vllm", "gpu": "dgx-spark",
                  "prompt_tokens": 128, "depth_tokens": 512, "metrics": ["decode"]},
    "speed-099": {"model": {"config": QWEN3_4B, "config_source": HUB.format("Qwen/Qwen3-4B")},
                  "engine": "vllm", "quant": "fp8", "gpu": "rtx-4090", "prompt_tokens": 128,
                  "depth_tokens": 512, "metrics": ["decode"]},
    "speed-100": "Ling-3.0-flash is not in the model catalog",
}


# Documented misses: (record id, metric or "*") -> the mechanism the model leaves out. These are
# kept as xfail tests with their number and left out of the fit.
LEGACY = ("Dec 2023 llama.cpp build (LLaMA 2 table): before CUDA graphs (llama.cpp PR #6766, "
          "May 2024) each token paid ~4-5 ms of CPU launch overhead, and its prefill kernels "
          "reached ~10-25 % of datacenter tensor peak")
MULTI = ("llama.cpp layer split over several GPUs with a 512-token prompt: the pipeline "
         "stalls between devices and Q4_K multi-GPU matmuls ran slower than F16 ones in that "
         "build (6x3090 F16 reached 579 tok/s where 2x3090 Q4_K_M reached 357)")
APPLE = ("Apple GPUs differ by generation in the share of SoC bandwidth their GPU reaches "
         "(M1 Max/Ultra ~45 % for Q4_K, M2 Ultra F16 / M3 Max ~85 %); one Metal constant is "
         "fitted across them")
MISSES: dict[tuple[str, str], str] = {
    ("speed-024", "*"): LEGACY,
    ("speed-026", "*"): LEGACY,
    ("speed-027", "*"): LEGACY,
    ("speed-029", "prefill_tokens_per_s"): LEGACY,
    ("speed-030", "prefill_tokens_per_s"): LEGACY,
    ("speed-083", "decode_tokens_per_s"): "vLLM runs AWQ DeepSeek MoE through moe_wna16 "
    "kernels, far from the bandwidth roofline; MLA decode overhead at TP=8",
    ("speed-087", "*"): "ROCm MXFP4 MoE kernels on MI300X and continuous batching: TPOT includes "
    "prefill chunks of arriving requests",
    ("speed-088", "*"): "ROCm MXFP4 MoE kernels on MI300X and continuous batching: TPOT includes "
    "prefill chunks of arriving requests",
    ("speed-090", "*"): "ROCm MXFP4 MoE kernels on MI300X and continuous batching: TPOT includes "
    "prefill chunks of arriving requests",
    ("speed-037", "*"): "routing is not uniform: 32 sequences touch ~38 % of gpt-oss-120b's "
    "experts per layer where uniform routing predicts 64 %",
    ("speed-095", "*"): "this container reads fewer bytes than the checkpoint: 59.5 tok/s x "
    "~5.0 GB per token (bf16 attention + 4 of 128 MXFP4 experts) would exceed GB10's 273 GB/s, "
    "so it quantizes attention/head too (not described)",
    ("speed-097", "*"): "NVIDIA's 26.02 vLLM image on GB10 runs MXFP4 MoE through a slower "
    "fallback path: the same machine reaches 59.5 tok/s with CUTLASS kernels (speed-095)",
    ("speed-011", "prefill_tokens_per_s"): MULTI,
    ("speed-013", "prefill_tokens_per_s"): MULTI,
    ("speed-033", "prefill_tokens_per_s"): "MoE prefill with 128 small experts (~128 tokens "
    "each per 2048-token ubatch) runs below dense GEMM efficiency",
    ("speed-040", "prefill_tokens_per_s"): "llama-server log with an unstated, likely short, "
    "prompt: the prefill rate of a short prompt is launch-bound",
    ("speed-042", "prefill_tokens_per_s"): "Vulkan backend: no cuBLAS FP16-accumulate GEMM; its "
    "MoE matmul path is far slower than CUDA's",
    ("speed-046", "prefill_tokens_per_s"): "a 128-token prompt over 32 experts: ~16 tokens per "
    "expert, per-ubatch launch and routing overhead dominate",
    ("speed-053", "prefill_tokens_per_s"): "Vulkan (RADV) on RDNA 3.5 reaches ~20 % of the "
    "WMMA peak the catalog gives",
    ("speed-062", "prefill_tokens_per_s"): "the CPU computes the offloaded experts for part of "
    "the prompt instead of copying them to the GPU per ubatch (the model assumes the copy)",
    ("speed-004", "prefill_tokens_per_s"): "Q4_K prefill on the RTX 4070 Ti runs at ~75 % of "
    "the rate per peak TFLOP that the other Ada/Ampere cards reach; no mechanism modelled",
    ("speed-017", "decode_tokens_per_s"): APPLE,
    ("speed-018", "*"): APPLE,
    ("speed-021", "decode_tokens_per_s"): APPLE,
    ("speed-023", "decode_tokens_per_s"): APPLE,
    ("speed-049", "decode_tokens_per_s"): APPLE,
    ("speed-050", "decode_tokens_per_s"): APPLE,
    ("speed-076", "*"): "two sockets, Windows, no NUMA pinning: cross-socket traffic caps the "
    "reads far below 12-channel peak",
}


def _measured(rec: dict[str, Any], metrics: list[str]) -> dict[str, float]:
    m = rec["measured"]
    out: dict[str, float] = {}
    for k in metrics:
        if k == "decode" and m.get("tg_tps"):
            out["decode_tokens_per_s"] = float(m["tg_tps"])
        elif k == "prefill" and m.get("pp_tps"):
            out["prefill_tokens_per_s"] = float(m["pp_tps"])
        elif k == "decode_total" and m.get("output_throughput_tps"):
            out["decode_tokens_per_s_total"] = float(m["output_throughput_tps"])
        elif k == "decode_tpot" and m.get("tpot_ms"):
            out["decode_tokens_per_s"] = 1000.0 / float(m["tpot_ms"])
        elif k == "ttft" and m.get("ttft_ms"):
            out["ttft_s"] = float(m["ttft_ms"]) / 1000.0
    return out


def build() -> list[dict[str, Any]]:
    """Records + MAPPING -> cases (every record kept; unmodelled ones say why)."""
    records = json.loads(RECORDS.read_text())["records"]
    cases = []
    for rec in records:
        rid = rec["id"]
        base = {"id": rid, "source": rec["source"], "excerpt": rec["excerpt"],
                "notes": rec.get("notes", ""), "engine_as_recorded": rec["engine"],
                "model_as_recorded": rec["model"], "quant_as_recorded": rec["quant"],
                "hardware_as_recorded": rec["hardware"]}
        spec = MAPPING.get(rid, "not mapped yet")
        if isinstance(spec, str):
            cases.append({**base, "modelled": False, "unmodelled_reason": spec})
            continue
        case = {**base, "modelled": True, "gpu_count": 1, "tp": 1, "batch": 1, "options": {},
                "host": None, **spec}
        gen = case.pop("gen_tokens", None)
        if "depth_tokens" not in case:
            case["depth_tokens"] = (gen or 0) // 2  # tg at depth 0: mean depth over the run
        metrics = case.pop("metrics", ["decode", "prefill"])
        case["measured"] = _measured(rec, metrics)
        misses = {m: why for (i, m), why in MISSES.items() if i == rid}
        if misses:
            case["expected_misses"] = {m: misses.get(m, misses.get("*", ""))
                                       for m in case["measured"] if m in misses or "*" in misses}
        if not case["measured"]:
            case.update(modelled=False, unmodelled_reason="no comparable figure")
        cases.append(case)
    return cases


# --- evaluating cases -------------------------------------------------------------------------

def load_cases(path: Path = CASES) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text())["cases"])


def _load_model(m: Any) -> Any:
    from vramplan import api

    if isinstance(m, str):
        return api.load(m, allow_hub=False)
    if "base" in m:
        from vramplan.model.catalog import find

        entry = find(m["base"])
        assert entry is not None, m["base"]
        cfg = entry.load_config()
        cfg["quantization_config"] = m["quantization_config"]
        cfg["_name_or_path"] = m["base"] + " (requantized)"
        return api.load(cfg)
    return api.load({**m["config"], "_name_or_path": m["config_source"]})


_LOADED: dict[str, Any] = {}


def setup_from_case(case: dict[str, Any]) -> Any:
    """The ``SpeedSetup`` a modelled case describes."""
    from vramplan.hardware.gpus import get_gpu
    from vramplan.hardware.host import host_memory
    from vramplan.kv import resolve_kv_dtype
    from vramplan.placement import Parallelism
    from vramplan.api import _priced as priced
    from vramplan.speed import SpeedSetup
    from vramplan.units import GIB

    key = json.dumps(case["model"], sort_keys=True)
    if key not in _LOADED:
        _LOADED[key] = _load_model(case["model"])
    lm = _LOADED[key]
    qm = priced(lm, case.get("quant"))
    h = case.get("host")
    host = host_memory(256 * GIB, h["kind"], h["channels"]) if h else None
    kvd = resolve_kv_dtype(case.get("kv_dtype", "auto"), lm.spec)
    if qm.scheme.kv_cache_dtype:
        kvd = resolve_kv_dtype(qm.scheme.kv_cache_dtype, lm.spec)
    tp = int(case.get("tp", 1))
    n = int(case.get("gpu_count", 1))
    return SpeedSetup(qm, get_gpu(case["gpu"]), n, Parallelism(tp, max(1, n // tp) if
                      case["engine"] not in ("llamacpp", "ollama") else 1),
                      case["engine"], int(case.get("batch", 1)), int(case["depth_tokens"]),
                      int(case.get("prompt_tokens", 512)), kvd, host, case.get("options", {}),
                      host_kind_known=bool(h and "note" not in h))


def model_values(case: dict[str, Any]) -> dict[str, float]:
    from vramplan.speed import speed_dict

    d = speed_dict(setup_from_case(case))
    out = {}
    for k in ("decode_tokens_per_s", "prefill_tokens_per_s", "ttft_s",
              "decode_tokens_per_s_total"):
        v = d.get(k, {}) or {}
        if v.get("value") is not None:
            out[k] = float(v["value"])
    return out


def errors(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per compared figure: model / measured - 1."""
    rows = []
    for c in cases:
        if not c["modelled"]:
            continue
        got = model_values(c)
        for k, want in c["measured"].items():
            if k in got:
                rows.append({"id": c["id"], "metric": k, "model": got[k], "measured": want,
                             "error": got[k] / want - 1,
                             "miss": c.get("expected_misses", {}).get(k)})
    return rows


GRID = {
    "GPU_BANDWIDTH_EFFICIENCY": [0.6 + 0.02 * i for i in range(19)],
    "METAL_BANDWIDTH_EFFICIENCY": [0.4 + 0.02 * i for i in range(26)],
    "LAYER_OVERHEAD_S": [i * 5e-6 for i in range(0, 25)],
    "HOST_BANDWIDTH_EFFICIENCY": [0.3 + 0.025 * i for i in range(25)],
    "HOST_LAYER_OVERHEAD_S": [i * 25e-6 for i in range(0, 25)],
    "EAGER_LAYER_OVERHEAD_S": [i * 25e-6 for i in range(0, 25)],
    "ALLREDUCE_HOP_LATENCY_S": [i * 0.25e-6 for i in range(0, 25)],
    "COMPUTE_EFFICIENCY": [0.2 + 0.025 * i for i in range(29)],
    "METAL_COMPUTE_EFFICIENCY": [0.4 + 0.025 * i for i in range(21)],
}
_DECODE = ("GPU_BANDWIDTH_EFFICIENCY", "METAL_BANDWIDTH_EFFICIENCY", "LAYER_OVERHEAD_S",
           "HOST_BANDWIDTH_EFFICIENCY", "HOST_LAYER_OVERHEAD_S", "ALLREDUCE_HOP_LATENCY_S",
           "EAGER_LAYER_OVERHEAD_S")


def _loss(cases: list[dict[str, Any]], metrics: tuple[str, ...]) -> float:
    total = 0.0
    for r in errors(cases):
        if r["metric"] in metrics and (not r["miss"] or r["miss"] == APPLE):  # Apple: fit all
            total += min(math.log(1 + r["error"]) ** 2, math.log(2) ** 2)  # capped
    return total


def fit(cases: list[dict[str, Any]], rounds: int = 2) -> dict[str, float]:
    """Coordinate descent over GRID: decode constants on decode figures, compute on prefill."""
    from vramplan import speed

    use = [c for c in cases if c["modelled"] and not c.get("exclude_from_fit")]
    for _ in range(rounds):
        for name, values in GRID.items():
            metrics = ("decode_tokens_per_s", "decode_tokens_per_s_total") if name in _DECODE \
                else ("prefill_tokens_per_s", "ttft_s")
            best = min(values, key=lambda v: (setattr(speed, name, v), _loss(use, metrics))[1])
            setattr(speed, name, best)
    return {k: getattr(speed, k) for k in GRID}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", action="store_true", help="rebuild the cases file first")
    ap.add_argument("--no-fit", action="store_true", help="only print errors at the constants")
    args = ap.parse_args()
    if args.build:
        cases = build()
        CASES.write_text(json.dumps({"generated_by": "scripts/calibrate_speed.py --build",
                                     "records": str(RECORDS.relative_to(ROOT.parent)),
                                     "cases": cases}, indent=1) + "\n")
        print(f"wrote {len(cases)} cases to {CASES.relative_to(ROOT)}")
    cases = load_cases()
    if not args.no_fit:
        best = fit(cases)
        print("fitted:", ", ".join(f"{k} = {v:g}" for k, v in best.items()))
    rows = errors(cases)
    for r in rows:
        print(f"{r['id']:10s} {r['metric']:28s} model {r['model']:10.2f} measured "
              f"{r['measured']:10.2f}  error {r['error']:+7.1%}{'  (documented miss)' if r['miss'] else ''}")
    print(f"documented misses: {sum(1 for r in rows if r['miss'])}")
    rows = [r for r in rows if not r["miss"]]
    errs = [abs(r["error"]) for r in rows]
    if errs:
        print(f"\n{len(errs)} comparisons: median |error| {statistics.median(errs):.1%}, "
              f"worst {max(errs):.1%}, within 25%: {sum(e <= 0.25 for e in errs)}")
        for name, keys in (("decode", ("decode_tokens_per_s", "decode_tokens_per_s_total")),
                           ("prefill", ("prefill_tokens_per_s",)), ("all", None)):
            logs = sorted(-math.log(1 + r["error"]) for r in rows
                          if keys is None or r["metric"] in keys)
            if logs:
                q = [logs[int(p * (len(logs) - 1))] for p in (0.1, 0.9)]
                print(f"{name}: measured/model 10th-90th percentile "
                      f"{[round(math.exp(x), 2) for x in q]} over {len(logs)}")


if __name__ == "__main__":
    main()
