"""The HTML report in a real headless browser: Debian's Chromium, driven by Playwright.

The page is opened from a file (a report for a paper must open offline). It must load without
console errors, draw the returns curve's traces, and every value marked ``data-field`` must be
the API's answer for the run: its exact JSON in ``data-value`` and, as printed, that answer
to 4 significant digits.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from greenaudit.api.app import create_app
from greenaudit.cli import app
from greenaudit.report import DEFAULT_CURVE_POINTS, lookup
from greenaudit.settings import Settings

from ..browser import headless_chromium, new_context, screenshots_fit
from ..conftest import ProjectKeys, create_project, serving
from .seed import RUN_ACCURACY, seed_run, serving_seeded

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "report"
# The browser test exercises the page; the answers behind it are tested on both databases.
pytestmark = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)

FIELDS = """
() => Array.from(document.querySelectorAll("[data-field]")).map(e => ({
  field: e.dataset.field, value: e.dataset.value, text: e.textContent,
}))
"""
TRACES = """
id => (document.getElementById(id)._fullData || []).map(t => ({name: t.name, points: t.x.length}))
"""
runner = CliRunner()
# Table cells that print a number must say where it came from.
UNSOURCED_NUMBERS = """
() => Array.from(document.querySelectorAll("td"))
  .filter(td => /^-?[0-9][0-9.e+-]*$/.test(td.textContent.trim()))
  .filter(td => !td.querySelector("[data-field]"))
  .map(td => td.textContent)
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from headless_chromium("the report's browser test")


