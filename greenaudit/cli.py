"""The ``greenaudit`` command line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import httpx
import typer

from greenaudit.settings import Settings

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
    try:
        return Settings()
    except Exception as error:  # pydantic's ValidationError, worded for a terminal
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
) -> None:
    """Apply migrations, then serve the API and dashboards."""
    import uvicorn

    settings = _server_settings(database_url)
    _upgrade(settings)
    typer.echo(
        f"greenaudit on http://{host}:{port} (API docs at /docs), database "
        f"{_redacted(settings.resolved_database_url)}"
    )
    if not settings.admin_token:
        typer.echo("GREENAUDIT_ADMIN_TOKEN is unset: projects cannot be created until it is.")
    uvicorn.run(
        "greenaudit.api.app:create_app", factory=True, host=host, port=port, log_level="info"
    )


@project_app.command("create")
def project_create(
    name: Annotated[str, typer.Argument(help="Project name.")],
    budget_kg_co2: Annotated[Optional[float], typer.Option(help="Carbon budget, kg CO2e.")] = None,  # noqa: UP007
    url: Annotated[Optional[str], typer.Option(help="Service URL; default GREENAUDIT_URL.")] = None,  # noqa: UP007
) -> None:
    """Create a project and print its write key and read key (shown only once)."""
    settings = Settings()
    base = url or settings.url or "http://127.0.0.1:8000"
    if not settings.admin_token:
        _fail("set GREENAUDIT_ADMIN_TOKEN to the service's admin token")
    body: dict[str, Any] = {"name": name}
    if budget_kg_co2 is not None:
        body["budget_kg_co2"] = budget_kg_co2
    try:
        response = httpx.post(
            f"{base.rstrip('/')}/api/v1/projects",
            json=body,
            headers={"Authorization": f"Bearer {settings.admin_token}"},
        )
    except httpx.HTTPError as error:
        _fail(f"cannot reach {base}: {error}")
        raise
    if response.status_code != 201:
        _fail(f"HTTP {response.status_code}: {response.text}")
    created = response.json()
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

    settings = Settings()
    folder = spool_dir or settings.spool_path
    try:
        completed, pending = flush_spool(folder, settings)
    except ValueError as error:
        _fail(str(error))
        raise
    except TransientError as error:
        _fail(f"the service is unreachable ({error}); nothing is lost, try again later")
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


def main() -> None:
    """Entry point of the ``greenaudit`` console script."""
    app(prog_name="greenaudit")


if __name__ == "__main__":
    main()
