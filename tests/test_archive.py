"""``greenaudit export`` and ``greenaudit import`` of a project archive, on real databases.

A project filled through the API is exported with the CLI, imported into an empty database,
and compared row by row, column by column, and through the API of a service on the copy.
"""

from __future__ import annotations

import json
import math
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, Table, func, inspect, select
from typer.testing import CliRunner

from greenaudit.api import archive
from greenaudit.api.alerts import service as alerts
from greenaudit.api.app import create_app
from greenaudit.api.db import make_engine
from greenaudit.api.migrate import upgrade
from greenaudit.api.models import Base, utcnow
from greenaudit.cli import app
from greenaudit.settings import Settings

from .api.helpers import point, run_body, sample
from .conftest import (
    ADMIN,
    ADMIN_TOKEN,
    SCHEMA_TABLES,
    ProjectKeys,
    create_project,
    fresh_postgres_database,
)

runner = CliRunner()

# An archive leaves out the project's keys and webhook, and the energy blocks that the import
# rebuilds from the samples (archive.REBUILT_TABLES).
PROJECT_TABLES = SCHEMA_TABLES - {"api_key", "webhook", "run_energy_block"}
#: Surrogate keys the import regenerates; the rows keep their order.
SURROGATE = {"energy_sample": "id", "metric_point": "id"}


@pytest.fixture(autouse=True)
def _restore_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI exports --database-url to the environment (for uvicorn workers); undo it.
    monkeypatch.delenv("GREENAUDIT_DATABASE_URL", raising=False)


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@contextmanager
def empty_database(backend: str, tmp_path: Path, label: str = "target") -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / f'{label}.db'}"
    else:
        with fresh_postgres_database(label) as url:
            yield url


@contextmanager
def engine_at(url: str) -> Iterator[Engine]:
    engine = make_engine(Settings(database_url=url))
    try:
        yield engine
    finally:
        engine.dispose()


def post(client: TestClient, path: str, keys: ProjectKeys, body: dict[str, Any]) -> Any:
    response = client.post(path, json=body, headers=keys.write)
    assert response.status_code in (200, 201), response.text
    return response.json()


