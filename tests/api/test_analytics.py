"""Analytics over the API, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from greenaudit.catalog import import_catalog, load_catalog

from ..conftest import ADMIN_TOKEN, LiveServer, ProjectKeys
from .helpers import cpu_sample, run_body, sample

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)


def add_run(
    client: TestClient,
    keys: ProjectKeys,
    score: float,
    *,
    kwh_per_sample: float = 0.001,
    samples: int = 1,
    metric: str = "accuracy",
    **fields: object,
) -> str:
    run = client.post("/api/v1/runs", json=run_body(**fields), headers=keys.write).json()
    energy = [cpu_sample(i, kwh_per_sample) for i in range(samples)]
    client.post(f"/api/v1/runs/{run['id']}/energy", json={"samples": energy}, headers=keys.write)
    client.post(
        f"/api/v1/runs/{run['id']}/metrics",
        json={"points": [{"name": metric, "step": 0, "value": score, "time": T0.isoformat()}]},
        headers=keys.write,
    )
    return str(run["id"])


def test_efficientdet_thompson_fit_matches_numpy(live_server: LiveServer):
    count, read_key = import_catalog(live_server.url, ADMIN_TOKEN)
    assert count == len(load_catalog())
    # Importing again changes nothing.
    assert import_catalog(live_server.url, ADMIN_TOKEN)[0] == count
    answer = httpx.get(
        f"{live_server.url}/api/v1/analytics/diminishing-returns",
        params={"x": "flops", "metric": "AP", "group": "arXiv 1911.09070", "target": 0.60},
        headers={"Authorization": f"Bearer {read_key}"},
    ).json()
    rows = [r for r in load_catalog() if r.model.startswith("EfficientDet")]
    gflops = np.array([r.gflops for r in rows])
    ap = np.array([r.value for r in rows])
    assert answer["status"] == "ok" and answer["runs_used"] == 9 == len(rows)
    assert answer["x"] == {"name": "flops", "unit": "FLOPs"}

    # Independently: log10(1 − AP) = a + b·log10(FLOPs), by numpy.polyfit.
    u, v = np.log10(gflops * 1e9), np.log10(1 - ap)
    b, a = np.polyfit(u, v, 1)
    r2 = 1 - np.sum((v - (a + b * u)) ** 2) / np.sum((v - v.mean()) ** 2)
    thompson = next(f for f in answer["fits"] if f["model"] == "thompson")
    params = {p["name"]: p["value"] for p in thompson["parameters"]}
    assert params["b"] == pytest.approx(b, rel=1e-9)
    assert params["a"] == pytest.approx(a, rel=1e-9)
    assert thompson["r_squared"] == pytest.approx(r2, rel=1e-9)
    assert thompson["n"] == 9
    projection = next(p for p in answer["projections"] if p["model"] == "thompson")
    expected_x = 10 ** ((math.log10(1 - 0.60) - a) / b)
    assert projection["x"] == pytest.approx(expected_x, rel=1e-9)
    assert projection["x_low"] < expected_x < projection["x_high"]
    assert {f["model"] for f in answer["fits"]} == {"thompson", "log-linear", "saturating"}
    assert answer["best_fit"] in {"thompson", "log-linear", "saturating"}
    # Each EfficientDet is larger and better than the one before: all on the frontier.
    assert len(answer["frontier"]) == 9 and all(p["published"] for p in answer["frontier"])
    assert answer["marginal_cost"]["extra_x_per_point"] > 0


def test_too_few_runs_is_an_answer_not_an_error(client: TestClient, project: ProjectKeys):
    add_run(client, project, 0.5)
    add_run(client, project, 0.6, samples=2)
    answer = client.get(
        "/api/v1/analytics/diminishing-returns", params={"x": "energy_kwh"}, headers=project.read
    ).json()
    assert answer["status"] == "insufficient_data"
    assert "at least 3 runs" in answer["reason"] and answer["fits"] == []
    assert answer["runs_used"] == 2


def test_equal_and_missing_costs_are_explained(client: TestClient, project: ProjectKeys):
    for score in (0.5, 0.6, 0.7):
        add_run(client, project, score)  # the same energy each
    same = client.get(
        "/api/v1/analytics/diminishing-returns", params={"x": "energy_kwh"}, headers=project.read
    ).json()
    assert same["status"] == "insufficient_data" and "same x" in same["reason"]
    no_flops = client.get(
        "/api/v1/analytics/diminishing-returns", params={"x": "flops"}, headers=project.read
    ).json()
    assert no_flops["excluded"]["no_x"] == 3 and no_flops["status"] == "insufficient_data"


def test_curves_over_own_runs_and_isolation(
    client: TestClient, project: ProjectKeys, other_project: ProjectKeys
):
    # error = 0.5·(kWh/0.001)^−0.5 at 1, 4, 16, 64 samples of 0.001 kWh.
    for n in (1, 4, 16, 64):
        add_run(client, project, 1 - 0.5 * n**-0.5, samples=n)
    add_run(client, other_project, 0.99, samples=1)  # would top the frontier if it leaked
    answer = client.get(
        "/api/v1/analytics/diminishing-returns",
        params={"x": "energy_kwh", "include_runs": True, "target": 0.95},
        headers=project.read,
    ).json()
    thompson = next(f for f in answer["fits"] if f["model"] == "thompson")
    params = {p["name"]: p["value"] for p in thompson["parameters"]}
    # log10(error) = log10(0.5) − 0.5·log10(kWh/0.001) = (log10 0.5 − 1.5) − 0.5·log10 kWh
    assert params["b"] == pytest.approx(-0.5, abs=1e-9)
    assert params["a"] == pytest.approx(math.log10(0.5) - 1.5, abs=1e-9)
    assert answer["runs_used"] == 4 and len(answer["runs"]) == 4
    assert max(p["score"] for p in answer["frontier"]) == pytest.approx(1 - 0.5 / 8)
    projection = next(p for p in answer["projections"] if p["model"] == "thompson")
    # error 0.05 = 0.5·(kWh/0.001)^−0.5 ⇒ kWh = 0.001·100 = 0.1
    assert projection["x"] == pytest.approx(0.1, rel=1e-9)


def test_nofade_per_run_and_saturation(client: TestClient, project: ProjectKeys):
    client.post(
        "/api/v1/datasets/profiles",
        json={"name": "cifar10", "num_classes": 10},
        headers=project.write,
    )
    # 0.001 kWh x 50 g/kWh x 1.2 = 0.06 g per sample; 1, 10, 100 samples.
    for n, accuracy in ((1, 0.80), (10, 0.90), (100, 0.95)):
        add_run(client, project, accuracy, samples=n)
    add_run(client, project, 0.5, dataset="unprofiled")
    answer = client.get("/api/v1/analytics/nofade", headers=project.read).json()
    assert answer["definition"] == "greenaudit-1" and "not the paper's equation" in answer["note"]
    assert (answer["axis"]["name"], answer["c0"], answer["c0_label"]) == (
        "co2_kg",
        0.001,
        "1 g CO2e",
    )
    runs = {r["score"]: r for r in answer["runs"]}
    best = runs[0.95]
    # ρ(0.95, K = 10) = 0.8661; cost 100 x 0.06 g = 6 g: NoFADE = 0.8661 / (1 + log10 7).
    assert best["rho"] == pytest.approx(0.866074, abs=1e-6)
    assert best["cost"] == pytest.approx(0.006, rel=1e-9)
    assert best["nofade"] == pytest.approx(best["rho"] / (1 + math.log10(7)), rel=1e-9)
    assert best["entropy_bits"] == pytest.approx(math.log2(10))
    assert "no dataset profile" in runs[0.5]["reason"] and runs[0.5]["rho"] is None
    groups = {g["key"]: g for g in answer["groups"]}
    cifar = groups["cifar10"]
    assert cifar["runs_with_rho"] == 3 and cifar["sigma"] == pytest.approx(0.866074, abs=1e-6)
    # β from ρ against log10(cost) on the 3 frontier runs, worked out with numpy.
    rhos = [runs[a]["rho"] for a in (0.80, 0.90, 0.95)]
    beta = np.polyfit(np.log10([0.00006, 0.0006, 0.006]), rhos, 1)[0]
    assert cifar["beta"] == pytest.approx(beta, rel=1e-9)
    assert cifar["status"] == "open"  # β ≈ 0.19 > 0.05
    assert answer["thresholds"] == {
        "saturated_sigma": 0.98,
        "saturated_beta": 0.01,
        "saturating_beta": 0.05,
    }
    loss = client.get(
        "/api/v1/analytics/nofade", params={"metric": "loss"}, headers=project.read
    ).json()
    assert loss["runs_total"] == 0


def test_nofade_on_a_metric_that_is_not_a_rate(client: TestClient, project: ProjectKeys):
    client.post(
        "/api/v1/datasets/profiles",
        json={"name": "cifar10", "num_classes": 10},
        headers=project.write,
    )
    add_run(client, project, 1.7, metric="loss")
    answer = client.get(
        "/api/v1/analytics/nofade", params={"metric": "loss"}, headers=project.read
    ).json()
    assert answer["runs"][0]["rho"] is None and "not 'loss'" in answer["runs"][0]["reason"]


def add_synthetic_curve(client: TestClient, keys: ProjectKeys) -> str:
    """20 one-minute epochs of 1 kWh each; accuracy +0.05 to epoch 8, then +0.0001."""
    run = client.post(
        "/api/v1/runs", json=run_body(primary_metric="accuracy"), headers=keys.write
    ).json()
    samples, points, accuracy = [], [], 0.5
    for epoch in range(20):
        start = T0 + timedelta(minutes=epoch)
        samples.append(
            cpu_sample(
                epoch,
                1.0,
                t_start=start.isoformat(),
                t_end=(start + timedelta(minutes=1)).isoformat(),
            )
        )
        accuracy += 0.05 if epoch < 8 else 0.0001
        points.append(
            {
                "name": "accuracy",
                "step": epoch + 1,
                "epoch": epoch + 1,
                "value": accuracy,
                "time": (start + timedelta(minutes=1)).isoformat(),
            }
        )
    client.post(f"/api/v1/runs/{run['id']}/energy", json={"samples": samples}, headers=keys.write)
    client.post(f"/api/v1/runs/{run['id']}/metrics", json={"points": points}, headers=keys.write)
    return str(run["id"])


def test_within_run_returns_and_plateau(
    client: TestClient, project: ProjectKeys, other_project: ProjectKeys
):
    run_id = add_synthetic_curve(client, project)
    answer = client.get(f"/api/v1/runs/{run_id}/returns", headers=project.read).json()
    assert answer["status"] == "ok" and answer["metric"] == "accuracy"
    assert answer["points_total"] == 20 and len(answer["curve"]) == 20
    assert [p["energy_kwh"] for p in answer["curve"][:3]] == pytest.approx([1.0, 2.0, 3.0])
    plateau = answer["plateau"]
    assert plateau["step"] == 8 and plateau["energy_kwh"] == pytest.approx(8.0)
    assert plateau["energy_after_kwh"] == pytest.approx(12.0)
    # CO2 after: 12 kWh x 50 g/kWh x 1.2 = 720 g
    assert plateau["co2_after_kg"] == pytest.approx(0.72)
    assert plateau["share_of_energy_after"] == pytest.approx(0.6)
    assert plateau["summary"].startswith("the last 60% of the energy")
    assert answer["total_energy_kwh"] == pytest.approx(20.0)
    assert answer["marginal_gain"] is not None and answer["best_fit"] is not None
    thinned = client.get(
        f"/api/v1/runs/{run_id}/returns", params={"max_points": 10}, headers=project.read
    ).json()
    # Every 2nd step, plus the plateau and the last point, which are always kept.
    assert len(thinned["curve"]) <= 12 and 8 in [p["step"] for p in thinned["curve"]]
    on_co2 = client.get(
        f"/api/v1/runs/{run_id}/returns", params={"axis": "co2_kg"}, headers=project.read
    ).json()
    assert on_co2["axis"] == {"name": "co2_kg", "unit": "kg CO2e"}
    assert (
        client.get(f"/api/v1/runs/{run_id}/returns", headers=other_project.read).status_code == 404
    )
    missing = client.get(
        f"/api/v1/runs/{run_id}/returns", params={"metric": "f1"}, headers=project.read
    ).json()
    assert missing["status"] == "insufficient_data" and "no points" in missing["reason"]


def test_returns_on_a_real_demo_run(tmp_path, live_server: LiveServer):  # type: ignore[no-untyped-def]
    from greenaudit.demo import train_width_sweep

    settings = live_server.client_settings(tmp_path, measure_interval_s=0.2)
    (result,) = train_width_sweep(settings, epochs=40, widths=(64,), project="live")
    assert result.delivered
    answer = httpx.get(
        f"{live_server.url}/api/v1/runs/{result.run_id}/returns", headers=live_server.keys.read
    ).json()
    assert answer["status"] == "ok" and answer["points_total"] == 40
    plateau = answer["plateau"]
    values = [p["value"] for p in answer["curve"]]
    # The plateau is the first point within ε of the run's best accuracy.
    assert max(values) - max(values[: plateau["step"]]) < plateau["epsilon"]
    assert 0 <= plateau["share_of_energy_after"] <= 1
    assert plateau["energy_after_kwh"] == pytest.approx(
        answer["total_energy_kwh"] - plateau["energy_kwh"], rel=1e-9, abs=1e-15
    )
    energies = [p["energy_kwh"] for p in answer["curve"]]
    assert energies == sorted(energies) and energies[-1] <= answer["total_energy_kwh"] + 1e-12


def test_non_positive_costs_on_a_log_axis_are_explained(client: TestClient, project: ProjectKeys):
    for score in (0.5, 0.6, 0.7):
        add_run(client, project, score, flops=0.0)
    answer = client.get(
        "/api/v1/analytics/diminishing-returns", params={"x": "flops"}, headers=project.read
    ).json()
    assert answer["excluded"] == {"no_x": 0, "non_positive_x": 3}
    assert answer["status"] == "insufficient_data" and "at least 3 runs" in answer["reason"]


def test_nearly_flat_curves_never_overflow_into_a_500(client: TestClient, project: ProjectKeys):
    for n, accuracy in enumerate([0.9, 0.90001, 0.90002, 0.90001, 0.90003, 0.90002], start=1):
        add_run(client, project, accuracy, samples=n)
    answer = client.get(
        "/api/v1/analytics/diminishing-returns",
        params={"x": "energy_kwh", "target": 0.99},
        headers=project.read,
    )
    assert answer.status_code == 200
    for projection in answer.json()["projections"]:
        assert projection["x"] is None or projection["x"] > 0


def test_plateau_when_epsilon_is_below_float_resolution(client: TestClient, project: ProjectKeys):
    run = client.post("/api/v1/runs", json=run_body(), headers=project.write).json()
    client.post(
        f"/api/v1/runs/{run['id']}/energy",
        json={"samples": [sample(0), sample(1)]},
        headers=project.write,
    )
    points = [
        {
            "name": "accuracy",
            "step": step,
            "value": value,
            "time": (T0 + timedelta(seconds=30 + 60 * step)).isoformat(),
        }
        for step, value in ((0, 1.0), (1, 1.0000000000000002))
    ]
    client.post(f"/api/v1/runs/{run['id']}/metrics", json={"points": points}, headers=project.write)
    answer = client.get(f"/api/v1/runs/{run['id']}/returns", headers=project.read)
    assert answer.status_code == 200
    assert answer.json()["plateau"]["step"] == 1  # where the best is first reached


def test_sampling_follows_the_logging_interval(client: TestClient, project: ProjectKeys):
    run = client.post("/api/v1/runs", json=run_body(), headers=project.write).json()
    client.post(
        f"/api/v1/runs/{run['id']}/energy", json={"samples": [sample(0)]}, headers=project.write
    )
    points = [
        {
            "name": "accuracy",
            "step": 50 * i,
            "value": 0.5 + i / 10_000,
            "time": (T0 + timedelta(seconds=i / 100)).isoformat(),
        }
        for i in range(2469)
    ]
    for start in range(0, len(points), 1000):
        client.post(
            f"/api/v1/runs/{run['id']}/metrics",
            json={"points": points[start : start + 1000]},
            headers=project.write,
        )
    answer = client.get(
        f"/api/v1/runs/{run['id']}/returns", params={"max_points": 100}, headers=project.read
    ).json()
    # 2469 points logged every 50 steps: every 25th point (stride 1250 steps), 99 of them,
    # plus the plateau and the last point.
    assert answer["points_total"] == 2469
    assert 95 <= len(answer["curve"]) <= 102
