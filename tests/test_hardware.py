"""The hardware catalog (gpus.toml + gpus.py) and host-side helpers (host.py)."""

from __future__ import annotations

import re
import sys
import types

import pytest

from vramplan.errors import InputError, UnknownGpuError
from vramplan.hardware import gpus as gpus_mod
from vramplan.hardware import host
from vramplan.hardware.gpus import (
    CatalogError,
    Gpu,
    custom_gpu,
    get_gpu,
    load_catalog,
    parse_catalog,
    search_gpus,
)
from vramplan.units import GB, GIB

CATALOG = load_catalog()


def test_catalog_is_large_and_cached() -> None:
    assert len(CATALOG) >= 50
    assert load_catalog() is CATALOG


@pytest.mark.parametrize("gpu", CATALOG, ids=lambda g: g.key)
def test_every_row_is_sane(gpu: Gpu) -> None:
    assert gpu.source.startswith("https://")
    assert gpu.memory_bytes > 0 and isinstance(gpu.memory_bytes, int)
    assert gpu.bandwidth_bytes_per_s > 0 and isinstance(gpu.bandwidth_bytes_per_s, int)
    assert gpu.bf16_dense_tflops > 0
    assert 0 < gpu.memory_reported_bytes <= gpu.memory_bytes
    assert gpu.vendor in {"nvidia", "amd", "apple", "intel"}
    assert 0 < gpu.gpu_share <= 1
    assert gpu.reported_source, "say where memory_reported_bytes comes from"
    if gpu.fp8_dense_tflops is not None:
        assert gpu.fp8_dense_tflops >= gpu.bf16_dense_tflops
    if gpu.unified_memory:
        assert gpu.pcie_gen == 0
        assert gpu.usable_bytes == int(gpu.memory_bytes * gpu.gpu_share) < gpu.memory_bytes
    else:
        assert gpu.usable_bytes == gpu.memory_bytes
        assert gpu.pcie_gen in (3, 4, 5, 6)
    # plausible ranges catch GB/GiB or bits/bytes slips
    assert gpu.memory_bytes >= 6 * GIB
    assert 10 * GB <= gpu.bandwidth_bytes_per_s <= 10_000 * GB


def test_keys_and_aliases_are_unique() -> None:
    keys = [g.key for g in CATALOG]
    assert len(keys) == len(set(keys))
    seen: dict[str, str] = {}
    for gpu in CATALOG:
        for token in {gpus_mod._norm(t) for t in (gpu.key, gpu.name, *gpu.aliases)}:
            assert seen.setdefault(token, gpu.key) == gpu.key, token


def test_required_families_are_covered() -> None:
    keys = {g.key for g in CATALOG}
    for key in ("rtx-2060", "rtx-3090", "rtx-4090", "rtx-5090", "rtx-a6000", "rtx-pro-6000",
                "t4", "v100-32gb", "a10g", "a100-40gb-pcie", "a100-80gb-sxm", "h100-nvl", "h200",
                "gh200", "b200", "gb200", "l40s", "dgx-spark", "mi250x", "mi300x", "mi355x",
                "rx-7900-xtx", "ryzen-ai-max-395", "m1", "m2-ultra", "m3-pro", "m3-max",
                "m3-ultra", "m4-max", "arc-a770", "arc-b580", "gaudi2", "gaudi3"):
        assert key in keys, key
    assert {g.vendor for g in CATALOG} == {"nvidia", "amd", "apple", "intel"}


@pytest.mark.parametrize(
    ("query", "key"),
    [
        ("4090", "rtx-4090"),
        ("RTX 4090", "rtx-4090"),
        ("NVIDIA GeForce RTX 4090", "rtx-4090"),
        ("nvidia h200", "h200"),
        ("h100-sxm", "h100-sxm"),
        ("H100 SXM", "h100-sxm"),
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("m3 max", "m3-max"),
        ("M3-Max", "m3-max"),
        ("mi300x", "mi300x"),
        ("AMD Instinct MI300X", "mi300x"),
        ("7900xtx", "rx-7900-xtx"),
        ("7900 XTX", "rx-7900-xtx"),
        ("A100-SXM4-80GB", "a100-80gb-sxm"),
        ("a100 pcie 40gb", "a100-40gb-pcie"),
        ("Tesla T4", "t4"),
        ("rtx 3090 24gb", "rtx-3090"),
        ("4060 Ti 16GB", "rtx-4060-ti-16gb"),
        ("strix halo", "ryzen-ai-max-395"),
        ("GB10", "dgx-spark"),
        ("h100 nvl", "h100-nvl"),
    ],
)
def test_fuzzy_lookup(query: str, key: str) -> None:
    assert get_gpu(query).key == key


