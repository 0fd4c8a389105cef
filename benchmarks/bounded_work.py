"""Bounded work per request (issue 16, findings 9 and 10), on a run of 1,000,000 samples and points.

Seeds the rows straight into the database (COPY on PostgreSQL, executemany on SQLite; the
set-up is not what is measured), starts `greenaudit serve` as a separate process, and measures
from this process:

- PostgreSQL: 8 concurrent ``/runs/{id}/forecast`` requests, then 8 concurrent
  ``/runs/{id}/returns?max_points=10000``, each request's time; the server's peak RSS (its
  process tree, sampled every 50 ms); ``/healthz`` polled every 100 ms meanwhile.
- SQLite: 1,000 budgets (10 projects of 100) over the same running run; a writer posting a
  1-sample batch every 50 ms into another project while the alert pass runs every second;
  the writer's p50/p99/max.

With ``--compare REF`` the same measurements run a second time against the code at git ref
REF (checked out into a temporary worktree, same databases, same process layout), so the
before/after figures come from one run on one machine.

Usage: .venv/bin/python benchmarks/bounded_work.py [--samples 1000000] [--compare main]
Needs PostgreSQL at GREENAUDIT_TEST_POSTGRES_URL (default the local server, database test).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import psycopg
from common import SAMPLE_KEY_COLUMNS, fresh_database, libpq, wait_until_healthy

from greenaudit.api import blocks
from greenaudit.api.auth import hash_key, new_key
from greenaudit.api.db import make_engine
from greenaudit.api.migrate import upgrade
from greenaudit.settings import Settings

T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parent.parent
SAMPLE_COLUMNS = [
    *SAMPLE_KEY_COLUMNS,
    "cpu_kwh",
    "gpu_kwh",
    "cpu_method",
    "gpu_method",
    "gpu_count",
    "co2_kg",
    "step",
]
POINT_COLUMNS = ["run_id", "name", "step", "value", "time"]


@dataclass
class Seeded:
    """What the measurements need: keys, and the long run's id."""

    read_key: str
    write_key: str
    run_id: str
    other_write_keys: list[str] = field(default_factory=list)


def _stamp(sqlite_format: bool, seconds: float) -> str:
    at = T0 + timedelta(seconds=seconds)
    # SQLAlchemy keeps SQLite timestamps as naive UTC text; PostgreSQL takes ISO with offset.
    return at.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite_format else at.isoformat()


def _uid(sqlite_format: bool, value: uuid.UUID) -> str:
    return value.hex if sqlite_format else str(value)


def _project(rows: list[tuple[str, list[object]]], sqlite_format: bool, name: str) -> tuple:
    """A project with a read and a write key; returns (project id, read key, write key)."""
    project_id = uuid.uuid4()
    now = _stamp(sqlite_format, 0)
    rows.append(("project (id, name, created_at)", [_uid(sqlite_format, project_id), name, now]))
    keys = []
    for scope in ("read", "write"):
        key, prefix = new_key()
        keys.append(key)
        rows.append(
            (
                "api_key (id, project_id, prefix, secret_hash, scope, created_at)",
                [
                    _uid(sqlite_format, uuid.uuid4()),
                    _uid(sqlite_format, project_id),
                    prefix,
                    hash_key(key),
                    scope,
                    now,
                ],
            )
        )
    return project_id, keys[0], keys[1]


