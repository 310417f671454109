"""llama-quantize type selection (quant/gguf_mix.py) on real model shapes."""

from __future__ import annotations

import math

import pytest

from vramplan.errors import InputError
from vramplan.quant.gguf_mix import (
    FTYPES,
    MixContext,
    allows_quantization,
    ftype_default_type,
    hf_to_gguf_name,
    hf_to_gguf_shapes,
    mix_bytes,
    predict_mix,
    tensor_category,
)

Shapes = dict[str, tuple[int, ...]]

# published files (bartowski/Meta-Llama-3.1-8B-Instruct-GGUF): whole-file sizes, which include
# about 7.8 MB of metadata (the 128256-token vocabulary and its merges)
LLAMA31_8B_Q4_K_M_FILE = 4_920_734_016
LLAMA31_8B_Q8_0_FILE = 8_540_775_680


def llama31_8b() -> Shapes:
    t: Shapes = {"token_embd.weight": (4096, 128256), "output.weight": (4096, 128256),
                 "output_norm.weight": (4096,), "rope_freqs.weight": (64,)}
    for i in range(32):
        b = f"blk.{i}."
        t.update({b + "attn_norm.weight": (4096,), b + "ffn_norm.weight": (4096,),
                  b + "attn_q.weight": (4096, 4096), b + "attn_k.weight": (4096, 1024),
                  b + "attn_v.weight": (4096, 1024), b + "attn_output.weight": (4096, 4096),
                  b + "ffn_gate.weight": (4096, 14336), b + "ffn_up.weight": (4096, 14336),
                  b + "ffn_down.weight": (14336, 4096)})
    return t


LLAMA_CTX = MixContext(n_layer=32, n_head=32, n_head_kv=8)
MORE_BITS_32 = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31}


def n_params(t: Shapes) -> int:
    return sum(math.prod(s) for s in t.values())


def test_llama31_8b_q4_k_m_matches_published_file() -> None:
    t = llama31_8b()
    mix = predict_mix(t, "Q4_K_M", LLAMA_CTX)
    assert mix["output.weight"] == "Q6_K"
    assert mix["token_embd.weight"] == "Q4_K"  # untied: the base type
    assert mix["output_norm.weight"] == "F32" and mix["rope_freqs.weight"] == "F32"
    for i in range(32):
        want = "Q6_K" if i in MORE_BITS_32 else "Q4_K"
        assert mix[f"blk.{i}.attn_v.weight"] == want
        assert mix[f"blk.{i}.ffn_down.weight"] == want
        for part in ("attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"):
            assert mix[f"blk.{i}.{part}.weight"] == "Q4_K"
    nbytes = mix_bytes(t, mix)
    bpw = 8 * nbytes / n_params(t)
    assert 4.85 <= bpw <= 4.90
    gap = LLAMA31_8B_Q4_K_M_FILE - nbytes  # metadata, tokenizer, padding
    assert 0 < gap < 0.005 * LLAMA31_8B_Q4_K_M_FILE
    assert 5e6 < gap < 9e6


def test_llama31_8b_q8_0_matches_published_file() -> None:
    t = llama31_8b()
    mix = predict_mix(t, "Q8_0", LLAMA_CTX)
    assert {mix[n] for n, s in t.items() if len(s) == 2} == {"Q8_0"}
    nbytes = mix_bytes(t, mix)
    gap = LLAMA31_8B_Q8_0_FILE - nbytes
    assert 0 < gap < 0.005 * LLAMA31_8B_Q8_0_FILE
    # the same ~7.84 MB metadata overhead as the Q4_K_M file (to within a few KB of differing
    # quantization metadata): the predicted tensor bytes of both files are exact
    q4 = mix_bytes(t, predict_mix(t, "Q4_K_M", LLAMA_CTX))
    assert abs(gap - (LLAMA31_8B_Q4_K_M_FILE - q4)) < 16 * 1024