def test_unknown_gpu_has_suggestions() -> None:
    with pytest.raises(UnknownGpuError) as info:
        get_gpu("rtx 4095")
    err = info.value
    assert err.field == "--gpu"
    assert "unknown GPU 'rtx 4095'" in str(err)
    assert "did you mean:" in err.fix and "rtx-4090" in err.fix
    assert "vramplan gpus" in err.fix
    assert isinstance(err, InputError)


def test_ambiguous_gpu_lists_the_candidates() -> None:
    with pytest.raises(UnknownGpuError) as info:
        get_gpu("a100")
    assert "ambiguous" in info.value.problem
    for key in ("a100-40gb-pcie", "a100-40gb-sxm", "a100-80gb-pcie", "a100-80gb-sxm"):
        assert key in info.value.fix


@pytest.mark.parametrize("query", ["", "   ", "zzzz", "rtx 3060 8gb"])
def test_misses_raise(query: str) -> None:
    with pytest.raises(UnknownGpuError):
        get_gpu(query)


def test_gb_vs_gib() -> None:
    assert get_gpu("h100-sxm").memory_bytes == 80 * 2**30
    assert get_gpu("h100-pcie").memory_bytes == 80 * 2**30
    assert get_gpu("rtx-4090").memory_bytes == 24 * 2**30 == 25769803776
    assert get_gpu("h200").memory_bytes == 141 * 2**30
    assert get_gpu("rtx-4090").memory_reported_bytes == 25757220864
    # torch reports H100 80GB as ~79.18 GiB and H200 as ~139.8 GiB
    assert get_gpu("h100-sxm").memory_reported_bytes / GIB == pytest.approx(79.18, abs=0.02)
    assert get_gpu("h200").memory_reported_bytes / GIB == pytest.approx(139.8, abs=0.05)
    assert get_gpu("m4-max").memory_bytes == 128 * GIB
    for gpu in CATALOG:
        if gpu.vendor == "nvidia":
            assert gpu.memory_reported_bytes <= gpu.memory_bytes, gpu.key


def test_unified_memory_share() -> None:
    m3 = get_gpu("m3-max")
    assert m3.unified_memory and m3.gpu_share == 0.75
    assert m3.usable_bytes == 96 * GIB
    assert get_gpu("m1").usable_bytes == pytest.approx(16 * GIB * 2 / 3, rel=1e-6)
    assert get_gpu("strix halo").usable_bytes == 96 * GIB
    assert not get_gpu("4090").unified_memory


def test_search() -> None:
    assert search_gpus(None) == list(CATALOG)
    assert search_gpus("") == list(CATALOG)
    amd = search_gpus("amd")
    assert amd and all(g.vendor == "amd" for g in amd)
    assert {g.key for g in search_gpus("h100")} >= {"h100-pcie", "h100-sxm", "h100-nvl"}
    assert {g.key for g in search_gpus("HBM3e")} >= {"h200", "b200", "mi325x"}
    assert search_gpus("no such thing") == []


def test_custom_gpu() -> None:
    gpu = custom_gpu(24 * GIB)
    assert gpu.memory_bytes == gpu.memory_reported_bytes == gpu.usable_bytes == 24 * GIB
    assert gpu.bandwidth_bytes_per_s == 0 and gpu.bf16_dense_tflops == 0.0
    assert gpu.name == "custom" and gpu.vendor == "custom"
    assert custom_gpu(80 * GB, name="my card").name == "my card"
    for bad in (0, -1):
        with pytest.raises(InputError):
            custom_gpu(bad)


def test_gpu_is_frozen() -> None:
    with pytest.raises(AttributeError):
        CATALOG[0].memory_bytes = 1  # type: ignore[misc]


GOOD_ROW = """
[[gpu]]
key = "x-1"
name = "X One"
vendor = "nvidia"
memory_bytes = 1000
memory_reported_bytes = 900
memory_type = "GDDR6"
bandwidth_bytes_per_s = 100
bf16_dense_tflops = 1
pcie_gen = 4
unified_memory = false
source = "https://example.com/x"
"""


def test_schema_matches_dataclass() -> None:
    assert gpus_mod._KNOWN == set(gpus_mod._REQUIRED) | set(gpus_mod._OPTIONAL)


