"""Engine and session set-up for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.expression import FunctionElement

if TYPE_CHECKING:
    from typing import TypeAlias

    from sqlalchemy import Select
    from typing_extensions import Unpack

    #: A SELECT of columns only known at run time (SQLAlchemy types a Select by its columns').
    AnySelect: TypeAlias = Select[Unpack[tuple[Any, ...]]]

from greenaudit.settings import Settings

#: Execution option that marks a connection as a writer (BEGIN IMMEDIATE on SQLite).
WRITE_OPTION = "greenaudit_writer"


def compile_per_dialect(
    function: type[FunctionElement[Any]], *, postgresql: str, sqlite: str
) -> None:
    """Emit ``function``, of one SQL argument, as each engine's own SQL.

    Each template has ``{0}`` where the argument's SQL goes.
    """
    for dialect, template in (("postgresql", postgresql), ("sqlite", sqlite)):
        _compile_with(function, dialect, template)


def _compile_with(function: type[FunctionElement[Any]], dialect: str, template: str) -> None:
    @compiles(function, dialect)
    def _compile(element: FunctionElement[Any], compiler: Any, **kw: Any) -> str:
        return template.format(compiler.process(element.clauses, **kw))


def make_engine(settings: Settings) -> Engine:
    """Create the engine for ``settings``, with SQLite in WAL mode and a busy timeout."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)

    if url.database and url.database != ":memory:":
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False})
    busy_timeout_ms = settings.sqlite_busy_timeout_ms

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so that BEGIN is ours (see _sqlite_begin).
        dbapi_connection.isolation_level = None
        # WAL lets dashboards read while batches are written; the busy timeout turns a brief
        # writer collision into a wait instead of "database is locked".
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(connection: Any) -> None:
        # A writer must hold SQLite's write lock from its first statement. A deferred
        # transaction that reads and then writes fails at once with "database is locked" when
        # another writer committed in between; the busy timeout cannot help it.
        if connection.get_execution_options().get(WRITE_OPTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")

    return engine


def make_session_factory(engine: Engine, *, writer: bool) -> sessionmaker[Session]:
    """A session factory whose objects stay readable after commit.

    ``writer`` sessions lock SQLite for writing from their first statement; on PostgreSQL the
    flag changes nothing.
    """
    bind = engine.execution_options(**{WRITE_OPTION: True}) if writer else engine
    return sessionmaker(bind, expire_on_commit=False)
