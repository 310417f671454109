"""Shared option parsing: sizes, token counts, and the engine flags (engine spelling)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from vramplan.errors import InputError


class SizeType(click.ParamType[int, Any]):
    """``24GiB``, ``80GB`` -> int bytes (vramplan.units.parse_bytes)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from vramplan.units import parse_bytes

        if isinstance(value, int):
            return value
        try:
            return parse_bytes(str(value), f"--{param.name if param else 'size'}")
        except InputError as e:
            self.fail(str(e), param, ctx)


class TokensType(click.ParamType[int, Any]):
    """``8192``, ``32k`` -> int tokens."""

    name = "tokens"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from vramplan.units import parse_tokens

        if isinstance(value, int):
            return value
        try:
            return parse_tokens(str(value), f"--{param.name if param else 'context'}")
        except InputError as e:
            self.fail(str(e), param, ctx)


SIZE = SizeType()
TOKENS = TokensType()

# Engine flags, spelled as each engine spells them; passed to the engine model as
# ``engine_options[<python name>]`` only when given. (flag, python name, type, help)
ENGINE_FLAGS: tuple[tuple[str, str, Any, str], ...] = (
    ("--gpu-memory-utilization", "gpu_memory_utilization", float,
     "vLLM: fraction of total GPU memory (default 0.92 in current vLLM, 0.9 before)."),
    ("--max-model-len", "max_model_len", TOKENS, "vLLM: context per request."),
    ("--max-num-seqs", "max_num_seqs", int, "vLLM: max concurrent sequences."),
    ("--max-num-batched-tokens", "max_num_batched_tokens", int, "vLLM: tokens per step."),
    ("--block-size", "block_size", int, "vLLM: KV block size in tokens (default 16)."),
    ("--enforce-eager", "enforce_eager", bool, "vLLM: no CUDA graphs."),
    ("--enable-expert-parallel", "enable_expert_parallel", bool, "vLLM: expert parallel."),
    ("--cpu-offload-gb", "cpu_offload_gb", float, "vLLM: GiB of weights per GPU in host RAM."),
    ("--mamba-cache-dtype", "mamba_cache_dtype", str, "vLLM: Mamba conv state dtype (auto)."),
    ("--mamba-ssm-cache-dtype", "mamba_ssm_cache_dtype", str,
     "vLLM: Mamba SSM state dtype (auto; Nemotron-H: float32)."),
    ("--ctx-size", "ctx_size", TOKENS, "llama.cpp: n_ctx (0 = trained context)."),
    ("--n-gpu-layers", "n_gpu_layers", int, "llama.cpp: layers on the GPU (-ngl)."),
    ("--override-tensor", "override_tensor", str, "llama.cpp: -ot regex=buffer type."),
    ("--n-cpu-moe", "n_cpu_moe", int, "llama.cpp: experts of the first N layers on the CPU."),
    ("--cpu-moe", "cpu_moe", bool, "llama.cpp: all experts on the CPU."),
    ("--cache-type-k", "cache_type_k", str, "llama.cpp: K cache type (f16, q8_0, q4_0)."),
    ("--cache-type-v", "cache_type_v", str, "llama.cpp: V cache type."),
    ("--flash-attn", "flash_attn", click.Choice(["on", "off", "auto"]), "llama.cpp: FA."),
    ("--ubatch-size", "ubatch_size", int, "llama.cpp: physical batch (default 512)."),
    ("--batch-size", "batch_size", int, "llama.cpp: logical batch (default 2048)."),
    ("--parallel", "parallel", int, "llama.cpp: slots (-np)."),
    ("--no-mmap", "no_mmap", bool, "llama.cpp: load weights into anonymous RAM."),
    ("--mem-fraction-static", "mem_fraction_static", float, "SGLang: weights + KV share."),
    ("--chunked-prefill-size", "chunked_prefill_size", int, "SGLang: prefill chunk tokens."),
    ("--cuda-graph-max-bs", "cuda_graph_max_bs", int, "SGLang: largest CUDA-graph batch."),
    ("--max-total-tokens", "max_total_tokens", int, "SGLang: cap on the KV pool tokens."),
    ("--max-running-requests", "max_running_requests", int, "SGLang: concurrent requests."),
    ("--page-size", "page_size", int, "SGLang: KV page size in tokens."),
    ("--swa-full-tokens-ratio", "swa_full_tokens_ratio", float, "SGLang: SWA/full pool ratio."),
    ("--disable-cuda-graph", "disable_cuda_graph", bool, "SGLang: no CUDA graphs."),
    ("--enable-multimodal", "enable_multimodal", bool, "SGLang: load the tower of Llama 4 / "
     "Gemma 3 (off by default for them)."),
    ("--mamba-ssm-dtype", "mamba_ssm_dtype", click.Choice(["float32", "bfloat16", "float16"]),
     "SGLang: Mamba SSM state dtype (float32)."),
    ("--mamba-full-memory-ratio", "mamba_full_memory_ratio", float,
     "SGLang: Mamba state pool / KV pool memory ratio (0.9)."),
    ("--max-mamba-cache-size", "max_mamba_cache_size", int, "SGLang: Mamba state slots."),
    ("--attn-implementation", "attn_implementation", click.Choice(["sdpa", "eager",
     "flash_attention_2"]), "transformers: attention kernel."),
    ("--device-map", "device_map", str, "transformers: device_map (default auto)."),
    ("--prompt-tokens", "prompt_tokens", TOKENS, "transformers: prompt length of the prefill."),
    ("--num-ctx", "num_ctx", TOKENS, "Ollama: context (default by VRAM tier)."),
    ("--num-parallel", "num_parallel", int, "Ollama: OLLAMA_NUM_PARALLEL."),
    ("--text-only", "text_only", bool, "Serve the text model alone: no vision/audio tower "
     "(vLLM --limit-mm-per-prompt all 0, SGLang --language-only, llama.cpp no --mmproj)."),
    ("--limit-mm-per-prompt", "limit_mm_per_prompt", str,
     "vLLM: items per prompt, e.g. '{\"image\":0,\"video\":0}' (0 disables a tower)."),
    ("--mm-encoder-tp-mode", "mm_encoder_tp_mode", click.Choice(["weights", "data"]),
     "vLLM: encoder split over TP ranks (weights) or replicated (data)."),
    ("--skip-mm-profiling", "skip_mm_profiling", bool, "vLLM: profile the language model only."),
    ("--mmproj", "mmproj", str, "llama.cpp: the multimodal projector GGUF (loads the tower)."),
    ("--no-mmproj-offload", "no_mmproj_offload", bool, "llama.cpp: keep the mmproj on the CPU."),
)


