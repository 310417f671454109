"""SGLang engine model: measured cases (tests/data/measured_sglang.json) and its mechanisms."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest

from tests.conftest import measured_params
from vramplan.api import _priced, estimate, load
from vramplan.engines.base import Setup, Workload, get_engine
from vramplan.engines.sglang import (
    PROFILES,
    SWA_FULL_TOKENS_RATIO,
    cell_bytes,
    default_mem_fraction,
    min_viable_fraction,
)
from vramplan.errors import InputError
from vramplan.hardware.gpus import get_gpu
from vramplan.placement import Parallelism, place
from vramplan.units import GIB, MIB

from .conftest import DATA

CASES: list[dict[str, Any]] = json.loads((DATA / "measured_sglang.json").read_text())["cases"]


def _run(case: dict[str, Any]) -> Any:
    s = case["settings"]
    return estimate(case["model"] or case["config"], gpu=case["gpu"], gpus=case["gpu_count"],
                    engine=f"sglang=={case['engine_version']}", context=s.get("context"),
                    batch=s.get("batch", 1), tp=s.get("tp"), engine_options=s["engine_options"])


@pytest.mark.parametrize(("case", "key"), measured_params(CASES))
def test_measured_case(case: dict[str, Any], key: str) -> None:
    est = _run(case)
    assert est.failure is None
    got, want = est.engine_figures[key], case["measured"][key]
    assert got == pytest.approx(want, rel=case["tolerance"][key]), f"{key}: {got} vs {want}"


def test_every_case_is_matched_or_explained() -> None:
    for c in CASES:
        assert c["source"] and c["excerpt"] and c["justification"]
        assert c["unmatched"] or set(c["measured"]) == set(c["tolerance"])


def _case(cid: str) -> dict[str, Any]:
    return next(c for c in CASES if c["id"] == cid)


def test_mla_cell_size_kt_case() -> None:
    """DeepSeek-V3 MLA latent: (512 + 64) x 2 B x 61 layers per token, replicated per TP rank."""
    case = _case("sglang-kt-deepseek-v3-tp2")
    spec = load("deepseek-ai/DeepSeek-V3").spec
    _, _, cell = cell_bytes(spec, range(spec.num_layers), "bf16", tp=2)
    assert cell == 61 * 576 * 2
    got = cell * case["measured"]["kv_cache_tokens"]
    assert got == pytest.approx(case["measured"]["kv_cache_bytes"], rel=case["tolerance"][
        "kv_cache_bytes"])


def test_min_viable_fraction_dsv4_case() -> None:
    m = _case("sglang-dsv4-pro-h200-tp8-mfs0.88")["measured"]
    avail = m["available_after_weights_bytes"]
    got = min_viable_fraction(avail, avail + m["weights_bytes"])
    assert got == pytest.approx(m["min_viable_mem_fraction_static"], abs=0.0005)


@pytest.mark.parametrize("cid", ["sglang-laguna-int4-gb10", "sglang-laguna-nvfp4-gb10-1",
                                 "sglang-laguna-nvfp4-gb10-2"])
def test_swa_split_laguna_cases(cid: str) -> None:
    m = _case(cid)["measured"]
    assert int(m["full_pool_tokens"] * SWA_FULL_TOKENS_RATIO) == m["swa_pool_tokens"]


def test_hybrid_swa_pool_uses_the_ratio() -> None:
    est = estimate("google/gemma-2-9b-it", gpu="h100", engine="sglang", context=8192)
    f = est.engine_figures
    assert f["swa_pool_tokens"] == int(f["full_pool_tokens"] * 0.8)
    full, swa, cell = cell_bytes(load("google/gemma-2-9b-it").spec, range(42), "bf16", 1)
    assert full == swa and cell == pytest.approx(full * 1.8)


def test_default_fraction_h100() -> None:
    """80 GB: chunk 8192, max_bs 256 -> reserved 512 + 12288 + 128 + 512 (+ 58 prefill graphs
    x 8 MiB on main) MiB."""
    mib = 81559.0
    f5, r5 = default_mem_fraction(PROFILES["0.5"], mib, 1, 1, 8192, 256, False, True)
    assert (r5, f5) == (13440, 0.835)
    fm, rm = default_mem_fraction(PROFILES["main"], mib, 1, 1, 8192, 256, False, True)
    assert (rm, fm) == (13440 + 58 * 8, round((mib - 13904) / mib, 3))
    fa, _ = default_mem_fraction(PROFILES["main"], mib, 1, 1, 8192, 256, False, False)
    assert fa == f5  # no prefill-graph reserve on ROCm
    assert default_mem_fraction(PROFILES["0.1"], mib, 4, 1, 8192, 512, False, True)[0] == 0.82


def test_small_gpu_has_no_10gib_floor() -> None:
    f, reserved = default_mem_fraction(PROFILES["0.5"], 24 * 1024, 1, 1, 2048, 24, False, True)
    assert reserved == 512 + 3072 + 128 + 48 and f == round(1 - reserved / (24 * 1024), 3)


def test_kv_pool_formula() -> None:
    est = estimate("meta-llama/Llama-3.1-8B-Instruct", gpu="h100", engine="sglang",
                   engine_options={"mem_fraction_static": 0.8})
    f = est.engine_figures
    rest = int(0.8 * f["pre_model_load_memory_bytes"]) - f["weights_bytes"]
    assert f["kv_pool_tokens"] == rest // (32 * 8 * 256 * 2)
    assert f["kv_cache_bytes"] == f["kv_pool_tokens"] * 32 * 8 * 256 * 2
    assert f["max_running_requests"] == min(max(min(int(f["kv_pool_tokens"] / 131072 * 512),
                                                    4096), 2048), f["kv_pool_tokens"] // 2)
    kv = next(c for c in est.devices[0].components if c.name == "kv_cache")
    assert [k.name for k in kv.children] == ["K", "V"]


def test_max_total_tokens_caps_the_pool() -> None:
    est = estimate("meta-llama/Llama-3.1-8B-Instruct", gpu="h100", engine="sglang",
                   engine_options={"max_total_tokens": 10000, "page_size": 16})
    assert est.engine_figures["kv_pool_tokens"] == 10000 // 16 * 16
    assert "--max-total-tokens 10000" in est.command


def test_tp_shards_kv_heads_and_weights() -> None:
    one = estimate("meta-llama/Llama-3.1-70B-Instruct", gpu="h200", engine="sglang")
    four = estimate("meta-llama/Llama-3.1-70B-Instruct", gpu="h200", gpus=4, engine="sglang")
    assert len(four.devices) == 4 and four.fits
    assert four.engine_figures["kv_cell_bytes_per_token"] * 4 == one.engine_figures[
        "kv_cell_bytes_per_token"]
    assert any(c.name == "nccl" for c in four.devices[0].components)
    assert "--tp 4" in four.command


def test_pp_takes_the_smallest_stage_pool() -> None:
    est = estimate("meta-llama/Llama-3.1-70B-Instruct", gpu="h200", gpus=2, tp=1, pp=2,
                   engine="sglang")
    assert len(est.devices) == 2 and "--pp-size 2" in est.command
    pool = [next(c for c in d.components if c.name == "kv_cache") for d in est.devices]
    assert pool[0].formula.split()[1] == pool[1].formula.split()[1]  # same #tokens on both


def test_weights_that_do_not_fit_fail_with_sglang_text() -> None:
    est = estimate("meta-llama/Llama-3.1-70B-Instruct", gpu="h100", engine="sglang")
    assert not est.fits
    assert est.failure is not None
    assert est.failure.startswith("Loaded weights leave no GPU memory for the KV cache")
    assert est.fix is not None and "--tp 4" in est.fix


def test_low_fraction_failure_suggests_the_minimum() -> None:
    est = estimate("meta-llama/Llama-3.1-8B-Instruct", gpu="h100", engine="sglang",
                   engine_options={"mem_fraction_static": 0.15})
    m = est.engine_figures["min_viable_mem_fraction_static"]
    assert est.failure is not None and est.fix is not None
    assert f"above {math.ceil(m * 1000) / 1000:.3f}" in est.fix
    ok = estimate("meta-llama/Llama-3.1-8B-Instruct", gpu="h100", engine="sglang",
                  engine_options={"mem_fraction_static": math.ceil(m * 1000) / 1000 + 0.01})
    assert ok.failure is None and ok.engine_figures["kv_pool_tokens"] > 0


def test_too_high_fraction_leaves_no_runtime_headroom() -> None:
    est = estimate("meta-llama/Llama-3.1-8B-Instruct", gpu="rtx-4090", engine="sglang",
                   engine_options={"mem_fraction_static": 0.99})
    assert est.failure is not None and "CUDA out of memory" in est.failure
    assert est.fix is not None and "lower --mem-fraction-static" in est.fix


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.2])
def test_bad_fraction_names_the_flag(bad: float) -> None:
    with pytest.raises(InputError) as e:
        estimate("meta-llama/Llama-3.1-8B-Instruct", gpu="h100", engine="sglang",
                 engine_options={"mem_fraction_static": bad})
    assert e.value.field == "--mem-fraction-static" and e.value.fix


def test_tp_larger_than_gpus_is_an_input_error() -> None:
    lm = load("meta-llama/Llama-3.1-8B-Instruct")
    qm = _priced(lm, None)
    par = Parallelism(tp=2)
    setup = Setup(qm, get_gpu("h100"), 1, par, tuple(place(qm, par)),
                  Workload(8192, 1, "bf16"))
    with pytest.raises(InputError) as e:
        get_engine("sglang").estimate(setup)
    assert e.value.field == "--tp" and "--gpus 2" in e.value.fix
    with pytest.raises(InputError):
        get_engine("sglang").estimate(replace(setup, workload=Workload(8192, 1, "q8_0"),
                                              gpu_count=2))


def test_fp8_kv_halves_the_cell_and_appears_in_the_command() -> None:
    bf = estimate("meta-llama/Llama-3.1-8B-Instruct", gpu="h100", engine="sglang")
    f8 = estimate("meta-llama/Llama-3.1-8B-Instruct", gpu="h100", engine="sglang",
                  kv_dtype="fp8")
    assert f8.engine_figures["kv_cell_bytes_per_token"] * 2 == bf.engine_figures[
        "kv_cell_bytes_per_token"]
    assert "--kv-cache-dtype fp8_e4m3" in f8.command
    assert bf.command.startswith("python -m sglang.launch_server --model-path ")


def test_versions() -> None:
    assert get_engine("sglang").version == "main"
    old = get_engine("sglang==0.1.18")
    assert old.version == "0.1.18"
    est = estimate("meta-llama/Llama-3.1-8B-Instruct", gpu="h100", engine="sglang==0.1.18")
    assert est.engine_figures["mem_fraction_static"] == 0.9
    assert any("using the 0.1 profile" in a for a in est.assumptions)
    with pytest.raises(InputError):
        get_engine("sglang==latest-ish")


def test_components_sum_to_the_device_total() -> None:
    est = estimate("Qwen/Qwen3-8B", gpu="h100", engine="sglang", context=32768)
    d = est.devices[0]
    names = [c.name for c in d.components]
    assert names[:3] == ["weights", "kv_cache", "activations"] and "cuda_context" in names
    assert d.total_bytes <= d.capacity_bytes
    # weights + KV pool == mem_fraction_static x free memory (within page rounding)
    f = est.engine_figures
    static = d.weights_bytes + d.kv_cache_bytes
    assert static == pytest.approx(f["mem_fraction_static"] * f["pre_model_load_memory_bytes"],
                                   abs=f["kv_cell_bytes_per_token"])
    assert f["runtime_estimate_bytes"] <= f["headroom_bytes"]
    assert f["cuda_graph_bytes"] == (2 * 256 + 58 * 8) * MIB
    assert f["weights_bytes"] < 17 * GIB
