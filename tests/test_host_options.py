"""--ram-kind / --ram-channels / --pcie-gen: the host as users describe it, in offload speed."""

from __future__ import annotations

from typing import Any

import pytest

from vramplan import api
from vramplan.cli.options import RAM_KINDS_HELP
from vramplan.errors import InputError
from vramplan.hardware import host
from vramplan.plan import planner
from vramplan.units import GIB

QWEN235 = "Qwen/Qwen3-235B-A22B"


def _llamacpp_decode(**host_kwargs: Any) -> tuple[float, Any]:
    """Decode tok/s of the llama.cpp option for Qwen3-235B-A22B on one RTX 4090 + 128 GiB."""
    res = planner.plan(QWEN235, gpu="rtx-4090", gpus=1, ram_bytes=128 * GIB, context=8192,
                       engines=["llamacpp"], explore=False, **host_kwargs)
    opt = next(o for o in res.options if o.engine == "llamacpp" and o.fits)
    assert opt.host_ram_bytes > 64 * GIB  # the experts really are in host RAM
    assert opt.decode_tokens_per_s is not None
    return opt.decode_tokens_per_s, res


def test_more_channels_decode_faster() -> None:
    two, res2 = _llamacpp_decode(ram_channels=2)
    eight, res8 = _llamacpp_decode(ram_channels=8)
    assert eight > two * 2  # host-bandwidth bound: ~4x the bandwidth, overheads unchanged
    assert any("x 8 channels" in a and "8 channels given" in a for a in res8.assumptions)
    opt = res8.options[0]
    assert any("x 8 channels" in a for a in opt.speed["assumptions"])


def test_ddr4_slower_than_ddr5() -> None:
    ddr4, res = _llamacpp_decode(ram_kind="DDR4-3200")
    ddr5, _ = _llamacpp_decode(ram_kind="ddr5-6400")  # case-insensitive
    assert ddr4 < ddr5 * 0.75
    assert any("DDR4-3200 x 2 channels" in a for a in res.assumptions)


def test_default_is_the_typical_desktop_and_says_so() -> None:
    default, res = _llamacpp_decode()
    same, _ = _llamacpp_decode(ram_kind="DDR5-5600", ram_channels=2)
    assert default == same
    assert any("DDR5-5600 x 2 channels" in a and "ASSUMPTION" in a for a in res.assumptions)
    assert any("PCIe gen4" in a for a in res.assumptions)


def _vllm_offload(gpu: str = "rtx-4090", **host_kwargs: Any) -> dict[str, Any]:
    est = api.estimate("meta-llama/Llama-3.1-8B", gpu=gpu, engine="vllm", context=8192,
                       ram=64 * GIB, engine_options={"cpu_offload_gb": 8}, allow_hub=False,
                       **host_kwargs)
    return est.speed


def test_pcie_gen_changes_cpu_offload_gb_decode() -> None:
    base = _vllm_offload()
    gen3 = _vllm_offload(pcie_gen=3)
    assert base["bound_by"] == gen3["bound_by"] == "pcie"
    v4, v3 = base["decode_tokens_per_s"]["value"], gen3["decode_tokens_per_s"]["value"]
    assert v3 < v4 * 0.6  # half the link bandwidth
    assert any("gen3" in a and "--pcie-gen 3" in a for a in gen3["assumptions"])
    # a gen5 slot does not make a gen4 card faster; it does a gen5 card
    capped = _vllm_offload(pcie_gen=5)
    assert capped["decode_tokens_per_s"]["value"] == v4
    assert any("the GPU is gen4" in a for a in capped["assumptions"])
    g5 = _vllm_offload("rtx-5090", pcie_gen=5)["decode_tokens_per_s"]["value"]
    g3 = _vllm_offload("rtx-5090", pcie_gen=3)["decode_tokens_per_s"]["value"]
    assert g5 > g3 * 1.5


def test_api_default_unchanged() -> None:
    plain = _vllm_offload()
    assert plain == _vllm_offload(ram_kind=None, ram_channels=None, pcie_gen=None)


def test_unified_memory_ignores_host_options() -> None:
    est = api.estimate("qwen3-8b", gpu="m3-max", context=8192, ram_kind="DDR4-3200",
                       ram_channels=1, pcie_gen=3, allow_hub=False)
    plain = api.estimate("qwen3-8b", gpu="m3-max", context=8192, allow_hub=False)
    assert est.speed == plain.speed
    assert any("unified memory" in n and "--ram-kind" in n for n in est.notes)


