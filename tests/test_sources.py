"""Model sources: local config/folder with safetensors headers, the Hub (mocked), offline."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from vramplan.api import estimate, load
from vramplan.errors import HeaderError, OfflineError, UnknownModelError
from vramplan.inventory import build_inventory
from vramplan.model.hf_config import spec_from_config

TINY = {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "hidden_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 16, "intermediate_size": 128, "vocab_size": 1000,
        "max_position_embeddings": 4096, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]],
                      with_data: bool = True) -> None:
    """A real safetensors file: 8-byte header length, JSON header, zeroed data."""
    width = {"BF16": 2, "F32": 4, "I32": 4, "F16": 2, "U8": 1, "F8_E4M3": 1}
    header: dict[str, Any] = {}
    off = 0
    for name, (dtype, shape) in tensors.items():
        n = width[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header).encode()
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        if with_data:
            fh.write(b"\0" * off)


def tiny_tensors(cfg: dict[str, Any]) -> dict[str, tuple[str, list[int]]]:
    inv = build_inventory(spec_from_config(cfg))
    return {g.name: ("BF16", list(g.shape)) for g in inv.tensors}


def test_local_config_json(tmp_path: Path) -> None:
    p = tmp_path / "config.json"
    p.write_text(json.dumps(TINY))
    lm = load(str(p))
    assert lm.source.origin == "local" and lm.inventory.params_total > 0


def test_local_folder_uses_safetensors_headers(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    tensors = tiny_tensors(TINY)
    write_safetensors(tmp_path / "model.safetensors", tensors)
    est = estimate(str(tmp_path), vram=2**30, context=1024, engine="generic")
    expected = sum(2 * __import__("math").prod(s) for _, s in tensors.values())
    assert est.model.weights_from_headers and est.weights_bytes == expected


def test_awq_folder_exact_bytes_from_headers(tmp_path: Path) -> None:
    """Packed AWQ tensors (qweight/qzeros/scales) are attached to their module's role."""
    cfg = dict(TINY, quantization_config={"quant_method": "awq", "bits": 4, "group_size": 64})
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    tensors = tiny_tensors(TINY)
    packed: dict[str, tuple[str, list[int]]] = {}
    for name, (dtype, shape) in tensors.items():
        if name.endswith("proj.weight"):
            mod = name[: -len(".weight")]
            out_f, in_f = shape
            packed[f"{mod}.qweight"] = ("I32", [in_f, out_f // 8])
            packed[f"{mod}.qzeros"] = ("I32", [in_f // 64, out_f // 8])
            packed[f"{mod}.scales"] = ("F16", [in_f // 64, out_f])
        else:
            packed[name] = (dtype, shape)
    write_safetensors(tmp_path / "model.safetensors", packed, with_data=False)
    est = estimate(str(tmp_path), vram=2**30, context=1024, engine="generic")
    assert est.model.quant.startswith("awq")
    from vramplan.quant.schemes import quantize_model, scheme_from_config

    lm = load(str(tmp_path))
    formula = quantize_model(lm.inventory, scheme_from_config(cfg["quantization_config"]))
    assert est.weights_bytes == formula.weights_bytes  # header bytes == layout formula


@pytest.mark.parametrize("payload", [b"", b"\x01\x02", struct.pack("<Q", 2**40) + b"{}",
                                     struct.pack("<Q", 50) + b"{not json",
                                     struct.pack("<Q", 12) + b'{"a": 1}    '])
def test_corrupt_safetensors_header(tmp_path: Path, payload: bytes) -> None:
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    (tmp_path / "model.safetensors").write_bytes(payload)
    with pytest.raises(HeaderError, match="header"):
        load(str(tmp_path))


HUB_FIXTURE = Path(__file__).parent / "data" / "hub" / "tiny-org__tiny-qwen3"


def test_hub_path_with_recorded_responses(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hub code path, fed with stored responses (config.json and safetensors metadata in
    the shape huggingface_hub returns); no network."""
    import huggingface_hub

    meta = json.loads((HUB_FIXTURE / "safetensors_metadata.json").read_text())

    def fake_download(repo_id: str, filename: str, revision: str | None = None) -> str:
        assert (repo_id, filename) == ("tiny-org/tiny-qwen3", "config.json")
        return str(HUB_FIXTURE / "config.json")

    class FakeApi:
        def get_safetensors_metadata(self, repo_id: str, revision: str | None = None) -> Any:
            files = {
                fname: SimpleNamespace(tensors={
                    n: SimpleNamespace(dtype=t["dtype"], shape=t["shape"])
                    for n, t in tensors.items()})
                for fname, tensors in meta["files"].items()}
            return SimpleNamespace(files_metadata=files)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    est = estimate("tiny-org/tiny-qwen3", vram=2**30, context=512, engine="generic")
    assert est.model.origin == "hub" and est.model.weights_from_headers
    assert est.weights_bytes == meta["total_bytes"]


def test_hub_offline_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def offline(*a: Any, **k: Any) -> str:
        raise ConnectionError("no route to host")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(OfflineError, match="built-in model"):
        load("some-org/not-in-catalog")


def test_unknown_name_not_hub_like() -> None:
    with pytest.raises(UnknownModelError, match="did you mean"):
        load("llama-3.1-8")


# ---------------------------------------------------------------- headers check the inventory

def _folder(tmp_path: Path, cfg: dict[str, Any], tensors: dict[str, tuple[str, list[int]]]) -> str:
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    write_safetensors(tmp_path / "model.safetensors", tensors, with_data=False)
    return str(tmp_path)


def _bytes(tensors: dict[str, tuple[str, list[int]]]) -> int:
    width = {"BF16": 2, "F32": 4, "I32": 4, "F16": 2, "U8": 1, "F8_E4M3": 1}
    total = 0
    for dtype, shape in tensors.values():
        n = width[dtype]
        for d in shape:
            n *= d
        total += n
    return total


def test_matching_headers_are_reported_as_a_match(tmp_path: Path) -> None:
    """2-layer TINY: embed + lm_head 2 x 1000x64 = 128,000; per layer q/o 2 x 64x64, k/v 2 x 32x64,
    q/k norms 2 x 16, 2 norms x 64, MLP 3 x 128x64 = 37,024; final norm 64: 202,112 in both."""
    from vramplan.report import to_dict

    est = estimate(_folder(tmp_path, TINY, tiny_tensors(TINY)), vram=2**30, context=1024,
                   engine="generic")
    check = est.header_check
    assert check is not None and check.match is True
    assert check.header_params == check.inventory_params == 202_112
    assert to_dict(est)["header_check"]["match"] is True
    assert not any("checkpoint headers hold" in a for a in est.assumptions)


def test_extra_header_tensors_win_and_are_reported(tmp_path: Path) -> None:
    """A checkpoint with q/k/v biases the config does not announce (Qwen2-style): 2 layers x
    (64 + 32 + 32) = 256 parameters more; its bytes are in the weights (headers win)."""
    from vramplan.report import to_dict

    tensors = tiny_tensors(TINY)
    for i in range(2):
        for proj, n in (("q_proj", 64), ("k_proj", 32), ("v_proj", 32)):
            tensors[f"model.layers.{i}.self_attn.{proj}.bias"] = ("BF16", [n])
    est = estimate(_folder(tmp_path, TINY, tensors), vram=2**30, context=1024, engine="generic")
    check = est.header_check
    assert check is not None and check.match is False and check.difference == 256
    assert "model.layers.0.self_attn.q_proj.bias" in check.unmatched
    assert est.weights_bytes == _bytes(tensors)
    assert any("checkpoint headers hold 202,368 parameters" in a and "+256" in a
               for a in est.assumptions)
    d = to_dict(est)["header_check"]
    assert d["match"] is False and d["header_params"] == 202_368 and d["difference"] == 256


def test_missing_lm_head_is_reported_and_not_priced(tmp_path: Path) -> None:
    """The checkpoint ties its embeddings although config.json says it does not."""
    tensors = tiny_tensors(TINY)
    del tensors["lm_head.weight"]
    est = estimate(_folder(tmp_path, TINY, tensors), vram=2**30, context=1024, engine="generic")
    check = est.header_check
    assert check is not None and check.difference == -64_000
    assert check.missing == ("lm_head.weight",)
    assert est.weights_bytes == _bytes(tensors)


def test_known_extras_do_not_count_as_a_mismatch(tmp_path: Path) -> None:
    """A stored copy of a tied lm_head, an MTP layer beyond num_hidden_layers, inv_freq tables
    and FP8 scale tensors are not parameters of the main model."""
    cfg = dict(TINY, tie_word_embeddings=True,
               quantization_config={"quant_method": "fp8", "weight_block_size": [16, 16]})
    tensors: dict[str, tuple[str, list[int]]] = {}
    for name, (_, shape) in tiny_tensors(dict(cfg, quantization_config=None)).items():
        if name.endswith("proj.weight"):
            tensors[name] = ("F8_E4M3", shape)
            tensors[name + "_scale_inv"] = ("F32", [shape[0] // 16, shape[1] // 16])
        else:
            tensors[name] = ("BF16", shape)
    tensors["lm_head.weight"] = ("BF16", [1000, 64])
    tensors["model.layers.2.mlp.up_proj.weight"] = ("BF16", [128, 64])  # MTP layer
    tensors["model.layers.0.self_attn.rotary_emb.inv_freq"] = ("F32", [8])
    est = estimate(_folder(tmp_path, cfg, tensors), vram=2**30, context=1024, engine="generic")
    check = est.header_check
    assert check is not None and check.match is True, check


def test_awq_packed_headers_are_unpacked_for_the_check(tmp_path: Path) -> None:
    cfg = dict(TINY, quantization_config={"quant_method": "awq", "bits": 4, "group_size": 64})
    packed: dict[str, tuple[str, list[int]]] = {}
    for name, (dtype, shape) in tiny_tensors(TINY).items():
        if name.endswith("proj.weight"):
            mod = name[: -len(".weight")]
            out_f, in_f = shape
            packed[f"{mod}.qweight"] = ("I32", [in_f, out_f // 8])
            packed[f"{mod}.qzeros"] = ("I32", [in_f // 64, out_f // 8])
            packed[f"{mod}.scales"] = ("F16", [in_f // 64, out_f])
        else:
            packed[name] = (dtype, shape)
    est = estimate(_folder(tmp_path, cfg, packed), vram=2**30, context=1024, engine="generic")
    assert est.header_check is not None and est.header_check.match is True


def test_quant_formula_prices_the_headers_when_they_disagree(tmp_path: Path) -> None:
    """--quant on an unquantized checkpoint: the formula runs over the stored tensors."""
    from vramplan.quant.schemes import fp8_bytes, quantize_model, scheme_from_name

    tensors = tiny_tensors(TINY)
    tensors["model.layers.0.mlp.extra_proj.weight"] = ("BF16", [128, 64])  # unknown linear
    path = _folder(tmp_path, TINY, tensors)
    est = estimate(path, vram=2**30, context=1024, engine="generic", quant="fp8")
    assert est.header_check is not None and est.header_check.difference == 128 * 64
    plain = quantize_model(load(path).inventory, scheme_from_name("fp8")).weights_bytes
    assert est.weights_bytes - plain == fp8_bytes(128, 64, "tensor", None)


def test_unknown_family_read_from_headers_reports_what_config_json_misses(
        tmp_path: Path) -> None:
    """A Qwen3 checkpoint whose config names no known family is read as a plain decoder with
    the headers at hand: that reading has no q/k norms (2 layers x 2 x 16 = 64 parameters), the
    check says so, and the weights are the headers'."""
    tensors = tiny_tensors(TINY)
    cfg = dict(TINY, model_type="zz_unreleased", architectures=["ZzUnreleasedForCausalLM"])
    est = estimate(_folder(tmp_path, cfg, tensors), vram=2**30, context=1024, engine="generic")
    check = est.header_check
    assert check is not None and check.difference == 64
    assert est.weights_bytes == _bytes(tensors)
    assert any("not a known family" in n for n in est.notes)


def test_hub_headers_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    test_hub_path_with_recorded_responses(monkeypatch)
    est = estimate("tiny-org/tiny-qwen3", vram=2**30, context=512, engine="generic")
    assert est.header_check is not None and est.header_check.match is True
