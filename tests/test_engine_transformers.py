"""transformers generate() + accelerate device_map: measured cases and mechanisms."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import measured_params
from vramplan.api import estimate, load
from vramplan.engines.base import get_engine
from vramplan.engines.transformers import (
    PROFILES,
    balanced_budgets,
    layer_transient,
    place_modules,
)
from vramplan.errors import InputError
from vramplan.units import GIB

from .conftest import DATA

CASES: list[dict[str, Any]] = json.loads((DATA / "measured_transformers.json").read_text())[
    "cases"]
LLAMA8 = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.mark.parametrize(("case", "key"), measured_params(CASES))
def test_measured_case(case: dict[str, Any], key: str) -> None:
    s = case["settings"]
    est = estimate(case["model"] or case["config"], gpu=case["gpu"], gpus=case["gpu_count"],
                   engine=f"transformers=={case['engine_version']}", context=s["context"],
                   batch=s["batch"], engine_options=s["engine_options"])
    assert est.failure is None
    got, want = est.engine_figures[key], case["measured"][key]
    assert got == pytest.approx(want, rel=case["tolerance"][key]), f"{key}: {got} vs {want}"


def test_every_case_is_matched_or_explained() -> None:
    assert len({c["id"] for c in CASES}) == len(CASES)
    for c in CASES:
        assert c["source"] and c["excerpt"]
        assert c["unmatched"] or (c["justification"] and set(c["measured"]) == set(
            c["tolerance"]))


def test_place_modules_fills_in_order_and_keeps_the_largest_layer_free_on_gpu0() -> None:
    sizes = [("embed", 4), *((f"m.layers.{i}", 3) for i in range(6)), ("norm", 1), ("head", 4)]
    # GPU0: 12 - largest (4) = 8 -> embed + one layer; GPU1 (not main): 12 -> four layers
    got = place_modules(sizes, [12, 12], None)
    assert [got[f"m.layers.{i}"] for i in range(6)] == ["0", "1", "1", "1", "1", "cpu"]
    assert got["embed"] == "0" and got["head"] == "cpu"
    # a capped CPU sends the rest to disk, again keeping the largest remaining layer free
    got = place_modules(sizes, [12, 12], 7)
    assert got["m.layers.5"] == "cpu" and got["norm"] == got["head"] == "disk"


def test_balanced_budgets() -> None:
    sizes = [("embed", 10), *((f"m.layers.{i}", 20) for i in range(10)), ("head", 10)]
    assert balanced_budgets(sizes, 1000, 1, 40, "auto", 1.0) == [900]  # 90 % of one GPU
    assert balanced_budgets(sizes, 1000, 2, 40, "auto", 1.0) == [110 + 25, 1000]
    assert balanced_budgets(sizes, 1000, 2, 40, "sequential", 0.9) == [900, 900]


def test_weights_spread_over_two_gpus() -> None:
    est = estimate("meta-llama/Llama-3.1-70B-Instruct", gpu="a100-80gb-sxm", gpus=2,
                   engine="transformers", context=4096)
    f = est.engine_figures
    assert set(f["device_map"]) == {"cuda:0", "cuda:1"}
    assert f["layers_per_device"]["cuda:0"] + f["layers_per_device"]["cuda:1"] == 80
    assert est.host_ram_bytes == 0 and est.fits
    assert f["weights_bytes"] == est.weights_bytes
    assert est.tp == 1 and est.gpu_count == 2  # device_map spreads layers; no tensor parallel


def test_tensor_parallel_flag_rejected_for_transformers() -> None:
    from vramplan.errors import InputError

    with pytest.raises(InputError, match="--tp"):
        estimate("meta-llama/Llama-3.1-70B-Instruct", gpu="a100-80gb-sxm", gpus=2, tp=2,
                 engine="transformers", context=4096)


def test_offload_goes_to_host_ram_and_stages_on_gpu0() -> None:
    est = estimate(LLAMA8, gpu="rtx-3080-10gb", engine="transformers", context=1024)
    f = est.engine_figures
    assert "cpu" in f["device_map"] and est.host_ram_bytes > 3 * GIB
    names = [c.name for c in est.devices[0].components]
    assert "offload_staging" in names
    assert est.host_ram_bytes + est.devices[0].weights_bytes == est.weights_bytes


def test_bitsandbytes_offload_is_refused() -> None:
    est = estimate("Qwen/Qwen3-32B", gpu="rtx-4090", engine="transformers", context=1024,
                   quant="nf4")
    assert est.failure is not None and est.failure.startswith("ValueError: Some modules")
    assert est.fix is not None and "llm_int8_enable_fp32_cpu_offload" in est.fix
    fits = estimate(LLAMA8, gpu="rtx-4090", engine="transformers", context=1024, quant="nf4")
    assert fits.fits and "BitsAndBytesConfig(load_in_4bit=True" in fits.command


def test_nothing_reserves_the_cache_so_long_context_runs_out_of_memory() -> None:
    est = estimate(LLAMA8, gpu="rtx-4090", engine="transformers", context=65536, batch=2)
    assert not est.fits
    assert est.failure is not None and "CUDA out of memory" in est.failure
    small = estimate(LLAMA8, gpu="rtx-4090", engine="transformers", context=4096)
    assert small.fits
    kv = small.devices[0].kv_cache_bytes
    assert kv == 4096 * 32 * 8 * 256 * 2  # DynamicCache: context x layers x kv heads x (K+V)


def test_eager_materializes_scores_and_sdpa_does_not() -> None:
    spec = load("meta-llama/Llama-3.2-1B").spec
    la = spec.layers[0]
    p = PROFILES["4.57"]
    eager = layer_transient(spec, la, 2, 4096, 2, "eager", p)
    sdpa = layer_transient(spec, la, 2, 4096, 2, "sdpa", p)
    scores = 2 * 32 * 4096 * 4096 * (2 + 4)
    assert eager > scores > 10 * sdpa
    e = estimate("meta-llama/Llama-3.2-1B", gpu="h100", engine="transformers", context=4096,
                 batch=2, engine_options={"attn_implementation": "eager"})
    s = estimate("meta-llama/Llama-3.2-1B", gpu="h100", engine="transformers", context=4096,
                 batch=2)
    assert e.engine_figures["peak_bytes"] - s.engine_figures["peak_bytes"] > 0.9 * scores


def test_logits_to_keep_and_whole_cache_copy_by_version() -> None:
    new = estimate(LLAMA8, gpu="h100", engine="transformers", context=2048, batch=4,
                   engine_options={"prompt_tokens": 1024})
    old = estimate(LLAMA8, gpu="h100", engine="transformers==4.40", context=2048, batch=4,
                   engine_options={"prompt_tokens": 1024})
    legacy = estimate(LLAMA8, gpu="h100", engine="transformers==4.32", context=2048, batch=4,
                      engine_options={"prompt_tokens": 1024})

    def kids(est: Any) -> dict[str, int]:
        act = next(c for c in est.devices[0].components if c.name == "activations")
        return {k.name: k.bytes for k in act.children}

    vocab = 128256
    assert kids(new)["logits"] < 4 * vocab * 10 + 4 * 1024 * 4096 * 2 + 1
    assert kids(old)["logits"] >= 4 * 1024 * vocab * 6  # full [b, t, V] + fp32 copy
    kv = new.devices[0].kv_cache_bytes
    assert kids(new)["decode copy"] < kv // 16  # one layer's K/V
    assert kids(legacy)["decode copy"] >= kv  # the previous step's whole cache stays alive


def test_sliding_window_layers_keep_the_window_in_new_versions() -> None:
    new = estimate("google/gemma-2-9b-it", gpu="h100", engine="transformers", context=8192)
    old = estimate("google/gemma-2-9b-it", gpu="h100", engine="transformers==4.44", context=8192)
    full_per_token = 42 * 8 * 256 * 2 * 2
    assert old.devices[0].kv_cache_bytes == 8192 * full_per_token
    assert new.devices[0].kv_cache_bytes == 8192 * full_per_token // 2 + 4095 * full_per_token // 2


def test_mla_is_cached_decompressed() -> None:
    est = estimate("deepseek-ai/DeepSeek-V2-Lite", gpu="h100", engine="transformers",
                   context=1000)
    assert est.devices[0].kv_cache_bytes == 1000 * 27 * 16 * (128 + 64 + 128) * 2


def test_nvml_figure_adds_driver_reserved_memory() -> None:
    est = estimate(LLAMA8, gpu="a100-80gb-sxm", engine="transformers", context=1024)
    f = est.engine_figures
    assert 0.84 * GIB < f["peak_nvml_bytes"] - f["peak_bytes"] < 0.86 * GIB  # 80 - 79.15 GiB
    assert f["peak_allocated_bytes"] < f["peak_bytes"]


def test_bad_inputs_name_the_flag() -> None:
    with pytest.raises(InputError) as e:
        estimate(LLAMA8, gpu="h100", engine="transformers", kv_dtype="q8_0")
    assert e.value.field == "--kv-dtype"
    with pytest.raises(InputError) as e:
        estimate(LLAMA8, gpu="h100", engine="transformers", quant="q4_k_m")
    assert e.value.field == "--quant" and "llamacpp" in e.value.fix
    fp8 = estimate(LLAMA8, gpu="h100", engine="transformers", kv_dtype="fp8", context=1024)
    assert fp8.devices[0].kv_cache_bytes == 1024 * 32 * 8 * 256 * 2
    assert any("KV ignored" in n for n in fp8.notes)
    with pytest.raises(InputError) as e:
        estimate(LLAMA8, gpu="h100", engine="transformers",
                 engine_options={"attn_implementation": "paged"})
    assert e.value.field == "--attn-implementation"
    with pytest.raises(InputError):
        get_engine("transformers==four")


def test_versions_and_command() -> None:
    assert get_engine("hf").version == "4.57"
    assert get_engine("transformers==4.32").version == "4.32"
    est = estimate(LLAMA8, gpu="h100", engine="transformers")
    assert est.command.startswith("python -c \"from transformers import AutoModelForCausalLM")
    assert "device_map='auto'" in est.command and LLAMA8 in est.command