def fill(client: TestClient) -> tuple[ProjectKeys, list[str]]:
    """Project "vision" with lineage, ranks, metrics, profiles and runs in every state, and
    project "speech", whose rows are interleaved with vision's and must not be exported.
    """
    vision = create_project(client, "vision")
    speech = create_project(client, "speech")
    hardware = {
        "node": "node-1",
        "rank": 0,
        "world_size": 2,
        "cpu_model": "EPYC 9654",
        "cpu_count": 96,
        "gpu_model": "H100",
        "gpu_count": 2,
        "ram_total_gb": 1536.0,
    }
    meta = {"lr": 0.1 + 0.2, "layers": [64, 128], "note": "première", "nested": {"a": None}}
    pretrain = post(
        client,
        "/api/v1/runs",
        vision,
        run_body(name="pretrain", group="sweep-1", hardware=hardware, meta=meta, flops=1.5e18),
    )
    finetune = post(
        client,
        "/api/v1/runs",
        vision,
        run_body(
            name="finetune",
            kind="finetune",
            group="sweep-1",
            parent_run_id=pretrain["id"],
            model="resnet18-ft",
            hardware={**hardware, "world_size": 1, "gpu_count": 1},
        ),
    )
    failed = post(client, "/api/v1/runs", vision, run_body(name="oom", model="vit-b16"))
    other = post(client, "/api/v1/runs", speech, run_body(name="speech-run", model="whisper"))

    for seq in range(6):
        odd = {"cpu_kwh": 1 / 3, "gpu_util_pct": 87.5} if seq % 2 else {}
        no_cpu = {"cpu_kwh": None, "cpu_w": None, "cpu_method": None} if seq == 4 else {}
        batch = [sample(seq, rank=0, **odd, **no_cpu), sample(seq, rank=1, **odd)]
        post(client, f"/api/v1/runs/{pretrain['id']}/energy", vision, {"samples": batch})
        post(client, f"/api/v1/runs/{other['id']}/energy", speech, {"samples": [sample(seq)]})
        points = [point(seq + 1, (seq + 1) / 7), point(seq + 1, 2.5 / (seq + 1), name="loss")]
        post(client, f"/api/v1/runs/{pretrain['id']}/metrics", vision, {"points": points})
        post(
            client,
            f"/api/v1/runs/{other['id']}/metrics",
            speech,
            {"points": [point(seq + 1, 0.1 * seq, name="wer")]},
        )
    ft_samples = [sample(seq, gpu_count=1, gpu_kwh=0.002) for seq in range(3)]
    post(client, f"/api/v1/runs/{finetune['id']}/energy", vision, {"samples": ft_samples})
    ft_points = [point(step, 0.9 + step / 100) for step in range(1, 4)]
    post(client, f"/api/v1/runs/{finetune['id']}/metrics", vision, {"points": ft_points})
    post(client, f"/api/v1/runs/{failed['id']}/energy", vision, {"samples": [sample(0)]})

    update = {"samples_processed": 60_000, "total_steps": 500, "dataset_size": 50_000}
    response = client.patch(f"/api/v1/runs/{pretrain['id']}", json=update, headers=vision.write)
    assert response.status_code == 200, response.text
    post(
        client,
        f"/api/v1/runs/{pretrain['id']}/finish",
        vision,
        {"ended_at": "2026-12-01T10:07:00+00:00", "duration_s": 420.125, "lost_items": 3},
    )
    post(
        client,
        f"/api/v1/runs/{failed['id']}/finish",
        vision,
        {
            "status": "failed",
            "ended_at": "2026-12-01T10:01:00+00:00",
            "duration_s": 60.0,
            "error": "CUDA out of memory",
        },
    )
    post(client, f"/api/v1/runs/{finetune['id']}/heartbeat", vision, {})
    post(
        client,
        "/api/v1/datasets/profiles",
        vision,
        {"name": "cifar10", "class_counts": [5000] * 9 + [4999], "sample_count": 49_999},
    )
    post(client, "/api/v1/datasets/profiles", vision, {"name": "imagenet", "num_classes": 1000})
    post(client, "/api/v1/datasets/profiles", speech, {"name": "librispeech", "num_classes": 29})
    # A budget already spent, and the alert an alert pass stores for it.
    post(client, "/api/v1/budgets", vision, {"limit_kwh": 1e-6, "group": "sweep-1"})
    now = utcnow()
    with client.app.state.write_sessions() as session, session.begin():  # type: ignore[attr-defined]
        assert alerts.evaluate(session, now, now) == 1
    return vision, [pretrain["id"], finetune["id"], failed["id"]]


def export(engine: Engine, tmp_path: Path, project: str = "vision") -> Path:
    out = tmp_path / "vision.zip"
    result = runner.invoke(
        app, ["export", project, "--out", str(out), "--database-url", url_of(engine)]
    )
    assert result.exit_code == 0, result.output
    assert "exported project vision" in result.output
    return out


def import_into(url: str, path: Path) -> Any:
    return runner.invoke(app, ["import", str(path), "--database-url", url])


def _in_project(table: Table, project_id: uuid.UUID) -> Any:
    tables = Base.metadata.tables
    if table.name == "project":
        return table.c.id == project_id
    if "project_id" in table.c:
        return table.c.project_id == project_id
    runs = tables["run"]
    return table.c.run_id.in_(select(runs.c.id).where(runs.c.project_id == project_id))


