"""How well ``forecast_energy`` predicts a run's total energy, on real measured runs (issue 8).

Records real training runs, instrumented by ``greenaudit.run`` with no service (each run stays
in its spool folder), then replays each run's energy samples in time order: at every sample
end where the run is between 20% and 100% of its planned steps, the forecast made from the
samples so far is compared with the run's final measured total.

Runs recorded:
  demo   the demo's own workload, ``greenaudit.demo.train_width_sweep``: scikit-learn MLPs of
         widths 8 to 512 on digits, ``--epochs`` epochs each, one step per epoch (the demo
         sets ``total_steps`` to the epochs);
  cnn    a longer CPU training: a small PyTorch CNN on digits, one step per batch, the loss
         logged every 10 steps and the test accuracy after every epoch, ``--cnn-epochs``
         epochs (about 90 s on a 2-core VM).

Criterion: from 20% progress on, the forecast is within ±15% of the final value, and the final
value lies inside the interval for at least 90% of the checkpoints.

Usage:
  .venv/bin/python benchmarks/forecast_accuracy.py [--save runs.json]   record, then replay
  .venv/bin/python benchmarks/forecast_accuracy.py --replay runs.json   replay a recording
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from greenaudit.analytics.curves import InsufficientData
from greenaudit.analytics.forecast import forecast_energy

START_PROGRESS = 0.2
TOLERANCE = 0.15
COVERAGE_TARGET = 0.90


def _read_spool(path: Path) -> dict[str, Any]:
    """A run's facts and energy samples from its spool file (JSON lines of ops)."""
    from greenaudit.client.spool import RunSpool

    spool = RunSpool(path.parent, path.stem)
    total_steps = None
    name = None
    samples = []
    methods: dict[str, str] = {}
    for op in spool.read():
        if op.op == "create_run":
            name = op.body.get("name") or op.body.get("model")
        elif op.op == "update_run" and "total_steps" in op.body:
            total_steps = op.body["total_steps"]
        elif op.op == "energy":
            body = op.body
            kwh = sum(body.get(f"{c}_kwh") or 0.0 for c in ("cpu", "gpu", "ram"))
            for c in ("cpu", "gpu", "ram"):
                if f"{c}_method" in body:
                    methods[c] = body[f"{c}_method"]
            samples.append(
                {
                    "t_start": body["t_start"],
                    "t_end": body["t_end"],
                    "rank": body["rank"],
                    "step": body.get("step"),
                    "kwh": kwh,
                }
            )
    samples.sort(key=lambda s: s["t_end"])
    return {"name": name, "total_steps": total_steps, "methods": methods, "samples": samples}


def _record_demo(settings: Any, epochs: int) -> list[dict[str, Any]]:
    from greenaudit.demo import train_width_sweep

    runs = []
    for result in train_width_sweep(settings, epochs, project="forecast-bench"):
        run = _read_spool(Path(str(result.spool_path)))
        run.update(workload="demo", duration_s=result.duration_s)
        runs.append(run)
    return runs


def _record_cnn(settings: Any, epochs: int) -> dict[str, Any]:
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import greenaudit

    torch.manual_seed(0)
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    xs = torch.tensor(x_train, dtype=torch.float32).reshape(-1, 1, 8, 8)
    ys = torch.tensor(y_train)
    xt = torch.tensor(x_test, dtype=torch.float32).reshape(-1, 1, 8, 8)
    yt = torch.tensor(y_test)
    batch = 32
    batches = math.ceil(len(xs) / batch)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64 * 16, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    )
    optimizer = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
    with greenaudit.run(
        "forecast-bench", "cnn-digits", "digits", "classification", name="cnn", settings=settings
    ) as run:
        run.set(total_steps=epochs * batches, dataset_size=len(xs))
        step = 0
        for _ in range(epochs):
            net.train()
            order = torch.randperm(len(xs))
            for b in range(batches):
                index = order[b * batch : (b + 1) * batch]
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(net(xs[index]), ys[index])
                loss.backward()
                optimizer.step()
                step += 1
                if step % 10 == 0:
                    run.log(step=step, loss=loss.item())
            net.eval()
            with torch.no_grad():
                accuracy = float((net(xt).argmax(1) == yt).float().mean())
            run.log(step=step, accuracy=accuracy, loss=loss.item())
    assert run.result is not None
    recorded = _read_spool(Path(str(run.result.spool_path)))
    recorded.update(workload="cnn", duration_s=run.result.duration_s)
    return recorded


def record(epochs: int, cnn_epochs: int, interval_s: float) -> dict[str, Any]:
    """Train the runs, measured and spooled offline; returns the recording."""
    from greenaudit.client.measure import warm_up_in_background
    from greenaudit.settings import Settings

    os.environ.pop("GREENAUDIT_URL", None)
    home = tempfile.mkdtemp(prefix="greenaudit-forecast-")
    settings = Settings(
        home=Path(home), url=None, api_key=None, measure_interval_s=interval_s, flush_timeout_s=30
    )
    # Hardware detection takes seconds once per process; measure each run from its start.
    warm_up_in_background(settings).wait(60)
    print(f"recording in {home}: demo ({epochs} epochs per width), cnn ({cnn_epochs} epochs)")
    runs = _record_demo(settings, epochs)
    runs.append(_record_cnn(settings, cnn_epochs))
    return {
        "recorded_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "measure_interval_s": interval_s,
        "runs": runs,
    }


