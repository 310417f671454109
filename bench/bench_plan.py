"""Planner speed: the full search for one model over the whole GPU catalog (target < 1 s).

    python bench/bench_plan.py [MODEL ...]

Prints, per model, the first search in a fresh process (cold: model load, pricing of each
quantization, engine imports) and the median of 5 repeated searches (warm: the priced models
are cached, as in a long-running server or a `fit` over the catalog).
"""

from __future__ import annotations

import statistics
import sys
import time

MODELS = ("meta-llama/Llama-3.1-8B", "Qwen/Qwen3-32B", "Qwen/Qwen3-235B-A22B",
          "deepseek-ai/DeepSeek-V3")


def main(models: list[str]) -> None:
    from vramplan.hardware.gpus import load_catalog
    from vramplan.plan.planner import plan

    n_kinds = len(load_catalog())
    print(f"plan(model) over the whole catalog ({n_kinds} GPU kinds, 1-16 GPUs each, "
          "every registered engine x quantization)")
    worst = 0.0
    for m in models:
        t = time.perf_counter()
        res = plan(m)
        cold = time.perf_counter() - t
        warm = []
        for _ in range(5):
            t = time.perf_counter()
            plan(m)
            warm.append(time.perf_counter() - t)
        w = statistics.median(warm)
        worst = max(worst, w)
        best = res.options[0] if res.options else None
        print(f"  {m:32s} cold {cold:6.2f} s   warm {w:6.3f} s   best: "
              + (f"{best.gpu_count} x {best.gpu} {best.engine} {best.quant_label} "
                 f"~{best.decode_tokens_per_s or 0:.0f} tok/s" if best else "none"))
    print(f"worst warm search: {worst:.3f} s ({'OK' if worst < 1 else 'OVER'} the 1 s target)")


if __name__ == "__main__":
    main(sys.argv[1:] or list(MODELS))
