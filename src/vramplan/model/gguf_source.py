"""A local GGUF file as a model source: header -> HF-style config -> ModelSpec, and exact weights.

``load_gguf_source(path)`` reads only the header (``model/gguf_reader.py``) and returns a
``ModelSource`` with origin ``"gguf"`` whose ``config`` is a config.json-like dict synthesized from
the GGUF metadata, so the normal ``spec_from_config`` path works (per-layer patterns such as
sliding-window layers are passed as ``layer_types``). Pricing from the header's tensor table is
the price stage's (``quant/gguf_weights.py``); ``local_header`` reads the header for it.

Metadata keys follow llama.cpp's ``LLM_KV`` names (``{arch}.block_count``, ``.embedding_length``,
``.attention.head_count_kv``, ``.attention.sliding_window``, ``.attention.kv_lora_rank``, ...;
ggml-org/llama.cpp src/llama-arch.cpp). Hooks elsewhere: ``model/source.py`` routes a ``.gguf``
path here and ``api._priced`` calls ``quant.gguf_weights.priced_for_source`` for origin ``"gguf"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vramplan.errors import HeaderError, InputError
from vramplan.model.gguf_reader import GgufHeader, read_gguf_header
from vramplan.model.model_source import ModelSource

__all__ = ["ARCH_MODEL_TYPES", "GGUF_PATH_KEY", "load_gguf_source", "local_header",
           "swa_layers", "synth_config"]

GGUF_PATH_KEY = "_gguf_path"  # config key carrying the file path to the pricing hook
# llama.cpp arch name -> transformers model_type (the family vramplan.model.hf_config knows)
ARCH_MODEL_TYPES: dict[str, str] = {
    "llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "qwen2moe": "qwen2_moe",
    "qwen3moe": "qwen3_moe", "qwen3next": "qwen3_next", "deepseek2": "deepseek_v3",
    "gpt-oss": "gpt_oss", "gemma": "gemma", "gemma2": "gemma2", "phi3": "phi3",
    "glm4moe": "glm4_moe", "llama4": "llama4_text", "mistral3": "mistral",
    # Qwen3.5 / Qwen3-VL text models (families/qwen_vl.py); llama.cpp convert_hf_to_gguf
    # Qwen3_5TextModel / Qwen3_5MoeTextModel derive from Qwen3NextModel (same ssm.* keys)
    "qwen35": "qwen3_5_text", "qwen35moe": "qwen3_5_moe_text", "qwen3vl": "qwen3_vl_text",
    "qwen3vlmoe": "qwen3_vl_moe_text",
}
# llama.cpp archs whose recurrent layers are Gated DeltaNet (ssm.* keys as written by Qwen3NextModel)
_GDN_ARCHS = frozenset({"qwen3next", "qwen35", "qwen35moe"})
# llama.cpp's hard-coded sliding-window patterns (llama_model::load_hparams set_swa_pattern):
# layer il is SWA iff il % n < n - 1. chunked = Llama 4's chunked-local attention.
_SWA_PATTERN: dict[str, tuple[int, str]] = {
    "gemma2": (2, "sliding"), "gemma3": (6, "sliding"), "gpt-oss": (2, "sliding"),
    "cohere2": (4, "sliding"), "llama4": (4, "chunked"),
}
def _first(v: int | tuple[int, ...] | None) -> int | None:
    if isinstance(v, tuple):
        nz = [x for x in v if x]
        return max(nz) if nz else None
    return v


def swa_layers(h: GgufHeader, n_layer: int) -> list[bool]:
    """Per layer: is it a sliding-window (or chunked) layer, as llama.cpp decides."""
    pat = h.sliding_window_pattern
    if isinstance(pat, tuple) and len(pat) >= n_layer:
        return [bool(x) for x in pat[:n_layer]]
    n = pat if isinstance(pat, int) and not isinstance(pat, bool) and pat > 0 else \
        _SWA_PATTERN.get(h.arch, (0, ""))[0]
    if not n or not (h.sliding_window or h.arch == "llama4"):
        return [False] * n_layer
    return [il % n < n - 1 for il in range(n_layer)]


def _shape(h: GgufHeader, name: str) -> tuple[int, ...] | None:
    for t in h.tensors:
        if t.name == name:
            return t.shape_ne
    return None


def _full_attention_interval(h: GgufHeader) -> int:
    """``{arch}.full_attention_interval`` (llama.cpp LLM_KV_FULL_ATTENTION_INTERVAL), default 4."""
    v = h.metadata.get(f"{h.arch}.full_attention_interval")
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 4


def synth_config(h: GgufHeader, path: str = "") -> dict[str, Any]:
    """A config.json-like dict from GGUF metadata (only what vramplan's spec reader uses)."""
    def need(value: int | None, key: str) -> int:
        if not value:
            raise HeaderError(f"MODEL {path or 'GGUF'}",
                              f"GGUF header has no {h.arch}.{key}",
                              "this is not a text-generation model GGUF that llama.cpp can run")
        return value

    names = {t.name for t in h.tensors}
    n_layer_all = need(h.n_layer, "block_count")
    nextn = h.nextn_predict_layers or 0
    n_layer = max(1, n_layer_all - nextn)
    n_embd = need(h.n_embd, "embedding_length")
    n_head = need(_first(h.n_head), "attention.head_count")
    n_head_kv = _first(h.n_head_kv) or n_head
    if n_head % n_head_kv:
        n_head_kv = 1 if h.kv_lora_rank else n_head
    n_expert = h.expert_count or 0
    arch = h.arch
    model_type = ARCH_MODEL_TYPES.get(arch, arch or "llama")
    if arch == "llama" and n_expert > 1:
        model_type = "mixtral"
    n_ff = _first(h.n_ff) or h.n_ff_exp or 4 * n_embd
    cfg: dict[str, Any] = {
        "model_type": model_type, "architectures": [f"GGUF:{arch}"],
        "hidden_size": n_embd, "num_hidden_layers": n_layer,
        "num_attention_heads": n_head, "num_key_value_heads": n_head_kv,
        "head_dim": h.key_length or n_embd // n_head, "intermediate_size": n_ff,
        "vocab_size": need(h.n_vocab, "vocab_size (or tokenizer.ggml.tokens)"),
        "max_position_embeddings": h.n_ctx_train or 4096,
        "tie_word_embeddings": "output.weight" not in names, "torch_dtype": "bfloat16",
        "_name_or_path": h.name or Path(path).stem, GGUF_PATH_KEY: path,
    }
    if n_expert > 1:
        cfg.update(num_experts=n_expert, n_routed_experts=n_expert, num_local_experts=n_expert,
                   num_experts_per_tok=h.expert_used_count or 1,
                   moe_intermediate_size=h.n_ff_exp or n_ff)
        if model_type in ("mixtral", "gpt_oss"):
            cfg["intermediate_size"] = h.n_ff_exp or n_ff
        sh = _shape(h, f"blk.{n_layer - 1}.ffn_up_shexp.weight")
        if sh is not None and len(sh) >= 2:
            cfg["shared_expert_intermediate_size"] = sh[1]
            cfg["n_shared_experts"] = max(1, sh[1] // (h.n_ff_exp or sh[1]))
        cfg["first_k_dense_replace"] = h.leading_dense_block_count or 0
    if h.kv_lora_rank:
        rope = h.rope_dim or 64
        k_mla = h.key_length_mla or (h.key_length or rope + 128)
        cfg.update(kv_lora_rank=h.kv_lora_rank, q_lora_rank=h.q_lora_rank,
                   qk_rope_head_dim=rope, qk_nope_head_dim=max(1, k_mla - rope),
                   v_head_dim=h.value_length_mla or h.value_length or 128)
    swa = swa_layers(h, n_layer)
    if any(swa):
        kind = _SWA_PATTERN.get(arch, (0, "sliding"))[1]
        win = h.sliding_window or 8192
        cfg["sliding_window"] = win
        if kind == "chunked":
            cfg["attention_chunk_size"] = win
        cfg["layer_types"] = [f"{kind}_attention" if s else "full_attention" for s in swa]
    if arch in _GDN_ARCHS and h.ssm_state_size:
        v_heads = h.metadata.get(f"{arch}.ssm.time_step_rank")
        nv = v_heads if isinstance(v_heads, int) and v_heads > 0 else (h.ssm_group_count or 1)
        cfg.update(linear_num_key_heads=h.ssm_group_count or 1, linear_num_value_heads=nv,
                   linear_key_head_dim=h.ssm_state_size,
                   linear_value_head_dim=max(1, (h.ssm_inner_size or nv) // nv),
                   linear_conv_kernel_dim=h.ssm_conv_kernel or 4,
                   full_attention_interval=_full_attention_interval(h))
    return cfg


def load_gguf_source(path: str | Path) -> ModelSource:
    """Read a local ``.gguf`` header; a truncated or corrupt file raises one HeaderError line."""
    p = Path(path).expanduser()
    try:
        h = read_gguf_header(p)
    except HeaderError as exc:
        raise HeaderError(f"MODEL {p.name}", exc.problem, exc.fix) from None
    if h.split_count and h.split_count > 1:
        raise HeaderError(f"MODEL {p.name}", f"is shard 1 of {h.split_count} of a split GGUF",
                          "merge the shards with llama-gguf-split --merge, then pass the "
                          "merged file")
    cfg = synth_config(h, str(p))
    return ModelSource(str(cfg["_name_or_path"]), "gguf", str(p), cfg)


def local_header(source: ModelSource, quant: str | None) -> tuple[GgufHeader, str]:
    """The header of a local GGUF source and its path, read again for pricing (never re-priced:
    ``--quant`` is refused, the file is already quantized)."""
    if quant:
        raise InputError("--quant", f"{Path(source.source).name} is a GGUF file, already "
                         "quantized", "drop --quant (the file's own tensor types are used)")
    path = str(source.config.get(GGUF_PATH_KEY) or source.source)
    try:
        return read_gguf_header(path), path
    except HeaderError as exc:
        raise HeaderError(f"MODEL {Path(path).name}", exc.problem, exc.fix) from None