def test_host_resolution_rules() -> None:
    assert host.resolve_host(None) is None
    assert host.resolve_host(64 * GIB) == host.typical_host(64 * GIB)
    h = host.resolve_host(None, "lpddr5x-8533", 4, 5)
    assert h is not None and h.kind == "LPDDR5X-8533" and h.pcie_gen == 5
    assert h.bandwidth_bytes_per_s == 4 * host.MEMORY_KINDS["LPDDR5X-8533"]
    for kwargs, flag in (({"kind": "DDR9"}, "--ram-kind"), ({"channels": 0}, "--ram-channels"),
                         ({"channels": 25}, "--ram-channels"), ({"pcie_gen": 2}, "--pcie-gen"),
                         ({"pcie_gen": 7}, "--pcie-gen")):
        with pytest.raises(InputError) as exc:
            host.resolve_host(None, **kwargs)
        assert exc.value.field == flag and exc.value.fix


def test_help_lists_every_memory_kind() -> None:
    assert RAM_KINDS_HELP.split(", ") == list(host.MEMORY_KINDS)


@pytest.mark.parametrize("args, flag", [
    (["--ram-kind", "DDR9-9999"], "--ram-kind"),
    (["--ram-channels", "0"], "--ram-channels"),
    (["--ram-channels", "25"], "--ram-channels"),
    (["--pcie-gen", "2"], "--pcie-gen"),
    (["--pcie-gen", "7"], "--pcie-gen"),
])
@pytest.mark.parametrize("command", [
    ["estimate", "qwen3-8b", "--gpu", "4090", "--offline"],
    ["plan", "qwen3-8b", "--gpu", "4090", "--offline"],
    ["fit", "--gpu", "4090"],
])
def test_bad_values_exit_2(run_cli: Any, command: list[str], args: list[str], flag: str) -> None:
    code, out, err = run_cli(*command, *args)
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert flag in line and ";" in line  # names the flag and the fix
    if flag == "--ram-kind":
        assert "DDR5-5600" in line


def test_cli_reports_what_was_used(run_cli: Any) -> None:
    import json

    code, out, _ = run_cli("estimate", "meta-llama/Llama-3.1-8B", "--gpu", "4090", "--engine",
                           "vllm", "--cpu-offload-gb", "8", "--context", "8192", "--ram", "64GiB",
                           "--pcie-gen", "3", "--ram-kind", "ddr4-3200", "--ram-channels", "4",
                           "--json", "--offline")
    assert code == 0
    assert any("PCIe gen3" in a for a in json.loads(out)["speed"]["assumptions"])


# ---------------------------------------------------------------- HTTP and MCP

@pytest.fixture(scope="module")
def client() -> Any:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from vramplan.web.app import create_app

    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("path", ["/v1/estimate", "/v1/plan"])
@pytest.mark.parametrize("extra, field", [
    ({"ram_kind": "DDR9"}, "--ram-kind"),
    ({"ram_channels": 0}, "--ram-channels"),
    ({"ram_channels": 25}, "--ram-channels"),
    ({"pcie_gen": 2}, "--pcie-gen"),
    ({"pcie_gen": 7}, "--pcie-gen"),
])
def test_web_rejects_bad_host_values(client: Any, path: str, extra: dict[str, Any],
                                     field: str) -> None:
    body = {"model": "qwen3-8b", "gpu": "4090", **extra}
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    if field == "--ram-kind":
        assert "DDR5-5600" in r.json()["fix"]
    q = client.get(path, params={k: str(v) for k, v in body.items()})
    assert q.status_code == 422 and q.json()["field"] == field


def test_web_accepts_host_values(client: Any) -> None:
    body = {"model": "meta-llama/Llama-3.1-8B", "gpu": "4090", "engine": "vllm",
            "context": 8192, "ram": "64GiB", "engine_options": {"cpu_offload_gb": 8}}
    base = client.post("/v1/estimate", json=body).json()
    slow = client.post("/v1/estimate", json={**body, "pcie_gen": 3, "ram_kind": "ddr5-6400",
                                             "ram_channels": 4})
    assert slow.status_code == 200, slow.text
    assert slow.json()["speed"]["decode_tokens_per_s"]["value"] < \
        base["speed"]["decode_tokens_per_s"]["value"]


def test_mcp_schemas_list_host_fields() -> None:
    from vramplan.web.service import json_schema

    for schema in (json_schema(), json_schema(plan=True)):
        props = schema["properties"]
        assert props["ram_channels"]["minimum"] == 1 and props["ram_channels"]["maximum"] == 24
        assert props["pcie_gen"]["minimum"] == 3 and props["pcie_gen"]["maximum"] == 6
        assert props["ram_kind"]["type"] == "string"
