"""Ingest throughput and latency of a real `greenaudit serve`, on SQLite and PostgreSQL.

For each database it starts the server, then a separate load-generator process
(`ingest_load.py`) that posts energy batches of 1, 100 and 1000 samples from several senders,
each into its own run, for a fixed time; 10% of the batches are sent twice. It checks that every
run stored exactly the samples sent, once, and reports stored samples per second and the p50,
p95 and p99 latency of one batch. CodeCarbon's `/emissions` (one row per request) is driven the
same way. On PostgreSQL the 1000-sample load runs on one and on two workers, and a COPY of the
same rows straight into `energy_sample` gives the database's own ceiling.

    .venv/bin/python benchmarks/ingest_throughput.py [--duration 10] [--senders 4]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from common import SAMPLE_KEY_COLUMNS, fresh_database, libpq, serving
from ingest_load import T0, energy_body
from sqlalchemy import text

HERE = Path(__file__).parent
ENERGY_COLUMNS = [
    *SAMPLE_KEY_COLUMNS,
    "cpu_kwh",
    "gpu_kwh",
    "ram_kwh",
    "cpu_w",
    "gpu_w",
    "ram_w",
    "cpu_method",
    "gpu_method",
    "ram_method",
    "gpu_count",
    "gpu_util_pct",
    "co2_kg",
    "step",
]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@contextmanager
def database(kind: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A fresh database URL and the server environment to go with it."""
    admin = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as home:
        env = {"GREENAUDIT_ADMIN_TOKEN": admin, "GREENAUDIT_HOME": home}
        if kind == "sqlite":
            yield f"sqlite:///{home}/greenaudit.db", env
        else:
            with fresh_database() as url:
                yield url, env


def write_key(base: str, env: dict[str, str]) -> str:
    response = httpx.post(
        f"{base}/api/v1/projects",
        json={"name": f"bench-{uuid.uuid4().hex[:6]}"},
        headers={"Authorization": f"Bearer {env['GREENAUDIT_ADMIN_TOKEN']}"},
    )
    response.raise_for_status()
    return str(response.json()["write_key"]["key"])


def stored_samples(base: str, key: str, run_id: str) -> int:
    response = httpx.get(f"{base}/api/v1/runs/{run_id}", headers={"Authorization": f"Bearer {key}"})
    response.raise_for_status()
    return int(response.json()["totals"]["energy_samples"])


def load(
    base: str, key: str, kind: str, batch_size: int, args: argparse.Namespace
) -> dict[str, Any]:
    command = [
        sys.executable,
        str(HERE / "ingest_load.py"),
        "--url",
        base,
        "--key",
        key,
        "--kind",
        kind,
        "--batch-size",
        str(batch_size),
        "--senders",
        str(args.senders),
        "--duration",
        str(args.duration),
        "--duplicate-share",
        str(args.duplicate_share),
    ]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    report: dict[str, Any] = json.loads(result.stdout)
    stored = {run_id: stored_samples(base, key, run_id) for run_id in report["runs"]}
    sent = report["runs"]
    report["exact"] = stored == sent and not report["errors"]
    report["stored"] = sum(stored.values())
    latencies = report.pop("latencies_ms")
    report["requests"] = len(latencies)
    report["p50_ms"] = percentile(latencies, 0.50)
    report["p95_ms"] = percentile(latencies, 0.95)
    report["p99_ms"] = percentile(latencies, 0.99)
    report["mean_ms"] = statistics.fmean(latencies)
    report["rows_per_s"] = report["stored"] / report["elapsed_s"]
    report["requests_per_s"] = report["requests"] / report["elapsed_s"]
    if kind == "energy" and report["exact"]:
        # The service's own count of re-sent samples must be the re-sends, no more, no less.
        report["exact"] = report["duplicates"] == report["sent_rows"] - report["unique_rows"]
    return report


