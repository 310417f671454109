"""Host-side hardware for offload planning: system RAM, its bandwidth, and the PCIe link.

All bandwidths are decimal bytes per second, per direction, peak (theoretical). Nothing here
imports optional packages at import time; :func:`detect_local` tries them lazily and never
raises.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass

from vramplan.errors import InputError
from vramplan.units import MB

__all__ = [
    "MEMORY_KINDS",
    "PCIE_LANE_BYTES_PER_S",
    "HostMemory",
    "detect_host_ram",
    "detect_local",
    "host_memory",
    "pcie_bytes_per_s",
    "typical_host",
]


def _channel(mega_transfers_per_s: int) -> int:
    """Peak bytes/s of one 64-bit channel: data rate (MT/s) x 8 bytes."""
    return mega_transfers_per_s * 8 * MB


# Per 64-bit channel. A DDR5 DIMM's two 32-bit sub-channels count as one 64-bit channel here,
# as vendors count "dual-channel" DDR5; LPDDR buses are counted in 64-bit units.
MEMORY_KINDS: dict[str, int] = {
    "DDR4-2666": _channel(2666),  # JEDEC JESD79-4 (DDR4) speed bin: 21.3 GB/s
    "DDR4-3200": _channel(3200),  # JEDEC JESD79-4: 25.6 GB/s
    "DDR5-4800": _channel(4800),  # JEDEC JESD79-5 (DDR5): 38.4 GB/s, server RDIMM baseline
    "DDR5-5600": _channel(5600),  # JEDEC JESD79-5: 44.8 GB/s
    "DDR5-6000": _channel(6000),  # common desktop XMP/EXPO profile: 48.0 GB/s
    "DDR5-6400": _channel(6400),  # JEDEC JESD79-5: 51.2 GB/s
    "LPDDR5-6400": _channel(6400),  # JEDEC JESD209-5 (LPDDR5): 51.2 GB/s per 64 bits
    "LPDDR5X-7500": _channel(7500),  # JEDEC JESD209-5B (LPDDR5X): 60.0 GB/s per 64 bits
    "LPDDR5X-8000": _channel(8000),  # AMD Strix Halo: 256-bit bus = 4 x 64 GB/s = 256 GB/s
    "LPDDR5X-8533": _channel(8533),  # JEDEC JESD209-5B: 68.3 GB/s per 64 bits (Lunar Lake)
}

# Usable bytes/s per lane, per direction, after line coding (PCI-SIG base specifications):
# gen1/2 use 8b/10b, gen3-5 128b/130b, gen6 PAM4 with 242/256-byte FLITs.
PCIE_LANE_BYTES_PER_S: dict[int, float] = {
    1: 2.5e9 * 8 / 10 / 8,  # 250 MB/s
    2: 5e9 * 8 / 10 / 8,  # 500 MB/s
    3: 8e9 * 128 / 130 / 8,  # ~0.985 GB/s; x16 ~15.75 GB/s
    4: 16e9 * 128 / 130 / 8,  # ~1.969 GB/s; x16 ~31.5 GB/s
    5: 32e9 * 128 / 130 / 8,  # ~3.938 GB/s; x16 ~63 GB/s
    6: 64e9 * 242 / 256 / 8,  # ~7.56 GB/s; x16 ~121 GB/s
}


def pcie_bytes_per_s(gen: int, lanes: int = 16) -> int:
    """Peak one-direction PCIe bandwidth: gen3 x16 ~15.75 GB/s, gen4 ~31.5, gen5 ~63."""
    if gen not in PCIE_LANE_BYTES_PER_S:
        raise InputError("pcie", f"unknown PCIe generation {gen}", "use 1 to 6")
    if lanes not in (1, 2, 4, 8, 16):
        raise InputError("pcie", f"unusual lane count x{lanes}", "use 1, 2, 4, 8 or 16")
    return int(PCIE_LANE_BYTES_PER_S[gen] * lanes)


@dataclass(frozen=True, slots=True)
class HostMemory:
    """System RAM: its size and peak bandwidth (``channels`` x per-channel rate of ``kind``)."""

    ram_bytes: int
    bandwidth_bytes_per_s: int
    channels: int
    kind: str


def host_memory(ram_bytes: int, kind: str = "DDR5-5600", channels: int = 2) -> HostMemory:
    """A host with ``channels`` 64-bit channels of ``kind`` memory (see ``MEMORY_KINDS``)."""
    if ram_bytes <= 0:
        raise InputError("--ram", f"RAM must be positive, got {ram_bytes}", "e.g. --ram 64GiB")
    if kind not in MEMORY_KINDS:
        raise InputError("memory kind", f"unknown memory kind {kind!r}",
                         f"use one of {', '.join(MEMORY_KINDS)}")
    if channels <= 0:
        raise InputError("channels", f"channel count must be positive, got {channels}")
    return HostMemory(ram_bytes, MEMORY_KINDS[kind] * channels, channels, kind)


def typical_host(ram_bytes: int) -> HostMemory:
    """ASSUMPTION: a desktop with dual-channel DDR5-5600, i.e. 2 x 44.8 = 89.6 GB/s peak.

    Real sustained CPU read bandwidth is lower (often 60-75% of peak); servers with 8-12
    channels are far faster, laptops with DDR4 slower. Use :func:`host_memory` when known.
    """
    return host_memory(ram_bytes, "DDR5-5600", 2)


def _nvml_gpus() -> list[tuple[str, int]]:
    import pynvml  # type: ignore[import-not-found, import-untyped, unused-ignore]

    pynvml.nvmlInit()
    try:
        out: list[tuple[str, int]] = []
        for i in range(int(pynvml.nvmlDeviceGetCount())):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            if isinstance(name, bytes):
                name = name.decode()
            out.append((str(name), int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)))
        return out
    finally:
        pynvml.nvmlShutdown()


def _nvidia_smi_gpus() -> list[tuple[str, int]]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    res = subprocess.run(
        [exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, timeout=10, check=True,
    )
    out = []
    for line in res.stdout.splitlines():
        name, _, mib = line.rpartition(",")
        if name.strip() and mib.strip().isdigit():
            out.append((name.strip(), int(mib) * 2**20))
    return out


def _sysctl(name: str) -> str:
    res = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5,
                         check=True)
    return res.stdout.strip()


def _apple_gpus() -> list[tuple[str, int]]:
    if platform.system() != "Darwin" or platform.machine() != "arm64":
        return []
    return [(_sysctl("machdep.cpu.brand_string") or "Apple Silicon", int(_sysctl("hw.memsize")))]


def detect_local() -> list[tuple[str, int]]:
    """Best effort: the local accelerators as ``(name, total_bytes)``; ``[]`` when none found.

    Tries NVML (``nvidia-ml-py``), then ``nvidia-smi``, then Apple Silicon via ``sysctl`` (the
    total is all unified RAM; the GPU's share is smaller). Never raises.
    """
    for probe in (_nvml_gpus, _nvidia_smi_gpus, _apple_gpus):
        try:
            found = probe()
        except Exception:  # best effort: any failure means "not this way"
            continue
        if found:
            return found
    return []


def detect_host_ram() -> int | None:
    """Best effort total system RAM in bytes (psutil, else sysconf/sysctl), ``None`` if unknown."""
    try:
        import psutil  # type: ignore[import-untyped, unused-ignore]

        return int(psutil.virtual_memory().total)
    except Exception:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        pass
    try:
        return int(_sysctl("hw.memsize"))
    except Exception:
        return None

