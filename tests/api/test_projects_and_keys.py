from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from greenaudit.api.app import create_app
from greenaudit.api.models import ApiKey
from greenaudit.settings import Settings

from ..conftest import ADMIN, ADMIN_TOKEN, ProjectKeys
from .helpers import run_body


def test_creating_a_project_needs_the_admin_token(client: TestClient):
    assert client.post("/api/v1/projects", json={"name": "p"}).status_code == 401
    wrong = client.post(
        "/api/v1/projects", json={"name": "p"}, headers={"Authorization": "Bearer not-the-token"}
    )
    assert (wrong.status_code, wrong.json()["error"]) == (401, "unauthorized")
    assert client.post("/api/v1/projects", json={"name": "p"}, headers=ADMIN).status_code == 201
    again = client.post("/api/v1/projects", json={"name": "p"}, headers=ADMIN)
    assert again.status_code == 409 and "already exists" in again.json()["detail"]


def test_keys_are_stored_hashed_and_scoped(
    client: TestClient, project: ProjectKeys, engine: Engine
):
    write_key = project.write["Authorization"].split()[1]
    with engine.connect() as connection:
        hashes = connection.execute(select(ApiKey.prefix, ApiKey.secret_hash)).all()
    assert len(hashes) == 2
    assert all(write_key not in (prefix, secret_hash) for prefix, secret_hash in hashes)
    assert any(write_key.split("_")[1] == prefix for prefix, _ in hashes)

    read_only = client.post("/api/v1/runs", json=run_body(), headers=project.read)
    assert (read_only.status_code, read_only.json()["error"]) == (403, "forbidden")
    assert client.post("/api/v1/runs", json=run_body(), headers=project.write).status_code == 201
    assert client.get("/api/v1/runs", headers=project.write).status_code == 200


def test_missing_malformed_unknown_and_revoked_keys(client: TestClient, project: ProjectKeys):
    assert client.get("/api/v1/runs").json()["error"] == "unauthorized"
    for header in ("Basic abc", "Bearer ", "Bearer nonsense", "Bearer ga_000000000000_x"):
        response = client.get("/api/v1/runs", headers={"Authorization": header})
        assert response.status_code == 401, header

    keys = client.get(f"/api/v1/projects/{project.id}/keys", headers=ADMIN).json()
    read_key = next(k for k in keys if k["scope"] == "read")
    assert "key" not in read_key
    revoked = client.post(
        f"/api/v1/projects/{project.id}/keys/{read_key['id']}/revoke", headers=ADMIN
    )
    assert revoked.json()["revoked_at"] is not None
    response = client.get("/api/v1/runs", headers=project.read)
    assert response.status_code == 401 and "revoked" in response.json()["detail"]


def test_new_keys_and_last_use(client: TestClient, project: ProjectKeys):
    issued = client.post(
        f"/api/v1/projects/{project.id}/keys",
        json={"scope": "read", "name": "dashboards"},
        headers=ADMIN,
    ).json()
    headers = {"Authorization": f"Bearer {issued['key']}"}
    assert client.get(f"/api/v1/projects/{project.id}", headers=headers).json()["name"] == "vision"
    keys = {
        k["id"]: k for k in client.get(f"/api/v1/projects/{project.id}/keys", headers=ADMIN).json()
    }
    assert keys[issued["id"]]["last_used_at"] is not None


def test_a_key_sees_only_its_own_project(
    client: TestClient, project: ProjectKeys, other_project: ProjectKeys
):
    response = client.get(f"/api/v1/projects/{project.id}", headers=other_project.read)
    assert response.status_code == 404
    response = client.post(
        "/api/v1/runs", json=run_body(project="vision"), headers=other_project.write
    )
    assert response.status_code == 404 and "vision" in response.json()["detail"]


def test_openapi_has_examples_and_the_error_shape(client: TestClient):
    spec = client.get("/openapi.json").json()
    run_create = spec["components"]["schemas"]["RunCreate"]
    assert run_create["examples"][0]["carbon_intensity_g_per_kwh"] == 56.039
    energy_post = spec["paths"]["/api/v1/runs/{run_id}/energy"]["post"]
    assert {"401", "404", "409", "422"} <= set(energy_post["responses"])
    error = energy_post["responses"]["409"]["content"]["application/json"]
    assert error["schema"]["required"] == ["error", "detail"]
    assert client.get("/healthz").json()["status"] == "ok"


def test_an_unreachable_database_is_a_503_not_a_500():
    from ..conftest import free_port

    settings = Settings(
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/none", admin_token=ADMIN_TOKEN
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        health = client.get("/healthz")
        runs = client.get("/api/v1/runs", headers={"Authorization": "Bearer ga_abc_def"})
    assert (health.status_code, health.json()["error"]) == (503, "database_unavailable")
    assert runs.status_code == 503 and health.headers["Retry-After"] == "5"
