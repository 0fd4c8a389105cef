"""What each dashboard page shows: data from the services, figures from greenaudit.dashboards."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from sqlalchemy.orm import Session

from greenaudit.analytics.curves import evaluate
from greenaudit.analytics.nofade import SaturationThresholds
from greenaudit.dashboards import figures
from greenaudit.schemas.analytics import DEFAULT_DIRECTION, GroupBy

from ..analytics import service as analytics
from ..analytics.repository import sample_buckets, samples_per_bucket
from ..analytics.schemas import CostAxis, NofadeAxis, ReturnsAxis
from ..auth import Principal
from ..models import Run, RunEnergyTotals
from ..projects.service import get_project
from ..runs import service as runs
from ..runs.schemas import RunFilters, RunSort, SortOrder
from ..totals import service as totals
from ..totals.schemas import TotalsBy
from . import repository

#: US EPA, "Greenhouse Gas Emissions from a Typical Passenger Vehicle": about 400 g CO2 per mile.
CAR_G_CO2_PER_KM = 400 / 1.609344
CAR_SOURCE = (
    "US EPA, Greenhouse Gas Emissions from a Typical Passenger Vehicle "
    "(about 400 g CO2 per mile, 248.5 g per km)"
)
MAX_POWER_POINTS = 2000
PAGE_SIZE = 25


def figure_json(figure: go.Figure) -> str:
    """The figure as JSON for Plotly.newPlot; '</' is escaped so it is safe inside <script>."""
    return str(figure.to_json()).replace("</", "<\\/")


def _totals_frame(
    session: Session, caller: Principal, by: TotalsBy, filters: RunFilters | None = None
) -> pd.DataFrame:
    rows = totals.totals(session, caller, by, filters or RunFilters()).rows
    return pd.DataFrame(
        [r.model_dump() for r in rows],
        columns=[
            "key",
            "runs",
            "energy_kwh",
            "cpu_kwh",
            "gpu_kwh",
            "ram_kwh",
            "co2_kg",
            "gpu_hours",
            "duration_s",
            "j_per_sample",
        ],
    )


#: The overview's period choices, in days (None: all time).
PERIODS = {"7": 7, "30": 30, "365": 365, "all": None}


def overview(session: Session, caller: Principal, period: str, now: datetime) -> dict[str, Any]:
    project = get_project(session, caller.project_id)
    days = PERIODS[period]
    since = now - timedelta(days=days) if days is not None else None
    filters = RunFilters(started_after=since)
    by_project = _totals_frame(session, caller, TotalsBy.project, filters)
    summary = (
        by_project.iloc[0].to_dict()
        if len(by_project)
        else {"runs": 0, "energy_kwh": 0.0, "co2_kg": 0.0, "gpu_hours": 0.0}
    )
    daily = pd.DataFrame(
        session.execute(repository.daily_co2(caller.project_id, since)).all(),
        columns=["day", "co2_kg"],
    )
    models = _totals_frame(session, caller, TotalsBy.model, filters).head(10)
    datasets = _totals_frame(session, caller, TotalsBy.dataset, filters).head(10)
    return {
        "project": project.name,
        "period": period,
        "periods": list(PERIODS),
        "summary": summary,
        "car_km": summary["co2_kg"] * 1000 / CAR_G_CO2_PER_KM,
        "car_source": CAR_SOURCE,
        "figures": {
            "trend": figure_json(figures.co2_trend(daily)),
            "models": figure_json(figures.top_by_co2(models, "model")),
            "datasets": figure_json(figures.top_by_co2(datasets, "dataset")),
        },
    }


def project_page(
    session: Session,
    caller: Principal,
    filters: RunFilters,
    sort: RunSort,
    order: SortOrder,
    page: int,
) -> dict[str, Any]:
    listed = runs.list_runs(
        session, caller, filters, PAGE_SIZE, (page - 1) * PAGE_SIZE, sort, order
    )
    by_model = _totals_frame(session, caller, TotalsBy.model, filters)
    by_dataset = _totals_frame(session, caller, TotalsBy.dataset, filters)
    everything = _totals_frame(session, caller, TotalsBy.model)
    groups = []
    best: dict[str, Any] = {}
    for row in session.execute(repository.group_best_results(caller.project_id)):
        # Higher is better for the primary metrics greenaudit knows to be rates.
        value = row.max_value
        if row.group_name not in best or value > best[row.group_name]["value"]:
            best[row.group_name] = {
                "value": value,
                "run_id": row.id,
                "name": row.name or row.model,
                "metric": row.primary_metric,
            }
    for cost in session.execute(repository.group_costs(caller.project_id)):
        groups.append(
            {
                "group": cost.group_name,
                "runs": cost.runs,
                "co2_kg": cost.co2_kg,
                "energy_kwh": cost.energy_kwh,
                "best": best.get(cost.group_name),
            }
        )
    return {
        "runs": listed,
        "pages": max(1, math.ceil(listed.total / PAGE_SIZE)),
        "page": page,
        "filters": filters,
        "sort": sort.value,
        "order": order.value,
        "models": sorted(k for k in everything["key"].dropna()),
        "groups": groups,
        "figures": {
            "components": figure_json(figures.energy_by_component(by_model, "model")),
            "co2_models": figure_json(figures.top_by_co2(by_model, "model")),
            "co2_datasets": figure_json(figures.top_by_co2(by_dataset, "dataset")),
        },
    }


def _utc(seconds: Any) -> datetime:
    return datetime.fromtimestamp(float(seconds), timezone.utc)


def power_series(session: Session, run_id: uuid.UUID) -> tuple[pd.DataFrame, int, bool, list[Any]]:
    """The run's power series, merged in SQL when it has more samples than a page can draw.

    Returns the series, the original sample count, whether samples were merged, and the rows
    (for the returns curve, so the run's samples are scanned once).
    """
    run = session.get(Run, run_id)
    totals_row = session.get(RunEnergyTotals, run_id)
    count = totals_row.samples if totals_row else 0
    per_bucket = samples_per_bucket(count, run.world_size if run else 1, MAX_POWER_POINTS)
    rows = session.execute(sample_buckets(run_id, per_bucket)).all()
    frame = pd.DataFrame(
        rows, columns=["t_start", "t_end", "kwh", "co2_kg", "rank", "cpu_w", "gpu_w", "ram_w"]
    )
    frame["t"] = [_utc(t) for t in frame["t_start"]]
    return frame, int(count), per_bucket > 1, list(rows)


def run_page(
    session: Session,
    caller: Principal,
    run_id: uuid.UUID,
    metric: str | None,
    axis: ReturnsAxis,
) -> dict[str, Any]:
    detail = runs.run_detail(session, caller, run_id)
    series, sample_count, reduced, intervals = power_series(session, run_id)
    cumulative = (
        series.groupby("t", as_index=False)["kwh"].sum().sort_values("t")
        if len(series)
        else pd.DataFrame(columns=["t", "kwh"])
    )
    cumulative["energy_kwh"] = cumulative["kwh"].cumsum()
    returns = analytics.run_returns(
        session,
        caller,
        run_id,
        metric=metric,
        direction=DEFAULT_DIRECTION,
        axis=axis,
        epsilon_fraction=0.005,
        max_points=1000,
        intervals=intervals,
    )
    metrics = sorted(session.scalars(repository.metric_names(run_id)))
    curve = pd.DataFrame(
        [p.model_dump() for p in returns.curve], columns=["step", "value", "energy_kwh", "co2_kg"]
    )
    plateau = returns.plateau.model_dump() if returns.plateau else None
    unit = "fraction" if returns.point_size == 0.01 else "metric units"
    return {
        "run": detail,
        "sample_count": sample_count,
        "points_shown": len(series),
        "reduced": reduced,
        "returns": returns,
        "figures": {
            "power": figure_json(figures.power_over_time(series, downsampled=reduced)),
            "energy": figure_json(figures.cumulative_energy(cumulative)),
            "returns": figure_json(
                figures.returns_curve(curve, plateau, returns.metric, unit, axis=axis.value)
            ),
        },
        "metrics": metrics,
        "axis": axis.value,
    }


def curves_page(
    session: Session,
    caller: Principal,
    x_axis: CostAxis,
    metric: str,
    target: float | None,
    published: bool,
) -> dict[str, Any]:
    answer = analytics.diminishing_returns(
        session,
        caller,
        RunFilters(),
        x_axis=x_axis,
        metric=metric,
        direction=DEFAULT_DIRECTION,
        frontier_only=False,
        target=target,
        include_published=published,
        include_runs=True,
    )
    points = pd.DataFrame(
        [
            {
                "x": p.x,
                "score": p.score,
                "label": p.name or p.model,
                "frontier": p.frontier,
                "published": p.published,
            }
            for p in answer.runs or []
        ],
        columns=["x", "score", "label", "frontier", "published"],
    )
    fits = []
    if len(points):
        grid = np.logspace(np.log10(points["x"].min()), np.log10(points["x"].max()), 100)
        for fit in answer.fits:
            params = {p.name: p.value for p in fit.parameters}
            fits.append({"model": fit.model, "x": grid, "y": evaluate(fit.model, params, grid)})
    projection = next(
        (p.model_dump() for p in answer.projections if p.model == (answer.best_fit or "thompson")),
        None,
    )
    figure = figures.scaling_scatter(
        points,
        fits,
        x_title=f"{x_axis.value} ({answer.x.unit})",
        y_title=f"{metric} ({'fraction' if answer.point_size == 0.01 else 'as logged'})",
        metric=metric,
        projection=projection,
    )
    return {
        "answer": answer,
        "projection": projection,
        "figure": figure_json(figure),
        "x_axis": x_axis.value,
        "metric": metric,
        "target": target,
        "published": published,
        "axes": [a.value for a in CostAxis],
    }


def nofade_page(
    session: Session, caller: Principal, axis: NofadeAxis, metric: str
) -> dict[str, Any]:
    answer = analytics.nofade_report(
        session,
        caller,
        RunFilters(),
        axis=axis,
        metric=metric,
        group_by=GroupBy.dataset,
        thresholds=SaturationThresholds(),
        include_published=False,
        limit=500,
    )
    table = pd.DataFrame(
        [r.model_dump() for r in answer.runs],
        columns=["model", "dataset", "nofade", "rho", "score", "cost", "reason"],
    )
    return {
        "answer": answer,
        "figure": figure_json(figures.nofade_leaderboard(table)),
        "axis": axis.value,
        "metric": metric,
        "axes": [a.value for a in NofadeAxis],
    }
