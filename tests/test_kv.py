"""KV cache bytes per token (16-bit) on the real configs, and KV properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import catalog_files, load_config
from vramplan.kv import kv_cache_bytes, resolve_kv_dtype, row_bytes, summarize
from vramplan.model.hf_config import spec_from_config


def _spec(stem: str):  # type: ignore[no-untyped-def]
    return spec_from_config(load_config(stem), stem)


@pytest.mark.parametrize(("stem", "per_token"), [
    ("meta-llama__Llama-3.1-8B", 131_072),  # 2 x 32 layers x 8 kv x 128 x 2 B
    ("Qwen__Qwen3-235B-A22B", 192_512),  # 2 x 94 x 4 x 128 x 2 B (GQA: 4 KV heads, not 64)
    ("deepseek-ai__DeepSeek-V3", 70_272),  # MLA: 61 x (512 + 64) x 2 B, no x2
])
def test_kv_bytes_per_token(stem: str, per_token: int) -> None:
    assert summarize(_spec(stem), "bf16").bytes_per_token == per_token


def test_gpt_oss_sliding_layers_capped_at_window() -> None:
    s = summarize(_spec("openai__gpt-oss-20b"), "bf16")
    # 12 full layers x 2 x 8 x 64 x 2 B grow with context; 12 sliding layers hold 128 tokens
    assert s.bytes_per_token == 12 * 2048
    assert s.window_bytes_per_sequence == 12 * 2048 * 128
    spec = _spec("openai__gpt-oss-20b")
    assert kv_cache_bytes(spec, 100_000, 1, "bf16") == 12 * 2048 * 100_000 + 12 * 2048 * 128


def test_gemma2_sliding_layers_capped_at_window() -> None:
    s = summarize(_spec("google__gemma-2-9b-it"), "bf16")
    per_layer = 2 * 8 * 256 * 2
    assert s.full_layers == s.windowed_layers == 21
    assert s.bytes_per_token == 21 * per_layer
    assert s.window_bytes_per_sequence == 21 * per_layer * 4096
    spec = _spec("google__gemma-2-9b-it")
    assert kv_cache_bytes(spec, 8192, 1, "bf16") == 21 * per_layer * (8192 + 4096)


def test_qwen3_next_linear_layers_have_constant_state() -> None:
    spec = _spec("Qwen__Qwen3-Next-80B-A3B-Instruct")
    s = summarize(spec, "bf16")
    assert (s.full_layers, s.linear_layers) == (12, 36)
    assert s.bytes_per_token == 12 * 2 * 2 * 256 * 2
    assert kv_cache_bytes(spec, 1000, 1, "bf16") - kv_cache_bytes(spec, 999, 1, "bf16") == \
        s.bytes_per_token


def test_quantized_kv_types_use_exact_block_sizes() -> None:
    assert row_bytes(128, "q8_0") == 4 * 34
    assert row_bytes(128, "q4_0") == 4 * 18
    assert row_bytes(128, "fp8") == 128
    spec = _spec("meta-llama__Llama-3.1-8B")
    assert summarize(spec, "q8_0").bytes_per_token == 32 * 2 * (8 * 128 // 32) * 34


def test_kv_tp_replicates_heads_beyond_kv_count() -> None:
    spec = _spec("Qwen__Qwen3-235B-A22B")  # 4 KV heads
    assert summarize(spec, "bf16", tp=2).bytes_per_token == 192_512 // 2
    assert summarize(spec, "bf16", tp=8).bytes_per_token == 192_512 // 4  # 1 head per rank
    mla = _spec("deepseek-ai__DeepSeek-V3")
    assert summarize(mla, "bf16", tp=8).bytes_per_token == 70_272  # latent replicated


def test_auto_kv_dtype_is_model_dtype() -> None:
    assert resolve_kv_dtype("auto", _spec("Qwen__Qwen3-8B")) == "bf16"


SPECS = [spec_from_config(load_config(p.stem), p.stem) for p in catalog_files()]


@settings(max_examples=60, deadline=None)
@given(i=st.integers(0, len(SPECS) - 1), ctx=st.integers(1, 300_000), extra=st.integers(0, 50_000),
       batch=st.integers(1, 64), dtype=st.sampled_from(["bf16", "fp8", "q8_0", "q4_0"]))
def test_more_context_never_needs_less_kv(i: int, ctx: int, extra: int, batch: int,
                                          dtype: str) -> None:
    spec = SPECS[i]
    assert kv_cache_bytes(spec, ctx + extra, batch, dtype) >= kv_cache_bytes(spec, ctx, batch,
                                                                              dtype)
    assert kv_cache_bytes(spec, ctx, batch + 1, dtype) >= kv_cache_bytes(spec, ctx, batch, dtype)


def test_cross_attention_and_no_mixer_layers() -> None:
    """A cross-attention layer caches its encoder tokens' K/V whatever the text length
    (8 kv heads x (128 + 128) x 2 B = 4,096 B per encoder token; 1,601 image tokens ->
    6,557,696 B per sequence); a layer without a mixer caches nothing."""
    from dataclasses import replace as _replace

    from vramplan.kv import cached_tokens, kv_cache_bytes
    from vramplan.kv import summarize as _summarize
    from vramplan.model.spec import AttentionSpec, LayerSpec, MlpSpec

    base = spec_from_config(load_config("meta-llama__Llama-3.1-8B"))
    full = base.layers[0]
    cross = AttentionSpec(kind="cross", num_heads=32, num_kv_heads=8, head_dim=128, v_head_dim=128,
                          encoder_tokens=1601)
    none = AttentionSpec(kind="none", num_heads=32, num_kv_heads=8, head_dim=128, v_head_dim=128)
    layers = (full, LayerSpec(1, cross, full.mlp), LayerSpec(2, none, MlpSpec("dense", 14336)))
    spec = _replace(base, layers=layers)
    assert cached_tokens(cross, 10) == 1601 and cached_tokens(none, 10) == 0
    s = _summarize(spec, "bf16")
    assert s.bytes_per_token == 131_072 // 32  # the one full layer
    assert s.state_bytes_per_sequence == 6_557_696
    for ctx in (1, 100, 10_000):
        assert kv_cache_bytes(spec, ctx, 2, "bf16") == 2 * (4096 * ctx + 6_557_696)
