"""SQLAlchemy models. Alembic migrations create these tables; nothing calls ``create_all``."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NAME_LENGTH = 200


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    SQLite has no timezone type and hands back naive values; this puts UTC back on them so
    the service never compares naive with aware times.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}

    if TYPE_CHECKING:
        # Every model here is declared with a __tablename__, so it is mapped to a Table;
        # SQLAlchemy types __table__ as any FromClause (a model may map a subquery).
        __table__: ClassVar[Table]


class Project(Base):
    __tablename__ = "project"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    keys: Mapped[list[ApiKey]] = relationship(back_populates="project")


class ApiKey(Base):
    __tablename__ = "api_key"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    # The public part of the key, used to find the row before the hash is compared.
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]

    project: Mapped[Project] = relationship(back_populates="keys")


class Run(Base):
    __tablename__ = "run"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(24))
    model: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    model_params: Mapped[int | None] = mapped_column(BigInteger)
    flops: Mapped[float | None] = mapped_column(Float)
    dataset: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    dataset_version: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    dataset_size: Mapped[int | None] = mapped_column(BigInteger)
    task: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    primary_metric: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    parent_run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("run.id", ondelete="SET NULL")
    )
    # "group" is an SQL keyword; the column is group_name, the API field is "group".
    group_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    node: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    world_size: Mapped[int] = mapped_column(Integer, default=1)
    hardware: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    country_iso: Mapped[str | None] = mapped_column(String(3))
    carbon_intensity_g_per_kwh: Mapped[float] = mapped_column(Float)
    carbon_intensity_source: Mapped[str] = mapped_column(String(NAME_LENGTH))
    pue: Mapped[float] = mapped_column(Float, default=1.0)
    samples_processed: Mapped[int | None] = mapped_column(BigInteger)
    total_steps: Mapped[int | None] = mapped_column(BigInteger)
    duration_s: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    # Items the client measured but could not keep (its spool was full): a counted loss.
    lost_items: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    # When the service last heard from the run (create, data or heartbeat).
    last_seen_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_run_status_last_seen", "status", "last_seen_at"),
        Index("ix_run_project_started", "project_id", "started_at"),
        Index("ix_run_project_model", "project_id", "model"),
        Index("ix_run_project_dataset", "project_id", "dataset"),
        Index("ix_run_project_group", "project_id", "group_name"),
    )


class _RunSeries:
    """The first columns of a series table: its own row id, and the run the row belongs to."""

    # A 64-bit id on PostgreSQL; SQLite's autoincrement key must be its INTEGER rowid. The
    # sort orders keep these two first in the table, as a class's own columns would be.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
        sort_order=-2,
    )
    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("run.id", ondelete="CASCADE"), sort_order=-1
    )


class EnergySample(_RunSeries, Base):
    __tablename__ = "energy_sample"

    rank: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(BigInteger)
    t_start: Mapped[datetime]
    t_end: Mapped[datetime]
    # Kept beside the timestamps so durations and GPU-hours aggregate in portable SQL.
    duration_s: Mapped[float] = mapped_column(Float)
    cpu_kwh: Mapped[float | None] = mapped_column(Float)
    gpu_kwh: Mapped[float | None] = mapped_column(Float)
    ram_kwh: Mapped[float | None] = mapped_column(Float)
    cpu_w: Mapped[float | None] = mapped_column(Float)
    gpu_w: Mapped[float | None] = mapped_column(Float)
    ram_w: Mapped[float | None] = mapped_column(Float)
    cpu_method: Mapped[str | None] = mapped_column(String(16))
    gpu_method: Mapped[str | None] = mapped_column(String(16))
    ram_method: Mapped[str | None] = mapped_column(String(16))
    gpu_count: Mapped[int] = mapped_column(Integer, default=0)
    gpu_util_pct: Mapped[float | None] = mapped_column(Float)
    co2_kg: Mapped[float] = mapped_column(Float)
    step: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("run_id", "rank", "seq"),
        Index("ix_energy_sample_run_t_start", "run_id", "t_start"),
    )


class MetricPoint(_RunSeries, Base):
    __tablename__ = "metric_point"

    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    step: Mapped[int] = mapped_column(BigInteger)
    epoch: Mapped[int | None] = mapped_column(BigInteger)
    value: Mapped[float] = mapped_column(Float)
    time: Mapped[datetime]

    __table_args__ = (UniqueConstraint("run_id", "name", "step"),)


class DatasetProfile(Base):
    __tablename__ = "dataset_profile"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    version: Mapped[str] = mapped_column(String(NAME_LENGTH))
    num_classes: Mapped[int] = mapped_column(Integer)
    sample_count: Mapped[int | None] = mapped_column(BigInteger)
    class_counts: Mapped[list[int] | None] = mapped_column(JSON)
    entropy_bits: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("project_id", "name", "version"),)


class RunEnergyTotals(Base):
    """Running sums of a run's energy samples, kept in step with every batch.

    A batch adds its new rows' sums in the same transaction, with an atomic upsert
    (``INSERT ... ON CONFLICT DO UPDATE SET x = x + excluded.x``), so concurrent batches cannot
    lose an update, and reading a run's totals never scans its samples.
    """

    __tablename__ = "run_energy_totals"

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("run.id", ondelete="CASCADE"), primary_key=True
    )
    cpu_kwh: Mapped[float] = mapped_column(Float, default=0.0)
    gpu_kwh: Mapped[float] = mapped_column(Float, default=0.0)
    ram_kwh: Mapped[float] = mapped_column(Float, default=0.0)
    co2_kg: Mapped[float] = mapped_column(Float, default=0.0)
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    samples: Mapped[int] = mapped_column(BigInteger, default=0)


class RunEnergyBlock(Base):
    """Sums of a run's samples over blocks of ``width`` consecutive seqs of one rank.

    Ingestion keeps them beside the running totals, at a few widths (``api/blocks.py``), so a
    forecast or a power curve over a long run reads a few thousand blocks, not its samples.
    Block ``b`` of width ``w`` holds the rank's samples with ``b*w <= seq < (b+1)*w``.
    """

    __tablename__ = "run_energy_block"

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("run.id", ondelete="CASCADE"), primary_key=True
    )
    width: Mapped[int] = mapped_column(Integer, primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    block: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    t_start: Mapped[datetime]
    t_end: Mapped[datetime]
    kwh: Mapped[float] = mapped_column(Float)
    co2_kg: Mapped[float] = mapped_column(Float)
    samples: Mapped[int] = mapped_column(BigInteger)
    step: Mapped[int | None] = mapped_column(BigInteger)
    cpu_w: Mapped[float | None] = mapped_column(Float)
    gpu_w: Mapped[float | None] = mapped_column(Float)
    ram_w: Mapped[float | None] = mapped_column(Float)


class RunMetricStats(Base):
    """Range and count of each metric of a run, kept in step with every batch (as above)."""

    __tablename__ = "run_metric_stats"

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("run.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    min_value: Mapped[float] = mapped_column(Float)
    max_value: Mapped[float] = mapped_column(Float)
    first_step: Mapped[int] = mapped_column(BigInteger)
    last_step: Mapped[int] = mapped_column(BigInteger)
    points: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_run_metric_stats_name", "name"),)


class RunMethod(Base):
    """Each measurement method a run's samples used, per component (kept by ingestion)."""

    __tablename__ = "run_method"

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("run.id", ondelete="CASCADE"), primary_key=True
    )
    component: Mapped[str] = mapped_column(String(8), primary_key=True)
    method: Mapped[str] = mapped_column(String(16), primary_key=True)


