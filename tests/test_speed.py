"""Speed model (vramplan.speed) against published measured speeds, and its mechanics.

Tolerance: 25 % on every compared figure (decode tokens/s, prefill tokens/s, TTFT). Why 25 %:
the same card varies by ~10 % between board partners, power limits and memory clocks; llama.cpp
and vLLM builds move decode by 5-15 % and prefill by more between releases; several sources give
one run without spread. The constants are fitted once on these cases (scripts/calibrate_speed.py,
one factor per mechanism), so this checks that one set of factors covers them all. Cases whose
mechanism the model leaves out stay as xfail with the reason and the number.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from vramplan import api, speed
from vramplan.api import _priced as priced
from vramplan.hardware.gpus import custom_gpu, get_gpu
from vramplan.hardware.host import host_memory
from vramplan.placement import Parallelism
from vramplan.units import GIB

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 0.25
_spec = importlib.util.spec_from_file_location("calibrate_speed", ROOT / "scripts" /
                                               "calibrate_speed.py")
assert _spec and _spec.loader
cal = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cal)
CASES = cal.load_cases()
COMPARISONS = [(c, k) for c in CASES if c["modelled"] for k in c["measured"]]


def test_every_record_is_a_case_with_its_source() -> None:
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids))
    if cal.RECORDS.exists():
        records = json.loads(cal.RECORDS.read_text())["records"]
        assert sorted(ids) == sorted(r["id"] for r in records)
    for c in CASES:
        assert c["source"] and c["excerpt"]
        if not c["modelled"]:
            assert c["unmodelled_reason"]
        else:
            assert c["measured"] and c["gpu"] and c["engine"]
    assert len(COMPARISONS) >= 60


@pytest.mark.parametrize(("case", "metric"), COMPARISONS,
                         ids=[f"{c['id']}-{k}" for c, k in COMPARISONS])
def test_measured_speed_within_tolerance(case: dict[str, Any], metric: str) -> None:
    got = cal.model_values(case)[metric]
    want = case["measured"][metric]
    err = got / want - 1
    miss = case.get("expected_misses", {}).get(metric)
    if miss and abs(err) > TOLERANCE:
        pytest.xfail(f"{miss}; model {got:.2f} vs measured {want:.2f} ({err:+.0%})")
    assert abs(err) <= TOLERANCE, f"model {got:.2f} vs measured {want:.2f} ({err:+.1%})"


def _setup(model: str, quant: str | None, gpu: str, n: int = 1, *, engine: str = "llamacpp",
           tp: int = 1, batch: int = 1, depth: int = 0, options: dict[str, Any] | None = None,
           host: Any = None) -> speed.SpeedSetup:
    lm = api.load(model, allow_hub=False)
    return speed.SpeedSetup(priced(lm, quant), get_gpu(gpu), n, Parallelism(tp), engine, batch,
                            depth, 512, "fp16", host, options or {})


def test_coverage_of_experts() -> None:
    assert speed.coverage(1, 8 / 128) == pytest.approx(8 / 128)
    assert speed.coverage(64, 4 / 128) == pytest.approx(1 - (124 / 128) ** 64)
    assert speed.coverage(5, 0.0) == 0.0


def test_dense_decode_is_bandwidth_bound_and_scales_with_bytes() -> None:
    s4 = speed.speed_dict(_setup("meta-llama/Llama-3.1-8B", "q4_k_m", "rtx-4090"))
    s16 = speed.speed_dict(_setup("meta-llama/Llama-3.1-8B", "fp16", "rtx-4090"))
    assert s4["bound_by"] == "gpu_memory_bandwidth"
    v4, v16 = s4["decode_tokens_per_s"], s16["decode_tokens_per_s"]
    assert v4["low"] < v4["value"] < v4["high"]
    assert 2.5 < v4["value"] / v16["value"] < 3.5  # 4.6 GiB vs 15.0 GiB, plus fixed overhead


def test_kv_depth_slows_decode() -> None:
    near = speed.decode_terms(_setup("meta-llama/Llama-3.1-8B", "q4_k_m", "rtx-4090", depth=0))
    far = speed.decode_terms(_setup("meta-llama/Llama-3.1-8B", "q4_k_m", "rtx-4090",
                                    depth=32768))
    assert sum(far.values()) > sum(near.values()) * 1.3  # 4 GiB of KV at 32k vs 4.6 GiB weights


def test_experts_in_host_ram_are_read_at_host_bandwidth() -> None:
    host = host_memory(128 * GIB, "DDR5-5600", 2)
    gpu_only = _setup("Qwen/Qwen3-30B-A3B", "q4_k_m", "rtx-4090", host=host)
    offload = _setup("Qwen/Qwen3-30B-A3B", "q4_k_m", "rtx-4090", host=host,
                     options={"cpu_moe": True})
    t_gpu, t_off = speed.decode_terms(gpu_only), speed.decode_terms(offload)
    assert t_gpu["host_memory_bandwidth"] == 0
    assert t_off["host_memory_bandwidth"] > t_off["gpu_memory_bandwidth"]
    d = speed.speed_dict(offload)
    assert d["bound_by"] == "host_memory_bandwidth"
    assert any("DDR5-5600" in a for a in d["assumptions"])
    partial = _setup("Qwen/Qwen3-30B-A3B", "q4_k_m", "rtx-4090", host=host,
                     options={"n_cpu_moe": 24})
    assert sum(t_gpu.values()) < sum(speed.decode_terms(partial).values()) < sum(t_off.values())


def test_cpu_offload_gb_streams_over_pcie() -> None:
    s = _setup("meta-llama/Llama-3.1-8B", None, "rtx-4090", engine="vllm",
               options={"cpu_offload_gb": 8})
    terms = speed.decode_terms(s)
    assert terms["pcie"] == pytest.approx(8 * GIB / (31.5e9 * speed.PCIE_EFFICIENCY), rel=0.02)
    assert speed.speed_dict(s)["bound_by"] == "pcie"


def test_tensor_parallel_pays_all_reduce_per_layer() -> None:
    one = speed.decode_terms(_setup("meta-llama/Llama-3.1-70B", "awq", "h100-sxm", engine="vllm"))
    two = speed.decode_terms(_setup("meta-llama/Llama-3.1-70B", "awq", "h100-sxm", 2,
                                    engine="vllm", tp=2))
    assert one["interconnect"] == 0 and two["interconnect"] > 0
    assert two["gpu_memory_bandwidth"] < one["gpu_memory_bandwidth"] * 0.6
    pcie = speed.decode_terms(_setup("meta-llama/Llama-3.1-70B", "awq", "rtx-4090", 2,
                                     engine="vllm", tp=2))
    assert pcie["interconnect"] > two["interconnect"] * 2  # no NVLink on a 4090


def test_batch_reads_more_experts_and_reports_total() -> None:
    d = speed.speed_dict(_setup("Qwen/Qwen3-30B-A3B", None, "h100-sxm", engine="vllm",
                                batch=32, depth=1024))
    assert d["decode_tokens_per_s_total"]["value"] > d["decode_tokens_per_s"]["value"] * 10
    assert any("touch" in a for a in d["assumptions"])


def test_estimate_speed_shape_and_unknown_gpu() -> None:
    est = api.estimate("meta-llama/Llama-3.1-8B", gpu="rtx-4090", context=4096, engine="generic")
    lm = api.load("meta-llama/Llama-3.1-8B")
    qm = api._priced(lm, None)
    d = speed.estimate_speed(est, qm, get_gpu("rtx-4090"))
    for k in ("decode_tokens_per_s", "prefill_tokens_per_s", "ttft_s"):
        assert set(d[k]) == {"value", "low", "high"}
        assert d[k]["low"] <= d[k]["value"] <= d[k]["high"]
    assert d["ttft_s"]["value"] == pytest.approx(4096 / d["prefill_tokens_per_s"]["value"],
                                                 rel=1e-3)
    assert isinstance(d["assumptions"], list) and d["bound_by"]
    none = speed.estimate_speed(est, qm, custom_gpu(24 * GIB))
    assert none["decode_tokens_per_s"]["value"] is None and none["assumptions"]


def test_estimate_speed_follows_the_placement_a_llamacpp_engine_chose() -> None:
    from vramplan.engines.base import engine_names

    if "llamacpp" not in engine_names():
        pytest.skip("llama.cpp engine model not installed")
    est = api.estimate("Qwen/Qwen3-30B-A3B", gpu="rtx-4060-ti-8gb", quant="q4_k_m", context=8192,
                       engine="llamacpp")
    qm = api._priced(api.load("Qwen/Qwen3-30B-A3B"), "q4_k_m")
    d = speed.estimate_speed(est, qm, get_gpu("rtx-4060-ti-8gb"), 64 * GIB)
    assert d["bound_by"] == "host_memory_bandwidth"  # --fit put experts in host RAM
    assert any("ASSUMPTION: typical desktop" in a for a in d["assumptions"])
