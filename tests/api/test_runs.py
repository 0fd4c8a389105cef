from __future__ import annotations

import math
import time
import uuid

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, func, select

from greenaudit.api.app import create_app
from greenaudit.api.models import EnergySample, MetricPoint
from greenaudit.settings import Settings

from ..conftest import ProjectKeys, serving
from .helpers import point, run_body, sample


def create_run(client: TestClient, keys: ProjectKeys, **overrides: object) -> dict:
    response = client.post("/api/v1/runs", json=run_body(**overrides), headers=keys.write)
    assert response.status_code == 201, response.text
    return response.json()


def count(engine: Engine, model: type) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(model)) or 0)


def test_create_run_is_idempotent_on_the_client_uuid(client: TestClient, project: ProjectKeys):
    body = run_body()
    first = client.post("/api/v1/runs", json=body, headers=project.write)
    again = client.post("/api/v1/runs", json=body, headers=project.write)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    assert first.json()["status"] == "running"
    listed = client.get("/api/v1/runs", headers=project.read).json()
    assert listed["total"] == 1


def test_recreating_a_run_with_another_identity_conflicts(client: TestClient, project: ProjectKeys):
    body = run_body()
    client.post("/api/v1/runs", json=body, headers=project.write)
    response = client.post("/api/v1/runs", json={**body, "model": "vit-b16"}, headers=project.write)
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert "model" in response.json()["detail"]


def test_energy_totals_and_co2_follow_intensity_and_pue(client: TestClient, project: ProjectKeys):
    run = create_run(client, project)
    batch = {"samples": [sample(0), sample(1), sample(2)]}
    response = client.post(f"/api/v1/runs/{run['id']}/energy", json=batch, headers=project.write)
    assert response.json() == {"inserted": 3, "duplicates": 0}

    totals = client.get(f"/api/v1/runs/{run['id']}", headers=project.read).json()["totals"]
    # 3 samples x (0.001 + 0.004 + 0.0005) kWh = 0.0165 kWh
    assert math.isclose(totals["cpu_kwh"], 0.003, rel_tol=1e-12)
    assert math.isclose(totals["gpu_kwh"], 0.012, rel_tol=1e-12)
    assert math.isclose(totals["ram_kwh"], 0.0015, rel_tol=1e-12)
    assert math.isclose(totals["energy_kwh"], 0.0165, rel_tol=1e-12)
    # 0.0165 kWh x 50 g/kWh x 1.2 PUE = 0.99 g = 0.00099 kg
    assert math.isclose(totals["co2_kg"], 0.00099, rel_tol=1e-9)
    # 3 minutes x 2 GPUs = 0.1 GPU-hours
    assert math.isclose(totals["gpu_hours"], 0.1, rel_tol=1e-12)
    assert totals["energy_samples"] == 3
    assert totals["methods"] == {"cpu": ["rapl"], "gpu": ["nvml-counter"], "ram": ["codecarbon"]}


def test_resent_batches_are_stored_once(client: TestClient, project: ProjectKeys, engine: Engine):
    run = create_run(client, project)
    energy = {"samples": [sample(0), sample(1)]}
    metrics = {"points": [point(1, 0.5), point(2, 0.7)]}
    for _ in range(2):
        client.post(f"/api/v1/runs/{run['id']}/energy", json=energy, headers=project.write)
        client.post(f"/api/v1/runs/{run['id']}/metrics", json=metrics, headers=project.write)
    energy_again = client.post(
        f"/api/v1/runs/{run['id']}/energy", json=energy, headers=project.write
    )
    metrics_again = client.post(
        f"/api/v1/runs/{run['id']}/metrics", json=metrics, headers=project.write
    )
    assert energy_again.json() == {"inserted": 0, "duplicates": 2}
    assert metrics_again.json() == {"inserted": 0, "duplicates": 2}
    assert count(engine, EnergySample) == 2
    assert count(engine, MetricPoint) == 2
    # The running totals counted each sample once too.
    totals = client.get(f"/api/v1/runs/{run['id']}", headers=project.read).json()["totals"]
    assert totals["energy_samples"] == 2
    assert math.isclose(totals["energy_kwh"], 2 * 0.0055, rel_tol=1e-12)
    # A batch mixing stored and new items stores only the new ones.
    mixed = client.post(
        f"/api/v1/runs/{run['id']}/energy",
        json={"samples": [sample(1), sample(2)]},
        headers=project.write,
    )
    assert mixed.json() == {"inserted": 1, "duplicates": 1}
    assert count(engine, EnergySample) == 3


