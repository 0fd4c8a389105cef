"""Bounded work per request (issue 16, findings 9 and 10), on both databases.

The alert pass decides without the write lock; budgets are capped and paged; a key's use is
recorded without waiting for a writer; forecasts and returns over long runs read a bounded
reduction (energy blocks, sampled points) that is worked out here by hand.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select, text
from sqlalchemy.orm import Session

from greenaudit.api import blocks
from greenaudit.api.alerts import service as alerts
from greenaudit.api.analytics import repository as analytics_repository
from greenaudit.api.app import HEAVY_AT_ONCE, HeavyRequestGate
from greenaudit.api.budgets import service as budgets
from greenaudit.api.db import make_session_factory
from greenaudit.api.migrate import downgrade, upgrade
from greenaudit.api.models import Alert, ApiKey, Run, utcnow

from ..conftest import ProjectKeys
from .test_runs import create_run

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
KWH = 0.0055  # per sample: cpu 0.001 + gpu 0.004 + ram 0.0005


def samples(first: int, count: int, steps_per_sample: int = 10) -> list[dict[str, Any]]:
    """Samples of 60 s of 0.0055 kWh each; sample ``i`` ends having logged step 10*i."""
    return [
        {
            "rank": 0,
            "seq": i,
            "t_start": (T0 + timedelta(minutes=i)).isoformat(),
            "t_end": (T0 + timedelta(minutes=i + 1)).isoformat(),
            "cpu_kwh": 0.001,
            "cpu_w": 60.0,
            "cpu_method": "rapl",
            "gpu_kwh": 0.004,
            "gpu_w": 240.0 + i % 7,
            "gpu_method": "nvml-counter",
            "gpu_count": 2,
            "ram_kwh": 0.0005,
            "ram_w": 30.0,
            "ram_method": "codecarbon",
            "step": i * steps_per_sample,
        }
        for i in range(first, first + count)
    ]


def send(client: TestClient, keys: ProjectKeys, run_id: str, count: int) -> None:
    for first in range(0, count, 1000):
        response = client.post(
            f"/api/v1/runs/{run_id}/energy",
            json={"samples": samples(first, min(1000, count - first))},
            headers=keys.write,
        )
        assert response.status_code == 200, response.text


def running_run(client: TestClient, keys: ProjectKeys, count: int, total_steps: int) -> str:
    run_id: str = create_run(client, keys, name="long")["id"]
    client.patch(
        f"/api/v1/runs/{run_id}", json={"total_steps": total_steps}, headers=keys.write
    ).raise_for_status()
    send(client, keys, run_id, count)
    return run_id


@contextmanager
def on_statement(engine: Engine, marker: str, hook: Any) -> Iterator[None]:
    """Call ``hook(connection)`` before each statement that mentions ``marker``."""

    def before(connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if marker in statement:
            hook(connection)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", before)


# --- Finding 9: the alert pass decides without the write lock -------------------------------


def test_the_alert_pass_holds_no_write_lock_while_it_decides_and_dedupes_across_workers(
    client: TestClient, project: ProjectKeys, engine: Engine
):
    """Another worker's whole pass commits while this pass is deciding; one insert wins.

    Two budgets are crossed: spent 4 x 0.0055 = 0.022 kWh over limits of 0.01 kWh, for the
    whole project and for this week. While the first pass reads its second budget's spending,
    the hook checks that its transaction holds no write lock (SQLite: a writer with no busy
    timeout gets the lock; PostgreSQL: the transaction has no xid, so it has written nothing),
    then lets a second pass run to its commit. That one stores both alerts, and the first,
    finding their dedupe keys taken, stores none.
    """
    run_id = running_run(client, project, 4, 100)
    for period in ("all", "week"):
        client.post(
            "/api/v1/budgets", json={"period": period, "limit_kwh": 0.01}, headers=project.write
        ).raise_for_status()
    reads = make_session_factory(engine, writer=False)
    writes = make_session_factory(engine, writer=True)
    now = utcnow()
    seen: dict[str, Any] = {"spent_queries": 0, "lock_free": None, "other_pass": None}

    def during_decide(connection: Any) -> None:
        seen["spent_queries"] += 1
        if seen["spent_queries"] != 2:
            return
        seen["lock_free"] = holds_no_write_lock(engine, connection)
        if seen["lock_free"]:
            seen["other_pass"] = alerts.alert_pass(reads, writes, now, now - timedelta(hours=1))

    # count(run.id) is in the query of a budget's spending, so the hook runs as the second
    # budget is being decided: after the first budget's crossing was found.
    with on_statement(engine, "count(run.id)", during_decide):
        stored = alerts.alert_pass(reads, writes, now, now - timedelta(hours=1))
    assert seen["lock_free"] is True
    assert (seen["other_pass"], stored) == (2, 0)
    with Session(engine) as session:
        kinds = session.scalars(select(Alert.kind).where(Alert.budget_id.is_not(None))).all()
    assert sorted(kinds) == ["budget_exceeded", "budget_exceeded"]
    assert run_id


def holds_no_write_lock(engine: Engine, connection: Any) -> bool:
    if engine.dialect.name == "sqlite":
        other = sqlite3.connect(str(engine.url.database), timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:  # database is locked
            return False
        finally:
            other.close()
    pid = connection.connection.dbapi_connection.info.backend_pid
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as other:
        row = other.execute("SELECT backend_xid FROM pg_stat_activity WHERE pid = %s", (pid,))
        return row.fetchone() == (None,)


def test_the_alert_pass_reads_all_budgets_spending_in_the_same_few_queries(
    client: TestClient, project: ProjectKeys, engine: Engine
):
    """Six budgets of one period cost the pass the queries one does, and keep their sums.

    The project spends 4 x 0.0055 = 0.022 kWh on an ungrouped run and 2 x 0.0055 = 0.011 kWh
    on a run of group g1: 0.033 kWh over its budget of 0.01, and g1's 0.011 over its 0.01.
    Groups g2 to g5 spend nothing against 1 kWh. One query per budget would add ten.
    """
    running_run(client, project, 4, 100)
    grouped = create_run(client, project, name="grouped", group="g1")["id"]
    send(client, project, grouped, 2)

    def budget(group: str | None, limit: float) -> None:
        body = {"period": "all", "limit_kwh": limit, **({"group": group} if group else {})}
        client.post("/api/v1/budgets", json=body, headers=project.write).raise_for_status()

    def decided() -> tuple[int, dict[str | None, float]]:
        statements: list[str] = []
        reads = make_session_factory(engine, writer=False)
        with on_statement(engine, "SELECT", statements.append), reads() as session:
            crossings = alerts.decide(session, utcnow(), utcnow() - timedelta(hours=1))
        spent = {c.fields["details"]["group"]: c.fields["details"]["spent"] for c in crossings}
        return len(statements), spent

    budget(None, 0.01)
    one, spent = decided()
    assert spent == {None: pytest.approx(0.033)}
    budget("g1", 0.01)
    for group in ("g2", "g3", "g4", "g5"):
        budget(group, 1.0)
    six, spent = decided()
    assert spent == {None: pytest.approx(0.033), "g1": pytest.approx(0.011)}
    assert six == one


def test_a_pass_that_finds_only_stored_crossings_takes_no_write_lock(
    client: TestClient, project: ProjectKeys, engine: Engine
):
    """A crossing stays crossed; the passes after the one that stored it write nothing.

    Spent 0.022 kWh over a budget of 0.01: the first pass stores one alert. The next decides
    the same crossing, finds it stored by reading, and opens no write session; with no alert
    due, delivery lists them from a read session and opens none either.
    """
    running_run(client, project, 4, 100)
    client.post(
        "/api/v1/budgets", json={"limit_kwh": 0.01}, headers=project.write
    ).raise_for_status()
    reads = make_session_factory(engine, writer=False)
    writer = make_session_factory(engine, writer=True)
    opened: list[str] = []

    def writes() -> Session:
        opened.append("write session")
        return writer()

    now = utcnow()
    assert alerts.alert_pass(reads, writes, now, now - timedelta(hours=1)) == 1
    assert opened == ["write session"]
    assert alerts.alert_pass(reads, writes, now, now - timedelta(hours=1)) == 0
    assert opened == ["write session"]
    assert alerts.deliver_due(writes, now, allow_private=False, read_sessions=reads) == 0
    assert opened == ["write session"]


def test_heavy_requests_queue_at_the_gate_and_cheap_ones_pass_it():
    """With the gate full, a fifth forecast or returns request waits; a health check does not.

    The app behind the gate holds every request until released, so nothing here depends on
    how fast anything runs: exactly ``HEAVY_AT_ONCE`` (4) heavy requests are inside at once.
    """
    inside: list[str] = []
    release = asyncio.Event()

    async def held(scope: dict[str, Any], _receive: Any, _send: Any) -> None:
        inside.append(scope["path"])
        if scope["path"] in heavy:
            await release.wait()

    gate = HeavyRequestGate(held)
    run = "/api/v1/runs/6f1d0b7e-0000-4000-8000-000000000000"
    heavy = [
        f"{run}/forecast",
        f"{run}/returns",
        f"{run}/returns",
        "/dashboards/runs/x",
        f"{run}/forecast",
    ]

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        def request(path: str) -> Any:
            return gate({"type": "http", "path": path}, None, None)

        tasks = [asyncio.create_task(request(path)) for path in heavy]
        for _ in range(10):
            await asyncio.sleep(0)
        full = list(inside)
        await request("/healthz")
        await request(f"{run}/energy")
        cheap = inside[len(full) :]
        release.set()
        await asyncio.gather(*tasks)
        return full, cheap, list(inside)

    full, cheap, every = asyncio.run(scenario())
    assert HEAVY_AT_ONCE == 4
    assert full == heavy[:4]
    assert cheap == ["/healthz", f"{run}/energy"]
    assert every[-1] == heavy[4]


# --- Finding 9: budgets capped per project, and paged ---------------------------------------


def test_budgets_are_capped_at_100_a_project_and_listed_in_pages(
    client: TestClient, project: ProjectKeys, other_project: ProjectKeys
):
    periods = ("all", "day", "week", "month")
    for group in range(25):
        for period in periods:
            response = client.post(
                "/api/v1/budgets",
                json={"group": f"g{group:02d}", "period": period, "limit_kwh": 1.0},
                headers=project.write,
            )
            assert response.status_code == 201, response.text
    refused = client.post(
        "/api/v1/budgets", json={"group": "g25", "limit_kwh": 1.0}, headers=project.write
    )
    assert refused.status_code == 409
    assert refused.json()["error"] == "too_many_budgets"
    assert "the most it may have is 100" in refused.json()["detail"]
    # Changing an existing budget's limits is no new budget; another project has its own cap.
    changed = client.post(
        "/api/v1/budgets", json={"group": "g00", "limit_kwh": 2.0}, headers=project.write
    )
    assert changed.status_code == 200
    other = client.post("/api/v1/budgets", json={"limit_kwh": 1.0}, headers=other_project.write)
    assert other.status_code == 201

    everything = client.get("/api/v1/budgets", headers=project.read)
    assert everything.headers["x-total-count"] == "100"
    assert len(everything.json()) == 100
    page = client.get("/api/v1/budgets", params={"limit": 30, "offset": 90}, headers=project.read)
    assert page.headers["x-total-count"] == "100"
    # Ordered by group then period name: g22 all, g22 day, ... the last ten are g22 month on.
    listed = [(b["group"], b["period"]) for b in page.json()]
    ordered = sorted((f"g{g:02d}", p) for g in range(25) for p in periods)
    assert listed == ordered[90:]
    assert listed[0] == ("g22", "month")
    too_big = client.get("/api/v1/budgets", params={"limit": 101}, headers=project.read)
    assert too_big.status_code == 422

    budget_id = everything.json()[0]["id"]
    client.delete(f"/api/v1/budgets/{budget_id}", headers=project.write).raise_for_status()
    again = client.post(
        "/api/v1/budgets", json={"group": "g25", "limit_kwh": 1.0}, headers=project.write
    )
    assert again.status_code == 201


# --- Finding 9: a read records its key's use without waiting for a writer -------------------


def test_a_read_does_not_wait_for_the_write_lock_to_record_its_key_use(
    client: TestClient, project: ProjectKeys, engine: Engine
):
    """While a writer holds the lock (SQLite) or the key's row (PostgreSQL), a read answers;
    its use is recorded by the next read after the writer is done."""
    prefix = project.read["Authorization"].split()[1].split("_")[1]
    answered: list[int] = []

    def read() -> None:
        answered.append(
            client.get(f"/api/v1/projects/{project.id}", headers=project.read).status_code
        )

    with holding_key_row(engine, prefix):
        reader = threading.Thread(target=read)
        reader.start()
        # The writer lets go only after this join, so a read that waits for it never ends
        # in time; one that does not wait answers at once.
        reader.join(timeout=10)
        finished_while_held = not reader.is_alive()
    reader.join()
    assert finished_while_held
    assert answered == [200]
    assert last_used(engine, prefix) is None
    assert client.get(f"/api/v1/projects/{project.id}", headers=project.read).status_code == 200
    assert last_used(engine, prefix) is not None


@contextmanager
def holding_key_row(engine: Engine, prefix: str) -> Iterator[None]:
    if engine.dialect.name == "sqlite":
        other = sqlite3.connect(str(engine.url.database), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
        return
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as other:
        other.execute("SELECT id FROM api_key WHERE prefix = %s FOR UPDATE", (prefix,))
        try:
            yield
        finally:
            other.rollback()


def last_used(engine: Engine, prefix: str) -> datetime | None:
    with Session(engine) as session:
        return session.scalar(select(ApiKey.last_used_at).where(ApiKey.prefix == prefix))


# --- Finding 10: forecasts and returns read a bounded reduction ----------------------------


def test_energy_blocks_sum_exactly_the_samples_they_hold(
    client: TestClient, project: ProjectKeys, engine: Engine
):
    """2,050 samples: blocks of 16 hold 16 samples (the last, 2), and buckets of 32 samples
    from blocks are the buckets of 32 from the samples, row for row."""
    run_id = uuid.UUID(running_run(client, project, 2050, 100_000))
    with Session(engine) as session:
        rows = session.execute(
            text(
                "SELECT block, samples, kwh, step, gpu_w FROM run_energy_block "
                "WHERE width = 16 ORDER BY block"
            )
        ).all()
        assert len(rows) == 129  # 2050 / 16 = 128 blocks, and one of 2
        assert rows[0].samples == 16 and rows[-1].samples == 2
        assert rows[0].kwh == pytest.approx(16 * KWH)
        assert rows[0].step == 150 and rows[-1].step == 20490
        assert rows[0].gpu_w == 246.0  # the peak of 240 + i % 7 over seqs 0..15
        wide = session.execute(
            text("SELECT width, COUNT(*), SUM(samples) FROM run_energy_block GROUP BY width")
        ).all()
        assert sorted(tuple(r) for r in wide) == [
            (16, 129, 2050),
            (256, 9, 2050),
            (4096, 1, 2050),
            (65536, 1, 2050),
        ]

        # A reader asking for buckets of n samples reads blocks of the widest width <= 2n.
        assert [blocks.width_within(n) for n in (15, 16, 100, 128, 200, 3000)] == [
            None,
            16,
            16,
            256,
            256,
            4096,
        ]
        from_blocks, size = blocks.buckets(run_id, 16, 30, analytics_repository.epoch_seconds)
        assert size == 32
        reduced = session.execute(from_blocks).all()
        # The same buckets straight from the samples, as sample_buckets read them before.
        raw = session.execute(
            text(
                "SELECT MIN(t_start), MAX(t_end), SUM(cpu_kwh + gpu_kwh + ram_kwh), SUM(co2_kg), "
                "rank, MAX(cpu_w), MAX(gpu_w), MAX(ram_w), COUNT(*) FROM energy_sample "
                "GROUP BY rank, seq / 32 ORDER BY MIN(t_start)"
            )
        ).all()
    assert len(reduced) == len(raw) == 65  # 2050 / 32 = 64 buckets, and one of 2
    for got, want in zip(reduced, raw, strict=True):
        assert got.kwh == pytest.approx(want[2], rel=1e-12)
        assert got.co2_kg == pytest.approx(want[3], rel=1e-12)
        assert (got.cpu_w, got.gpu_w, got.ram_w) == tuple(want[5:8])
        assert got.t_end - got.t_start == pytest.approx(60.0 * want[8])


def test_a_long_runs_forecast_reads_its_blocks_and_keeps_its_value(
    client: TestClient,
    project: ProjectKeys,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
):
    """2,048 samples of 0.0055 kWh, 10 steps each, planned for 40,960 steps.

    With at most 200 rows, the forecast reads the 128 blocks of 16 samples (0.088 kWh and
    160 steps each, block b ending at step 160b + 150) and not one sample. Worked by hand:
    block 0's boundary is at 0.088 x 150/151 kWh (150 steps done in it, placed k/(k+1) of the
    way through); block 127's at 127 x 0.088 + 0.088 x 160/161. The rate is their difference
    over the 20,320 steps between, and the forecast adds it for the 20,490 steps ahead.
    """
    run_id = running_run(client, project, 2048, 40_960)
    exact = client.get(f"/api/v1/runs/{run_id}/forecast", headers=project.read).json()["energy"]
    statements: list[str] = []
    monkeypatch.setattr(budgets, "MAX_FORECAST_ROWS", 200)
    with Session(engine) as session:
        run = session.get(Run, uuid.UUID(run_id))
        assert run is not None
        event.listen(engine, "before_cursor_execute", record := lambda *a: statements.append(a[2]))
        try:
            energy, reason = budgets.forecast_of_run(session, run)
        finally:
            event.remove(engine, "before_cursor_execute", record)
    assert reason is None and energy is not None
    progress = [s for s in statements if "run_energy_block" in s or "energy_sample" in s]
    assert len(progress) == 1 and "FROM run_energy_block" in progress[0]
    block = 16 * KWH
    first, last = block * 150 / 151, 127 * block + block * 160 / 161
    rate = (last - first) / (20470 - 150)
    assert energy.boundaries == 128
    assert energy.kwh_per_step == pytest.approx(rate, rel=1e-12)
    assert energy.forecast_kwh == pytest.approx(last + rate * (40960 - 20470), rel=1e-12)
    assert energy.spent_kwh == pytest.approx(2048 * KWH)
    # The samples themselves give a forecast within 0.02% of it (22.5353 against 22.5330 kWh).
    assert exact["boundaries"] == 2048
    assert energy.forecast_kwh == pytest.approx(exact["forecast_kwh"], rel=2e-4)


def test_points_are_sampled_by_seeking_each_target_step(
    client: TestClient, project: ProjectKeys, engine: Engine
):
    """Points at steps 1..200 and 500..600. Every 40 steps from 1, by seeks: 1, 41, 81, 121,
    161, then the first point past 201, ..., 481 (step 500, once), then 521 and 561. Every 12
    steps (a stride below SEEK_STRIDE, by a scan): the multiples 1, 13, ..., 193, then 505,
    517, ..., 597 - the points at the targets themselves."""
    run_id = create_run(client, project)["id"]
    steps = [*range(1, 201), *range(500, 601)]
    points = [
        {"name": "accuracy", "step": s, "value": s / 1000, "time": T0.isoformat()} for s in steps
    ]
    client.post(
        f"/api/v1/runs/{run_id}/metrics", json={"points": points}, headers=project.write
    ).raise_for_status()
    with Session(engine) as session:
        seeks = analytics_repository.sampled_points(uuid.UUID(run_id), "accuracy", 1, 600, 40)
        scan = analytics_repository.sampled_points(uuid.UUID(run_id), "accuracy", 1, 600, 12)
        assert "targets" in str(seeks.compile(engine))
        assert "targets" not in str(scan.compile(engine))
        by_seeks = [row.step for row in session.execute(seeks)]
        by_scan = [row.step for row in session.execute(scan)]
    assert by_seeks == [1, 41, 81, 121, 161, 500, 521, 561]
    assert by_scan == [*range(1, 201, 12), *range(505, 601, 12)]


def test_the_plateau_is_fitted_to_at_most_max_fit_points(
    client: TestClient,
    project: ProjectKeys,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
):
    """400 points at steps 1..400; with at most 40, the fit reads 1, 12, ..., 397 and 400."""
    run_id = running_run(client, project, 4, 1000)
    points = [
        {"name": "accuracy", "step": s, "value": 0.9 - 0.5 * 0.99**s, "time": T0.isoformat()}
        for s in range(1, 401)
    ]
    client.post(
        f"/api/v1/runs/{run_id}/metrics", json={"points": points}, headers=project.write
    ).raise_for_status()
    monkeypatch.setattr(budgets, "MAX_FIT_POINTS", 40)
    fitted: list[list[float]] = []
    real = budgets.forecast_plateau

    def recording(steps: list[float], *args: Any, **kwargs: Any) -> Any:
        fitted.append(list(steps))
        return real(steps, *args, **kwargs)

    monkeypatch.setattr(budgets, "forecast_plateau", recording)
    forecast = client.get(f"/api/v1/runs/{run_id}/forecast", headers=project.read).json()
    # stride = ceil((400 - 1) / 39) = 11: 1, 12, ..., 397 (37 targets), then the last point.
    assert fitted == [[*range(1, 398, 11), 400]]
    assert forecast["plateau"]["model"] == "saturating exponential"


def test_returns_answer_at_most_10000_points(client: TestClient, project: ProjectKeys):
    run_id = create_run(client, project)["id"]
    response = client.get(
        f"/api/v1/runs/{run_id}/returns", params={"max_points": 10_001}, headers=project.read
    )
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    fine = client.get(
        f"/api/v1/runs/{run_id}/returns", params={"max_points": 10_000}, headers=project.read
    )
    assert fine.status_code == 200


def test_migration_0008_fills_the_blocks_of_samples_stored_before_it(
    client: TestClient, project: ProjectKeys, engine: Engine
):
    """20 samples stored at revision 0007 get blocks on the way to 0008: of width 16, one of
    16 samples and 0.088 kWh and one of 4 (0.022 kWh), and one of 20 at every other width."""
    run_id = running_run(client, project, 20, 100)
    downgrade(engine, "0007")
    try:
        upgrade(engine)
    finally:
        upgrade(engine)
    with Session(engine) as session:
        rows = session.execute(
            text(
                "SELECT width, block, samples, kwh, step FROM run_energy_block "
                "ORDER BY width, block"
            )
        ).all()
    assert [(r.width, r.block, r.samples, r.step) for r in rows] == [
        (16, 0, 16, 150),
        (16, 1, 4, 190),
        (256, 0, 20, 190),
        (4096, 0, 20, 190),
        (65536, 0, 20, 190),
    ]
    assert [r.kwh for r in rows[:2]] == pytest.approx([16 * KWH, 4 * KWH])
    assert run_id
