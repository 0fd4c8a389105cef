"""The ``greenaudit`` command line."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError

from greenaudit.errors import GreenauditError, ServiceError
from greenaudit.http import ADMIN_TOKEN_HINT, ServiceHttp
from greenaudit.report import (
    DEFAULT_CURVE_POINTS,
    ReportError,
    ReportFormat,
    gather,
    render_html,
    render_markdown,
)
from greenaudit.schemas.analytics import DEFAULT_DIRECTION, Direction
from greenaudit.settings import Settings
from greenaudit.units import significant

app = typer.Typer(
    help="greenaudit: what did this accuracy cost, and is the next point worth it?",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
project_app = typer.Typer(help="Projects and their keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(project_app, name="project")

DatabaseUrl = Annotated[
    Optional[str],  # noqa: UP007 - typer reads the annotation at run time
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL; default GREENAUDIT_DATABASE_URL, else SQLite under GREENAUDIT_HOME.",
    ),
]


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _server_settings(database_url: str | None) -> Settings:
    try:
        import fastapi  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError:
        _fail("this command needs the service: pip install 'greenaudit[server]'")
    if database_url:
        # Set in the environment too, so that uvicorn workers read the same database.
        os.environ["GREENAUDIT_DATABASE_URL"] = database_url
    return _settings()


def _settings() -> Settings:
    """The settings from the environment; a bad value is one line naming it, not a traceback."""
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"GREENAUDIT_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors()
        )
        _fail(f"invalid configuration: {problems}")
        raise
    except SettingsError as error:  # a list or dict setting that is not valid JSON
        _fail(f"invalid configuration: {error}")
        raise


def _upgrade(settings: Settings) -> None:
    from sqlalchemy.exc import OperationalError

    from greenaudit.api.db import make_engine
    from greenaudit.api.migrate import upgrade

    engine = make_engine(settings)
    try:
        upgrade(engine)
    except OperationalError as error:
        _fail(f"cannot reach the database {engine.url.render_as_string()}: {error.orig}")
    finally:
        engine.dispose()


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None) -> None:
    """Apply the migrations (alembic upgrade head)."""
    settings = _server_settings(database_url)
    _upgrade(settings)
    typer.echo(f"database at head: {_redacted(settings.resolved_database_url)}")


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    database_url: DatabaseUrl = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Server processes. Several pay off on PostgreSQL; SQLite takes one writer at "
            "a time.",
        ),
    ] = 1,
) -> None:
    """Apply migrations, then serve the API and dashboards."""
    import uvicorn

    from greenaudit.api.auth import admin_token_problem
    from greenaudit.api.ratelimit import RateLimitConfigurationError, check_rate_settings

    settings = _server_settings(database_url)
    problem = admin_token_problem(settings.admin_token)
    if problem:
        _fail(f"the service will not start: {problem}")
    try:
        # Checked here, where it can be said plainly, rather than in each worker as it starts.
        check_rate_settings(settings)
    except RateLimitConfigurationError as error:
        _fail(f"the service will not start: {error}")
    _upgrade(settings)
    typer.echo(
        f"greenaudit on http://{host}:{port} (API docs at /docs), database "
        f"{_redacted(settings.resolved_database_url)}"
    )
    with tempfile.TemporaryDirectory(prefix="greenaudit-metrics-") as metrics_dir:
        if workers > 1:
            # Workers are separate processes; prometheus-client sums their counters from here.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        uvicorn.run(
            "greenaudit.api.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="info",
            log_config=_log_config(),
            # The service writes its own access log, one JSON object per line.
            access_log=False,
        )


def _log_config() -> dict[str, Any]:
    """Uvicorn's logging, plus greenaudit's loggers; access lines are JSON on stdout."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["json_lines"] = {"format": "%(message)s"}
    config["handlers"]["json_lines"] = {
        "class": "logging.StreamHandler",
        "formatter": "json_lines",
        "stream": "ext://sys.stdout",
    }
    config["loggers"]["greenaudit"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config["loggers"]["greenaudit.access"] = {
        "handlers": ["json_lines"],
        "level": "INFO",
        "propagate": False,
    }
    return config


@project_app.command("create")
def project_create(
    name: Annotated[str, typer.Argument(help="Project name.")],
    budget_kg_co2: Annotated[Optional[float], typer.Option(help="Carbon budget, kg CO2e.")] = None,  # noqa: UP007
    url: Annotated[Optional[str], typer.Option(help="Service URL; default GREENAUDIT_URL.")] = None,  # noqa: UP007
) -> None:
    """Create a project and print its write key and read key (shown only once)."""
    settings = _settings()
    base = url or settings.url or "http://127.0.0.1:8000"
    if not settings.admin_token:
        _fail("set GREENAUDIT_ADMIN_TOKEN to the service's admin token")
    body: dict[str, Any] = {"name": name}
    if budget_kg_co2 is not None:
        body["budget_kg_co2"] = budget_kg_co2
    try:
        with ServiceHttp(base, settings.admin_token, key_hint=ADMIN_TOKEN_HINT) as admin:
            created = admin.post("/projects", body)
    except ServiceError as error:
        _fail(str(error))
        raise
    typer.echo(f"project {created['project']['name']} ({created['project']['id']})")
    typer.echo(f"write key: {created['write_key']['key']}")
    typer.echo(f"read key:  {created['read_key']['key']}")
    typer.echo(
        "Keys are shown only once. Training jobs need GREENAUDIT_URL and "
        "GREENAUDIT_API_KEY=<write key>."
    )


@app.command()
def flush(
    spool_dir: Annotated[Optional[Path], typer.Option(help="Default GREENAUDIT_SPOOL_DIR.")] = None,  # noqa: UP007
) -> None:
    """Send what earlier runs left in the spool (GREENAUDIT_URL and GREENAUDIT_API_KEY)."""
    from greenaudit.client.transport import TransientError, flush_spool

    settings = _settings()
    folder = spool_dir or settings.spool_path
    try:
        completed, pending = flush_spool(folder, settings)
    except TransientError as error:
        _fail(f"could not deliver ({error}); nothing is lost, try again later")
        raise
    except (GreenauditError, ValueError) as error:
        _fail(str(error))
        raise
    typer.echo(
        f"delivered {completed} finished run(s) from {folder}; {pending} run(s) still in progress"
    )


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs per model.")] = 60,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Keep serving after training.")
    ] = True,
    database_url: DatabaseUrl = None,
) -> None:
    """Train small models of growing width on scikit-learn's digits, measured, then serve."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        _fail("the demo trains scikit-learn models: pip install 'greenaudit[server,demo]'")
    from greenaudit.demo import run_demo

    settings = _server_settings(database_url)
    _upgrade(settings)
    run_demo(settings, host=host, port=port, epochs=epochs, serve_after=serve_after)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return significant(value)
        return str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in text)) if text else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in text]
    return "\n".join(lines)


def _query(path: str, params: dict[str, Any], url: str | None) -> dict[str, Any]:
    """GET ``path`` (under ``/api/v1``) with the configured key, or exit with the reason."""
    try:
        with ServiceHttp.from_settings(
            _settings(), url=url, purpose="(a read or write key) to query", timeout_s=60.0
        ) as http:
            body: dict[str, Any] = http.get(path, params)
    except GreenauditError as error:
        _fail(str(error))
        raise
    return body


Url = Annotated[Optional[str], typer.Option(help="Service URL; default GREENAUDIT_URL.")]  # noqa: UP007
Filter = Optional[str]  # noqa: UP007


@app.command()
def curves(
    x: Annotated[
        str, typer.Option(help="co2_kg, energy_kwh, gpu_hours, flops, model_params or dataset_size")
    ] = "co2_kg",
    metric: Annotated[str, typer.Option(help="Metric name, as logged.")] = "accuracy",
    direction: Annotated[
        str, typer.Option(help="higher or lower is better")
    ] = DEFAULT_DIRECTION.value,
    target: Annotated[Optional[float], typer.Option(help="Score to project the cost of.")] = None,  # noqa: UP007
    frontier_only: Annotated[bool, typer.Option(help="Fit the Pareto frontier only.")] = False,
    include_published: Annotated[bool, typer.Option(help="Add the published catalog.")] = False,
    model: Annotated[Filter, typer.Option()] = None,
    dataset: Annotated[Filter, typer.Option()] = None,
    task: Annotated[Filter, typer.Option()] = None,
    group: Annotated[Filter, typer.Option()] = None,
    url: Url = None,
) -> None:
    """Diminishing-returns curves across runs, as tables."""
    answer = _query(
        "/analytics/diminishing-returns",
        {
            "x": x,
            "metric": metric,
            "direction": direction,
            "target": target,
            "frontier_only": frontier_only,
            "include_published": include_published,
            "model": model,
            "dataset": dataset,
            "task": task,
            "group": group,
        },
        url,
    )
    unit = answer["x"]["unit"]
    typer.echo(
        f"{answer['score']} against {answer['x']['name']} ({unit}): "
        f"{answer['runs_used']} runs, excluded {answer['excluded']} "
        f"[{answer['definition']}]"
    )
    if answer["status"] != "ok":
        typer.echo(f"insufficient data: {answer['reason']}")
        return
    rows = []
    for fit in answer["fits"]:
        params = ", ".join(
            f"{p['name']}={significant(p['value'])}±{significant(p['stderr'], 2)}"
            for p in fit["parameters"]
        )
        rows.append([fit["model"], fit["formula"], params, fit["r_squared"], fit["aicc"], fit["n"]])
    typer.echo(_table(["fit", "formula", "parameters (±SE)", "R²", "AICc", "n"], rows))
    typer.echo(f"best fit: {answer['best_fit'] or '-'} ({answer['best_fit_reason']})")
    for model_name, reason in answer["failures"].items():
        typer.echo(f"no {model_name} fit: {reason}")
    typer.echo("\nPareto frontier:")
    typer.echo(
        _table(
            ["run", "model", "dataset", f"x ({unit})", "score"],
            [[p["name"], p["model"], p["dataset"], p["x"], p["score"]] for p in answer["frontier"]],
        )
    )
    for projection in answer["projections"]:
        typer.echo(
            f"projection to {projection['target_score']} ({projection['model']}): "
            f"{projection['x'] if projection['x'] is not None else '-'} {unit}, 95% "
            f"[{projection['x_low']}, {projection['x_high']}]"
            + (f" ({projection['reason']})" if projection["reason"] else "")
        )
    marginal = answer["marginal_cost"]
    if marginal:
        typer.echo(
            f"next point ({marginal['model']}, from {significant(marginal['from_score'])} at "
            f"{significant(marginal['from_x'])} {unit}): +{marginal['extra_x_per_point']} {unit}"
            if marginal["extra_x_per_point"] is not None
            else f"next point: {marginal['reason']}"
        )


@app.command()
def nofade(
    axis: Annotated[str, typer.Option(help="co2_kg, energy_kwh, gpu_hours or flops")] = "co2_kg",
    metric: Annotated[str, typer.Option(help="A rate: accuracy, mIoU, mAP ...")] = "accuracy",
    group_by: Annotated[str, typer.Option(help="dataset or task")] = "dataset",
    include_published: Annotated[bool, typer.Option(help="Add the published catalog.")] = False,
    limit: Annotated[int, typer.Option(help="Runs listed.")] = 20,
    dataset: Annotated[Filter, typer.Option()] = None,
    task: Annotated[Filter, typer.Option()] = None,
    url: Url = None,
) -> None:
    """NoFADE greenaudit-1 per run and the saturation of each dataset or task, as tables."""
    answer = _query(
        "/analytics/nofade",
        {
            "axis": axis,
            "metric": metric,
            "group_by": group_by,
            "include_published": include_published,
            "limit": limit,
            "dataset": dataset,
            "task": task,
        },
        url,
    )
    typer.echo(
        f"NoFADE {answer['definition']} on {answer['axis']['name']} "
        f"(C0 = {answer['c0_label']}), {answer['metric']}, {answer['runs_total']} runs"
    )
    typer.echo(answer["note"])
    typer.echo(
        _table(
            ["model", "dataset", "score", "cost", "H bits", "ρ", "NoFADE", "note"],
            [
                [
                    r["model"],
                    r["dataset"],
                    r["score"],
                    r["cost"],
                    r["entropy_bits"],
                    r["rho"],
                    r["nofade"],
                    r["reason"] or ("approximate" if r["approximate"] else ""),
                ]
                for r in answer["runs"]
            ],
        )
    )
    t = answer["thresholds"]
    typer.echo(
        f"\nsaturation by {answer['group_by']} (saturated: σ ≥ {t['saturated_sigma']} or "
        f"β < {t['saturated_beta']}; saturating: β < {t['saturating_beta']}):"
    )
    typer.echo(
        _table(
            [answer["group_by"], "runs", "σ", "β", "next +0.01 ρ costs", "status"],
            [
                [
                    g["key"],
                    g["runs_with_rho"],
                    g["sigma"],
                    g["beta"],
                    g["cost_for_next_rho_0_01"],
                    g["status"] or g["reason"],
                ]
                for g in answer["groups"]
            ],
        )
    )


@app.command()
def report(
    target: Annotated[
        str, typer.Argument(help="A run id (a UUID), or else the name of a group of runs.")
    ],
    output_format: Annotated[
        ReportFormat, typer.Option("--format", help="md (Markdown) or html.")
    ] = ReportFormat.md,
    out: Annotated[
        Optional[Path],  # noqa: UP007
        typer.Option(
            help="File to write. Markdown goes to standard output without it; HTML (a "
            "self-contained page of several MB, plotly inlined) needs it."
        ),
    ] = None,
    metric: Annotated[
        Optional[str],  # noqa: UP007
        typer.Option(help="Metric of the returns curve and NoFADE; default the primary metric."),
    ] = None,
    direction: Annotated[
        Direction,
        typer.Option(
            help="higher or lower is better for the metric; lower (a loss) leaves NoFADE out "
            "and needs a run, not a group."
        ),
    ] = DEFAULT_DIRECTION,
    curve_points: Annotated[
        int, typer.Option(min=10, max=100_000, help="Most points of the returns curve.")
    ] = DEFAULT_CURVE_POINTS,
    url: Url = None,
) -> None:
    """Write a carbon report on a run or a group, for a paper appendix.

    Hardware, energy by component with its measurement methods, carbon intensity and its
    source, PUE, CO2e, the metric reached, the returns curve and its plateau, the cost of
    creating the model, rho and NoFADE. Every number is the API's answer (GREENAUDIT_URL,
    GREENAUDIT_API_KEY: a read or write key); the requests are listed in the report.
    """
    if output_format is ReportFormat.html and out is None:
        _fail("an HTML report is a file: pass --out report.html")
    settings = _settings()
    base = url or settings.url
    if not base or not settings.api_key:
        _fail("set GREENAUDIT_URL and GREENAUDIT_API_KEY (a read or write key) to query")
    try:
        gathered = gather(
            target,
            url=str(base),
            api_key=str(settings.api_key),
            metric=metric,
            direction=direction,
            curve_points=curve_points,
        )
        text = (render_html if output_format is ReportFormat.html else render_markdown)(gathered)
    except ReportError as error:
        _fail(str(error))
        raise
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as error:
        _fail(f"cannot write the report to {out}: {error.strerror or error}")
    typer.echo(f"wrote the {output_format.value} report on {target} to {out}", err=True)


def _archive_module() -> Any:
    try:
        from greenaudit.api import archive
    except ImportError as error:
        _fail(f"archives need the service's extras ({error}): pip install 'greenaudit[server]'")
        raise
    return archive


def _row_counts(rows: dict[str, int]) -> str:
    return _table(["table", "rows"], [[name, count] for name, count in rows.items()])


@app.command()
def export(
    project: Annotated[str, typer.Argument(help="Project name or id.")],
    out: Annotated[Path, typer.Option("--out", help="Archive to write (a .zip file).")],
    database_url: DatabaseUrl = None,
) -> None:
    """Write a project to a portable archive: a manifest and one Parquet file per table.

    Every run, sample, metric point, dataset profile and running total goes in, with its ids
    and timestamps; API keys never do. `greenaudit import ARCHIVE` reads it back.
    """
    from sqlalchemy.exc import OperationalError

    from greenaudit.api.db import make_engine

    settings = _server_settings(database_url)
    archive = _archive_module()
    engine = make_engine(settings)
    try:
        summary = archive.export_project(engine, project, out)
    except archive.ArchiveError as error:
        _fail(str(error))
        raise
    except OperationalError as error:
        _fail(f"cannot reach the database {_redacted(str(engine.url))}: {error.orig}")
        raise
    finally:
        engine.dispose()
    typer.echo(
        f"exported project {summary.project_name} ({summary.project_id}) at schema revision "
        f"{summary.schema_revision} to {summary.path}"
    )
    typer.echo(_row_counts(summary.rows))


def _import_archive(path: Path, database_url: str | None) -> None:
    from sqlalchemy.exc import OperationalError

    from greenaudit.api.db import make_engine

    settings = _server_settings(database_url)
    archive = _archive_module()
    if not archive.is_archive(path):
        _fail(f"{path} is a zip file without a greenaudit archive's {archive.MANIFEST}")
    target = _redacted(settings.resolved_database_url)
    try:
        with archive.open_archive(path) as verified:
            # The archive is verified before the target is migrated: a bad one writes nothing.
            _upgrade(settings)
            engine = make_engine(settings)
            try:
                summary = archive.import_archive(engine, verified)
            finally:
                engine.dispose()
    except archive.ArchiveError as error:
        _fail(f"{error}; nothing was imported")
        raise
    except OperationalError as error:
        _fail(f"cannot write to the database {target}: {error.orig}; nothing was imported")
        raise
    typer.echo(
        f"imported project {summary.project_name} ({summary.project_id}) from {path} into {target}"
    )
    head = archive.head_revision()
    made_at = summary.schema_revision
    typer.echo(
        f"the archive was made at schema revision {made_at}"
        + ("" if made_at == head else f" and was migrated to {head} on the way in")
    )
    typer.echo(_row_counts(summary.rows))
    typer.echo(
        "Archives hold no API keys. Issue keys for the project with the admin token: "
        f'POST /api/v1/projects/{summary.project_id}/keys with {{"scope": "write"}} '
        'or {"scope": "read"}.'
    )


@app.command("import")
def import_(
    path: Annotated[
        Optional[Path],
        typer.Argument(
            help="CodeCarbon's emissions.csv, a "  # noqa: UP007
            "published-results CSV, or a greenaudit archive (greenaudit export); default: the "
            "catalog shipped with greenaudit."
        ),
    ] = None,
    url: Url = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Import emissions.csv (write key), published results (admin token) or an archive.

    A greenaudit archive (from greenaudit export) goes straight into the database given by
    --database-url, not through the service.
    """
    import zipfile

    from greenaudit.catalog import import_catalog, is_catalog
    from greenaudit.codecarbon_csv import import_emissions_csv, is_emissions_csv

    if path is not None and path.is_file() and zipfile.is_zipfile(path):
        _import_archive(path, database_url)
        return
    settings = _settings()
    base = url or settings.url or "http://127.0.0.1:8000"
    if path is not None and not path.is_file():
        _fail(f"{path} is not a file")
    try:
        if path is not None and is_emissions_csv(path):
            if not settings.api_key:
                _fail("set GREENAUDIT_API_KEY to a write key of the project to import into")
            count = import_emissions_csv(base, str(settings.api_key), path)
            typer.echo(f"imported {count} CodeCarbon run(s) from {path}")
            return
        if path is not None and not is_catalog(path):
            _fail(
                f"{path} is neither CodeCarbon's emissions.csv nor a published-results CSV "
                "(columns model, task, dataset, metric, value, params_m, gflops, source)"
            )
        if not settings.admin_token:
            _fail("set GREENAUDIT_ADMIN_TOKEN to the service's admin token")
        count, read_key = import_catalog(base, str(settings.admin_token), path)
    except ServiceError as error:
        _fail(str(error))
        raise
    typer.echo(f"imported {count} published results into project 'published'")
    typer.echo(f"read key for it: {read_key}")
    typer.echo("Compare your runs with them: greenaudit curves --include-published --x flops")


def main() -> None:
    """Entry point of the ``greenaudit`` console script."""
    app(prog_name="greenaudit")


if __name__ == "__main__":
    main()
