"""End to end with real processes: ``greenaudit serve``, a tracked training script, HTTP reads.

Nothing of greenaudit's is mocked; energy comes from CodeCarbon on this machine.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from ..conftest import free_port, fresh_postgres_database, wait_until_healthy

ADMIN_TOKEN = "e2e-admin-token-" + "k" * 24
SCRIPT = Path(__file__).with_name("train_digits.py")
# The console script installed beside this interpreter, as a user would run it.
GREENAUDIT = [str(Path(sys.executable).with_name("greenaudit"))]

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict]]:
    with ExitStack() as stack:
        if request.param == "sqlite":
            database_url = f"sqlite:///{tmp_path / 'service.db'}"
        else:
            database_url = stack.enter_context(fresh_postgres_database("e2e"))
        port = free_port()
        env = {
            **os.environ,
            "GREENAUDIT_ADMIN_TOKEN": ADMIN_TOKEN,
            "GREENAUDIT_HOME": str(tmp_path / "service-home"),
        }
        log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
        stack.callback(log.close)
        server = subprocess.Popen(
            [*GREENAUDIT, "serve", "--port", str(port), "--database-url", database_url],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def stop() -> None:
            server.terminate()
            server.wait(15)

        stack.callback(stop)
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, server, tmp_path / "serve.log")
        yield url, env


def test_a_tracked_training_script_is_queryable(service: tuple[str, dict], tmp_path: Path):
    url, service_env = service
    created = subprocess.run(
        [*GREENAUDIT, "project", "create", "e2e", "--url", url],
        env={**os.environ, "GREENAUDIT_ADMIN_TOKEN": ADMIN_TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    keys = {line.split(":")[0]: line.split()[-1] for line in created.splitlines() if "key" in line}
    write_key, read_key = keys["write key"], keys["read key"]

    training = subprocess.run(
        [sys.executable, str(SCRIPT), "25"],
        env={
            **os.environ,
            "GREENAUDIT_URL": url,
            "GREENAUDIT_API_KEY": write_key,
            "GREENAUDIT_COUNTRY": "FRA",
            "GREENAUDIT_PUE": "1.5",
            "GREENAUDIT_MEASURE_INTERVAL_S": "0.5",
            "GREENAUDIT_HOME": str(tmp_path / "client"),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert training.returncode == 0, training.stderr
    printed = json.loads(training.stdout.strip().splitlines()[-1])
    assert printed["delivered"] is True

    read = {"Authorization": f"Bearer {read_key}"}
    run = httpx.get(f"{url}/api/v1/runs/{printed['run_id']}", headers=read).json()
    assert run["status"] == "finished"
    assert (run["model"], run["dataset"], run["meta"]) == (
        "mlp-128",
        "digits",
        {"learning_rate": 0.005},
    )
    totals = run["totals"]
    measured = {c: m for c, m in totals["methods"].items() if m}
    assert set(measured) == {"cpu", "ram"}  # no GPU on this machine
    for component, methods in measured.items():
        assert totals[f"{component}_kwh"] > 0
        assert set(methods) <= {"codecarbon", "rapl", "tdp-estimate"}
    assert run["country_iso"] == "FRA" and run["pue"] == 1.5
    assert "France (FRA)" in run["carbon_intensity_source"]
    expected_co2 = totals["energy_kwh"] * run["carbon_intensity_g_per_kwh"] / 1000 * run["pue"]
    assert math.isclose(totals["co2_kg"], expected_co2, rel_tol=1e-9)

    points = httpx.get(
        f"{url}/api/v1/runs/{run['id']}/metrics", params={"name": "accuracy"}, headers=read
    ).json()
    assert [(p["step"], p["value"]) for p in points["items"]] == [
        (epoch, accuracy) for epoch, accuracy in printed["logged"]
    ]
    assert [p["epoch"] for p in points["items"]] == list(range(1, 26))

    energy = httpx.get(f"{url}/api/v1/runs/{run['id']}/energy", headers=read).json()
    assert energy["total"] == totals["energy_samples"] >= 1
    assert math.isclose(sum(s["cpu_kwh"] for s in energy["items"]), totals["cpu_kwh"], rel_tol=1e-9)