def test_parse_catalog_accepts_a_minimal_row() -> None:
    (gpu,) = parse_catalog(GOOD_ROW)
    assert gpu.bf16_dense_tflops == 1.0 and isinstance(gpu.bf16_dense_tflops, float)
    assert gpu.aliases == ()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("memory_bytes = 1000", 'memory_bytes = "1000"'), "'memory_bytes' must be int"),
        (("memory_bytes = 1000", "memory_bytes = 800"), "at most memory_bytes"),
        (('vendor = "nvidia"', 'vendor = "acme"'), "vendor"),
        (('source = "https://example.com/x"', 'source = ""'), "source"),
        (("pcie_gen = 4", "pcie_gen = 4\nmemroy_type = 1"), "unknown field"),
        (("unified_memory = false", "unified_memory = 0"), "'unified_memory' must be bool"),
        (("bf16_dense_tflops = 1", "bf16_dense_tflops = true"), "'bf16_dense_tflops'"),
        (('key = "x-1"', 'key = "X 1"'), "slug"),
        (('key = "x-1"\n', ""), "missing field 'key'"),
    ],
)
def test_parse_catalog_rejects_bad_rows(edit: tuple[str, str], message: str) -> None:
    with pytest.raises(CatalogError, match=re.escape(message)):
        parse_catalog(GOOD_ROW.replace(*edit))


def test_parse_catalog_rejects_duplicate_alias_and_garbage() -> None:
    dup = GOOD_ROW + GOOD_ROW.replace('"x-1"', '"x-2"').replace('"X One"', '"X Two"').replace(
        'pcie_gen = 4', 'pcie_gen = 4\naliases = ["x one"]')
    with pytest.raises(CatalogError, match="used by both"):
        parse_catalog(dup)
    with pytest.raises(CatalogError):
        parse_catalog("not = [valid")
    with pytest.raises(CatalogError):
        parse_catalog("")


# ----------------------------------------------------------------------------- host.py


def test_pcie_table() -> None:
    assert host.pcie_bytes_per_s(3) / GB == pytest.approx(15.75, abs=0.01)
    assert host.pcie_bytes_per_s(4) / GB == pytest.approx(31.5, abs=0.02)
    assert host.pcie_bytes_per_s(5) / GB == pytest.approx(63.0, abs=0.05)
    assert host.pcie_bytes_per_s(5, lanes=8) == host.pcie_bytes_per_s(5) // 2
    with pytest.raises(InputError):
        host.pcie_bytes_per_s(7)


def test_memory_kinds_and_typical_host() -> None:
    assert host.MEMORY_KINDS["DDR4-3200"] == 25_600_000_000
    assert host.MEMORY_KINDS["DDR5-5600"] == 44_800_000_000
    h = host.typical_host(64 * GIB)
    assert h == host.HostMemory(64 * GIB, 89_600_000_000, 2, "DDR5-5600")
    server = host.host_memory(512 * GIB, "DDR5-4800", channels=12)
    assert server.bandwidth_bytes_per_s == 12 * 38_400_000_000
    with pytest.raises(InputError):
        host.host_memory(GIB, "DDR9-99999")
    with pytest.raises(InputError):
        host.typical_host(0)


def test_detect_local_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    result = host.detect_local()
    assert isinstance(result, list)
    assert all(isinstance(n, str) and isinstance(b, int) and b > 0 for n, b in result)
    ram = host.detect_host_ram()
    assert ram is None or ram > 0


def test_detect_local_uses_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("pynvml")
    mem = types.SimpleNamespace(total=80 * GIB)
    fake.nvmlInit = lambda: None  # type: ignore[attr-defined]
    fake.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    fake.nvmlDeviceGetCount = lambda: 2  # type: ignore[attr-defined]
    fake.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    fake.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"  # type: ignore[attr-defined]
    fake.nvmlDeviceGetMemoryInfo = lambda h: mem  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    found = host.detect_local()
    assert found == [("NVIDIA H100 80GB HBM3", 80 * GIB)] * 2
    assert get_gpu(found[0][0]).key == "h100-sxm"


def test_detect_local_survives_broken_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = types.ModuleType("pynvml")  # has no nvmlInit: AttributeError inside the probe
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setattr("platform.system", lambda: "Linux")
    assert host.detect_local() == []


def test_no_optional_imports_at_module_import() -> None:
    source = open(host.__file__, encoding="utf-8").read()
    top_level = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert not any(name in line for line in top_level for name in ("pynvml", "psutil"))