def replay(run: dict[str, Any]) -> list[dict[str, float]]:
    """One row per checkpoint: progress, forecast, interval, and the final total."""
    samples = run["samples"]
    steps = np.array([math.nan if s["step"] is None else s["step"] for s in samples], float)
    kwh = np.array([s["kwh"] for s in samples], float)
    final = float(kwh.sum())
    total = int(run["total_steps"])
    rows = []
    for i in range(len(samples)):
        try:
            f = forecast_energy(steps[: i + 1], kwh[: i + 1], total)
        except InsufficientData:
            continue
        if not START_PROGRESS <= f.step / total < 1:
            continue
        rows.append(
            {
                "progress": f.step / total,
                "forecast": f.forecast_kwh,
                "low": f.low_kwh,
                "high": f.high_kwh,
                "final": final,
                "error": (f.forecast_kwh - final) / final,
                "covered": float(f.low_kwh <= final <= f.high_kwh),
                "boundaries": f.boundaries,
            }
        )
    return rows


def _summary(label: str, rows: list[dict[str, float]], extra: str = "") -> str:
    if not rows:
        return f"| {label} | 0 | - | - | - | - | - | {extra} |"
    errors = [abs(r["error"]) for r in rows]
    within = sum(e <= TOLERANCE for e in errors) / len(rows)
    covered = sum(r["covered"] for r in rows) / len(rows)
    bias = statistics.median(r["error"] for r in rows)
    return (
        f"| {label} | {len(rows)} | {100 * statistics.median(errors):.2f} | "
        f"{100 * max(errors):.2f} | {100 * bias:+.2f} | {100 * within:.1f} | "
        f"{100 * covered:.1f} | {extra} |"
    )


def main() -> int:
    """Record (or load) runs, replay them, print the table; exit 1 if the criterion fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replay", type=Path, help="replay this recording instead of training")
    parser.add_argument("--save", type=Path, help="save the recording to this JSON file")
    parser.add_argument("--epochs", type=int, default=60, help="demo epochs per width")
    parser.add_argument("--cnn-epochs", type=int, default=450, help="CNN epochs")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between samples")
    args = parser.parse_args()

    if args.replay:
        recording = json.loads(args.replay.read_text())
    else:
        recording = record(args.epochs, args.cnn_epochs, args.interval)
        if args.save:
            args.save.write_text(json.dumps(recording))
            print(f"saved to {args.save}")

    print(
        f"\nrecorded {recording['recorded_at']} on {recording['machine']}, samples every "
        f"{recording['measure_interval_s']} s; checkpoints from {START_PROGRESS:.0%} progress"
    )
    print(
        "\n| run | checkpoints | median abs % error | max abs % error | median signed % error "
        "| % within ±15% | % interval covers final | samples, steps, s, kWh, methods |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    every: list[dict[str, float]] = []
    by_workload: dict[str, list[dict[str, float]]] = {}
    for run in recording["runs"]:
        rows = replay(run)
        every += rows
        by_workload.setdefault(run["workload"], []).extend(rows)
        methods = ",".join(f"{k}={v}" for k, v in sorted(run["methods"].items()))
        extra = (
            f"{len(run['samples'])}, {run['total_steps']}, {run['duration_s']:.1f}, "
            f"{sum(s['kwh'] for s in run['samples']):.3g}, {methods}"
        )
        print(_summary(f"{run['workload']} {run['name']}", rows, extra))
    for workload, rows in by_workload.items():
        print(_summary(f"**all {workload}**", rows))
    print(_summary("**all**", every))

    bands = ((0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0))
    print("\n| progress | checkpoints | median abs % error | max abs % error | % covered |")
    print("| --- | --- | --- | --- | --- |")
    for low, high in bands:
        band = [r for r in every if low <= r["progress"] < high]
        if band:
            errors = [abs(r["error"]) for r in band]
            print(
                f"| {low:.0%}-{high:.0%} | {len(band)} | {100 * statistics.median(errors):.2f} | "
                f"{100 * max(errors):.2f} | "
                f"{100 * sum(r['covered'] for r in band) / len(band):.1f} |"
            )

    within = sum(abs(r["error"]) <= TOLERANCE for r in every) / max(len(every), 1)
    covered = sum(r["covered"] for r in every) / max(len(every), 1)
    met = within == 1.0 and covered >= COVERAGE_TARGET
    print(
        f"\ncriterion: every forecast within ±15%: {within:.1%} of {len(every)}; "
        f"interval covers final: {covered:.1%} (target ≥ 90%) -> {'MET' if met else 'NOT MET'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
