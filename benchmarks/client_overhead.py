"""How much does the hook slow a training loop? Bare loop against instrumented loop, same run.

Each trial runs the same loop of STEPS steps (a small numpy matmul per step, about a typical
optimizer step of a tiny model) four ways, in alternating order:
  bare        no greenaudit at all;
  offline     inside greenaudit.run with no service: measured and spooled to disk;
  service     inside greenaudit.run against `greenaudit serve` (SQLite) in another process;
  policy      as service, with on_budget="warn" under a project budget it does not reach: the
              budget and forecast are asked for every second, and every step is a boundary.
Every step logs two metrics. Reports the median per-step time of each, the ratio to bare, the
median cost of one run.log call, and the start and finish latency of a run.

Usage: .venv/bin/python benchmarks/client_overhead.py [--trials 5]
"""

from __future__ import annotations

import os

# One BLAS thread: the loop stands for the Python side of a training job, and on this 2-core
# machine a multi-threaded matmul would measure core contention with the co-located server
# rather than the hook. Must be set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from common import serving  # noqa: E402

import greenaudit  # noqa: E402
from greenaudit.client.measure import warm_up_in_background  # noqa: E402
from greenaudit.settings import Settings  # noqa: E402

ADMIN = "bench-admin-token-" + "b" * 20


def workload(steps: int, run: greenaudit.Run | None, matrix: np.ndarray) -> float:
    started = time.perf_counter()
    acc = matrix
    for step in range(steps):
        acc = np.tanh(matrix @ acc)
        if run is not None:
            run.log(step=step, loss=float(acc[0, 0]), accuracy=0.5)
    return (time.perf_counter() - started) / steps


def write_key(url: str) -> str:
    """A new project's write key; the project has a budget that no trial comes near."""
    key = str(
        httpx.post(
            f"{url}/api/v1/projects",
            json={"name": "bench"},
            headers={"Authorization": f"Bearer {ADMIN}"},
        ).json()["write_key"]["key"]
    )
    httpx.post(
        f"{url}/api/v1/budgets",
        json={"limit_kwh": 1000.0},
        headers={"Authorization": f"Bearer {key}"},
    ).raise_for_status()
    return key


def measure(
    steps: int, trials: int, matrix: np.ndarray, offline: Settings, online: Settings
) -> dict[str, object]:
    """Alternate bare, offline and service loops; medians per step and at run edges."""
    modes = ["bare", "offline", "service", "policy"]
    per_step: dict[str, list[float]] = {mode: [] for mode in modes}
    start_s: list[float] = []
    finish_s: dict[str, list[float]] = {mode: [] for mode in modes[1:]}
    delivered = []
    for trial in range(trials):
        order = modes[trial % 4 :] + modes[: trial % 4]
        for mode in order:
            if mode == "bare":
                per_step["bare"].append(workload(steps, None, matrix))
                continue
            settings = offline if mode == "offline" else online
            policy: dict[str, Any] = {"on_budget": "warn"} if mode == "policy" else {}
            t0 = time.perf_counter()
            run = greenaudit.run(model="bench", settings=settings, **policy)
            run.__enter__()
            start_s.append(time.perf_counter() - t0)
            per_step[mode].append(workload(steps, run, matrix))
            t1 = time.perf_counter()
            run.__exit__(None, None, None)
            finish_s[mode].append(time.perf_counter() - t1)
            if mode != "offline":
                delivered.append(bool(run.result and run.result.delivered))
    return {
        "per_step": {mode: statistics.median(v) for mode, v in per_step.items()},
        "start": statistics.median(start_s),
        "finish": {mode: statistics.median(v) for mode, v in finish_s.items()},
        "delivered": f"{sum(delivered)}/{len(delivered)}",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=7)
    parser.add_argument("--port", type=int, default=8791)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="greenaudit-bench-"))
    offline = Settings(home=home / "offline", url=None, api_key=None, measure_interval_s=1.0)
    warm_up_in_background(offline).wait(30)
    rng = np.random.default_rng(0)
    # (label, matrix size, steps): a tiny step where logging is the whole cost, and a step of
    # a few milliseconds, still shorter than most real optimizer steps.
    workloads = [("tiny step", 32, 20_000), ("~3 ms step", 448, 1_000)]
    results = {}
    service_env = {"GREENAUDIT_ADMIN_TOKEN": ADMIN, "GREENAUDIT_HOME": str(home / "service")}
    with serving(args.port, env=service_env) as url:
        online = Settings(
            home=home / "online",
            url=url,
            api_key=write_key(url),
            measure_interval_s=1.0,
            budget_check_interval_s=1.0,
        )
        for label, size, steps in workloads:
            matrix = rng.standard_normal((size, size)) / np.sqrt(size)
            results[label] = (steps, measure(steps, args.trials, matrix, offline, online))

    with greenaudit.run(model="bench", settings=offline) as run:
        calls = 100_000
        t0 = time.perf_counter()
        for step in range(calls):
            run.log(step=step, loss=0.1, accuracy=0.5)
        log_call_us = (time.perf_counter() - t0) / calls * 1e6

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.system()}; trials: {args.trials}; "
        "2 metrics logged per step; energy sampled every 1 s; budget checked every 1 s; "
        "1 BLAS thread"
    )
    print(
        "| workload | steps | bare µs/step | offline µs/step (ratio) | service µs/step (ratio) "
        "| policy µs/step (ratio) | run start ms | finish offline ms | finish service ms "
        "| delivered |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, (steps, r) in results.items():
        ps, fin = r["per_step"], r["finish"]  # type: ignore[index]
        bare = ps["bare"]
        looped = " | ".join(
            f"{ps[mode] * 1e6:.1f} ({ps[mode] / bare:.3f})"
            for mode in ("offline", "service", "policy")
        )
        print(
            f"| {label} | {steps} | {bare * 1e6:.1f} | {looped} | {r['start'] * 1e3:.2f} | "
            f"{fin['offline'] * 1e3:.0f} | {fin['service'] * 1e3:.0f} | {r['delivered']} |"
        )
    print(f"run.log with 2 metrics, tight loop of {calls}: {log_call_us:.2f} µs per call")


if __name__ == "__main__":
    main()
