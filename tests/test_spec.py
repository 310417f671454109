"""Config normalization details: architecture defaults, layer patterns, generic fallback."""

from __future__ import annotations

import io

import pytest

from tests.conftest import load_config
from vramplan.inventory import build_inventory
from vramplan.model.hf_config import spec_from_config
from vramplan.placement import Parallelism, place
from vramplan.quant.schemes import NONE, quantize_model


def test_gemma2_tie_default_applied_when_key_absent() -> None:
    cfg = load_config("google__gemma-2-9b-it")
    assert "tie_word_embeddings" not in cfg
    spec = spec_from_config(cfg)
    assert spec.tie_word_embeddings and any("default" in n for n in spec.notes)


def test_unknown_family_is_refused_without_headers() -> None:
    """A decoder of no known family reads like a Llama, but its biases / extra norms are not in
    config.json (OLMo-2 renamed would be 393,216 parameters short): refused, naming what to do."""
    from vramplan.errors import ConfigError

    cfg = dict(load_config("meta-llama__Llama-3.1-8B"), model_type="brand_new_llm",
               architectures=["BrandNewForCausalLM"])
    with pytest.raises(ConfigError) as exc:
        spec_from_config(cfg)
    msg = str(exc.value)
    assert "brand_new_llm" in msg and "BrandNewForCausalLM" in msg and "safetensors" in msg


def test_unknown_family_with_headers_is_read_generically_and_marked_approximate() -> None:
    cfg = dict(load_config("meta-llama__Llama-3.1-8B"), model_type="brand_new_llm",
               architectures=["BrandNewForCausalLM"])
    spec = spec_from_config(cfg, headers_available=True)
    assert spec.family == "llama" and spec.model_type == "brand_new_llm"
    assert any("not a known family" in n and "APPROXIMATE" in n for n in spec.notes)
    assert build_inventory(spec).params_total == 8_030_261_248


def test_renamed_model_type_is_recovered_from_architectures() -> None:
    cfg = dict(load_config("Qwen__Qwen3-8B"), model_type="my_finetune")
    spec = spec_from_config(cfg)
    assert spec.model_type == "qwen3" and "read as 'qwen3'" in spec.notes[0]
    assert build_inventory(spec).params_total == 8_190_735_360


def test_unknown_type_with_experts_is_refused_naming_the_keys() -> None:
    from vramplan.errors import ConfigError

    cfg = dict(load_config("Qwen__Qwen3-30B-A3B"), model_type="brand_new_moe",
               architectures=["BrandNewMoeForCausalLM"])
    with pytest.raises(ConfigError) as exc:
        spec_from_config(cfg)
    msg = str(exc.value)
    assert "num_experts" in msg and "moe_intermediate_size" in msg and "safetensors" in msg


def test_unknown_structure_with_headers_is_marked_approximate() -> None:
    cfg = dict(load_config("Qwen__Qwen3-30B-A3B"), model_type="brand_new_moe",
               architectures=["BrandNewMoeForCausalLM"])
    spec = spec_from_config(cfg, headers_available=True)
    assert any("APPROXIMATE" in n for n in spec.notes)


def test_llama4_chunked_and_nope_layers() -> None:
    spec = spec_from_config(load_config("meta-llama__Llama-4-Scout-17B-16E-Instruct"))
    kinds = [layer.attention.kind for layer in spec.layers]
    assert kinds[:4] == ["chunked", "chunked", "chunked", "full"]  # every 4th layer is NoPE
    assert spec.vision is not None and all(layer.mlp.kind == "moe" for layer in spec.layers)


def test_deepseek_dense_first_layers_and_shared_expert() -> None:
    spec = spec_from_config(load_config("deepseek-ai__DeepSeek-V3"))
    assert [layer.mlp.kind for layer in spec.layers[:4]] == ["dense"] * 3 + ["moe"]
    assert spec.layers[3].mlp.shared_intermediate_size == 2048
    assert spec.mtp_layers == 1


def _shards(stem: str, par: Parallelism):  # type: ignore[no-untyped-def]
    inv = build_inventory(spec_from_config(load_config(stem)))
    return place(quantize_model(inv, NONE), par)


def test_mla_a_projections_replicated_under_tp() -> None:
    one = _shards("deepseek-ai__DeepSeek-V2-Lite", Parallelism(tp=1))[0]
    two = _shards("deepseek-ai__DeepSeek-V2-Lite", Parallelism(tp=2))[0]
    # replicated tensors (kv_a_proj_with_mqa, norms, routers) keep each rank above one half
    assert two.weights_bytes > one.weights_bytes // 2


def test_tied_embedding_present_on_first_and_last_pp_stage() -> None:
    shards = _shards("meta-llama__Llama-3.2-1B", Parallelism(tp=1, pp=2))
    assert shards[0].bytes_by_role.get("embedding") == shards[1].bytes_by_role.get("embedding")


def test_rich_rendering_on_a_terminal() -> None:
    from rich.console import Console

    from vramplan.api import estimate
    from vramplan.cli import render

    est = estimate("qwen3-8b", gpu="4090", context=4096, engine="generic")
    buf = io.StringIO()
    render.rich_estimate(est, explain=True, console=Console(file=buf, width=160))
    text = buf.getvalue()
    assert "GPU0" in text and "How each number is derived" in text


def test_experts_named_but_none_read_is_refused() -> None:
    """A config naming 128 experts whose layers all come out dense (here decoder_sparse_step
    beyond the depth) is refused, never sized as a dense model."""
    from vramplan.errors import ConfigError

    cfg = dict(load_config("Qwen__Qwen3-30B-A3B"), decoder_sparse_step=1000)
    with pytest.raises(ConfigError) as exc:
        spec_from_config(cfg)
    assert "num_experts" in str(exc.value) and "128 experts" in str(exc.value)


def test_transformers5_qwen3_moe_spelling_is_moe() -> None:
    """transformers 5 saves Qwen3-MoE's expert count as num_local_experts (attribute_map)."""
    cfg = load_config("Qwen__Qwen3-30B-A3B")
    cfg["num_local_experts"] = cfg.pop("num_experts")
    assert build_inventory(spec_from_config(cfg)).params_total == 30_532_122_624