@pytest.mark.parametrize(("ftype", "lo", "hi"), [
    ("Q6_K", 6.55, 6.6), ("Q5_K_M", 5.65, 5.75), ("Q4_K_S", 4.6, 4.7), ("IQ4_XS", 4.4, 4.5),
    ("Q3_K_M", 3.9, 4.1), ("Q2_K", 3.1, 3.25), ("F16", 16.0, 16.01), ("BF16", 16.0, 16.01),
])
def test_llama31_8b_other_ftypes_are_plausible(ftype: str, lo: float, hi: float) -> None:
    t = llama31_8b()
    bpw = 8 * mix_bytes(t, predict_mix(t, ftype, LLAMA_CTX)) / n_params(t)
    assert lo <= bpw <= hi


def test_tied_embeddings_follow_the_output_rule() -> None:
    t = llama31_8b()
    del t["output.weight"]
    assert predict_mix(t, "Q4_K_M", LLAMA_CTX)["token_embd.weight"] == "Q6_K"
    assert predict_mix(t, "Q8_0", LLAMA_CTX)["token_embd.weight"] == "Q8_0"
    assert predict_mix(t, "IQ2_XXS", LLAMA_CTX)["token_embd.weight"] == "Q5_K"
    # explicit override wins over inference
    ctx = MixContext(n_layer=32, n_head=32, n_head_kv=8, tied_embeddings=False)
    assert predict_mix(t, "Q4_K_M", ctx)["token_embd.weight"] == "Q4_K"


def test_f16_and_non_quantizable_tensors() -> None:
    t = llama31_8b()
    t["blk.0.attn_q.bias"] = (4096,)
    t["blk.0.ffn_gate_inp.weight"] = (4096, 8)
    mix = predict_mix(t, "F16", LLAMA_CTX, source_types={"rope_freqs.weight": "F32"})
    assert mix["blk.0.attn_q.weight"] == "F16" and mix["output.weight"] == "F16"
    assert mix["blk.0.attn_norm.weight"] == "F32" and mix["blk.0.attn_q.bias"] == "F32"
    assert mix["blk.0.ffn_gate_inp.weight"] == "F32"
    assert list(mix) == list(t)  # input order kept


def test_q3_k_m_rules_and_70b_upgrade() -> None:
    t = llama31_8b()
    mix = predict_mix(t, "Q3_K_M", LLAMA_CTX)
    assert [mix[f"blk.{i}.attn_v.weight"] for i in range(4)] == ["Q5_K", "Q5_K", "Q4_K", "Q4_K"]
    assert [mix[f"blk.{i}.ffn_down.weight"] for i in (0, 1, 2, 5)] == [
        "Q5_K", "Q5_K", "Q4_K", "Q4_K"]
    assert mix["blk.3.attn_output.weight"] == "Q4_K" and mix["blk.3.attn_q.weight"] == "Q3_K"
    big = MixContext(n_layer=32, n_head=32, n_head_kv=8, model_size_class="70B")
    assert predict_mix(t, "Q3_K_M", big)["blk.5.attn_v.weight"] == "Q5_K"


def test_gqa_dependent_attn_v() -> None:
    t = llama31_8b()
    mha = MixContext(n_layer=32, n_head=32, n_head_kv=32)
    assert predict_mix(t, "IQ4_XS", LLAMA_CTX)["blk.10.attn_v.weight"] == "Q5_K"
    assert predict_mix(t, "IQ4_XS", mha)["blk.10.attn_v.weight"] == "IQ4_XS"
    assert predict_mix(t, "Q2_K", LLAMA_CTX)["blk.10.attn_v.weight"] == "Q4_K"
    assert predict_mix(t, "Q2_K", mha)["blk.10.attn_v.weight"] == "Q3_K"
    per_layer = MixContext(n_layer=32, n_head=32, n_head_kv=(8,) * 32)
    assert per_layer.n_gqa() == 4


