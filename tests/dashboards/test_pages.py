"""The dashboards in a real headless browser: Debian's Chromium, driven by Playwright.

Each page must load without console errors, draw the expected plotly traces for seeded data,
and have working filters. Screenshots at 1280 and 390 px go to test-artifacts/dashboards/.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from greenaudit.api.app import create_app
from greenaudit.catalog import import_catalog
from greenaudit.settings import Settings

from ..api.helpers import run_body, sample
from ..browser import headless_chromium, new_context, screenshots_fit
from ..conftest import ADMIN_TOKEN, ProjectKeys, create_project, serving

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboards"
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
# Browser tests exercise pages; the SQL behind them is tested on both databases elsewhere.
pytestmark = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)

PLOT_STATE = """
() => Array.from(document.querySelectorAll("div.plot")).map(d => ({
  id: d.id,
  traces: (d._fullData || []).map(t => ({name: t.name, points: (t.x || t.z || []).length})),
  axes: Object.keys(d._fullLayout || {}).filter(k => /^[xy]axis/.test(k))
          .map(k => ({axis: k, title: (d._fullLayout[k].title || {}).text || "",
                      type: d._fullLayout[k].type})),
}))
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from headless_chromium("the dashboard tests")


def _add_run(
    client: TestClient,
    keys: ProjectKeys,
    *,
    model: str,
    dataset: str,
    samples: int,
    accuracy: list[float],
    **fields: Any,
) -> str:
    run = client.post(
        "/api/v1/runs",
        json=run_body(model=model, dataset=dataset, name=model, flops=1e9 * samples, **fields),
        headers=keys.write,
    ).json()
    energy = [sample(i) for i in range(samples)]
    client.post(f"/api/v1/runs/{run['id']}/energy", json={"samples": energy}, headers=keys.write)
    points = [
        {
            "name": "accuracy",
            "step": i + 1,
            "epoch": i + 1,
            "value": value,
            "time": (T0 + timedelta(minutes=i + 1)).isoformat(),
        }
        for i, value in enumerate(accuracy)
    ]
    client.post(f"/api/v1/runs/{run['id']}/metrics", json={"points": points}, headers=keys.write)
    return str(run["id"])


# The vision project's runs, in the order they are made; each energy sample is 60 s.
VISION_RUNS: dict[str, dict[str, Any]] = {
    "resnet18": {
        "model": "resnet18",
        "dataset": "cifar10",
        "samples": 4,
        "accuracy": [0.6, 0.8, 0.85, 0.851],
        "group": "sweep-a",
    },
    "resnet50": {
        "model": "resnet50",
        "dataset": "cifar10",
        "samples": 8,
        "accuracy": [0.7, 0.88, 0.9, 0.905],
        "group": "sweep-a",
    },
    "vit": {
        "model": "vit-b16",
        "dataset": "imagenet",
        "samples": 12,
        "accuracy": [0.5, 0.7, 0.76, 0.77],
    },
}


@pytest.fixture
def site(settings: Settings, engine: Engine, client: TestClient) -> Iterator[dict[str, Any]]:
    """A served site with two projects' worth of data."""
    keys = create_project(client, "vision")
    client.post(
        "/api/v1/datasets/profiles", json={"name": "cifar10", "num_classes": 10}, headers=keys.write
    )
    runs = {name: _add_run(client, keys, **run) for name, run in VISION_RUNS.items()}
    other = create_project(client, "secret-lab")
    runs["other"] = _add_run(
        client, other, model="secret-model", dataset="secret-data", samples=2, accuracy=[0.5, 0.6]
    )
    with serving(create_app(settings, engine)) as url:
        import_catalog(url, ADMIN_TOKEN)
        yield {"url": url, "keys": keys, "other": other, "runs": runs}


@pytest.fixture
def page(browser: Any, site: dict[str, Any]) -> Iterator[Any]:
    context = new_context(browser, viewport={"width": 1280, "height": 900})
    key = site["keys"].read["Authorization"].split()[1]
    context.add_cookies(
        [{"name": "greenaudit_key", "value": key, "url": site["url"] + "/dashboards/"}]
    )
    opened = context.new_page()
    opened.console_errors = []
    opened.on(
        "console", lambda m: opened.console_errors.append(m.text) if m.type == "error" else None
    )
    opened.on("pageerror", lambda e: opened.console_errors.append(str(e)))
    yield opened
    context.close()


