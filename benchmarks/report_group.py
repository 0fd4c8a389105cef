"""A group report (`greenaudit report GROUP`) of 2,000 and 4,000 runs: this code against b656996.

The service's answers are built once, as the service would send them (the wire models' own
JSON: pages of 500 runs, the group's totals, its NoFADE answer, the best run's returns curve and
creation cost), and answered through an in-process httpx transport, so what is timed is the
report's own work: validating the answers, building the tables and writing the Markdown. The
answers are the same for both implementations; each trial of the old one and of this one
alternate, and the Markdown they write is checked to be identical.

The old implementation is greenaudit/report.py at commit b656996 (before greenaudit/report/ was
a package), loaded from `git show` as a module of its own.

Usage: .venv/bin/python benchmarks/report_group.py [--runs 2000 4000] [--trials 3] [--no-old]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

from greenaudit import report as new_report

ROOT = Path(__file__).resolve().parents[1]
OLD_COMMIT = "b656996"
GROUP = "sweep-bench"
T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
GENERATED_AT = datetime(2026, 12, 2, tzinfo=timezone.utc)


def old_module() -> ModuleType:
    """greenaudit/report.py as it was at ``OLD_COMMIT``."""
    source = subprocess.run(
        ["git", "show", f"{OLD_COMMIT}:greenaudit/report.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "report_b656996.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("report_b656996", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_answer(i: int, project: str) -> dict[str, Any]:
    kwh = 0.001 * (i % 97 + 1)
    return {
        "id": str(uuid.UUID(int=i + 1)),
        "project_id": project,
        "name": f"trial-{i}",
        "kind": "search-trial",
        "status": "finished",
        "model": f"mlp-{i % 16}",
        "model_params": 1000 + i,
        "flops": 1e12 + i,
        "dataset": "digits",
        "dataset_version": None,
        "dataset_size": 1797,
        "task": "classification",
        "primary_metric": "accuracy",
        "parent_run_id": None,
        "group": GROUP,
        "node": "node-1",
        "world_size": 1,
        "hardware": {"rank": 0, "gpu_count": 1, "gpu_model": "H100"},
        "country_iso": "FRA",
        "carbon_intensity_g_per_kwh": 56.0,
        "carbon_intensity_source": "benchmark",
        "pue": 1.1,
        "samples_processed": None,
        "total_steps": None,
        "duration_s": 60.0 + i,
        "error": None,
        "lost_items": 0,
        "meta": {},
        "started_at": (T0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
        "ended_at": (T0 + timedelta(seconds=i + 60)).isoformat().replace("+00:00", "Z"),
        "totals": {
            "energy_kwh": kwh,
            "cpu_kwh": kwh / 4,
            "gpu_kwh": kwh / 2,
            "ram_kwh": kwh / 4,
            "co2_kg": kwh * 0.0616,
            "gpu_hours": 1 / 60,
            "energy_samples": 6,
            "methods": {"cpu": ["rapl"], "gpu": ["nvml-counter"], "ram": ["codecarbon"]},
            "j_per_sample": None,
        },
    }


def answers(n: int) -> dict[str, Any]:
    """The service's answers for a group of ``n`` runs, by path."""
    project = str(uuid.uuid4())
    runs = [run_answer(i, project) for i in range(n)]
    best = runs[n // 2]
    nofade_runs = [
        {
            "run_id": r["id"],
            "model": r["model"],
            "dataset": "digits",
            "task": "classification",
            "score": 0.5 + 0.4 * ((i * 7919) % n) / n,
            "cost": r["totals"]["co2_kg"],
            "entropy_bits": 3.32,
            "num_classes": 10,
            "rho": 0.6,
            "nofade": 0.3,
            "approximate": False,
            "reason": None,
            "published": False,
        }
        for i, r in enumerate(runs)
    ]
    nofade_runs[n // 2]["score"] = 0.95
    curve = [
        {"step": s, "value": 0.5 + 0.45 * s / 49, "energy_kwh": 0.001 * s, "co2_kg": 6e-5 * s}
        for s in range(50)
    ]
    return {
        "runs": runs,
        "/api/v1/totals": {
            "by": "project",
            "rows": [
                {
                    "key": "bench",
                    "runs": n,
                    "energy_kwh": 1.0,
                    "cpu_kwh": 0.25,
                    "gpu_kwh": 0.5,
                    "ram_kwh": 0.25,
                    "co2_kg": 0.06,
                    "gpu_hours": n / 60,
                    "duration_s": 60.0 * n,
                    "j_per_sample": None,
                }
            ],
        },
        "/api/v1/analytics/nofade": {
            "definition": "greenaudit-1",
            "note": "benchmark",
            "metric": "accuracy",
            "axis": {"name": "co2_kg", "unit": "kg CO2e"},
            "c0": 0.001,
            "c0_label": "1 g CO2e",
            "group_by": "dataset",
            "thresholds": {
                "saturated_sigma": 0.98,
                "saturated_beta": 0.01,
                "saturating_beta": 0.05,
            },
            "runs_total": n,
            "runs": sorted(nofade_runs, key=lambda r: -r["nofade"]),
            "groups": [],
        },
        f"/api/v1/runs/{best['id']}/returns": {
            "status": "ok",
            "reason": None,
            "definition": "greenaudit-1",
            "run_id": best["id"],
            "metric": "accuracy",
            "direction": "higher",
            "axis": {"name": "energy_kwh", "unit": "kWh"},
            "points_total": 50,
            "curve": curve,
            "total_energy_kwh": 0.049,
            "total_co2_kg": 0.00294,
            "point_size": 0.01,
            "fits": [],
            "best_fit": None,
            "best_fit_reason": "too few points",
            "marginal_gain": None,
            "plateau": {
                "step": 40,
                "value": 0.867,
                "energy_kwh": 0.04,
                "co2_kg": 0.0024,
                "epsilon": 0.00225,
                "energy_after_kwh": 0.009,
                "co2_after_kg": 0.00054,
                "share_of_energy_after": 0.1837,
                "gain_after": 0.083,
                "summary": "benchmark",
            },
        },
        f"/api/v1/runs/{best['id']}/cost": {
            "run_id": best["id"],
            "final": {"energy_kwh": 0.049, "co2_kg": 0.00294, "gpu_hours": 0.0167, "runs": 1},
            "creation": {"energy_kwh": 1.0, "co2_kg": 0.06, "gpu_hours": n / 60, "runs": n},
            "energy_ratio": 20.4,
            "co2_ratio": 20.4,
            "runs": [],
        },
    }


def transport(canned: dict[str, Any]) -> httpx.MockTransport:
    """The service's answers, encoded once: the service's own time is not the report's."""
    bodies = {path: json.dumps(body).encode() for path, body in canned.items() if path != "runs"}
    runs = canned["runs"]
    pages = {
        offset: json.dumps(
            {
                "items": runs[offset : offset + 500],
                "total": len(runs),
                "limit": 500,
                "offset": offset,
            }
        ).encode()
        for offset in range(0, len(runs) + 1, 500)
    }

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/v1/runs":
            assert request.url.params["limit"] == "500"
            return httpx.Response(200, content=pages[int(request.url.params["offset"])])
        return httpx.Response(200, content=bodies[path])

    return httpx.MockTransport(answer)


def timed(module: Any, mock: httpx.MockTransport) -> tuple[float, float, str]:
    """Wall and CPU seconds for gather + render_markdown of the group, and the Markdown.

    CPU seconds are this process's: on a machine shared with other work, wall time also counts
    the time the process waited for a core.
    """
    real_client = httpx.Client

    def client(*args: Any, **kwargs: Any) -> httpx.Client:
        return real_client(*args, transport=mock, **kwargs)

    httpx.Client = client  # type: ignore[misc,assignment]
    try:
        start, cpu = time.perf_counter(), time.process_time()
        gathered = module.gather(
            GROUP, url="http://bench", api_key="ga_bench", generated_at=GENERATED_AT
        )
        markdown: str = module.render_markdown(gathered)
        return time.perf_counter() - start, time.process_time() - cpu, markdown
    finally:
        httpx.Client = real_client  # type: ignore[misc]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[2000, 4000])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--no-old", action="store_true", help="time only this implementation")
    args = parser.parse_args()
    implementations: dict[str, Callable[[httpx.MockTransport], tuple[float, float, str]]] = {
        "new": lambda mock: timed(new_report, mock)
    }
    if not args.no_old:
        old = old_module()
        implementations = {"old": lambda mock: timed(old, mock), **implementations}
    print(f"{platform.machine()}, {platform.python_version()}, {args.trials} trials alternated")
    for n in args.runs:
        mock = transport(answers(n))
        wall: dict[str, list[float]] = {name: [] for name in implementations}
        cpu: dict[str, list[float]] = {name: [] for name in implementations}
        written: dict[str, str] = {}
        for _ in range(args.trials):
            for name, run in implementations.items():
                elapsed, used, written[name] = run(mock)
                wall[name].append(elapsed)
                cpu[name].append(used)
        if "old" in written:
            assert written["old"] == written["new"], "the two reports differ"
        for label, seconds in (("wall", wall), ("CPU", cpu)):
            medians = {name: statistics.median(values) for name, values in seconds.items()}
            line = ", ".join(
                f"{name} median {medians[name]:.3f} s ({', '.join(f'{s:.3f}' for s in v)})"
                for name, v in seconds.items()
            )
            ratio = f"; old/new {medians['old'] / medians['new']:.1f}x" if "old" in medians else ""
            print(f"{n} runs, {label}: {line}{ratio}")


if __name__ == "__main__":
    main()
