"""`greenaudit serve --workers 2` on PostgreSQL: concurrent batches with re-sends, counted exactly.

Real processes: the service with two uvicorn workers, and clients in threads that open a new
connection per request, so both workers take a share.
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..api.helpers import run_body, sample
from ..conftest import free_port
from .service import database, make_project, start_service, stop_service

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
    log_path = tmp_path / "serve.log"
    with database("postgresql", tmp_path, "workers") as database_url:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_service(database_url, port, log_path, workers=2)
        try:
            key, read = make_project(url, "workers")
            with ThreadPoolExecutor(CLIENTS) as pool:
                results = list(pool.map(lambda _: send_run(url, key), range(CLIENTS)))

            unique = BATCHES * BATCH_SIZE
            resent = len(range(0, BATCHES, RESEND_EVERY)) * BATCH_SIZE
            for run_id, inserted, duplicates, statuses in results:
                assert set(statuses) <= {200, 201}, statuses
                assert (inserted, duplicates) == (unique, resent)
                stored = httpx.get(f"{url}/api/v1/runs/{run_id}", headers=read).json()["totals"]
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
            stop_service(server)
    access = [json.loads(line) for line in log_path.read_text().splitlines() if line[:1] == "{"]
    energy_lines = [a for a in access if a["route"] == "/api/v1/runs/{run_id}/energy"]
    assert len(energy_lines) == CLIENTS * (BATCHES + len(range(0, BATCHES, RESEND_EVERY)))
    assert len({a["pid"] for a in energy_lines}) == 2, "both workers should have served"