def project_rows(engine: Engine, project_id: uuid.UUID) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the project per table, surrogate keys left out, in a comparable order."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    # Tables the import rebuilds from the archived rows compare like the archived ones.
    rebuilt = [Base.metadata.tables[name] for name in sorted(archive.REBUILT_TABLES)]
    with engine.connect() as connection:
        for table in [*archive.archived_tables(), *rebuilt]:
            surrogate = SURROGATE.get(table.name)
            columns = [c for c in table.columns if c.name != surrogate]
            query = select(*columns).where(_in_project(table, project_id))
            if surrogate:
                # Regenerated keys keep the exported order, so rows compare in id order.
                found = [tuple(r) for r in connection.execute(query.order_by(table.c[surrogate]))]
            else:
                found = sorted((tuple(r) for r in connection.execute(query)), key=repr)
            rows[table.name] = found
    return rows


def table_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            t.name: int(connection.scalar(select(func.count()).select_from(t)) or 0)
            for t in Base.metadata.sorted_tables
        }


def api_view(client: TestClient, headers: dict[str, str], run_ids: list[str]) -> dict[str, Any]:
    def get(path: str, **params: Any) -> Any:
        response = client.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    view: dict[str, Any] = {
        "runs": get("/api/v1/runs", limit=500),
        "profiles": get("/api/v1/datasets/profiles"),
        "budgets": get("/api/v1/budgets"),
        "alerts": get("/api/v1/alerts"),
    }
    for run_id in run_ids:
        view[run_id] = {
            "detail": get(f"/api/v1/runs/{run_id}"),
            "energy": get(f"/api/v1/runs/{run_id}/energy", limit=10_000),
            "metrics": get(f"/api/v1/runs/{run_id}/metrics", limit=10_000),
            "returns": get(f"/api/v1/runs/{run_id}/returns"),
        }
    return view


def read_key(client: TestClient, project_id: str) -> dict[str, str]:
    response = client.post(
        f"/api/v1/projects/{project_id}/keys", json={"scope": "read"}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


def check_round_trip(
    engine: Engine, client: TestClient, tmp_path: Path, target_backend: str
) -> None:
    vision, run_ids = fill(client)
    project_id = uuid.UUID(vision.id)
    path = export(engine, tmp_path)
    source_rows = project_rows(engine, project_id)
    assert {name for name, rows in source_rows.items() if rows} == (
        PROJECT_TABLES | archive.REBUILT_TABLES
    )

    with empty_database(target_backend, tmp_path) as url, engine_at(url) as target:
        result = import_into(url, path)
        assert result.exit_code == 0, result.output
        assert "imported project vision" in result.output
        assert f"/api/v1/projects/{vision.id}/keys" in result.output

        assert project_rows(target, project_id) == source_rows
        # Nothing else came along: not the other project, and no keys.
        counts = table_counts(target)
        assert counts == {
            name: len(source_rows.get(name, []))
            for name in (t.name for t in Base.metadata.sorted_tables)
        }
        assert counts["api_key"] == 0

        target_settings = Settings(database_url=url, admin_token=ADMIN_TOKEN)
        with TestClient(create_app(target_settings, target), raise_server_exceptions=False) as copy:
            copy_key = read_key(copy, vision.id)
            copied = api_view(copy, copy_key, run_ids)
            copied_totals = totals_view(copy, copy_key)
    source = api_view(client, vision.read, run_ids)
    source_totals = totals_view(client, vision.read)

    if target_backend == engine.dialect.name:
        assert copied == source
    else:
        # The service reads timestamps as epoch seconds through SQLite's julianday(), good to
        # some 10 microseconds, so a run's returns curve (energy interpolated in time) differs
        # in the 7th digit between databases holding identical rows.
        returns = [{r: view[r].pop("returns") for r in run_ids} for view in (copied, source)]
        assert copied == source
        assert close(*returns, rel_tol=1e-5)
    # Sums over several runs may add up in another order, so the last bit may differ.
    assert close(copied_totals, source_totals, rel_tol=1e-12)


def totals_view(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    view = {}
    for by in ("project", "model", "dataset"):
        response = client.get("/api/v1/totals", params={"by": by}, headers=headers)
        assert response.status_code == 200, response.text
        view[by] = response.json()
    return view


def close(a: Any, b: Any, rel_tol: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=rel_tol)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], rel_tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, rel_tol) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_a_project_round_trips_exactly(engine: Engine, client: TestClient, tmp_path: Path):
    check_round_trip(engine, client, tmp_path, engine.dialect.name)