def test_low_bit_iquants() -> None:
    t = llama31_8b()
    mix = predict_mix(t, "IQ2_XXS", LLAMA_CTX)
    assert mix["output.weight"] == "Q5_K" and mix["token_embd.weight"] == "Q2_K"
    assert mix["blk.7.attn_v.weight"] == "Q4_K"
    assert [mix[f"blk.{i}.ffn_down.weight"] for i in (0, 3, 4)] == ["Q2_K", "Q2_K", "IQ2_XXS"]
    mix = predict_mix(t, "IQ3_XXS", LLAMA_CTX)
    assert mix["blk.0.attn_q.weight"] == "IQ2_S" and mix["blk.0.attn_k.weight"] == "IQ2_S"
    assert mix["blk.0.attn_output.weight"] == "IQ3_S" and mix["token_embd.weight"] == "IQ3_S"


def test_imatrix_switches() -> None:
    t = llama31_8b()
    plain = predict_mix(t, "Q4_0", LLAMA_CTX)
    assert plain["blk.0.ffn_down.weight"] == "Q4_0"
    imat = MixContext(n_layer=32, n_head=32, n_head_kv=8, has_imatrix=True)
    mix = predict_mix(t, "Q4_0", imat)
    assert mix["blk.0.ffn_down.weight"] == "Q4_1" and mix["blk.4.ffn_down.weight"] == "Q4_0"
    assert predict_mix(t, "IQ4_NL", LLAMA_CTX)["blk.0.ffn_down.weight"] == "Q5_K"
    assert predict_mix(t, "IQ4_NL", imat)["blk.0.ffn_down.weight"] == "IQ4_NL"


def mixtral_like(n_layer: int = 32) -> Shapes:
    t: Shapes = {"token_embd.weight": (4096, 32000), "output.weight": (4096, 32000),
                 "output_norm.weight": (4096,)}
    for i in range(n_layer):
        b = f"blk.{i}."
        t.update({b + "attn_norm.weight": (4096,), b + "ffn_norm.weight": (4096,),
                  b + "attn_q.weight": (4096, 4096), b + "attn_k.weight": (4096, 1024),
                  b + "attn_v.weight": (4096, 1024), b + "attn_output.weight": (4096, 4096),
                  b + "ffn_gate_inp.weight": (4096, 8),
                  b + "ffn_gate_exps.weight": (4096, 14336, 8),
                  b + "ffn_up_exps.weight": (4096, 14336, 8),
                  b + "ffn_down_exps.weight": (14336, 4096, 8)})
    return t


def test_eight_expert_exceptions() -> None:
    ctx = MixContext(n_layer=32, n_expert=8, n_head=32, n_head_kv=8)
    mix = predict_mix(mixtral_like(), "Q4_K_M", ctx)
    assert mix["blk.3.attn_v.weight"] == "Q8_0" and mix["blk.3.attn_k.weight"] == "Q8_0"
    assert mix["blk.3.attn_output.weight"] == "Q5_K"
    assert mix["blk.3.ffn_gate_inp.weight"] == "F32"
    for i in range(32):  # decided per layer (block number in the name), not per expert
        want = "Q6_K" if i in MORE_BITS_32 else "Q4_K"
        assert mix[f"blk.{i}.ffn_down_exps.weight"] == want
        assert mix[f"blk.{i}.ffn_up_exps.weight"] == "Q4_K"


