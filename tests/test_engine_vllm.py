"""vLLM engine model: measured cases, KV arithmetic, version profiles, failures, invariants."""

from __future__ import annotations

import importlib.util
import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramplan import api
from vramplan.engines import vllm as v
from vramplan.engines.base import get_engine
from vramplan.errors import InputError
from vramplan.units import GIB

ROOT = Path(__file__).resolve().parents[1]
CASES = json.loads((ROOT / "tests/data/measured_vllm.json").read_text())["cases"]


def _accuracy() -> Any:
    spec = importlib.util.spec_from_file_location("accuracy", ROOT / "scripts/accuracy.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["accuracy"] = mod
    spec.loader.exec_module(mod)
    return mod


ACC = _accuracy()


@cache
def _rows(case_id: str) -> dict[str, dict[str, Any]]:
    case = next(c for c in CASES if c["id"] == case_id)
    return {r["metric"]: r for r in ACC.compare(case, ACC.predicted(ACC.run_case(case)))}


def _params() -> list[Any]:
    out = []
    for c in CASES:
        if c.get("unmatched"):
            continue
        for metric, value in c["measured"].items():
            if metric not in ACC.TOLERANCES or value is None:
                continue
            marks = []
            if metric in (c.get("xfail") or {}):
                marks.append(pytest.mark.xfail(reason=c["xfail"][metric], strict=True))
            out.append(pytest.param(c["id"], metric, marks=marks, id=f"{c['id']}-{metric}"))
    return out


@pytest.mark.parametrize(("case_id", "metric"), _params())
def test_measured_case(case_id: str, metric: str) -> None:
    row = _rows(case_id).get(metric)
    assert row is not None, f"{metric} not predicted"
    if row["skip"]:
        pytest.skip(row["skip"])
    tol = ACC.TOLERANCES[metric]
    assert row["ok"], (f"{case_id} {metric}: measured {row['measured']}, predicted "
                       f"{row['predicted']:.4g} (tolerance {tol.rel:.0%} / {tol.abs_gib} GiB)")


def test_cases_are_sourced_and_unmatched_ones_say_why() -> None:
    assert len(CASES) >= 50
    for c in CASES:
        assert c["source"] and c["excerpt"], c["id"]
        if c.get("unmatched"):
            assert len(c["unmatched"]) > 20, c["id"]
        else:
            assert c.get("model") or c.get("model_config"), c["id"]
            if c.get("model_config"):
                assert c["model_config"]["source"], c["id"]
    assert sum(not c.get("unmatched") for c in CASES) >= 20


# ---------------------------------------------------------------- KV arithmetic, in isolation

def _kv_from_available(model: str, tp: int, available_gib: float, mml: int, batched: int,
                       prof: v.Profile) -> tuple[int, float]:
    spec = api.load(model).spec
    specs, block = v.layer_kv_specs(spec, range(spec.num_layers), "bf16", tp, 16)
    size, groups = v.kv_groups(specs)
    blocks = int(available_gib * GIB) // (specs[0].page_bytes * size)
    per_req = sum(v.blocks_per_request(g, mml, batched, block) for g in groups)
    conc = blocks / per_req
    tokens = int(conc * mml) if prof.tokens_from_concurrency else blocks // len(groups) * block
    return tokens, conc


def test_hybrid_sliding_kv_matches_log() -> None:
    # gpt-oss-120b TP4 (memory.json#5): 45.32 GiB -> 2,640,144 tokens, 284.25x at 16,384
    tokens, conc = _kv_from_available("openai/gpt-oss-120b", 4, 45.32, 16384, 2048,
                                      v.select_profile("0.10.1.1"))
    assert tokens == pytest.approx(2_640_144, rel=1e-4)
    assert conc == pytest.approx(284.25, abs=0.02)


def test_uniform_kv_matches_log() -> None:
    # Qwen3-30B-A3B TP2 (memory.json#9): 41.68 GiB -> 910,464 tokens, 22.23x at 40,960
    tokens, conc = _kv_from_available("Qwen/Qwen3-30B-A3B", 2, 41.68, 40960, 8192,
                                      v.select_profile("0.12.0"))
    assert tokens == pytest.approx(910_464, rel=1e-3)
    assert conc == pytest.approx(22.23, abs=0.02)


def test_mla_latent_is_replicated_per_rank() -> None:
    spec = api.load("deepseek-ai/DeepSeek-V3").spec
    one, _ = v.layer_kv_specs(spec, range(spec.num_layers), "bf16", 1, 16)
    eight, _ = v.layer_kv_specs(spec, range(spec.num_layers), "bf16", 8, 16)
    assert one[0].page_bytes == eight[0].page_bytes == 16 * 576 * 2


def test_mamba_hybrid_raises_the_attention_block() -> None:
    spec = api.load("Qwen/Qwen3-Next-80B-A3B-Instruct").spec
    specs, block = v.layer_kv_specs(spec, range(spec.num_layers), "bf16", 1, 16)
    assert block > 16 and block % 16 == 0
    assert len({s.page_bytes for s in specs}) == 1  # state padded to the attention page
    est = api.estimate("Qwen/Qwen3-Next-80B-A3B-Instruct", gpu="h200", gpus=2, tp=2,
                       context=32768)
    _, block2 = v.layer_kv_specs(spec, range(spec.num_layers), "bf16", 2, 16)
    assert est.failure is None and est.engine_figures["block_size"] == block2


# ---------------------------------------------------------------- versions

def test_version_profiles() -> None:
    assert get_engine("vllm==0.10.2").version == "0.10.2"
    old, new = v.select_profile("0.10.2"), v.select_profile(None)
    assert old.default_util == 0.9 and not old.graph_estimate_applied
    assert new.default_util == 0.92 and new.graph_estimate_applied
    assert v.select_profile("0.20.0").default_util == 0.92  # the release that switched both
    assert v.select_profile("0.19.1").default_util == 0.9
    assert v.select_profile("0.26.1rc1.dev156+g0eec856cc").version.startswith("0.26.1")
    with pytest.raises(InputError) as e:
        get_engine("vllm==0.9.2")
    assert e.value.field == "--engine"


def test_batch_defaults_follow_the_gpu() -> None:
    prof = v.select_profile(None)
    assert v.batch_defaults(prof, int(79.18 * GIB), "NVIDIA H100", "9.0") == (8192, 1024)
    assert v.batch_defaults(prof, int(79.15 * GIB), "NVIDIA A100 80GB", "8.0") == (2048, 256)
    assert v.batch_defaults(prof, int(23.99 * GIB), "RTX 4090", "8.9") == (2048, 256)
    assert v.batch_defaults(prof, int(178 * GIB), "NVIDIA B200", "10.0") == (16384, 1024)
    assert v.batch_defaults(v.select_profile("0.11.0"), int(178 * GIB), "B200", "10.0") == \
        (8192, 1024)


# ---------------------------------------------------------------- failures

def test_motivating_case_qwen3_235b_awq_on_one_4090() -> None:
    est = api.estimate("Qwen/Qwen3-235B-A22B", gpu="4090", quant="awq")
    assert est.engine == "vllm" and not est.fits
    assert "out of memory while loading weights" in (est.failure or "")
    w = est.engine_figures["ranks"][0]["weights_bytes"] / GIB
    assert 114.5 < w < 116.5
    assert "--tensor-parallel-size" in (est.fix or "")


def test_max_model_len_error_reproduces_the_binary_search() -> None:
    est = api.estimate("meta-llama/Llama-3.1-8B-Instruct", gpu="l4")  # default len 131,072
    assert est.failure and "estimated maximum model length is" in est.failure
    best = int(est.failure.rsplit(" ", 1)[1])
    assert est.fix and f"--max-model-len {best}" in est.fix
    ok = api.estimate("meta-llama/Llama-3.1-8B-Instruct", gpu="l4",
                      engine_options={"max_model_len": best})
    assert ok.failure is None
    too_long = api.estimate("meta-llama/Llama-3.1-8B-Instruct", gpu="l4",
                            engine_options={"max_model_len": best + 16})
    assert too_long.failure is not None


def test_no_memory_for_cache_blocks() -> None:
    est = api.estimate("Qwen/Qwen3-32B", gpu="h100", context=8192,
                       engine_options={"gpu_memory_utilization": 0.8})
    assert est.failure and "No available memory for the cache blocks" in est.failure
    assert est.fix and "--gpu-memory-utilization" in est.fix


def test_max_model_len_above_the_model() -> None:
    est = api.estimate("Qwen/Qwen3-8B", gpu="h100", engine_options={"max_model_len": 100000})
    assert est.failure and "max_position_embeddings" in est.failure


@pytest.mark.parametrize("util", [0.0, -0.1, 1.5])
def test_bad_utilization(util: float) -> None:
    with pytest.raises(InputError) as e:
        api.estimate("Qwen/Qwen3-8B", gpu="h100",
                     engine_options={"gpu_memory_utilization": util})
    assert e.value.field == "--gpu-memory-utilization" and e.value.fix


def test_bad_inputs_name_the_flag() -> None:
    with pytest.raises(InputError) as e:
        api.estimate("Qwen/Qwen3-8B", gpu="h100", gpus=2, tp=4)
    assert e.value.fix
    with pytest.raises(InputError) as e:
        api.estimate("Qwen/Qwen3-8B", gpu="h100", kv_dtype="q8_0")
    assert e.value.field == "--kv-dtype"
    with pytest.raises(InputError):
        api.estimate("Qwen/Qwen3-8B", gpu="h100",
                     engine_options={"max_num_seqs": 512, "max_num_batched_tokens": 256})


# ---------------------------------------------------------------- output shape

def test_components_figures_and_command() -> None:
    est = api.estimate("Qwen/Qwen3-32B", gpu="h100", gpus=2, tp=2, context=16000,
                       kv_dtype="fp8", engine_options={"enforce_eager": True})
    names = [c.name for c in est.devices[0].components]
    assert names == ["model weights", "activation peak", "non-torch memory", "CUDA graph",
                     "KV cache", "CUDA context"]
    f = est.engine_figures
    assert set(f["ranks"][0]) >= {"weights_bytes", "activation_peak_bytes", "non_torch_bytes",
                                  "cuda_graph_bytes", "kv_cache_bytes"}
    assert f["ranks"][0]["cuda_graph_bytes"] == 0  # --enforce-eager
    for k in ("kv_cache_tokens", "max_concurrency", "num_gpu_blocks", "block_size",
              "gpu_memory_utilization", "max_model_len", "max_num_seqs", "max_num_batched_tokens"):
        assert k in f
    assert est.command.startswith("vllm serve Qwen/Qwen3-32B --tensor-parallel-size 2 "
                                  "--max-model-len 16000 --gpu-memory-utilization 0.92")
    assert "--kv-cache-dtype fp8" in est.command and "--enforce-eager" in est.command
    assert any("preallocates" in a for a in est.assumptions)


def test_cpu_offload_moves_weights_to_host() -> None:
    base = api.estimate("Qwen/Qwen3-8B", gpu="4090", context=8192)
    off = api.estimate("Qwen/Qwen3-8B", gpu="4090", context=8192,
                       engine_options={"cpu_offload_gb": 4})
    assert base.devices[0].weights_bytes - off.devices[0].weights_bytes == 4 * GIB
    # host RAM now also counts the processes' baseline (vramplan.host_ram): the offload adds 4 GiB
    assert off.host_ram_bytes - base.host_ram_bytes == 4 * GIB
    assert off.engine_figures["host_ram"]["pinned_offload_bytes"] == 4 * GIB
    assert off.engine_figures["kv_cache_tokens"] > base.engine_figures["kv_cache_tokens"]


def test_budget_is_preallocated() -> None:
    """Weights + activation + non-torch (+ graph estimate) + KV fill the budget to one block row."""
    est = api.estimate("Qwen/Qwen3-8B", gpu="h100", context=32768)
    r, f = est.engine_figures["ranks"][0], est.engine_figures
    budget = int(f["gpu_memory_utilization"] * 79.18 * GIB)
    used = r["weights_bytes"] + r["activation_peak_bytes"] + r["non_torch_bytes"] + \
        r["cuda_graph_bytes"] + r["kv_cache_bytes"]
    row = f["kv_bytes_per_request"] // (32768 // 16)  # one block of every layer
    assert budget - row <= used <= budget + GIB // 100


MODELS = ("Qwen/Qwen3-8B", "openai/gpt-oss-20b", "deepseek-ai/DeepSeek-V2-Lite",
          "google/gemma-2-9b-it", "Qwen/Qwen3-30B-A3B")


@settings(max_examples=25, deadline=None)
@given(model=st.sampled_from(MODELS), a=st.integers(1, 200_000), b=st.integers(1, 200_000),
       gpu=st.sampled_from(["h100", "4090", "a100-80gb-sxm"]),
       version=st.sampled_from(["0.10.2", "0.13.0", "0.22.1", None]))
def test_more_context_never_needs_less(model: str, a: int, b: int, gpu: str,
                                       version: str | None) -> None:
    lo, hi = sorted((a, b))
    eng = f"vllm=={version}" if version else "vllm"
    x = api.estimate(model, gpu=gpu, context=lo, engine=eng)
    y = api.estimate(model, gpu=gpu, context=hi, engine=eng)
    assert y.engine_figures["kv_bytes_per_request"] >= x.engine_figures["kv_bytes_per_request"]
    if x.failure is not None:
        assert y.failure is not None
    if x.failure is None and y.failure is None:
        # whole budget either way, up to one KV block over all layers: the pool is a whole
        # number of blocks, and the activation peak (hence the pool) moves with the batch limit
        # (before v0.20 the CUDA-graph pool sits outside the budget and grows with the batch
        # limit, which follows max_model_len for tiny lengths: compare the budget part, and
        # the totals only for monotonicity)
        block_all_layers = x.kv_cache_bytes_per_token * x.engine_figures["block_size"]

        def budget_part(e: Any) -> int:
            return sum(c.bytes for c in e.devices[0].components if c.name != "CUDA graph")

        graphs_in_budget = version is None or tuple(map(int, version.split(".")[:2])) >= (0, 20)
        if graphs_in_budget:  # v0.20+: the graph estimate is subtracted before KV sizing
            assert abs(y.devices[0].total_bytes - x.devices[0].total_bytes) < block_all_layers
        else:
            assert abs(budget_part(y) - budget_part(x)) < block_all_layers
            assert y.devices[0].total_bytes > x.devices[0].total_bytes - block_all_layers
        assert y.engine_figures["max_concurrency"] <= x.engine_figures["max_concurrency"]
    for d in (*x.devices, *y.devices):
        assert d.total_bytes == sum(c.bytes for c in d.components)
        assert all(isinstance(c.bytes, int) and c.bytes >= 0 for c in d.components)


def test_page_sizes_unified_gemma4() -> None:
    """Gemma-4-26B-A4B: sliding layers 8 KV heads x 256 x 2 (K, V) x 2 B = 8,192 B/token, full
    layers 2 x 512 x 2 x 2 B = 4,096 B/token. vLLM's unify_kv_cache_spec_page_size gives every
    layer the 16-token page of the sliding layers (131,072 B); a full layer's block then holds
    32 tokens, so a 32,768-token request holds 1,024 blocks there, not 2,048."""
    from vramplan.api import load
    from vramplan.engines.vllm import blocks_per_request, layer_kv_specs

    spec = load("gemma-4-26b").spec
    specs, block = layer_kv_specs(spec, range(spec.num_layers), "bf16", 1, 16)
    full = [s for s in specs if s.kind == "full"]
    assert block == 16 and len(full) == 5
    assert {s.page_bytes for s in specs} == {131_072}
    assert {s.block_tokens for s in full} == {32}
    assert blocks_per_request(full[0], 32_768, 8192, block) == 1024