@pytest.mark.parametrize(
    ("engine", "target_backend"),
    [("sqlite", "postgresql"), ("postgresql", "sqlite")],
    indirect=["engine"],
)
def test_a_project_moves_between_databases(
    engine: Engine, client: TestClient, tmp_path: Path, target_backend: str
):
    check_round_trip(engine, client, tmp_path, target_backend)


def test_the_archive_layout(engine: Engine, client: TestClient, tmp_path: Path):
    vision, _ = fill(client)
    path = export(engine, tmp_path)
    with zipfile.ZipFile(path) as zipped:
        manifest = json.loads(zipped.read("manifest.json"))
        names = zipped.namelist()
    assert names[0] == "manifest.json"
    assert manifest["format"] == "greenaudit-archive"
    assert manifest["format_version"] == 1
    assert manifest["schema_revision"] == archive.head_revision()
    assert manifest["project"]["id"] == vision.id
    assert manifest["project"]["name"] == "vision"
    tables = [t["name"] for t in manifest["tables"]]
    assert set(tables) == PROJECT_TABLES
    assert tables.index("project") < tables.index("run") < tables.index("energy_sample")
    assert sorted(names[1:]) == sorted(f"{t}.parquet" for t in tables)
    rows = {t["name"]: t["rows"] for t in manifest["tables"]}
    assert rows["project"] == 1
    assert rows["run"] == 3
    assert rows["energy_sample"] == 12 + 3 + 1
    assert rows["dataset_profile"] == 2
    # Secrets never leave the database.
    assert "api_key" not in tables
    assert (
        "id" not in next(t for t in manifest["tables"] if t["name"] == "energy_sample")["columns"]
    )


def test_an_unknown_project_is_a_clear_error(engine: Engine, tmp_path: Path):
    result = runner.invoke(
        app,
        ["export", "nope", "--out", str(tmp_path / "a.zip"), "--database-url", url_of(engine)],
    )
    assert result.exit_code == 2
    assert "error: no project is named 'nope'" in result.output
    assert not (tmp_path / "a.zip").exists()


def _rewrite(path: Path, out: Path, change: dict[str, Any]) -> None:
    """Copy the archive, replacing members (bytes) or manifest fields (other values)."""
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w") as target:
        manifest = json.loads(source.read("manifest.json"))
        manifest.update({k: v for k, v in change.items() if not isinstance(v, bytes)})
        target.writestr("manifest.json", json.dumps(manifest))
        for name in source.namelist():
            if name != "manifest.json":
                replaced = change.get(name)
                target.writestr(
                    name, replaced if isinstance(replaced, bytes) else source.read(name)
                )


def _tampered_runs(path: Path, tmp_path: Path) -> bytes:
    with zipfile.ZipFile(path) as zipped:
        (tmp_path / "run.parquet").write_bytes(zipped.read("run.parquet"))
    table = pq.read_table(tmp_path / "run.parquet")
    durations = [None if v is None else v * 0.5 for v in table.column("duration_s").to_pylist()]
    table = table.set_column(table.schema.get_field_index("duration_s"), "duration_s", [durations])
    pq.write_table(table, tmp_path / "run.parquet")
    return (tmp_path / "run.parquet").read_bytes()


