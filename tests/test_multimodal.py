"""Multimodal memory per engine (vramplan.engines.multimodal): towers, --text-only, encoder budget.

Ground truth for Llama-4-Scout-17B-16E-Instruct (transformers 5.25.0 on the meta device, parity
venv): Llama4ForConditionalGeneration 108,641,793,536 parameters (/work/parity_all.json);
AutoModelForCausalLM builds Llama4ForCausalLM, 107,769,861,120: the vision tower + projector are
the 871,932,416 in between, 1,743,864,832 bytes in bf16.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest

from vramplan import api, families
from vramplan.engines import multimodal
from vramplan.errors import ConfigError, InputError
from vramplan.inventory import TOWER_ROLES, TensorGroup, build_inventory
from vramplan.model.hf_config import spec_from_config
from vramplan.model.spec import ModelSpec, TowerSpec, freeze
from vramplan.quant.schemes import NONE, quantize_model

SCOUT = "meta-llama/Llama-4-Scout-17B-16E-Instruct"
TOWER_PARAMS = 108_641_793_536 - 107_769_861_120  # 871,932,416
TOWER_BF16 = 2 * TOWER_PARAMS  # 1,743,864,832


def _est(engine: str = "vllm", **kw: Any) -> Any:
    base: dict[str, Any] = {"gpu": "h100-sxm", "gpus": 4, "context": 8192, "allow_hub": False}
    if engine in ("llamacpp", "ollama"):
        base["quant"] = "q4_k_m"
    base.update(kw)
    return api.estimate(SCOUT, engine=engine, **base)


def _tower_groups() -> list[TensorGroup]:
    return [g for g in api.load(SCOUT, allow_hub=False).inventory.tensors
            if g.role in TOWER_ROLES]


# ---------------------------------------------------------------- towers and tokens

def test_scout_tower_params_and_tokens_per_image() -> None:
    """One image: (336/14)^2 = 576 patches per tile, pixel shuffle 0.5^2 keeps 144; the largest
    image is 16 tiles + 1 global tile = 17 x 144 = 2,448 context tokens."""
    inv = api.load(SCOUT, allow_hub=False).inventory
    assert inv.params_towers == TOWER_PARAMS
    assert inv.params_text == 107_769_861_120
    (t,) = multimodal.towers(inv)
    assert (t.kind, t.params, t.tokens_per_item) == ("vision", TOWER_PARAMS, 2448)
    assert t.encoder_tokens_per_item == 17 * (576 + 1)  # class token per tile
    assert "144 tokens per 336px tile" in t.tokens_formula


def test_pixel_shuffle_ratio_is_read_and_checked() -> None:
    from tests.conftest import load_config

    cfg = load_config("meta-llama__Llama-4-Scout-17B-16E-Instruct")
    cfg["vision_config"] = {**cfg["vision_config"], "pixel_shuffle_ratio": 0.25}
    spec = spec_from_config(cfg, "x")
    (t,) = multimodal.towers(build_inventory(spec))
    assert t.tokens_per_item == 576 // 16 * 17  # 36 per tile
    cfg["vision_config"]["pixel_shuffle_ratio"] = 0
    with pytest.raises(ConfigError, match="pixel_shuffle_ratio"):
        spec_from_config(cfg, "y")


# ---------------------------------------------------------------- vLLM

def _linear_and_rest() -> tuple[int, int]:
    lin = sum(g.numel * 2 for g in _tower_groups() if g.linear)
    return lin, TOWER_BF16 - lin


def test_vllm_loads_the_tower_sharded_over_tp() -> None:
    """--mm-encoder-tp-mode weights (default): each encoder linear is split over the 4 ranks,
    norms / biases / embeddings replicated; data: the whole tower on every rank."""
    lin, rest = _linear_and_rest()
    per_rank = rest + math.ceil(lin / 4)
    full, text = _est(), _est(text_only=True)
    mm = full.engine_figures["multimodal"]
    assert mm["towers_loaded"] and mm["tower_weights_bytes"] == TOWER_BF16
    assert mm["tower_weights_per_rank_bytes"] == per_rank
    assert full.devices[0].weights_bytes - text.devices[0].weights_bytes == per_rank
    assert full.weights_bytes - text.weights_bytes == TOWER_BF16
    data = _est(engine_options={"mm_encoder_tp_mode": "data"})
    assert data.devices[0].weights_bytes - text.devices[0].weights_bytes == TOWER_BF16
    assert "--mm-encoder-tp-mode data" in data.command
    one = _est(gpus=1, gpu="h200")
    one_text = _est(gpus=1, gpu="h200", text_only=True)
    assert one.devices[0].weights_bytes - one_text.devices[0].weights_bytes == TOWER_BF16


def test_vllm_encoder_cache_worked_by_hand() -> None:
    """H100, vllm serve defaults: max_num_batched_tokens 8192, max_num_seqs 1024.
    encoder cache = max(8192, 2448) = 8192 embeddings (compute budget the same);
    profiled items = min(8192 // 2448 = 3, 1024 x max(1, min(999, 8192 // 2448 = 3))) = 3;
    held through the text dummy run: 3 x 2448 tokens x 5120 hidden x 2 B = 75,202,560 B."""
    full, text = _est(), _est(text_only=True)
    mm = full.engine_figures["multimodal"]
    assert mm["encoder_cache_size_tokens"] == mm["encoder_compute_budget_tokens"] == 8192
    assert mm["profiled_items"] == 3
    assert mm["encoder_output_bytes"] == 3 * 2448 * 5120 * 2 == 75_202_560
    assert full.devices[0].activation_bytes - text.devices[0].activation_bytes == 75_202_560
    # a step smaller than one image: the budget rises to the item, one item is profiled
    small = _est(engine_options={"max_num_batched_tokens": 2048, "max_num_seqs": 256})
    s = small.engine_figures["multimodal"]
    assert s["encoder_cache_size_tokens"] == 2448 and s["profiled_items"] == 1
    assert s["encoder_output_bytes"] == 2448 * 5120 * 2


def test_vllm_skip_mm_profiling_reserves_nothing() -> None:
    full, text = _est(), _est(text_only=True)
    skip = _est(engine_options={"skip_mm_profiling": True})
    assert skip.devices[0].activation_bytes == text.devices[0].activation_bytes
    assert skip.devices[0].weights_bytes == full.devices[0].weights_bytes
    assert "--skip-mm-profiling" in skip.command
    assert "not reserved" in skip.engine_figures["multimodal"]["encoder_profiling"]


def test_mmproj_without_a_tower_is_said() -> None:
    est = api.estimate("qwen3-8b", engine="llamacpp", quant="q4_k_m", gpu="h100-sxm",
                       allow_hub=False, engine_options={"mmproj": "m.gguf"})
    assert any("NOT counted" in n for n in est.notes)


def test_vllm_encoder_budget_formula() -> None:
    assert multimodal.vllm_encoder_budget(2448, 8192) == (8192, 8192)
    assert multimodal.vllm_encoder_budget(16384, 8192) == (16384, 16384)
    assert multimodal.vllm_encoder_budget(0, 8192) == (0, 0)
    assert multimodal.vllm_items_per_batch(8192, 2448, 999, 8192, 1024) == 3
    assert multimodal.vllm_items_per_batch(8192, 2448, 1, 8192, 2) == 2  # decoder side caps


def test_vllm_text_only_names_the_mechanism() -> None:
    text = _est(text_only=True)
    assert "--limit-mm-per-prompt '{\"image\":0}'" in text.command
    mm = text.engine_figures["multimodal"]
    assert not mm["towers_loaded"] and mm["tower_weights_bytes"] == 0 and mm["text_only"]
    assert "encoder_cache_size_tokens" not in mm
    # the same through the engine's own flag
    lim = _est(engine_options={"limit_mm_per_prompt": '{"image":0}'})
    assert lim.devices[0].weights_bytes == text.devices[0].weights_bytes


def test_old_vllm_still_loads_the_tower() -> None:
    """Before 0.19.1 (ASSUMPTION) a zero limit only skips profiling: weights stay, a note says so."""
    old = _est(engine="vllm==0.11.0", text_only=True)
    old_full = _est(engine="vllm==0.11.0")
    assert old.weights_bytes == old_full.weights_bytes
    assert any("still loads the vision tower" in n for n in old.notes)
    assert "encoder_cache_size_tokens" not in old.engine_figures["multimodal"]
    assert old_full.devices[0].activation_bytes - old.devices[0].activation_bytes == 75_202_560


# ---------------------------------------------------------------- llama.cpp and Ollama

def _mmproj_bytes_by_hand() -> int:
    return sum(g.numel * (4 if len(g.shape) < 2 else 2) for g in _tower_groups())


def test_llamacpp_without_mmproj_excludes_the_tower() -> None:
    est = _est("llamacpp")
    names = {c.name for d in est.devices for c in d.components}
    assert "mmproj model buffer" not in names
    assert not est.engine_figures["multimodal"]["towers_loaded"]
    assert "--mmproj" not in est.command
    assert est.weights_bytes == _est("llamacpp", text_only=True).weights_bytes


def test_llamacpp_mmproj_adds_its_buffers_on_the_first_gpu() -> None:
    plain = _est("llamacpp")
    mm = _est("llamacpp", engine_options={"mmproj": "mmproj-Scout-f16.gguf"})
    d0 = mm.devices[0]
    comp = {c.name: c.bytes for c in d0.components}
    assert comp["mmproj model buffer"] == _mmproj_bytes_by_hand()
    assert comp["CLIP compute buffer"] > 0
    assert d0.total_bytes - plain.devices[0].total_bytes == \
        comp["mmproj model buffer"] + comp["CLIP compute buffer"]
    assert [d.total_bytes for d in mm.devices[1:]] == [d.total_bytes for d in plain.devices[1:]]
    assert mm.command.endswith("--mmproj mmproj-Scout-f16.gguf")
    assert mm.engine_figures["multimodal"]["mmproj"]["type"] == "f16"
    # a q8_0 projector: 34 bytes per 32 values
    q8 = _est("llamacpp", engine_options={"mmproj": "mmproj-Scout-Q8_0.gguf"})
    q8b = {c.name: c.bytes for c in q8.devices[0].components}["mmproj model buffer"]
    assert q8b < comp["mmproj model buffer"]
    # --text-only wins over --mmproj
    both = _est("llamacpp", text_only=True, engine_options={"mmproj": "m.gguf"})
    assert "--mmproj" not in both.command


def test_mmproj_on_a_full_gpu_is_the_failure() -> None:
    """8 GiB GPU, experts on the CPU: the text model takes 7.69 GiB of CUDA0 and fits; the
    1.63 GiB mmproj loaded after it does not (llama.cpp's --fit does not plan for it)."""
    opts: dict[str, Any] = {"n_gpu_layers": 99, "cpu_moe": True}

    def run(**extra: Any) -> Any:
        return api.estimate(SCOUT, engine="llamacpp", quant="q4_k_m", vram=8 * 2**30,
                            context=4096, allow_hub=False, engine_options={**opts, **extra})

    assert run().failure is None
    est = run(mmproj="m.gguf")
    assert est.failure is not None and "mmproj" in est.failure
    assert "--no-mmproj-offload" in str(est.fix)
    cpu = run(mmproj="m.gguf", no_mmproj_offload=True)
    assert cpu.failure is None and cpu.command.endswith("--no-mmproj-offload")
    host = {c.name for c in cpu.devices[-1].components}
    assert "mmproj model buffer" in host


def test_ollama_loads_the_projector() -> None:
    est, text = _est("ollama"), _est("ollama", text_only=True)
    assert est.engine_figures["multimodal"]["towers_loaded"]
    assert "mmproj" in est.engine_figures["multimodal"]
    assert text.devices[0].total_bytes == est.devices[0].total_bytes
    assert any("no Ollama switch" in n for n in text.notes)


# ---------------------------------------------------------------- SGLang and transformers

def test_sglang_llama4_tower_off_by_default() -> None:
    """SGLang turns multimodal off for Llama4ForConditionalGeneration unless
    --enable-multimodal; then the encoder linears are split over TP, the projector is whole."""
    off, on = _est("sglang"), _est("sglang", engine_options={"enable_multimodal": True})
    text = _est("sglang", text_only=True)
    assert not off.engine_figures["multimodal"]["towers_loaded"]
    assert any("--enable-multimodal" in n for n in off.notes)
    assert off.devices[0].weights_bytes == text.devices[0].weights_bytes
    groups = _tower_groups()
    proj = sum(g.numel * 2 for g in groups if g.name.startswith("multi_modal_projector"))
    lin = sum(g.numel * 2 for g in groups if g.linear) - proj
    per_rank = TOWER_BF16 - lin + math.ceil(lin / 4)
    assert on.devices[0].weights_bytes - off.devices[0].weights_bytes == per_rank
    assert on.command.endswith("--enable-multimodal")
    assert on.weights_bytes - off.weights_bytes == TOWER_BF16


def test_transformers_auto_class_follows_the_towers() -> None:
    full, text = _est("transformers"), _est("transformers", text_only=True)
    assert "AutoModelForImageTextToText.from_pretrained" in full.command
    assert "AutoModelForCausalLM.from_pretrained" in text.command
    assert full.weights_bytes - text.weights_bytes == TOWER_BF16
    assert sum(d.weights_bytes for d in full.devices) - \
        sum(d.weights_bytes for d in text.devices) == TOWER_BF16


# ---------------------------------------------------------------- a TowerSpec-based model

def tower_tensors(tower: TowerSpec, spec: ModelSpec) -> list[TensorGroup]:
    """A minimal test tower: one patch embedding, one linear, one norm, a projector."""
    d = int(str(tower.get("hidden_size")))
    return [TensorGroup("vision_tower.patch.weight", (d, 588), tower.kind, None, linear=True),
            TensorGroup("vision_tower.fc.weight", (4 * d, d), tower.kind, None, linear=True),
            TensorGroup("vision_tower.norm.weight", (d,), tower.kind, None),
            TensorGroup("projector.weight", (spec.hidden_size, d), tower.kind, None, linear=True)]


@pytest.fixture
def towered(monkeypatch: pytest.MonkeyPatch) -> ModelSpec:
    monkeypatch.setitem(families.TOWER_MODULES, "mmtest", "tests.test_multimodal")
    base = api.load("Qwen/Qwen3-8B", allow_hub=False).spec
    tower = TowerSpec("vision", "siglip_vision_model", "mmtest",
                      freeze({"hidden_size": 1152, "image_size": 896, "patch_size": 14}),
                      tokens_per_item=256)
    return dataclasses.replace(base, model_id="test/towered", towers=(tower,),
                               architecture="Qwen3VLForConditionalGeneration")


def test_towerspec_tower_generic(towered: ModelSpec) -> None:
    inv = build_inventory(towered)
    params = 1152 * 588 + 4 * 1152 * 1152 + 1152 + 4096 * 1152
    assert inv.params_towers == params
    (t,) = multimodal.towers(inv)
    assert (t.tokens_per_item, t.encoder_tokens_per_item) == (256, 64 * 64)
    qm = quantize_model(inv, NONE)
    v = multimodal.vllm_multimodal(qm, {}, tp=2, max_model_len=8192,
                                   max_num_batched_tokens=2048, max_num_seqs=256)
    # budget max(2048, 256) = 2048; items min(2048 // 256 = 8, 256 x min(999, 32)) = 8
    assert v.figures["profiled_items"] == 8
    assert v.held_bytes == 8 * 256 * 4096 * 2
    lin = 2 * (1152 * 588 + 4 * 1152 * 1152 + 4096 * 1152)
    assert v.weights_delta_bytes == -(lin - math.ceil(lin / 2))
    # a video-capable tower is not disabled by an image limit alone
    kinds = ("vision",)
    keep = multimodal.towers_loaded("vllm", "0.33.0", towered, kinds,
                                    {"limit_mm_per_prompt": '{"image":0}'})
    assert not keep.dropped
    drop = multimodal.towers_loaded("vllm", "0.33.0", towered, kinds,
                                    {"limit_mm_per_prompt": '{"image":0,"video":0}'})
    assert drop.dropped == {"vision"}
    gone = multimodal.without_towers(qm, drop.dropped)
    assert qm.weights_bytes - gone.weights_bytes == 2 * params
    # SGLang loads this tower by default; --text-only is --language-only
    assert not multimodal.towers_loaded("sglang", "", towered, kinds, {}).dropped
    lang = multimodal.towers_loaded("sglang", "", towered, kinds, {"text_only": True})
    assert lang.dropped == {"vision"} and "--language-only" in lang.mechanism
    assert multimodal.sglang_flags(towered, {"text_only": True}, False) == ["--language-only"]


def test_parse_limits() -> None:
    assert multimodal.parse_limits('{"image":0,"video":{"count":2}}') == {"image": 0, "video": 2}
    assert multimodal.parse_limits("image=0,video=1") == {"image": 0, "video": 1}
    with pytest.raises(InputError, match="limit-mm-per-prompt"):
        multimodal.parse_limits('{"image": -1}')
    with pytest.raises(InputError, match="limit-mm-per-prompt"):
        multimodal.parse_limits("{not json")


# ---------------------------------------------------------------- CLI and HTTP

def test_cli_text_only_and_mmproj(run_cli: Any) -> None:
    code, out, _ = run_cli("estimate", SCOUT, "--gpus", "4", "--gpu", "h100-sxm", "--context",
                           "8192", "--offline", "--text-only", "--json")
    assert code == 0
    doc = json.loads(out)
    mm = doc["engine"]["multimodal"]
    assert mm["towers"][0]["tokens_per_item"] == 2448 and not mm["towers_loaded"]
    assert "--limit-mm-per-prompt" in doc["command"]
    code, out, _ = run_cli("estimate", SCOUT, "--engine", "llamacpp", "--quant", "q4_k_m",
                           "--gpu", "h100-sxm", "--context", "8192", "--offline",
                           "--mmproj", "mmproj-f16.gguf", "--json")
    doc = json.loads(out)
    assert doc["engine"]["multimodal"]["mmproj"]["model_bytes"] == _mmproj_bytes_by_hand()
    names = [c["name"] for c in doc["devices"][0]["components"]]
    assert "mmproj model buffer" in names
    code, out, _ = run_cli("estimate", SCOUT, "--gpus", "4", "--gpu", "h100-sxm", "--context",
                           "8192", "--offline", "--explain")
    assert code == 0 and "2,448 tokens per image" in out and "encoder budget" in out
    code, out, _ = run_cli("info", SCOUT, "--offline")
    assert code == 0 and "vision tower: llama4_vision_model, 871,932,416 params; 2,448 " \
        "context tokens per image" in out


def test_http_text_only() -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from vramplan.report import to_dict
    from vramplan.web.app import create_app

    case = {"model": SCOUT, "gpu": "h100-sxm", "gpus": 4, "context": 8192,
            "engine_options": {"text_only": True}}
    want = to_dict(api.estimate(SCOUT, gpu="h100-sxm", gpus=4, context=8192, allow_hub=False,
                                text_only=True))
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        r = c.post("/v1/estimate", json=case)
    assert r.status_code == 200, r.text
    assert r.json() == json.loads(json.dumps(want))
    assert r.json()["engine"]["multimodal"]["towers_loaded"] is False