def energy_rows(run_id: uuid.UUID, count: int) -> Iterator[tuple[Any, ...]]:
    """The rows the service stores for the load generator's samples."""
    for seq in range(count):
        t_start = T0 + timedelta(seconds=seq)
        yield (
            run_id, 0, seq, t_start, t_start + timedelta(seconds=1), 1.0,
            1.25e-5, 8.1e-5, 8.0e-7, 45.0, 291.6, 2.88,
            "rapl", "nvml-counter", "codecarbon", 1, 97.0, 3.7e-5, seq * 10,
        )  # fmt: skip


def copy_ceiling(url: str, rows: int) -> float:
    """Rows per second of COPY into energy_sample, with its unique index, in one transaction."""
    run_id = uuid.uuid4()
    with psycopg.connect(libpq(url)) as connection:
        project = connection.execute("SELECT id FROM project LIMIT 1").fetchone()
        assert project is not None
        connection.execute(
            "INSERT INTO run (id, project_id, name, kind, status, world_size, hardware, "
            "carbon_intensity_g_per_kwh, carbon_intensity_source, pue, meta, started_at, "
            "created_at) "
            "VALUES (%s, %s, 'copy', 'train', 'finished', 1, '{}', 400, 'bench', 1, '{}', now(), "
            "now())",
            (run_id, project[0]),
        )
        connection.commit()
        prepared = list(energy_rows(run_id, rows))
        began = time.perf_counter()
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY energy_sample ({', '.join(ENERGY_COLUMNS)}) FROM STDIN") as copy,
        ):
            for row in prepared:
                copy.write_row(row)
        connection.commit()
        return rows / (time.perf_counter() - began)


def sqlite_ceiling(path: str, rows: int) -> float:
    """Rows per second of one executemany transaction straight into SQLite's energy_sample."""
    run_id = uuid.uuid4()
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA synchronous=NORMAL")
    project = connection.execute("SELECT id FROM project LIMIT 1").fetchone()
    connection.execute(
        "INSERT INTO run (id, project_id, name, kind, status, world_size, hardware, "
        "carbon_intensity_g_per_kwh, carbon_intensity_source, pue, meta, started_at, "
        "created_at) VALUES (?, ?, 'copy', 'train', 'finished', 1, '{}', 400, 'bench', 1, '{}', "
        "'2026-12-01 10:00:00.000000', '2026-12-01 10:00:00.000000')",
        (run_id.hex, project[0]),
    )
    prepared = [
        (row[0].hex, *row[1:3], row[3].isoformat(" "), row[4].isoformat(" "), *row[5:])
        for row in energy_rows(run_id, rows)
    ]
    placeholders = ", ".join("?" for _ in ENERGY_COLUMNS)
    began = time.perf_counter()
    connection.execute("BEGIN IMMEDIATE")
    connection.executemany(
        f"INSERT INTO energy_sample ({', '.join(ENERGY_COLUMNS)}) VALUES ({placeholders})",
        prepared,
    )
    connection.execute("COMMIT")
    elapsed = time.perf_counter() - began
    connection.close()
    return rows / elapsed


def validation_against_write(url: str, repeats: int = 15) -> tuple[float, float]:
    """Median ms to parse and validate a 1000-sample body, and to store it (with commit)."""
    from greenaudit.api.auth import Principal, Scope
    from greenaudit.api.db import make_engine, make_session_factory
    from greenaudit.api.runs import service
    from greenaudit.schemas import EnergyBatch, RunCreate
    from greenaudit.settings import Settings

    engine = make_engine(Settings(database_url=url))
    sessions = make_session_factory(engine, writer=True)
    with sessions() as session, session.begin():
        project_id = session.execute(text("SELECT id FROM project LIMIT 1")).scalar_one()
    caller = Principal(
        project_id=uuid.UUID(str(project_id)), key_id=uuid.uuid4(), scope=Scope.write
    )
    run = RunCreate(
        id=uuid.uuid4(),
        started_at=T0,
        carbon_intensity_g_per_kwh=400.0,
        carbon_intensity_source="benchmark",
    )
    with sessions() as session, session.begin():
        service.create_run(session, caller, run)
    parse, store = [], []
    for index in range(repeats):
        body = energy_body(index * 1000, 1000)
        began = time.perf_counter()
        batch = EnergyBatch.model_validate_json(body)
        parse.append(time.perf_counter() - began)
        began = time.perf_counter()
        with sessions() as session, session.begin():
            service.ingest_energy(session, caller, run.id, batch)
        store.append(time.perf_counter() - began)
    engine.dispose()
    return statistics.median(parse) * 1000, statistics.median(store) * 1000