def test_moe_layers_come_from_names_with_dense_and_shared_tensors() -> None:
    # DeepSeek-style: block 0 dense, later blocks routed + shared experts; MLA attention
    t: Shapes = {"token_embd.weight": (2048, 1000), "output.weight": (2048, 1000)}
    for i in range(16):
        b = f"blk.{i}."
        t.update({b + "attn_q_a.weight": (2048, 512), b + "attn_q_b.weight": (512, 3072),
                  b + "attn_kv_a_mqa.weight": (2048, 576),
                  b + "attn_k_b.weight": (128, 512, 16), b + "attn_v_b.weight": (512, 128, 16),
                  b + "attn_output.weight": (2048, 2048), b + "attn_kv_a_norm.weight": (512,)})
        if i == 0:
            t[b + "ffn_down.weight"] = (8192, 2048)
        else:
            t[b + "ffn_down_exps.weight"] = (1024, 2048, 64)
            t[b + "ffn_down_shexp.weight"] = (2048, 2048)
            t[b + "exp_probs_b.bias"] = (64,)
    ctx = MixContext(n_layer=16, n_expert=64, n_head=16, n_head_kv=16)
    mix = predict_mix(t, "Q4_K_M", ctx)
    more = {0, 1, 4, 7, 10, 13, 14, 15}
    for i in range(1, 16):
        want = "Q6_K" if i in more else "Q4_K"
        assert mix[f"blk.{i}.ffn_down_exps.weight"] == want, i
        assert mix[f"blk.{i}.ffn_down_shexp.weight"] == want, i
    assert mix["blk.0.ffn_down.weight"] == "Q6_K"
    assert mix["blk.2.attn_k_b.weight"] == "Q5_0"  # ne0 = 128 is not a multiple of 256
    assert mix["blk.2.attn_v_b.weight"] == "Q4_K"
    assert mix["blk.2.exp_probs_b.bias"] == "F32"
    mx = predict_mix(t, "MXFP4_MOE", ctx)
    assert mx["blk.2.ffn_down_exps.weight"] == "MXFP4"
    assert mx["blk.2.attn_k_b.weight"] == "MXFP4"  # also 3-D: the engine treats it the same
    assert mx["blk.2.ffn_down_shexp.weight"] == "Q8_0" and mx["output.weight"] == "Q8_0"


def test_gpt_oss_mxfp4_moe_and_row_fallbacks() -> None:
    t: Shapes = {"token_embd.weight": (2880, 201088), "output.weight": (2880, 201088)}
    for i in range(2):
        b = f"blk.{i}."
        t.update({b + "attn_q.weight": (2880, 4096), b + "attn_k.weight": (2880, 512),
                  b + "attn_v.weight": (2880, 512), b + "attn_output.weight": (4096, 2880),
                  b + "attn_sinks.weight": (64,), b + "ffn_gate_inp.weight": (2880, 32),
                  b + "ffn_gate_exps.weight": (2880, 2880, 32),
                  b + "ffn_up_exps.weight": (2880, 2880, 32),
                  b + "ffn_down_exps.weight": (2880, 2880, 32),
                  b + "ffn_gate_exps.bias": (2880, 32)})
    ctx = MixContext(n_layer=2, n_expert=32, n_head=64, n_head_kv=8)
    mix = predict_mix(t, "MXFP4_MOE", ctx)
    assert mix["blk.0.ffn_up_exps.weight"] == "MXFP4"
    assert mix["blk.0.attn_q.weight"] == "Q8_0" and mix["token_embd.weight"] == "Q8_0"
    assert mix["output.weight"] == "Q8_0" and mix["blk.0.attn_sinks.weight"] == "F32"
    assert mix["blk.0.ffn_gate_exps.bias"] == "F32"
    mix = predict_mix(t, "Q4_K_M", ctx)
    assert mix["blk.0.attn_q.weight"] == "Q5_0"  # 2880 % 256 != 0 -> Q4_K falls back
    assert mix["blk.0.ffn_down_exps.weight"] == "Q5_0"  # Q4_K falls back
    assert mix["blk.1.ffn_down_exps.weight"] == "Q8_0"  # use_more_bits: Q6_K falls back
    assert mix["output.weight"] == "Q8_0"  # the output rule checks the row first
    assert mix["blk.0.attn_output.weight"] == "Q4_K"  # ne0 = 4096 fits


def test_fallback_to_f16_and_refusal() -> None:
    t: Shapes = {"blk.0.attn_q.weight": (100, 64), "output.weight": (256, 10)}
    ctx = MixContext(n_layer=1)
    assert predict_mix(t, "Q4_K_M", ctx)["blk.0.attn_q.weight"] == "F16"
    with pytest.raises(InputError):
        predict_mix(t, "Q8_0", ctx)  # no fallback exists for Q8_0


