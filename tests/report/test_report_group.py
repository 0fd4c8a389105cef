"""`greenaudit report GROUP --format md`: a search of three trials and a final run.

The group's totals printed must be the API's and the sums worked by hand; the best run's
creation cost counts its parent outside the group and the trials inside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from greenaudit.report import GroupReport, gather, number, render_html, render_markdown
from greenaudit.settings import Settings

from .seed import (
    GENERATED_AT,
    GROUP_PRETRAIN_SAMPLES,
    GROUP_RUNS,
    KWH_PER_SAMPLE,
    seed_group,
    serving_seeded,
)
from .test_report_markdown import check_snapshot, row


@pytest.fixture
def service(settings: Settings, engine: Engine, client: TestClient) -> Iterator[dict[str, Any]]:
    with serving_seeded(settings, engine, client, seed_group) as (url, keys, group):
        yield {"url": url, "keys": keys, "group": group}


def test_group_report_totals_match_the_api_and_the_hand_worked_sums(service: dict[str, Any]):
    url, keys, group = service["url"], service["keys"], service["group"]
    report = gather(
        group, url=url, api_key=keys.read["Authorization"].split()[1], generated_at=GENERATED_AT
    )
    assert isinstance(report, GroupReport)
    markdown = render_markdown(report)
    check_snapshot("group_report.md", markdown)

    totals = httpx.get(
        f"{url}/api/v1/totals", params={"by": "project", "group": group}, headers=keys.read
    ).json()["rows"][0]
    # 2 + 3 + 4 + 6 = 15 samples of 0.0055 kWh: 0.0825 kWh, x 0.06 kg/kWh = 4.95 g CO2e,
    # 15 minutes on 2 GPUs = 0.5 GPU-hours. The parent, outside the group, is not counted.
    samples = sum(run[3] for run in GROUP_RUNS)
    assert samples == 15
    hand = {
        "runs (count)": ("runs", 4, "4"),
        "energy (kWh)": ("energy_kwh", samples * KWH_PER_SAMPLE, "0.0825"),
        "CPU energy (kWh)": ("cpu_kwh", samples * 0.001, "0.015"),
        "GPU energy (kWh)": ("gpu_kwh", samples * 0.004, "0.06"),
        "RAM energy (kWh)": ("ram_kwh", samples * 0.0005, "0.0075"),
        "CO2e (kg)": ("co2_kg", samples * KWH_PER_SAMPLE * 0.06, "0.00495"),
        "GPU time (GPU-hours)": ("gpu_hours", 0.5, "0.5"),
        "duration of the runs that ended (s)": ("duration_s", 60.0 * samples, "900"),
    }
    for label, (key, worked, shown) in hand.items():
        assert totals[key] == pytest.approx(worked), key
        assert row(markdown, label) == [number(totals[key])] == [shown], label

    # One row per run, oldest first, each with the API's totals.
    runs = [line for line in markdown.splitlines() if line.startswith("| trial-")]
    assert [line.split("|")[1].strip() for line in runs[:3]] == ["trial-1", "trial-2", "trial-3"]
    assert row(markdown, "final")[:7] == [
        GROUP_RUNS[3][0],
        "train",
        "finished",
        "00000000-0000-4000-8000-0000000000b0",
        "0.033",
        "0.00198",
        "0.2",
    ]
    # The best run is the final one (0.85); creating it cost its 6 samples, its parent's 5 and
    # the trials' 9: 20 samples, 0.11 kWh, 3.333 times the final run alone.
    assert report.best is not None and report.best.name == "final"
    assert "The run with the highest best accuracy is " + GROUP_RUNS[3][0] in markdown
    assert row(markdown, "creation") == ["5", "0.11", "0.0066", "0.6667"]
    creation = (samples + GROUP_PRETRAIN_SAMPLES) * KWH_PER_SAMPLE
    assert report.best_cost is not None
    assert report.best_cost.creation.energy_kwh == pytest.approx(creation)
    assert "took 3.333 times the energy" in markdown
    assert row(markdown, "plateau (step)") == ["4"]

    # The HTML version of a group report draws the best run's curve.
    page = render_html(report)
    assert 'id="best_returns-figure"' in page and 'data-field="totals.co2_kg"' in page
