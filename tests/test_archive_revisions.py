"""Archives made at an older schema revision import into the current one (issue 15, point 6).

``tests/data/archive-rev0006.zip`` and ``archive-rev0007.zip`` were written by the greenaudit of
the commits whose migrations end at those revisions (tests/data/make_archives.py), from the same
seed. They must import into whatever the head is now, so these tests stay valid as migrations
are added; the figures below are worked by hand from the seed (tests/data/README.md).
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from greenaudit.api import archive
from greenaudit.api.app import create_app
from greenaudit.settings import Settings

from .conftest import ADMIN_TOKEN
from .test_archive import (
    _restore_database_url,  # noqa: F401 - an autouse fixture
    empty_database,
    engine_at,
    import_into,
    read_key,
    table_counts,
)

DATA = Path(__file__).parent / "data"
RUN_A = "00000000-0000-4000-8000-00000000000a"
RUN_B = "00000000-0000-4000-8000-00000000000b"
# Run A: 4 samples of 0.001 + 0.004 + 0.0005 kWh; run B: 2 samples of 0.001 + 0.002 + 0.0005.
ENERGY_A, ENERGY_B = 4 * 0.0055, 2 * 0.0035
# 50 g/kWh at PUE 1.2: 0.06 kg per kWh.
CO2_A, CO2_B = ENERGY_A * 0.06, ENERGY_B * 0.06
# GPU time: 4 minutes on 2 GPUs, 2 minutes on 1.
GPU_HOURS = (4 * 60 * 2 + 2 * 60 * 1) / 3600


def get(client: TestClient, path: str, headers: dict[str, str], **params: Any) -> Any:
    response = client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("name", ["archive-rev0006.zip", "archive-rev0007.zip"])
def test_an_older_archive_imports_into_the_head(name: str, backend: str, tmp_path: Path):
    path = DATA / name
    with empty_database(backend, tmp_path) as url, engine_at(url) as target:
        result = import_into(url, path)
        assert result.exit_code == 0, result.output
        revision = name.removeprefix("archive-rev").removesuffix(".zip")
        assert f"made at schema revision {revision}" in result.output
        counts = table_counts(target)
        assert {k: v for k, v in counts.items() if v} == {
            "project": 1,
            "run": 2,
            "energy_sample": 6,
            "metric_point": 3,
            "dataset_profile": 1,
            "run_energy_totals": 2,
            "run_metric_stats": 1,
            "run_method": 6,
            # At 0006 the budget was a column of the project; migration 0007 made it this row.
            "budget": 1,
            # Revision 0008's energy blocks, rebuilt from the samples: one block of each of the
            # four widths (16, 256, 4096, 65536 samples) per run, as each run has under 16.
            "run_energy_block": 8,
        }
        settings = Settings(database_url=url, admin_token=ADMIN_TOKEN)
        with TestClient(create_app(settings, target)) as copy:
            with archive.open_archive(path) as verified:
                key = read_key(copy, str(verified.project_id))
            runs = {r["id"]: r for r in get(copy, "/api/v1/runs", key)["items"]}
            totals = get(copy, "/api/v1/totals", key, by="project")["rows"]
            budgets = get(copy, "/api/v1/budgets", key)
            profiles = get(copy, "/api/v1/datasets/profiles", key)
    assert set(runs) == {RUN_A, RUN_B}
    a, b = runs[RUN_A], runs[RUN_B]
    assert (a["status"], a["duration_s"], a["group"]) == ("finished", 240.0, "sweep-1")
    assert (b["status"], b["kind"], b["parent_run_id"]) == ("running", "finetune", RUN_A)
    assert a["meta"] == {"lr": 0.1, "note": "première"}
    assert math.isclose(a["totals"]["energy_kwh"], ENERGY_A, rel_tol=1e-12)
    assert math.isclose(b["totals"]["co2_kg"], CO2_B, rel_tol=1e-12)
    assert (a["totals"]["energy_samples"], b["totals"]["energy_samples"]) == (4, 2)
    [row] = totals
    assert row["key"] == "archived" and row["runs"] == 2
    assert math.isclose(row["energy_kwh"], ENERGY_A + ENERGY_B, rel_tol=1e-12)  # 0.029 kWh
    assert math.isclose(row["co2_kg"], CO2_A + CO2_B, rel_tol=1e-12)  # 0.00174 kg
    assert math.isclose(row["gpu_hours"], GPU_HOURS, rel_tol=1e-12)  # 0.1 h
    [budget] = budgets if isinstance(budgets, list) else budgets["items"]
    assert (budget["group"], budget["period"], budget["limit_kg_co2"]) == (None, "all", 25.0)
    assert math.isclose(budget["spent"]["kg_co2"], CO2_A + CO2_B, rel_tol=1e-12)
    [profile] = profiles if isinstance(profiles, list) else profiles["items"]
    assert (profile["name"], profile["num_classes"]) == ("cifar10", 10)
    assert math.isclose(profile["entropy_bits"], math.log2(10), rel_tol=1e-12)


def _with_revision(path: Path, out: Path, revision: str) -> None:
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w") as target:
        manifest = json.loads(source.read("manifest.json"))
        manifest["schema_revision"] = revision
        target.writestr("manifest.json", json.dumps(manifest))
        for name in source.namelist():
            if name != "manifest.json":
                target.writestr(name, source.read(name))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_archive_from_a_newer_revision_is_refused(backend: str, tmp_path: Path):
    newer = tmp_path / "newer.zip"
    _with_revision(DATA / "archive-rev0007.zip", newer, "9999")
    with empty_database(backend, tmp_path) as url, engine_at(url) as target:
        result = import_into(url, newer)
        assert result.exit_code == 2
        [line] = result.output.strip().splitlines()
        assert line.startswith(
            "error: the archive has schema revision 9999, which this greenaudit (0.1.0) does "
            f"not know (its migrations end at {archive.head_revision()})"
        )
        assert line.endswith("; nothing was imported")
        assert inspect(target).get_table_names() == []
