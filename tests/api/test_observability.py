"""`/metrics` and the JSON access log, on both databases."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ..conftest import ProjectKeys
from .helpers import point, run_body, sample


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values = {}
    for family in text_string_to_metric_families(response.text):
        for series in family.samples:
            values[(series.name, tuple(sorted(series.labels.items())))] = series.value
    return values


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_count_stored_resent_and_rejected_rows(client: TestClient, project: ProjectKeys):
    run = client.post("/api/v1/runs", json=run_body(), headers=project.write).json()
    energy = f"/api/v1/runs/{run['id']}/energy"
    before = scrape(client)

    assert client.post(
        energy, json={"samples": [sample(0), sample(1), sample(2)]}, headers=project.write
    ).json() == {"inserted": 3, "duplicates": 0}
    # A spool re-send: two samples already stored, one new.
    assert client.post(
        energy, json={"samples": [sample(1), sample(2), sample(3)]}, headers=project.write
    ).json() == {"inserted": 1, "duplicates": 2}
    assert client.post(
        f"/api/v1/runs/{run['id']}/metrics",
        json={"points": [point(1, 0.5), point(2, 0.6)]},
        headers=project.write,
    ).json() == {"inserted": 2, "duplicates": 0}
    negative = client.post(
        energy, json={"samples": [sample(9, cpu_kwh=-1.0)]}, headers=project.write
    )
    assert negative.status_code == 422
    unknown_run = client.post(
        "/api/v1/runs/00000000-0000-4000-8000-000000000000/energy",
        json={"samples": [sample(0)]},
        headers=project.write,
    )
    assert unknown_run.status_code == 404

    after = scrape(client)
    assert delta(before, after, "greenaudit_ingested_rows_total", kind="energy_sample") == 4
    assert delta(before, after, "greenaudit_ingested_rows_total", kind="metric_point") == 2
    assert delta(before, after, "greenaudit_duplicate_rows_total", kind="energy_sample") == 2
    assert (
        delta(
            before, after, "greenaudit_rejected_batches_total", kind="energy_sample", status="422"
        )
        == 1
    )
    assert (
        delta(
            before, after, "greenaudit_rejected_batches_total", kind="energy_sample", status="404"
        )
        == 1
    )
    # Requests are labelled by route template: run ids never become series.
    route = "/api/v1/runs/{run_id}/energy"
    assert (
        delta(
            before,
            after,
            "greenaudit_http_requests_total",
            method="POST",
            route=route,
            status="200",
        )
        == 2
    )
    assert (
        delta(
            before,
            after,
            "greenaudit_http_request_duration_seconds_count",
            method="POST",
            route=route,
        )
        == 4
    )
    assert not any(run["id"] in str(labels) for _, labels in after)


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_every_request_writes_one_json_access_line(
    client: TestClient, project: ProjectKeys, caplog: pytest.LogCaptureFixture
):
    run = client.post("/api/v1/runs", json=run_body(), headers=project.write).json()
    body = json.dumps({"samples": [sample(0)]})
    with caplog.at_level(logging.INFO, logger="greenaudit.access"):
        client.post(f"/api/v1/runs/{run['id']}/energy", content=body, headers=project.write)
        client.get("/no/such/page")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "greenaudit.access"]
    assert len(lines) == 2
    stored, missing = lines
    assert stored["method"] == "POST"
    assert stored["path"] == f"/api/v1/runs/{run['id']}/energy"
    assert stored["route"] == "/api/v1/runs/{run_id}/energy"
    assert stored["status"] == 200
    assert stored["request_bytes"] == len(body.encode())
    assert stored["duration_ms"] > 0
    assert missing["route"] == "unmatched"
    assert missing["status"] == 404
    # The key is never logged.
    key = project.write["Authorization"].split()[1]
    assert all(key not in r.getMessage() for r in caplog.records)
