"""Gemma 3 / Gemma 3n / Gemma 4 families: exact parameters, layer layout and KV bytes.

Ground truth: transformers 5.25.0 on the meta device (``/work/parity_all.json``,
``../shared/models/SOURCES.md``). Gemma-3n: the parity script failed because TimmWrapperModel
needs timm + Pillow; with them installed Gemma3nForConditionalGeneration builds: 7,818,517,072
parameters, Gemma3nForCausalLM(text_config) 6,835,235,568. The constructed Gemma-4 config's
numbers come from the same venv (Gemma4ForConditionalGeneration / AutoModelForCausalLM).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vramplan.errors import ConfigError
from vramplan.inventory import build_inventory
from vramplan.kv import kv_cache_bytes, layer_bytes_per_token, summarize
from vramplan.model.hf_config import spec_from_config
from vramplan.model.spec import ModelSpec

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "models"
DATA = Path(__file__).resolve().parent / "data" / "configs"

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/models not present")


def shared(stem: str) -> dict[str, Any]:
    return dict(json.loads((SHARED / f"{stem}.json").read_text()))


def spec_of(cfg: dict[str, Any], name: str = "t") -> ModelSpec:
    return spec_from_config(cfg, name)


# stem -> (whole model params, text-only params, persistent buffers)
EXACT = {
    "google__gemma-3-1b-it": (999_885_952, 999_885_952, 0),
    "google__gemma-3-4b-it": (4_299_915_632, 3_880_099_328, 0),
    "google__gemma-3-12b-it": (12_187_079_280, 11_765_788_416, 0),
    "google__gemma-4-26B-A4B": (25_805_933_872, 25_233_141_760, 2_334),
    "google__gemma-3n-E4B": (7_818_517_072, 6_835_235_568, 0),
}


@needs_shared
@pytest.mark.parametrize("stem", sorted(EXACT))
def test_exact_params(stem: str) -> None:
    inv = build_inventory(spec_of(shared(stem), stem))
    whole, text, buffers = EXACT[stem]
    assert inv.params_total == whole
    assert inv.params_text == text
    assert inv.buffers_total == buffers


def test_constructed_gemma4_ple_kv_sharing_clipped() -> None:
    """Gemma4Config defaults + KV sharing (10 layers), double-wide MLP, k_eq_v with one global KV
    head, clipped-linear vision + default audio tower: 6,110,286,624 whole, 5,632,788,992 text,
    2,494 buffer values = 30 layer_scalar + 16 layers x 7 clipped linears x 4 (vision) +
    2 x 768 (std_bias, std_scale) + 12 layers x 10 clipped linears x 4 (audio)."""
    cfg = json.loads((DATA / "google__gemma-4-defaults-ple-kvshare.json").read_text())
    s = spec_of(cfg)
    inv = build_inventory(s)
    assert inv.params_total == 6_110_286_624
    assert inv.params_text == 5_632_788_992
    assert inv.buffers_total == 2_494
    # layers 20..29 reuse: sliding -> 19 (last own sliding), full -> 17 (last own full)
    kinds = [layer.attention.kind for layer in s.layers]
    assert [i for i, k in enumerate(kinds) if k == "full"] == [5, 11, 17, 23, 29]
    shared_with = [layer.attention.kv_shared_with for layer in s.layers]
    assert shared_with[:20] == [None] * 20
    assert shared_with[23] == 17 and shared_with[29] == 17 and shared_with[20] == 19
    # double-wide MLP only on the shared layers
    assert s.layers[19].mlp.intermediate_size == 9216 and s.layers[20].mlp.intermediate_size == 18432
    # own full layers 5, 11, 17: 1 global KV head x 512 x (K+V) x 2 B = 2048 B each
    assert summarize(s, "bf16").bytes_per_token == 3 * 2048


# ------------------------------------------------------------------ KV bytes, worked by hand

@needs_shared
def test_kv_gemma3_1b() -> None:
    """26 layers, sliding_window_pattern 6 -> full at 5, 11, 17, 23 (4), sliding 22 (window 512).
    Per layer and token: 1 KV head x 256 x (K+V) x 2 B = 1,024 B.
    Growth 4 x 1,024 = 4,096 B/token; windows 22 x 1,024 x 512 = 11,534,336 B per sequence."""
    s = spec_of(shared("google__gemma-3-1b-it"))
    assert [i for i, layer in enumerate(s.layers) if layer.attention.kind == "full"] == [5, 11, 17, 23]
    kv = summarize(s, "bf16")
    assert layer_bytes_per_token(s.layers[0].attention, "bf16") == 1_024
    assert kv.bytes_per_token == 4_096
    assert kv.window_bytes_per_sequence == 11_534_336
    assert kv_cache_bytes(s, 32_768, 1, "bf16") == 4_096 * 32_768 + 11_534_336


@needs_shared
def test_kv_gemma3_12b() -> None:
    """48 layers -> 8 full, 40 sliding (window 1024). 8 KV heads x 256 x 2 x 2 B = 8,192 B per
    layer and token: growth 8 x 8,192 = 65,536 B/token; windows 40 x 8,192 x 1,024 = 335,544,320 B."""
    s = spec_of(shared("google__gemma-3-12b-it"))
    kv = summarize(s, "bf16")
    assert (kv.full_layers, kv.windowed_layers) == (8, 40)
    assert kv.bytes_per_token == 65_536
    assert kv.window_bytes_per_sequence == 335_544_320
    assert s.towers[0].tokens_per_item == 256  # mm_tokens_per_image
    # without the Gemma 3 layout (every layer full) the cache would be 6x larger per token
    assert kv.bytes_per_token_all_layers == 48 * 8_192


@needs_shared
def test_kv_gemma4_26b_a4b() -> None:
    """30 layers, full at 5, 11, 17, 23, 29. Sliding: 8 KV heads x head_dim 256 x 2 x 2 B = 8,192 B;
    full: num_global_key_value_heads 2 x global_head_dim 512 x 2 x 2 B = 4,096 B (K and V both
    cached: V is normed without scale and without RoPE, so it differs from K).
    Growth 5 x 4,096 = 20,480 B/token; windows 25 x 8,192 x 1,024 = 209,715,200 B."""
    s = spec_of(shared("google__gemma-4-26B-A4B"))
    full = s.layers[5].attention
    assert (full.kind, full.num_kv_heads, full.head_dim) == ("full", 2, 512)
    assert layer_bytes_per_token(full, "bf16") == 4_096
    assert layer_bytes_per_token(s.layers[0].attention, "bf16") == 8_192
    kv = summarize(s, "bf16")
    assert kv.bytes_per_token == 20_480
    assert kv.window_bytes_per_sequence == 209_715_200
    m = s.layers[0].mlp
    assert (m.kind, m.num_experts, m.top_k, m.expert_intermediate_size,
            m.shared_intermediate_size) == ("moe", 128, 8, 704, 2112)


@needs_shared
def test_kv_gemma3n_e4b_sharing() -> None:
    """35 layers, full at 4, 9, ..., 34; the last 15 (20..34) reuse the cache of layer 18
    (sliding) or 19 (full) and store none. Own-cache layers 0..19: 4 full, 16 sliding (window 512).
    Per layer and token: 2 KV heads x 256 x 2 x 2 B = 2,048 B.
    Growth 4 x 2,048 = 8,192 B/token; windows 16 x 2,048 x 512 = 16,777,216 B; at 4,096 tokens
    8,192 x 4,096 + 16,777,216 = 50,331,648 B (all 35 layers would be 7 x 2,048 growth)."""
    s = spec_of(shared("google__gemma-3n-E4B"))
    src = [layer.attention.kv_shared_with for layer in s.layers]
    assert src[:20] == [None] * 20
    assert src[20] == 18 and src[24] == 19 and src[34] == 19 and src[33] == 18
    kv = summarize(s, "bf16")
    assert kv.bytes_per_token == 8_192
    assert kv.window_bytes_per_sequence == 16_777_216
    assert kv_cache_bytes(s, 4_096, 1, "bf16") == 50_331_648
    assert layer_bytes_per_token(s.layers[24].attention, "bf16") == 0
    assert not s.layers[24].attention.has_kv
    # per-layer intermediate_size list is read per layer
    assert {layer.mlp.intermediate_size for layer in s.layers} == {16_384}


# ------------------------------------------------------------------ layout and defaults

def _tiny_gemma3(**text: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"],
                            "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 13,
                            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
                            "vocab_size": 1000, "sliding_window": 128}
    base.update(text)
    return base


def test_gemma3_default_layout_and_tie() -> None:
    s = spec_of(_tiny_gemma3())
    assert [i for i, layer in enumerate(s.layers) if layer.attention.kind == "full"] == [5, 11]
    assert s.tie_word_embeddings  # Gemma3TextConfig default
    assert not any(t.name == "lm_head.weight" for t in build_inventory(s).tensors)
    s3 = spec_of(_tiny_gemma3(sliding_window_pattern=3))
    assert [i for i, layer in enumerate(s3.layers) if layer.attention.kind == "full"] == [2, 5, 8, 11]


def test_gemma3_layer_types_win_and_bidirectional_window() -> None:
    lt = ["full_attention"] * 2 + ["sliding_attention"] * 11
    s = spec_of(_tiny_gemma3(layer_types=lt, use_bidirectional_attention=True))
    assert [layer.attention.kind for layer in s.layers[:3]] == ["full", "full", "sliding"]
    assert s.layers[2].attention.window_tokens == 128 // 2 + 1


def test_gemma3_bad_pattern_and_layer_types_refused() -> None:
    with pytest.raises(ConfigError):
        spec_of(_tiny_gemma3(sliding_window_pattern=0))
    with pytest.raises(ConfigError):
        spec_of(_tiny_gemma3(layer_types=["full_attention"] * 3))
    with pytest.raises(ConfigError):
        spec_of(_tiny_gemma3(layer_types=["linear_attention"] * 13))


@needs_shared
def test_gemma3n_unknown_timm_encoder_refused() -> None:
    cfg = shared("google__gemma-3n-E4B")
    cfg["vision_config"] = {**cfg["vision_config"], "architecture": "mobilenetv5_base"}
    with pytest.raises(ConfigError):
        build_inventory(spec_of(cfg))


@needs_shared
def test_gemma3n_bad_kv_sharing_refused() -> None:
    cfg = shared("google__gemma-3n-E4B")
    cfg["text_config"] = {**cfg["text_config"], "num_kv_shared_layers": 34}
    with pytest.raises(ConfigError):  # layer 1 (sliding) and the full layers: no producer
        spec_of(cfg)


# ------------------------------------------------------------------ public API

@needs_shared
def test_gemma3_12b_fits_80gb_at_32k_vllm() -> None:
    """Gemma-3-12B (24 GB bf16 weights) with 32k context: the sliding layers keep 1,024 tokens,
    so KV is ~2 GiB + windows, far inside an 80 GB H100 (it was refused / read as all-full before)."""
    from vramplan.api import estimate

    est = estimate(shared("google__gemma-3-12b-it"), gpu="H100", context=32_768, engine="vllm",
                   allow_hub=False)
    assert est.fits
    assert est.kv_cache_bytes_per_token == 65_536


def test_gguf_names_gemma4_keep_fused_gate_up() -> None:
    """convert_hf_to_gguf keeps Gemma 4's stacked experts.gate_up_proj as one ffn_gate_up_exps
    (gguf MODEL_TENSORS[GEMMA4]); gpt-oss's is still split into gate and up."""
    from vramplan.quant.gguf_mix import hf_to_gguf_shapes

    g4 = hf_to_gguf_shapes({"model.layers.3.experts.gate_up_proj": (128, 1408, 2816),
                            "model.layers.3.experts.down_proj": (128, 2816, 704)}, "gemma4_text")
    assert g4 == {"blk.3.ffn_gate_up_exps.weight": (2816, 1408, 128),
                  "blk.3.ffn_down_exps.weight": (704, 2816, 128)}
    oss = hf_to_gguf_shapes({"model.layers.3.mlp.experts.gate_up_proj": (32, 2880, 5760)},
                            "gpt_oss")
    assert set(oss) == {"blk.3.ffn_gate_exps.weight", "blk.3.ffn_up_exps.weight"}


@needs_shared
def test_llamacpp_prices_gemma4_and_gemma3n_text() -> None:
    """The HF Gemma 4 / 3n text towers (model.language_model.*) map to GGUF names: at the model
    dtype the weights llama.cpp holds are of the size of the text model, not a fraction of it."""
    from vramplan.api import estimate

    est = estimate(shared("google__gemma-4-26B-A4B"), gpu="H100", context=8_192,
                   engine="llama.cpp", allow_hub=False)
    # 25,233,141,760 text params x 2 B = 50.5 GB; the input embedding stays on the CPU
    assert 46 * 2**30 < sum(d.weights_bytes for d in est.devices) < 51 * 2**30


def test_flat_gemma3_is_text_only() -> None:
    """A flat ``gemma3`` config (what a GGUF header becomes) has no towers and model.* names."""
    cfg = _tiny_gemma3(model_type="gemma3")
    s = spec_of(cfg)
    assert s.towers == () and s.prefix == "model" and s.family == "gemma3"
    assert build_inventory(s).params_total == build_inventory(spec_of(_tiny_gemma3())).params_total
