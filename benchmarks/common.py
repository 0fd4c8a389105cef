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

import httpx
import psycopg
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "GREENAUDIT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def libpq(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as psycopg's connection string."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


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
        for _ in range(600):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(10)
