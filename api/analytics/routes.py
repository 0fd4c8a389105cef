from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from greenaudit.analytics.nofade import SaturationThresholds
from greenaudit.schemas import MAX_NAME_LENGTH, NO_NUL
from greenaudit.schemas.analytics import (
    DEFAULT_DIRECTION,
    DiminishingReturnsOut,
    Direction,
    GroupBy,
    NofadeOut,
    ReturnsOut,
)

from ..deps import ReaderDep, SessionDep
from ..errors import ERROR_RESPONSES
from ..params import EpsilonFraction, Filters, run_metric
from . import service
from .schemas import CostAxis, NofadeAxis, ReturnsAxis

router = APIRouter(tags=["analytics"], responses=ERROR_RESPONSES)

Metric = Annotated[
    str,
    Query(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        pattern=NO_NUL,
        description="the metric name, as logged",
    ),
]
Fraction = Annotated[float, Query(ge=0, le=1, allow_inf_nan=False)]


@router.get("/api/v1/analytics/diminishing-returns", response_model=DiminishingReturnsOut)
def diminishing_returns(
    session: SessionDep,
    caller: ReaderDep,
    filters: Filters,
    x: Annotated[CostAxis, Query(description="the cost axis")] = CostAxis.co2_kg,
    metric: Metric = "accuracy",
    direction: Direction = DEFAULT_DIRECTION,
    frontier_only: bool = False,
    target: Annotated[
        float | None, Query(allow_inf_nan=False, description="a score to project the cost of")
    ] = None,
    include_published: Annotated[
        bool, Query(description="add the published catalog's runs")
    ] = False,
    include_runs: Annotated[
        bool, Query(description="list every run used (at most 10,000)")
    ] = False,
) -> DiminishingReturnsOut:
    """Scaling curves of a metric against a cost across runs (ANALYTICS.md section 2).

    Fits Thompson's power law, Sun's log-linear law and a saturating curve, names the best by
    AICc, and gives the Pareto frontier, the projection to ``target`` and the marginal cost of
    the next point. Fewer than 3 usable runs answer ``status: insufficient_data`` with a reason.
    """
    return service.diminishing_returns(
        session,
        caller,
        filters,
        x_axis=x,
        metric=metric,
        direction=direction,
        frontier_only=frontier_only,
        target=target,
        include_published=include_published,
        include_runs=include_runs,
    )


@router.get("/api/v1/analytics/nofade", response_model=NofadeOut)
def nofade_metric(
    session: SessionDep,
    caller: ReaderDep,
    filters: Filters,
    axis: Annotated[NofadeAxis, Query(description="the cost axis C")] = NofadeAxis.co2_kg,
    metric: Metric = "accuracy",
    group_by: GroupBy = GroupBy.dataset,
    saturated_sigma: Fraction = 0.98,
    saturated_beta: Fraction = 0.01,
    saturating_beta: Fraction = 0.05,
    include_published: bool = False,
    limit: Annotated[int, Query(ge=1, le=10_000, description="runs listed")] = 100,
) -> NofadeOut:
    """NoFADE greenaudit-1 per run, and the saturation of each dataset or task.

    greenaudit's own definition, built on the NoFADE abstract, not the paper's equation.
    """
    thresholds = SaturationThresholds(saturated_sigma, saturated_beta, saturating_beta)
    return service.nofade_report(
        session,
        caller,
        filters,
        axis=axis,
        metric=metric,
        group_by=group_by,
        thresholds=thresholds,
        include_published=include_published,
        limit=limit,
    )


@router.get("/api/v1/runs/{run_id}/returns", response_model=ReturnsOut)
def run_returns(
    run_id: uuid.UUID,
    session: SessionDep,
    caller: ReaderDep,
    metric: Annotated[str | None, run_metric("default: the run's primary metric")] = None,
    direction: Direction = DEFAULT_DIRECTION,
    axis: ReturnsAxis = ReturnsAxis.energy_kwh,
    epsilon_fraction: EpsilonFraction = 0.005,
    max_points: Annotated[
        int,
        Query(
            ge=10,
            le=service.MAX_CURVE_POINTS,
            description=f"curve points to answer with, at most {service.MAX_CURVE_POINTS}",
        ),
    ] = 2000,
) -> ReturnsOut:
    """The metric against cumulative energy or CO2 within one run, and its plateau."""
    return service.run_returns(
        session,
        caller,
        run_id,
        metric=metric,
        direction=direction,
        axis=axis,
        epsilon_fraction=epsilon_fraction,
        max_points=max_points,
    )