def engine_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a command with every engine flag (collected into ``engine_options``)."""
    for flag, name, typ, help_ in reversed(ENGINE_FLAGS):
        if typ is bool:
            fn = click.option(flag, name, is_flag=True, default=None, help=help_)(fn)
        else:
            fn = click.option(flag, name, type=typ, default=None, help=help_)(fn)
    return fn


def collect_engine_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the engine flags out of a command's kwargs; keep only those given."""
    out = {}
    for _, name, _, _ in ENGINE_FLAGS:
        v = kwargs.pop(name, None)
        if v is not None:
            out[name] = v
    return out


class RamKindType(click.ParamType[str, Any]):
    """``ddr5-6400`` -> ``DDR5-6400`` (a ``hardware.host.MEMORY_KINDS`` key); else InputError."""

    name = "kind"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from vramplan.hardware.host import memory_kind

        return memory_kind(str(value))


# Kept in step with hardware/host.py:MEMORY_KINDS by tests/test_host_options.py (importing it
# here would cost the CLI's start-up time).
RAM_KINDS_HELP = ("DDR4-2666, DDR4-3200, DDR5-4800, DDR5-5600, DDR5-6000, DDR5-6400, LPDDR5-6400, "
                  "LPDDR5X-7500, LPDDR5X-8000, LPDDR5X-8533")


def host_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--ram-kind``, ``--ram-channels``, ``--pcie-gen``: the host, for offload speed."""
    fn = click.option("--pcie-gen", "pcie_gen", type=int, default=None, metavar="3..6",
                      help="PCIe generation of the GPU slots (default: the GPU's own, else 4); "
                      "a GPU links at the lower of the two.")(fn)
    fn = click.option("--ram-channels", "ram_channels", type=int, default=None, metavar="1..24",
                      help="Populated 64-bit memory channels (default 2: a desktop; servers 8-12 "
                      "per socket).")(fn)
    return click.option("--ram-kind", "ram_kind", type=RamKindType(), default=None,
                        help=f"Host memory kind, case-insensitive: {RAM_KINDS_HELP} (default "
                        "DDR5-5600). Unified-memory devices ignore the host options.")(fn)
