"""The safety net: a config whose ``model_type`` vramplan does not know is exact or refused.

Every model of the parity fixture (read from the catalog, ``../shared/models`` or
``data/configs``; see ``test_parity``) gets its ``model_type`` renamed to one no family has, at
the top level and in ``text_config``, and is read twice:

* ``keep``: ``architectures`` kept, so a family that registers its class recovers the config;
* ``rename``: ``architectures`` renamed too, so nothing names the family.

Either way ``spec_from_config`` must give exactly the fixture's parameters (transformers on the
meta device; for a config transformers cannot build, such as remote-code ``nemotron-nas``, what
the unmutated config gives) or raise ``ConfigError`` (one line, exit 2): never a different
number. Structure
detection lives in ``vramplan.model.structure``; a config of no known family is refused
(``UNKNOWN_FAMILY``) because a plain decoder's biases and extra norms are not in config.json
(OLMo-2 renamed would be 393,216 parameters short, read as a Llama).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_parity import PARITY, config_path, load
from vramplan.errors import ConfigError
from vramplan.inventory import build_inventory
from vramplan.model.hf_config import spec_from_config

UNKNOWN_TYPE = "zz_unreleased_model"
UNKNOWN_ARCH = "ZzUnreleasedForCausalLM"

# (stem, mode) pairs that give a wrong number on this branch because the unmutated config does
# too (strict xfail: taking the model off test_parity.NOT_YET must take it off here).
WRONG_UNMUTATED: dict[tuple[str, str], str] = {
}


def mutate(cfg: dict[str, Any], rename_architectures: bool) -> dict[str, Any]:
    out = dict(cfg, model_type=UNKNOWN_TYPE)
    if isinstance(cfg.get("text_config"), dict):
        out["text_config"] = dict(cfg["text_config"], model_type=UNKNOWN_TYPE + "_text")
    if rename_architectures:
        out["architectures"] = [UNKNOWN_ARCH]
    return out


def _cases() -> list[Any]:
    out = []
    for stem in sorted(PARITY):
        for mode in ("keep", "rename"):
            reason = WRONG_UNMUTATED.get((stem, mode))
            marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
            out.append(pytest.param(stem, mode, id=f"{stem}-{mode}", marks=marks))
    return out


def outcome(cfg: dict[str, Any], stem: str) -> tuple[int, int] | None:
    """(whole-model, text-model) parameters, or None when refused with a ConfigError."""
    try:
        spec = spec_from_config(cfg, stem)
    except ConfigError:
        return None
    inv = build_inventory(spec)
    return inv.params_total, inv.params_text


@pytest.mark.parametrize(("stem", "mode"), _cases())
def test_unknown_model_type_is_exact_or_refused(stem: str, mode: str) -> None:
    truth = PARITY[stem]
    path = config_path(stem)
    if path is None:
        pytest.skip(f"{stem}.json is not in the catalog, ../shared/models or tests/data/configs")
    got = outcome(mutate(load(path), mode == "rename"), stem)
    if "params_total" in truth:
        assert got in (None, (truth["params_total"], truth["params_text"]))
    else:  # transformers cannot build it (remote code): the family's own reading is the reference
        assert got in (None, outcome(load(path), stem))


def test_plain_decoder_renamed_everywhere_is_refused_naming_the_fix() -> None:
    """OLMo-2's config has only Llama keys; read as a Llama it would miss its q/k norms."""
    path = config_path("allenai__OLMo-2-0325-32B")
    if path is None:
        pytest.skip("../shared/models is absent")
    with pytest.raises(ConfigError) as exc:
        spec_from_config(mutate(load(path), True))
    msg = str(exc.value)
    assert UNKNOWN_TYPE in msg and UNKNOWN_ARCH in msg and "safetensors" in msg


def test_renamed_type_with_known_architecture_is_recovered_exactly() -> None:
    path = config_path("Qwen__Qwen2.5-7B-Instruct")
    assert path is not None  # in the catalog
    spec = spec_from_config(mutate(load(path), False))
    assert spec.model_type == "qwen2" and "read as 'qwen2'" in spec.notes[0]
    assert build_inventory(spec).params_total == PARITY["Qwen__Qwen2.5-7B-Instruct"]["params_total"]


@pytest.mark.parametrize(("types", "arch", "wrapped", "want"), [
    (["gemma3", "gemma3_text"], "Gemma3ForConditionalGeneration", True, ("gemma3", "gemma3_text")),
    (["gemma3_text", "gemma3"], "Gemma3ForCausalLM", False, ("gemma3_text", None)),
    (["qwen3_vl", "qwen3_vl_text", "qwen3_vl_moe", "qwen3_vl_moe_text"],
     "Qwen3VLMoeForConditionalGeneration", True, ("qwen3_vl_moe", "qwen3_vl_moe_text")),
    (["mllama", "mllama_text_model"], "MllamaForConditionalGeneration", True,
     ("mllama", "mllama_text_model")),
    (["olmo2", "olmo3"], "Olmo3ForCausalLM", False, ("olmo3", None)),
    (["deepseek_v32"], "SomethingElseForCausalLM", False, ("deepseek_v32", None)),
    ([], "X", False, (None, None)),
])
def test_recovered_types_follow_the_class_name(types: list[str], arch: str, wrapped: bool,
                                               want: tuple[str | None, str | None]) -> None:
    """A renamed config is recovered as the model_type the architectures class names."""
    from vramplan.model.hf_config import _recovered_types

    assert _recovered_types(types, arch, wrapped) == want
