"""CodeCarbon's own, unmodified EmissionsTracker reporting into greenaudit."""

from __future__ import annotations

import math
import time
import uuid

import httpx
import pytest
from fastapi.testclient import TestClient

from ..conftest import LiveServer, ProjectKeys, keep_cpu_busy


# save_to_api=True is how CodeCarbon users configure it today (the contract); CodeCarbon now
# warns that it prefers output_methods.
@pytest.mark.filterwarnings("ignore:The save_to_\\* parameters are deprecated")
def test_codecarbon_reports_into_greenaudit_unchanged(live_server: LiveServer):
    from codecarbon import OfflineEmissionsTracker

    experiment = str(uuid.uuid4())
    tracker = OfflineEmissionsTracker(
        country_iso_code="FRA",
        save_to_api=True,
        api_endpoint=f"{live_server.url}/codecarbon",
        experiment_id=experiment,
        api_key=live_server.write_key,
        save_to_file=False,
        measure_power_secs=1.5,
        api_call_interval=2,
        log_level="error",
        allow_multiple_runs=True,
    )
    tracker.start()
    # CodeCarbon's client silently drops intervals shorter than 1 s, its own energy then
    # missing. Measuring every 1.5 s and reporting every second measurement, reports cover
    # 0-1.5 s and 1.5-4.5 s; stopping at 6 s leaves a final 1.5 s interval, so none is dropped.
    keep_cpu_busy(6.0)
    tracker.stop()
    final = tracker.final_emissions_data

    runs = httpx.get(
        f"{live_server.url}/api/v1/runs",
        params={"group": f"codecarbon:{experiment}"},
        headers=live_server.keys.read,
    ).json()
    assert runs["total"] == 1
    run = runs["items"][0]
    totals = run["totals"]
    assert totals["methods"]["cpu"] == ["codecarbon"] and totals["energy_samples"] >= 2
    assert math.isclose(totals["energy_kwh"], final.energy_consumed, rel_tol=1e-6)
    assert math.isclose(totals["co2_kg"], final.emissions, rel_tol=1e-6)
    assert run["hardware"]["cpu_model"] == final.cpu_model


def test_codecarbon_endpoints_need_a_write_key(client: TestClient, project: ProjectKeys):
    body = {"timestamp": "2026-12-01T10:00:00Z", "experiment_id": str(uuid.uuid4())}
    assert client.post("/codecarbon/runs", json=body).status_code == 401
    read_key = project.read["Authorization"].split()[1]
    assert (
        client.post("/codecarbon/runs", json=body, headers={"x-api-token": read_key}).status_code
        == 403
    )
    write_key = project.write["Authorization"].split()[1]
    created = client.post("/codecarbon/runs", json=body, headers={"x-api-token": write_key})
    assert created.status_code == 201 and uuid.UUID(created.json()["id"])
    bad = client.post(
        "/codecarbon/emissions",
        headers={"x-api-token": write_key},
        json={
            "timestamp": "2026-12-01T10:00:05Z",
            "run_id": created.json()["id"],
            "duration": 5,
            "emissions_sum": -1,
        },
    )
    assert bad.status_code == 422


def test_emissions_for_an_unknown_run_are_404(client: TestClient, project: ProjectKeys):
    missing = str(uuid.uuid4())
    write_key = project.write["Authorization"].split()[1]
    response = client.post(
        "/codecarbon/emissions",
        headers={"x-api-token": write_key},
        json={
            "timestamp": "2026-12-01T10:00:05Z",
            "run_id": missing,
            "duration": 5,
            "emissions_sum": 0.001,
            "emissions_rate": 0.0002,
            "cpu_power": 10,
            "gpu_power": 0,
            "ram_power": 5,
            "cpu_energy": 1e-5,
            "gpu_energy": 0,
            "ram_energy": 5e-6,
            "energy_consumed": 1.5e-5,
        },
    )
    assert response.status_code == 404


def test_quiet_codecarbon_runs_end_finished_not_crashed(
    client: TestClient, project: ProjectKeys, engine
):  # type: ignore[no-untyped-def]
    from greenaudit.api.db import make_session_factory
    from greenaudit.api.runs.service import mark_crashed

    write_key = project.write["Authorization"].split()[1]
    created = client.post(
        "/codecarbon/runs",
        headers={"x-api-token": write_key},
        json={"timestamp": "2026-12-01T10:00:00Z", "experiment_id": str(uuid.uuid4())},
    ).json()
    time.sleep(1.1)
    with make_session_factory(engine, writer=True)() as session, session.begin():
        mark_crashed(session, timeout_s=1.0)
    run = client.get(f"/api/v1/runs/{created['id']}", headers=project.read).json()
    assert run["status"] == "finished"  # CodeCarbon's protocol has no finish call
