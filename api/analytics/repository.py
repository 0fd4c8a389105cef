"""SQL for analytics: one row per run (best metric value, costs), and one run's series."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Float, Select, String, cast, func, literal, select
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from greenaudit.units import SECONDS_PER_HOUR

from .. import blocks
from ..db import compile_per_dialect
from ..models import (
    DatasetProfile,
    EnergySample,
    MetricPoint,
    Project,
    Run,
    RunEnergyTotals,
    RunMetricStats,
)
from ..runs.repository import filter_conditions
from ..runs.schemas import RunFilters

if TYPE_CHECKING:
    from ..db import AnySelect


class epoch_seconds(FunctionElement[float]):  # noqa: N801 - reads as the SQL function it emits
    """Seconds since 1970 of a timestamp column, computed by the database."""

    type = Float()
    inherit_cache = True


compile_per_dialect(
    epoch_seconds,
    postgresql="EXTRACT(EPOCH FROM {0})",
    # SQLite keeps UTC timestamps as text; julianday() parses them (2440587.5 is 1970-01-01).
    sqlite="((julianday({0}) - 2440587.5) * 86400.0)",
)


def run_rows(
    published_project: uuid.UUID | None,
    project_ids: Sequence[uuid.UUID],
    filters: RunFilters,
    metric: str,
    higher_is_better: bool,
    fields: Sequence[str],
) -> AnySelect:
    """One row per run that logged ``metric``.

    Each row holds the run's id as text, whether it is a run of the published catalog, its
    best value, and ``fields``.

    The best value and the costs come from the per-run running totals (``run_metric_stats``,
    ``run_energy_totals``) that ingestion keeps, so this is one join over runs, whatever the
    number of points or samples behind them. ``fields`` are run columns or ``energy_kwh``,
    ``co2_kg`` and ``gpu_hours``.
    """
    best = RunMetricStats.max_value if higher_is_better else RunMetricStats.min_value
    costs = {
        "energy_kwh": RunEnergyTotals.cpu_kwh + RunEnergyTotals.gpu_kwh + RunEnergyTotals.ram_kwh,
        "co2_kg": RunEnergyTotals.co2_kg,
        "gpu_hours": RunEnergyTotals.gpu_seconds / SECONDS_PER_HOUR,
    }
    # Ids as text: building 100,000 UUID objects costs more than the whole query.
    columns: list[Any] = [
        cast(Run.id, String).label("run_id"),
        (Run.project_id == published_project if published_project else literal(False)).label(
            "published"
        ),
        best.label("score"),
    ]
    columns += [
        costs[name].label(name) if name in costs else getattr(Run, name).label(name)
        for name in fields
    ]
    query = (
        select(*columns)
        .join(RunMetricStats, (RunMetricStats.run_id == Run.id) & (RunMetricStats.name == metric))
        .where(*filter_conditions(project_ids, filters))
    )
    if any(name in costs for name in fields):
        query = query.outerjoin(RunEnergyTotals, RunEnergyTotals.run_id == Run.id)
    return query


def run_labels(
    run_ids: Sequence[uuid.UUID],
) -> Select[uuid.UUID, str | None, str | None, str | None]:
    return select(Run.id, Run.name, Run.model, Run.dataset).where(Run.id.in_(run_ids))


def profiles_for(project_ids: Sequence[uuid.UUID]) -> Select[DatasetProfile]:
    return select(DatasetProfile).where(DatasetProfile.project_id.in_(project_ids))


def project_named(name: str) -> Select[uuid.UUID]:
    return select(Project.id).where(Project.name == name)


def metric_stats(run_id: uuid.UUID, metric: str) -> Select[RunMetricStats]:
    """Count, range and step span of one metric of one run (kept by ingestion)."""
    return select(RunMetricStats).where(
        RunMetricStats.run_id == run_id, RunMetricStats.name == metric
    )


# Seeks cost a few dozen times a scanned row, so they pay from about this stride on.
SEEK_STRIDE = 32


def _point_columns() -> tuple[Any, ...]:
    # (step, time_s, value): the row type of the point queries below.
    return (MetricPoint.step, epoch_seconds(MetricPoint.time).label("time_s"), MetricPoint.value)


def first_point_past(
    run_id: uuid.UUID,
    metric: str,
    threshold: float,
    higher_is_better: bool,
    inclusive: bool = False,
) -> Select[int, float, float]:
    """The first point, by step, whose value is beyond ``threshold``.

    That is where the running best first gets beyond it: a running maximum first exceeds a
    level at a point that does.
    """
    if higher_is_better:
        beyond = MetricPoint.value >= threshold if inclusive else MetricPoint.value > threshold
    else:
        beyond = MetricPoint.value <= threshold if inclusive else MetricPoint.value < threshold
    return (
        select(*_point_columns())
        .where(MetricPoint.run_id == run_id, MetricPoint.name == metric, beyond)
        .order_by(MetricPoint.step)
        .limit(1)
    )


def sampled_points(
    run_id: uuid.UUID, metric: str, first_step: int, last_step: int, stride: int
) -> Select[Any]:
    """The first point at or after each step ``first_step + k*stride`` up to ``last_step``.

    Every point when ``stride`` is 1. From a stride of ``SEEK_STRIDE`` on, each target step
    is one index seek, so the cost is the number of targets, not of points: a million points
    are never scanned to keep a thousand. Below it, the points at the targets themselves are
    filtered from a scan. A step logged at every multiple of the stride is picked exactly
    either way; past a gap, seeks pick the next point after a target.
    """
    point = MetricPoint
    of_metric = (point.run_id == run_id, point.name == metric)
    if stride <= 1:
        return select(*_point_columns()).where(*of_metric).order_by(point.step)
    if stride < SEEK_STRIDE:
        # Keeping one point in a few, reading them all is cheaper than a seek for each.
        return (
            select(*_point_columns())
            .where(*of_metric, (point.step - first_step) % stride == 0)
            .order_by(point.step)
        )
    start = cast(literal(first_step), BigInteger)
    targets = select(start.label("target")).cte("targets", recursive=True)
    targets = targets.union_all(
        select(targets.c.target + stride).where(targets.c.target + stride <= last_step)
    )
    nearest = (
        select(func.min(point.step))
        .where(*of_metric, point.step >= targets.c.target)
        .scalar_subquery()
    )
    steps = select(nearest.label("step")).select_from(targets).distinct().subquery("steps")
    return (
        select(*_point_columns())
        .select_from(steps)
        .join(
            point, (point.run_id == run_id) & (point.name == metric) & (point.step == steps.c.step)
        )
        .order_by(point.step)
    )


def last_point(run_id: uuid.UUID, metric: str) -> Select[int, float, float]:
    return (
        select(*_point_columns())
        .where(MetricPoint.run_id == run_id, MetricPoint.name == metric)
        .order_by(MetricPoint.step.desc())
        .limit(1)
    )


def sample_buckets(
    run_id: uuid.UUID, per_bucket: int
) -> Select[float, float, float, float, int, float | None, float | None, float | None]:
    """A run's energy samples, ``per_bucket`` consecutive ones of each rank at a time.

    Each bucket is the interval from its first start to its last end, with the energy and CO2
    of its samples (so totals add up exactly) and the peak mean power of each component (so
    spikes survive). Buckets follow each rank's sequence numbers, so grouping is integer
    arithmetic on an index; with ``per_bucket`` 1 every sample is its own bucket.

    Buckets of 16 samples or more are summed from the run's energy blocks (``api/blocks.py``),
    ``per_bucket`` rounded up to whole blocks of a width up to twice it: the same buckets the
    samples would give at that size (at most twice the size asked), read from a few rows per
    bucket.
    """
    width = blocks.width_within(per_bucket)
    if width is not None:
        return blocks.buckets(run_id, width, per_bucket, epoch_seconds)[0]
    bucket = EnergySample.seq // per_bucket if per_bucket > 1 else EnergySample.seq
    energy: ColumnElement[float] = (
        func.coalesce(EnergySample.cpu_kwh, 0.0)
        + func.coalesce(EnergySample.gpu_kwh, 0.0)
        + func.coalesce(EnergySample.ram_kwh, 0.0)
    )
    return (
        select(
            epoch_seconds(func.min(EnergySample.t_start)).label("t_start"),
            epoch_seconds(func.max(EnergySample.t_end)).label("t_end"),
            func.sum(energy).label("kwh"),
            func.sum(EnergySample.co2_kg).label("co2_kg"),
            EnergySample.rank,
            func.max(EnergySample.cpu_w).label("cpu_w"),
            func.max(EnergySample.gpu_w).label("gpu_w"),
            func.max(EnergySample.ram_w).label("ram_w"),
        )
        .where(EnergySample.run_id == run_id)
        .group_by(EnergySample.rank, bucket)
        .order_by(func.min(EnergySample.t_start), EnergySample.rank)
    )


def samples_per_bucket(samples: int, world_size: int, buckets: int) -> int:
    """How many consecutive samples of a rank to merge so a run draws about ``buckets``."""
    per_rank = math.ceil(samples / max(world_size, 1))
    return max(1, math.ceil(per_rank / buckets))