def test_a_tampered_archive_is_refused_and_writes_nothing(
    engine: Engine, client: TestClient, tmp_path: Path
):
    fill(client)
    path = export(engine, tmp_path)
    tampered = tmp_path / "tampered.zip"
    _rewrite(path, tampered, {"run.parquet": _tampered_runs(path, tmp_path)})

    with empty_database(engine.dialect.name, tmp_path) as url, engine_at(url) as target:
        result = import_into(url, tampered)
        assert result.exit_code == 2
        assert "error: checksum mismatch for run.parquet" in result.output
        assert "nothing was imported" in result.output
        # Refused before the target was touched: not even the schema was made.
        assert inspect(target).get_table_names() == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format_version": 2}, "archive format version 2; this greenaudit"),
        ({"schema_revision": "0005"}, "the archive has schema revision 0005; this greenaudit"),
    ],
    ids=["format-version", "schema-revision"],
)
def test_format_version_and_schema_revision_must_match(
    engine: Engine,
    client: TestClient,
    tmp_path: Path,
    change: dict[str, Any],
    message: str,
):
    fill(client)
    path = export(engine, tmp_path)
    changed = tmp_path / "changed.zip"
    _rewrite(path, changed, change)
    with empty_database(engine.dialect.name, tmp_path) as url, engine_at(url) as target:
        result = import_into(url, changed)
        assert result.exit_code == 2
        assert message in result.output
        if "schema_revision" in change:
            assert f"writes databases at {archive.head_revision()}" in result.output
        assert inspect(target).get_table_names() == []


def test_a_target_at_another_revision_is_refused(
    engine: Engine, client: TestClient, tmp_path: Path
):
    fill(client)
    path = export(engine, tmp_path)
    with empty_database(engine.dialect.name, tmp_path) as url, engine_at(url) as target:
        upgrade(target, "0005")
        before = inspect(target).get_table_names()
        with archive.open_archive(path) as verified, pytest.raises(archive.ArchiveError) as error:
            archive.import_archive(target, verified)
        head = archive.head_revision()
        assert str(error.value) == (
            f"the archive has schema revision {head}, the target database is at 0005"
        )
        with target.connect() as connection:
            assert (
                connection.scalar(select(func.count()).select_from(Base.metadata.tables["project"]))
                == 0
            )
        assert inspect(target).get_table_names() == before


def test_a_database_that_has_the_project_is_refused(
    engine: Engine, client: TestClient, tmp_path: Path
):
    vision, _ = fill(client)
    path = export(engine, tmp_path)
    before = table_counts(engine)
    result = import_into(url_of(engine), path)
    assert result.exit_code == 2
    assert f"already has project 'vision' ({vision.id})" in result.output
    assert table_counts(engine) == before

    # The same name under another id is refused as well.
    with empty_database(engine.dialect.name, tmp_path) as url, engine_at(url) as target:
        upgrade(target)
        settings = Settings(database_url=url, admin_token=ADMIN_TOKEN)
        with TestClient(create_app(settings, target)) as copy:
            other = create_project(copy, "vision")
        before = table_counts(target)
        result = import_into(url, path)
        assert result.exit_code == 2
        assert f"already has project 'vision' ({other.id})" in result.output
        assert table_counts(target) == before


def test_a_failed_import_leaves_nothing_behind(engine: Engine, client: TestClient, tmp_path: Path):
    _, run_ids = fill(client)
    path = export(engine, tmp_path)
    with empty_database(engine.dialect.name, tmp_path) as url, engine_at(url) as target:
        upgrade(target)
        settings = Settings(database_url=url, admin_token=ADMIN_TOKEN)
        with TestClient(create_app(settings, target)) as copy:
            # Another project already holds a run with one of the archive's run ids: the
            # project row and the dataset profiles go in before the run rows fail.
            squatter = create_project(copy, "squatter")
            post(copy, "/api/v1/runs", squatter, run_body(id=run_ids[1]))
        before = project_rows(target, uuid.UUID(squatter.id)), table_counts(target)
        result = import_into(url, path)
        assert result.exit_code == 2, result.output
        assert "error: the target database refused the archive's rows" in result.output
        assert "nothing was imported" in result.output
        assert (project_rows(target, uuid.UUID(squatter.id)), table_counts(target)) == before
