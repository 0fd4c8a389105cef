"""Issue 16, the input side: totals that never lie, and ordinary-looking input that is a 4xx.

Each test reproduces one finding of the issue (numbered as there) on both databases.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from greenaudit.api.app import create_app
from greenaudit.settings import Settings

from ..conftest import ProjectKeys, create_project
from .helpers import run_body, sample

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)


def codecarbon_key(keys: ProjectKeys) -> dict[str, str]:
    return {"x-api-token": keys.write["Authorization"].split()[1]}


def emission(run_id: str, **overrides: Any) -> dict[str, Any]:
    """A 10-second CodeCarbon interval: cpu 2e-5 kWh, ram 1e-5 kWh, 1.5e-6 kg (50 g/kWh)."""
    body: dict[str, Any] = {
        "timestamp": (T0 + timedelta(seconds=10)).isoformat(),
        "run_id": run_id,
        "duration": 10,
        "emissions_sum": 1.5e-6,
        "emissions_rate": 1.5e-7,
        "cpu_power": 7.2,
        "gpu_power": 0.0,
        "ram_power": 3.6,
        "cpu_energy": 2e-5,
        "gpu_energy": 0.0,
        "ram_energy": 1e-5,
        "energy_consumed": 3e-5,
    }
    body.update(overrides)
    return body


def stored_rows(client: TestClient, keys: ProjectKeys, run_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        page = client.get(
            f"/api/v1/runs/{run_id}/energy",
            params={"limit": 1000, "offset": len(rows)},
            headers=keys.read,
        ).json()
        rows += page["items"]
        if len(rows) >= page["total"]:
            return rows


# -- Finding 3: totals only ever add rows that were inserted ---------------------------------


def _random_energy_batch(rng: random.Random) -> dict[str, Any]:
    # Seqs from a small range, so that batches collide with each other and with CodeCarbon's.
    # Content depends on the seed's draw, so a re-sent key is sometimes identical (a duplicate)
    # and sometimes different (a 409): neither may move the totals.
    samples = []
    for _ in range(rng.randint(1, 4)):
        seq, rank = rng.randint(0, 12), rng.choice([0, 0, 1])
        samples.append(sample(seq, rank=rank, cpu_kwh=rng.choice([0.001, 0.002]), ram_kwh=0.0005))
    unique = {(s["rank"], s["seq"]): s for s in samples}
    return {"samples": list(unique.values())}


def _random_emission(rng: random.Random, run_id: str) -> dict[str, Any]:
    at = T0 + timedelta(seconds=rng.randint(10, 900))
    cpu, ram = rng.choice([1e-5, 2e-5, 4e-5]), rng.choice([0.0, 1e-5])
    return emission(
        run_id,
        timestamp=at.isoformat(),
        cpu_energy=cpu,
        ram_energy=ram,
        energy_consumed=cpu + ram,
        emissions_sum=(cpu + ram) * 0.05,  # 50 g/kWh
    )


@pytest.mark.parametrize("seed", range(6))
def test_run_totals_equal_the_stored_rows_over_random_interleavings(
    client: TestClient, project: ProjectKeys, seed: int
) -> None:
    """Property: after every post of a random interleaving of /energy batches and CodeCarbon
    emissions, the run's totals are the sums over the rows /energy returns."""
    rng = random.Random(seed)
    run_id = client.post("/api/v1/runs", json=run_body(), headers=project.write).json()["id"]
    for step in range(14):
        if rng.random() < 0.5:
            answer = client.post(
                f"/api/v1/runs/{run_id}/energy",
                json=_random_energy_batch(rng),
                headers=project.write,
            )
            assert answer.status_code in (200, 409), answer.text
        else:
            answer = client.post(
                "/codecarbon/emissions",
                json=_random_emission(rng, run_id),
                headers=codecarbon_key(project),
            )
            assert answer.status_code == 201, answer.text
        rows = stored_rows(client, project, run_id)
        totals = client.get(f"/api/v1/runs/{run_id}", headers=project.read).json()["totals"]
        where = f"seed {seed}, step {step}"
        assert totals["energy_samples"] == len(rows), where
        for component in ("cpu", "gpu", "ram"):
            expected = sum(r[f"{component}_kwh"] or 0.0 for r in rows)
            assert totals[f"{component}_kwh"] == pytest.approx(expected, rel=1e-12, abs=1e-15), (
                where,
                component,
            )
        expected_co2 = sum(r["co2_kg"] for r in rows)
        assert totals["co2_kg"] == pytest.approx(expected_co2, rel=1e-12, abs=1e-15), where


