"""Alerts: decided once per crossing, stored, listed, and posted signed to a webhook on loopback."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from greenaudit.api.alerts import service as alerts
from greenaudit.api.alerts import webhook
from greenaudit.api.app import create_app
from greenaudit.api.models import utcnow
from greenaudit.settings import Settings

from ..conftest import ProjectKeys, create_project
from ..webhook_receiver import trickling_receiver, webhook_receiver
from .helpers import point
from .test_budgets import KWH, send_samples
from .test_runs import create_run

SECRET = "a-secret-of-thirty-two-characters"


@pytest.fixture
def hooked(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    """The service allowing loopback webhooks; its own alert pass is kept out of the way."""
    allowing = settings.model_copy(update={"webhook_allow_private": True, "alert_interval_s": 3600})
    with TestClient(create_app(allowing, engine), raise_server_exceptions=False) as test_client:
        yield test_client


def one_pass(engine: Engine, since_s: float = 60.0) -> int:
    now = utcnow()
    with Session(engine) as session, session.begin():
        return alerts.evaluate(session, now, now - timedelta(seconds=since_s))


def deliver(engine: Engine, at_s: float = 0.0) -> int:
    def sessions() -> Session:
        return Session(engine)

    return alerts.deliver_due(sessions, utcnow() + timedelta(seconds=at_s), allow_private=True)


def test_a_crossed_budget_alerts_once_and_is_delivered_signed_with_retries(
    hooked: TestClient, engine: Engine
):
    keys = create_project(hooked, "alerted")
    with webhook_receiver(500, 503) as receiver:
        assert (
            hooked.put(
                "/api/v1/webhook", json={"url": receiver.url, "secret": SECRET}, headers=keys.write
            ).status_code
            == 200
        )
        budget = hooked.post(
            "/api/v1/budgets", json={"group": "sweep", "limit_kwh": 0.01}, headers=keys.write
        ).json()
        run = create_run(hooked, keys, group="sweep")["id"]
        send_samples(hooked, keys, run, 1)
        assert one_pass(engine) == 0  # 0.0055 kWh of 0.01: nothing to say
        send_samples(hooked, keys, run, 1, first=1)  # 2 samples, 0.011 kWh: over
        assert one_pass(engine) == 1
        assert one_pass(engine) == 0  # the same crossing is not a second alert

        # The receiver answers 500, then 503, then 200; each failure waits 1 s, then 2 s.
        assert deliver(engine) == 0
        assert deliver(engine) == 0  # not due yet: backoff
        assert deliver(engine, at_s=1.5) == 0
        assert deliver(engine, at_s=1.5) == 0  # the second backoff is 2 s
        assert deliver(engine, at_s=4.0) == 1
        assert deliver(engine, at_s=60.0) == 0  # delivered means done
        assert len(receiver.received) == 3

    ids = {r.headers["X-Greenaudit-Alert"] for r in receiver.received}
    assert len(ids) == 1  # the same alert each time, so a receiver can drop repeats
    assert all(receiver.signed_correctly(r, SECRET) for r in receiver.received)
    assert not receiver.signed_correctly(receiver.received[0], SECRET + "x")
    payload = json.loads(receiver.received[-1].body)
    assert payload["kind"] == "budget_exceeded" and payload["budget_id"] == budget["id"]
    assert payload["details"]["spent"] == pytest.approx(2 * KWH)
    assert payload["details"]["limit"] == 0.01 and payload["details"]["unit"] == "kwh"
    assert "group 'sweep' has spent 0.011 kWh, over its budget of 0.01 kWh" in payload["message"]

    listed = hooked.get("/api/v1/alerts", headers=keys.read).json()
    assert listed["total"] == 1
    [alert] = listed["items"]
    assert alert["id"] == ids.pop()
    assert (alert["delivery"], alert["attempts"], alert["last_error"]) == ("delivered", 3, None)


def test_a_forecast_crossing_and_a_plateau_alert_without_a_webhook(
    hooked: TestClient, engine: Engine
):
    keys = create_project(hooked, "quiet")
    hooked.post("/api/v1/budgets", json={"limit_kwh": 0.05}, headers=keys.write)
    run = create_run(hooked, keys, name="long")["id"]
    hooked.patch(f"/api/v1/runs/{run}", json={"total_steps": 100}, headers=keys.write)
    send_samples(hooked, keys, run, 4)  # forecast 0.06525 kWh > 0.05, spent 0.022
    # Accuracy that saturates early: 0.9 - 0.5 exp(-step / 2), logged at steps 0..30.
    points = [point(s, 0.9 - 0.5 * math.exp(-s / 2)) for s in range(0, 31, 3)]
    hooked.post(f"/api/v1/runs/{run}/metrics", json={"points": points}, headers=keys.write)
    assert one_pass(engine) == 2
    assert one_pass(engine) == 0
    listed = hooked.get("/api/v1/alerts", headers=keys.read).json()["items"]
    kinds = {a["kind"]: a for a in listed}
    assert set(kinds) == {"budget_forecast_exceeded", "plateau_passed"}
    assert all(a["delivery"] == "none" for a in listed)
    assert kinds["budget_forecast_exceeded"]["details"]["forecast"] == pytest.approx(0.06525)
    plateau = hooked.get(f"/api/v1/runs/{run}/forecast", headers=keys.read).json()["plateau"]
    assert kinds["plateau_passed"]["details"] == plateau
    assert plateau["passed"] and plateau["step"] <= 30
    assert plateau["energy_after_kwh"] == pytest.approx(plateau["steps_after"] * 0.000625)
    only = hooked.get(
        "/api/v1/alerts", params={"kind": "plateau_passed", "run_id": run}, headers=keys.read
    ).json()
    assert only["total"] == 1


def test_webhooks_refuse_local_hosts_unless_allowed(client: TestClient, project: ProjectKeys):
    refused = client.put(
        "/api/v1/webhook",
        json={"url": "http://127.0.0.1:9/hook", "secret": SECRET},
        headers=project.write,
    )
    assert refused.status_code == 422
    assert "GREENAUDIT_WEBHOOK_ALLOW_PRIVATE" in refused.json()["detail"]
    # Addresses that lead to loopback or link-local through an IPv6 form, and host names that
    # cannot be encoded to connect: refused with a reason, never a 500.
    for url, reason in (
        ("http://[64:ff9b::a9fe:a9fe]/hook", "169.254.169.254"),  # NAT64: cloud metadata
        ("http://[2002:7f00:1::1]/hook", "127.0.0.1"),  # 6to4
        ("http://[::ffff:127.0.0.1]/hook", "private or local"),  # IPv4-mapped
        ("http://a..b/hook", "not a valid host name"),
        ("http://" + "a" * 64 + ".example/hook", "not a valid host name"),
        ("https://xn--a/hook", "not a valid host name"),
    ):
        answer = client.put(
            "/api/v1/webhook", json={"url": url, "secret": SECRET}, headers=project.write
        )
        assert answer.status_code == 422 and reason in answer.json()["detail"], (url, answer.text)
    for url in ("ftp://example.org/x", "not a url at all"):
        answer = client.put(
            "/api/v1/webhook", json={"url": url, "secret": SECRET}, headers=project.write
        )
        assert answer.status_code == 422, url
    short = client.put(
        "/api/v1/webhook",
        json={"url": "https://example.org/hook", "secret": "short"},
        headers=project.write,
    )
    assert short.status_code == 422 and "secret" in short.text
    assert client.get("/api/v1/webhook", headers=project.read).status_code == 404


def test_a_host_that_cannot_be_encoded_is_refused_where_private_hosts_are_allowed(
    hooked: TestClient,
):
    # Allowing private hosts skips the address check, not the host name's: stored, it would
    # fail at every delivery attempt.
    keys = create_project(hooked, "bad-host")
    answer = hooked.put(
        "/api/v1/webhook", json={"url": "http://a..b/hook", "secret": SECRET}, headers=keys.write
    )
    assert answer.status_code == 422 and "not a valid host name" in answer.json()["detail"]


def test_the_webhook_is_set_read_without_its_secret_and_removed(hooked: TestClient, engine: Engine):
    keys = create_project(hooked, "hooks")
    url = "http://127.0.0.1:9/hook"
    assert (
        hooked.put(
            "/api/v1/webhook", json={"url": url, "secret": SECRET}, headers=keys.read
        ).status_code
        == 403
    )
    hooked.put("/api/v1/webhook", json={"url": url, "secret": SECRET}, headers=keys.write)
    shown = hooked.get("/api/v1/webhook", headers=keys.read).json()
    assert shown["url"] == url and SECRET not in json.dumps(shown)
    assert hooked.delete("/api/v1/webhook", headers=keys.write).status_code == 204
    assert hooked.delete("/api/v1/webhook", headers=keys.write).status_code == 404


def test_an_undeliverable_alert_gives_up_after_its_attempts(hooked: TestClient, engine: Engine):
    keys = create_project(hooked, "unreachable")
    # Nothing listens on port 9 (discard) here: every attempt is refused.
    hooked.put(
        "/api/v1/webhook",
        json={"url": "http://127.0.0.1:9/hook", "secret": SECRET},
        headers=keys.write,
    )
    hooked.post("/api/v1/budgets", json={"limit_kwh": 0.001}, headers=keys.write)
    run = create_run(hooked, keys)["id"]
    send_samples(hooked, keys, run, 1)
    assert one_pass(engine) == 1
    for _ in range(alerts.MAX_ATTEMPTS):
        deliver(engine, at_s=alerts.MAX_BACKOFF_S + 1)
    [alert] = hooked.get("/api/v1/alerts", headers=keys.read).json()["items"]
    assert (alert["delivery"], alert["attempts"]) == ("failed", alerts.MAX_ATTEMPTS)
    assert "ConnectError" in alert["last_error"]


def test_backoff_doubles_to_a_ceiling():
    assert [alerts.backoff_s(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert alerts.backoff_s(30) == alerts.MAX_BACKOFF_S


def test_docstring_examples():
    import doctest

    result = doctest.testmod(webhook, raise_on_error=False)
    assert result.attempted >= 2 and result.failed == 0


def test_a_budget_that_cannot_be_checked_does_not_silence_the_others(
    hooked: TestClient,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    broken, fine = create_project(hooked, "broken"), create_project(hooked, "fine")
    for keys in (broken, fine):
        hooked.post("/api/v1/budgets", json={"limit_kwh": 0.001}, headers=keys.write)
        send_samples(hooked, keys, create_run(hooked, keys)["id"], 1)  # 0.0055 kWh: over
    real_state = alerts.budgets.budget_state

    def failing_for_broken(session: Session, budget: Any, *args: Any) -> Any:
        if str(budget.project_id) == broken.id:
            raise RuntimeError("cannot compute this budget")
        return real_state(session, budget, *args)

    monkeypatch.setattr(alerts.budgets, "budget_state", failing_for_broken)
    assert one_pass(engine) == 1
    assert hooked.get("/api/v1/alerts", headers=fine.read).json()["total"] == 1
    assert hooked.get("/api/v1/alerts", headers=broken.read).json()["total"] == 0
    assert "alert check of budget" in caplog.text and "cannot compute" in caplog.text
    monkeypatch.undo()
    assert one_pass(engine) == 1  # mended, the broken project's crossing is stored on the next pass


def test_a_receiver_that_trickles_its_answer_is_cut_off_at_the_deadline(
    hooked: TestClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(webhook, "DEADLINE_S", 1.5)
    keys = create_project(hooked, "trickled")
    hooked.post("/api/v1/budgets", json={"limit_kwh": 0.001}, headers=keys.write)
    send_samples(hooked, keys, create_run(hooked, keys)["id"], 1)
    # 57 bytes at 0.5 s each: 28.5 s for the whole answer, never 5 s between two reads.
    with trickling_receiver(0.5) as url:
        hooked.put("/api/v1/webhook", json={"url": url, "secret": SECRET}, headers=keys.write)
        assert one_pass(engine) == 1
        started = time.monotonic()
        assert deliver(engine) == 0
        took = time.monotonic() - started
    assert 1.5 <= took < 5
    [alert] = hooked.get("/api/v1/alerts", headers=keys.read).json()["items"]
    assert (alert["delivery"], alert["attempts"]) == ("pending", 1)
    assert alert["last_error"].startswith("TimeoutError")