def visit(page: Any, url: str) -> dict[str, Any]:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    state = {plot["id"]: plot for plot in page.evaluate(PLOT_STATE)}
    assert page.console_errors == [], page.console_errors
    for plot in state.values():
        for axis in plot["axes"]:
            assert axis["title"], f"{plot['id']} {axis['axis']} has no label"
            if axis["type"] in ("linear", "log", "date"):
                assert "(" in axis["title"], f"{plot['id']} {axis['axis']}: no unit"
    return state


def traces(state: dict[str, Any], plot: str) -> list[tuple[str, int]]:
    return [(t["name"], t["points"]) for t in state[plot]["traces"]]


def screenshots(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshots_fit(page, ARTIFACTS, name, name)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_overview(page: Any, site: dict[str, Any]):
    state = visit(page, site["url"] + "/dashboards/")
    assert traces(state, "trend") == [("CO2e per day", 1)]
    assert traces(state, "models") == [("CO2e by model", 3)]
    assert traces(state, "datasets") == [("CO2e by dataset", 2)]
    assert page.inner_text("#total-runs") == "3"
    # 24 samples x 0.0055 kWh = 0.132 kWh; x 50 g/kWh x 1.2 = 7.92 g
    assert page.inner_text("#total-co2") == "7.92 g CO2e"
    equivalent = page.inner_text("#equivalent")
    assert "0.0319 km" in equivalent and "US EPA" in equivalent and "248.5 g per km" in equivalent
    assert "secret" not in page.content()
    # The seeded runs started on 2026-12-01; "last 7 days" is counted back from today.
    with page.expect_navigation():
        page.select_option("#filter-period", "7")
    page.wait_for_load_state("networkidle")
    recent = datetime.now(timezone.utc) - T0 < timedelta(days=7)
    assert page.inner_text("#total-runs") == ("3" if recent else "0")
    screenshots(page, "overview")


def test_project_page_filters_sorting_and_groups(page: Any, site: dict[str, Any]):
    state = visit(page, site["url"] + "/dashboards/runs")
    assert traces(state, "components") == [("CPU", 3), ("GPU", 3), ("RAM", 3)]
    assert traces(state, "co2_models") == [("CO2e by model", 3)]
    rows = page.locator("#runs-table tbody tr")
    assert rows.count() == 3

    with page.expect_navigation():
        page.select_option("#filter-model", "resnet50")
    page.wait_for_load_state("networkidle")
    assert page.locator("#runs-table tbody tr").count() == 1
    assert "1 runs" in page.inner_text("#run-count")

    page.goto(site["url"] + "/dashboards/runs")
    with page.expect_navigation():
        page.click("#sort-co2_kg")  # most CO2 first
    page.wait_for_load_state("networkidle")
    first = page.locator("#runs-table tbody tr").first.inner_text()
    assert first.startswith("vit-b16")
    with page.expect_navigation():
        page.click("#sort-co2_kg")  # and back
    page.wait_for_load_state("networkidle")
    assert page.locator("#runs-table tbody tr").first.inner_text().startswith("resnet18")

    group = page.locator("#groups-table tbody tr").first.inner_text()
    # sweep-a: 12 samples x 0.0055 kWh = 66 Wh, 3.96 g; best accuracy 0.905 (resnet50).
    assert group.split("\t")[:4] == ["sweep-a", "2", "66", "3.96"]
    assert "resnet50: accuracy 0.905" in group
    assert "secret" not in page.content()
    screenshots(page, "project")


def test_run_page(page: Any, site: dict[str, Any]):
    state = visit(page, f"{site['url']}/dashboards/runs/{site['runs']['vit']}")
    assert traces(state, "power") == [("CPU", 12), ("GPU", 12), ("RAM", 12)]
    assert traces(state, "energy") == [("cumulative energy", 12)]
    assert traces(state, "returns") == [("accuracy", 4), ("plateau", 1)]
    assert "12 points drawn from 12 energy samples" in page.inner_text("#point-count")
    # Range 0.5 to 0.77: ε = 0.00135; 0.77 is first reached at step 4, the last point.
    assert page.inner_text("#plateau-summary").startswith("Plateau at step 4")
    with page.expect_navigation():
        page.select_option("#filter-axis", "co2_kg")
    page.wait_for_load_state("networkidle")
    state = visit(page, page.url)
    assert state["returns"]["axes"][0]["title"] == "cumulative CO2e (g)"
    provenance = page.inner_text("#provenance")
    assert "test fixture" in provenance and "nvml-counter" in provenance and "rapl" in provenance
    screenshots(page, "run")


def test_curves_page(page: Any, site: dict[str, Any]):
    state = visit(page, site["url"] + "/dashboards/curves?x=energy_kwh&target=0.95")
    names = [name for name, _ in traces(state, "scaling")]
    assert names[:2] == ["your runs", "Pareto frontier"]
    assert traces(state, "scaling")[0] == ("your runs", 3)
    assert {"thompson fit", "log-linear fit"} <= set(names)
    assert state["scaling"]["axes"][0]["title"] == "energy_kwh (kWh)"

    with page.expect_navigation():
        page.select_option("#filter-x", "flops")
    page.wait_for_load_state("networkidle")
    state = visit(page, page.url)
    assert state["scaling"]["axes"][0]["title"] == "flops (FLOPs)"

    # The catalog logs COCO AP with GFLOPs: nine EfficientDets join the picture.
    page.fill("input[name=metric]", "AP")
    with page.expect_navigation():
        page.check("#filter-published")
    page.wait_for_load_state("networkidle")
    state = visit(page, page.url)
    assert dict(traces(state, "scaling"))["published results"] == 9
    screenshots(page, "curves")


def test_nofade_page(page: Any, site: dict[str, Any]):
    state = visit(page, site["url"] + "/dashboards/nofade")
    ((name, cells),) = traces(state, "leaderboard")
    assert name == "NoFADE" and cells == 1  # one dataset (cifar10) has a profile
    tooltip = page.get_attribute("#nofade-help", "title")
    assert tooltip.count(". ") == 1 and tooltip.endswith(".")  # two sentences
    assert "greenaudit's own definition" in page.content()
    assert "C0 = 1 g CO2e" in page.inner_text("#axis-note")
    with page.expect_navigation():
        page.select_option("#filter-axis", "energy_kwh")
    page.wait_for_load_state("networkidle")
    assert "C0 = 1 Wh" in page.inner_text("#axis-note")
    saturation = page.inner_text("#saturation")
    assert "cifar10" in saturation and "imagenet" not in saturation
    screenshots(page, "nofade")


def test_pages_need_a_key_and_show_only_its_project(browser: Any, site: dict[str, Any]):
    context = new_context(browser)
    anonymous = context.new_page()
    anonymous.goto(site["url"] + "/dashboards/runs")
    assert anonymous.url.startswith(site["url"] + "/dashboards/login")
    anonymous.fill("input[name=key]", "ga_000000000000_wrong")
    with anonymous.expect_navigation():
        anonymous.click("button[type=submit]")
    assert "That key does not work" in anonymous.content()
    other_key = site["other"].read["Authorization"].split()[1]
    anonymous.fill("input[name=key]", other_key)
    with anonymous.expect_navigation():
        anonymous.click("button[type=submit]")
    anonymous.wait_for_load_state("networkidle")
    assert anonymous.url == site["url"] + "/dashboards/runs"
    content = anonymous.content()
    assert "secret-model" in content and "resnet18" not in content
    response = anonymous.goto(f"{site['url']}/dashboards/runs/{site['runs']['vit']}")
    assert response.status == 404
    context.close()


def test_runs_table_is_paginated_on_the_server(page: Any, site: dict[str, Any], client: TestClient):
    for i in range(25):
        client.post(
            "/api/v1/runs",
            json=run_body(model=f"tiny-{i:02d}", dataset="cifar10"),
            headers=site["keys"].write,
        )
    visit(page, site["url"] + "/dashboards/runs?sort=model&order=asc")
    assert page.locator("#runs-table tbody tr").count() == 25
    assert "28 runs · page 1 of 2" in page.inner_text("#run-count")
    with page.expect_navigation():
        page.click("#next-page")
    page.wait_for_load_state("networkidle")
    rows = page.locator("#runs-table tbody tr")
    # Sorted by model: resnet18, resnet50, tiny-00 ... tiny-24, vit-b16; page 2 holds the last 3.
    assert rows.count() == 3
    assert [rows.nth(i).inner_text().split("\t")[1] for i in range(3)] == [
        "tiny-23",
        "tiny-24",
        "vit-b16",
    ]
    assert "page 2 of 2" in page.inner_text("#run-count")
