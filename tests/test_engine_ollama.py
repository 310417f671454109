"""Ollama engine: defaults by version and VRAM, slots, KV type, its own layer choice (< v0.30) or
llama-server's --fit (>= v0.30); measured cases from public Ollama logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vramplan.api import estimate
from vramplan.engines.ollama import default_num_ctx, ollama_profile
from vramplan.errors import InputError
from vramplan.result import Estimate

from .test_engine_llamacpp import byte_metrics, case_estimate, check_metric

DATA = Path(__file__).resolve().parent / "data"
MIB = 2**20
GIB = 2**30
CASES = json.loads((DATA / "measured_ollama.json").read_text())["cases"]


def run(model: Any = "Qwen/Qwen3-8B", **kw: Any) -> Estimate:
    opts = kw.pop("opts", {})
    kw.setdefault("gpu", "rtx-4090")
    kw.setdefault("quant", "q4_k_m")
    kw.setdefault("engine", "ollama")
    return estimate(model, engine_options=opts, allow_hub=False, **kw)


@pytest.mark.parametrize(("version", "gpu", "gpus", "want"), [
    ("0.5.13", "rtx-4090", 1, 2048),
    ("0.6.7", "rtx-4090", 1, 4096),
    ("0.15.4", "h100-sxm", 1, 4096),
    ("0.15.5", "rtx-4060", 1, 4096),  # < 23 GiB
    ("0.15.5", "rtx-4090", 1, 32768),  # 23.99 GiB reported
    ("0.19.0", "rtx-4090", 2, 40960),  # >= 47 GiB: 262144, clamped to Qwen3-8B's 40960
    (None, "h100-sxm", 1, 40960),
])
def test_default_num_ctx_by_version_and_vram(version: str | None, gpu: str, gpus: int,
                                             want: int) -> None:
    eng = "ollama" if version is None else f"ollama=={version}"
    e = run(engine=eng, gpu=gpu, gpus=gpus)
    assert e.engine_figures["num_ctx"] == want
    assert e.context_tokens == want


def test_vram_tiers() -> None:
    p = ollama_profile("0.15.5")
    assert [default_num_ctx(p, g * GIB) for g in (8, 23, 46, 47, 80)] == \
        [4096, 32768, 32768, 262144, 262144]
    assert default_num_ctx(ollama_profile("0.12.10"), 80 * GIB) == 4096
    with pytest.raises(InputError, match="ollama==0.19.0"):
        ollama_profile("latest-ish")


def test_num_parallel_maps_to_llama_server_slots() -> None:
    e = run(opts={"num_ctx": 8192, "num_parallel": 3})
    f = e.engine_figures
    assert (f["n_ctx"], f["n_seq_max"], f["kv_unified"], f["n_ctx_seq"]) == (24576, 3, False, 8192)
    assert "OLLAMA_NUM_PARALLEL=3" in e.command and e.command.endswith("ollama run qwen3-8b:q4_k_m")
    assert "OLLAMA_CONTEXT_LENGTH=8192" in e.command


def test_kv_cache_type_and_flash_attention_by_era() -> None:
    new = run(opts={"num_ctx": 8192, "cache_type_k": "q8_0"})
    assert (new.engine_figures["type_k"], new.engine_figures["type_v"]) == ("q8_0", "q8_0")
    assert "OLLAMA_KV_CACHE_TYPE=q8_0" in new.command
    # before v0.30 a quantized OLLAMA_KV_CACHE_TYPE needs OLLAMA_FLASH_ATTENTION=1
    old = run(engine="ollama==0.19.0", opts={"num_ctx": 8192, "cache_type_k": "q8_0"})
    assert old.engine_figures["type_k"] == "f16"
    assert any("falls back to f16" in n for n in old.notes)
    on = run(engine="ollama==0.19.0", opts={"num_ctx": 8192, "cache_type_k": "q8_0",
                                              "flash_attn": "on"})
    assert on.engine_figures["type_k"] == "q8_0"


def test_llama_server_era_lets_fit_place_layers() -> None:
    e = run("Qwen/Qwen3-30B-A3B", gpu="rtx-4060", opts={"num_ctx": 4096})
    f = e.engine_figures
    assert "fit" in f and f["n_gpu_layers"] == 49 and e.failure is None
    assert "exps=CPU" in f["fit"]["equivalent_flags"]  # experts spill before layers
    old = run("Qwen/Qwen3-30B-A3B", gpu="rtx-4060", engine="ollama==0.19.0",
              opts={"num_ctx": 4096})
    assert old.engine_figures["ollama_estimate"]["gpu_layers"] < 49  # whole layers leave


def test_automatic_batch_grows_with_context() -> None:
    assert run(opts={"num_ctx": 4096}).engine_figures["num_batch"] == 512
    assert run(opts={"num_ctx": 16384}).engine_figures["num_batch"] == 1024
    assert run(opts={"num_ctx": 4096, "batch_size": 256}).engine_figures["num_batch"] == 256
    assert run(engine="ollama==0.19.0", opts={"num_ctx": 16384}).engine_figures["num_batch"] == 512


def test_flash_attention_needs_a_recent_gpu() -> None:
    v100 = run(gpu="v100-16gb", opts={"num_ctx": 8192})  # compute 7.0: supported
    assert v100.engine_figures["flash_attn"]
    b200 = run(gpu="b200", opts={"num_ctx": 8192})  # compute 10.0
    assert b200.engine_figures["flash_attn"]


def test_bad_num_ctx() -> None:
    with pytest.raises(InputError, match="--num-ctx"):
        run(opts={"num_ctx": 0})


# ---------------------------------------------------------------------- measured cases

@pytest.mark.parametrize(("case", "metric"), byte_metrics(CASES))
def test_measured_ollama(case: dict[str, Any], metric: str) -> None:
    check_metric(case, metric)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_ollama_choices_and_its_own_estimate(case: dict[str, Any]) -> None:
    e = case_estimate(case)
    f = e.engine_figures
    m = case["measured"]
    if "n_gpu_layers" in m:
        assert f["n_gpu_layers"] == m["n_gpu_layers"]
    if "n_ctx" in m:
        assert f["n_ctx"] == m["n_ctx"]
    # Ollama logs its estimate rounded to 0.1 GiB
    for key, gib in m["ollama_estimate_gib"].items():
        assert abs(f["ollama_estimate"][key] / GIB - gib) <= 0.05 + 1e-9, key