def test_codecarbon_takes_the_next_free_seq_not_the_sample_count(
    client: TestClient, project: ProjectKeys
) -> None:
    """The issue's repro: rank 0 holds seq 5-9 from /energy; three emissions follow."""
    run_id = client.post("/api/v1/runs", json=run_body(), headers=project.write).json()["id"]
    batch = {
        "samples": [sample(seq, gpu_kwh=None, gpu_method=None, gpu_count=0) for seq in range(5, 10)]
    }
    assert client.post(
        f"/api/v1/runs/{run_id}/energy", json=batch, headers=project.write
    ).json() == {
        "inserted": 5,
        "duplicates": 0,
    }
    seqs = [
        client.post(
            "/codecarbon/emissions", json=emission(run_id), headers=codecarbon_key(project)
        ).json()["seq"]
        for _ in range(3)
    ]
    assert seqs == [10, 11, 12]
    totals = client.get(f"/api/v1/runs/{run_id}", headers=project.read).json()["totals"]
    # 5 samples of 0.001 kWh cpu, then 3 emissions of 2e-5 kWh cpu.
    assert totals["energy_samples"] == 8
    assert totals["cpu_kwh"] == pytest.approx(5 * 0.001 + 3 * 2e-5, rel=1e-12)
    assert len(stored_rows(client, project, run_id)) == 8


# -- Finding 6: CodeCarbon cannot set an intensity no grid has -------------------------------


