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
import io
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import numpy as np
import psycopg
from common import fresh_database, libpq

from greenaudit.api.auth import hash_key, new_key
from greenaudit.api.db import make_engine
from greenaudit.api.migrate import upgrade
from greenaudit.settings import Settings

T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parent.parent
SAMPLE_COLUMNS = [
    "run_id",
    "rank",
    "seq",
    "t_start",
    "t_end",
    "duration_s",
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
            connection.commit()
            connection.autocommit = True
            connection.execute("VACUUM ANALYZE")
    return Seeded(read_key, write_key, str(run_id), others)
