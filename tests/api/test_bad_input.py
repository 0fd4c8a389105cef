"""Every bad input gets a 4xx that names the problem, and writes nothing."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from greenaudit.api.models import EnergySample, MetricPoint, Run
from greenaudit.schemas import MAX_BATCH_ITEMS

from ..conftest import ProjectKeys
from .helpers import point, run_body, sample


def stored(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as connection:
        return tuple(  # type: ignore[return-value]
            int(connection.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Run, EnergySample, MetricPoint)
        )


@pytest.fixture
def run_id(client: TestClient, project: ProjectKeys) -> str:
    response = client.post("/api/v1/runs", json=run_body(), headers=project.write)
    return str(response.json()["id"])


def post_raw(client: TestClient, path: str, payload: str, headers: dict[str, str]) -> Any:
    return client.post(
        path, content=payload, headers={**headers, "Content-Type": "application/json"}
    )


def assert_error(response: Any, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    text = json.dumps(body["detail"])
    for word in words:
        assert word in text, f"{word!r} not in {text}"


def test_unknown_run(client: TestClient, project: ProjectKeys, engine: Engine):
    missing = uuid.uuid4()
    before = stored(engine)
    response = client.post(
        f"/api/v1/runs/{missing}/energy", json={"samples": [sample(0)]}, headers=project.write
    )
    assert_error(response, 404, str(missing), "not found")
    assert_error(client.get(f"/api/v1/runs/{missing}", headers=project.read), 404, "not found")
    assert stored(engine) == before


def test_another_projects_run_is_invisible(
    client: TestClient,
    project: ProjectKeys,
    other_project: ProjectKeys,
    run_id: str,
    engine: Engine,
):
    before = stored(engine)
    for response in (
        client.get(f"/api/v1/runs/{run_id}", headers=other_project.read),
        client.get(f"/api/v1/runs/{run_id}/energy", headers=other_project.read),
        client.get(f"/api/v1/runs/{run_id}/metrics", headers=other_project.read),
        client.post(
            f"/api/v1/runs/{run_id}/energy",
            json={"samples": [sample(0)]},
            headers=other_project.write,
        ),
        client.post(
            f"/api/v1/runs/{run_id}/metrics",
            json={"points": [point(1, 0.5)]},
            headers=other_project.write,
        ),
        client.patch(f"/api/v1/runs/{run_id}", json={"flops": 1.0}, headers=other_project.write),
        client.post(
            f"/api/v1/runs/{run_id}/finish",
            json={"ended_at": "2026-12-01T11:00:00Z", "duration_s": 1.0},
            headers=other_project.write,
        ),
    ):
        # 404, not 403: a key cannot tell another project's run from a missing one.
        assert_error(response, 404, "not found")
    assert client.get("/api/v1/runs", headers=other_project.read).json()["total"] == 0
    assert_error(
        client.get("/api/v1/runs", params={"project": "vision"}, headers=other_project.read),
        404,
        "vision",
    )
    assert stored(engine) == before


@pytest.mark.parametrize("bad_value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_energy(
    client: TestClient, project: ProjectKeys, run_id: str, engine: Engine, bad_value: str
):
    before = stored(engine)
    payload = json.dumps({"samples": [sample(0), sample(1)]}).replace(
        '"gpu_kwh": 0.004', f'"gpu_kwh": {bad_value}', 1
    )
    response = post_raw(client, f"/api/v1/runs/{run_id}/energy", payload, project.write)
    assert_error(response, 422, "gpu_kwh", "finite")
    assert stored(engine) == before


def test_negative_energy(client: TestClient, project: ProjectKeys, run_id: str, engine: Engine):
    before = stored(engine)
    response = client.post(
        f"/api/v1/runs/{run_id}/energy",
        json={"samples": [sample(0), sample(1, cpu_kwh=-0.001)]},
        headers=project.write,
    )
    assert_error(response, 422, "cpu_kwh", "greater than or equal to 0")
    assert stored(engine) == before


def test_nan_metric_value(client: TestClient, project: ProjectKeys, run_id: str, engine: Engine):
    before = stored(engine)
    payload = json.dumps({"points": [point(1, 0.5)]}).replace("0.5", "NaN")
    response = post_raw(client, f"/api/v1/runs/{run_id}/metrics", payload, project.write)
    assert_error(response, 422, "value", "finite")
    assert stored(engine) == before


def test_end_before_start(client: TestClient, project: ProjectKeys, run_id: str, engine: Engine):
    before = stored(engine)
    bad = sample(0, t_start="2026-12-01T10:05:00Z", t_end="2026-12-01T10:04:00Z")
    response = client.post(
        f"/api/v1/runs/{run_id}/energy", json={"samples": [bad]}, headers=project.write
    )
    assert_error(response, 422, "t_end is before t_start")
    assert stored(engine) == before


def test_energy_without_its_method(
    client: TestClient, project: ProjectKeys, run_id: str, engine: Engine
):
    before = stored(engine)
    response = client.post(
        f"/api/v1/runs/{run_id}/energy",
        json={"samples": [sample(0, cpu_method=None)]},
        headers=project.write,
    )
    assert_error(response, 422, "cpu_kwh and cpu_method must be given together")
    assert stored(engine) == before


def test_missing_fields(client: TestClient, project: ProjectKeys, run_id: str, engine: Engine):
    before = stored(engine)
    incomplete = sample(0)
    del incomplete["t_end"]
    response = client.post(
        f"/api/v1/runs/{run_id}/energy", json={"samples": [incomplete]}, headers=project.write
    )
    assert_error(response, 422, "t_end", "Field required")
    body = run_body()
    del body["carbon_intensity_g_per_kwh"]
    assert_error(
        client.post("/api/v1/runs", json=body, headers=project.write),
        422,
        "carbon_intensity_g_per_kwh",
        "Field required",
    )
    assert stored(engine) == before


def test_wrong_types(client: TestClient, project: ProjectKeys, run_id: str, engine: Engine):
    before = stored(engine)
    response = client.post(
        f"/api/v1/runs/{run_id}/energy",
        json={"samples": [{**sample(0), "seq": "third"}]},
        headers=project.write,
    )
    assert_error(response, 422, "seq", "valid integer")
    response = client.post("/api/v1/runs", json=run_body(id="not-a-uuid"), headers=project.write)
    assert_error(response, 422, "id", "UUID")
    response = client.post("/api/v1/runs", json=run_body(kind="pretraining"), headers=project.write)
    assert_error(response, 422, "kind", "search-trial")
    response = client.post(f"/api/v1/runs/{run_id}/energy", json=[sample(0)], headers=project.write)
    assert_error(response, 422, "body")
    response = post_raw(client, f"/api/v1/runs/{run_id}/energy", "{not json", project.write)
    assert_error(response, 422, "JSON")
    assert stored(engine) == before


def test_naive_timestamps_are_refused(client: TestClient, project: ProjectKeys, run_id: str):
    response = client.post(
        f"/api/v1/runs/{run_id}/energy",
        json={"samples": [sample(0, t_start="2026-12-01T10:00:00")]},
        headers=project.write,
    )
    assert_error(response, 422, "timezone")


def test_unknown_fields_are_refused(client: TestClient, project: ProjectKeys, run_id: str):
    response = client.post(
        f"/api/v1/runs/{run_id}/energy",
        json={"samples": [sample(0, co2_kg=1.0)]},
        headers=project.write,
    )
    assert_error(response, 422, "co2_kg", "Extra inputs are not permitted")


def test_batch_over_the_size_limit(
    client: TestClient, project: ProjectKeys, run_id: str, engine: Engine
):
    before = stored(engine)
    too_many = [sample(i) for i in range(MAX_BATCH_ITEMS + 1)]
    response = client.post(
        f"/api/v1/runs/{run_id}/energy", json={"samples": too_many}, headers=project.write
    )
    assert_error(response, 422, "samples", f"at most {MAX_BATCH_ITEMS}")
    points = [point(i % 60, 0.5, name=f"m{i}") for i in range(MAX_BATCH_ITEMS + 1)]
    response = client.post(
        f"/api/v1/runs/{run_id}/metrics", json={"points": points}, headers=project.write
    )
    assert_error(response, 422, "points", f"at most {MAX_BATCH_ITEMS}")
    assert_error(
        client.post(f"/api/v1/runs/{run_id}/energy", json={"samples": []}, headers=project.write),
        422,
        "at least 1",
    )
    assert stored(engine) == before


def test_duplicate_with_different_content(
    client: TestClient, project: ProjectKeys, run_id: str, engine: Engine
):
    client.post(
        f"/api/v1/runs/{run_id}/energy", json={"samples": [sample(0)]}, headers=project.write
    )
    client.post(
        f"/api/v1/runs/{run_id}/metrics", json={"points": [point(1, 0.5)]}, headers=project.write
    )
    before = stored(engine)
    # The new sample 1 must not be stored either: the batch is one transaction.
    response = client.post(
        f"/api/v1/runs/{run_id}/energy",
        json={"samples": [sample(1), sample(0, cpu_kwh=0.002)]},
        headers=project.write,
    )
    assert_error(response, 409, "rank 0, seq 0", "cpu_kwh")
    response = client.post(
        f"/api/v1/runs/{run_id}/metrics",
        json={"points": [point(2, 0.6), point(1, 0.9)]},
        headers=project.write,
    )
    assert_error(response, 409, "accuracy", "step 1", "value")
    # Twice in one batch with different content is a client bug, reported as such.
    response = client.post(
        f"/api/v1/runs/{run_id}/energy",
        json={"samples": [sample(5), sample(5, gpu_kwh=0.1)]},
        headers=project.write,
    )
    assert_error(response, 422, "samples[1]", "seq 5")
    assert stored(engine) == before


def test_bad_query_parameters(client: TestClient, project: ProjectKeys):
    assert_error(
        client.get("/api/v1/runs", params={"limit": 0}, headers=project.read), 422, "limit"
    )
    assert_error(
        client.get("/api/v1/runs", params={"limit": 501}, headers=project.read), 422, "limit"
    )
    assert_error(
        client.get("/api/v1/runs", params={"status": "paused"}, headers=project.read), 422, "status"
    )
    assert_error(
        client.get("/api/v1/runs", params={"started_after": "yesterday"}, headers=project.read),
        422,
        "started_after",
    )
    assert_error(
        client.get("/api/v1/totals", params={"by": "colour"}, headers=project.read), 422, "by"
    )
    assert_error(client.get("/api/v1/runs/not-a-uuid", headers=project.read), 422, "run_id")


def test_unknown_route_uses_the_error_shape(client: TestClient):
    assert_error(client.get("/api/v1/nothing-here"), 404, "Not Found")


def test_nul_characters_are_refused_not_crashed_on(
    client: TestClient, project: ProjectKeys, run_id: str, engine: Engine
):
    before = stored(engine)
    assert_error(
        client.post("/api/v1/runs", json=run_body(model="res\x00net"), headers=project.write),
        422,
        "model",
    )
    assert_error(
        client.get("/api/v1/runs", params={"model": "a\x00b"}, headers=project.read), 422, "model"
    )
    assert_error(
        client.get(f"/api/v1/runs/{run_id}/metrics", params={"name": "\x00"}, headers=project.read),
        422,
        "name",
    )
    assert stored(engine) == before


def test_out_of_range_numbers_and_dates_are_refused(
    client: TestClient, project: ProjectKeys, run_id: str, engine: Engine
):
    before = stored(engine)
    cases = [
        ("/api/v1/runs/" + run_id + "/energy", {"samples": [sample(2**63)]}, "seq"),
        ("/api/v1/runs/" + run_id + "/energy", {"samples": [sample(0, rank=2**31)]}, "rank"),
        ("/api/v1/runs/" + run_id + "/energy", {"samples": [sample(0, cpu_kwh=1e308)]}, "cpu_kwh"),
        (
            "/api/v1/runs/" + run_id + "/metrics",
            {"points": [{**point(1, 0.5), "step": 2**63}]},
            "step",
        ),
        ("/api/v1/runs", run_body(started_at="0001-01-01T00:00:00+01:00"), "started_at"),
        ("/api/v1/runs", run_body(hardware={"world_size": 2**31}), "world_size"),
    ]
    for path, body, field in cases:
        assert_error(client.post(path, json=body, headers=project.write), 422, field)
    assert_error(
        client.get("/api/v1/runs", params={"offset": 2**63}, headers=project.read), 422, "offset"
    )
    assert_error(
        client.get(
            "/api/v1/runs", params={"started_after": "2026-01-01T00:00:00"}, headers=project.read
        ),
        422,
        "started_after",
        "timezone",
    )
    nan_meta = json.dumps(run_body()).replace('"hardware"', '"meta": {"x": NaN}, "hardware"')
    assert_error(post_raw(client, "/api/v1/runs", nan_meta, project.write), 422, "meta", "NaN")
    huge_meta = run_body(meta={"blob": "x" * 70_000})
    assert_error(
        client.post("/api/v1/runs", json=huge_meta, headers=project.write), 422, "meta", "limit"
    )
    assert stored(engine) == before
