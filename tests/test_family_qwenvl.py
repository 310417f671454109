"""Qwen multimodal / Qwen3.5 (``families/qwen_vl.py``) and InternVL (``families/internvl.py``).

Ground truth: transformers 5.25.0 instantiated on the meta device (parameters, unique, no
buffers): ``/work/parity_all.json`` for the shared configs (also in ../shared/models/SOURCES.md as
text-only / whole), ``scripts/gen_param_parity.py``-style instantiation for the configs built here
under tests/data/configs. "text" = the whole model minus the vision tower and projector.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, ROOT
from vramplan.errors import ConfigError
from vramplan.inventory import build_inventory
from vramplan.kv import kv_cache_bytes, summarize
from vramplan.model.hf_config import spec_from_config
from vramplan.model.spec import ModelSpec

SHARED = ROOT.parent / "shared" / "models"
CONSTRUCTED = DATA / "configs"


def _cfg(stem: str) -> dict[str, Any]:
    for folder in (CONSTRUCTED, SHARED):
        path = folder / f"{stem}.json"
        if path.exists():
            return dict(json.loads(path.read_text()))
    pytest.skip(f"{stem}.json not present (../shared/models is beside the checkout in CI)")


def _spec(stem: str) -> ModelSpec:
    return spec_from_config(_cfg(stem), stem)


# (config, whole-model params, text-only params) from transformers 5.25.0 on the meta device
PARAMS = [
    ("Qwen__Qwen3-VL-8B-Instruct", 8_767_123_696, 8_190_735_360),
    ("Qwen__Qwen3-VL-30B-A3B-Instruct", 31_070_754_032, 30_532_122_624),
    ("Qwen__Qwen3.5-27B", 27_356_728_560, 26_895_998_464),
    ("Qwen__Qwen3.5-35B-A3B", 35_107_181_936, 34_660_610_688),
    ("Qwen__Qwen2.5-VL-7B-Instruct", 8_292_166_656, 7_615_616_512),
    ("Qwen__Qwen2-VL-7B-Instruct", 8_291_375_616, 7_615_616_512),
    ("OpenGVLab__InternVL3-8B-hf", 7_944_373_760, 7_612_820_992),
]


@pytest.mark.parametrize(("stem", "whole", "text"), PARAMS, ids=[p[0] for p in PARAMS])
def test_params_exact(stem: str, whole: int, text: int) -> None:
    inv = build_inventory(_spec(stem))
    assert inv.params_total == whole
    assert inv.params_text == text
    assert inv.buffers_total == 0


@pytest.mark.parametrize("stem", [p[0] for p in PARAMS])
def test_families_registered(stem: str) -> None:
    spec = _spec(stem)
    assert spec.family == ("internvl" if stem.startswith("OpenGVLab") else "qwen_vl")
    assert len(spec.towers) == 1 and spec.towers[0].kind == "vision"


def test_qwen3_5_mtp_reported_separately() -> None:
    """mtp_num_hidden_layers = 1: mtp.fc [H, 2H], 3 norms, one gated full-attention layer.

    Qwen3.5-27B (H 5120): fc 52,428,800 + norms 15,360 + q 12288x5120 62,914,560 + k/v
    2x1024x5120 10,485,760 + o 5120x6144 31,457,280 + q/k norm 512 + 2 norms 10,240 + MLP
    3x17408x5120 267,386,880 = 424,699,392 (not in transformers' count: it skips ``mtp.*``).
    """
    inv = build_inventory(_spec("Qwen__Qwen3.5-27B"))
    assert inv.params_mtp == 424_699_392
    names = {t.name for t in inv.mtp_tensors}
    assert {"mtp.fc.weight", "mtp.pre_fc_norm_embedding.weight", "mtp.pre_fc_norm_hidden.weight",
            "mtp.norm.weight", "mtp.layers.0.self_attn.q_proj.weight"} <= names
    assert all(t.role == "mtp" for t in inv.mtp_tensors)
    moe = build_inventory(_spec("Qwen__Qwen3.5-35B-A3B"))
    # per-expert MTP experts in the checkpoint (256 x 3) + 17 other tensors = 785
    assert sum(t.count for t in moe.mtp_tensors) == 785
    assert moe.params_mtp == 844_640_768
    assert _spec("Qwen__Qwen3-VL-8B-Instruct").mtp_layers == 0


def test_qwen3_5_layer_tensors() -> None:
    """Gated DeltaNet split projections and the gated q_proj of the full-attention layers."""
    inv = build_inventory(_spec("Qwen__Qwen3.5-27B"))
    by = {t.name: t for t in inv.tensors}
    p = "model.language_model.layers"
    assert by[f"{p}.0.linear_attn.in_proj_qkv.weight"].shape == (10240, 5120)  # 2*16*128 + 48*128
    assert by[f"{p}.0.linear_attn.in_proj_z.weight"].shape == (6144, 5120)
    assert by[f"{p}.0.linear_attn.in_proj_b.weight"].shape == (48, 5120)
    assert by[f"{p}.0.linear_attn.conv1d.weight"].shape == (10240, 1, 4)
    assert by[f"{p}.3.self_attn.q_proj.weight"].shape == (12288, 5120)  # 2 x 24 heads x 256
    assert by[f"{p}.3.self_attn.o_proj.weight"].shape == (5120, 6144)
    assert f"{p}.3.linear_attn.in_proj_qkv.weight" not in by
    assert "model.visual.deepstack_merger_list.0.norm.weight" not in by  # Qwen3.5: no DeepStack


def test_qwen3_vl_deepstack_mergers() -> None:
    """3 DeepStack mergers: LayerNorm after the 2x2 shuffle (4608), fc1 4608x4608, fc2 4096x4608."""
    inv = build_inventory(_spec("Qwen__Qwen3-VL-8B-Instruct"))
    by = {t.name: t for t in inv.tensors}
    assert by["model.visual.deepstack_merger_list.2.norm.weight"].shape == (4608,)
    assert by["model.visual.deepstack_merger_list.2.linear_fc2.weight"].shape == (4096, 4608)
    assert by["model.visual.merger.norm.weight"].shape == (1152,)
    assert "model.visual.deepstack_merger_list.3.norm.weight" not in by
    assert by["model.visual.patch_embed.proj.weight"].shape == (1152, 3, 2, 16, 16)


def test_moe_experts_stacked_and_active() -> None:
    """All experts are counted; active = dense parts + 8/256 (8/128) of the routed experts."""
    inv = build_inventory(_spec("Qwen__Qwen3.5-35B-A3B"))
    by = {t.name: t for t in inv.tensors}
    gu = by["model.language_model.layers.0.mlp.experts.gate_up_proj"]
    assert gu.stacked_experts == 256 and gu.shape == (256, 2048, 1024)  # [E, in, out]
    assert by["model.language_model.layers.0.mlp.shared_expert_gate.weight"].shape == (1, 2048)
    routed = sum(t.numel for t in inv.tensors if t.role == "routed_expert")
    assert routed == 40 * 256 * 3 * 2048 * 512
    assert inv.params_active == inv.params_text - routed + routed * 8 // 256 == 3_454_988_928
    vl = build_inventory(_spec("Qwen__Qwen3-VL-30B-A3B-Instruct"))
    names = {t.name for t in vl.tensors}
    assert "model.language_model.layers.0.mlp.experts.down_proj" in names
    assert "model.language_model.layers.0.mlp.shared_expert.up_proj.weight" not in names
    assert vl.params_active == 3_353_032_704


def test_qwen2_5_vl_checkpoint_names() -> None:
    """Released Qwen2.5-VL checkpoints: ``model.*`` text, ``visual.*`` tower, q/k/v biases."""
    inv = build_inventory(_spec("Qwen__Qwen2.5-VL-7B-Instruct"))
    by = {t.name: t for t in inv.tensors}
    assert by["model.layers.0.self_attn.q_proj.bias"].shape == (3584,)
    assert "model.layers.0.self_attn.o_proj.bias" not in by
    assert "model.layers.0.self_attn.q_norm.weight" not in by
    assert by["visual.merger.mlp.0.weight"].shape == (5120, 5120)  # 1280 x 2^2
    assert by["visual.blocks.31.mlp.gate_proj.bias"].shape == (3420,)
    assert by["visual.patch_embed.proj.weight"].shape == (1280, 3, 2, 14, 14)
    q2 = {t.name: t for t in build_inventory(_spec("Qwen__Qwen2-VL-7B-Instruct")).tensors}
    assert q2["visual.blocks.0.mlp.fc1.weight"].shape == (5120, 1280)  # embed_dim x mlp_ratio 4
    assert q2["visual.merger.ln_q.bias"].shape == (1280,)  # LayerNorm (Qwen2.5-VL: RMSNorm)
    assert q2["visual.merger.mlp.2.weight"].shape == (3584, 5120)


# --- KV cache (bf16, 2 bytes per element, one TP rank) -------------------------------------------


def test_kv_qwen3_vl_8b() -> None:
    """36 full layers x 8 KV heads x 128 x (K+V) x 2 B = 36 x 4,096 = 147,456 B per token."""
    s = summarize(_spec("Qwen__Qwen3-VL-8B-Instruct"), "bf16")
    assert s.bytes_per_token == 147_456
    assert s.state_bytes_per_sequence == 0
    assert (s.full_layers, s.linear_layers) == (36, 0)


def test_kv_qwen3_5_27b() -> None:
    """16 full layers x 4 KV heads x 256 x 2 x 2 B = 16 x 4,096 = 65,536 B per token.

    48 Gated DeltaNet layers, key_dim 16x128 = 2,048, value_dim 48x128 = 6,144:
    conv (4-1) x (2x2,048 + 6,144) = 30,720 elements x 2 B (model dtype) = 61,440 B + recurrent
    48 x 128 x 128 = 786,432 elements x 4 B (config mamba_ssm_dtype float32, which vLLM takes)
    = 3,145,728 B -> 3,207,168 B per layer; x 48 = 153,944,064 B per sequence, whatever the
    context.
    """
    spec = _spec("Qwen__Qwen3.5-27B")
    s = summarize(spec, "bf16")
    assert s.bytes_per_token == 65_536
    assert s.state_bytes_per_sequence == 153_944_064
    assert (s.full_layers, s.linear_layers) == (16, 48)
    assert kv_cache_bytes(spec, 10_000, 2, "bf16") == 2 * (65_536 * 10_000 + 153_944_064)


def test_kv_qwen3_5_35b_a3b() -> None:
    """10 full layers x 2 KV heads x 256 x 2 x 2 B = 10 x 2,048 = 20,480 B per token.

    30 GDN layers, key_dim 2,048, value_dim 32x128 = 4,096: conv 3 x 8,192 = 24,576 x 2 B =
    49,152 B + recurrent 32 x 128 x 128 = 524,288 x 4 B (float32) = 2,097,152 B -> 2,146,304 B
    per layer; x 30 = 64,389,120 B.
    """
    s = summarize(_spec("Qwen__Qwen3.5-35B-A3B"), "bf16")
    assert s.bytes_per_token == 20_480
    assert s.state_bytes_per_sequence == 64_389_120
    assert (s.full_layers, s.linear_layers) == (10, 30)


@pytest.mark.parametrize(("stem", "per_token"), [
    ("Qwen__Qwen3-VL-30B-A3B-Instruct", 98_304),  # 48 x 4 x 128 x 2 x 2 B
    ("Qwen__Qwen2.5-VL-7B-Instruct", 57_344),  # 28 x 4 x 128 x 2 x 2 B
    ("Qwen__Qwen2-VL-7B-Instruct", 57_344),  # same Qwen2-7B text shapes
    ("OpenGVLab__InternVL3-8B-hf", 57_344),  # same Qwen2.5-7B text model
])
def test_kv_dense_attention(stem: str, per_token: int) -> None:
    assert summarize(_spec(stem), "bf16").bytes_per_token == per_token


# --- image tokens --------------------------------------------------------------------------------


def test_image_tokens_rule() -> None:
    from vramplan.families.towers_qwen_vl import image_tokens

    # Qwen3-VL: 32 px per token side; 1024x1024 -> 32 x 32 = 1,024 tokens
    assert image_tokens(1024, 1024, 16, 2, 65_536, 16_777_216) == 1024
    # Qwen2.5-VL: 28 px; 1000x700 -> sides 1008 x 700 -> 36 x 25 = 900 tokens
    assert image_tokens(1000, 700, 14, 2, 3136, 12_845_056) == 900
    # tiny image scaled up to min_pixels 56x56 -> 2 x 2; huge image capped at max_pixels
    assert image_tokens(10, 10, 14, 2, 3136, 12_845_056) == 4
    assert image_tokens(8000, 8000, 14, 2, 3136, 12_845_056) <= 12_845_056 // 784
    spec = _spec("Qwen__Qwen3-VL-8B-Instruct")
    assert spec.towers[0].tokens_per_item == 0  # dynamic resolution: not stated by config.json
    assert any("32x32 pixels" in n for n in spec.notes)
    assert _spec("OpenGVLab__InternVL3-8B-hf").towers[0].tokens_per_item == 256  # per 448px tile


# --- estimate and refusals -----------------------------------------------------------------------


def test_estimate_qwen3_5_35b_a3b_counts_all_experts() -> None:
    from vramplan import api

    est = api.estimate(_cfg("Qwen__Qwen3.5-35B-A3B"), gpu="h100", gpus=2, engine="vllm",
                       context=32_768)
    assert est.model.params_total == 35_107_181_936
    assert est.model.params_mtp == 844_640_768
    assert est.weights_bytes >= 2 * 35_107_181_936  # bf16, every expert resident
    assert est.kv_cache_bytes_per_token == 20_480
    assert est.kv_state_bytes_per_sequence == 64_389_120


def test_renamed_model_type_recovered_by_architecture() -> None:
    cfg = _cfg("Qwen__Qwen3.5-35B-A3B")
    cfg["model_type"] = "qwen3_5_moe_custom"
    cfg["text_config"] = {k: v for k, v in cfg["text_config"].items() if k != "model_type"}
    assert build_inventory(spec_from_config(cfg)).params_total == 35_107_181_936


def test_layer_types_default_interval() -> None:
    """Without layer_types every 4th layer is full attention (Qwen3_5TextConfig.__post_init__)."""
    cfg = _cfg("Qwen__Qwen3.5-27B")
    del cfg["text_config"]["layer_types"]
    spec = spec_from_config(cfg)
    assert [layer.attention.kind for layer in spec.layers] == \
        ["full" if (i + 1) % 4 == 0 else "linear" for i in range(64)]
    assert build_inventory(spec).params_total == 27_356_728_560


@pytest.mark.parametrize(("stem", "edit", "field"), [
    ("Qwen__Qwen3.5-27B", {"layer_types": ["sliding_attention"] * 64}, "layer_types"),
    ("Qwen__Qwen3.5-27B", {"layer_types": ["full_attention"] * 3}, "layer_types"),
    ("Qwen__Qwen3.5-27B", {"linear_num_value_heads": 40}, "linear_num_value_heads"),
    ("Qwen__Qwen3.5-35B-A3B", {"num_experts_per_tok": 300}, "num_experts_per_tok"),
])
def test_bad_text_configs_refused(stem: str, edit: dict[str, Any], field: str) -> None:
    cfg = _cfg(stem)
    cfg["text_config"].update(edit)
    with pytest.raises(ConfigError, match=field):
        spec_from_config(cfg)


def test_unmodelled_structure_refused() -> None:
    """Sliding-window Qwen2.5-VL text layers and MoE InternVL text models are not guessed."""
    cfg = _cfg("Qwen__Qwen2.5-VL-7B-Instruct")
    cfg["use_sliding_window"] = True
    with pytest.raises(ConfigError, match="sliding_window"):
        spec_from_config(cfg)
    ivl = _cfg("OpenGVLab__InternVL3-8B-hf")
    ivl["text_config"]["model_type"] = "internlm2"
    with pytest.raises(ConfigError, match="internlm2"):
        spec_from_config(ivl)
    bad = _cfg("Qwen__Qwen3-VL-8B-Instruct")
    bad["vision_config"]["depth"] = "27"
    with pytest.raises(ConfigError, match="vision_config.depth"):
        spec_from_config(bad)


def test_constructed_configs_name_their_source() -> None:
    for path in sorted(Path(CONSTRUCTED).glob("*.json")):
        if path.stem in {p[0] for p in PARAMS}:
            assert "transformers 5.25.0" in json.loads(path.read_text())["_vramplan_source"]


# --- broken configs: one ConfigError line, never a crash -----------------------------------------


def test_mutated_configs_are_ok_or_one_input_error() -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from vramplan.api import estimate
    from vramplan.errors import InputError

    configs = [_cfg(p[0]) for p in PARAMS]
    bad = st.sampled_from([None, 0, -1, 3.5, "x", [], {}, True, 1 << 40, 7, 1, [1, 2]])

    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(i=st.integers(0, len(configs) - 1), part=st.sampled_from(["text", "vision", "top"]),
           data=st.data())
    def run(i: int, part: str, data: Any) -> None:
        cfg = json.loads(json.dumps(configs[i]))
        if part == "text":
            target = cfg["text_config"] if "text_config" in cfg else cfg
        elif part == "vision":
            target = cfg["vision_config"]
        else:
            target = cfg
        keys = sorted(target)
        for _ in range(data.draw(st.integers(1, 3))):
            key = data.draw(st.sampled_from(keys))
            if data.draw(st.booleans()):
                target.pop(key, None)
            else:
                target[key] = data.draw(bad)
        try:
            est = estimate(cfg, gpu="h100", context=1024, engine="vllm")
        except InputError as e:
            assert str(e) and "\n" not in str(e)
        else:
            assert est.weights_bytes >= 0

    run()


def test_qwen35moe_gguf_header_reads_as_hybrid(tmp_path: Path) -> None:
    """A llama.cpp ``qwen35moe`` GGUF (Qwen3NextModel's ssm.* keys) gives the Qwen3.5 spec.

    Tiny file: 8 main blocks + 1 nextn block, n_embd 64, 4 heads / 2 KV heads of 32, GDN with
    group_count 2 key heads of state_size 16 and time_step_rank 4 value heads (inner 64).
    Full layers 3 and 7: KV 2 x 2 x 32 x 2 x 2 B = 512 B per token. Six GDN layers: conv 3 x
    (2x32 + 64) = 384 + recurrent 4 x 16 x 16 = 1,024 -> 1,408 x 2 B = 2,816 B each, 16,896 B.
    """
    import gguf

    from tests.gguf_files import Q, write_tensors
    from vramplan.model.gguf_source import load_gguf_source

    path = tmp_path / "qwen35moe-tiny.gguf"
    w = gguf.GGUFWriter(str(path), "qwen35moe")
    arch = "qwen35moe"
    for key, val in {"block_count": 9, "embedding_length": 64, "attention.head_count": 4,
                     "attention.head_count_kv": 2, "attention.key_length": 32,
                     "attention.value_length": 32, "context_length": 4096, "expert_count": 4,
                     "expert_used_count": 2, "expert_feed_forward_length": 16,
                     "nextn_predict_layers": 1, "ssm.conv_kernel": 4, "ssm.state_size": 16,
                     "ssm.group_count": 2, "ssm.time_step_rank": 4, "ssm.inner_size": 64,
                     "full_attention_interval": 4, "vocab_size": 128}.items():
        w.add_uint32(f"{arch}.{key}", val)
    write_tensors(w, {"token_embd.weight": (Q.F32, (64, 128)), "output.weight": (Q.F32, (64, 128)),
                      "output_norm.weight": (Q.F32, (64,)),
                      "blk.7.ffn_up_shexp.weight": (Q.F32, (64, 16))})
    spec = spec_from_config(load_gguf_source(path).config)
    assert spec.family == "qwen_vl" and spec.num_layers == 8 and not spec.towers
    assert [layer.attention.kind for layer in spec.layers] == ["linear"] * 3 + ["full"] + \
        ["linear"] * 3 + ["full"]
    assert all(layer.attention.output_gate for layer in spec.layers if layer.attention.kind == "full")
    assert spec.layers[0].mlp.shared_intermediate_size == 16
    s = summarize(spec, "bf16")
    assert (s.bytes_per_token, s.state_bytes_per_sequence) == (512, 16_896)


def _variant(name: str) -> dict[str, Any]:
    """Edited copies of the configs above exercising other branches (ground truth: the edited
    config instantiated with transformers 5.25.0 on the meta device)."""
    if name == "qwen3_5_moe_interval":  # no layer_types: every 3rd layer full; DeepStack ignored
        cfg = _cfg("Qwen__Qwen3.5-35B-A3B")
        cfg["text_config"].pop("layer_types")
        cfg["text_config"].update(num_hidden_layers=8, full_attention_interval=3)
        cfg["vision_config"]["deepstack_visual_indexes"] = [1, 2]
    elif name == "qwen3_vl_moe_mixed":  # dense layers from mlp_only_layers / decoder_sparse_step
        cfg = _cfg("Qwen__Qwen3-VL-30B-A3B-Instruct")
        cfg["text_config"].update(mlp_only_layers=[0, 5], num_hidden_layers=6,
                                  decoder_sparse_step=2, attention_bias=True)
    elif name == "internvl_tie_default":  # no top-level tie_word_embeddings: InternVLConfig ties
        cfg = _cfg("OpenGVLab__InternVL3-8B-hf")
        del cfg["tie_word_embeddings"]
    elif name == "internvl_qwen3":  # InternVL3.5-style Qwen3 text, InternViT-6B-style options
        cfg = _cfg("OpenGVLab__InternVL3-8B-hf")
        cfg["text_config"] = {k: v for k, v in _cfg("Qwen__Qwen3-8B").items()
                              if k != "architectures"}
        cfg["vision_config"].update(use_qk_norm=True, norm_type="rms_norm", use_mean_pooling=False,
                                    use_mask_token=True, attention_bias=False)
        cfg["downsample_ratio"] = 0.25
    else:
        raise AssertionError(name)
    cfg.pop("_vramplan_source", None)
    return cfg


@pytest.mark.parametrize(("name", "whole"), [
    ("qwen3_5_moe_interval", 8_192_390_000),
    ("qwen3_vl_moe_mixed", 2_633_757_424),
    ("internvl_tie_default", 7_400_774_144),
    ("internvl_qwen3", 8_578_604_032),
])
def test_config_variants_exact(name: str, whole: int) -> None:
    spec = spec_from_config(_variant(name))
    assert build_inventory(spec).params_total == whole
    if name == "qwen3_vl_moe_mixed":
        assert [layer.mlp.kind for layer in spec.layers] == ["dense", "moe", "dense", "moe",
                                                              "dense", "dense"]
    if name == "internvl_tie_default":
        assert spec.tie_word_embeddings


def test_llamacpp_gguf_pricing_matches_the_text_twin() -> None:
    """Priced as a Q4_K_M GGUF, Qwen3-VL-8B's text model costs what Qwen3-8B does (same
    shapes; ``model.language_model.*`` mapped like ``model.*``); llama.cpp loads the tower only
    from a separate ``--mmproj`` file (engines/multimodal.py), so without it the weights are
    the text twin's exactly."""
    from vramplan import api

    def weights(stem: str) -> int:
        return api.estimate(_cfg(stem), gpu="h100", engine="llamacpp", quant="q4_k_m",
                            context=8192).weights_bytes

    assert weights("Qwen__Qwen3-VL-8B-Instruct") == weights("Qwen__Qwen3-8B")