def test_samples_of_different_ranks_do_not_collide(client: TestClient, project: ProjectKeys):
    run = create_run(client, project)
    batch = {"samples": [sample(0, rank=0), sample(0, rank=1)]}
    response = client.post(f"/api/v1/runs/{run['id']}/energy", json=batch, headers=project.write)
    assert response.json() == {"inserted": 2, "duplicates": 0}


def test_metric_series_come_back_exactly(client: TestClient, project: ProjectKeys):
    run = create_run(client, project)
    points = [point(1, 0.51), point(2, 0.73), point(3, 0.8125), point(1, 1.9, name="loss")]
    client.post(f"/api/v1/runs/{run['id']}/metrics", json={"points": points}, headers=project.write)
    accuracy = client.get(
        f"/api/v1/runs/{run['id']}/metrics", params={"name": "accuracy"}, headers=project.read
    ).json()
    assert accuracy["total"] == 3
    assert [(p["step"], p["value"]) for p in accuracy["items"]] == [
        (1, 0.51),
        (2, 0.73),
        (3, 0.8125),
    ]
    assert accuracy["items"][0]["time"].startswith("2026-12-01T10:01:30")
    every = client.get(f"/api/v1/runs/{run['id']}/metrics", headers=project.read).json()
    assert every["total"] == 4


def test_energy_series_is_in_time_order_and_paginated(client: TestClient, project: ProjectKeys):
    run = create_run(client, project)
    client.post(
        f"/api/v1/runs/{run['id']}/energy",
        json={"samples": [sample(2), sample(0), sample(1)]},
        headers=project.write,
    )
    page = client.get(
        f"/api/v1/runs/{run['id']}/energy", params={"limit": 2, "offset": 1}, headers=project.read
    ).json()
    assert page["total"] == 3
    assert [s["seq"] for s in page["items"]] == [1, 2]
    assert page["items"][0]["duration_s"] == 60.0
    # 0.0055 kWh x 50 g/kWh x 1.2 = 0.33 g
    assert math.isclose(page["items"][0]["co2_kg"], 0.00033, rel_tol=1e-9)


def test_update_and_finish_a_run(client: TestClient, project: ProjectKeys):
    run = create_run(client, project)
    updated = client.patch(
        f"/api/v1/runs/{run['id']}",
        json={"samples_processed": 5000, "model_params": 11_000_000, "meta": {"lr": 0.1}},
        headers=project.write,
    ).json()
    assert (updated["samples_processed"], updated["model_params"]) == (5000, 11_000_000)
    assert updated["meta"] == {"lr": 0.1}
    finish = {"status": "finished", "ended_at": "2026-12-01T10:05:00Z", "duration_s": 300.0}
    done = client.post(f"/api/v1/runs/{run['id']}/finish", json=finish, headers=project.write)
    assert done.status_code == 200
    assert (done.json()["status"], done.json()["duration_s"]) == ("finished", 300.0)
    # Re-sending the same finish is harmless; a different ending is a conflict.
    assert (
        client.post(
            f"/api/v1/runs/{run['id']}/finish", json=finish, headers=project.write
        ).status_code
        == 200
    )
    failed = {**finish, "status": "failed"}
    assert (
        client.post(
            f"/api/v1/runs/{run['id']}/finish", json=failed, headers=project.write
        ).status_code
        == 409
    )


def test_joules_per_sample(client: TestClient, project: ProjectKeys):
    run = create_run(client, project)
    client.post(
        f"/api/v1/runs/{run['id']}/energy", json={"samples": [sample(0)]}, headers=project.write
    )
    client.patch(
        f"/api/v1/runs/{run['id']}", json={"samples_processed": 1000}, headers=project.write
    )
    totals = client.get(f"/api/v1/runs/{run['id']}", headers=project.read).json()["totals"]
    # 0.0055 kWh = 19,800 J over 1000 samples = 19.8 J per sample
    assert math.isclose(totals["j_per_sample"], 19.8, rel_tol=1e-12)


