"""Host RAM of vLLM: the motivating post's OOM-killed process, explained."""

from __future__ import annotations

from vramplan.api import estimate
from vramplan.host_ram import PROCESS_BASELINE_BYTES
from vramplan.units import GIB


def test_pinned_offload_beyond_ram_is_a_host_oom() -> None:
    """Qwen3-235B AWQ on one 24 GB card, rescued with --cpu-offload-gb on a 64 GiB machine:
    the pinned buffer alone is larger than RAM, so the kernel kills the process while loading."""
    est = estimate("qwen3-235b-a22b", gpu="rtx 4090", quant="awq", ram=64 * GIB,
                   engine_options={"cpu_offload_gb": 98})
    assert not est.fits and est.failure is not None and "OOM killer" in est.failure
    hr = est.engine_figures["host_ram"]
    assert hr["pinned_offload_bytes"] == 98 * GIB
    assert est.host_ram_bytes == hr["anonymous_peak_bytes"] > 64 * GIB


def test_host_ram_counts_one_process_per_worker() -> None:
    one = estimate("qwen3-8b", gpu="h100", engine="vllm")
    two = estimate("qwen3-8b", gpu="h100", gpus=2, engine="vllm")
    assert one.engine_figures["host_ram"]["processes"] == 2  # API server + engine core
    assert two.engine_figures["host_ram"]["processes"] == 4  # + one worker per GPU
    assert two.host_ram_bytes - one.host_ram_bytes == 2 * PROCESS_BASELINE_BYTES
    # the checkpoint read through mmap is page cache, not anonymous memory
    assert one.engine_figures["host_ram"]["page_cache_bytes"] == one.weights_bytes
    assert one.host_ram_bytes < one.weights_bytes
