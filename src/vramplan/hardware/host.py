"""Host-side hardware for offload planning: system RAM, its bandwidth, and the PCIe link.

All bandwidths are decimal bytes per second, per direction, peak (theoretical). Nothing here
imports optional packages at import time; :func:`detect_local` tries them lazily and never
raises.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from vramplan.errors import InputError
from vramplan.units import MB

__all__ = [
    "DEFAULT_CHANNELS",
    "DEFAULT_KIND",
    "MAX_CHANNELS",
    "MEMORY_KINDS",
    "PCIE_GENS",
    "PCIE_LANE_BYTES_PER_S",
    "HostMemory",
    "describe_host",
    "detect_host_ram",
    "detect_local",
    "host_memory",
    "link_pcie_gen",
    "memory_kind",
    "pcie_bytes_per_s",
    "resolve_host",
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


DEFAULT_KIND = "DDR5-5600"  # ASSUMPTION: a current desktop (see typical_host)
DEFAULT_CHANNELS = 2
MAX_CHANNELS = 24  # 2-socket servers: 2 x 12 DDR5 channels (AMD EPYC 9004/9005)
PCIE_GENS = (3, 4, 5, 6)  # what --pcie-gen takes: gen1/2 slots do not host a current GPU
# Size used when host options are given without --ram: speed needs only the bandwidth.
_SIZE_FOR_SPEED = 64 * 2**30


@dataclass(frozen=True, slots=True)
class HostMemory:
    """System RAM: its size and peak bandwidth (``channels`` x per-channel rate of ``kind``),
    plus the host's PCIe slot generation when known (``None``: the GPU's own, else gen4).

    ``kind_given`` / ``channels_given``: the user said so (else they are the typical-desktop
    ASSUMPTION); they only change how results word their assumptions.
    """

    ram_bytes: int
    bandwidth_bytes_per_s: int
    channels: int
    kind: str
    pcie_gen: int | None = None
    kind_given: bool = False
    channels_given: bool = False


def memory_kind(name: str) -> str:
    """The ``MEMORY_KINDS`` key for ``name``, case-insensitive (``ddr5-6400`` -> ``DDR5-6400``)."""
    text = str(name).strip().upper()
    if text not in MEMORY_KINDS:
        raise InputError("--ram-kind", f"unknown memory kind {name!r}",
                         f"use one of {', '.join(MEMORY_KINDS)}")
    return text


def _check_channels(channels: int) -> int:
    if isinstance(channels, bool) or not isinstance(channels, int) or \
            not 1 <= channels <= MAX_CHANNELS:
        raise InputError("--ram-channels", f"must be between 1 and {MAX_CHANNELS}, got "
                         f"{channels!r}", "e.g. --ram-channels 2 for a desktop, 8 or 12 for a "
                         "server socket")
    return channels


def _check_pcie_gen(gen: int) -> int:
    if isinstance(gen, bool) or not isinstance(gen, int) or gen not in PCIE_GENS:
        raise InputError("--pcie-gen", f"must be between {PCIE_GENS[0]} and {PCIE_GENS[-1]}, "
                         f"got {gen!r}", "e.g. --pcie-gen 4 (the slot's PCIe generation)")
    return gen


def host_memory(ram_bytes: int, kind: str = DEFAULT_KIND, channels: int = DEFAULT_CHANNELS,
                pcie_gen: int | None = None) -> HostMemory:
    """A host with ``channels`` 64-bit channels of ``kind`` memory (see ``MEMORY_KINDS``;
    case-insensitive) and, optionally, PCIe gen ``pcie_gen`` slots. Both count as given."""
    if ram_bytes <= 0:
        raise InputError("--ram", f"RAM must be positive, got {ram_bytes}", "e.g. --ram 64GiB")
    key = memory_kind(kind)
    _check_channels(channels)
    if pcie_gen is not None:
        _check_pcie_gen(pcie_gen)
    return HostMemory(ram_bytes, MEMORY_KINDS[key] * channels, channels, key, pcie_gen, True,
                      True)


def typical_host(ram_bytes: int) -> HostMemory:
    """ASSUMPTION: a desktop with dual-channel DDR5-5600, i.e. 2 x 44.8 = 89.6 GB/s peak.

    Real sustained CPU read bandwidth is lower (often 60-75% of peak); servers with 8-12
    channels are far faster, laptops with DDR4 slower. Use :func:`host_memory` when known.
    """
    h = host_memory(ram_bytes, DEFAULT_KIND, DEFAULT_CHANNELS)
    return HostMemory(h.ram_bytes, h.bandwidth_bytes_per_s, h.channels, h.kind)


def resolve_host(ram_bytes: int | None, kind: str | None = None, channels: int | None = None,
                 pcie_gen: int | None = None) -> HostMemory | None:
    """The host the user described (``--ram``, ``--ram-kind``, ``--ram-channels``,
    ``--pcie-gen``); what is not given is the typical desktop (dual-channel DDR5-5600, the
    GPU's own PCIe generation). ``None`` when nothing at all is given. Bad values raise
    ``InputError`` naming the flag."""
    if kind is None and channels is None and pcie_gen is None:
        return typical_host(ram_bytes) if ram_bytes else None
    key = memory_kind(kind) if kind is not None else DEFAULT_KIND
    n = _check_channels(channels) if channels is not None else DEFAULT_CHANNELS
    gen = _check_pcie_gen(pcie_gen) if pcie_gen is not None else None
    size = ram_bytes if ram_bytes else _SIZE_FOR_SPEED
    if size <= 0:
        raise InputError("--ram", f"RAM must be positive, got {size}", "e.g. --ram 64GiB")
    return HostMemory(size, MEMORY_KINDS[key] * n, n, key, gen, kind is not None,
                      channels is not None)


def link_pcie_gen(gpu_gen: int, host: HostMemory | None) -> tuple[int, str]:
    """PCIe generation a GPU's link runs at, and why: the lower of the slot's (``--pcie-gen``)
    and the GPU's (its catalog row; 0 = unknown), else the GPU's, else gen4 (ASSUMPTION)."""
    slot = host.pcie_gen if host is not None else None
    if slot is not None and gpu_gen and gpu_gen < slot:
        return gpu_gen, f"--pcie-gen {slot}, but the GPU is gen{gpu_gen}"
    if slot is not None:
        return slot, f"--pcie-gen {slot}"
    if gpu_gen:
        return gpu_gen, "the GPU's; set --pcie-gen for the slot"
    return 4, "ASSUMPTION; set --pcie-gen"


def describe_host(host: HostMemory) -> str:
    """``DDR5-6400 x 8 channels = 410 GB/s peak (given)``; says what was assumed."""
    if host.kind_given and host.channels_given:
        src = "given"
    elif host.kind_given or host.channels_given:
        src = (f"{host.kind} given; {host.channels} channels assumed, set --ram-channels"
               if host.kind_given else
               f"{host.channels} channels given; {host.kind} assumed, set --ram-kind")
    else:
        src = "ASSUMPTION: typical desktop; set --ram-kind/--ram-channels"
    return (f"{host.kind} x {host.channels} channels = "
            f"{host.bandwidth_bytes_per_s / 1e9:.0f} GB/s peak ({src})")


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
    import shutil
    import subprocess

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
    import subprocess

    res = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5,
                         check=True)
    return res.stdout.strip()


def _apple_gpus() -> list[tuple[str, int]]:
    import platform

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