def test_list_runs_filters_and_pagination(client: TestClient, project: ProjectKeys):
    create_run(
        client,
        project,
        model="resnet18",
        dataset="cifar10",
        group="sweep-1",
        started_at="2026-12-01T10:00:00Z",
    )
    create_run(
        client,
        project,
        model="resnet50",
        dataset="cifar10",
        group="sweep-1",
        started_at="2026-12-02T10:00:00Z",
        kind="search-trial",
    )
    create_run(
        client,
        project,
        model="resnet50",
        dataset="imagenet",
        task="detection",
        started_at="2026-12-03T10:00:00Z",
    )

    def names(**params: object) -> list[str]:
        body = client.get("/api/v1/runs", params=params, headers=project.read).json()
        return [r["model"] + "/" + r["dataset"] for r in body["items"]]

    assert names() == ["resnet50/imagenet", "resnet50/cifar10", "resnet18/cifar10"]
    assert names(model="resnet50") == ["resnet50/imagenet", "resnet50/cifar10"]
    assert names(dataset="cifar10", group="sweep-1") == ["resnet50/cifar10", "resnet18/cifar10"]
    assert names(task="detection") == ["resnet50/imagenet"]
    assert names(kind="search-trial") == ["resnet50/cifar10"]
    assert names(status="running") == names()
    assert names(status="finished") == []
    assert names(started_after="2026-12-02T00:00:00Z", started_before="2026-12-03T00:00:00Z") == [
        "resnet50/cifar10"
    ]
    assert names(project="vision") == names()
    page = client.get("/api/v1/runs", params={"limit": 1, "offset": 1}, headers=project.read).json()
    assert (page["total"], len(page["items"]), page["items"][0]["model"]) == (3, 1, "resnet50")


def test_totals_by_project_model_and_dataset(client: TestClient, project: ProjectKeys):
    a = create_run(client, project, model="resnet18", dataset="cifar10")
    b = create_run(client, project, model="resnet50", dataset="cifar10")
    c = create_run(client, project, model="resnet50", dataset="imagenet")
    client.post(
        f"/api/v1/runs/{a['id']}/energy", json={"samples": [sample(0)]}, headers=project.write
    )
    client.post(
        f"/api/v1/runs/{b['id']}/energy",
        json={"samples": [sample(0), sample(1)]},
        headers=project.write,
    )
    client.post(
        f"/api/v1/runs/{c['id']}/energy",
        json={"samples": [sample(0), sample(1), sample(2)]},
        headers=project.write,
    )
    client.patch(f"/api/v1/runs/{b['id']}", json={"samples_processed": 2200}, headers=project.write)
    for run, seconds in ((a, 60.0), (b, 120.0)):
        client.post(
            f"/api/v1/runs/{run['id']}/finish",
            json={"ended_at": "2026-12-01T11:00:00Z", "duration_s": seconds},
            headers=project.write,
        )

    by_model = client.get("/api/v1/totals", params={"by": "model"}, headers=project.read).json()
    rows = {r["key"]: r for r in by_model["rows"]}
    assert list(rows) == ["resnet50", "resnet18"]  # most CO2 first
    assert rows["resnet50"]["runs"] == 2
    assert math.isclose(rows["resnet50"]["energy_kwh"], 5 * 0.0055, rel_tol=1e-12)
    assert math.isclose(rows["resnet50"]["co2_kg"], 5 * 0.0055 * 0.05 * 1.2, rel_tol=1e-9)
    assert math.isclose(rows["resnet50"]["gpu_hours"], 5 * 2 / 60, rel_tol=1e-12)
    assert rows["resnet50"]["duration_s"] == 120.0
    # Only run b reported samples: 2 x 0.0055 kWh = 39,600 J over 2200 samples = 18 J.
    assert math.isclose(rows["resnet50"]["j_per_sample"], 18.0, rel_tol=1e-12)
    assert rows["resnet18"]["j_per_sample"] is None

    by_dataset = client.get("/api/v1/totals", params={"by": "dataset"}, headers=project.read).json()
    datasets = {r["key"]: (r["runs"], round(r["energy_kwh"], 9)) for r in by_dataset["rows"]}
    assert datasets == {"imagenet": (1, 0.0165), "cifar10": (2, 0.0165)}

    by_project = client.get("/api/v1/totals", headers=project.read).json()
    assert [(r["key"], r["runs"]) for r in by_project["rows"]] == [("vision", 3)]
    assert math.isclose(by_project["rows"][0]["cpu_kwh"], 6 * 0.001, rel_tol=1e-12)
    assert by_project["rows"][0]["duration_s"] == 180.0

    filtered = client.get(
        "/api/v1/totals", params={"by": "model", "dataset": "imagenet"}, headers=project.read
    ).json()
    assert [(r["key"], r["runs"]) for r in filtered["rows"]] == [("resnet50", 1)]


