"""The run page's power series, reduced in SQL on both databases: peaks kept, energy exact."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from greenaudit.api.dashboards.service import MAX_POWER_POINTS, power_series
from greenaudit.api.db import make_session_factory

from ..api.helpers import run_body
from ..conftest import ProjectKeys

T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)


def seed_samples(client: TestClient, keys: ProjectKeys, count: int, spike_at: int) -> str:
    run = client.post("/api/v1/runs", json=run_body(), headers=keys.write).json()
    samples = []
    for seq in range(count):
        watts = 900.0 if seq == spike_at else 100.0 + (seq % 7)
        start = T0 + timedelta(seconds=seq)
        samples.append(
            {
                "seq": seq,
                "t_start": start.isoformat(),
                "t_end": (start + timedelta(seconds=1)).isoformat(),
                "cpu_kwh": watts / 3.6e6,
                "cpu_w": watts,
                "cpu_method": "rapl",
            }
        )
    for first in range(0, count, 5000):
        response = client.post(
            f"/api/v1/runs/{run['id']}/energy",
            json={"samples": samples[first : first + 5000]},
            headers=keys.write,
        )
        assert response.status_code == 200, response.text
    return str(run["id"])


def test_a_long_run_is_reduced_with_its_peaks_and_its_energy(
    client: TestClient, project: ProjectKeys, engine: Engine
):
    run_id = seed_samples(client, project, 10_000, spike_at=6_543)
    with make_session_factory(engine, writer=False)() as session:
        series, count, reduced, _ = power_series(session, uuid.UUID(run_id))
    assert (count, reduced) == (10_000, True)
    assert len(series) <= MAX_POWER_POINTS + 1
    assert series["cpu_w"].max() == 900.0  # the one-second spike survives
    # Each bucket shows the peak of its samples: worked out here from the same bucketing
    # (10,000 s split into 2000 equal intervals of 5 s, each sample placed by its midpoint).
    width = 10_000 / MAX_POWER_POINTS
    peaks: dict[int, float] = {}
    for s in range(10_000):
        watts = 900.0 if s == 6_543 else 100.0 + s % 7
        bucket = int((s + 0.5) // width)
        peaks[bucket] = max(peaks.get(bucket, 0.0), watts)
    assert sorted(series["cpu_w"].tolist()) == sorted(peaks.values())
    # Every sample's energy is in exactly one bucket.
    expected = sum((900.0 if s == 6_543 else 100.0 + s % 7) / 3.6e6 for s in range(10_000))
    assert series["kwh"].sum() == pytest.approx(expected, rel=1e-9)


def test_a_short_run_is_drawn_sample_by_sample(
    client: TestClient, project: ProjectKeys, engine: Engine
):
    run_id = seed_samples(client, project, 50, spike_at=10)
    with make_session_factory(engine, writer=False)() as session:
        series, count, reduced, _ = power_series(session, uuid.UUID(run_id))
    assert (count, reduced, len(series)) == (50, False, 50)
    assert series["cpu_w"].tolist()[:3] == [100.0, 101.0, 102.0]
