"""Faults with real processes: every sample and metric point arrives exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import free_port, fresh_postgres_database, wait_until_healthy

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
        wait_until_healthy(f"http://127.0.0.1:{port}", server, log)
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


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 90) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout_s} s for {what}"
        time.sleep(0.1)


def _spooled_enough(spool: Path) -> bool:
    if not spool.exists():
        return False
    ops = [json.loads(line)["op"] for line in spool.read_text().splitlines() if line.endswith("}")]
    return ops.count("metric") > 20 and ops.count("energy") >= 1


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
        # Killed once it has spooled enough to check, however slowly it starts (hardware
        # detection alone took 5 s on a loaded machine).
        wait_for(
            lambda: _spooled_enough(Path(spool)),
            "the client to spool 21 metric points and an energy sample",
        )
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


class FlakyProxy:
    """An HTTP proxy in front of the service that fails on demand: 'error' answers 500,
    'slow' forwards only after the client has given up waiting, 'ok' forwards at once."""

    def __init__(self, target: str) -> None:
        import http.server
        import threading

        proxy = self
        self.mode = "error"
        self.seen = {"error": 0, "slow": 0, "ok": 0}

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                mode = proxy.mode
                proxy.seen[mode] += 1
                if mode == "error":
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if mode == "slow":
                    time.sleep(3.5)  # past the client's timeout; the request still lands
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() in ("authorization", "content-type")
                }
                answer = httpx.request(
                    self.command, target + self.path, content=body, headers=headers, timeout=30
                )
                try:
                    self.send_response(answer.status_code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer.content)))
                    self.end_headers()
                    self.wfile.write(answer.content)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up: it will send again

            do_GET = do_POST = do_PATCH = _relay  # noqa: N815

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_errors_and_timeouts_for_a_while_lose_and_duplicate_nothing(database: str, tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(database, port, tmp_path / "serve.log"):
        write, read = make_project(url)
        proxy = FlakyProxy(url)
        try:
            training = subprocess.Popen(
                [sys.executable, str(SCRIPT), "14"],
                env=client_env(
                    tmp_path,
                    GREENAUDIT_URL=proxy.url,
                    GREENAUDIT_API_KEY=write,
                    GREENAUDIT_FLUSH_TIMEOUT_S="3",
                ),
                stdout=subprocess.PIPE,
                text=True,
            )
            _, run_id, _ = training.stdout.readline().split()
            # Each fault lasts until the client has met it, however late its first delivery.
            wait_for(lambda: proxy.seen["error"] >= 1, "a delivery answered 500")
            proxy.mode = "slow"
            wait_for(lambda: proxy.seen["slow"] >= 1, "a delivery answered after its timeout")
            proxy.mode = "ok"
            out, _ = training.communicate(timeout=180)
        finally:
            proxy.close()
        report = json.loads(out.strip().splitlines()[-1])
        run, points, energy = stored(url, run_id, read)
    assert proxy.seen["error"] >= 1 and proxy.seen["slow"] >= 1
    assert report["delivered"] is True and run["status"] == "finished"
    assert sorted(p["step"] for p in points) == list(range(1, report["steps"] + 1))
    assert len(energy) == report["energy_samples"] == run["totals"]["energy_samples"]
