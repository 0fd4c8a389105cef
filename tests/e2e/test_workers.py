"""`greenaudit serve --workers 2` on PostgreSQL: concurrent batches with re-sends, counted exactly.

Real processes: the service with two uvicorn workers, and clients in threads that open a new
connection per request, so both workers take a share.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..api.helpers import run_body, sample
from ..conftest import free_port, fresh_postgres_database
from .test_serve_track_query import ADMIN_TOKEN, GREENAUDIT

pytestmark = pytest.mark.e2e

CLIENTS = 6
BATCHES = 20
BATCH_SIZE = 25
RESEND_EVERY = 5  # every 5th batch is sent twice, as a spool re-send after a lost answer


def send_run(url: str, key: str) -> tuple[str, int, int, list[int]]:
    """One client's run: returns its id, samples inserted, duplicates and the statuses seen."""
    headers = {"Authorization": f"Bearer {key}"}
    run = run_body(id=str(uuid.uuid4()), name=f"worker-{uuid.uuid4().hex[:6]}")
    statuses = [httpx.post(f"{url}/api/v1/runs", json=run, headers=headers).status_code]
    inserted = duplicates = 0
    for batch in range(BATCHES):
        body = {"samples": [sample(batch * BATCH_SIZE + i) for i in range(BATCH_SIZE)]}
        for _ in range(2 if batch % RESEND_EVERY == 0 else 1):
            response = httpx.post(
                f"{url}/api/v1/runs/{run['id']}/energy", json=body, headers=headers
            )
            statuses.append(response.status_code)
            if response.status_code == 200:
                inserted += response.json()["inserted"]
                duplicates += response.json()["duplicates"]
    return run["id"], inserted, duplicates, statuses


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for series in family.samples:
            if series.name == name and series.labels == labels:
                return series.value
    return 0.0


def test_two_workers_share_the_load_and_count_every_sample_once(tmp_path: Path):
    with fresh_postgres_database("workers") as database_url:
        port = free_port()
        log_path = tmp_path / "serve.log"
        with open(log_path, "w") as log:
            server = subprocess.Popen(
                [
                    *GREENAUDIT,
                    "serve",
                    "--port",
                    str(port),
                    "--workers",
                    "2",
                    "--database-url",
                    database_url,
                ],
                env={
                    **os.environ,
                    "GREENAUDIT_ADMIN_TOKEN": ADMIN_TOKEN,
                    "GREENAUDIT_HOME": str(tmp_path / "home"),
                },
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                url = f"http://127.0.0.1:{port}"
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if httpx.get(f"{url}/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert server.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, "greenaudit serve did not come up"
                    time.sleep(0.2)
                created = httpx.post(
                    f"{url}/api/v1/projects",
                    json={"name": "workers"},
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                )
                assert created.status_code == 201, created.text
                key = created.json()["write_key"]["key"]
                read_key = created.json()["read_key"]["key"]

                with ThreadPoolExecutor(CLIENTS) as pool:
                    results = list(pool.map(lambda _: send_run(url, key), range(CLIENTS)))

                unique = BATCHES * BATCH_SIZE
                resent = len(range(0, BATCHES, RESEND_EVERY)) * BATCH_SIZE
                for run_id, inserted, duplicates, statuses in results:
                    assert set(statuses) <= {200, 201}, statuses
                    assert (inserted, duplicates) == (unique, resent)
                    stored = httpx.get(
                        f"{url}/api/v1/runs/{run_id}",
                        headers={"Authorization": f"Bearer {read_key}"},
                    ).json()["totals"]
                    assert stored["energy_samples"] == unique
                    # 25 x 20 samples of 0.0055 kWh each, stored once.
                    assert stored["energy_kwh"] == pytest.approx(unique * 0.0055, rel=1e-9)

                # Whichever worker answers, /metrics sums both workers' counts.
                for _ in range(4):
                    text = httpx.get(f"{url}/metrics").text
                    assert (
                        metric(text, "greenaudit_ingested_rows_total", kind="energy_sample")
                        == CLIENTS * unique
                    )
                    assert (
                        metric(text, "greenaudit_duplicate_rows_total", kind="energy_sample")
                        == CLIENTS * resent
                    )
            finally:
                server.terminate()
                server.wait(20)
        access = [json.loads(line) for line in log_path.read_text().splitlines() if line[:1] == "{"]
        energy_lines = [a for a in access if a["route"] == "/api/v1/runs/{run_id}/energy"]
        assert len(energy_lines) == CLIENTS * (BATCHES + len(range(0, BATCHES, RESEND_EVERY)))
        assert len({a["pid"] for a in energy_lines}) == 2, "both workers should have served"
