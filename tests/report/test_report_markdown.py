"""`greenaudit report RUN --format md` against a live service, on SQLite and PostgreSQL.

The Markdown is compared with a committed snapshot (the generation line normalised), and its
key figures with the API's JSON and with values worked by hand from tests/report/seed.py.
Set GREENAUDIT_UPDATE_SNAPSHOTS=1 to rewrite the snapshots after a deliberate change.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from greenaudit.cli import app
from greenaudit.report import (
    NOFADE_NEEDS_HIGHER,
    RunReport,
    gather,
    number,
    render_markdown,
)
from greenaudit.schemas.analytics import Direction
from greenaudit.settings import Settings

from ..api.helpers import point as metric_point
from ..api.helpers import run_body, sample
from ..conftest import ProjectKeys
from .seed import (
    GENERATED_AT,
    KG_PER_KWH,
    KWH_PER_SAMPLE,
    PRETRAIN_SAMPLES,
    RUN_SAMPLES,
    rho,
    seed_run,
    serving_seeded,
)

SNAPSHOTS = Path(__file__).parent / "snapshots"
GENERATED = re.compile(r"^_Generated .*_$", re.MULTILINE)
runner = CliRunner()


def normalised(markdown: str) -> str:
    """The report without its one non-reproducible line (time, service URL)."""
    return GENERATED.sub("_Generated <time> by greenaudit <version> from <service>_", markdown)


def check_snapshot(name: str, markdown: str) -> None:
    path = SNAPSHOTS / name
    text = normalised(markdown)
    if os.environ.get("GREENAUDIT_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no snapshot {path}; run with GREENAUDIT_UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(encoding="utf-8")


def api(url: str, keys: ProjectKeys, path: str, **params: Any) -> Any:
    response = httpx.get(f"{url}{path}", params=params, headers=keys.read)
    assert response.status_code == 200, response.text
    return response.json()


def row(markdown: str, label: str) -> list[str]:
    """The cells after the first of the table row that starts with ``label``."""
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


@pytest.fixture
def service(settings: Settings, engine: Engine, client: TestClient) -> Iterator[dict[str, Any]]:
    with serving_seeded(settings, engine, client, seed_run) as (url, keys, run_id):
        yield {"url": url, "keys": keys, "run": run_id}


def test_run_report_matches_the_snapshot_the_api_and_the_hand_worked_values(
    service: dict[str, Any],
):
    url, keys, run_id = service["url"], service["keys"], service["run"]
    report = gather(
        run_id,
        url=url,
        api_key=keys.read["Authorization"].split()[1],
        generated_at=GENERATED_AT,
    )
    assert isinstance(report, RunReport)
    markdown = render_markdown(report)
    check_snapshot("run_report.md", markdown)
    assert "_Generated 2026-12-02T09:30:00Z by greenaudit" in markdown

    run = api(url, keys, f"/api/v1/runs/{run_id}")
    returns = api(url, keys, f"/api/v1/runs/{run_id}/returns", max_points=50)
    cost = api(url, keys, f"/api/v1/runs/{run_id}/cost")
    nofade = api(
        url, keys, "/api/v1/analytics/nofade", metric="accuracy", dataset="cifar10", limit=10_000
    )
    (entry,) = [r for r in nofade["runs"] if r["run_id"] == run_id]

    # Energy by component, as the API answers it and as worked by hand.
    totals = run["totals"]
    for label, component, method, per_sample in (
        ("CPU", "cpu", "rapl", 0.001),
        ("GPU", "gpu", "nvml-counter", 0.004),
        ("RAM", "ram", "codecarbon", 0.0005),
    ):
        assert totals[f"{component}_kwh"] == pytest.approx(RUN_SAMPLES * per_sample)
        assert row(markdown, label)[:2] == [number(totals[f"{component}_kwh"]), method]
    assert row(markdown, "CPU")[2] == "measured by the CPU's RAPL energy counters"
    assert row(markdown, "GPU")[2] == "measured by the GPU's cumulative energy counter (NVML)"
    assert row(markdown, "RAM")[2] == "estimated by CodeCarbon's load-based model"
    assert totals["energy_kwh"] == pytest.approx(RUN_SAMPLES * KWH_PER_SAMPLE)  # 0.055 kWh
    assert row(markdown, "total")[0] == number(totals["energy_kwh"]) == "0.055"

    # CO2e = 0.055 kWh x 50 g/kWh x 1.2 = 3.3 g; 10 minutes on 2 GPUs = 1/3 GPU-hour.
    assert totals["co2_kg"] == pytest.approx(0.0033)
    assert row(markdown, "CO2e (kg)") == [number(totals["co2_kg"])] == ["0.0033"]
    assert row(markdown, "carbon intensity (g CO2e/kWh)") == ["50"]
    assert row(markdown, "carbon intensity source") == ["test fixture"]
    assert row(markdown, "PUE (ratio)") == ["1.2"]
    assert row(markdown, "GPU time (GPU-hours)") == ["0.3333"]
    assert totals["gpu_hours"] == pytest.approx(1 / 3)
    assert row(markdown, "GPU model") == ["H100"] and row(markdown, "GPUs (count)") == ["2"]

    # Range 0.5 to 0.9: ε = 0.002, so the plateau is the first point above 0.898, 0.899 at
    # step 5 (10:05:30): 5.5 samples, 0.03025 kWh in. The other 0.02475 kWh (45%, 1.485 g)
    # bought 0.001.
    plateau = returns["plateau"]
    assert plateau["step"] == 5 and plateau["value"] == 0.899
    assert plateau["epsilon"] == pytest.approx(0.002)
    assert plateau["energy_kwh"] == pytest.approx(5.5 * KWH_PER_SAMPLE)
    assert plateau["energy_after_kwh"] == pytest.approx(4.5 * KWH_PER_SAMPLE)
    assert plateau["share_of_energy_after"] == pytest.approx(0.45)
    assert plateau["co2_after_kg"] == pytest.approx(4.5 * KWH_PER_SAMPLE * KG_PER_KWH)
    assert plateau["gain_after"] == pytest.approx(0.001)
    assert row(markdown, "plateau (step)") == ["5"]
    assert row(markdown, "energy up to the plateau (kWh)") == ["0.03025"]
    assert row(markdown, "energy after the plateau (kWh)") == ["0.02475"]
    assert row(markdown, "CO2e after the plateau (kg)") == ["0.001485"]
    assert (
        row(markdown, "share of the run's energy spent after the plateau (fraction)")
        == [number(plateau["share_of_energy_after"])]
        == ["0.45"]
    )
    assert row(markdown, "in words") == [plateau["summary"]]
    for i, point in enumerate(returns["curve"]):
        assert row(markdown, str(point["step"])) == [
            number(point["energy_kwh"]),
            number(point["co2_kg"]),
            number(point["value"]),
        ], i
    assert "is in the HTML version of this report" in markdown

    # Creation: the fine-tune and its pre-training, 14 samples against 10.
    assert cost["creation"]["energy_kwh"] == pytest.approx(
        (RUN_SAMPLES + PRETRAIN_SAMPLES) * KWH_PER_SAMPLE
    )
    assert cost["energy_ratio"] == pytest.approx(1.4)
    assert (
        row(markdown, "creation")
        == [
            "2",
            number(cost["creation"]["energy_kwh"]),
            number(cost["creation"]["co2_kg"]),
            number(cost["creation"]["gpu_hours"]),
        ]
        == ["2", "0.077", "0.00462", "0.4667"]
    )
    assert "took 1.4 times the energy" in markdown

    # ρ(0.9, K = 10) and NoFADE on 3.3 g with C0 = 1 g, from the formulas.
    expected_rho = rho(0.9, 10)
    assert entry["rho"] == pytest.approx(expected_rho, abs=1e-12)
    assert entry["nofade"] == pytest.approx(expected_rho / (1 + math.log10(1 + 3.3)))
    assert (
        row(markdown, "ρ, share of the label entropy resolved (fraction)")
        == [number(entry["rho"])]
        == ["0.7634"]
    )
    assert row(markdown, "NoFADE = ρ / (1 + log10(1 + C/C0))") == [number(entry["nofade"])]
    assert row(markdown, "best accuracy (highest logged)") == ["0.9"]
    assert "not the paper's equation" in markdown


def test_cli_prints_the_same_report_and_fails_clearly(
    service: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    url, keys, run_id = service["url"], service["keys"], service["run"]
    monkeypatch.setenv("GREENAUDIT_API_KEY", keys.read["Authorization"].split()[1])
    monkeypatch.delenv("GREENAUDIT_URL", raising=False)
    result = runner.invoke(app, ["report", run_id, "--format", "md", "--url", url])
    assert result.exit_code == 0, result.output
    expected = render_markdown(
        gather(run_id, url=url, api_key=keys.read["Authorization"].split()[1])
    )
    assert normalised(result.stdout) == normalised(expected)

    out = tmp_path / "report.md"
    written = runner.invoke(app, ["report", run_id, "--url", url, "--out", str(out)])
    assert written.exit_code == 0, written.output
    assert normalised(out.read_text(encoding="utf-8")) == normalised(expected)

    unknown = runner.invoke(app, ["report", "00000000-0000-4000-8000-00000000ffff", "--url", url])
    assert unknown.exit_code == 2 and "not found (HTTP 404" in unknown.output

    no_group = runner.invoke(app, ["report", "no-such-group", "--url", url])
    assert no_group.exit_code == 2 and "'no-such-group' has no runs" in no_group.output

    html_to_terminal = runner.invoke(app, ["report", run_id, "--format", "html", "--url", url])
    assert html_to_terminal.exit_code == 2 and "--out" in html_to_terminal.output

    into_a_folder = runner.invoke(app, ["report", run_id, "--url", url, "--out", str(tmp_path)])
    assert into_a_folder.exit_code == 2 and "cannot write the report to" in into_a_folder.output

    for variable, value, message in (
        ("GREENAUDIT_PUE", "5", "GREENAUDIT_PUE: Input should be less than or equal to 3"),
        ("GREENAUDIT_CORS_ORIGINS", "[not json", 'error parsing value for field "cors_origins"'),
    ):
        monkeypatch.setenv(variable, value)
        misconfigured = runner.invoke(app, ["report", run_id, "--url", url])
        assert misconfigured.exit_code == 2
        assert f"invalid configuration: {message}" in misconfigured.output
        monkeypatch.delenv(variable)

    monkeypatch.setenv("GREENAUDIT_API_KEY", "ga_000000000000_wrong")
    refused = runner.invoke(app, ["report", run_id, "--url", url])
    assert refused.exit_code == 2 and "HTTP 401" in refused.output


def test_a_loss_is_reported_lower_is_better_without_nofade(service: dict[str, Any]):
    url, keys = service["url"], service["keys"]
    body = run_body(name="lossy", primary_metric="loss", group="loss-sweep")
    loss = [2.0, 1.2, 0.8, 0.6, 0.5, 0.45, 0.42, 0.41, 0.40, 0.40]
    with httpx.Client(base_url=url, headers=keys.write) as http:
        http.post("/api/v1/runs", json=body).raise_for_status()
        samples = {"samples": [sample(i) for i in range(10)]}
        http.post(f"/api/v1/runs/{body['id']}/energy", json=samples).raise_for_status()
        points = {"points": [metric_point(i, v, name="loss") for i, v in enumerate(loss)]}
        http.post(f"/api/v1/runs/{body['id']}/metrics", json=points).raise_for_status()
    key = keys.read["Authorization"].split()[1]

    markdown = render_markdown(gather(body["id"], url=url, api_key=key, direction=Direction.LOWER))
    assert row(markdown, "better") == ["lower"]
    # ε = 0.5% of the range 1.6 = 0.008. From step 7 (0.41) 0.01 is still to gain; from
    # step 8 (0.40), nothing: the plateau is step 8. Taken as higher-is-better, it was step 0.
    assert row(markdown, "plateau (step)") == ["8"]
    returns = api(url, keys, f"/api/v1/runs/{body['id']}/returns", direction="lower")
    assert returns["plateau"]["step"] == 8
    assert "(highest logged)" not in markdown
    assert NOFADE_NEEDS_HIGHER in markdown

    group = runner.invoke(
        app,
        ["report", "loss-sweep", "--direction", "lower", "--url", url],
        env={"GREENAUDIT_API_KEY": key},
    )
    assert group.exit_code == 2 and "report on one run with --direction lower" in group.output


def test_cli_needs_a_service(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("GREENAUDIT_URL", raising=False)
    monkeypatch.delenv("GREENAUDIT_API_KEY", raising=False)
    result = runner.invoke(app, ["report", "sweep-a"])
    assert result.exit_code == 2 and "GREENAUDIT_URL" in result.output


def test_docstring_examples():
    import doctest

    from greenaudit import report

    result = doctest.testmod(report, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0
