"""Dense and vision-language families: smollm3, olmo2/olmo3, mllama, mistral3 (+ Pixtral tower),
and the Llama 4 default vision tower.

Parameter truths are transformers 5.25.0 on the meta device (shared/models/SOURCES.md: text-only
/ whole-model counts; tests/data/configs/*: scripts/gen_param_parity.py run on that config).
KV bytes per token are worked by hand in each test's docstring: per layer and token a K and a V
row of ``kv_heads * head_dim`` elements.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vramplan import kv
from vramplan.inventory import build_inventory
from vramplan.model.hf_config import spec_from_config
from vramplan.model.spec import ModelSpec

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "models"
CONFIGS = ROOT / "tests" / "data" / "configs"

# stem -> (text-only params, whole-model params), transformers 5.25.0 (SOURCES.md)
SHARED_TRUTH: dict[str, tuple[int, int]] = {
    "HuggingFaceTB__SmolLM3-3B": (3_075_098_624, 3_075_098_624),
    "allenai__OLMo-2-0325-32B": (32_234_279_936, 32_234_279_936),
    "allenai__Olmo-3-7B-Instruct": (7_298_011_136, 7_298_011_136),
    "meta-llama__Llama-3.2-11B-Vision": (9_775_192_080, 10_642_941_475),
    "mistralai__Mistral-Small-3.1-24B-Instruct-2503": (22_901_314_560, 23_340_272_640),
    "meta-llama__Llama-4-Maverick-17B-128E-Instruct": (400_711_848_960, 401_167_027_200),
}


# tests/data/configs/<stem>.json (published shapes): (text, whole), transformers 5.25.0 on the
# meta device from that file (scripts/gen_param_parity.py's method, parity venv).
CONSTRUCTED_TRUTH: dict[str, tuple[int, int]] = {
    "CohereForAI__c4ai-command-r7b-12-2024": (8_028_033_024, 8_028_033_024),
    "CohereLabs__c4ai-command-a-03-2025": (111_057_580_032, 111_057_580_032),
    "LGAI-EXAONE__EXAONE-4.0-32B": (32_003_216_384, 32_003_216_384),
    "mistralai__Mistral-Nemo-Instruct-2407": (12_247_782_400, 12_247_782_400),
    "mistralai__Devstral-Small-2505": (23_572_403_200, 23_572_403_200),
    "mistralai__Magistral-Small-2506": (23_572_403_200, 23_572_403_200),
    "mistral-community__pixtral-12b": (12_247_782_400, 12_682_739_712),
}


def constructed(stem: str) -> dict[str, Any]:
    return dict(json.loads((CONFIGS / f"{stem}.json").read_text()))


def shared(stem: str) -> dict[str, Any]:
    path = SHARED / f"{stem}.json"
    if not path.exists():
        pytest.skip(f"{path} absent (shared/ sits beside the repository)")
    return dict(json.loads(path.read_text()))


def spec_of(stem: str) -> ModelSpec:
    return spec_from_config(shared(stem), stem)


@pytest.mark.parametrize("stem", sorted(SHARED_TRUTH))
def test_shared_params_exact(stem: str) -> None:
    text, whole = SHARED_TRUTH[stem]
    inv = build_inventory(spec_of(stem))
    assert inv.params_total == whole
    assert inv.params_text == text
    assert inv.buffers_total == 0


def test_families_are_registered_modules() -> None:
    fams = {stem: spec_of(stem).family for stem in SHARED_TRUTH}
    assert fams == {
        "HuggingFaceTB__SmolLM3-3B": "smollm3",
        "allenai__OLMo-2-0325-32B": "olmo2",
        "allenai__Olmo-3-7B-Instruct": "olmo2",
        "meta-llama__Llama-3.2-11B-Vision": "mllama",
        "mistralai__Mistral-Small-3.1-24B-Instruct-2503": "mistral3",
        "meta-llama__Llama-4-Maverick-17B-128E-Instruct": "llama4",
    }


def test_smollm3_kv_per_token() -> None:
    """36 full-attention layers (use_sliding_window false; NoPE layers 3, 7, ... keep a full
    cache), 4 KV heads, head_dim 2048 / 16 = 128, bf16:
    2 (K, V) * 4 * 128 * 2 B = 2,048 B per layer; * 36 = 73,728 B per token."""
    spec = spec_of("HuggingFaceTB__SmolLM3-3B")
    s = kv.summarize(spec, "bf16")
    assert (s.full_layers, s.windowed_layers) == (36, 0)
    assert s.bytes_per_token == 73_728
    assert spec.tie_word_embeddings
    rope = spec.param("no_rope_layers")
    assert isinstance(rope, tuple) and [i for i, r in enumerate(rope) if r == 0] == list(
        range(3, 36, 4))


def test_smollm3_sliding_nope_layers_when_enabled() -> None:
    """SmolLM3Config: without layer_types, use_sliding_window + sliding_window make the NoPE
    layers (no_rope_layers == 0) sliding; the rest stay full."""
    cfg = shared("HuggingFaceTB__SmolLM3-3B")
    del cfg["layer_types"]
    cfg.update(use_sliding_window=True, sliding_window=4096)
    spec = spec_from_config(cfg)
    kinds = [layer.attention.kind for layer in spec.layers]
    assert [i for i, k in enumerate(kinds) if k == "sliding"] == list(range(3, 36, 4))
    assert all(layer.attention.window_tokens == 4096 for layer in spec.layers
               if layer.attention.kind == "sliding")


def test_olmo2_kv_per_token_and_dtype() -> None:
    """64 layers, 8 KV heads, head_dim 5120 / 40 = 128. The checkpoint is float32, so the spec
    says float32 and the spec's own ``auto`` KV dtype is fp32: 2 * 8 * 128 * 4 B = 8,192 B per
    layer, * 64 = 524,288 B per token; at bf16 (what vLLM/SGLang --dtype auto serve; the api
    casts the loaded model per engine) 262,144 B."""
    spec = spec_of("allenai__OLMo-2-0325-32B")
    assert spec.torch_dtype == "float32"
    assert kv.resolve_kv_dtype("auto", spec) == "fp32"
    assert kv.summarize(spec, "fp32").bytes_per_token == 524_288
    assert kv.summarize(spec, "bf16").bytes_per_token == 262_144


def test_olmo2_layer_tensors() -> None:
    """Post-norm layer: no input_layernorm; q_norm over heads*head_dim = 5120, k_norm over
    kv_heads*head_dim = 1024 (Olmo2Attention)."""
    inv = build_inventory(spec_of("allenai__OLMo-2-0325-32B"))
    layer0 = {t.name: t.shape for t in inv.tensors if t.layer == 0}
    assert layer0["model.layers.0.self_attn.q_norm.weight"] == (5120,)
    assert layer0["model.layers.0.self_attn.k_norm.weight"] == (1024,)
    assert "model.layers.0.post_feedforward_layernorm.weight" in layer0
    assert "model.layers.0.input_layernorm.weight" not in layer0


def test_olmo3_sliding_layers_default() -> None:
    """No layer_types in the config: Olmo3Config makes every 4th layer full (3, 7, ..., 31) and
    the other 24 sliding with sliding_window 4096. 32 KV heads * head_dim 128, bf16:
    2 * 32 * 128 * 2 B = 16,384 B per layer and token. Growth per token beyond the window:
    8 full layers * 16,384 = 131,072 B; the 24 sliding layers hold at most 4096 tokens:
    24 * 16,384 * 4096 = 1,610,612,736 B per sequence."""
    spec = spec_of("allenai__Olmo-3-7B-Instruct")
    full = [layer.index for layer in spec.layers if layer.attention.kind == "full"]
    assert full == list(range(3, 32, 4))
    s = kv.summarize(spec, "bf16")
    assert (s.full_layers, s.windowed_layers) == (8, 24)
    assert s.bytes_per_token == 131_072
    assert s.window_bytes_per_sequence == 1_610_612_736
    assert kv.kv_cache_bytes(spec, 8192, 1, "bf16") == 8192 * 131_072 + 1_610_612_736


def test_olmo3_renamed_model_type_recovered_by_architecture() -> None:
    cfg = shared("allenai__Olmo-3-7B-Instruct")
    cfg["model_type"] = "olmo3_custom"
    spec = spec_from_config(cfg)
    assert (spec.model_type, kv.summarize(spec, "bf16").windowed_layers) == ("olmo3", 24)
    assert build_inventory(spec).params_total == 7_298_011_136


def test_olmo3_null_window_is_full() -> None:
    cfg = shared("allenai__Olmo-3-7B-Instruct")
    cfg["sliding_window"] = None
    spec = spec_from_config(cfg)
    assert all(layer.attention.kind == "full" for layer in spec.layers)


def test_olmo2_refuses_window() -> None:
    from vramplan.errors import ConfigError

    cfg = shared("allenai__OLMo-2-0325-32B")
    cfg["sliding_window"] = 4096
    with pytest.raises(ConfigError):
        spec_from_config(cfg)


def test_mllama_kv_text_and_cross() -> None:
    """40 text layers: 8 cross-attention layers (3, 8, ..., 38) and 32 self-attention layers.
    Self layers: 8 KV heads * head_dim 4096 / 32 = 128, bf16: 2 * 8 * 128 * 2 = 4,096 B per layer
    and text token; 32 * 4,096 = 131,072 B per token. Cross layers cache the image tokens: 4
    tiles * ((448 // 14)**2 + 1) = 4 * 1025 = 4,100 tokens per image, 4,096 B each per layer:
    8 * 4,100 * 4,096 = 134,348,800 B per image."""
    spec = spec_of("meta-llama__Llama-3.2-11B-Vision")
    cross = [layer for layer in spec.layers if layer.attention.kind == "cross"]
    assert [layer.index for layer in cross] == list(range(3, 40, 5))
    assert all(layer.attention.encoder_tokens == 4100 for layer in cross)
    per_tok = [kv.layer_bytes_per_token(layer.attention, "bf16") for layer in spec.layers]
    assert set(per_tok) == {4096}
    text_tok = sum(b for b, layer in zip(per_tok, spec.layers, strict=True)
                   if layer.attention.kind != "cross")
    per_image = sum(b * layer.attention.encoder_tokens
                    for b, layer in zip(per_tok, spec.layers, strict=True)
                    if layer.attention.kind == "cross")
    assert text_tok == 131_072
    assert per_image == 134_348_800


def test_mllama_cross_cache_is_sized_by_images() -> None:
    """Once kv.py sizes "cross" layers by encoder tokens (one image per sequence):
    ctx 1000 -> 1000 * 131,072 + 134,348,800 B."""
    spec = spec_of("meta-llama__Llama-3.2-11B-Vision")
    cross = next(layer.attention for layer in spec.layers if layer.attention.kind == "cross")
    if kv.cached_tokens(cross, 1000) != 4100:
        pytest.xfail("kv.py does not size cross-attention layers by encoder tokens yet")
    assert kv.kv_cache_bytes(spec, 1000, 1, "bf16") == 1000 * 131_072 + 134_348_800


def test_mllama_tensors() -> None:
    """Checkpoint naming; embed has vocab + 8 rows, lm_head vocab rows, never tied; cross layers
    have no self_attn."""
    spec = spec_of("meta-llama__Llama-3.2-11B-Vision")
    inv = build_inventory(spec)
    names = {t.name: t.shape for t in inv.tensors}
    assert names["language_model.model.embed_tokens.weight"] == (128264, 4096)
    assert names["language_model.lm_head.weight"] == (128256, 4096)
    assert names["language_model.model.layers.3.cross_attn.k_norm.weight"] == (128,)
    assert "language_model.model.layers.3.self_attn.q_proj.weight" not in names
    assert names["vision_model.gated_positional_embedding.tile_embedding.weight"] == (
        9, 4 * 1025 * 1280)
    assert names["multi_modal_projector.weight"] == (4096, 7680)
    assert not spec.tie_word_embeddings


def test_mllama_text_only_causal_lm() -> None:
    """MllamaForCausalLM (the text_config alone): transformers 5.25 counts 9,775,192,080 (the
    text part of the 11B); no tower, cross layers hold no image tokens, names model.* / lm_head.
    """
    cfg = dict(shared("meta-llama__Llama-3.2-11B-Vision")["text_config"])
    cfg["architectures"] = ["MllamaForCausalLM"]
    spec = spec_from_config(cfg)
    inv = build_inventory(spec)
    assert inv.params_total == inv.params_text == 9_775_192_080
    assert not spec.towers
    assert {layer.attention.encoder_tokens for layer in spec.layers} == {0}
    names = {t.name for t in inv.tensors}
    assert {"model.embed_tokens.weight", "lm_head.weight"} <= names


def test_mistral3_kv_and_tower() -> None:
    """40 layers, 8 KV heads, head_dim 128 (from the config; hidden/heads would be 160), bf16:
    2 * 8 * 128 * 2 = 4,096 B per layer; * 40 = 163,840 B per token (sliding_window null: all
    full). One 1540-px image: 1540 // (14 * 2) = 55 merged patches a side, 55 * 56 = 3,080
    tokens with the row breaks."""
    spec = spec_of("mistralai__Mistral-Small-3.1-24B-Instruct-2503")
    assert all(layer.attention.head_dim == 128 for layer in spec.layers)
    assert kv.summarize(spec, "bf16").bytes_per_token == 163_840
    assert spec.tie_word_embeddings  # top-level tie_word_embeddings true (transformers 5.25)
    assert spec.towers[0].tokens_per_item == 3080
    names = {t.name: t.shape for t in build_inventory(spec).tensors}
    assert names["multi_modal_projector.patch_merger.merging_layer.weight"] == (1024, 4096)
    assert "language_model.lm_head.weight" not in names


def test_mistral3_untied_without_top_level_key() -> None:
    """Published Mistral-Small-3.1 configs carry no top-level tie key: the text config's (False)
    is used, and lm_head (131072 x 5120) is counted."""
    cfg = shared("mistralai__Mistral-Small-3.1-24B-Instruct-2503")
    del cfg["tie_word_embeddings"]
    inv = build_inventory(spec_from_config(cfg))
    assert inv.params_total == 23_340_272_640 + 131072 * 5120


def test_llama4_default_vision_tower_note() -> None:
    spec = spec_of("meta-llama__Llama-4-Maverick-17B-128E-Instruct")
    assert spec.vision is not None and spec.vision.num_layers == 34
    assert any("vision_config absent" in n for n in spec.notes)


@pytest.mark.parametrize("stem", sorted(SHARED_TRUTH))
def test_estimate_runs(stem: str) -> None:
    """api.estimate through the default engine: weights cover every parameter at least at 16
    bits, and the KV cache is non-zero."""
    from vramplan import api

    cfg = shared(stem)
    est = api.estimate(cfg, gpu="H200", gpus=8, context=4096, allow_hub=False)
    if stem.startswith("meta-llama__Llama-3.2-11B-Vision"):  # vLLM >= 0.11 dropped Mllama
        assert est.failure is not None and "no longer serves Mllama" in est.failure
        est = api.estimate(cfg, gpu="H200", gpus=8, context=4096, allow_hub=False,
                           engine="transformers")
        whole = SHARED_TRUTH[stem][1]
        assert est.weights_bytes == whole * 2 and est.kv_state_bytes_per_sequence > 0
        return
    comps = {c.name: c.bytes for c in est.devices[0].components}
    whole = SHARED_TRUTH[stem][1]
    assert comps["model weights"] * 8 >= whole * 2 * 0.99
    assert comps["KV cache"] > 0


@pytest.mark.parametrize("stem", sorted(CONSTRUCTED_TRUTH))
def test_constructed_params_exact(stem: str) -> None:
    text, whole = CONSTRUCTED_TRUTH[stem]
    inv = build_inventory(spec_from_config(constructed(stem), stem))
    assert inv.params_total == whole
    assert inv.params_text == text


@pytest.mark.parametrize(("stem", "full", "windowed", "per_token", "window_bytes"), [
    # 32 layers: 8 full (3, 7, ..., 31), 24 sliding (4096). 8 KV heads * 128 * 2 (K, V) * 2 B =
    # 4,096 B per layer and token: 8 * 4,096 = 32,768 B/token; 24 * 4,096 * 4,096 B window.
    ("CohereForAI__c4ai-command-r7b-12-2024", 8, 24, 32_768, 402_653_184),
    # 64 layers: 16 full, 48 sliding; 8 KV heads * 128: 16 * 4,096 = 65,536 B/token;
    # 48 * 4,096 * 4,096 = 805,306,368 B window.
    ("CohereLabs__c4ai-command-a-03-2025", 16, 48, 65_536, 805_306_368),
    # LLLG over 64 layers: same counts and widths as Command-A.
    ("LGAI-EXAONE__EXAONE-4.0-32B", 16, 48, 65_536, 805_306_368),
    # 40 full layers, 8 KV heads * head_dim 128 (not 5120/32 = 160): 40 * 4,096 = 163,840.
    ("mistralai__Mistral-Nemo-Instruct-2407", 40, 0, 163_840, 0),
    ("mistralai__Devstral-Small-2505", 40, 0, 163_840, 0),
    ("mistralai__Magistral-Small-2506", 40, 0, 163_840, 0),
    ("mistral-community__pixtral-12b", 40, 0, 163_840, 0),
])
def test_constructed_kv(stem: str, full: int, windowed: int, per_token: int,
                        window_bytes: int) -> None:
    spec = spec_from_config(constructed(stem), stem)
    s = kv.summarize(spec, "bf16")
    assert (s.full_layers, s.windowed_layers) == (full, windowed)
    assert s.bytes_per_token == per_token
    assert s.window_bytes_per_sequence == window_bytes


def test_mistral_head_dim_is_read_not_derived() -> None:
    """Mistral-Nemo: head_dim 128 while hidden/heads = 160; q_proj is [32 * 128, 5120] and o_proj
    [5120, 4096]."""
    inv = build_inventory(spec_from_config(constructed("mistralai__Mistral-Nemo-Instruct-2407")))
    names = {t.name: t.shape for t in inv.tensors}
    assert names["model.layers.0.self_attn.q_proj.weight"] == (4096, 5120)
    assert names["model.layers.0.self_attn.k_proj.weight"] == (1024, 5120)
    assert names["model.layers.0.self_attn.o_proj.weight"] == (5120, 4096)


def test_cohere2_head_dim_from_the_file_wins() -> None:
    """Cohere2Config.__post_init__ sets head_dim = hidden // heads, but a head_dim in config.json
    is an extra kwarg set after it, and Cohere2Attention reads config.head_dim: transformers 5.25
    builds 64-wide heads (tests/data/class_defaults.json cohere2~head_dim64 is exact too)."""
    cfg = constructed("CohereForAI__c4ai-command-r7b-12-2024")
    cfg["head_dim"] = 64
    spec = spec_from_config(cfg)
    assert {layer.attention.head_dim for layer in spec.layers} == {64}


def test_pixtral12b_llava_tower() -> None:
    """LLaVA projector (biases, no patch merger); 1024 // 16 = 64 patches a side, 64 * 65 = 4,160
    tokens per image with the row breaks."""
    spec = spec_from_config(constructed("mistral-community__pixtral-12b"))
    assert spec.towers[0].tokens_per_item == 4160
    names = {t.name: t.shape for t in build_inventory(spec).tensors}
    assert names["multi_modal_projector.linear_1.bias"] == (5120,)
    assert not any("patch_merger" in n for n in names)


def test_llava_other_tower_refused() -> None:
    from vramplan.errors import ConfigError

    cfg = constructed("mistral-community__pixtral-12b")
    cfg["vision_config"] = {"model_type": "clip_vision_model", "hidden_size": 1024}
    with pytest.raises(ConfigError, match="clip_vision_model"):
        spec_from_config(cfg)


def test_exaone4_string_pattern_without_layer_types() -> None:
    """EXAONE's "LLLG" pattern read cyclically when layer_types is omitted."""
    cfg = constructed("LGAI-EXAONE__EXAONE-4.0-32B")
    del cfg["layer_types"]
    spec = spec_from_config(cfg)
    assert [layer.index for layer in spec.layers if layer.attention.kind == "full"] == list(
        range(3, 64, 4))
