"""The estimate pipeline end to end (Python API), on the motivating case and invariants."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramplan.api import estimate
from vramplan.errors import InputError, ParallelismError
from vramplan.report import to_dict
from vramplan.units import GIB

ENGINE = "generic"  # the engine-independent baseline; engine models have their own tests


def test_qwen3_235b_awq_does_not_fit_one_4090() -> None:
    est = estimate("qwen3-235b-a22b", gpu="rtx 4090", quant="awq", context=8192, engine=ENGINE)
    assert not est.fits
    assert est.weights_bytes / 1e9 == pytest.approx(124.06, rel=0.002)
    assert est.devices[0].weights_bytes > 4 * est.devices[0].capacity_bytes
    assert est.model.params_active < est.model.params_total / 10  # "22B active" is not memory


def test_qwen3_235b_awq_fits_one_h200() -> None:
    est = estimate("qwen3-235b-a22b", gpu="h200", quant="awq", context=32768, engine=ENGINE)
    assert est.fits
    assert est.devices[0].total_bytes < est.devices[0].capacity_bytes


def test_qwen3_235b_awq_tp2_h100() -> None:
    est = estimate("qwen3-235b-a22b", gpu="h100 sxm", gpus=2, quant="awq", context=32768,
                   engine=ENGINE)
    assert est.fits and len(est.devices) == 2 and est.tp == 2
    d = est.devices[0]
    # each rank holds half the sharded weights plus replicated norms/routers
    assert est.weights_bytes / 2 < d.weights_bytes < est.weights_bytes / 2 * 1.01
    # 4 KV heads over 2 ranks: half the KV per rank
    one = estimate("qwen3-235b-a22b", gpu="h200", quant="awq", context=32768, engine=ENGINE)
    assert d.kv_cache_bytes == one.devices[0].kv_cache_bytes // 2


def test_json_has_required_fields() -> None:
    d = to_dict(estimate("qwen3-8b", gpu="4090", context=4096, engine=ENGINE))
    for key in ("weights_bytes", "kv_cache_bytes_per_token", "fits", "devices"):
        assert key in d
    for key in ("id", "params_total", "params_active"):
        assert key in d["model"]
    for dev in d["devices"]:
        for key in ("name", "capacity_bytes", "weights_bytes", "kv_cache_bytes",
                    "activation_bytes", "overhead_bytes", "total_bytes"):
            assert isinstance(dev[key], int) or key == "name"
        assert dev["total_bytes"] == sum(c["bytes"] for c in dev["components"])
        assert dev["activation_bytes"] > 0 and dev["overhead_bytes"] > 0  # never silently zero


def test_pipeline_parallel_splits_layers() -> None:
    est = estimate("llama-3.1-70b", gpu="a100 80gb sxm", gpus=4, tp=2, pp=2, context=8192,
                   engine=ENGINE)
    assert len(est.devices) == 4
    total = sum(d.weights_bytes for d in est.devices)
    assert total == pytest.approx(est.weights_bytes, rel=0.01)


def test_tp_must_divide_heads() -> None:
    with pytest.raises(ParallelismError, match="--tp"):
        estimate("qwen3-8b", gpus=3, engine=ENGINE)


@pytest.mark.parametrize("ctx", [0, -5, 1 << 30])
def test_absurd_context_rejected(ctx: int) -> None:
    with pytest.raises(InputError, match="--context"):
        estimate("qwen3-8b", context=ctx, engine=ENGINE)


def test_custom_vram() -> None:
    est = estimate("qwen3-0.6b", vram=24 * GIB, context=4096, engine=ENGINE)
    assert est.fits and est.devices[0].capacity_bytes == 24 * GIB


def test_checkpoint_quant_wins_over_conflicting_flag() -> None:
    with pytest.raises(InputError, match="already quantized"):
        estimate("qwen3-32b-fp8", quant="awq", engine=ENGINE)


def test_explain_mentions_moe_and_gqa() -> None:
    est = estimate("qwen3-235b-a22b", gpu="4090", quant="awq", engine=ENGINE)
    text = " ".join(f"{x.term} {x.formula}" for x in est.explain)
    assert "all 128 experts" in text and "4 KV heads, not 64" in text


@settings(max_examples=25, deadline=None)
@given(ctx=st.integers(1, 100_000), extra=st.integers(1, 100_000), batch=st.integers(1, 8))
def test_more_context_never_needs_less_memory(ctx: int, extra: int, batch: int) -> None:
    a = estimate("qwen3-8b", gpu="h100", context=ctx, batch=batch, engine=ENGINE)
    b = estimate("qwen3-8b", gpu="h100", context=ctx + extra, batch=batch, engine=ENGINE)
    assert b.devices[0].total_bytes >= a.devices[0].total_bytes
    for d in a.devices:
        assert d.total_bytes == d.weights_bytes + d.kv_cache_bytes + d.activation_bytes + \
            d.overhead_bytes


def test_fp32_checkpoint_is_served_in_16bit_by_vllm_sglang_llamacpp() -> None:
    """vLLM/SGLang --dtype auto cast a float32 checkpoint to 16-bit (_get_and_verify_dtype);
    convert_hf_to_gguf writes it as BF16. transformers loads it as float32."""
    import json as _json

    from tests.conftest import load_config
    from vramplan.api import estimate as _estimate

    cfg = load_config("meta-llama__Llama-3.1-8B")
    cfg["torch_dtype"] = "float32"
    for eng in ("vllm", "sglang", "llamacpp"):
        est = _estimate(_json.loads(_json.dumps(cfg)), engine=eng, gpu="h100", context=4096)
        assert est.weights_bytes == 16_060_522_496, eng
        assert any("float32 checkpoint" in n for n in est.notes)
    est = _estimate(cfg, engine="transformers", gpu="h100", context=4096)
    assert est.weights_bytes == 2 * 16_060_522_496