def test_lineage_parent_and_group(client: TestClient, project: ProjectKeys):
    parent = create_run(client, project, kind="train", group="pretrain-finetune")
    child = create_run(
        client, project, kind="finetune", parent_run_id=parent["id"], group="pretrain-finetune"
    )
    assert child["parent_run_id"] == parent["id"]
    assert child["group"] == "pretrain-finetune"
    missing_parent = client.post(
        "/api/v1/runs", json=run_body(parent_run_id=str(uuid.uuid4())), headers=project.write
    )
    assert missing_parent.status_code == 404
    assert "parent run" in missing_parent.json()["detail"]


def test_dataset_profiles_are_stored_once_per_version(client: TestClient, project: ProjectKeys):
    body = {"name": "toy", "version": "v1", "class_counts": [50, 50, 0, 100]}
    first = client.post("/api/v1/datasets/profiles", json=body, headers=project.write)
    again = client.post("/api/v1/datasets/profiles", json=body, headers=project.write)
    assert (first.status_code, again.status_code) == (201, 200)
    profile = first.json()
    # p = (1/4, 1/4, 1/2): H = 2·(1/4·2) + 1/2·1 = 1.5 bits; the empty class does not count.
    assert math.isclose(profile["entropy_bits"], 1.5, rel_tol=1e-12)
    assert (profile["num_classes"], profile["sample_count"]) == (3, 200)
    changed = client.post(
        "/api/v1/datasets/profiles",
        json={**body, "class_counts": [10, 10, 0, 100]},
        headers=project.write,
    )
    assert changed.status_code == 409
    uniform = client.post(
        "/api/v1/datasets/profiles",
        json={"name": "imagenet", "num_classes": 1000},
        headers=project.write,
    )
    assert math.isclose(uniform.json()["entropy_bits"], math.log2(1000), rel_tol=1e-12)
    listed = client.get("/api/v1/datasets/profiles", headers=project.read).json()
    assert [p["name"] for p in listed] == ["imagenet", "toy"]


# On SQLite a writer's BEGIN IMMEDIATE already waits for the previous commit, so only
# PostgreSQL can show an answer that overtakes its commit.
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_write_is_committed_before_its_answer_is_sent(
    settings: Settings, engine: Engine, project: ProjectKeys
):
    # Slow every commit down: an answer sent before its commit would let the next request
    # miss the run it was just told exists.
    app = create_app(settings, engine)
    event.listen(app.state.write_sessions, "before_commit", lambda _session: time.sleep(0.3))
    with serving(app) as url:
        for _ in range(3):
            run = httpx.post(f"{url}/api/v1/runs", json=run_body(), headers=project.write)
            assert run.status_code == 201
            response = httpx.post(
                f"{url}/api/v1/runs/{run.json()['id']}/metrics",
                json={"points": [point(1, 0.5)]},
                headers=project.write,
            )
            assert response.status_code == 200, response.text


