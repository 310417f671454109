"""Host RAM of a GPU serving engine: what the kernel's OOM killer sees.

Anonymous memory (cannot be reclaimed; this is what gets a process killed):
  process baseline x processes   each Python process that imports torch and creates a CUDA
                                 context holds ~2 GiB resident (ASSUMPTION below)
  + pinned CPU-offload buffers   vLLM ``--cpu-offload-gb X`` pins X GiB per GPU
                                 (vllm/model_executor/models/utils.py maybe_offload_to_cpu:
                                 parameters copied to ``pin_memory`` CPU tensors)
  + largest tensor in flight     the loader materializes one checkpoint tensor on the CPU at a
                                 time (safetensors ``safe_open`` is mmap-backed)
File-backed page cache (reclaimable; shows as "buff/cache", not a reason to be killed):
  the checkpoint files read through mmap, up to their size.

vLLM V1 runs an API-server process and an engine-core process, plus one worker process per GPU
when tp x pp > 1 (multiproc executor; vllm/v1/executor/multiproc_executor.py), each with its
own baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from vramplan.quant.schemes import QuantizedModel
from vramplan.units import GIB

# ASSUMPTION: resident set of one Python process with torch, CUDA context and the engine's
# imports, before weights; typical `ps` RSS of vLLM API-server/engine-core/worker processes is
# 1-3 GiB each. Replace with measured figures when available.
PROCESS_BASELINE_BYTES = 2 * GIB


@dataclass(frozen=True, slots=True)
class HostRam:
    processes: int
    baseline_bytes: int  # processes x PROCESS_BASELINE_BYTES
    pinned_offload_bytes: int  # --cpu-offload-gb x GPUs
    loading_transient_bytes: int  # the largest tensor materialized on the CPU while loading
    page_cache_bytes: int  # checkpoint files through mmap (reclaimable)

    @property
    def anonymous_peak_bytes(self) -> int:
        """What must fit in RAM (+ swap) for the process to survive loading."""
        return self.baseline_bytes + self.pinned_offload_bytes + self.loading_transient_bytes

    def as_dict(self) -> dict[str, int]:
        return {"processes": self.processes, "baseline_bytes": self.baseline_bytes,
                "pinned_offload_bytes": self.pinned_offload_bytes,
                "loading_transient_bytes": self.loading_transient_bytes,
                "page_cache_bytes": self.page_cache_bytes,
                "anonymous_peak_bytes": self.anonymous_peak_bytes}


@lru_cache(maxsize=256)
def largest_tensor_bytes(qm: QuantizedModel) -> int:
    """Bytes of the largest single stored tensor (an expert group counts per expert)."""
    return max((e.bytes // max(1, e.group.count) for e in qm.entries), default=0)


def vllm_host_ram(qm: QuantizedModel, gpus: int, offload_bytes_per_gpu: int) -> HostRam:
    """Host RAM peak of ``vllm serve`` on ``gpus`` GPUs (see the module docstring)."""
    processes = 2 + (gpus if gpus > 1 else 0)
    largest = largest_tensor_bytes(qm)
    return HostRam(processes=processes, baseline_bytes=processes * PROCESS_BASELINE_BYTES,
                   pinned_offload_bytes=offload_bytes_per_gpu * gpus,
                   loading_transient_bytes=largest, page_cache_bytes=qm.weights_bytes)
