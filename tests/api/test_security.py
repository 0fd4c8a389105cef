"""Admin token, rate limits, size limits, hostile strings, security headers and CORS."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from greenaudit.api.app import InsecureConfiguration, create_app
from greenaudit.settings import Settings

from ..conftest import ADMIN, ProjectKeys, create_project
from .helpers import point, run_body, sample


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "is not set"),
        ("", "is not set"),
        ("changeme", "too short (8 characters; at least 32)"),
        ("a" * 40, "too repetitive (1 distinct characters; at least 10)"),
        ("admin" * 8, "too repetitive (5 distinct characters; at least 10)"),
    ],
)
def test_the_service_refuses_to_start_without_a_strong_admin_token(
    settings: Settings, engine: Engine, token: str | None, reason: str
):
    with pytest.raises(InsecureConfiguration, match="GREENAUDIT_ADMIN_TOKEN") as refused:
        create_app(settings.model_copy(update={"admin_token": token}), engine)
    assert reason in str(refused.value)
    assert "secrets.token_urlsafe(32)" in str(refused.value)


def _app_client(settings: Settings, engine: Engine, **overrides: object) -> TestClient:
    return TestClient(
        create_app(settings.model_copy(update=overrides), engine), raise_server_exceptions=False
    )


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_each_key_has_its_own_rate_limit(settings: Settings, engine: Engine):
    with _app_client(settings, engine, rate_limit="5/second") as client:
        first = create_project(client, "limited")
        second = create_project(client, "other")
        answers = [client.get("/api/v1/runs", headers=first.read).status_code for _ in range(6)]
        refused = client.get("/api/v1/runs", headers=first.read)
        # The read key and the write key of a project are counted apart, like any two keys.
        assert client.get("/api/v1/runs", headers=first.write).status_code == 200
        assert client.get("/api/v1/runs", headers=second.read).status_code == 200
        assert answers == [200] * 5 + [429]
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"
        assert "5 per 1 second" in refused.json()["detail"]
        retry_s = int(refused.headers["Retry-After"])
        assert 1 <= retry_s <= 2
        time.sleep(retry_s + 0.1)
        assert client.get("/api/v1/runs", headers=first.read).status_code == 200


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_the_rate_limit_covers_codecarbon_and_can_be_turned_off(settings: Settings, engine: Engine):
    with _app_client(settings, engine, rate_limit="3/minute") as client:
        keys = create_project(client, "cc")
        token = {"x-api-token": keys.write["Authorization"].split()[1]}
        body = {"timestamp": "2026-12-01T10:00:00Z", "experiment_id": str(uuid.uuid4())}
        statuses = [client.post("/codecarbon/runs", json=body, headers=token).status_code]
        statuses += [client.post("/codecarbon/runs", json=body, headers=token).status_code]
        statuses += [client.post("/codecarbon/runs", json=body, headers=token).status_code]
        statuses += [client.post("/codecarbon/runs", json=body, headers=token).status_code]
        assert statuses == [201, 201, 201, 429]
    with _app_client(settings, engine, rate_limit="off") as client:
        keys = create_project(client, "unlimited")
        assert {client.get("/api/v1/runs", headers=keys.read).status_code for _ in range(50)} == {
            200
        }


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_oversized_bodies_batches_and_strings_are_refused(settings: Settings, engine: Engine):
    with _app_client(settings, engine, max_body_mb=0.05) as client:
        keys = create_project(client, "sizes")
        run = client.post("/api/v1/runs", json=run_body(), headers=keys.write).json()
        energy = f"/api/v1/runs/{run['id']}/energy"
        # 200 samples are about 70 kB: over the 0.05 MB (52,428 byte) limit set here.
        big = json.dumps({"samples": [sample(i) for i in range(200)]})
        assert len(big) > 0.05 * 1024 * 1024
        too_big = client.post(energy, content=big, headers=keys.write)
        assert too_big.status_code == 413
        assert too_big.json()["error"] == "payload_too_large"
        # Nothing of it was stored.
        totals = client.get(f"/api/v1/runs/{run['id']}", headers=keys.read).json()["totals"]
        assert totals["energy_samples"] == 0
    with _app_client(settings, engine) as client:
        keys = create_project(client, "batches")
        run = client.post("/api/v1/runs", json=run_body(), headers=keys.write).json()
        over = client.post(
            f"/api/v1/runs/{run['id']}/metrics",
            json={"points": [point(i, 0.5) for i in range(5001)]},
            headers=keys.write,
        )
        assert over.status_code == 422
        assert over.json()["detail"][0]["loc"] == ["body", "points"]
        assert "at most 5000" in over.json()["detail"][0]["msg"]
        long_name = client.post("/api/v1/runs", json=run_body(model="m" * 201), headers=keys.write)
        assert long_name.status_code == 422
        assert long_name.json()["detail"][0]["loc"] == ["body", "model"]
        nul = client.post("/api/v1/runs", json=run_body(model="a\x00b"), headers=keys.write)
        assert nul.status_code == 422


HOSTILE = [
    "'; DROP TABLE run; --",
    'Robert"); DELETE FROM energy_sample WHERE ("1"="1',
    "100% _match_ \\ escape",
    "名前のモデル",
    "ResNet‑50 🚀✨",
    "עברית العربية",
    "  leading and trailing  ",
    "<script>alert(1)</script>",
    "{{ 7*7 }}",
]


def test_sql_like_and_unicode_names_are_stored_and_returned_verbatim(
    client: TestClient, project: ProjectKeys
):
    for text in HOSTILE:
        run = run_body(name=text, model=text, dataset=text, task=text, group=text)
        created = client.post("/api/v1/runs", json=run, headers=project.write)
        assert created.status_code == 201, created.text
        stored = client.post(
            f"/api/v1/runs/{run['id']}/metrics",
            json={"points": [point(1, 0.5, name=text)]},
            headers=project.write,
        )
        assert stored.json() == {"inserted": 1, "duplicates": 0}
        got = client.get(f"/api/v1/runs/{run['id']}", headers=project.read).json()
        assert (got["name"], got["model"], got["dataset"], got["task"], got["group"]) == (
            text,
            text,
            text,
            text,
            text,
        )
        series = client.get(
            f"/api/v1/runs/{run['id']}/metrics", params={"name": text}, headers=project.read
        ).json()
        assert [p["name"] for p in series["items"]] == [text]
    # Each filter matches its own value exactly, and only it: no wildcard, no injection.
    for text in HOSTILE:
        for field in ("model", "dataset", "task", "group"):
            found = client.get("/api/v1/runs", params={field: text}, headers=project.read).json()[
                "items"
            ]
            assert [r[field] for r in found] == [text], (field, text)
        by_model = client.get(
            "/api/v1/totals", params={"by": "model", "model": text}, headers=project.read
        ).json()
        assert [row["key"] for row in by_model["rows"]] == [text]
    # Every run is still there: nothing was dropped or deleted.
    listed = client.get("/api/v1/runs", params={"limit": 100}, headers=project.read).json()
    assert listed["total"] == len(HOSTILE)
    project_names = [create_project(client, text).project["name"] for text in HOSTILE[:4]]
    assert project_names == HOSTILE[:4]
    assert sorted(p["name"] for p in client.get("/api/v1/projects", headers=ADMIN).json()) == (
        sorted([project.project["name"], *HOSTILE[:4]])
    )


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_security_headers(client: TestClient, project: ProjectKeys):
    page = client.get("/dashboards/login")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "'unsafe-eval'" not in csp and "script-src 'self' 'unsafe-inline'" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    # plotly is served by the service itself, which is what the CSP allows.
    plotly = client.get("/dashboards/static/plotly.min.js")
    assert plotly.status_code == 200 and plotly.headers["content-type"].startswith(
        "text/javascript"
    )
    api = client.get("/api/v1/runs", headers=project.read)
    assert api.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in api.headers  # /docs loads Swagger UI from its CDN


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_cors_is_off_unless_configured(settings: Settings, engine: Engine):
    preflight = {
        "Origin": "https://dash.example.org",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    with _app_client(settings, engine) as client:
        answer = client.options("/api/v1/runs", headers=preflight)
        assert "access-control-allow-origin" not in answer.headers
        keys = create_project(client, "cors-off")
        read = client.get("/api/v1/runs", headers={**keys.read, "Origin": preflight["Origin"]})
        assert "access-control-allow-origin" not in read.headers
    with _app_client(settings, engine, cors_origins=["https://dash.example.org"]) as client:
        allowed = client.options("/api/v1/runs", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://dash.example.org"
        other = client.options(
            "/api/v1/runs", headers={**preflight, "Origin": "https://evil.example.com"}
        )
        assert "access-control-allow-origin" not in other.headers