def _codecarbon_run(client: TestClient, keys: ProjectKeys) -> str:
    created = client.post(
        "/codecarbon/runs",
        json={"timestamp": T0.isoformat(), "experiment_id": str(uuid.uuid4())},
        headers=codecarbon_key(keys),
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


@pytest.mark.parametrize(
    ("cpu_energy", "emissions_sum"),
    [(1e-300, 1e12), (0.001, 0.0025)],  # infinity; 2500 g/kWh, beyond any grid
)
def test_codecarbon_cannot_set_an_intensity_beyond_any_grid(
    client: TestClient, project: ProjectKeys, cpu_energy: float, emissions_sum: float
) -> None:
    run_id = _codecarbon_run(client, project)
    refused = client.post(
        "/codecarbon/emissions",
        json=emission(
            run_id,
            cpu_energy=cpu_energy,
            ram_energy=0.0,
            energy_consumed=cpu_energy,
            emissions_sum=emissions_sum,
        ),
        headers=codecarbon_key(project),
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"] == "validation_error"
    assert "g/kWh" in str(refused.json()["detail"])
    # Nothing was stored; a plausible report afterwards sets the intensity: 1.5e-6 kg over
    # 3e-5 kWh is 50 g/kWh.
    ok = client.post(
        "/codecarbon/emissions", json=emission(run_id), headers=codecarbon_key(project)
    )
    assert ok.status_code == 201, ok.text
    run = client.get(f"/api/v1/runs/{run_id}", headers=project.read).json()
    assert run["carbon_intensity_g_per_kwh"] == pytest.approx(50.0, rel=1e-12)
    assert run["totals"]["energy_samples"] == 1
    assert run["totals"]["co2_kg"] == pytest.approx(1.5e-6, rel=1e-12)
    project_totals = client.get("/api/v1/totals", headers=project.read)
    assert project_totals.status_code == 200
    assert math.isfinite(project_totals.json()["rows"][0]["co2_kg"])


# -- Findings 7 and 8: ordinary-looking input is a 4xx with a message ------------------------


def send_json(client: TestClient, method: str, url: str, body: Any, headers: dict[str, str]) -> Any:
    """Send ``body`` as JSON with non-ASCII escaped, as most clients do: a lone surrogate then
    travels as ``\\udfff``, which httpx's own encoding (UTF-8) cannot send at all."""
    return client.request(
        method,
        url,
        content=json.dumps(body),
        headers={**headers, "Content-Type": "application/json"},
    )


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "meta",
    [{"note": "\udfff"}, {"\ud800": 1}, {"list": ["ok", ["\udc00"]]}, _nested(500), _nested(33)],
    ids=["surrogate-value", "surrogate-key", "surrogate-in-list", "500-deep", "33-deep"],
)
def test_meta_that_cannot_be_stored_is_refused_at_create_and_patch(
    client: TestClient, project: ProjectKeys, meta: dict[str, Any]
) -> None:
    created = send_json(client, "POST", "/api/v1/runs", run_body(meta=meta), project.write)
    assert created.status_code == 422, created.text
    assert created.json()["error"] == "validation_error"
    run = run_body()
    assert client.post("/api/v1/runs", json=run, headers=project.write).status_code == 201
    patched = send_json(client, "PATCH", f"/api/v1/runs/{run['id']}", {"meta": meta}, project.write)
    assert patched.status_code == 422, patched.text
    assert client.get(f"/api/v1/runs/{run['id']}", headers=project.read).json()["meta"] == {}


def test_meta_32_levels_deep_is_stored(client: TestClient, project: ProjectKeys) -> None:
    run = run_body(meta=_nested(32))
    created = client.post("/api/v1/runs", json=run, headers=project.write)
    assert created.status_code == 201, created.text
    assert created.json()["meta"] == _nested(32)


def test_an_emission_reaching_before_year_one_is_refused(
    client: TestClient, project: ProjectKeys
) -> None:
    run_id = _codecarbon_run(client, project)
    refused = client.post(
        "/codecarbon/emissions",
        json=emission(run_id, timestamp="0001-01-02T00:00:00Z", duration=1e9),
        headers=codecarbon_key(project),
    )
    assert refused.status_code == 422, refused.text
    assert "year 1" in str(refused.json()["detail"])


def test_a_profile_whose_counts_overflow_a_count_is_refused(
    client: TestClient, project: ProjectKeys
) -> None:
    refused = client.post(
        "/api/v1/datasets/profiles",
        json={"name": "huge", "class_counts": [2**53] * 1024},
        headers=project.write,
    )
    assert refused.status_code == 422, refused.text
    assert "2**53" in str(refused.json()["detail"])
    # At the bound, the profile is stored.
    at_bound = client.post(
        "/api/v1/datasets/profiles",
        json={"name": "huge", "class_counts": [2**52, 2**52]},
        headers=project.write,
    )
    assert at_bound.status_code == 201, at_bound.text
    assert at_bound.json()["sample_count"] == 2**53
    assert at_bound.json()["entropy_bits"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "x", ["energy_kwh", "co2_kg", "flops", "gpu_hours", "model_params", "dataset_size"]
)
def test_curves_page_of_a_project_with_nothing_to_plot(
    client: TestClient, project: ProjectKeys, x: str
) -> None:
    empty = client.get("/dashboards/curves", params={"x": x}, headers=project.read)
    assert empty.status_code == 200, empty.text[-2000:]
    assert "Diminishing returns" in empty.text
    # A CPU-only project with accuracy but no FLOPs or GPU time has no point on those axes.
    run = run_body(hardware={"node": "cpu-box", "gpu_count": 0})
    client.post("/api/v1/runs", json=run, headers=project.write)
    cpu_only = sample(0, gpu_kwh=None, gpu_method=None, gpu_count=0)
    client.post(
        f"/api/v1/runs/{run['id']}/energy", json={"samples": [cpu_only]}, headers=project.write
    )
    point = {"name": "accuracy", "step": 1, "value": 0.9, "time": T0.isoformat()}
    client.post(
        f"/api/v1/runs/{run['id']}/metrics", json={"points": [point]}, headers=project.write
    )
    cpu = client.get("/dashboards/curves", params={"x": x}, headers=project.read)
    assert cpu.status_code == 200, cpu.text[-2000:]


# -- Finding 15: another project's run id is not found, like everything else of theirs --------


def test_a_run_id_of_another_project_is_not_found(
    client: TestClient, project: ProjectKeys, other_project: ProjectKeys
) -> None:
    theirs = run_body()
    assert client.post("/api/v1/runs", json=theirs, headers=other_project.write).status_code == 201
    mine = client.post("/api/v1/runs", json=theirs, headers=project.write)
    never_made = client.get(f"/api/v1/runs/{uuid.uuid4()}", headers=project.read)
    assert mine.status_code == 404, mine.text
    assert mine.json()["error"] == never_made.json()["error"] == "not_found"
    assert "already" not in mine.json()["detail"] and "in use" not in mine.json()["detail"]
    assert client.get("/api/v1/runs", headers=project.read).json()["total"] == 0


# -- Finding 16: the smaller gaps --------------------------------------------------------------


@pytest.fixture
def hooked(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    """The service allowing loopback webhooks, so only the port can be wrong."""
    allowing = settings.model_copy(update={"webhook_allow_private": True})
    with TestClient(create_app(allowing, engine), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize("port", [0, 65536, 99999])
def test_webhook_ports_outside_1_to_65535_are_refused(hooked: TestClient, port: int) -> None:
    keys = create_project(hooked, "hooked")
    secret = "a-secret-of-thirty-two-characters"
    refused = hooked.put(
        "/api/v1/webhook",
        json={"url": f"http://127.0.0.1:{port}/hook", "secret": secret},
        headers=keys.write,
    )
    assert refused.status_code == 422, refused.text
    assert "port" in refused.json()["detail"]
    assert hooked.get("/api/v1/webhook", headers=keys.read).status_code == 404
    fine = hooked.put(
        "/api/v1/webhook",
        json={"url": "http://127.0.0.1:65535/hook", "secret": secret},
        headers=keys.write,
    )
    assert fine.status_code == 200, fine.text


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_refused_cors_preflight_answers_the_error_shape(
    settings: Settings, engine: Engine
) -> None:
    allowing = settings.model_copy(update={"cors_origins": ["https://dash.example.org"]})
    with TestClient(create_app(allowing, engine), raise_server_exceptions=False) as client:
        refused = client.options(
            "/api/v1/runs",
            headers={
                "Origin": "https://evil.example.com",
                "Access-Control-Request-Method": "GET",
            },
        )
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/json"
    assert refused.json()["error"] == "cors_refused"
    assert "origin" in refused.json()["detail"].lower()
    assert "access-control-allow-origin" not in refused.headers


def test_samples_that_begin_after_a_run_finished_are_refused(
    client: TestClient, project: ProjectKeys
) -> None:
    """A finished run's totals are final: a sample measured after its end is a 409
    ``run_finished``. What was measured before the end still goes in whenever it arrives: the
    spool re-sends batches, and the last interval ends when the meter stops, after ended_at."""
    run = run_body()
    client.post("/api/v1/runs", json=run, headers=project.write)
    first = {"samples": [sample(0), sample(1)]}
    assert client.post(
        f"/api/v1/runs/{run['id']}/energy", json=first, headers=project.write
    ).json() == {
        "inserted": 2,
        "duplicates": 0,
    }
    # Ended at 10:02:30, in the middle of seq 2 (10:02-10:03).
    finish = {"ended_at": "2026-12-01T10:02:30+00:00", "duration_s": 150.0}
    assert (
        client.post(
            f"/api/v1/runs/{run['id']}/finish", json=finish, headers=project.write
        ).status_code
        == 200
    )

    late = client.post(
        f"/api/v1/runs/{run['id']}/energy",
        json={"samples": [sample(2), sample(3)]},  # seq 3 began at 10:03, after the end
        headers=project.write,
    )
    assert late.status_code == 409, late.text
    assert late.json()["error"] == "run_finished"
    assert "seq 3" in late.json()["detail"]

    # The spool re-sends the first batch, and sends the interval the end fell in.
    resent = client.post(f"/api/v1/runs/{run['id']}/energy", json=first, headers=project.write)
    assert resent.json() == {"inserted": 0, "duplicates": 2}
    last = client.post(
        f"/api/v1/runs/{run['id']}/energy", json={"samples": [sample(2)]}, headers=project.write
    )
    assert last.json() == {"inserted": 1, "duplicates": 0}
    totals = client.get(f"/api/v1/runs/{run['id']}", headers=project.read).json()["totals"]
    assert totals["energy_samples"] == 3
    assert totals["energy_kwh"] == pytest.approx(3 * 0.0055, rel=1e-12)


def test_a_codecarbon_run_the_service_finished_takes_its_next_report(
    client: TestClient, project: ProjectKeys, engine: Engine
) -> None:
    """CodeCarbon never finishes a run; the service ends a quiet one. A later report was still
    measured, so it is stored and the run runs again."""
    from greenaudit.api.db import make_session_factory
    from greenaudit.api.runs.service import mark_crashed

    run_id = _codecarbon_run(client, project)
    with make_session_factory(engine, writer=True)() as session, session.begin():
        mark_crashed(session, timeout_s=-1.0)
    assert client.get(f"/api/v1/runs/{run_id}", headers=project.read).json()["status"] == "finished"
    later = emission(
        run_id, timestamp=(datetime.now(timezone.utc) + timedelta(seconds=5)).isoformat()
    )
    stored = client.post("/codecarbon/emissions", json=later, headers=codecarbon_key(project))
    assert stored.status_code == 201, stored.text
    run = client.get(f"/api/v1/runs/{run_id}", headers=project.read).json()
    assert (run["status"], run["ended_at"], run["totals"]["energy_samples"]) == ("running", None, 1)
