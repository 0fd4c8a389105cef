"""What the benchmarks share: a fresh PostgreSQL database and a `greenaudit serve` process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx
import psycopg
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "GREENAUDIT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# The energy_sample columns every seeded row fills (a sample's identity and its interval, s);
# each benchmark adds the measurement columns it seeds.
SAMPLE_KEY_COLUMNS = ["run_id", "rank", "seq", "t_start", "t_end", "duration_s"]


def libpq(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as psycopg's connection string."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def finish_copied_seed(connection: psycopg.Connection[Any]) -> None:
    """Commit rows COPY put in, with the running totals ingestion would have kept, analysed.

    COPY bypasses ingestion, so the per-run energy totals and metric ranges are filled here
    from the rows themselves, as ingestion would have added them up.
    """
    connection.execute(
        "INSERT INTO run_energy_totals (run_id, cpu_kwh, gpu_kwh, ram_kwh, co2_kg, "
        "gpu_seconds, samples) SELECT run_id, COALESCE(SUM(cpu_kwh), 0), "
        "COALESCE(SUM(gpu_kwh), 0), COALESCE(SUM(ram_kwh), 0), SUM(co2_kg), "
        "SUM(duration_s * gpu_count), COUNT(*) FROM energy_sample GROUP BY run_id"
    )
    connection.execute(
        "INSERT INTO run_metric_stats (run_id, name, min_value, max_value, first_step, "
        "last_step, points) SELECT run_id, name, MIN(value), MAX(value), MIN(step), "
        "MAX(step), COUNT(*) FROM metric_point GROUP BY run_id, name"
    )
    connection.commit()
    connection.autocommit = True
    connection.execute("VACUUM ANALYZE")


@contextmanager
def fresh_database(keep: bool = False) -> Iterator[str]:
    """A new, empty PostgreSQL database for one benchmark; dropped afterwards unless ``keep``."""
    name = f"greenaudit_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq(POSTGRES_URL), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        if keep:
            print(f"kept: {url}")
        else:
            with psycopg.connect(libpq(POSTGRES_URL), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_until_healthy(
    base: str, server: subprocess.Popen[bytes], log: IO[bytes] | None = None, tries: int = 600
) -> None:
    """Poll ``base``/healthz every 0.1 s, ``tries`` times at most, until it answers 200.

    A server that exits first raises, with the tail of ``log`` (its stderr) when there is one.
    """
    for _ in range(tries):
        if server.poll() is not None:
            detail = ""
            if log is not None:
                log.seek(0)
                detail = log.read().decode()[-3000:]
            raise RuntimeError(f"the server exited: {detail}")
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)


@contextmanager
def serving(
    port: int,
    database_url: str | None = None,
    env: dict[str, str] | None = None,
    workers: int = 1,
) -> Iterator[str]:
    """`greenaudit serve` in its own process until the block ends; yields its base URL."""
    command = [str(Path(sys.executable).with_name("greenaudit")), "serve", "--port", str(port)]
    command += ["--workers", str(workers)]
    if database_url:
        command += ["--database-url", database_url]
    server = subprocess.Popen(
        command,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, server)
        yield base
    finally:
        server.terminate()
        server.wait(10)