def test_quiet_runs_are_marked_crashed_and_a_heartbeat_revives_them(
    settings: Settings, engine: Engine, project: ProjectKeys
):
    app = create_app(settings.model_copy(update={"heartbeat_timeout_s": 1.0}), engine)
    with TestClient(app) as client:
        quiet = client.post("/api/v1/runs", json=run_body(), headers=project.write).json()
        alive = client.post("/api/v1/runs", json=run_body(), headers=project.write).json()
        done = client.post("/api/v1/runs", json=run_body(), headers=project.write).json()
        client.post(
            f"/api/v1/runs/{done['id']}/finish",
            json={"ended_at": "2026-12-01T11:00:00Z", "duration_s": 1.0},
            headers=project.write,
        )
        deadline = time.monotonic() + 10
        while True:
            client.post(f"/api/v1/runs/{alive['id']}/heartbeat", headers=project.write)
            status = client.get(f"/api/v1/runs/{quiet['id']}", headers=project.read).json()
            if status["status"] == "crashed" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status["status"] == "crashed"
        states = {
            r["id"]: r["status"]
            for r in client.get("/api/v1/runs", headers=project.read).json()["items"]
        }
        assert states[alive["id"]] == "running" and states[done["id"]] == "finished"
        # Data from a later flush is stored without reviving it; a heartbeat revives it.
        response = client.post(
            f"/api/v1/runs/{quiet['id']}/energy",
            json={"samples": [sample(0)]},
            headers=project.write,
        )
        assert response.json()["inserted"] == 1
        assert (
            client.get(f"/api/v1/runs/{quiet['id']}", headers=project.read).json()["status"]
            == "crashed"
        )
        revived = client.post(f"/api/v1/runs/{quiet['id']}/heartbeat", headers=project.write)
        assert revived.json()["status"] == "running"


def test_creation_cost_counts_the_search_and_the_pretraining_once(
    client: TestClient, project: ProjectKeys, other_project: ProjectKeys
):
    def run_with(keys: ProjectKeys, samples: int, **fields: object) -> str:
        run = create_run(client, keys, **fields)
        if samples:
            stored = client.post(
                f"/api/v1/runs/{run['id']}/energy",
                json={"samples": [sample(i) for i in range(samples)]},
                headers=keys.write,
            )
            assert stored.json()["inserted"] == samples
        return str(run["id"])

    pretrain = run_with(project, 2, name="pretrain", group="pretrain-sweep")
    pretrain_trial = run_with(project, 1, name="pretrain-lr-2", group="pretrain-sweep")
    trials = [run_with(project, 1, name=f"trial-{i}", group="nas") for i in range(3)]
    final = run_with(project, 2, name="final", group="nas", parent_run_id=pretrain)
    run_with(project, 5, name="unrelated", group="other-search")
    run_with(other_project, 4, name="same group, other project", group="nas")

    cost = client.get(f"/api/v1/runs/{final}/cost", headers=project.read).json()
    # Each sample: 0.0055 kWh, 0.0055 x 50 g/kWh x 1.2 = 0.33 g CO2e, 60 s x 2 GPUs = 1/30 h.
    # Final: 2 samples. Creation: final 2 + pretrain 2 + its sweep's other trial 1 + the three
    # NAS trials 1 each = 8 samples; the unrelated search and the other project's run are out.
    assert cost["final"] == {
        "energy_kwh": pytest.approx(0.011, rel=1e-12),
        "co2_kg": pytest.approx(0.00066, rel=1e-9),
        "gpu_hours": pytest.approx(2 / 30, rel=1e-12),
        "runs": 1,
    }
    assert cost["creation"] == {
        "energy_kwh": pytest.approx(0.044, rel=1e-12),
        "co2_kg": pytest.approx(0.00264, rel=1e-9),
        "gpu_hours": pytest.approx(8 / 30, rel=1e-12),
        "runs": 6,
    }
    assert cost["energy_ratio"] == pytest.approx(4.0, rel=1e-12)
    assert cost["co2_ratio"] == pytest.approx(4.0, rel=1e-12)
    relations = {run["id"]: run["relation"] for run in cost["runs"]}
    assert relations == {
        final: "final",
        pretrain: "ancestor",
        pretrain_trial: "trial",
        **dict.fromkeys(trials, "trial"),
    }
    # A run of its own, with no group and no parent, cost only itself; a run that used no
    # energy has no ratio rather than a division by zero.
    alone = run_with(project, 1, name="alone")
    assert client.get(f"/api/v1/runs/{alone}/cost", headers=project.read).json()[
        "energy_ratio"
    ] == pytest.approx(1.0)
    empty = run_with(project, 0, name="empty")
    assert (
        client.get(f"/api/v1/runs/{empty}/cost", headers=project.read).json()["energy_ratio"]
        is None
    )
