"""Planner (vramplan.plan): the issue-4 done-when cases, both llama.cpp paths, inputs, JSON, CLI."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from vramplan import api
from vramplan.errors import InputError, UnknownGpuError
from vramplan.hardware.gpus import get_gpu
from vramplan.placement import Parallelism
from vramplan.plan import llamacpp, offload, planner, search
from vramplan.plan.report import fit_to_dict, hardware_to_dict, plan_to_dict
from vramplan.units import GIB

QWEN235 = "Qwen/Qwen3-235B-A22B"


@pytest.fixture(scope="module")
def big() -> Any:
    return planner.plan(QWEN235, gpu="rtx-4090", gpus=1, ram_bytes=128 * GIB)


def test_qwen3_235b_on_one_4090_offers_llamacpp_with_experts_in_ram(big: Any) -> None:
    llama = [o for o in big.options if o.engine == "llamacpp"]
    assert llama, big.options
    o = llama[0]
    assert o.fits and o.quant in ("q4_k_m", "q3_k_m")
    n_moe = o.engine_options.get("n_cpu_moe")
    assert isinstance(n_moe, int) and 0 < n_moe < 94
    assert "routed experts" in o.placement and "host RAM" in o.placement
    gpu = [d for d in o.devices if d.kind == "gpu"]
    assert len(gpu) == 1 and gpu[0].total_bytes <= gpu[0].capacity_bytes
    assert 60 * GIB < o.host_ram_bytes < 120 * GIB
    assert o.decode_tokens_per_s and 1 < o.decode_tokens_per_s < 30
    assert o.max_context_tokens >= o.context_tokens >= planner.MIN_CONTEXT
    assert "llama-server" in o.command and f"--n-cpu-moe {n_moe}" in o.command
    # as many expert layers on the GPU as fit beside the KV cache (leaving --fit's 1 GiB free)
    # at the context planned for: one more does not fit
    qm = api._priced(api.load(QWEN235), o.quant)
    gpu = get_gpu("rtx-4090")
    at = {k: llamacpp.layout(qm, gpu, 1, planner.MIN_CONTEXT, 1, "fp16", 128 * GIB,
                             {"n_cpu_moe": k}) for k in (n_moe, n_moe - 1)}
    assert at[n_moe].fits and not at[n_moe - 1].gpu_fits


def test_plan_shows_what_estimate_gives_for_the_same_llamacpp_flags(
        big: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """One model of llama.cpp memory: the option's devices are `vramplan estimate` with the
    option's flags, and the planner's screen of that placement has the same bytes."""
    from vramplan.cli.app import main

    o = next(o for o in big.options if o.engine == "llamacpp")
    est = api.estimate(QWEN235, gpu="rtx-4090", gpus=1, quant=o.quant, context=o.context_tokens,
                       batch=o.concurrency, engine="llamacpp", engine_options=o.engine_options,
                       ram=128 * GIB)
    assert est.fits and est.devices == o.devices and est.host_ram_bytes == o.host_ram_bytes
    assert est.command == o.command
    qm = api._priced(api.load(QWEN235), o.quant)
    lay = llamacpp.layout(qm, get_gpu("rtx-4090"), 1, o.context_tokens, o.concurrency, "fp16",
                          128 * GIB, o.engine_options)
    assert lay.gpu_bytes == tuple(d.total_bytes for d in est.devices if d.kind == "gpu")
    assert lay.gpu_capacity_bytes == est.devices[0].capacity_bytes
    assert lay.host_ram_bytes == est.host_ram_bytes
    # and the CLI with the command's flags says the same
    argv = ["estimate", QWEN235, "--gpu", "rtx-4090", "--quant", o.quant, "--context",
            str(o.context_tokens), "--engine", "llamacpp", "--ram", "128GiB", "--json",
            "--n-cpu-moe", str(o.engine_options["n_cpu_moe"])]
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    d = json.loads(capsys.readouterr().out)
    assert [(x["name"], x["total_bytes"]) for x in d["devices"]] == [
        (x.name, x.total_bytes) for x in o.devices]
    assert d["host_ram_bytes"] == o.host_ram_bytes and d["command"] == o.command


def test_qwen3_235b_says_why_vllm_cannot_run_on_the_card(big: Any) -> None:
    vllm = [r for r in big.rejected if r.engine == "vllm"]
    assert vllm
    reason = vllm[0].reason
    assert re.search(r"weights 1\d\d\.\d+ GiB", reason) and "RTX 4090" in reason
    assert "--cpu-offload-gb" in reason and "PCIe" in reason and "tok/s" in reason


def test_qwen3_235b_lists_smallest_gpu_only_setups(big: Any) -> None:
    rows = {r.gpu: r for r in big.alternatives}
    assert rows["h200"].gpu_count == 1 and rows["h200"].option is not None
    h100 = rows["h100-sxm"]
    assert h100.gpu_count == 2 and h100.option is not None
    assert h100.option.tp == 2 and ("4-bit" in h100.option.quant_label or
                                    "Q4" in h100.option.quant_label)
    assert "--tensor-parallel-size 2" in h100.option.command
    r4090 = rows["rtx-4090"]
    assert (r4090.gpu_count == 8 and r4090.option is not None) or r4090.reason
    for r in big.alternatives:
        assert r.option is None or r.option.command


def test_qwen3_32b_on_one_4090_has_a_4bit_option_with_max_context() -> None:
    res = planner.plan("Qwen/Qwen3-32B", gpu="rtx-4090", gpus=1)
    four = [o for o in res.options if o.fits and ("4-bit" in o.quant_label or
                                                  "Q4_K" in o.quant_label)]
    assert four
    for o in four:
        assert o.max_context_tokens >= o.context_tokens >= planner.MIN_CONTEXT
        assert o.binding_constraint in ("gpu_memory", "model_context")
    assert res.options == tuple(sorted(res.options, key=search.rank_key))


def test_llamacpp_is_planned_with_only_the_generic_engine_listed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """llama.cpp is always searched, and its options always come from its engine model (the
    planner's screen is that model too)."""
    monkeypatch.setattr(planner, "engine_names", lambda: ["generic"])
    monkeypatch.setattr(search, "engine_names", lambda: ["generic"])
    res = planner.plan(QWEN235, gpu="rtx-4090", gpus=1, ram_bytes=128 * GIB, context=8192)
    llama = [o for o in res.options if o.engine == "llamacpp"]
    assert llama and llama[0].verified and llama[0].fits
    o = llama[0]
    assert re.search(r"--n-cpu-moe \d+", o.command)
    assert [d.name for d in o.devices] == ["CUDA0", "CPU"]
    assert {r.engine for r in res.rejected} == {"generic"}


def test_llamacpp_options_are_verified_by_the_engine(big: Any) -> None:
    o = next(o for o in big.options if o.engine == "llamacpp")
    assert o.verified


def test_offload_split_follows_llamacpp_rules() -> None:
    qm = api._priced(api.load("Qwen/Qwen3-30B-A3B"), "q4_k_m")
    experts = [e for e in qm.entries if e.group.role == "routed_expert"]
    per_layer = {i: sum(e.bytes for e in experts if e.group.layer == i) for i in range(48)}
    sp = offload.split_weights(qm, Parallelism(), 1, "llamacpp", {"n_cpu_moe": 10})
    assert sp.host.expert_bytes == sum(per_layer[i] for i in range(10))
    assert sp.kv_host_layers == () and len(sp.host.layers) == 10
    allmoe = offload.split_weights(qm, Parallelism(), 1, "llamacpp", {"cpu_moe": True})
    assert allmoe.host.expert_bytes == sum(per_layer.values())
    ot = offload.split_weights(qm, Parallelism(), 1, "llamacpp",
                               {"override_tensor": r"blk\.(4[0-7])\.ffn_.*_exps=CPU"})
    assert ot.host.expert_bytes == sum(per_layer[i] for i in range(40, 48))
    ngl = offload.split_weights(qm, Parallelism(), 1, "llamacpp", {"n_gpu_layers": 40})
    assert ngl.kv_host_layers == tuple(range(8))  # the first 8 layers run on the CPU
    assert ngl.gpu_layers == tuple(range(8, 48))  # and the output layer: -ngl 40 < 49
    assert ngl.host.dense_bytes > next(e.bytes for e in qm.entries if e.group.role == "lm_head")
    two = offload.split_weights(qm, Parallelism(), 2, "llamacpp", {})
    assert [len(s.layers) for s in two.stages] == [24, 24]


def test_gguf_pricing_matches_published_file() -> None:
    """bartowski Meta-Llama-3.1-8B-Instruct Q4_K_M: 4,920,734,016 B incl. ~7.8 MB metadata."""
    qm = api._priced(api.load("meta-llama/Llama-3.1-8B"), "q4_k_m")
    assert abs(qm.weights_bytes - (4_920_734_016 - 7_800_000)) < 200_000


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"ram_bytes": -5}, "--ram"),
    ({"gpus": 0}, "--gpus"),
    ({"context": 10_000_000}, "--context"),
    ({"context": 0}, "--context"),
    ({"concurrency": 0}, "--concurrency"),
    ({"min_tokens_per_s": -1.0}, "--min-tokens-per-s"),
])
def test_bad_input_is_one_input_error(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as e:
        planner.plan("Qwen/Qwen3-8B", gpu="rtx-4090", **kwargs)
    assert e.value.field == field and "\n" not in str(e.value)


def test_unknown_gpu() -> None:
    with pytest.raises(UnknownGpuError):
        planner.plan("Qwen/Qwen3-8B", gpu="rtx-9999-ultra")


def test_impossible_rate_target_is_said_plainly() -> None:
    res = planner.plan("Qwen/Qwen3-8B", gpu="rtx-4090", gpus=1, context=8192,
                       min_tokens_per_s=100000)
    assert res.options and not any(o.meets_min_tokens_per_s for o in res.options)
    assert any(s.change == "faster_setup" for s in res.suggestions)


def test_nothing_fits_says_the_smallest_change() -> None:
    res = planner.plan("meta-llama/Llama-3.1-70B", gpu="rtx-4090", gpus=1, context=32768)
    assert not res.fits
    kinds = {s.change for s in res.suggestions}
    assert "more_ram" in kinds and ("more_gpus" in kinds or "other_gpu" in kinds)


def test_plan_json_has_the_issue_fields(big: Any) -> None:
    d = json.loads(json.dumps(plan_to_dict(big)))
    for o in d["options"]:
        for k in ("engine", "quant", "gpu", "gpu_count", "fits", "devices", "host_ram_bytes",
                  "decode_tokens_per_s", "prefill_tokens_per_s", "ttft_s",
                  "max_context_tokens", "max_concurrency", "binding_constraint", "command"):
            assert k in o, k
        assert {"name", "kind", "capacity_bytes", "total_bytes", "components"} <= set(
            o["devices"][0])
    assert all({"engine", "setup", "reason"} <= set(r) for r in d["rejected"])


def test_hardware_question_fewest_gpus_per_kind() -> None:
    rows = planner.hardware(QWEN235, context=8192, kinds=["h200", "h100-sxm", "rtx-3060-12gb"])
    by = {r.gpu: r for r in rows}
    assert by["h200"].gpu_count == 1 and by["h100-sxm"].gpu_count == 2
    assert by["rtx-3060-12gb"].option is None and by["rtx-3060-12gb"].reason
    assert hardware_to_dict(QWEN235, rows)["rows"][0]["gpu"] == "h200"


def test_fit_lists_models_that_run() -> None:
    rows = planner.fit(gpu="rtx-4090", ram_bytes=64 * GIB,
                       models=["Qwen/Qwen3-8B", "openai/gpt-oss-120b", "deepseek-ai/DeepSeek-V3"])
    by = {r.model: r for r in rows}
    assert by["Qwen/Qwen3-8B"].option is not None
    assert by["openai/gpt-oss-120b"].option is not None  # experts in 64 GiB of RAM
    assert by["deepseek-ai/DeepSeek-V3"].option is None and by["deepseek-ai/DeepSeek-V3"].reason
    assert fit_to_dict(rows)["models"][0]["fits"]


def test_catalog_search_is_fast_when_warm() -> None:
    planner.plan("meta-llama/Llama-3.1-8B")
    t = time.perf_counter()
    res = planner.plan("meta-llama/Llama-3.1-8B")
    assert time.perf_counter() - t < 2.0  # bench/bench_plan.py tracks the < 1 s target
    assert len(res.alternatives) == len(list(__import__("vramplan.hardware.gpus",
                                                         fromlist=["x"]).load_catalog()))
    assert res.options and res.options[0].fits


def test_cli_plan_json_and_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    from vramplan.cli.app import main

    with pytest.raises(SystemExit) as e:
        main(["plan", "Qwen/Qwen3-8B", "--gpu", "4090", "--gpus", "1", "--context", "8192",
              "--json"])
    assert e.value.code == 0
    d = json.loads(capsys.readouterr().out)
    assert d["options"] and d["options"][0]["fits"]
    for argv in (["plan", "Qwen/Qwen3-8B", "--gpu", "4090", "--ram", "-5GiB"],
                 ["plan", "Qwen/Qwen3-8B", "--gpu", "nosuchgpu"],
                 ["plan", "Qwen/Qwen3-8B", "--gpu", "4090", "--context", "999999999"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("vramplan: error:") and "\n" not in err


def test_cli_text_and_exit_1_when_nothing_fits(capsys: pytest.CaptureFixture[str]) -> None:
    from vramplan.cli.app import main

    with pytest.raises(SystemExit) as e:
        main(["plan", "deepseek-ai/DeepSeek-V3", "--gpu", "rtx-3060-12gb", "--gpus", "1",
              "--context", "8192"])
    assert e.value.code == 1
    out = capsys.readouterr().out
    assert "NOTHING FITS" in out and "Smallest GPU-only setups" in out
