"""Analytics through the API on PostgreSQL: 100,000 runs, and one run of 1,000,000 points.

Seeds a fresh PostgreSQL database with COPY (the set-up is not what is measured), starts
`greenaudit serve` on it as a separate process, and times, from this process, over HTTP:
  GET /api/v1/analytics/diminishing-returns   over 100,000 runs
  GET /api/v1/analytics/nofade                over 100,000 runs
  GET /api/v1/runs/{id}/returns               over one run with 1,000,000 metric points
Each request is repeated and the median reported. EXPLAIN ANALYZE of the SQL behind each is
printed, to show which indexes carry it.

Usage: .venv/bin/python benchmarks/analytics_queries.py [--runs 100000] [--points 1000000]
Needs PostgreSQL at GREENAUDIT_TEST_POSTGRES_URL (default the local server, database test).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import numpy as np
import psycopg
from common import SAMPLE_KEY_COLUMNS, finish_copied_seed, fresh_database, libpq, serving
from sqlalchemy.dialects import postgresql

from greenaudit.api.analytics import repository
from greenaudit.api.auth import hash_key, new_key
from greenaudit.api.db import make_engine
from greenaudit.api.migrate import upgrade
from greenaudit.api.runs.schemas import RunFilters
from greenaudit.settings import Settings

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
ENERGY_SAMPLE_COLUMNS = [
    *SAMPLE_KEY_COLUMNS,
    "cpu_kwh",
    "cpu_method",
    "gpu_count",
    "co2_kg",
]


def copy_rows(
    connection: psycopg.Connection, table: str, columns: list[str], rows: io.StringIO
) -> None:
    rows.seek(0)
    with (
        connection.cursor() as cursor,
        cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        while chunk := rows.read(1 << 20):
            copy.write(chunk)


def seed(url: str, runs: int, points: int) -> tuple[str, str]:
    """Fill the database; returns (a read key, the big run's id)."""
    rng = np.random.default_rng(0)
    project_id = uuid.uuid4()
    key, prefix = new_key()
    with psycopg.connect(libpq(url)) as connection:
        connection.execute(
            "INSERT INTO project (id, name, created_at) VALUES (%s, 'bench', now())",
            (project_id,),
        )
        connection.execute(
            "INSERT INTO api_key (id, project_id, prefix, secret_hash, scope, created_at) "
            "VALUES (%s, %s, %s, %s, 'read', now())",
            (uuid.uuid4(), project_id, prefix, hash_key(key)),
        )
        connection.execute(
            "INSERT INTO dataset_profile (id, project_id, name, version, num_classes, "
            "entropy_bits, created_at) VALUES (%s, %s, 'bench-data', 'default', 10, %s, now())",
            (uuid.uuid4(), project_id, float(np.log2(10))),
        )
        run_ids = [uuid.uuid4() for _ in range(runs + 1)]
        kwh = 10 ** rng.uniform(-3, 2, runs + 1)
        accuracy = np.clip(
            1 - 0.3 * (kwh / 1e-3) ** -0.15 * 10 ** rng.normal(0, 0.03, runs + 1), 0, 0.9999
        )
        run_rows, energy_rows, point_rows = io.StringIO(), io.StringIO(), io.StringIO()
        start = T0.isoformat()
        end = (T0 + timedelta(minutes=10)).isoformat()
        for i, run_id in enumerate(run_ids):
            run_rows.write(
                f"{run_id}\t{project_id}\trun-{i}\ttrain\tfinished\tmodel-{i % 50}\tbench-data"
                f"\tclassification\taccuracy\t1\t{{}}\t50\tbench\t1.0\t{{}}\t{start}\t{start}"
                f"\t{kwh[i] * 1e15:.6g}\t{(i % 50 + 1) * 1_000_000}\n"
            )
            if i < runs:
                energy_rows.write(
                    f"{run_id}\t0\t0\t{start}\t{end}\t600\t{kwh[i]:.9g}\tcodecarbon"
                    f"\t0\t{kwh[i] * 0.05:.9g}\n"
                )
                for step in range(3):
                    value = accuracy[i] - 0.01 * (2 - step)
                    point_rows.write(f"{run_id}\taccuracy\t{step}\t{value:.6f}\t{start}\n")
        copy_rows(
            connection,
            "run",
            [
                "id",
                "project_id",
                "name",
                "kind",
                "status",
                "model",
                "dataset",
                "task",
                "primary_metric",
                "world_size",
                "hardware",
                "carbon_intensity_g_per_kwh",
                "carbon_intensity_source",
                "pue",
                "meta",
                "started_at",
                "created_at",
                "flops",
                "model_params",
            ],
            run_rows,
        )
        copy_rows(connection, "energy_sample", ENERGY_SAMPLE_COLUMNS, energy_rows)
        copy_rows(
            connection, "metric_point", ["run_id", "name", "step", "value", "time"], point_rows
        )

        # The long run: one point a second for `points` seconds, an energy sample every 100 s.
        big = run_ids[-1]
        big_points, big_energy = io.StringIO(), io.StringIO()
        curve = 0.9 - 0.4 * np.exp(-np.arange(points) / (points / 8))
        noise = rng.normal(0, 0.002, points)
        for step in range(points):
            at = (T0 + timedelta(seconds=step + 1)).isoformat()
            big_points.write(f"{big}\taccuracy\t{step}\t{curve[step] + noise[step]:.6f}\t{at}\n")
        for seq in range(points // 100):
            s = (T0 + timedelta(seconds=seq * 100)).isoformat()
            e = (T0 + timedelta(seconds=(seq + 1) * 100)).isoformat()
            big_energy.write(f"{big}\t0\t{seq}\t{s}\t{e}\t100\t0.002\tcodecarbon\t0\t0.0001\n")
        copy_rows(
            connection, "metric_point", ["run_id", "name", "step", "value", "time"], big_points
        )
        copy_rows(connection, "energy_sample", ENERGY_SAMPLE_COLUMNS, big_energy)
        finish_copied_seed(connection)
    return key, str(big)


def explain(url: str, project_id_key: str, big: str) -> list[str]:
    """EXPLAIN ANALYZE of the SQL behind each endpoint, shortened to its plan nodes."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    out = []
    with psycopg.connect(libpq(url)) as connection:
        project = connection.execute("SELECT id FROM project WHERE name = 'bench'").fetchone()
        assert project is not None
        big_id = uuid.UUID(big)
        fields = ["energy_kwh", "dataset", "dataset_version", "task", "model"]
        queries = {
            "per-run best score and costs (diminishing-returns, nofade)": repository.run_rows(
                None, [project[0]], RunFilters(), "accuracy", True, fields
            ),
            "returns: range of the metric": repository.metric_stats(big_id, "accuracy"),
            "returns: the plateau point": repository.first_point_past(
                big_id, "accuracy", 0.89, True
            ),
            "returns: an even sample of 2000 steps": repository.sampled_points(
                big_id, "accuracy", 0, 500
            ),
            "returns: energy intervals": repository.sample_buckets(big_id, 1),
        }
        for label, query in queries.items():
            sql = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
            sql = sql.replace("%%", "%")  # the psycopg dialect escapes % for its paramstyle
            plan = connection.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}").fetchall()
            out.append(f"-- {label}")
            out += [row[0] for row in plan]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--port", type=int, default=8792)
    parser.add_argument("--keep", action="store_true", help="keep the database, print its URL")
    args = parser.parse_args()

    with fresh_database(keep=args.keep) as url:
        engine = make_engine(Settings(database_url=url))
        upgrade(engine)
        engine.dispose()
        started = time.perf_counter()
        key, big = seed(url, args.runs, args.points)
        print(
            f"seeded {args.runs} runs and a run of {args.points} points in "
            f"{time.perf_counter() - started:.0f} s"
        )
        headers = {"Authorization": f"Bearer {key}"}
        requests = {
            f"diminishing-returns, {args.runs} runs (x=energy_kwh, target 0.95)": (
                "/api/v1/analytics/diminishing-returns",
                {"x": "energy_kwh", "metric": "accuracy", "target": 0.95},
            ),
            f"nofade, {args.runs} runs (axis=energy_kwh)": (
                "/api/v1/analytics/nofade",
                {"axis": "energy_kwh", "metric": "accuracy"},
            ),
            f"returns, one run of {args.points} points": (
                f"/api/v1/runs/{big}/returns",
                {"metric": "accuracy"},
            ),
        }
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}; PostgreSQL on the same machine; "
            f"{args.repeat} requests each, after one warm-up"
        )
        print("| request | median s | min s | max s | answer |")
        print("| --- | --- | --- | --- | --- |")
        with (
            serving(args.port, url) as base,
            httpx.Client(base_url=base, headers=headers, timeout=120) as http,
        ):
            for label, (path, params) in requests.items():
                http.get(path, params=params).raise_for_status()  # warm-up
                times, body = [], {}
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    response = http.get(path, params=params)
                    times.append(time.perf_counter() - t0)
                    response.raise_for_status()
                    body = response.json()
                if "runs_used" in body:
                    summary = f"{body['runs_used']} runs, best fit {body['best_fit']}"
                elif "groups" in body:
                    summary = f"{body['runs_total']} runs, status {body['groups'][0]['status']}"
                else:
                    summary = (
                        f"{body['points_total']} points, plateau at step {body['plateau']['step']}"
                    )
                print(
                    f"| {label} | {statistics.median(times):.3f} | {min(times):.3f} | "
                    f"{max(times):.3f} | {summary} |"
                )
        print()
        print("\n".join(explain(url, key, big)))


if __name__ == "__main__":
    main()