def printed(value: Any) -> str:
    """What a report shows for an answer, worked out independently of the report's code."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(printed(v) for v in value) or "-"  # nothing, as for null
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def open_and_check(
    browser: Any, report_file: Path, answers: dict[str, Any], points: int
) -> tuple[Any, Any, set[str]]:
    """Open the report offline; check its figure and that every marked value is the API's.

    Returns the browser context, the page and the fields seen.
    """
    # The service is gone: the page must not need it, nor any other network.
    context = new_context(browser, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report_file.as_uri())
    page.wait_for_load_state("networkidle")
    page.wait_for_function("document.getElementById('returns-figure')._fullData !== undefined")
    assert errors == [], errors
    assert [r for r in requests if not r.startswith("file:")] == []

    traces = [(t["name"], t["points"]) for t in page.evaluate(TRACES, "returns-figure")]
    assert traces == [("accuracy", points), ("plateau", 1)]
    assert page.locator("#returns-figure .scatterlayer .trace").count() == 2
    assert page.locator("#returns-figure .scatterlayer .point").count() == points + 1

    fields = page.evaluate(FIELDS)
    assert len(fields) > 100
    seen = set()
    for item in fields:
        root, *path = item["field"].split(".")
        expected = lookup(answers[root], path)
        assert json.loads(item["value"]) == expected, item
        assert item["text"] == printed(expected), item
        seen.add(item["field"])
    return context, page, seen


def write_report_then_reader(
    monkeypatch: pytest.MonkeyPatch, url: str, keys: ProjectKeys, run_id: str, report_file: Path
) -> Callable[..., Any]:
    """Write the run's HTML report with the CLI and the read key; return a GET with that key.

    The GET takes a path and query parameters and returns the API's JSON answer (200 only).
    """
    monkeypatch.setenv("GREENAUDIT_API_KEY", keys.read["Authorization"].split()[1])
    result = runner.invoke(
        app, ["report", run_id, "--format", "html", "--out", str(report_file), "--url", url]
    )
    assert result.exit_code == 0, result.output

    def get(path: str, **params: Any) -> Any:
        response = httpx.get(f"{url}{path}", params=params, headers=keys.read)
        assert response.status_code == 200, response.text
        return response.json()

    return get


def test_html_report_draws_its_figure_and_every_value_is_the_apis(
    browser: Any,
    settings: Settings,
    engine: Engine,
    client: TestClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    report_file = tmp_path / "report.html"
    with serving_seeded(settings, engine, client, seed_run) as (url, keys, run_id):
        get = write_report_then_reader(monkeypatch, url, keys, run_id, report_file)
        nofade = get("/api/v1/analytics/nofade", metric="accuracy", dataset="cifar10", limit=10_000)
        answers = {
            "run": get(f"/api/v1/runs/{run_id}"),
            "returns": get(f"/api/v1/runs/{run_id}/returns", max_points=DEFAULT_CURVE_POINTS),
            "cost": get(f"/api/v1/runs/{run_id}/cost"),
            "nofade": nofade,
            "nofade_run": next(r for r in nofade["runs"] if r["run_id"] == run_id),
            "nofade_dataset": next(g for g in nofade["groups"] if g["key"] == "cifar10"),
        }

    context, page, seen = open_and_check(browser, report_file, answers, len(RUN_ACCURACY))
    assert {
        "run.totals.cpu_kwh",
        "run.totals.gpu_kwh",
        "run.totals.ram_kwh",
        "run.totals.methods.gpu",
        "run.totals.co2_kg",
        "run.carbon_intensity_g_per_kwh",
        "run.carbon_intensity_source",
        "run.pue",
        "run.hardware.gpu_model",
        "returns.plateau.share_of_energy_after",
        "returns.plateau.co2_after_kg",
        "cost.creation.energy_kwh",
        "cost.energy_ratio",
        "nofade_run.score",
        "nofade_run.rho",
        "nofade_run.nofade",
    } <= seen
    assert page.evaluate(UNSOURCED_NUMBERS) == []
    assert page.inner_text("#run-energy").count("measured by") == 2

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "run-report.html").write_text(report_file.read_text(encoding="utf-8"))
    page.locator("figure.plot").screenshot(path=str(ARTIFACTS / "run-report-figure.png"))
    screenshots_fit(page, ARTIFACTS, "run-report", "the report")
    context.close()


def test_the_report_on_a_real_demo_run_shows_the_apis_numbers(
    browser: Any,
    settings: Settings,
    engine: Engine,
    client: TestClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    from greenaudit.client.measure import warm_up_in_background
    from greenaudit.demo import DEMO_GROUP, train_width_sweep

    keys = create_project(client, "demo")
    report_file = tmp_path / "demo-report.html"
    with serving(create_app(settings, engine)) as url:
        client_settings = Settings(
            home=tmp_path / "client",
            url=url,
            api_key=keys.write["Authorization"].split()[1],
            measure_interval_s=0.1,
            country="FRA",
        )
        warm_up_in_background(client_settings).wait(60)
        [result] = train_width_sweep(client_settings, epochs=12, widths=(64,), project="demo")
        assert result.delivered
        get = write_report_then_reader(monkeypatch, url, keys, result.run_id, report_file)
        nofade = get("/api/v1/analytics/nofade", metric="accuracy", dataset="digits", limit=10_000)
        returns = get(f"/api/v1/runs/{result.run_id}/returns", max_points=DEFAULT_CURVE_POINTS)
        answers = {
            "run": get(f"/api/v1/runs/{result.run_id}"),
            "returns": returns,
            "cost": get(f"/api/v1/runs/{result.run_id}/cost"),
            "nofade": nofade,
            "nofade_run": next(r for r in nofade["runs"] if r["run_id"] == result.run_id),
            "nofade_dataset": next(g for g in nofade["groups"] if g["key"] == "digits"),
        }
    assert answers["run"]["group"] == DEMO_GROUP
    # The API's totals are what the client measured: the report's numbers are the run's.
    assert answers["run"]["totals"]["energy_kwh"] == pytest.approx(result.energy_kwh, rel=1e-9)
    context, page, seen = open_and_check(browser, report_file, answers, len(returns["curve"]))
    assert {
        "run.totals.cpu_kwh",
        "run.totals.co2_kg",
        "run.carbon_intensity_source",
        "returns.plateau.share_of_energy_after",
        "nofade_run.rho",
        "nofade_run.nofade",
    } <= seen
    assert page.evaluate(UNSOURCED_NUMBERS) == []
    context.close()
