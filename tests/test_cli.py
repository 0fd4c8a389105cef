"""The command line, in process, on real databases."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect
from typer.testing import CliRunner

from greenaudit.api.db import make_engine
from greenaudit.cli import app
from greenaudit.settings import Settings

from .conftest import ADMIN_TOKEN, LiveServer, fresh_postgres_database, keep_cpu_busy

runner = CliRunner()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_db_upgrade_creates_the_schema(backend: str, tmp_path: Path):
    if backend == "sqlite":
        _check_upgrade(f"sqlite:///{tmp_path / 'cli.db'}")
    else:
        with fresh_postgres_database("cli") as url:
            _check_upgrade(url)


def _check_upgrade(url: str) -> None:
    result = runner.invoke(app, ["db", "upgrade", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "database at head" in result.output
    engine = make_engine(Settings(database_url=url))
    try:
        assert "energy_sample" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_unreachable_database_is_a_clear_error(tmp_path: Path):
    result = runner.invoke(
        app, ["db", "upgrade", "--database-url", "postgresql://nobody@127.0.0.1:1/none"]
    )
    assert result.exit_code == 2
    assert "cannot reach the database" in result.output


def test_flush_needs_a_service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("GREENAUDIT_URL", raising=False)
    monkeypatch.setenv("GREENAUDIT_HOME", str(tmp_path))
    result = runner.invoke(app, ["flush"])
    assert result.exit_code == 2
    assert "GREENAUDIT_URL" in result.output


@pytest.mark.parametrize("token", [None, "short", "z" * 64])
def test_serve_refuses_to_start_without_a_strong_admin_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, token: str | None
):
    if token is None:
        monkeypatch.delenv("GREENAUDIT_ADMIN_TOKEN", raising=False)
    else:
        monkeypatch.setenv("GREENAUDIT_ADMIN_TOKEN", token)
    monkeypatch.setenv("GREENAUDIT_HOME", str(tmp_path))
    result = runner.invoke(app, ["serve", "--port", "1"])
    assert result.exit_code == 2
    assert "the service will not start: GREENAUDIT_ADMIN_TOKEN is" in result.output
    assert "secrets.token_urlsafe(32)" in result.output
    # It stopped before touching the database.
    assert not (tmp_path / "greenaudit.db").exists()


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("GREENAUDIT_RATE_LIMIT", "lots", "GREENAUDIT_RATE_LIMIT='lots' is not a rate"),
        ("GREENAUDIT_RATE_LIMIT_STORAGE", "nope://x", "GREENAUDIT_RATE_LIMIT_STORAGE='nope://x'"),
    ],
)
def test_serve_refuses_a_rate_limit_it_cannot_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str, says: str
):
    monkeypatch.setenv("GREENAUDIT_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("GREENAUDIT_HOME", str(tmp_path))
    monkeypatch.setenv(variable, value)
    result = runner.invoke(app, ["serve", "--port", "1"])
    assert result.exit_code == 2
    assert f"the service will not start: {says}" in " ".join(result.output.split())
    assert not (tmp_path / "greenaudit.db").exists()


def test_project_create_needs_the_admin_token(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("GREENAUDIT_ADMIN_TOKEN", raising=False)
    result = runner.invoke(app, ["project", "create", "vision"])
    assert result.exit_code == 2
    assert "GREENAUDIT_ADMIN_TOKEN" in result.output


def test_import_curves_and_nofade_print_the_api_answers(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("GREENAUDIT_ADMIN_TOKEN", ADMIN_TOKEN)
    imported = runner.invoke(app, ["import", "--url", live_server.url])
    assert imported.exit_code == 0, imported.output
    assert "imported 24 published results" in imported.output
    read_key = imported.output.split("read key for it: ")[1].split()[0]

    monkeypatch.setenv("GREENAUDIT_URL", live_server.url)
    monkeypatch.setenv("GREENAUDIT_API_KEY", read_key)
    curves = runner.invoke(
        app,
        [
            "curves",
            "--x",
            "flops",
            "--metric",
            "AP",
            "--group",
            "arXiv 1911.09070",
            "--target",
            "0.6",
        ],
    )
    assert curves.exit_code == 0, curves.output
    answer = httpx.get(
        f"{live_server.url}/api/v1/analytics/diminishing-returns",
        params={"x": "flops", "metric": "AP", "group": "arXiv 1911.09070", "target": 0.6},
        headers={"Authorization": f"Bearer {read_key}"},
    ).json()
    thompson = next(f for f in answer["fits"] if f["model"] == "thompson")
    slope = next(p for p in thompson["parameters"] if p["name"] == "b")
    assert f"b={slope['value']:.4g}" in curves.output
    assert "EfficientDet-D7x" in curves.output and "projection to 0.6 (thompson)" in curves.output

    nofade = runner.invoke(app, ["nofade", "--metric", "top1", "--axis", "flops"])
    assert nofade.exit_code == 0, nofade.output
    assert "greenaudit-1" in nofade.output and "not the paper's equation" in nofade.output
    # EdgeNeXt-S: 79.4% top-1 on ImageNet-1k (uniform, 1000 classes). h2(0.206) = 0.7338,
    # 0.206·log2 999 = 2.0527, R = 2.7864, ρ = (9.9658 − 2.7864) / 9.9658 = 0.7204. It has no
    # GFLOPs in the catalog, so it has ρ but no NoFADE on this axis.
    edgenext = next(line for line in nofade.output.splitlines() if "0.794" in line)
    assert "0.7204" in edgenext and "no flops cost" in edgenext


def test_curves_without_a_service_is_a_clear_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("GREENAUDIT_URL", raising=False)
    result = runner.invoke(app, ["curves"])
    assert result.exit_code == 2 and "GREENAUDIT_URL" in result.output


def test_import_refuses_other_csv_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GREENAUDIT_ADMIN_TOKEN", ADMIN_TOKEN)
    other = tmp_path / "emissions.csv"
    other.write_text("timestamp,project_name,duration\n")
    result = runner.invoke(app, ["import", str(other)])
    assert result.exit_code == 2 and "neither CodeCarbon's emissions.csv" in result.output


@pytest.mark.filterwarnings("ignore:The save_to_\\* parameters are deprecated")
def test_import_of_codecarbons_emissions_csv(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    from codecarbon import OfflineEmissionsTracker

    tracker = OfflineEmissionsTracker(
        country_iso_code="FRA",
        output_dir=str(tmp_path),
        save_to_file=True,
        log_level="error",
        allow_multiple_runs=True,
        measure_power_secs=1,
    )
    tracker.start()
    keep_cpu_busy(1.5)
    tracker.stop()
    final = tracker.final_emissions_data
    csv_path = tmp_path / "emissions.csv"
    monkeypatch.setenv("GREENAUDIT_API_KEY", live_server.write_key)
    for _ in range(2):  # importing twice changes nothing
        result = runner.invoke(app, ["import", str(csv_path), "--url", live_server.url])
        assert result.exit_code == 0, result.output
        assert "imported 1 CodeCarbon run(s)" in result.output
    runs = httpx.get(f"{live_server.url}/api/v1/runs", headers=live_server.keys.read).json()
    assert runs["total"] == 1
    totals = runs["items"][0]["totals"]
    assert totals["energy_kwh"] == pytest.approx(final.energy_consumed, rel=1e-6)
    assert totals["co2_kg"] == pytest.approx(final.emissions, rel=1e-6)
    assert totals["methods"]["cpu"] == ["codecarbon"] and totals["energy_samples"] == 1
