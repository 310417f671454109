"""Benchmarks for issue 2: cold CLI start and one in-process estimate. Prints numbers.

    python bench/bench_estimate.py

Targets on the 2-core dev machine: cold `vramplan estimate` on a catalog model < 0.3 s;
one in-process estimate < 1 ms (warm: model already resolved; the first call per model pays
for reading and pricing the config, reported separately).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

MODEL = "qwen3-235b-a22b"
ARGS = ["estimate", MODEL, "--gpu", "rtx 4090", "--quant", "awq", "--engine", "generic"]


def cold_cli(runs: int = 7) -> list[float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vramplan", *ARGS], capture_output=True, check=False)
        times.append(time.perf_counter() - t)
    return times


def in_process(runs: int = 2000) -> tuple[float, float]:
    from vramplan.api import estimate

    t = time.perf_counter()
    estimate(MODEL, gpu="rtx 4090", quant="awq", engine="generic")
    first = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(runs):
        estimate(MODEL, gpu="rtx 4090", quant="awq", context=4096 + i, engine="generic")
    return first, (time.perf_counter() - t) / runs


def main() -> None:
    cold = cold_cli()
    print(f"cold `vramplan {' '.join(ARGS)}`: median {statistics.median(cold) * 1000:.0f} ms, "
          f"min {min(cold) * 1000:.0f} ms over {len(cold)} runs (target < 300 ms)")
    first, warm = in_process()
    print(f"in-process estimate: first call {first * 1000:.1f} ms (load + price), then "
          f"{warm * 1000:.3f} ms per estimate (target < 1 ms)")


if __name__ == "__main__":
    main()
