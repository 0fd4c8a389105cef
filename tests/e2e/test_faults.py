"""Faults with real processes: every sample and metric point arrives exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import free_port, fresh_postgres_database

ADMIN_TOKEN = "fault-admin-token-" + "f" * 24
SCRIPT = Path(__file__).with_name("long_training.py")
GREENAUDIT = [str(Path(sys.executable).with_name("greenaudit"))]

pytestmark = pytest.mark.e2e


@contextmanager
def serving(database_url: str, port: int, log: Path, **env: str) -> Iterator[subprocess.Popen]:
    environ = {**os.environ, "GREENAUDIT_ADMIN_TOKEN": ADMIN_TOKEN, **env}
    with open(log, "a") as out:
        server = subprocess.Popen(
            [*GREENAUDIT, "serve", "--port", str(port), "--database-url", database_url],
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "greenaudit serve did not come up"
            time.sleep(0.1)
        yield server
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(15)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with ExitStack() as stack:
        if request.param == "sqlite":
            yield f"sqlite:///{tmp_path / 'faults.db'}"
        else:
            yield stack.enter_context(fresh_postgres_database("faults"))


def make_project(url: str) -> tuple[str, dict[str, str]]:
    body = httpx.post(
        f"{url}/api/v1/projects",
        json={"name": "faults"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ).json()
    return body["write_key"]["key"], {"Authorization": f"Bearer {body['read_key']['key']}"}


def client_env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {
        **os.environ,
        "GREENAUDIT_HOME": str(tmp_path / "client"),
        "GREENAUDIT_MEASURE_INTERVAL_S": "0.2",
        "GREENAUDIT_COUNTRY": "FRA",
        **values,
    }


def stored(url: str, run_id: str, read: dict[str, str]) -> tuple[dict[str, Any], list, list]:
    run = httpx.get(f"{url}/api/v1/runs/{run_id}", headers=read).json()
    points = httpx.get(
        f"{url}/api/v1/runs/{run_id}/metrics", params={"limit": 10_000}, headers=read
    ).json()
    energy = httpx.get(
        f"{url}/api/v1/runs/{run_id}/energy", params={"limit": 10_000}, headers=read
    ).json()
    return run, points["items"], energy["items"]


def test_a_killed_client_is_flushed_later_and_its_run_ends_crashed(database: str, tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(database, port, tmp_path / "serve.log", GREENAUDIT_HEARTBEAT_TIMEOUT_S="2"):
        write, read = make_project(url)
        # Offline (no GREENAUDIT_URL): everything goes to the spool, then the process is killed.
        training = subprocess.Popen(
            [sys.executable, str(SCRIPT), "60"],
            env=client_env(tmp_path),
            stdout=subprocess.PIPE,
            text=True,
        )
        _, run_id, spool = training.stdout.readline().split()
        time.sleep(4)
        training.send_signal(signal.SIGKILL)
        training.wait(10)
        spooled = [
            json.loads(line) for line in Path(spool).read_text().splitlines() if line.endswith("}")
        ]
        assert not any(op["op"] == "finish_run" for op in spooled)
        flushed = subprocess.run(
            [*GREENAUDIT, "flush"],
            env=client_env(tmp_path, GREENAUDIT_URL=url, GREENAUDIT_API_KEY=write),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert flushed.returncode == 0, flushed.stderr
        assert (
            "0 finished run(s)" in flushed.stdout and "1 run(s) still in progress" in flushed.stdout
        )
        deadline = time.monotonic() + 30
        while True:
            run, points, energy = stored(url, run_id, read)
            if run["status"] == "crashed" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert run["status"] == "crashed"
    logged = [op["body"] for op in spooled if op["op"] == "metric"]
    assert len(logged) > 20
    assert sorted(p["step"] for p in points) == sorted(p["step"] for p in logged)
    assert len(energy) == sum(op["op"] == "energy" for op in spooled) >= 1
    # Flushing again re-sends nothing new and duplicates nothing.
    subprocess.run(
        [*GREENAUDIT, "flush"],
        env=client_env(tmp_path, GREENAUDIT_URL=url, GREENAUDIT_API_KEY=write),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_a_server_restart_during_a_run_loses_and_duplicates_nothing(database: str, tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with serving(database, port, log) as first:
        write, read = make_project(url)
        training = subprocess.Popen(
            [sys.executable, str(SCRIPT), "8"],
            env=client_env(
                tmp_path,
                GREENAUDIT_URL=url,
                GREENAUDIT_API_KEY=write,
                GREENAUDIT_FLUSH_TIMEOUT_S="40",
            ),
            stdout=subprocess.PIPE,
            text=True,
        )
        _, run_id, _ = training.stdout.readline().split()
        time.sleep(2.5)
        first.terminate()
        first.wait(15)
    time.sleep(2)  # the client keeps training and spooling while the service is down
    with serving(database, port, log):
        out, _ = training.communicate(timeout=120)
        report = json.loads(out.strip().splitlines()[-1])
        run, points, energy = stored(url, run_id, read)
    assert report["delivered"] is True
    assert run["status"] == "finished"
    assert sorted(p["step"] for p in points) == list(range(1, report["steps"] + 1))
    assert len(energy) == report["energy_samples"] == run["totals"]["energy_samples"]
