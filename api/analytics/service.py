"""Analytics: SQL picks the rows, greenaudit.analytics computes, this module joins the two."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import asdict
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from greenaudit.analytics import curves, nofade
from greenaudit.analytics.curves import InsufficientData
from greenaudit.analytics.returns import returns_curve

from ..auth import Principal
from ..errors import InvalidInput
from ..models import DatasetProfile
from ..runs.schemas import RunFilters
from ..runs.service import check_project_filter, get_run
from . import repository
from .schemas import (
    AXIS_UNITS,
    Axis,
    CostAxis,
    CurvePoint,
    DiminishingReturnsOut,
    Direction,
    FitOut,
    GroupBy,
    MarginalCostOut,
    MarginalGainOut,
    NofadeAxis,
    NofadeGroup,
    NofadeOut,
    NofadeRun,
    ParameterOut,
    PlateauOut,
    ProjectionOut,
    ReturnsAxis,
    ReturnsOut,
    RunPoint,
    Thresholds,
)

PUBLISHED_PROJECT = "published"
MAX_LISTED_RUNS = 10_000
NOFADE_NOTE = (
    "NoFADE greenaudit-1 is greenaudit's own definition, built on the NoFADE abstract (Fu et al., "
    "arXiv 2111.14059); it is not the paper's equation. rho is the share of the dataset's label "
    "entropy a model provably resolves (Fano's inequality); NoFADE divides it by "
    "1 + log10(1 + C/C0)."
)


def _project_ids(
    session: Session, caller: Principal, include_published: bool
) -> tuple[list[uuid.UUID], uuid.UUID | None]:
    published = session.scalar(repository.project_named(PUBLISHED_PROJECT))
    ids = [caller.project_id]
    if include_published and published is not None and published != caller.project_id:
        ids.append(published)
    return ids, published


def _fit_out(fit: curves.Fit) -> FitOut:
    return FitOut(
        model=fit.model,
        formula=fit.formula,
        parameters=[ParameterOut(**asdict(p)) for p in fit.parameters],
        r_squared=fit.r_squared,
        r_squared_space=fit.r_squared_space,
        aicc=fit.aicc,
        n=fit.n,
        cost_multiplier_to_halve_error=fit.cost_multiplier_to_halve_error,
    )


def diminishing_returns(
    session: Session,
    caller: Principal,
    filters: RunFilters,
    *,
    x_axis: CostAxis,
    metric: str,
    direction: Direction,
    frontier_only: bool,
    target: float | None,
    include_published: bool,
    include_runs: bool,
) -> DiminishingReturnsOut:
    check_project_filter(session, caller, filters)
    higher = direction is Direction.higher
    ids, published = _project_ids(session, caller, include_published)
    rows = session.execute(repository.run_costs_and_scores(ids, filters, metric, higher)).all()

    xs, ys, kept = [], [], []
    excluded = {"no_x": 0, "non_positive_x": 0}
    for row in rows:
        x = getattr(row, x_axis.value)
        if x is None:
            excluded["no_x"] += 1
        elif x <= 0:
            excluded["non_positive_x"] += 1
        else:
            xs.append(float(x))
            ys.append(float(row.score))
            kept.append(row)
    if include_runs and len(kept) > MAX_LISTED_RUNS:
        raise InvalidInput(
            f"{len(kept)} runs match; include_runs lists at most "
            f"{MAX_LISTED_RUNS}. Filter further, or leave include_runs off."
        )
    x_arr, y_arr = np.array(xs), np.array(ys)
    on_frontier = curves.pareto_frontier(x_arr, y_arr, higher)

    def point(i: int) -> RunPoint:
        row = kept[i]
        return RunPoint(
            run_id=row.run_id,
            name=row.name,
            model=row.model,
            dataset=row.dataset,
            x=xs[i],
            score=ys[i],
            frontier=bool(on_frontier[i]),
            published=row.project_id == published,
        )

    frontier = sorted((point(i) for i in np.nonzero(on_frontier)[0]), key=lambda p: p.x)
    fit_x, fit_y = (x_arr[on_frontier], y_arr[on_frontier]) if frontier_only else (x_arr, y_arr)
    report = curves.fit_all(fit_x, fit_y, higher)
    status, reason = "ok", None
    if not report.fits:
        status = "insufficient_data"
        reason = "; ".join(sorted(set(report.failures.values())))
    chosen = next(
        (f for f in report.fits if f.model == report.best), report.fits[0] if report.fits else None
    )
    size = curves.point_size(y_arr) if y_arr.size else 0.01
    marginal = None
    if chosen is not None and frontier:
        best_run = max(frontier, key=lambda p: (p.score if higher else -p.score, -p.x))
        marginal = MarginalCostOut(**asdict(curves.marginal_cost(chosen, best_run.x, size)))
    projections = (
        [ProjectionOut(**asdict(curves.project(f, target))) for f in report.fits]
        if target is not None
        else []
    )
    return DiminishingReturnsOut(
        status=status,
        reason=reason,
        definition=curves.DEFINITION_VERSION,
        method="OLS (thompson, log-linear) and bounded least squares (saturating); best by AICc",
        x=Axis(name=x_axis.value, unit=AXIS_UNITS[x_axis.value]),
        metric=metric,
        direction=direction,
        score=f"each run's {'highest' if higher else 'lowest'} {metric}",
        point_size=size,
        runs_used=len(kept),
        excluded=excluded,
        frontier_only=frontier_only,
        fits=[_fit_out(f) for f in report.fits],
        best_fit=report.best,
        best_fit_reason=report.best_reason if report.fits else None,
        failures=report.failures,
        frontier=frontier,
        projections=projections,
        marginal_cost=marginal,
        runs=[point(i) for i in range(len(kept))] if include_runs else None,
    )


def _profile_lookup(
    session: Session, ids: list[uuid.UUID]
) -> dict[tuple[uuid.UUID, str], list[DatasetProfile]]:
    profiles: dict[tuple[uuid.UUID, str], list[DatasetProfile]] = defaultdict(list)
    for profile in session.scalars(repository.profiles_for(ids)):
        profiles[(profile.project_id, profile.name)].append(profile)
    return profiles


def _profile_of(
    profiles: dict[tuple[uuid.UUID, str], list[DatasetProfile]],
    project_id: uuid.UUID,
    dataset: str | None,
    version: str | None,
) -> DatasetProfile | None:
    """The run's dataset profile: its version if stored, else the newest for the dataset."""
    candidates = profiles.get((project_id, dataset or ""), [])
    for profile in candidates:
        if profile.version == (version or "default"):
            return profile
    return max(candidates, key=lambda p: p.created_at, default=None)


