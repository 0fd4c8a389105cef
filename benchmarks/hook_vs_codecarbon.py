"""The hook on a long loop, beside CodeCarbon: bare, greenaudit, CodeCarbon, same run.

A CPU-bound loop of ~4 ms steps runs for SECONDS (default 30) three ways, alternating:
  bare        no instrumentation;
  greenaudit  inside ``greenaudit.run`` (offline: measured and spooled), logging 2 metrics a step;
  codecarbon  inside CodeCarbon's ``OfflineEmissionsTracker`` (no output files), which has no
              per-step logging: its cost is its measuring alone.
Reports each mode's median wall time and its ratio to bare. Also the start-up latency of each
tracker in a fresh process (hardware not yet detected): from calling a decorated function to
its first line for ``@greenaudit.track``, and ``tracker.start()`` for CodeCarbon.

Usage: .venv/bin/python benchmarks/hook_vs_codecarbon.py [--seconds 30] [--trials 3]
"""

from __future__ import annotations

import os

# One BLAS thread, as in client_overhead.py: the loop is the Python side of a training job.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import greenaudit  # noqa: E402
from greenaudit.client.measure import warm_up_in_background  # noqa: E402
from greenaudit.settings import Settings  # noqa: E402

STARTUP = r"""
import json, sys, time, tempfile
which = sys.argv[1]
if which == "greenaudit":
    import greenaudit
    from greenaudit.settings import Settings
    settings = Settings(home=tempfile.mkdtemp(), url=None, api_key=None)
    first_line = {}
    @greenaudit.track(settings=settings)
    def train():
        first_line["t"] = time.perf_counter()
    called = time.perf_counter()
    train()
    print(json.dumps(first_line["t"] - called))
else:
    import logging
    from codecarbon import OfflineEmissionsTracker
    tracker = OfflineEmissionsTracker(country_iso_code="FRA", output_methods=[],
                                      log_level="error", allow_multiple_runs=True)
    called = time.perf_counter()
    tracker.start()
    started = time.perf_counter() - called
    tracker.stop()
    print(json.dumps(started))
"""


def steps_for(seconds: float, matrix: np.ndarray) -> int:
    acc, started, steps = matrix, time.perf_counter(), 0
    while time.perf_counter() - started < 2.0:
        acc = np.tanh(matrix @ acc)
        steps += 1
    return int(steps * seconds / (time.perf_counter() - started))


def work(steps: int, matrix: np.ndarray, run: greenaudit.Run | None) -> float:
    acc, started = matrix, time.perf_counter()
    for step in range(steps):
        acc = np.tanh(matrix @ acc)
        if run is not None:
            run.log(step=step, loss=float(acc[0, 0]), accuracy=0.5)
    return time.perf_counter() - started


def startup(which: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", STARTUP, which],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()

    from codecarbon import OfflineEmissionsTracker

    settings = Settings(
        home=Path(tempfile.mkdtemp()), url=None, api_key=None, measure_interval_s=10.0
    )
    warm_up_in_background(settings).wait(30)
    matrix = np.random.default_rng(0).standard_normal((448, 448)) / 21
    steps = steps_for(args.seconds, matrix)
    times: dict[str, list[float]] = {"bare": [], "greenaudit": [], "codecarbon": []}
    for trial in range(args.trials):
        order = ["bare", "greenaudit", "codecarbon"]
        for mode in order[trial % 3 :] + order[: trial % 3]:
            if mode == "bare":
                times[mode].append(work(steps, matrix, None))
            elif mode == "greenaudit":
                with greenaudit.run(settings=settings) as run:
                    times[mode].append(work(steps, matrix, run))
            else:
                tracker = OfflineEmissionsTracker(
                    country_iso_code="FRA",
                    output_methods=[],
                    log_level="error",
                    allow_multiple_runs=True,
                )
                tracker.start()
                times[mode].append(work(steps, matrix, None))
                tracker.stop()
    starts = {
        which: statistics.median(startup(which) for _ in range(3))
        for which in ("greenaudit", "codecarbon")
    }

    bare = statistics.median(times["bare"])
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {steps} steps of ~{bare / steps * 1e3:.1f} ms "
        f"(~{args.seconds:.0f} s), {args.trials} trials, medians; 1 BLAS thread"
    )
    print("| loop | median s | ratio to bare | start-up in a fresh process |")
    print("| --- | --- | --- | --- |")
    print(f"| bare | {bare:.2f} | 1.000 | - |")
    for mode in ("greenaudit", "codecarbon"):
        median = statistics.median(times[mode])
        print(f"| {mode} | {median:.2f} | {median / bare:.4f} | {starts[mode] * 1e3:.1f} ms |")


if __name__ == "__main__":
    main()