def row_of(db: str, workers: int, label: str, report: dict[str, Any]) -> str:
    return (
        f"| {db} | {workers} | {label} | {report['rows_per_s']:,.0f} | "
        f"{report['requests_per_s']:,.0f} | {report['p50_ms']:.1f} | {report['p95_ms']:.1f} | "
        f"{report['p99_ms']:.1f} | {report['requests']:,} | "
        f"{report['stored']:,} of {report['unique_rows']:,} ({report['sent_rows']:,} sent) | "
        f"{'yes' if report['exact'] else 'NO ' + json.dumps(report['errors'])} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load")
    parser.add_argument(
        "--senders",
        type=int,
        default=3,
        help="sender threads per load; more only queue behind each other on two cores",
    )
    parser.add_argument("--duplicate-share", type=float, default=0.1)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--batch-sizes", default="1,100,1000")
    parser.add_argument("--workers", default="1,2", help="PostgreSQL worker counts")
    parser.add_argument("--ceiling-rows", type=int, default=200_000)
    parser.add_argument("--port", type=int, default=8311)
    args = parser.parse_args()
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]

    lines = [
        "| database | workers | load | stored samples/s | requests/s | p50 ms | p95 ms | "
        "p99 ms | requests | stored exactly once | no errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    ceilings: dict[str, float] = {}
    split: dict[str, tuple[float, float]] = {}
    best: dict[str, float] = {}
    for db in args.databases.split(","):
        worker_counts = [int(w) for w in args.workers.split(",")] if db == "postgresql" else [1]
        with database(db) as (url, env):
            for workers in worker_counts:
                with serving(args.port, url, env, workers=workers) as base:
                    key = write_key(base, env)
                    sizes = batch_sizes if workers == 1 else [max(batch_sizes)]
                    for size in sizes:
                        report = load(base, key, "energy", size, args)
                        best[db] = max(best.get(db, 0.0), report["rows_per_s"])
                        lines.append(row_of(db, workers, f"energy, batch {size}", report))
                        print(lines[-1], file=sys.stderr)
                    report = load(base, key, "emissions", 1, args)
                    lines.append(row_of(db, workers, "CodeCarbon /emissions", report))
                    print(lines[-1], file=sys.stderr)
            split[db] = validation_against_write(url)
            if db == "postgresql":
                ceilings[db] = copy_ceiling(url, args.ceiling_rows)
            else:
                ceilings[db] = sqlite_ceiling(url.removeprefix("sqlite:///"), args.ceiling_rows)
    print("\n".join(lines))
    print()
    for db, rate in ceilings.items():
        how = "COPY" if db == "postgresql" else "executemany in one transaction"
        print(
            f"- {db} ceiling, {how} of {args.ceiling_rows:,} rows: {rate:,.0f} rows/s; "
            f"the service's best ({best.get(db, 0):,.0f} samples/s) is "
            f"{best.get(db, 0) / rate:.0%} of it"
        )
    for db, (parse_ms, store_ms) in split.items():
        print(
            f"- {db}, one 1000-sample batch in process: parse and validate {parse_ms:.1f} ms, "
            f"store with totals and commit {store_ms:.1f} ms (medians)"
        )
    print(f"- machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
