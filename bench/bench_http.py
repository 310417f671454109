"""HTTP benchmark for issue 5: /v1/estimate under a steady open-loop load. Prints numbers.

    python bench/bench_http.py [--rate 100] [--duration 10] [--url http://127.0.0.1:8000]

Starts `vramplan serve` on a free loopback port (unless --url), warms it up, then sends
``rate`` POST /v1/estimate requests per second for ``duration`` seconds on a fixed schedule
(open loop: a slow answer does not delay the next request, and latency is counted from the
scheduled send time, so queueing shows). Requests cycle through catalog models, GPUs, engines
and contexts. Prints achieved requests/s, p50/p90/p99/max latency, and where the server-side
time goes (in-process: validation, api.estimate, to_dict, JSON encoding).

Target: p99 < 50 ms at 100 requests/s. Exit status 1 when missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx

TARGET_P99_MS = 50.0
CASES: list[dict[str, Any]] = [
    {"model": "qwen3-235b-a22b", "gpu": "rtx 4090", "quant": "awq"},
    {"model": "qwen3-235b-a22b", "gpu": "h200", "quant": "awq"},
    {"model": "deepseek-ai/DeepSeek-V3", "gpu": "h200", "gpus": 8},
    {"model": "qwen3-8b", "gpu": "rtx 4090", "engine": "generic"},
    {"model": "meta-llama/Llama-3.1-70B-Instruct", "gpu": "a100-80gb-sxm", "gpus": 2,
     "quant": "fp8"},
    {"model": "openai/gpt-oss-120b", "gpu": "h100", "batch": 8},
]


def request_body(i: int) -> dict[str, Any]:
    """Case i mod len(CASES), with a context that varies so nothing is answered from a cache."""
    return dict(CASES[i % len(CASES)], context=4096 + 16 * (i % 997))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "vramplan", "serve", "--port", str(port),
                             "--log-level", "warning"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"vramplan serve exited: {err}")
        try:
            if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit("vramplan serve did not start within 30 s")


async def load(url: str, rate: float,
               duration: float) -> tuple[list[float], list[float], int, float]:
    """Open-loop load; returns latencies (s, from the scheduled time), server times (ms, from
    the Server-Timing header), errors, wall time."""
    n = int(rate * duration)
    latencies: list[float] = []
    server_ms: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        async def one(i: int, at: float) -> None:
            nonlocal errors
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                r = await client.post("/v1/estimate", json=request_body(i))
                if r.status_code != 200:
                    errors += 1
                timing = r.headers.get("server-timing", "")
                if "dur=" in timing:
                    server_ms.append(float(timing.split("dur=")[1].split(";")[0]))
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - at)

        t0 = time.perf_counter() + 0.2
        await asyncio.gather(*(one(i, t0 + i / rate) for i in range(n)))
        wall = time.perf_counter() - t0
    return latencies, server_ms, errors, wall


def pct(sorted_values: list[float], p: float) -> float:
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def server_side_breakdown(runs: int = 300) -> dict[str, float]:
    """Mean ms per request spent in each server-side stage, measured in this process."""
    from vramplan.api import estimate
    from vramplan.report import to_dict
    from vramplan.web import service

    stages = {"validate": 0.0, "api.estimate": 0.0, "to_dict": 0.0, "json": 0.0}
    for i in range(len(CASES)):  # first call per model loads and prices it
        service.run_estimate(service.parse_request(request_body(i)), False)
    for i in range(runs):
        t0 = time.perf_counter()
        req = service.parse_request(request_body(i))
        model = service.model_argument(req, False)
        t1 = time.perf_counter()
        est = estimate(model, allow_hub=False, **req.kwargs())
        t2 = time.perf_counter()
        data = to_dict(est)
        t3 = time.perf_counter()
        json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        t4 = time.perf_counter()
        for k, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            stages[k] += dt
    return {k: v / runs * 1000 for k, v in stages.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=100.0, help="requests per second")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    ap.add_argument("--url", help="bench a running server instead of starting one")
    args = ap.parse_args()

    proc = None
    url = args.url
    if not url:
        proc, url = start_server()
    try:
        with httpx.Client(base_url=url, timeout=30) as c:  # warm-up: load every model once
            for i in range(3 * len(CASES)):
                r = c.post("/v1/estimate", json=request_body(i))
                r.raise_for_status()
        latencies, server_ms, errors, wall = asyncio.run(load(url, args.rate, args.duration))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)

    lat = sorted(x * 1000 for x in latencies)
    p50, p90, p99 = pct(lat, 50), pct(lat, 90), pct(lat, 99)
    print(f"server: {url}  cpus: {os.cpu_count()}  python {sys.version.split()[0]}")
    print(f"load: {len(lat)} requests in {wall:.2f} s = {len(lat) / wall:.1f} req/s "
          f"(asked {args.rate:g}/s), errors {errors}")
    print(f"latency ms: p50 {p50:.2f}  p90 {p90:.2f}  p99 {p99:.2f}  max {lat[-1]:.2f}  "
          f"mean {statistics.fmean(lat):.2f}")
    if server_ms:
        srv = sorted(server_ms)
        print(f"  of which inside the server (Server-Timing) ms: p50 {pct(srv, 50):.2f}  "
              f"p99 {pct(srv, 99):.2f}  max {srv[-1]:.2f}")
    try:
        load1 = os.getloadavg()[0]
        print(f"  machine load average (1 min) after the run: {load1:.2f}")
    except OSError:
        pass
    stages = server_side_breakdown()
    total = sum(stages.values())
    print("server-side ms/request (in-process): " +
          ", ".join(f"{k} {v:.2f}" for k, v in stages.items()) + f" = {total:.2f}")
    ok = p99 < TARGET_P99_MS and errors == 0
    print(f"target p99 < {TARGET_P99_MS:g} ms at {args.rate:g} req/s: {'PASS' if ok else 'MISS'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