def seed(url: str, samples: int, points: int, budget_projects: int) -> Seeded:
    """One running run of ``samples`` samples and ``points`` points, and projects of budgets.

    The run logs one step a second; a sample covers one second and sees one new step. Its
    energy is 10 Wh a step with 20% noise, so its forecast has something to estimate. Each
    budget project holds 100 budgets (the cap), over a copy of the run's totals only.
    """
    lite = url.startswith("sqlite")
    rng = np.random.default_rng(16)
    small: list[tuple[str, list[object]]] = []
    project_id, read_key, write_key = _project(small, lite, "bounded")
    run_id = uuid.uuid4()
    start = _stamp(lite, 0)
    small.append(
        (
            "run (id, project_id, name, kind, status, primary_metric, world_size, hardware, "
            "carbon_intensity_g_per_kwh, carbon_intensity_source, pue, meta, started_at, "
            "created_at, last_seen_at, total_steps, lost_items)",
            [
                _uid(lite, run_id),
                _uid(lite, project_id),
                "long-run",
                "train",
                "running",
                "accuracy",
                1,
                "{}",
                50.0,
                "bench",
                1.0,
                "{}",
                start,
                start,
                _stamp(lite, samples),
                2 * max(samples, points),
                0,
            ],
        )
    )
    others = []
    for p in range(budget_projects):
        other_id, _, other_write = _project(small, lite, f"budgets-{p}")
        others.append(other_write)
        for g in range(25):
            for period in ("all", "day", "week", "month"):
                small.append(
                    (
                        "budget (id, project_id, group_name, period, limit_kwh, created_at, "
                        "updated_at)",
                        [_uid(lite, uuid.uuid4()), _uid(lite, other_id), f"g{g}", period, 1e9]
                        + [start, start],
                    )
                )
    # The run's own project watches it with a budget a period, its whole spending over each.
    for period in ("all", "day", "week", "month"):
        small.append(
            (
                "budget (id, project_id, group_name, period, limit_kwh, created_at, updated_at)",
                [_uid(lite, uuid.uuid4()), _uid(lite, project_id), "", period, 1.0, start, start],
            )
        )
    kwh = 0.01 * (1 + 0.2 * rng.standard_normal(samples)).clip(0.1)
    curve = 0.95 - 0.5 * np.exp(-np.arange(1, points + 1) / (points / 6))
    values = curve + rng.normal(0, 0.002, points)
    rid = _uid(lite, run_id)
    sample_rows = (
        (
            rid,
            0,
            seq,
            _stamp(lite, seq),
            _stamp(lite, seq + 1),
            1.0,
            float(kwh[seq]) * 0.2,
            float(kwh[seq]) * 0.8,
            "rapl",
            "nvml-counter",
            1,
            float(kwh[seq]) * 0.05,
            seq + 1,
        )
        for seq in range(samples)
    )
    point_rows = (
        (rid, "accuracy", step + 1, float(values[step]), _stamp(lite, step + 0.5))
        for step in range(points)
    )
    totals = (
        "INSERT INTO run_energy_totals (run_id, cpu_kwh, gpu_kwh, ram_kwh, co2_kg, gpu_seconds, "
        "samples) SELECT run_id, SUM(cpu_kwh), SUM(gpu_kwh), 0, SUM(co2_kg), SUM(duration_s), "
        "COUNT(*) FROM energy_sample GROUP BY run_id"
    )
    stats = (
        "INSERT INTO run_metric_stats (run_id, name, min_value, max_value, first_step, "
        "last_step, points) SELECT run_id, name, MIN(value), MAX(value), MIN(step), MAX(step), "
        "COUNT(*) FROM metric_point GROUP BY run_id, name"
    )
    if lite:
        with sqlite3.connect(url.split("///", 1)[1]) as connection:
            for table, values_ in small:
                marks = ", ".join("?" * len(values_))
                connection.execute(f"INSERT INTO {table} VALUES ({marks})", values_)
            marks = ", ".join("?" * len(SAMPLE_COLUMNS))
            connection.executemany(
                f"INSERT INTO energy_sample ({', '.join(SAMPLE_COLUMNS)}) VALUES ({marks})",
                sample_rows,
            )
            connection.executemany(
                f"INSERT INTO metric_point ({', '.join(POINT_COLUMNS)}) VALUES (?, ?, ?, ?, ?)",
                point_rows,
            )
            connection.execute(totals)
            connection.execute(stats)
            if connection.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'run_energy_block'"
            ).fetchone():
                for statement in blocks.rebuild_sql():
                    connection.execute(statement)
            connection.execute("ANALYZE")
    else:
        with psycopg.connect(libpq(url)) as connection:
            for table, values_ in small:
                marks = ", ".join(["%s"] * len(values_))
                connection.execute(f"INSERT INTO {table} VALUES ({marks})", values_)
            for table, columns, rows in (
                ("energy_sample", SAMPLE_COLUMNS, sample_rows),
                ("metric_point", POINT_COLUMNS, point_rows),
            ):
                with (
                    connection.cursor() as cursor,
                    cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
                ):
                    for row in rows:
                        copy.write_row(row)
            connection.execute(totals)
            connection.execute(stats)
            if connection.execute("SELECT to_regclass('run_energy_block')").fetchone() != (None,):
                for statement in blocks.rebuild_sql():
                    connection.execute(statement)
            connection.commit()
            connection.autocommit = True
            connection.execute("VACUUM ANALYZE")
    return Seeded(read_key, write_key, str(run_id), others)


LAUNCHER = """
import importlib.util, sys
from pathlib import Path
root = Path(sys.argv.pop(1))
sys.path.insert(0, str(root))
# The code under test, whatever the installed greenaudit points at (see package-dir).
for name, folder in (("greenaudit", "greenaudit"), ("greenaudit.api", "api"),
                     ("greenaudit.migrations", "migrations"),
                     ("greenaudit.dashboards", "dashboards")):
    spec = importlib.util.spec_from_file_location(
        name, root / folder / "__init__.py", submodule_search_locations=[str(root / folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    if "." in name:
        setattr(sys.modules["greenaudit"], name.split(".")[1], module)
    spec.loader.exec_module(module)
from greenaudit.cli import app
app(prog_name="greenaudit")
"""


