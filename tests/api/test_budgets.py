"""Budgets: spent, forecast and remaining, by hand, on both databases; and their validation."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient

from greenaudit.api.budgets.schemas import Period
from greenaudit.api.budgets.service import period_bounds

from ..conftest import ProjectKeys
from .helpers import sample
from .test_runs import create_run

# Each helper sample is 0.0055 kWh; at 50 g/kWh and PUE 1.2 that is 0.0055 x 0.06 kg CO2e.
KWH = 0.0055
KG_PER_KWH = 0.06


def send_samples(
    client: TestClient, keys: ProjectKeys, run_id: str, count: int, first: int = 0
) -> None:
    response = client.post(
        f"/api/v1/runs/{run_id}/energy",
        json={"samples": [sample(i) for i in range(first, first + count)]},
        headers=keys.write,
    )
    assert response.json()["inserted"] == count, response.text


@pytest.fixture
def sweep(client: TestClient, project: ProjectKeys, other_project: ProjectKeys) -> dict[str, str]:
    """A finished run and a running one in group 'sweep', with runs that must not count."""
    finished = create_run(client, project, name="trial-1", group="sweep")["id"]
    send_samples(client, project, finished, 4)
    client.post(
        f"/api/v1/runs/{finished}/finish",
        json={"ended_at": "2026-12-01T11:00:00+00:00", "duration_s": 240},
        headers=project.write,
    ).raise_for_status()
    running = create_run(client, project, name="trial-2", group="sweep")["id"]
    client.patch(
        f"/api/v1/runs/{running}", json={"total_steps": 100}, headers=project.write
    ).raise_for_status()
    send_samples(client, project, running, 4)  # steps 0, 10, 20, 30
    elsewhere = create_run(client, project, name="other", group="other-sweep")["id"]
    send_samples(client, project, elsewhere, 10)
    foreign = create_run(client, other_project, name="theirs", group="sweep")["id"]
    send_samples(client, other_project, foreign, 10)
    return {"finished": finished, "running": running, "elsewhere": elsewhere}


def test_a_group_budget_shows_spent_forecast_and_remaining(
    client: TestClient, project: ProjectKeys, sweep: dict[str, str]
):
    created = client.post(
        "/api/v1/budgets",
        json={"group": "sweep", "limit_kwh": 0.05, "limit_kg_co2": 0.01},
        headers=project.write,
    )
    assert created.status_code == 201, created.text
    budget = created.json()
    # Spent: the two sweep runs' 8 samples. The other group and the other project are out.
    assert budget["spent"]["kwh"] == pytest.approx(8 * KWH)
    assert budget["spent"]["kg_co2"] == pytest.approx(8 * KWH * KG_PER_KWH)
    # The running run: step 0 is placed half-way through the first sample (0.00275 kWh); steps
    # 10, 20, 30 came ten to a sample, so each is 10/11 of the way through its sample: 0.0105,
    # 0.016, 0.0215 kWh. Rate (0.0215 - 0.00275) / 30 = 0.000625 kWh a step; at step 30 of 100
    # it is forecast to end at 0.0215 + 70 x 0.000625 = 0.06525 kWh, 0.04325 more than spent.
    assert budget["forecast"]["kwh"] == pytest.approx(8 * KWH + 0.04325)
    assert budget["forecast"]["kg_co2"] == pytest.approx((8 * KWH + 0.04325) * KG_PER_KWH)
    assert budget["remaining_kwh"] == pytest.approx(0.05 - 0.044)
    assert budget["remaining_kg_co2"] == pytest.approx(0.01 - 0.00264)
    assert (budget["exceeded"], budget["forecast_exceeded"]) == (False, True)
    assert (budget["runs"], budget["running_runs"], budget["running_without_forecast"]) == (2, 1, 0)
    assert (budget["group"], budget["period"], budget["period_start"]) == ("sweep", "all", None)

    # Posting the same scope again replaces the limits: 200, one budget.
    lowered = client.post(
        "/api/v1/budgets", json={"group": "sweep", "limit_kwh": 0.04}, headers=project.write
    )
    assert lowered.status_code == 200
    assert lowered.json()["id"] == budget["id"]
    assert lowered.json()["limit_kg_co2"] is None
    assert lowered.json()["exceeded"] is True  # 0.044 > 0.04
    assert lowered.json()["remaining_kwh"] == pytest.approx(-0.004)
    listed = client.get("/api/v1/budgets", headers=project.read).json()
    assert [b["id"] for b in listed] == [budget["id"]]


def test_a_project_budget_counts_every_group(
    client: TestClient, project: ProjectKeys, sweep: dict[str, str]
):
    budget = client.post(
        "/api/v1/budgets", json={"limit_kg_co2": 1.0}, headers=project.write
    ).json()
    # 4 + 4 + 10 samples of this project; the running run adds 0.04325 kWh to the forecast.
    assert budget["spent"]["kwh"] == pytest.approx(18 * KWH)
    assert budget["forecast"]["kwh"] == pytest.approx(18 * KWH + 0.04325)
    assert budget["group"] is None and budget["runs"] == 3
    assert budget["remaining_kwh"] is None
    assert budget["remaining_kg_co2"] == pytest.approx(1.0 - 18 * KWH * KG_PER_KWH)


def test_the_run_forecast_and_the_budgets_over_it(
    client: TestClient, project: ProjectKeys, sweep: dict[str, str]
):
    client.post("/api/v1/budgets", json={"limit_kwh": 1.0}, headers=project.write)
    client.post(
        "/api/v1/budgets", json={"group": "sweep", "limit_kwh": 0.05}, headers=project.write
    )
    client.post(
        "/api/v1/budgets", json={"group": "other-sweep", "limit_kwh": 9.0}, headers=project.write
    )
    answer = client.get(f"/api/v1/runs/{sweep['running']}/forecast", headers=project.read)
    assert answer.status_code == 200, answer.text
    forecast = answer.json()
    energy = forecast["energy"]
    assert (energy["step"], energy["total_steps"], energy["progress"]) == (30, 100, 0.3)
    assert energy["spent_kwh"] == pytest.approx(4 * KWH)
    assert energy["kwh_per_step"] == pytest.approx(0.000625)
    assert energy["forecast_kwh"] == pytest.approx(0.06525)
    assert energy["forecast_kg_co2"] == pytest.approx(0.06525 * KG_PER_KWH)
    # Increments 0.00775, 0.0055, 0.0055 kWh over 10 steps each, 3 blocks: residuals 0.0015,
    # -0.00075, -0.00075, σ² = (2.25e-6 + 2 x 5.625e-7) / 10 / 2 = 1.6875e-7 a step. R = 70,
    # S = 30: 1.6875e-7 x (70 + 4900/30) = 3.9375e-5. The block rates do not shift beyond that
    # noise; the 5% pace floor adds (0.05 x 0.000625 x 70)^2 = 4.7852e-6. Half-width
    # t(0.975, 2) = 4.302653 x sqrt(4.41602e-5) = 0.028592 kWh.
    assert energy["high_kwh"] == pytest.approx(0.06525 + 0.028592, abs=1e-6)
    assert energy["low_kwh"] == pytest.approx(0.06525 - 0.028592, abs=1e-6)
    assert energy["high_kg_co2"] == pytest.approx(energy["high_kwh"] * KG_PER_KWH)
    # The project's and the sweep's budgets, not the other group's.
    assert sorted(b["limit_kwh"] for b in forecast["budgets"]) == [0.05, 1.0]
    assert forecast["plateau"] is None and "accuracy" in forecast["plateau_reason"]

    ended = client.get(f"/api/v1/runs/{sweep['finished']}/forecast", headers=project.read).json()
    assert ended["energy"] is None and "finished" in ended["energy_reason"]
    unplanned = client.get(f"/api/v1/runs/{sweep['elsewhere']}/forecast", headers=project.read)
    assert "total_steps" in unplanned.json()["energy_reason"]


def test_a_run_planned_at_zero_steps_or_still_at_step_0_has_no_forecast(
    client: TestClient, project: ProjectKeys, sweep: dict[str, str]
):
    client.post(
        "/api/v1/budgets", json={"group": "sweep", "limit_kwh": 0.05}, headers=project.write
    )
    running = sweep["running"]
    client.patch(
        f"/api/v1/runs/{running}", json={"total_steps": 0}, headers=project.write
    ).raise_for_status()
    answer = client.get(f"/api/v1/runs/{running}/forecast", headers=project.read)
    assert answer.status_code == 200, answer.text
    assert answer.json()["energy"] is None
    assert "at least 1" in answer.json()["energy_reason"]
    budgets = client.get("/api/v1/budgets", headers=project.read)
    assert budgets.status_code == 200, budgets.text
    # Nothing is forecast for the run: the forecast is what was spent, 8 samples.
    assert budgets.json()[0]["forecast"]["kwh"] == pytest.approx(8 * KWH)
    assert budgets.json()[0]["running_without_forecast"] == 1

    at_zero = create_run(client, project, name="trial-3", group="sweep")["id"]
    client.patch(
        f"/api/v1/runs/{at_zero}", json={"total_steps": 100}, headers=project.write
    ).raise_for_status()
    samples = [{**sample(i), "step": 0} for i in range(3)]
    client.post(
        f"/api/v1/runs/{at_zero}/energy", json={"samples": samples}, headers=project.write
    ).raise_for_status()
    answer = client.get(f"/api/v1/runs/{at_zero}/forecast", headers=project.read)
    assert answer.status_code == 200, answer.text
    assert answer.json()["energy"] is None and "only step 0" in answer.json()["energy_reason"]


def test_a_calendar_period_counts_runs_started_in_it(client: TestClient, project: ProjectKeys):
    now = datetime.now(timezone.utc)
    this_month = create_run(client, project, name="now", started_at=now.isoformat())["id"]
    send_samples(client, project, this_month, 2)
    long_ago = create_run(client, project, name="old", started_at="2020-01-15T00:00:00+00:00")
    send_samples(client, project, long_ago["id"], 3)
    monthly = client.post(
        "/api/v1/budgets", json={"period": "month", "limit_kwh": 0.5}, headers=project.write
    ).json()
    assert monthly["spent"]["kwh"] == pytest.approx(2 * KWH)
    start, end = period_bounds(Period.month, now)
    assert datetime.fromisoformat(monthly["period_start"]) == start
    assert datetime.fromisoformat(monthly["period_end"]) == end
    whole = client.post(
        "/api/v1/budgets", json={"period": "all", "limit_kwh": 0.5}, headers=project.write
    ).json()
    assert whole["spent"]["kwh"] == pytest.approx(5 * KWH)


def test_period_bounds_are_utc_calendar_periods():
    wednesday = datetime(2026, 12, 2, 15, 30, tzinfo=timezone.utc)
    day = datetime(2026, 12, 2, tzinfo=timezone.utc)
    assert period_bounds(Period.day, wednesday) == (day, datetime(2026, 12, 3, tzinfo=timezone.utc))
    assert period_bounds(Period.week, wednesday) == (
        datetime(2026, 11, 30, tzinfo=timezone.utc),  # the Monday
        datetime(2026, 12, 7, tzinfo=timezone.utc),
    )
    assert period_bounds(Period.month, wednesday) == (
        datetime(2026, 12, 1, tzinfo=timezone.utc),
        datetime(2027, 1, 1, tzinfo=timezone.utc),  # across the year's end
    )
    assert period_bounds(Period.all, wednesday) == (None, None)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, "limit_kg_co2, limit_kwh"),
        ({"limit_kwh": -1}, "greater than 0"),
        ({"limit_kwh": 0}, "greater than 0"),
        ({"limit_kwh": 1, "period": "fortnight"}, "period"),
        ({"limit_kwh": 1, "group": ""}, "group"),
        ({"limit_kwh": 1, "colour": "green"}, "colour"),
    ],
)
def test_bad_budgets_get_a_clear_422(
    client: TestClient, project: ProjectKeys, body: dict, expected: str
):
    response = client.post("/api/v1/budgets", json=body, headers=project.write)
    assert response.status_code == 422
    assert expected in response.text
    assert client.get("/api/v1/budgets", headers=project.read).json() == []


def test_budgets_belong_to_their_project(
    client: TestClient, project: ProjectKeys, other_project: ProjectKeys
):
    budget = client.post("/api/v1/budgets", json={"limit_kwh": 1}, headers=project.write).json()
    for method in ("GET", "DELETE"):
        answer = client.request(
            method, f"/api/v1/budgets/{budget['id']}", headers=other_project.write
        )
        assert answer.status_code == 404
    assert (
        client.post("/api/v1/budgets", json={"limit_kwh": 1}, headers=project.read).status_code
        == 403
    )
    assert (
        client.delete(f"/api/v1/budgets/{budget['id']}", headers=project.write).status_code == 204
    )
    assert client.get(f"/api/v1/budgets/{budget['id']}", headers=project.read).status_code == 404


def test_a_project_created_with_a_budget_has_it(client: TestClient):
    from ..conftest import ADMIN

    created = client.post(
        "/api/v1/projects", json={"name": "budgeted", "budget_kg_co2": 50}, headers=ADMIN
    ).json()
    read = {"Authorization": f"Bearer {created['read_key']['key']}"}
    [budget] = client.get("/api/v1/budgets", headers=read).json()
    assert (budget["group"], budget["period"], budget["limit_kg_co2"]) == (None, "all", 50.0)
