"""MoE / MLA families of 2025-26: DeepSeek-V3.2, DeepSeek-V4, GLM-4.7-Flash, MiniMax-M2.5,
Llama-3.3-Nemotron-Super-49B (DeciLM block configs).

Ground truth:
* parameter counts: transformers 5.25.0 on the meta device (``/work/parity_all.json``, the same
  numbers as ``shared/models/SOURCES.md``), except Nemotron-Super, which transformers cannot build
  (remote code): its count is recomputed here, independently of the family module, from the
  shapes of nvidia's ``modeling_decilm.py`` (DeciLMAttention / DeciLMMLP /
  ``_ffn_mult_to_intermediate_size``) and agrees with the model card's 49.9B;
* KV bytes per token: worked by hand in each test's docstring.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vramplan import kv
from vramplan.errors import ConfigError
from vramplan.inventory import build_inventory
from vramplan.model.hf_config import spec_from_config
from vramplan.model.spec import ModelSpec

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "models"

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/models not present")


def cfg(stem: str) -> dict[str, Any]:
    path = SHARED / f"{stem}.json"
    if not path.is_file():
        pytest.skip(f"{path.name} not in shared/models")
    return dict(json.loads(path.read_text()))


def spec(stem: str) -> ModelSpec:
    return spec_from_config(cfg(stem), stem)


V32 = "deepseek-ai__DeepSeek-V3.2"
V4 = "deepseek-ai__DeepSeek-V4-Flash"
GLM_FLASH = "zai-org__GLM-4.7-Flash"
MINIMAX = "MiniMaxAI__MiniMax-M2.5"
NEMOTRON = "nvidia__Llama-3_3-Nemotron-Super-49B-v1"


# ---------------------------------------------------------------- exact parameters

@pytest.mark.parametrize(("stem", "family", "params", "buffers"), [
    # transformers 5.25.0 meta device: params_total, params_total_plus_buffers - params_total
    (V32, "deepseek_v32", 671_877_929_216, 14_848),
    (V4, "deepseek_v4", 284_332_230_231, 2_337_280),
    (GLM_FLASH, "glm4_moe_lite", 29_943_390_976, 2_944),
    (MINIMAX, "minimax_m2", 228_689_748_992, 15_872),
])
def test_exact_params_vs_transformers(stem: str, family: str, params: int, buffers: int) -> None:
    s = spec(stem)
    inv = build_inventory(s)
    assert s.family == family
    assert inv.params_total == params
    assert inv.params_text == params  # text-only models: whole == text
    assert inv.buffers_total == buffers


def test_v32_indexer_tensors_match_transformers_shapes() -> None:
    """DeepseekV32Indexer: wq_b [64*128, 1536], wk [128, 7168], k_norm weight+bias [128],
    weights_proj [64, 7168], on all 61 layers (parity_all.json groups)."""
    inv = build_inventory(spec(V32))
    ix = [t for t in inv.tensors if ".self_attn.indexer." in t.name]
    shapes = {t.name.split(".indexer.")[1]: t.shape for t in ix}
    assert shapes == {"wq_b.weight": (8192, 1536), "wk.weight": (128, 7168),
                      "k_norm.weight": (128,), "k_norm.bias": (128,),
                      "weights_proj.weight": (64, 7168)}
    assert len(ix) == 61 * 5
    assert sum(t.numel for t in ix) == 767_557_632 + 55_967_744 + 2 * 7_808 + 27_983_872


def test_v32_mtp_reported_separately() -> None:
    """One MTP layer (num_nextn_predict_layers 1): a V3 MTP block (13,463,426,304 as the core
    counts DeepSeek-V3's) plus its indexer (8192*1536 + 2*128*7168 + 64*7168 ... see below);
    HF's 671B main + 14B MTP = 685B."""
    inv = build_inventory(spec(V32))
    indexer = 8192 * 1536 + 128 * 7168 + 2 * 128 + 64 * 7168
    v3 = build_inventory(spec("deepseek-ai__DeepSeek-V3"))
    assert inv.params_mtp == v3.params_mtp + indexer
    assert 684e9 < inv.params_total + inv.params_mtp < 686e9


def test_v4_structure() -> None:
    """compress_ratios (44 entries, truncated to 43 layers): 2 sliding, 21 CSA (ratio 4, with an
    indexer), 20 HCA (ratio 128); 3 hash-routed MoE layers hold tid2eid [129280, 6]."""
    inv = build_inventory(spec(V4))
    names = [t.name for t in inv.tensors]
    assert sum(n.endswith(".attn.compressor.wkv.weight") for n in names) == 41
    assert sum(n.endswith(".attn.indexer.wq_b.weight") for n in names) == 21
    tid = [t for t in inv.tensors if t.name.endswith("gate.tid2eid")]
    assert [t.layer for t in tid] == [0, 1, 2] and tid[0].shape == (129280, 6) and tid[0].buffer
    assert "layers.0.attn.compressor.wkv.weight" not in names  # sliding layer
    assert "layers.3.attn.indexer.wq_b.weight" not in names  # HCA: no indexer


def test_nemotron_super_params_from_decilm_shapes() -> None:
    """Independent count from modeling_decilm.py (not the family module's code):
    embed + lm_head 2*V*H, final norm H; per block with attention: input_layernorm H +
    q,o H*H + k,v (64/n_heads_in_group)*128*H each; per block with an FFN:
    post_attention_layernorm H + 3*H*I, I = ceil256(int(2*ffn_mult*H/3))."""
    c = cfg(NEMOTRON)
    h, v, heads = c["hidden_size"], c["vocab_size"], c["num_attention_heads"]
    d = h // heads
    total = 2 * v * h + h
    for b in c["block_configs"]:
        a, f = b["attention"], b["ffn"]
        assert not a["replace_with_linear"] and not f["replace_with_linear"] and not f["no_op"]
        if not a["no_op"]:
            total += h + 2 * h * h + 2 * (heads // a["n_heads_in_group"]) * d * h
        inter = int(2 * f["ffn_mult"] * h / 3)
        inter = -(-inter // 256) * 256
        total += h + 3 * h * inter
    assert total == 49_867_145_216
    assert round(total / 1e9, 1) == 49.9  # model card: 49.9B
    inv = build_inventory(spec(NEMOTRON))
    assert inv.params_total == total
    assert inv.buffers_total == 0


def test_nemotron_ffn_sizes() -> None:
    """_ffn_mult_to_intermediate_size at H=8192: 5.25 -> 28672, 2.625 -> 14336,
    3.28125 -> 17920, 1.3125 -> 7168, 1.0 -> int(5461.3)=5461 -> 5632, 0.5 -> 2730 -> 2816."""
    from vramplan.families.nemotron_nas import ffn_intermediate_size

    got = {m: ffn_intermediate_size(m, 8192) for m in (5.25, 2.625, 3.28125, 1.3125, 1.0, 0.5)}
    assert got == {5.25: 28672, 2.625: 14336, 3.28125: 17920, 1.3125: 7168, 1.0: 5632,
                   0.5: 2816}


# ---------------------------------------------------------------- active parameters

def test_active_params() -> None:
    """DeepSeek-V3.2: ~37B activated (report) + the indexers (61 x 13.1M = 0.85B) -> 38.4B;
    GLM-4.7-Flash ~3B active (3.9B with embedding and head); MiniMax-M2.5 ~10B active
    (11.0B with embedding and head); dense Nemotron: active == total."""
    assert 37e9 < build_inventory(spec(V32)).params_active < 39e9
    assert 3e9 < build_inventory(spec(GLM_FLASH)).params_active < 4.5e9
    assert 9.5e9 < build_inventory(spec(MINIMAX)).params_active < 11.5e9
    nem = build_inventory(spec(NEMOTRON))
    assert nem.params_active == nem.params_total


# ---------------------------------------------------------------- KV bytes per token

def test_kv_v32_includes_indexer() -> None:
    """61 MLA layers x [(kv_lora_rank 512 + qk_rope 64) x 2 B (bf16) + indexer key cache
    (128 FP8 + 128/128 x 4 B fp32 scale = 132 B)] = 61 x 1284 = 78,324 B/token.
    FP8 cache: vLLM turns it into FlashMLA's fp8_ds_mla record, 512 FP8 + 4 x 4 B scales +
    64 x 2 B RoPE = 656 B, so 61 x (656 + 132) = 48,068. TP 8: the latent and the indexer keys
    are replicated on every rank, so the same per rank."""
    s = spec(V32)
    assert all(layer.attention.indexer is not None for layer in s.layers)
    assert kv.indexer_bytes_per_token(s.layers[0].attention) == 132
    assert kv.summarize(s, "bf16").bytes_per_token == 78_324
    assert kv.summarize(s, "fp8").bytes_per_token == 48_068
    # no indexer (DeepSeek-V3): the plain FP8 latent, 61 x 576
    assert kv.summarize(spec("deepseek-ai__DeepSeek-V3"), "fp8").bytes_per_token == 35_136
    assert kv.summarize(s, "bf16", 8).bytes_per_token == 78_324


def test_kv_glm47_flash() -> None:
    """47 MLA layers x (512 + 64) x 2 B = 54,144 B/token (no indexer)."""
    s = spec(GLM_FLASH)
    assert kv.summarize(s, "bf16").bytes_per_token == 54_144
    assert kv.summarize(s, "bf16").full_layers == 47


def test_kv_minimax_m25() -> None:
    """62 layers x 8 KV heads x 128 x (K + V) x 2 B = 62 x 4096 = 253,952 B/token;
    TP 8: 1 head per rank -> 31,744."""
    s = spec(MINIMAX)
    assert kv.summarize(s, "bf16").bytes_per_token == 253_952
    assert kv.summarize(s, "bf16", 8).bytes_per_token == 31_744


def test_kv_nemotron_per_block_heads() -> None:
    """49 blocks with attention (31 no-op), each 64 / n_heads_in_group 8 = 8 KV heads x
    head_dim 128 x (K + V) x 2 B = 4096 -> 49 x 4096 = 200,704 B/token; TP 2 -> 100,352.
    vLLM registers no KV cache for the no-op blocks."""
    from vramplan.engines.vllm import layer_kv_specs

    s = spec(NEMOTRON)
    kinds = [layer.attention.kind for layer in s.layers]
    assert kinds.count("full") == 49 and kinds.count("none") == 31
    assert {layer.attention.num_kv_heads for layer in s.layers if layer.attention.kind == "full"} \
        == {8}
    summ = kv.summarize(s, "bf16")
    assert summ.bytes_per_token == 200_704 and summ.full_layers == 49
    assert kv.summarize(s, "bf16", 2).bytes_per_token == 100_352
    specs, _ = layer_kv_specs(s, range(80), "bf16", 1, 16)
    assert len(specs) == 49 and {x.kind for x in specs} == {"full"}
    assert {x.page_bytes for x in specs} == {16 * 4096}


def test_kv_v4_window_plus_compressed_entries() -> None:
    """Every V4 layer keeps a 128-token window of one shared K=V head of 512: 43 x 512 x 2 B x
    128 = 5,636,096 B per sequence. The 21 CSA layers add one entry of 512 + 128 (indexer)
    values per 4 tokens, the 20 HCA layers one of 512 per 128 tokens: 21 x 640 x 2 / 4 +
    20 x 512 x 2 / 128 = 6,720 + 160 = 6,880 B per context token at bf16 (transformers 5.25.0
    DeepseekV4CSACache / DeepseekV4HCACache). At 1,000,000 tokens: ceil(10^6/4) = 250,000 CSA
    entries x 1,280 B x 21 + ceil(10^6/128) = 7,813 HCA entries x 1,024 B x 20."""
    s = spec(V4)
    summ = kv.summarize(s, "bf16")
    assert summ.bytes_per_token == 6_880
    assert summ.window_bytes_per_sequence == 43 * 1024 * 128
    total = kv.kv_cache_bytes(s, 1_000_000, 1, "bf16")
    assert total == 5_636_096 + 250_000 * 1_280 * 21 + 7_813 * 1_024 * 20
    assert kv.kv_cache_bytes(s, 2_000_000, 1, "bf16") > total  # grows with the context
    assert any("6880 B per context token" in n for n in s.notes)
    assert any("expert_dtype fp4" in n for n in s.notes)


# ---------------------------------------------------------------- estimates

@pytest.mark.parametrize("engine", ["auto", "vllm", "sglang"])
def test_v32_does_not_fit_one_h100(engine: str) -> None:
    """671.9B parameters (FP8 block ~ 690 GB) can never fit one 80 GB H100."""
    from vramplan.api import estimate

    e = estimate(cfg(V32), gpu="H100", engine=engine, allow_hub=False)
    assert not e.fits
    assert e.devices[0].weights_bytes > 600 * 2**30


def test_v32_kv_in_vllm_pages() -> None:
    """vLLM: one MLA page per layer holds the latent and the indexer keys: block 64 x 1284."""
    from vramplan.engines.vllm import layer_kv_specs

    s = spec(V32)
    specs, block = layer_kv_specs(s, range(61), "bf16", 8, 64)
    assert block == 64 and {x.page_bytes for x in specs} == {64 * 1284}


# ---------------------------------------------------------------- refusals / config handling

def test_nemotron_sliding_block_refused() -> None:
    c = cfg(NEMOTRON)
    c["block_configs"][0]["attention"]["window_length"] = 4096
    with pytest.raises(ConfigError, match="window_length"):
        spec_from_config(c)


def test_nemotron_linear_replacements() -> None:
    """replace_with_linear: input_layernorm + self_attn.linear_attn [H, H] (no KV);
    post_attention_layernorm + mlp.linear_mlp [H, H]."""
    c = cfg(NEMOTRON)
    base = build_inventory(spec_from_config(c)).params_total
    c["block_configs"][6]["attention"]["replace_with_linear"] = True  # was no_op
    c["block_configs"][6]["attention"]["no_op"] = False
    c["block_configs"][0]["ffn"]["replace_with_linear"] = True  # was ffn_mult 2.625
    s = spec_from_config(c)
    inv = build_inventory(s)
    h = 8192
    assert inv.params_total == base + (h + h * h) + (h * h - 3 * h * 14336)
    assert s.layers[6].attention.kind == "none"
    names = {t.name for t in inv.tensors}
    assert "model.layers.6.self_attn.linear_attn.weight" in names
    assert "model.layers.0.mlp.linear_mlp.weight" in names


def test_glm5_indexer_types() -> None:
    """GLM-5 (glm_moe_dsa): a 'shared' layer has no indexer tensors and no indexer cache."""
    c = cfg(V32)
    c.update({"model_type": "glm_moe_dsa", "architectures": ["GlmMoeDsaForCausalLM"],
              "index_topk_pattern": "FS" * 30 + "F"})
    s = spec_from_config(c)
    flags = [layer.attention.indexer is not None for layer in s.layers]
    assert flags == [i % 2 == 0 for i in range(61)]
    inv = build_inventory(s)
    assert sum(t.name.endswith("indexer.wq_b.weight") for t in inv.tensors) == 31
    assert kv.summarize(s, "bf16").bytes_per_token == 61 * 1152 + 31 * 132


def test_minimax_shared_expert_refused() -> None:
    c = cfg(MINIMAX)
    c["shared_intermediate_size"] = 1536
    with pytest.raises(ConfigError, match="shared_intermediate_size"):
        spec_from_config(c)


# ---------------------------------------------------------------- constructed configs (tests/data)

CONSTRUCTED = ROOT / "tests" / "data" / "configs"


def constructed(stem: str) -> dict[str, Any]:
    return dict(json.loads((CONSTRUCTED / f"{stem}.json").read_text()))


@pytest.mark.parametrize(("stem", "family", "params", "buffers", "active"), [
    # params/buffers: transformers 5.25.0 on the meta device (the parity venv), this config;
    # active: a sanity band around the published figure
    ("zai-org__GLM-5", "glm_moe_dsa", 743_911_199_232, 19_200, (39e9, 43e9)),  # 744B / 40B
    ("tencent__Hunyuan-A13B-Instruct", "hunyuan_moe", 80_393_183_232, 0, (12e9, 14e9)),  # 80B/13B
    ("baidu__ERNIE-4.5-21B-A3B-PT", "ernie45_moe", 21_825_437_888, 0, (3e9, 3.6e9)),  # 21B / 3B
    ("microsoft__Phi-3.5-MoE-instruct", "phimoe", 41_873_153_344, 0, (6.5e9, 6.7e9)),  # 41.9/6.6
    ("XiaomiMiMo__MiMo-V2-Flash", "mimo_v2_flash", 308_778_768_832, 12_032, (15e9, 16e9)),
])
def test_constructed_exact_params(stem: str, family: str, params: int, buffers: int,
                                  active: tuple[float, float]) -> None:
    s = spec_from_config(constructed(stem), stem)
    inv = build_inventory(s)
    assert s.family == family
    assert inv.params_total == params
    assert inv.buffers_total == buffers
    assert active[0] < inv.params_active < active[1]


def test_kv_constructed() -> None:
    """By hand, bf16:
    GLM-5: 78 MLA layers x (576 x 2 + 132 indexer) = 78 x 1284 = 100,152 B/token.
    Hunyuan-A13B: 32 x 8 KV heads x 128 x 2 x 2 B = 131,072. ERNIE-4.5-21B: 28 x 4 x 128 x 4 =
    57,344. Phi-3.5-MoE: 32 x 8 x 128 x 4 = 131,072 (sliding_window = max context: full).
    MiMo-V2-Flash: 9 full layers x 4 KV heads x (192 + 128) x 2 B = 23,040 B/token, and 39 SWA
    layers x 8 x 320 x 2 = 5120 B/token each, capped at 128 + 1 = 129 tokens: 25,758,720 B per
    sequence."""
    def summ(stem: str) -> kv.KvSummary:
        return kv.summarize(spec_from_config(constructed(stem), stem), "bf16")

    assert summ("zai-org__GLM-5").bytes_per_token == 100_152
    assert summ("tencent__Hunyuan-A13B-Instruct").bytes_per_token == 131_072
    assert summ("baidu__ERNIE-4.5-21B-A3B-PT").bytes_per_token == 57_344
    assert summ("microsoft__Phi-3.5-MoE-instruct").bytes_per_token == 131_072
    mimo = summ("XiaomiMiMo__MiMo-V2-Flash")
    assert (mimo.bytes_per_token, mimo.full_layers, mimo.windowed_layers) == (23_040, 9, 39)
    assert mimo.window_bytes_per_sequence == 39 * 5120 * 129


def test_mimo_transformers_spelling_same_model() -> None:
    """layer_types / mlp_layer_types (transformers) read the same as hybrid_layer_pattern /
    moe_layer_freq (Hub)."""
    hub = constructed("XiaomiMiMo__MiMo-V2-Flash")
    tf = {k: v for k, v in hub.items() if k not in ("hybrid_layer_pattern", "moe_layer_freq")}
    tf["layer_types"] = ["full_attention" if p == 0 else "sliding_attention"
                         for p in hub["hybrid_layer_pattern"]]
    tf["mlp_layer_types"] = ["dense" if f == 0 else "sparse" for f in hub["moe_layer_freq"]]
    assert spec_from_config(tf).layers == spec_from_config(hub).layers


def test_hunyuan_nonuniform_lists_refused() -> None:
    c = constructed("tencent__Hunyuan-A13B-Instruct")
    c["moe_intermediate_size"] = [2048] * 32
    with pytest.raises(ConfigError, match="moe_intermediate_size"):
        spec_from_config(c)


def test_ernie_moe_schedule() -> None:
    """moe_layer_start_index 1, interval 1 -> layer 0 dense; interval 2 -> odd layers MoE."""
    c = constructed("baidu__ERNIE-4.5-21B-A3B-PT")
    kinds = [la.mlp.kind for la in spec_from_config(c).layers]
    assert kinds == ["dense"] + ["moe"] * 27
    c["moe_layer_interval"] = 2
    kinds = [la.mlp.kind for la in spec_from_config(c).layers]
    assert kinds == ["moe" if (i + 1) % 2 == 0 else "dense" for i in range(28)]


@pytest.mark.parametrize(("stem", "key", "value", "field"), [
    (V4, "compress_ratios", [0, 4], "layer_types"),
    (V4, "compress_rates", {"compressed_sparse_attention": "x"}, "compress_rates"),
    (V32, "q_lora_rank", None, "q_lora_rank"),
    (NEMOTRON, "block_configs", [], "block_configs"),
])
def test_bad_values_are_config_errors(stem: str, key: str, value: Any, field: str) -> None:
    """A broken config is one ConfigError naming the field, never a crash."""
    c = cfg(stem)
    c[key] = value
    with pytest.raises(ConfigError, match=field):
        spec_from_config(c)