@contextmanager
def code_at(ref: str | None) -> Iterator[Path]:
    """The source tree of git ``ref`` in a temporary folder, or this checkout for None."""
    if ref is None:
        yield ROOT
        return
    with tempfile.TemporaryDirectory(prefix="greenaudit-ref-") as folder:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        yield Path(folder)


@contextmanager
def serving_code(root: Path, url: str, port: int, env: dict[str, str]) -> Iterator[int]:
    """`greenaudit serve` of the code under ``root``, one worker; yields its pid."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as launcher:
        launcher.write(LAUNCHER)
    command = [sys.executable, launcher.name, str(root), "serve", "--port", str(port)]
    command += ["--database-url", url]
    log = tempfile.TemporaryFile()
    server = subprocess.Popen(
        command,
        env={**os.environ, "GREENAUDIT_ADMIN_TOKEN": secrets.token_urlsafe(32), **env},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", server, log, tries=1200)
        yield server.pid
    finally:
        server.terminate()
        server.wait(30)
        os.unlink(launcher.name)


class Watch:
    """Peak RSS of a process tree and /healthz latencies, sampled while a block runs."""

    def __init__(self, pid: int, base: str) -> None:
        self.pid, self.base = pid, base
        self.peak_mb = 0.0
        self.health_ms: list[float] = []
        self._stop = threading.Event()

    def _rss(self) -> None:
        process = psutil.Process(self.pid)
        while not self._stop.wait(0.05):
            try:
                tree = [process, *process.children(recursive=True)]
                self.peak_mb = max(self.peak_mb, sum(p.memory_info().rss for p in tree) / 2**20)
            except psutil.Error:
                pass

    def _health(self) -> None:
        with httpx.Client(base_url=self.base, timeout=60) as client:
            while not self._stop.wait(0.1):
                started = time.perf_counter()
                client.get("/healthz")
                self.health_ms.append((time.perf_counter() - started) * 1000)

    def __enter__(self) -> Watch:
        self._threads = [threading.Thread(target=t) for t in (self._rss, self._health)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def concurrent_gets(base: str, key: str, path: str, params: dict[str, Any], n: int) -> list[float]:
    """``n`` GETs released together; each one's seconds."""
    barrier = threading.Barrier(n)

    def one(_: int) -> float:
        with httpx.Client(base_url=base, timeout=600) as client:
            barrier.wait()
            started = time.perf_counter()
            response = client.get(path, params=params, headers={"Authorization": f"Bearer {key}"})
            response.raise_for_status()
            return time.perf_counter() - started

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def measure_postgres(root: Path, url: str, seeded: Seeded, port: int) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    figures: dict[str, Any] = {}
    with serving_code(root, url, port, {"GREENAUDIT_ALERT_INTERVAL_S": "3600"}) as pid:
        run = f"/api/v1/runs/{seeded.run_id}"
        for label, path, params in (
            ("forecast", f"{run}/forecast", {}),
            ("returns (default 2,000 points)", f"{run}/returns", {}),
            ("returns (max_points 10,000)", f"{run}/returns", {"max_points": 10_000}),
        ):
            with Watch(pid, base) as watch:
                times = concurrent_gets(base, seeded.read_key, path, params, 8)
            figures[label] = {
                "median_s": statistics.median(times),
                "max_s": max(times),
                "peak_rss_mb": watch.peak_mb,
                "healthz_max_ms": max(watch.health_ms, default=float("nan")),
                "healthz_p50_ms": statistics.median(watch.health_ms or [float("nan")]),
            }
    return figures


def measure_sqlite(
    root: Path, url: str, seeded: Seeded, port: int, seconds: float, interval: str
) -> dict[str, Any]:
    """A 1-sample writer into another project every 50 ms, with alert passes every ``interval``."""
    base = f"http://127.0.0.1:{port}"
    with serving_code(root, url, port, {"GREENAUDIT_ALERT_INTERVAL_S": interval}):
        headers = {"Authorization": f"Bearer {seeded.other_write_keys[0]}"}
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            run_id = str(uuid.uuid4())
            client.post(
                "/api/v1/runs",
                json={
                    "id": run_id,
                    "kind": "train",
                    "carbon_intensity_g_per_kwh": 50.0,
                    "carbon_intensity_source": "bench",
                    "started_at": T0.isoformat(),
                },
            ).raise_for_status()
            times = []
            stop = time.monotonic() + seconds
            seq = 0
            while time.monotonic() < stop:
                body = {
                    "samples": [
                        {
                            "rank": 0,
                            "seq": seq,
                            "t_start": (T0 + timedelta(seconds=seq)).isoformat(),
                            "t_end": (T0 + timedelta(seconds=seq + 1)).isoformat(),
                            "cpu_kwh": 1e-6,
                            "cpu_method": "rapl",
                        }
                    ]
                }
                started = time.perf_counter()
                client.post(f"/api/v1/runs/{run_id}/energy", json=body).raise_for_status()
                times.append(time.perf_counter() - started)
                seq += 1
                time.sleep(0.05)
    ordered = sorted(times)
    return {
        "batches": len(times),
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
        "max_ms": 1000 * ordered[-1],
    }


