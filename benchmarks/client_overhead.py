"""How much does the hook slow a training loop? Bare loop against instrumented loop, same run.

Each trial runs the same loop of STEPS steps (a small numpy matmul per step, about a typical
optimizer step of a tiny model) three ways, in alternating order:
  bare        no greenaudit at all;
  offline     inside greenaudit.run with no service: measured and spooled to disk;
  service     inside greenaudit.run against `greenaudit serve` (SQLite) in another process.
Every step logs two metrics. Reports the median per-step time of each, the ratio to bare, the
median cost of one run.log call, and the start and finish latency of a run.

Usage: .venv/bin/python benchmarks/client_overhead.py [--steps 20000] [--trials 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

import greenaudit
from greenaudit.client.measure import warm_up_in_background
from greenaudit.settings import Settings

ADMIN = "bench-admin-token-" + "b" * 20


def workload(steps: int, run: greenaudit.Run | None, matrix: np.ndarray) -> float:
    started = time.perf_counter()
    acc = matrix
    for step in range(steps):
        acc = np.tanh(matrix @ acc)
        if run is not None:
            run.log(step=step, loss=float(acc[0, 0]), accuracy=0.5)
    return (time.perf_counter() - started) / steps


def start_service(home: Path, port: int) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "GREENAUDIT_ADMIN_TOKEN": ADMIN, "GREENAUDIT_HOME": str(home)}
    exe = str(Path(sys.executable).with_name("greenaudit"))
    server = subprocess.Popen(
        [exe, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    key = httpx.post(
        f"{url}/api/v1/projects",
        json={"name": "bench"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    ).json()["write_key"]["key"]
    return server, key


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--port", type=int, default=8791)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="greenaudit-bench-"))
    server, key = start_service(home / "service", args.port)
    offline = Settings(home=home / "offline", url=None, api_key=None, measure_interval_s=1.0)
    online = Settings(
        home=home / "online",
        url=f"http://127.0.0.1:{args.port}",
        api_key=key,
        measure_interval_s=1.0,
    )
    warm_up_in_background(offline).wait(30)
    matrix = np.random.default_rng(0).standard_normal((32, 32)) / 8

    per_step: dict[str, list[float]] = {"bare": [], "offline": [], "service": []}
    start_s: list[float] = []
    finish_s: dict[str, list[float]] = {"offline": [], "service": []}
    delivered = []
    try:
        for trial in range(args.trials):
            order = ["bare", "offline", "service"]
            order = order[trial % 3 :] + order[: trial % 3]
            for mode in order:
                if mode == "bare":
                    per_step["bare"].append(workload(args.steps, None, matrix))
                    continue
                settings = offline if mode == "offline" else online
                t0 = time.perf_counter()
                run = greenaudit.run(model="bench", settings=settings)
                run.__enter__()
                start_s.append(time.perf_counter() - t0)
                per_step[mode].append(workload(args.steps, run, matrix))
                t1 = time.perf_counter()
                run.__exit__(None, None, None)
                finish_s[mode].append(time.perf_counter() - t1)
                if mode == "service":
                    delivered.append(run.result.delivered if run.result else False)
    finally:
        server.terminate()
        server.wait(10)

    # One run.log call on its own (two metrics), from a tight loop.
    with greenaudit.run(model="bench", settings=offline) as run:
        calls = 100_000
        t0 = time.perf_counter()
        for step in range(calls):
            run.log(step=step, loss=0.1, accuracy=0.5)
        log_call_us = (time.perf_counter() - t0) / calls * 1e6

    bare = statistics.median(per_step["bare"])
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.system()}"
    )
    print(f"steps per trial: {args.steps}, trials: {args.trials}, 2 metrics logged per step")
    print("| loop | median µs/step | ratio to bare |")
    print("| --- | --- | --- |")
    for mode, values in per_step.items():
        median = statistics.median(values)
        print(f"| {mode} | {median * 1e6:.1f} | {median / bare:.3f} |")
    print(f"run.log (2 metrics), median of one tight loop: {log_call_us:.2f} µs per call")
    print(f"run start (enter), median: {statistics.median(start_s) * 1e3:.2f} ms")
    for mode, values in finish_s.items():
        print(f"run finish ({mode}), median: {statistics.median(values) * 1e3:.0f} ms")
    print(f"service runs delivered: {sum(delivered)}/{len(delivered)}")


if __name__ == "__main__":
    main()