def test_bad_inputs() -> None:
    ctx = MixContext(n_layer=2, n_expert=8)
    with pytest.raises(InputError):
        predict_mix({"blk.5.ffn_down_exps.weight": (256, 256, 8)}, "Q4_K_M", ctx)
    with pytest.raises(InputError):
        predict_mix({"x.ffn_down_exps.weight": (256, 256, 8)}, "Q4_K_M", ctx)
    with pytest.raises(InputError):
        predict_mix({"a.weight": (256, 2)}, "Q4_K_XL", ctx)
    with pytest.raises(InputError):
        predict_mix([("a.weight", (256, 2)), ("a.weight", (256, 2))], "Q4_0", ctx)


def test_ftype_names() -> None:
    assert ftype_default_type("q4_k_m") == "Q4_K"
    assert ftype_default_type("LLAMA_FTYPE_MOSTLY_IQ2_M") == "IQ2_S"
    assert ftype_default_type(15) == "Q4_K"
    assert ftype_default_type("MXFP4_MOE") == "MXFP4"
    assert FTYPES["Q4_K_M"][0] == 15 and FTYPES["MXFP4_MOE"][0] == 38
    for need in ("F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "Q3_K_L",
                 "Q3_K_M", "Q3_K_S", "Q2_K", "Q4_0", "Q5_0", "IQ4_XS", "IQ4_NL", "IQ3_XXS",
                 "IQ2_XXS", "MXFP4_MOE"):
        assert need in FTYPES


def test_gguf_package_ftype_ids_agree() -> None:
    from gguf.constants import LlamaFileType

    for member in LlamaFileType:
        name = member.name.removeprefix("MOSTLY_").removeprefix("ALL_")
        if name in FTYPES:
            assert FTYPES[name][0] == int(member), name


def test_categories_and_quantizability() -> None:
    assert tensor_category("blk.0.attn_qkv.weight") == "attn_qkv"
    assert tensor_category("blk.0.ffn_gate_up_exps.weight") == "ffn_gate"
    assert tensor_category("blk.0.ffn_up_shexp.weight") == "ffn_up"
    assert tensor_category("per_layer_token_embd.weight") == "token_embd"
    assert not allows_quantization("blk.0.attn_norm.weight", (4096,))
    assert not allows_quantization("blk.0.ffn_gate_inp_shexp.weight", (4096, 1))
    assert not allows_quantization("blk.0.ffn_gate_exps.bias", (2880, 32))
    assert not allows_quantization("blk.0.ssm_conv1d.weight", (4, 8192))
    assert allows_quantization("blk.0.attn_k_b.weight", (128, 512, 16))


def test_fused_qkv_is_value_like() -> None:
    t: Shapes = {f"blk.{i}.attn_qkv.weight": (3072, 9216) for i in range(8)}
    mix = predict_mix(t, "Q4_K_M", MixContext(n_layer=8, n_head=32, n_head_kv=32))
    assert [mix[f"blk.{i}.attn_qkv.weight"] for i in range(8)] == [
        "Q6_K", "Q4_K", "Q4_K", "Q6_K", "Q4_K", "Q4_K", "Q6_K", "Q6_K"]


# --- HF names -------------------------------------------------------------------------------


