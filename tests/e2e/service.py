"""Running `greenaudit serve` as a real process for end-to-end tests, and talking to it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..api.helpers import run_body
from ..conftest import free_port, fresh_postgres_database
from .test_serve_track_query import ADMIN_TOKEN, GREENAUDIT


@contextmanager
def database(backend: str, tmp_path: Path, label: str) -> Iterator[str]:
    """An empty database of ``backend``: a SQLite file under ``tmp_path``, or a fresh PostgreSQL
    database that is dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / f'{label}.db'}"
    else:
        with fresh_postgres_database(label) as url:
            yield url


def start_service(
    database_url: str, port: int, log: Path, workers: int, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """``greenaudit serve`` in a session of its own (so its workers can be killed as a group),
    once it answers /healthz."""
    with open(log, "a") as out:
        server = subprocess.Popen(
            [
                *GREENAUDIT,
                "serve",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--database-url",
                database_url,
            ],
            env={
                **os.environ,
                "GREENAUDIT_ADMIN_TOKEN": ADMIN_TOKEN,
                "GREENAUDIT_HOME": str(log.parent / "service-home"),
                **(env or {}),
            },
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            stop_service(server)
            pytest.fail(f"greenaudit serve did not come up:\n{log.read_text()[-5000:]}")
        time.sleep(0.2)


def stop_service(server: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to the service's whole process group and wait for the service to end."""
    if server.poll() is None:
        try:
            os.killpg(server.pid, sig)
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        except ProcessLookupError:
            server.wait(10)
    # Workers left behind by a parent that was killed first go with the group as well.
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def make_project(url: str, name: str) -> tuple[str, dict[str, str]]:
    """A new project: its write key, and headers that carry its read key."""
    created = httpx.post(
        f"{url}/api/v1/projects",
        json={"name": name},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    return body["write_key"]["key"], {"Authorization": f"Bearer {body['read_key']['key']}"}


def create_run(url: str, key: str, name: str) -> str:
    body = run_body(id=str(uuid.uuid4()), name=name)
    created = httpx.post(
        f"{url}/api/v1/runs", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert created.status_code == 201, created.text
    return str(body["id"])


def stream_configs(url: str, key: str, own_runs: int, shared_ranks: int) -> list[dict[str, Any]]:
    """Where each streaming client writes: ``own_runs`` runs of their own (rank 0), then
    ``shared_ranks`` clients as ranks 0, 1, ... of one shared run."""
    shared = create_run(url, key, "shared")
    own = [{"run_id": create_run(url, key, f"own-{i}"), "rank": 0} for i in range(own_runs)]
    return own + [{"run_id": shared, "rank": rank} for rank in range(shared_ranks)]


@dataclass
class Load:
    """A served database and the streaming clients started against it."""

    database_url: str
    port: int
    url: str
    log: Path
    workers: int
    #: The service now running; a test that restarts it puts the new process here.
    server: subprocess.Popen
    key: str = ""
    read: dict[str, str] = field(default_factory=dict)
    configs: list[dict[str, Any]] = field(default_factory=list)
    clients: list[subprocess.Popen] = field(default_factory=list)


@contextmanager
def served_load(
    backend: str, tmp_path: Path, label: str, own_runs: int, shared_ranks: int
) -> Iterator[Load]:
    """``greenaudit serve`` on an empty ``backend`` database (one worker on SQLite, two on
    PostgreSQL, its log in ``tmp_path``), project ``label`` and the clients' stream configs.

    On the way out the clients still running are killed and the service is stopped.
    """
    workers = 1 if backend == "sqlite" else 2
    log = tmp_path / "serve.log"
    with database(backend, tmp_path, label) as database_url:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        load = Load(
            database_url, port, url, log, workers, start_service(database_url, port, log, workers)
        )
        try:
            load.key, load.read = make_project(url, label)
            load.configs = stream_configs(url, load.key, own_runs, shared_ranks)
            yield load
        finally:
            for client in load.clients:
                if client.poll() is None:
                    client.kill()
                    client.wait(10)
            stop_service(load.server)