class Budget(Base):
    """A carbon budget of a project, or of one group of its runs, over a period or for good.

    ``group_name`` is ``""`` for the whole project rather than NULL, so that the unique
    constraint holds on every database (NULLs are never equal to each other).
    """

    __tablename__ = "budget"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    group_name: Mapped[str] = mapped_column(String(NAME_LENGTH), default="")
    period: Mapped[str] = mapped_column(String(8))
    limit_kg_co2: Mapped[float | None] = mapped_column(Float)
    limit_kwh: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("project_id", "group_name", "period"),)


class Alert(Base):
    """Something a project asked to hear about: a budget crossed, a plateau passed.

    The table is also the webhook outbox: an alert is stored in the transaction that decides
    it, then delivered (and retried) from here, so a crash between the two loses nothing.
    ``dedupe_key`` makes deciding idempotent: several workers may find the same crossing, and
    only the first insert of it counts.
    """

    __tablename__ = "alert"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    budget_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("budget.id", ondelete="SET NULL")
    )
    run_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(400))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # pending -> delivered | failed; "none" when the project had no webhook at the time.
    delivery: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("project_id", "dedupe_key"),
        Index("ix_alert_delivery_next_attempt", "delivery", "next_attempt_at"),
        Index("ix_alert_project_created", "project_id", "created_at"),
    )


class Webhook(Base):
    """Where a project's alerts are posted. One per project.

    The secret is kept as given, not hashed: signing each alert needs it.
    """

    __tablename__ = "webhook"

    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), primary_key=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