def upgrade_to(url: str, revision: str) -> None:
    engine = make_engine(Settings(database_url=url))
    upgrade(engine, revision)
    engine.dispose()


def forecast_drift(url: str, run_id: str) -> str:
    """The 1M-sample run's forecast from its samples (the old read) and from its blocks."""
    from sqlalchemy.orm import Session

    from greenaudit.api.budgets import service
    from greenaudit.api.models import Run

    engine = make_engine(Settings(database_url=url))
    with Session(engine) as session:
        run = session.get(Run, uuid.UUID(run_id))
        assert run is not None
        reduced, _ = service.forecast_of_run(session, run)
        limit = service.MAX_FORECAST_ROWS
        service.MAX_FORECAST_ROWS = 10**9
        try:
            full, _ = service.forecast_of_run(session, run)
        finally:
            service.MAX_FORECAST_ROWS = limit
    engine.dispose()
    assert reduced is not None and full is not None
    return (
        f"forecast from {full.boundaries} samples: {full.forecast_kwh:.2f} kWh "
        f"[{full.low_kwh:.2f}, {full.high_kwh:.2f}]; from {reduced.boundaries} blocks: "
        f"{reduced.forecast_kwh:.2f} kWh [{reduced.low_kwh:.2f}, {reduced.high_kwh:.2f}] "
        f"({100 * (reduced.forecast_kwh / full.forecast_kwh - 1):+.3f}%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--compare", default=None, help="git ref of the code before, e.g. main")
    parser.add_argument(
        "--before-revision",
        default="0007",
        help="schema revision the code before runs on (0007 before the energy blocks, head after)",
    )
    parser.add_argument("--writer-seconds", type=float, default=20.0)
    parser.add_argument("--alert-interval", default="1", help="seconds between alert passes")
    parser.add_argument("--port", type=int, default=8793)
    parser.add_argument("--skip", choices=["postgresql", "sqlite"], action="append", default=[])
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; PostgreSQL on the same machine; one server worker"
    )
    versions = [("before", args.compare), ("after", None)] if args.compare else [("after", None)]
    # The code before is at revision 0007: seed there, measure it, then migrate (0008 fills
    # the energy blocks from the samples) and measure the code after on the same rows.
    first_revision = args.before_revision if args.compare else "head"

    if "postgresql" not in args.skip:
        with fresh_database() as url:
            upgrade_to(url, first_revision)
            started = time.perf_counter()
            seeded = seed(url, args.samples, args.samples, 0)
            took = time.perf_counter() - started
            print(f"postgresql: seeded {args.samples} samples and points in {took:.0f} s")
            for label, ref in versions:
                if label == "after" and args.compare:
                    started = time.perf_counter()
                    upgrade_to(url, "head")
                    took = time.perf_counter() - started
                    print(f"migration 0008 on {args.samples} samples: {took:.1f} s")
                with code_at(ref) as root:
                    figures = measure_postgres(root, url, seeded, args.port)
                print(f"postgresql {label}: {json.dumps(figures)}")
            print(forecast_drift(url, seeded.run_id))

    if "sqlite" not in args.skip:
        with tempfile.TemporaryDirectory(prefix="greenaudit-bench-") as folder:
            url = f"sqlite:///{folder}/bench.db"
            upgrade_to(url, first_revision)
            started = time.perf_counter()
            seeded = seed(url, args.samples, 1000, 10)
            took = time.perf_counter() - started
            print(f"sqlite: seeded {args.samples} samples and 1,004 budgets in {took:.0f} s")
            for label, ref in versions:
                if label == "after" and args.compare:
                    upgrade_to(url, "head")
                with code_at(ref) as root:
                    figures = measure_sqlite(
                        root, url, seeded, args.port + 1, args.writer_seconds, args.alert_interval
                    )
                print(f"sqlite {label}: {json.dumps(figures)}")


if __name__ == "__main__":
    main()
