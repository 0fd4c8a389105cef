"""A budget enforced end to end: a real service, a real instrumented training loop, a webhook.

The service runs as ``greenaudit serve`` (SQLite with one worker; PostgreSQL with two, whose
alert passes race for the same crossing). A project budget is set, a training loop measured by
``greenaudit.run(on_budget="stop")`` spends past it, and:

- the loop is stopped by :class:`greenaudit.BudgetExceeded` at a ``run.log`` call;
- the run ends as ``stopped_by_budget`` with every logged point and measured sample stored;
- the receiver on loopback gets exactly one alert, signed with the webhook's secret.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

import greenaudit
from greenaudit.client.measure import warm_up_in_background
from greenaudit.settings import Settings

from ..conftest import free_port
from ..webhook_receiver import webhook_receiver
from .service import database, make_project, start_service, stop_service

pytestmark = pytest.mark.e2e

SECRET = "e2e-webhook-secret-0123456789abcdef"
# CodeCarbon's CPU estimate here is about 28 W, so 1e-5 kWh (36 J) is spent in a second or two.
LIMIT_KWH = 1e-5
TRAINING_LIMIT_S = 90


@pytest.mark.parametrize(("backend", "workers"), [("sqlite", 1), ("postgresql", 2)])
def test_a_run_over_its_budget_is_stopped_and_one_signed_alert_is_sent(
    backend: str, workers: int, tmp_path: Path
):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with database(backend, tmp_path, "budget") as database_url, webhook_receiver() as receiver:
        server = start_service(
            database_url,
            port,
            tmp_path / "service.log",
            workers,
            env={"GREENAUDIT_ALERT_INTERVAL_S": "0.3", "GREENAUDIT_WEBHOOK_ALLOW_PRIVATE": "true"},
        )
        try:
            key, read = make_project(url, "enforced")
            write = {"Authorization": f"Bearer {key}"}
            hook = {"url": receiver.url, "secret": SECRET}
            assert httpx.put(f"{url}/api/v1/webhook", json=hook, headers=write).status_code == 200
            budget = httpx.post(
                f"{url}/api/v1/budgets", json={"limit_kwh": LIMIT_KWH}, headers=write
            ).json()

            settings = Settings(
                home=tmp_path / "client",
                url=url,
                api_key=key,
                measure_interval_s=0.1,
                budget_check_interval_s=0.2,
                country="FRA",
            )
            warm_up_in_background(settings).wait(60)
            logged: list[int] = []
            rng = np.random.default_rng(0)
            weights = rng.normal(size=(256, 256))
            started = time.monotonic()
            with pytest.raises(greenaudit.BudgetExceeded) as stopped:
                with greenaudit.run(
                    model="matmul-loop", on_budget="stop", settings=settings
                ) as run:
                    for step in range(1, 10**9):
                        for _ in range(20):  # real CPU work between boundaries
                            weights = np.tanh(weights @ weights / 256)
                        run.log(step=step, loss=float(np.abs(weights).mean()))
                        logged.append(step)
                        assert time.monotonic() - started < TRAINING_LIMIT_S, "never stopped"
            result = run.result
            assert result is not None and result.status == "stopped_by_budget"
            assert result.delivered and result.lost_items == 0
            assert stopped.value.budgets[0]["id"] == budget["id"]
            assert stopped.value.budgets[0]["spent"]["kwh"] > LIMIT_KWH

            # Stopped at a step boundary: the log of the last step was kept, then it raised.
            stored = httpx.get(f"{url}/api/v1/runs/{run.id}", headers=read).json()
            assert stored["status"] == "stopped_by_budget"
            points = httpx.get(
                f"{url}/api/v1/runs/{run.id}/metrics", params={"limit": 10_000}, headers=read
            ).json()
            assert [p["step"] for p in points["items"]] == [*logged, logged[-1] + 1]
            assert stored["totals"]["energy_samples"] == result.energy_samples
            assert stored["totals"]["energy_kwh"] == pytest.approx(result.energy_kwh, rel=1e-9)
            assert stored["totals"]["energy_kwh"] > LIMIT_KWH

            deadline = time.monotonic() + 30
            while not receiver.received and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(2.0)  # several more alert passes, in every worker: still one alert
            assert len(receiver.received) == 1, [r.body for r in receiver.received]
            [delivery] = receiver.received
            assert receiver.signed_correctly(delivery, SECRET)
            alert = json.loads(delivery.body)
            assert (alert["kind"], alert["budget_id"]) == ("budget_exceeded", budget["id"])
            assert alert["details"]["limit"] == LIMIT_KWH
            listed = httpx.get(f"{url}/api/v1/alerts", headers=read).json()
            assert listed["total"] == 1
            assert listed["items"][0]["delivery"] == "delivered"
            assert listed["items"][0]["id"] == delivery.headers["X-Greenaudit-Alert"]
        finally:
            stop_service(server)
