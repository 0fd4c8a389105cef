"""Concurrency with real processes, on SQLite and on PostgreSQL: 55 clients stream for a minute.

50 client processes each stream batches of samples into a run of their own, and 5 more stream
into one shared run, each as its own rank. Every sample is stored exactly once: there are no 5xx
and no "database is locked" errors, and each run's totals, read through the API and counted in
the database itself, equal the sum of what its clients sent. About one acknowledged batch in 20
is sent again on purpose, as a client does when an answer was lost, and must come back as
duplicates.

``GREENAUDIT_STRESS_SECONDS`` shortens the minute for a quick local run. The helpers here are
shared with ``test_crash.py``; starting and stopping the
service is in ``service.py``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from greenaudit.api.models import EnergySample, Run, RunEnergyTotals

from .service import Load, served_load

pytestmark = pytest.mark.e2e

STREAM = Path(__file__).with_name("energy_stream.py")
DURATION_S = float(os.environ.get("GREENAUDIT_STRESS_SECONDS", "60"))
OWN_RUNS = 50
SHARED_RANKS = 5
ENERGY_ROUTE = "/api/v1/runs/{run_id}/energy"
COMPONENTS = ("cpu", "gpu", "ram")


def start_client(config: dict[str, Any]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(STREAM), json.dumps(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def start_clients(load: Load, own: Sequence[dict[str, Any]] | None = None, **options: Any) -> None:
    """Start one streaming client per stream config of ``load``, seeded by its index.

    Each gets the service's URL and write key, ``options``, and its entry of ``own`` if given.
    """
    for seed, config in enumerate(load.configs):
        mine = own[seed] if own is not None else {}
        config.update(url=load.url, key=load.key, seed=seed, **options, **mine)
        load.clients.append(start_client(config))


def client_report(client: subprocess.Popen, timeout_s: float) -> dict[str, Any]:
    try:
        out, _ = client.communicate(timeout=max(timeout_s, 1))
    except subprocess.TimeoutExpired:
        client.kill()
        out, _ = client.communicate()
        pytest.fail(f"a client did not finish in time:\n{out[-3000:]}")
    assert client.returncode == 0, out[-3000:]
    return dict(json.loads(out.strip().splitlines()[-1]))


class Stored(NamedTuple):
    """One run as the database holds it: its running totals, and its rows counted and summed."""

    total_samples: int
    total_kwh: tuple[float, float, float]
    rows: int
    rows_kwh: tuple[float, float, float]


def stored_per_run(database_url: str) -> dict[str, Stored]:
    """Every run's totals and rows, read straight from the database in one statement (so from
    one snapshot, even while something writes)."""
    counted = (
        select(
            EnergySample.run_id,
            func.count().label("rows"),
            *(func.sum(getattr(EnergySample, f"{c}_kwh")).label(f"{c}_kwh") for c in COMPONENTS),
        )
        .group_by(EnergySample.run_id)
        .subquery()
    )
    statement = (
        select(
            Run.id,
            RunEnergyTotals.samples,
            *(getattr(RunEnergyTotals, f"{c}_kwh") for c in COMPONENTS),
            counted.c.rows,
            *(counted.c[f"{c}_kwh"] for c in COMPONENTS),
        )
        .outerjoin(RunEnergyTotals, RunEnergyTotals.run_id == Run.id)
        .outerjoin(counted, counted.c.run_id == Run.id)
    )
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(statement).all()
    finally:
        engine.dispose()
    return {
        str(run_id): Stored(
            total_samples or 0,
            tuple(x or 0.0 for x in (t_cpu, t_gpu, t_ram)),  # type: ignore[arg-type]
            count or 0,
            tuple(x or 0.0 for x in (r_cpu, r_gpu, r_ram)),  # type: ignore[arg-type]
        )
        for run_id, total_samples, t_cpu, t_gpu, t_ram, count, r_cpu, r_gpu, r_ram in rows
    }


def sent_per_run(reports: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """What the clients had acknowledged, per run: distinct samples and their kWh."""
    sent: dict[str, dict[str, float]] = {}
    for report in reports:
        run = sent.setdefault(report["run_id"], dict.fromkeys(("samples", *COMPONENTS), 0))
        run["samples"] += report["samples"]
        for c in COMPONENTS:
            run[c] += report[f"{c}_kwh"]
    return sent


def access_lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line[:1] == "{"]


def troubles(reports: list[dict[str, Any]], kind: str) -> list[str]:
    return [entry for report in reports for entry in report[kind]]


def assert_runs_hold_what_was_sent(
    url: str, read: dict[str, str], database_url: str, reports: list[dict[str, Any]], scale: str
) -> None:
    """Each run, through the API and in the database, holds exactly what its clients sent."""
    sent = sent_per_run(reports)
    stored = stored_per_run(database_url)
    assert set(sent) <= set(stored), scale
    for run_id, expected in sent.items():
        response = httpx.get(f"{url}/api/v1/runs/{run_id}", headers=read, timeout=30)
        assert response.status_code == 200, response.text
        totals = response.json()["totals"]
        kwh = [expected[c] for c in COMPONENTS]
        where = f"run {run_id} ({scale})"
        assert totals["energy_samples"] == expected["samples"], where
        assert totals["energy_kwh"] == pytest.approx(sum(kwh), rel=1e-9), where
        for c, value in zip(COMPONENTS, kwh, strict=True):
            assert totals[f"{c}_kwh"] == pytest.approx(value, rel=1e-9), (c, where)
        # co2 = kWh x 50 g/kWh x PUE 1.2 (helpers.run_body), applied once per stored sample.
        assert totals["co2_kg"] == pytest.approx(sum(kwh) * 0.05 * 1.2, rel=1e-9), where
        row = stored[run_id]
        assert row.rows == row.total_samples == expected["samples"], (row, where)
        assert row.rows_kwh == pytest.approx(kwh, rel=1e-9), (row, where)
        assert row.total_kwh == pytest.approx(kwh, rel=1e-9), (row, where)


def percentile(values: list[float], share: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * share))] if values else 0.0


# One xdist worker runs both backends in turn: 110 client processes at once would test the
# machine, not the service.
@pytest.mark.xdist_group("55-clients")
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_55_clients_for_a_minute_store_every_sample_exactly_once(backend: str, tmp_path: Path):
    began = time.monotonic()
    with served_load(backend, tmp_path, "concurrency", OWN_RUNS, SHARED_RANKS) as load:
        until = time.time() + DURATION_S
        start_clients(load, until=until, min_size=1, max_size=50, resend_rate=0.05, timeout_s=60)
        reports = [client_report(c, until - time.time() + 120) for c in load.clients]
        assert load.server.poll() is None, "the service died under load"

        requests = sum(r["requests"] for r in reports)
        samples = sum(r["samples"] for r in reports)
        duplicates = sum(r["duplicates"] for r in reports)
        statuses = sum((Counter(r["statuses"]) for r in reports), Counter())
        server_errors = sum(n for status, n in statuses.items() if int(status) >= 500)
        transport = sum(r["transport_errors"] for r in reports)
        scale = (
            f"{requests} requests, {samples} samples, {duplicates} duplicates, "
            f"{transport} transport errors, statuses {dict(statuses)}"
        )
        assert server_errors == 0, (scale, troubles(reports, "server_errors"))
        assert not troubles(reports, "locked"), scale
        assert transport == 0, (scale, troubles(reports, "transport_examples"))
        assert sum(r["abandoned"] for r in reports) == 0, scale
        assert set(statuses) == {"200"}, (scale, troubles(reports, "rejected"))
        assert not troubles(reports, "anomalies"), scale
        assert sum(r["inserted"] for r in reports) == samples, scale
        resent = sum(r["resent_on_purpose"] for r in reports)
        assert resent > 0, scale
        # Nothing failed, so the duplicates are exactly the batches re-sent on purpose.
        assert duplicates == sum(r["resent_on_purpose_samples"] for r in reports), scale
        assert_runs_hold_what_was_sent(load.url, load.read, load.database_url, reports, scale)

    served = [line for line in access_lines(load.log) if line["route"] == ENERGY_ROUTE]
    latencies = [line["duration_ms"] for line in served]
    text = load.log.read_text()
    assert "database is locked" not in text.lower(), text[-5000:]
    assert "Traceback" not in text, text[max(0, text.find("Traceback") - 2000) :][:8000]
    assert not [line for line in served if line["status"] >= 500]
    assert len(served) == requests, "every request the clients sent was answered once"
    shares = sorted(Counter(line["pid"] for line in served).values(), reverse=True)
    assert len(shares) == load.workers, f"every worker takes a share: {shares}"
    print(
        f"\nconcurrency {backend} ({load.workers} worker(s)), {len(reports)} client processes for "
        f"{DURATION_S:.0f} s: {requests} requests, {samples} samples stored once, "
        f"{duplicates} duplicates reported ({resent} batches re-sent on purpose), statuses "
        f"{dict(statuses)}, 0 5xx, 0 'database is locked'; requests per worker {shares}; "
        f"energy batch latency at the server "
        f"p50 {statistics.median(latencies):.0f} ms, p99 {percentile(latencies, 0.99):.0f} ms, "
        f"max {max(latencies):.0f} ms; wall {time.monotonic() - began:.0f} s"
    )
