"""Mamba / SSM hybrid families (vramplan.families.hybrid) and their recurrent state per engine.

Ground truth: transformers 5.25.0 on the meta device (/work/parity_all.json for the shared
configs; the parity venv for the constructed ones under tests/data/configs/). State sizes are
worked by hand in each test's docstring from vLLM's MambaStateShapeCalculator
(vllm/model_executor/layers/mamba/mamba_utils.py) and llama.cpp's n_embd_r / n_embd_s
(src/llama-hparams.cpp).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramplan import api
from vramplan.errors import ConfigError
from vramplan.inventory import build_inventory
from vramplan.kv import (
    kv_cache_bytes,
    layer_bytes_per_token,
    linear_state_bytes,
    state_bytes_per_sequence,
    summarize,
)
from vramplan.model.hf_config import spec_from_config
from vramplan.model.spec import ModelSpec
from vramplan.report import to_dict

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "models"
CONFIGS = Path(__file__).resolve().parent / "data" / "configs"
NEMOTRON = "nvidia__NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"
JAMBA = "ai21labs__Jamba-v0.1"


def _shared(stem: str) -> dict[str, Any]:
    path = SHARED / f"{stem}.json"
    if not path.exists():
        pytest.skip(f"{path} not present (../shared beside the checkout)")
    return dict(json.loads(path.read_text()))


def _spec(stem: str) -> ModelSpec:
    return spec_from_config(_shared(stem), stem)


# ------------------------------------------------------------------------------ parameters

def test_nemotron_3_nano_params_exact() -> None:
    """transformers 5.25.0 NemotronHForCausalLM: 31,577,937,344 parameters + the 23 routers'
    e_score_correction_bias buffers (23 x 128 = 2,944)."""
    spec = _spec(NEMOTRON)
    inv = build_inventory(spec)
    assert inv.params_total == inv.params_text == 31_577_937_344
    assert inv.buffers_total == 23 * 128
    kinds = [(la.attention.kind, la.mlp.kind) for la in spec.layers]
    assert kinds.count(("linear", "none")) == 23  # M
    assert kinds.count(("full", "none")) == 6  # *
    assert kinds.count(("none", "moe")) == 23  # E
    names = {t.name: t for t in inv.tensors}
    # checkpoint naming: backbone.*, per-expert up/down (no gate: relu2 experts)
    assert names["backbone.layers.0.mixer.in_proj.weight"].shape == (10304, 2688)
    assert names["backbone.layers.0.mixer.conv1d.weight"].shape == (6144, 1, 4)
    assert names["backbone.layers.1.mixer.experts.{e}.up_proj.weight"].shape == (1856, 2688)
    assert names["backbone.layers.1.mixer.experts.{e}.up_proj.weight"].count == 128
    assert "backbone.layers.1.mixer.experts.{e}.gate_proj.weight" not in names
    assert names["backbone.layers.5.mixer.k_proj.weight"].shape == (256, 2688)


def test_jamba_params_exact() -> None:
    """transformers 5.25.0 JambaForCausalLM (JambaConfig defaults): 51,570,323,328."""
    spec = _spec(JAMBA)
    inv = build_inventory(spec)
    assert inv.params_total == 51_570_323_328
    assert inv.buffers_total == 0
    attn = [la.index for la in spec.layers if la.attention.kind == "full"]
    moe = [la.index for la in spec.layers if la.mlp.kind == "moe"]
    assert attn == [4, 12, 20, 28]  # i % 8 == 4
    assert moe == list(range(1, 32, 2))  # i % 2 == 1
    names = {t.name: t for t in inv.tensors}
    assert names["model.layers.0.mamba.x_proj.weight"].shape == (256 + 2 * 16, 8192)
    assert names["model.layers.0.mamba.A_log"].shape == (8192, 16)
    assert names["model.layers.1.feed_forward.experts.{e}.gate_proj.weight"].count == 16


def test_jamba_dt_rank_auto_is_ceil_hidden_over_16() -> None:
    cfg = _shared(JAMBA)
    cfg["mamba_dt_rank"] = "auto"
    cfg["hidden_size"] = 4000
    cfg["num_attention_heads"] = 32
    cfg["num_key_value_heads"] = 8
    spec = spec_from_config(cfg)
    mb = spec.layers[0].attention.mamba
    assert mb is not None and mb.dt_rank == 250


def test_bad_pattern_is_a_config_error() -> None:
    cfg = _shared(NEMOTRON)
    cfg["hybrid_override_pattern"] = "MEX*"
    with pytest.raises(ConfigError) as e:
        spec_from_config(cfg)
    assert "hybrid_override_pattern" in e.value.field


# ------------------------------------------------------------------------------ KV and state

def test_kv_per_token_counts_only_attention_layers() -> None:
    """Nemotron-3-Nano: 6 attention layers x 2 (K, V) x 2 KV heads x 128 x 2 B = 6,144 B/token;
    Jamba: 4 layers x 2 x 8 x 128 x 2 B = 16,384. MLP/MoE-only and Mamba layers add nothing."""
    nem, jam = _spec(NEMOTRON), _spec(JAMBA)
    s = summarize(nem, "bf16")
    assert (s.bytes_per_token, s.full_layers, s.linear_layers) == (6_144, 6, 23)
    assert s.bytes_per_token_all_layers == 6_144
    assert summarize(jam, "bf16").bytes_per_token == 16_384
    moe_layer = nem.layers[1].attention
    assert moe_layer.kind == "none" and layer_bytes_per_token(moe_layer, "bf16") == 0
    assert linear_state_bytes(moe_layer, "bf16") == 0


def test_nemotron_state_per_sequence_by_hand() -> None:
    """One Mamba-2 layer: conv (4 - 1) x (64 x 64 + 2 x 8 x 128) = 18,432 elements, SSM
    64 heads x 64 x 128 = 524,288 elements.
    vLLM (conv bf16, SSM float32 from the config's mamba_ssm_cache_dtype, NemotronH hook):
      18,432 x 2 + 524,288 x 4 = 2,134,016 B/layer, x 23 = 49,082,368 B.
    llama.cpp (f32 r_l / s_l): (18,432 + 524,288) x 4 = 2,170,880, x 23 = 49,930,240 B.
    TP=2 (8 groups split evenly): 3 x 3,072 x 2 + 32 x 64 x 128 x 4 = 1,067,008 B/layer."""
    spec = _spec(NEMOTRON)
    mamba = spec.layers[0].attention
    assert linear_state_bytes(mamba, "bf16", 1, "fp32") == 2_134_016
    assert linear_state_bytes(mamba, "fp32") == 2_170_880
    assert linear_state_bytes(mamba, "bf16", 2, "fp32") == 1_067_008
    assert summarize(spec, "bf16").state_bytes_per_sequence == 49_082_368
    assert state_bytes_per_sequence(spec, "fp32", "fp32") == 49_930_240


def test_jamba_state_per_sequence_by_hand() -> None:
    """One Mamba-1 layer: conv (4 - 1) x 8,192 = 24,576, SSM 8,192 x 16 = 131,072 elements;
    bf16 (vLLM "auto" = model dtype): 311,296 B/layer, x 28 = 8,716,288 B; llama.cpp f32:
    622,592 x 28 = 17,432,576 B."""
    spec = _spec(JAMBA)
    assert linear_state_bytes(spec.layers[0].attention, "bf16") == 311_296
    assert summarize(spec, "bf16").state_bytes_per_sequence == 8_716_288
    assert state_bytes_per_sequence(spec, "fp32", "fp32") == 17_432_576


def test_state_does_not_grow_with_context() -> None:
    spec = _spec(NEMOTRON)
    per_tok = summarize(spec, "bf16").bytes_per_token
    a, b = kv_cache_bytes(spec, 1000, 1, "bf16"), kv_cache_bytes(spec, 2000, 1, "bf16")
    assert b - a == 1000 * per_tok
    assert a == 1000 * per_tok + 49_082_368


# ------------------------------------------------------------------------------ engines

def test_vllm_pads_the_state_page_and_reports_it() -> None:
    """Attention page per token = 2 heads x 128 x 2 x 2 B = 1,024; block = 16 x
    cdiv(2,134,016, 16 x 1,024) = 16 x 131 = 2,096 tokens; the Mamba page is padded to
    2,096 x 1,024 = 2,146,304 B (HybridAttentionMambaModelConfig)."""
    if not (SHARED / f"{NEMOTRON}.json").exists():
        pytest.skip("shared models absent")
    est = api.estimate(str(SHARED / f"{NEMOTRON}.json"), engine="vllm", gpu="h100",
                       context=32768, batch=4)
    f = est.engine_figures
    assert f["block_size"] == 2096
    assert f["mamba_page_bytes"] == 2_146_304
    assert f["mamba_state_dtypes"] == ["bf16", "fp32"]
    assert est.kv_state_bytes_per_sequence == 49_082_368
    out = to_dict(est)
    assert out["kv_state_bytes_per_sequence"] == 49_082_368
    assert out["kv_cache_bytes_per_token"] == 6_144
    # --mamba-ssm-cache-dtype bfloat16 halves the SSM part: 23 x (36,864 + 1,048,576)
    est16 = api.estimate(str(SHARED / f"{NEMOTRON}.json"), engine="vllm", gpu="h100",
                         context=32768, engine_options={"mamba_ssm_cache_dtype": "bfloat16"})
    assert est16.kv_state_bytes_per_sequence == 23 * (36_864 + 1_048_576)


def test_llamacpp_rs_buffer_holds_f32_state_per_slot() -> None:
    """llama.cpp: RS buffer = Σ_layers (n_embd_r + n_embd_s) x 4 B x n_seq_max; with 4 slots
    4 x 49,930,240 = 199,720,960 B; K/V only for the 6 attention layers."""
    path = SHARED / f"{NEMOTRON}.json"
    if not path.exists():
        pytest.skip("shared models absent")
    est = api.estimate(str(path), engine="llamacpp", gpu="h100", context=32768, batch=4)
    f = est.engine_figures
    assert f["state_bytes_per_sequence"] == 49_930_240
    assert f["rs_buffer_bytes"] == 4 * 49_930_240
    assert f["kv_total_bytes"] == 6_144 * f["n_ctx"]
    assert est.kv_state_bytes_per_sequence == 49_930_240
    kv = sum(c.bytes for d in est.devices for c in d.components if c.name == "KV buffer")
    assert kv == f["kv_total_bytes"] + f["rs_buffer_bytes"]


def test_sglang_takes_the_mamba_pool_before_the_kv_pool() -> None:
    path = SHARED / f"{NEMOTRON}.json"
    if not path.exists():
        pytest.skip("shared models absent")
    est = api.estimate(str(path), engine="sglang", gpu="h200", context=32768)
    f = est.engine_figures
    assert f["mamba_cache_per_req_bytes"] == 49_082_368  # bf16 conv + fp32 SSM
    assert f["mamba_pool_bytes"] == (f["max_mamba_cache_size"] + 1) * 49_082_368
    assert f["max_running_requests"] <= f["max_mamba_cache_size"] // 3
    assert est.fits


@pytest.mark.parametrize("engine", ["vllm", "llamacpp", "transformers", "sglang"])
def test_jamba_estimates_include_state(engine: str) -> None:
    path = SHARED / f"{JAMBA}.json"
    if not path.exists():
        pytest.skip("shared models absent")
    est = api.estimate(str(path), engine=engine, gpu="h200", gpus=2,
                       tp=None if engine in ("llamacpp", "transformers") else 2, context=8192)
    assert est.kv_state_bytes_per_sequence > 0
    assert est.kv_cache_bytes_per_token == 16_384


@settings(max_examples=12, deadline=None)
@given(seqs=st.integers(min_value=1, max_value=64), ctx=st.integers(min_value=1, max_value=1 << 18))
def test_more_sequences_never_need_less(seqs: int, ctx: int) -> None:
    for stem in (NEMOTRON, JAMBA):
        if not (SHARED / f"{stem}.json").exists():
            pytest.skip("shared models absent")
        spec = _spec(stem)
        assert kv_cache_bytes(spec, ctx, seqs + 1, "bf16") > kv_cache_bytes(spec, ctx, seqs,
                                                                               "bf16")


@settings(max_examples=6, deadline=None)
@given(seqs=st.integers(min_value=1, max_value=16))
def test_llamacpp_memory_grows_with_slots(seqs: int) -> None:
    path = SHARED / f"{NEMOTRON}.json"
    if not path.exists():
        pytest.skip("shared models absent")

    def total(n: int) -> int:
        est = api.estimate(str(path), engine="llamacpp", gpu="h200", context=4096 * n,
                           batch=n, engine_options={"parallel": n})
        return sum(d.total_bytes for d in est.devices)

    assert total(seqs + 1) >= total(seqs)


# ------------------------------------------------------------------------------ constructed configs

def _constructed(stem: str) -> dict[str, Any]:
    return dict(json.loads((CONFIGS / f"{stem}.json").read_text()))


# transformers 5.25.0 meta-device counts (parity venv, unique parameters, no persistent buffers)
CONSTRUCTED = {
    "ibm-granite__granite-4.0-h-small": 32_207_337_984,
    "tiiuae__Falcon-H1-default": 8_514_994_176,
    "LiquidAI__LFM2-1.2B": 1_170_340_608,
}


@pytest.mark.parametrize("stem", sorted(CONSTRUCTED))
def test_constructed_params_exact(stem: str) -> None:
    cfg = _constructed(stem)
    assert "_vramplan_source" in cfg
    inv = build_inventory(spec_from_config(cfg, stem))
    assert inv.params_total == CONSTRUCTED[stem]
    assert inv.buffers_total == 0


# Variants switching on the optional tensors (biases, dense shared MLP, latent MoE, untied head);
# expected counts from the parity venv on the edited configs.
VARIANTS: list[tuple[str, dict[str, Any], int]] = [
    ("ibm-granite__granite-4.0-h-small",
     {"attention_bias": True, "num_local_experts": 0, "mamba_proj_bias": True,
      "tie_word_embeddings": False, "num_hidden_layers": 8, "mamba_n_groups": 2,
      "layer_types": ["mamba", "attention"] * 4}, 1_554_393_088),
    ("tiiuae__Falcon-H1-default",
     {"projectors_bias": True, "mamba_proj_bias": True, "mamba_rms_norm": False,
      "attention_bias": True, "mlp_bias": True, "num_hidden_layers": 4, "head_dim": 64,
      "mamba_d_ssm": None, "mamba_n_heads": 64}, 2_249_651_200),
    ("LiquidAI__LFM2-1.2B",
     {"conv_bias": True, "tie_word_embeddings": False, "block_ffn_dim_multiplier": 1.5},
     1_707_313_920),
]


@pytest.mark.parametrize(("stem", "edit", "expected"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_constructed_variants_exact(stem: str, edit: dict[str, Any], expected: int) -> None:
    cfg = _constructed(stem) | edit
    assert build_inventory(spec_from_config(cfg)).params_total == expected


def test_nemotron_variant_with_biases_and_latent_moe() -> None:
    """use_bias + mlp_bias + moe_latent_size (fc1/fc2_latent_proj): 1,289,144,640 params and
    128 buffer elements on a 4-layer M-*E pattern (parity venv)."""
    cfg = _shared(NEMOTRON) | {"hybrid_override_pattern": "M-*E", "num_hidden_layers": 4,
                               "use_bias": True, "mlp_bias": True, "moe_latent_size": 1024}
    inv = build_inventory(spec_from_config(cfg))
    assert (inv.params_total, inv.buffers_total) == (1_289_144_640, 128)


def test_jamba_variant_dense_with_proj_bias() -> None:
    """mamba_proj_bias on, conv bias off, num_experts 1 (every MLP dense), 8 layers:
    2,725,414,880 (parity venv)."""
    cfg = _shared(JAMBA) | {"mamba_proj_bias": True, "mamba_conv_bias": False,
                            "num_experts": 1, "num_hidden_layers": 8}
    assert build_inventory(spec_from_config(cfg)).params_total == 2_725_414_880


def test_constructed_state_by_hand() -> None:
    """granite-4.0-h-small Mamba-2: d_inner 2 x 4096 = 8192, 128 heads x 64, 1 group, d_state
    128: conv 3 x (8192 + 2 x 128) = 25,344, SSM 128 x 64 x 128 = 1,048,576 elements; vLLM bf16
    (no Nemotron hook: SSM "auto" = conv dtype) 2,147,840 B/layer, x 36 = 77,322,240 B.
    Falcon-H1 defaults: d_ssm 1024, 128 heads x 8, d_state 256: conv 3 x 1,536 = 4,608, SSM
    262,144 -> 533,504 B/layer in bf16, x 32 = 17,072,128 B (and full attention in every
    layer: 32 x 2 x 8 x 128 x 2 = 131,072 B/token).
    LFM2-1.2B short conv: (3 - 1) x 2048 = 4,096 elements, 8,192 B/layer bf16, x 10 conv
    layers = 81,920 B; 6 attention layers x 2 x 8 x 64 x 2 = 12,288 B/token."""
    gr = spec_from_config(_constructed("ibm-granite__granite-4.0-h-small"))
    fa = spec_from_config(_constructed("tiiuae__Falcon-H1-default"))
    lf = spec_from_config(_constructed("LiquidAI__LFM2-1.2B"))
    s = summarize(gr, "bf16")
    assert (s.state_bytes_per_sequence, s.bytes_per_token, s.linear_layers) == (77_322_240,
                                                                                16_384, 36)
    s = summarize(fa, "bf16")
    assert (s.state_bytes_per_sequence, s.bytes_per_token) == (17_072_128, 131_072)
    assert (s.full_layers, s.linear_layers) == (32, 32)  # every layer has both
    s = summarize(lf, "bf16")
    assert (s.state_bytes_per_sequence, s.bytes_per_token) == (81_920, 12_288)
    assert state_bytes_per_sequence(lf, "fp32", "fp32") == 163_840  # llama.cpp f32


def test_vllm_granite_block_is_528() -> None:
    """Attention page per token 8 x 128 x 2 x 2 = 4,096 B; 16 x cdiv(2,147,840, 16 x 4,096) =
    528 tokens (the value vLLM logs for granite-4.0-h without prefix caching); Falcon-H1: both a
    mamba and an attention cache per layer, 16 x cdiv(533,504, 65,536) = 144."""
    est = api.estimate(str(CONFIGS / "ibm-granite__granite-4.0-h-small.json"), engine="vllm",
                       gpu="h200", context=8192)
    assert est.engine_figures["block_size"] == 528
    assert est.engine_figures["mamba_page_bytes"] == 528 * 4096
    fa = api.estimate(str(CONFIGS / "tiiuae__Falcon-H1-default.json"), engine="vllm",
                      gpu="h200", context=8192)
    assert fa.engine_figures["block_size"] == 144
    assert fa.kv_state_bytes_per_sequence == 17_072_128


@pytest.mark.parametrize("stem", sorted(CONSTRUCTED))
@pytest.mark.parametrize("engine", ["vllm", "llamacpp", "sglang", "transformers"])
def test_constructed_estimates_fit_and_carry_state(stem: str, engine: str) -> None:
    est = api.estimate(str(CONFIGS / f"{stem}.json"), engine=engine, gpu="h200",
                       context=8192, batch=2)
    assert est.failure is None
    assert est.kv_state_bytes_per_sequence > 0
    assert to_dict(est)["kv_state_bytes_per_sequence"] == est.kv_state_bytes_per_sequence


def test_llamacpp_prices_every_hybrid_tensor_with_a_gguf_name() -> None:
    """convert_hf_to_gguf renames (dt_bias -> ssm_dt.bias, Nemotron experts, granite's stacked
    input_linear split into ffn_gate_exps / ffn_up_exps): no tensor keeps its HF name."""
    from vramplan.quant.gguf_pricing import gguf_entries
    from vramplan.quant.schemes import QuantScheme

    paths = [CONFIGS / f"{s}.json" for s in CONSTRUCTED]
    paths += [p for p in (SHARED / f"{NEMOTRON}.json", SHARED / f"{JAMBA}.json") if p.exists()]
    for path in paths:
        lm = api.load(str(path))
        ents, _ = gguf_entries(lm.inventory, QuantScheme(method="gguf", gguf_ftype="Q4_K_M",
                                                         label="Q4_K_M"))
        left = [e.group.name for e in ents
                if not e.group.name.startswith(("blk.", "token_embd", "output"))]
        assert left == [], (path.name, left[:3])
    gr = api.load(str(CONFIGS / "ibm-granite__granite-4.0-h-small.json"))
    ents, _ = gguf_entries(gr.inventory, QuantScheme(method="gguf", gguf_ftype="BF16",
                                                     label="BF16"))
    shapes = {e.group.name: e.group.shape for e in ents}
    assert shapes["blk.0.ffn_gate_exps.weight"] == (72, 768, 4096)
    assert shapes["blk.0.ffn_up_shexp.weight"] == (1536, 4096)
