"""Shared fixtures: real SQLite and PostgreSQL databases, migrated by Alembic.

PostgreSQL must be reachable (GREENAUDIT_TEST_POSTGRES_URL, default the local server): the
suite fails rather than skips without it, so CI always exercises both databases.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from greenaudit.api.app import create_app
from greenaudit.api.db import make_engine
from greenaudit.api.migrate import upgrade
from greenaudit.api.models import Base
from greenaudit.settings import Settings

POSTGRES_URL = os.environ.get(
    "GREENAUDIT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
ADMIN_TOKEN = "test-admin-token-" + "x" * 24
BACKENDS = ["sqlite", "postgresql"]
#: Every table of the schema at head (the migrations make exactly these).
SCHEMA_TABLES = frozenset(
    {
        "project",
        "api_key",
        "run",
        "energy_sample",
        "metric_point",
        "dataset_profile",
        "run_energy_totals",
        "run_metric_stats",
        "run_energy_block",
        "run_method",
        "budget",
        "alert",
        "webhook",
    }
)


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _libpq_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def fresh_postgres_database(label: str) -> Iterator[str]:
    """Create an empty PostgreSQL database, yield its URL, drop it afterwards.

    Fails the test (never skips it) when PostgreSQL is unreachable.
    """
    name = f"greenaudit_{label}_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(_libpq_dsn(POSTGRES_URL), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(
            f"PostgreSQL is required for the data-layer tests and is unreachable at "
            f"{POSTGRES_URL}: {error}",
            pytrace=False,
        )
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_libpq_dsn(POSTGRES_URL), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (xdist workers get one each)."""
    with fresh_postgres_database("test") as url:
        yield url


@pytest.fixture(scope="session")
def _migrated_engines(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[dict[str, Engine]]:
    engines: dict[str, Engine] = {}

    def get(backend: str) -> Engine:
        if backend not in engines:
            if backend == "sqlite":
                url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'greenaudit.db'}"
            else:
                url = request.getfixturevalue("postgres_database")
            engine = make_engine(Settings(database_url=url))
            upgrade(engine)
            engines[backend] = engine
        return engines[backend]

    yield get  # type: ignore[misc]
    for engine in engines.values():
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, _migrated_engines: Any) -> Iterator[Engine]:
    """A migrated database on each backend, emptied after each test."""
    engine: Engine = _migrated_engines(request.param)
    yield engine
    with engine.begin() as connection:
        tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
        if engine.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
        else:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
def settings(engine: Engine) -> Settings:
    return Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        admin_token=ADMIN_TOKEN,
        # Tests run alert passes themselves, when they choose; the e2e tests run the service's.
        alert_interval_s=3600,
    )


@pytest.fixture
def client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine), raise_server_exceptions=False) as test_client:
        yield test_client


class ProjectKeys:
    def __init__(self, project: dict[str, Any], write: str, read: str) -> None:
        self.project = project
        self.id = project["id"]
        self.write = {"Authorization": f"Bearer {write}"}
        self.read = {"Authorization": f"Bearer {read}"}


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def create_project(client: TestClient, name: str) -> ProjectKeys:
    response = client.post("/api/v1/projects", json={"name": name}, headers=ADMIN)
    assert response.status_code == 201, response.text
    body = response.json()
    return ProjectKeys(body["project"], body["write_key"]["key"], body["read_key"]["key"])


@pytest.fixture
def project(client: TestClient) -> ProjectKeys:
    return create_project(client, "vision")


@pytest.fixture
def other_project(client: TestClient) -> ProjectKeys:
    return create_project(client, "speech")


class LiveServer:
    def __init__(self, url: str, keys: ProjectKeys) -> None:
        self.url = url
        self.keys = keys

    @property
    def write_key(self) -> str:
        return self.keys.write["Authorization"].split()[1]

    def client_settings(self, home: Path, measure_interval_s: float) -> Settings:
        """Client settings that send to this server with its write key, measured in France."""
        return Settings(
            home=home,
            url=self.url,
            api_key=self.write_key,
            measure_interval_s=measure_interval_s,
            country="FRA",
        )


def wait_until_healthy(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    """Wait for the service at ``url`` to answer /healthz; fail with its log if it exits first."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert server.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "greenaudit serve did not come up"
        time.sleep(0.1)


def keep_cpu_busy(seconds: float) -> None:
    """Work the CPU for ``seconds`` of wall time, so that a tracker has energy to measure."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sum(range(10_000))


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve ``app`` on a real socket in a thread; yields its base URL."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def live_server(settings: Settings, engine: Engine, client: TestClient) -> Iterator[LiveServer]:
    """The service on a real socket in this process, with a project ready."""
    keys = create_project(client, "live")
    with serving(create_app(settings, engine)) as url:
        yield LiveServer(url, keys)