def nofade_report(
    session: Session,
    caller: Principal,
    filters: RunFilters,
    *,
    axis: NofadeAxis,
    metric: str,
    group_by: GroupBy,
    thresholds: nofade.SaturationThresholds,
    include_published: bool,
    limit: int,
) -> NofadeOut:
    check_project_filter(session, caller, filters)
    ids, published = _project_ids(session, caller, include_published)
    rows = session.execute(repository.run_costs_and_scores(ids, filters, metric, True)).all()
    profiles = _profile_lookup(session, ids)
    c0, c0_label = nofade.COST_UNITS[axis.value]
    results: list[NofadeRun] = []
    by_group: dict[str | None, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for row in rows:
        profile = _profile_of(profiles, row.project_id, row.dataset, row.dataset_version)
        cost = getattr(row, axis.value)
        cost = float(cost) if cost is not None else None
        if profile is None:
            value = nofade.Rho(
                None,
                None,
                None,
                nofade.metric_kind(metric) == "approximate",
                f"no dataset profile for {row.dataset!r}; POST one to /api/v1/datasets/profiles",
            )
        else:
            value = nofade.rho(float(row.score), profile.entropy_bits, profile.num_classes, metric)
        score = None
        reason = value.reason
        if value.value is not None:
            if cost is None or cost < 0:
                reason = f"the run has no {axis.value} cost"
            else:
                score = nofade.nofade_score(value.value, cost, c0)
                key = row.dataset if group_by is GroupBy.dataset else row.task
                by_group[key][0].append(cost)
                by_group[key][1].append(value.value)
        results.append(
            NofadeRun(
                run_id=row.run_id,
                model=row.model,
                dataset=row.dataset,
                task=row.task,
                score=float(row.score),
                cost=cost,
                entropy_bits=profile.entropy_bits if profile else None,
                num_classes=profile.num_classes if profile else None,
                rho=value.value,
                nofade=score,
                approximate=value.approximate,
                reason=reason,
                published=row.project_id == published,
            )
        )
    results.sort(key=lambda r: (r.nofade is None, -(r.nofade or 0.0), str(r.run_id)))
    groups = []
    for key, (costs, rhos) in sorted(by_group.items(), key=lambda kv: str(kv[0])):
        saturation = nofade.saturation(costs, rhos, thresholds)
        groups.append(NofadeGroup(key=key, runs_with_rho=len(rhos), **asdict(saturation)))
    return NofadeOut(
        definition=nofade.DEFINITION_VERSION,
        note=NOFADE_NOTE,
        metric=metric,
        axis=Axis(name=axis.value, unit=AXIS_UNITS[axis.value]),
        c0=c0,
        c0_label=c0_label,
        group_by=group_by,
        thresholds=Thresholds(**asdict(thresholds)),
        runs_total=len(results),
        runs=results[:limit],
        groups=groups,
    )


def _downsample(count: int, keep: int, must: set[int]) -> list[int]:
    if count <= keep:
        return list(range(count))
    stride = np.linspace(0, count - 1, keep).round().astype(int)
    return sorted(set(stride.tolist()) | must)


def run_returns(
    session: Session,
    caller: Principal,
    run_id: uuid.UUID,
    *,
    metric: str | None,
    direction: Direction,
    axis: ReturnsAxis,
    epsilon_fraction: float,
    max_points: int,
) -> ReturnsOut:
    run = get_run(session, caller, run_id)
    metric_name = metric or run.primary_metric or "accuracy"
    points = session.execute(repository.metric_series(run.id, metric_name)).all()
    samples = session.execute(repository.energy_intervals(run.id)).all()
    base: dict[str, Any] = dict(
        definition=curves.DEFINITION_VERSION,
        run_id=run.id,
        metric=metric_name,
        direction=direction,
        axis=Axis(name=axis.value, unit=AXIS_UNITS[axis.value]),
        points_total=len(points),
    )
    empty: dict[str, Any] = dict(
        curve=[],
        total_energy_kwh=None,
        total_co2_kg=None,
        point_size=None,
        fits=[],
        best_fit=None,
        best_fit_reason=None,
        marginal_gain=None,
        plateau=None,
    )
    try:
        steps, times, values = (
            (np.array(c, dtype=float) for c in zip(*points, strict=True))
            if points
            else (np.array([]),) * 3
        )
        starts, ends, kwh, co2, ranks = (
            (np.array(c, dtype=float) for c in zip(*samples, strict=True))
            if samples
            else (np.array([]),) * 5
        )
        result = returns_curve(
            steps,
            times,
            values,
            starts,
            ends,
            kwh,
            co2,
            ranks,
            higher_is_better=direction is Direction.higher,
            axis=axis.value,
            epsilon_fraction=epsilon_fraction,
        )
    except InsufficientData as error:
        return ReturnsOut(status="insufficient_data", reason=error.reason, **base, **empty)
    chosen = result.fits
    plateau = result.plateau
    indices = _downsample(len(points), max_points, {plateau.index, len(points) - 1})
    return ReturnsOut(
        status="ok",
        reason=None,
        **base,
        curve=[
            CurvePoint(
                step=int(result.steps[i]),
                value=float(result.values[i]),
                energy_kwh=float(result.energy_kwh[i]),
                co2_kg=float(result.co2_kg[i]),
            )
            for i in indices
        ],
        total_energy_kwh=result.total_energy_kwh,
        total_co2_kg=result.total_co2_kg,
        point_size=result.point_size,
        fits=[_fit_out(f) for f in chosen.fits] if chosen else [],
        best_fit=chosen.best if chosen else None,
        best_fit_reason=chosen.best_reason if chosen else result.fit_reason,
        marginal_gain=MarginalGainOut(**asdict(result.marginal_gain))
        if result.marginal_gain
        else None,
        plateau=PlateauOut(**{k: v for k, v in asdict(plateau).items() if k != "index"}),
    )