@pytest.mark.parametrize(("model_type", "hf", "gguf_name"), [
    ("llama", "model.embed_tokens.weight", "token_embd.weight"),
    ("llama", "lm_head.weight", "output.weight"),
    ("llama", "model.norm.weight", "output_norm.weight"),
    ("llama", "model.layers.17.self_attn.v_proj.weight", "blk.17.attn_v.weight"),
    ("llama", "model.layers.3.mlp.down_proj.weight", "blk.3.ffn_down.weight"),
    ("qwen2", "model.layers.0.self_attn.q_proj.bias", "blk.0.attn_q.bias"),
    ("qwen3", "model.layers.2.self_attn.k_norm.weight", "blk.2.attn_k_norm.weight"),
    ("qwen3_moe", "model.layers.3.mlp.experts.7.up_proj.weight", "blk.3.ffn_up_exps.weight"),
    ("qwen3_moe", "model.layers.3.mlp.gate.weight", "blk.3.ffn_gate_inp.weight"),
    ("mixtral", "model.layers.13.block_sparse_moe.experts.7.w2.weight",
     "blk.13.ffn_down_exps.weight"),
    ("mixtral", "model.layers.13.block_sparse_moe.gate.weight", "blk.13.ffn_gate_inp.weight"),
    ("deepseek_v3", "model.layers.4.self_attn.kv_a_proj_with_mqa.weight",
     "blk.4.attn_kv_a_mqa.weight"),
    ("deepseek_v3", "model.layers.4.self_attn.q_b_proj.weight", "blk.4.attn_q_b.weight"),
    ("deepseek_v3", "model.layers.4.mlp.shared_experts.down_proj.weight",
     "blk.4.ffn_down_shexp.weight"),
    ("deepseek_v3", "model.layers.61.mlp.gate.e_score_correction_bias", "blk.61.exp_probs_b.bias"),
    ("deepseek_v2", "model.layers.1.self_attn.kv_b_proj.weight", "blk.1.attn_kv_b.weight"),
    ("gpt_oss", "model.layers.1.mlp.router.weight", "blk.1.ffn_gate_inp.weight"),
    ("gpt_oss", "model.layers.1.mlp.experts.down_proj", "blk.1.ffn_down_exps"),
    ("glm4_moe", "model.layers.9.mlp.experts.2.gate_proj.weight", "blk.9.ffn_gate_exps.weight"),
    ("gemma2", "model.layers.1.post_feedforward_layernorm.weight", "blk.1.post_ffw_norm.weight"),
    ("llama", "model.layers.1.self_attn.rotary_emb.inv_freq", None),
    ("llama", "vision_tower.blocks.0.attn.weight", None),
])
def test_hf_to_gguf_name(model_type: str, hf: str, gguf_name: str | None) -> None:
    assert hf_to_gguf_name(hf, model_type) == gguf_name


def test_hf_unknown_model_type() -> None:
    with pytest.raises(InputError):
        hf_to_gguf_name("model.embed_tokens.weight", "no_such_model")


def test_hf_llama_shapes_round_trip_to_the_gguf_mix() -> None:
    hf: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (128256, 4096),
                                      "lm_head.weight": (128256, 4096),
                                      "model.norm.weight": (4096,)}
    for i in range(32):
        p = f"model.layers.{i}."
        hf.update({p + "input_layernorm.weight": (4096,),
                   p + "post_attention_layernorm.weight": (4096,),
                   p + "self_attn.q_proj.weight": (4096, 4096),
                   p + "self_attn.k_proj.weight": (1024, 4096),
                   p + "self_attn.v_proj.weight": (1024, 4096),
                   p + "self_attn.o_proj.weight": (4096, 4096),
                   p + "mlp.gate_proj.weight": (14336, 4096),
                   p + "mlp.up_proj.weight": (14336, 4096),
                   p + "mlp.down_proj.weight": (4096, 14336)})
    shapes = hf_to_gguf_shapes(hf, "llama")
    expected = llama31_8b()
    del expected["rope_freqs.weight"]  # computed by the converter, not in the checkpoint
    assert shapes == expected


def test_hf_expert_aggregation() -> None:
    hf: dict[str, tuple[int, ...]] = {}
    for e in range(8):
        for w, s in (("w1", (14336, 4096)), ("w2", (4096, 14336)), ("w3", (14336, 4096))):
            hf[f"model.layers.0.block_sparse_moe.experts.{e}.{w}.weight"] = s
    hf["model.layers.0.block_sparse_moe.gate.weight"] = (8, 4096)
    assert hf_to_gguf_shapes(hf, "mixtral") == {
        "blk.0.ffn_gate_exps.weight": (4096, 14336, 8),
        "blk.0.ffn_up_exps.weight": (4096, 14336, 8),
        "blk.0.ffn_down_exps.weight": (14336, 4096, 8),
        "blk.0.ffn_gate_inp.weight": (4096, 8),
    }
    bad = dict(hf)
    bad["model.layers.0.block_sparse_moe.experts.3.w1.weight"] = (1, 4096)
    with pytest.raises(InputError):
        hf_to_gguf_shapes(bad, "mixtral")


