"""Broken configs never crash: every mutation of a real config either works or raises one
InputError (which the CLI prints as one line, exit 2)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import catalog_files, load_config
from vramplan.api import estimate
from vramplan.errors import InputError

CONFIGS = [load_config(p.stem) for p in catalog_files()]
BAD_VALUES = st.sampled_from([None, 0, -1, 3.5, "x", [], {}, True, 1 << 40, 7, 1])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(i=st.integers(0, len(CONFIGS) - 1), data=st.data(),
       engine=st.sampled_from(["generic", "vllm", "sglang", "transformers", "llamacpp"]))
def test_mutated_config_is_ok_or_one_input_error(i: int, data: Any, engine: str) -> None:
    cfg = dict(CONFIGS[i])
    target = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg
    target = dict(target)
    keys = sorted(target)
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(keys))
        if data.draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = data.draw(BAD_VALUES)
    if "text_config" in cfg:
        cfg["text_config"] = target
    else:
        cfg = target
    try:
        est = estimate(cfg, gpu="h100", context=1024, engine=engine)
    except InputError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert est.weights_bytes >= 0
