"""Weight bytes per format, checked against real published checkpoint sizes."""

from __future__ import annotations

import pytest

from tests.conftest import load_config
from vramplan.errors import InputError
from vramplan.inventory import build_inventory
from vramplan.model.hf_config import spec_from_config
from vramplan.quant.schemes import (
    NONE,
    awq_bytes,
    bnb4_bytes,
    fp8_bytes,
    gptq_bytes,
    mxfp4_bytes,
    quantize_model,
    scheme_from_config,
    scheme_from_name,
)
from vramplan.units import GIB


def _qm(stem: str, quant: str | None = None):  # type: ignore[no-untyped-def]
    spec = spec_from_config(load_config(stem), stem)
    if quant:
        scheme = scheme_from_name(quant)
    elif spec.quantization_config:
        scheme = scheme_from_config(spec.quantization_config)
    else:
        scheme = NONE
    return quantize_model(build_inventory(spec), scheme)


def test_qwen3_235b_awq_weights_about_124_gb() -> None:
    qm = _qm("Qwen__Qwen3-235B-A22B", "awq")
    assert qm.weights_bytes == pytest.approx(124.06e9, rel=0.002)
    by_fmt = qm.bytes_by_format()
    # embeddings + lm_head (2 x 151936 x 4096) + routers + norms stay bf16
    norms = 94 * (2 * 4096 + 2 * 128) + 4096  # 2 layer norms + q/k norms per layer, final norm
    assert by_fmt["bf16"] == 2 * (2 * 151_936 * 4096 + 94 * 128 * 4096 + norms)
    roles = {e.group.role for e in qm.entries if e.fmt == "bf16"}
    assert roles == {"embedding", "lm_head", "router", "norm"}


def test_qwen3_32b_awq_matches_published_checkpoint() -> None:
    """Qwen/Qwen3-32B-AWQ: 4 shards, 18.00 GiB (shared/models/SOURCES.md, GGX scan)."""
    assert _qm("Qwen__Qwen3-32B", "awq").weights_bytes / GIB == pytest.approx(18.00, abs=0.01)


def test_bf16_equals_two_bytes_per_param() -> None:
    """Llama-3.1-8B index total_size 16,060,522,496 (SOURCES.md)."""
    assert _qm("meta-llama__Llama-3.1-8B").weights_bytes == 16_060_522_496


def test_gemma2_tied_bf16_matches_index_total_size() -> None:
    assert _qm("google__gemma-2-9b-it").weights_bytes == 18_483_411_968


def test_gpt_oss_mxfp4_experts_only() -> None:
    """gpt-oss-120b checkpoint: 60.77 GiB (MXFP4 experts, bf16 rest)."""
    qm = _qm("openai__gpt-oss-120b")
    assert qm.weights_bytes / GIB == pytest.approx(60.77, abs=0.05)
    assert {e.group.role for e in qm.entries if e.fmt == "mxfp4"} == {"routed_expert"}


def test_deepseek_v3_fp8_block_close_to_published_files() -> None:
    """Hub files 688,586,727,753 B incl. the MTP layer (SOURCES.md); within 0.5 %."""
    qm = _qm("deepseek-ai__DeepSeek-V3")
    assert qm.weights_bytes + qm.mtp_bytes == pytest.approx(688_586_727_753, rel=0.005)


def test_modelopt_fp8_excludes_lm_head() -> None:
    qm = _qm("nvidia__Llama-3.1-70B-Instruct-FP8")
    assert qm.scheme.method == "none"  # config.json alone has no quantization_config
    from vramplan.api import load

    lm = load("nvidia/Llama-3.1-70B-Instruct-FP8")
    assert lm.spec.quantization_config is not None
    s = scheme_from_config(lm.spec.quantization_config)
    assert (s.method, s.kv_cache_dtype, s.skip_modules) == ("fp8", "fp8", ("lm_head",))


def test_fp8_modules_to_not_convert_respected() -> None:
    qm = _qm("Qwen__Qwen3-30B-A3B-FP8")
    gates = [e for e in qm.entries if e.group.role == "router"]
    assert gates and all(e.fmt == "bf16" for e in gates)


@pytest.mark.parametrize(("fn", "args", "expected"), [
    # AWQ 4-bit g128 on [N=4096, K=4096]: 8 MiB qweight + 32x4096x(0.5 + 2) B zeros/scales
    (awq_bytes, (4096, 4096, 4, 128), 4096 * 4096 // 2 + 32 * 4096 // 2 + 32 * 4096 * 2),
    # GPTQ adds g_idx int32 [K]
    (gptq_bytes, (4096, 4096, 4, 128), 4096 * 4096 // 2 + 32 * 4096 // 2 + 32 * 4096 * 2
     + 4096 * 4),
    (gptq_bytes, (4096, 4096, 4, -1), 4096 * 4096 // 2 + 4096 // 2 + 4096 * 2 + 4096 * 4),
    (fp8_bytes, (4096, 4096, "block", (128, 128)), 4096 * 4096 + 32 * 32 * 4),
    (fp8_bytes, (4096, 4096, "tensor", None), 4096 * 4096 + 4),
    (mxfp4_bytes, (1024,), 512 + 32),
    (bnb4_bytes, (4096 * 4096, False), 4096 * 4096 // 2 + 4096 * 4096 // 64 * 4 + 64),
])
def test_format_formulas(fn, args, expected) -> None:  # type: ignore[no-untyped-def]
    assert fn(*args) == expected


def test_effective_bits_awq_4bit_g128() -> None:
    """b + (16 + b)/g = 4.156 bits per weight for 4-bit g128 (research/engines.md §2.6)."""
    assert 8 * awq_bytes(8192, 8192, 4, 128) / 8192**2 == pytest.approx(4 + 20 / 128)


def test_unknown_quant_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="--quant"):
        scheme_from_name("q17_z")


def test_gptq_lm_head_flag() -> None:
    s = scheme_from_config({"quant_method": "gptq", "bits": 4, "group_size": 128,
                            "lm_head": True, "desc_act": True})
    assert s.quantize_lm_head and s.desc_act