def test_hf_gpt_oss_and_mla_splits() -> None:
    mxfp4 = {"model.layers.0.mlp.experts.gate_up_proj_blocks": (32, 5760, 90, 16),
             "model.layers.0.mlp.experts.gate_up_proj_scales": (32, 5760, 90),
             "model.layers.0.mlp.experts.gate_up_proj_bias": (32, 5760),
             "model.layers.0.mlp.experts.down_proj_blocks": (32, 2880, 90, 16),
             "model.layers.0.self_attn.sinks": (64,)}
    assert hf_to_gguf_shapes(mxfp4, "gpt_oss") == {
        "blk.0.ffn_gate_exps.weight": (2880, 2880, 32),
        "blk.0.ffn_up_exps.weight": (2880, 2880, 32),
        "blk.0.ffn_gate_exps.bias": (2880, 32), "blk.0.ffn_up_exps.bias": (2880, 32),
        "blk.0.ffn_down_exps.weight": (2880, 2880, 32), "blk.0.attn_sinks.weight": (64,)}
    bf16 = {"model.layers.0.mlp.experts.gate_up_proj": (32, 2880, 5760),
            "model.layers.0.mlp.experts.down_proj": (32, 2880, 2880)}
    assert hf_to_gguf_shapes(bf16, "gpt_oss")["blk.0.ffn_up_exps.weight"] == (2880, 2880, 32)
    mla = {"model.layers.0.self_attn.kv_b_proj.weight": (128 * 256, 512)}
    hp = {"num_attention_heads": 128, "qk_nope_head_dim": 128, "v_head_dim": 128}
    assert hf_to_gguf_shapes(mla, "deepseek_v3", hp) == {
        "blk.0.attn_k_b.weight": (128, 512, 128), "blk.0.attn_v_b.weight": (512, 128, 128)}
    assert hf_to_gguf_shapes(mla, "deepseek_v3") == {"blk.0.attn_kv_b.weight": (512, 32768)}
    fused = {"model.layers.5.mlp.experts.gate_up_proj": (128, 1536, 2048)}
    assert hf_to_gguf_shapes(fused, "qwen3_moe") == {
        "blk.5.ffn_gate_exps.weight": (2048, 768, 128),
        "blk.5.ffn_up_exps.weight": (2048, 768, 128)}


@pytest.mark.parametrize("model", [
    "olmo-2-32b", "olmo-3-7b", "smollm3", "minimax-m2.5", "glm-4.7-flash",
    "tests/data/configs/LGAI-EXAONE__EXAONE-4.0-32B.json",
    "tests/data/configs/CohereForAI__c4ai-command-r7b-12-2024.json",
    "tests/data/configs/baidu__ERNIE-4.5-21B-A3B-PT.json",
    "tests/data/configs/tencent__Hunyuan-A13B-Instruct.json",
    "tests/data/configs/XiaomiMiMo__MiMo-V2-Flash.json",
])
def test_new_families_every_tensor_has_a_gguf_name(model: str) -> None:
    """llama.cpp's converter names every tensor of these families (gguf TensorNameMap for their
    arch), so a GGUF quant prices each one; MiniMax-M2.5 Q4_K_M lands near the published
    ~138 GB file (here 128.8 GiB of tensors)."""
    from tests.conftest import ROOT
    from vramplan.api import load
    from vramplan.quant.gguf_mix import hf_to_gguf_name

    lm = load(str(ROOT / model) if model.endswith(".json") else model, allow_hub=False)
    mt = lm.spec.model_type
    missing = [g.name for g in lm.inventory.tensors
               if hf_to_gguf_name(g.name.replace("{e}", "0"), mt) is None]
    assert missing == []
