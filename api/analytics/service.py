"""Analytics: SQL picks the rows, greenaudit.analytics computes, this module joins the two."""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from dataclasses import asdict
from typing import Any, SupportsIndex

import numpy as np
from sqlalchemy.orm import Session

from greenaudit.analytics import curves, nofade, returns
from greenaudit.analytics.curves import InsufficientData
from greenaudit.schemas.analytics import (
    Axis,
    CurvePoint,
    DiminishingReturnsOut,
    Direction,
    FitOut,
    GroupBy,
    MarginalGainOut,
    NofadeGroup,
    NofadeOut,
    NofadeRun,
    ParameterOut,
    ReturnsOut,
    RunPoint,
    Thresholds,
)

from ..auth import Principal
from ..errors import InvalidInput
from ..models import DatasetProfile, RunEnergyTotals
from ..runs.schemas import RunFilters
from ..runs.service import check_project_filter, get_run
from . import repository
from .schemas import AXIS_UNITS, CostAxis, NofadeAxis, ReturnsAxis

PUBLISHED_PROJECT = "published"
MAX_ENERGY_INTERVALS = 5000
# A returns curve holds at most this many points. Each is an index seek and a point of every
# fit; at 100,000 one request took 8.7 s (issue 16, finding 10), and a chart has no more
# pixels than this anyway.
MAX_CURVE_POINTS = 10_000
# The fits of a returns curve use at most this many of its points (the default curve's size,
# so a default request fits every point it answers with).
MAX_RETURNS_FIT_POINTS = 2000
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


def _rows(session: Session, query: Any) -> list[Any]:
    """Runs that have a score, as plain tuples from the Core connection.

    The ORM's row handling alone costs most of a second on 100,000 rows.
    """
    return [row for row in session.connection().execute(query).all() if row[2] is not None]


def _labels(session: Session, run_ids: list[str]) -> dict[uuid.UUID, Any]:
    """Name, model and dataset of the few runs an answer lists."""
    ids = [uuid.UUID(run_id) for run_id in run_ids]
    return {row.id: row for row in session.execute(repository.run_labels(ids))}


def _columns(rows: list[Any], count: int) -> list[tuple[Any, ...]]:
    """Rows to columns (zip is far faster than numpy on SQLAlchemy rows)."""
    return list(zip(*rows, strict=True)) if rows else [()] * count


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
    higher = direction.higher_is_better
    ids, published = _project_ids(session, caller, include_published)
    rows = _rows(
        session,
        repository.run_rows(published, ids, filters, metric, higher, [x_axis.value]),
    )
    run_ids, is_published, scores, xs_raw = _columns(rows, 4)
    x_all = np.array([np.nan if x is None else float(x) for x in xs_raw], dtype=float)
    y_all = np.array(scores, dtype=float)
    has_x = ~np.isnan(x_all)
    positive = has_x & (x_all > 0)
    excluded = {"no_x": int((~has_x).sum()), "non_positive_x": int((has_x & ~positive).sum())}
    kept = np.nonzero(positive)[0]
    if include_runs and kept.size > MAX_LISTED_RUNS:
        raise InvalidInput(
            f"{kept.size} runs match; include_runs lists at most "
            f"{MAX_LISTED_RUNS}. Filter further, or leave include_runs off."
        )
    x_arr, y_arr = x_all[kept], y_all[kept]
    on_frontier = curves.pareto_frontier(x_arr, y_arr, higher)
    listed = np.arange(kept.size) if include_runs else np.nonzero(on_frontier)[0]
    labels = _labels(session, [run_ids[kept[i]] for i in listed])

    def point(i: SupportsIndex) -> RunPoint:
        run_id = uuid.UUID(run_ids[kept[i]])
        label = labels[run_id]
        return RunPoint(
            run_id=run_id,
            name=label.name,
            model=label.model,
            dataset=label.dataset,
            x=float(x_arr[i]),
            score=float(y_arr[i]),
            frontier=bool(on_frontier[i]),
            published=bool(is_published[kept[i]]),
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
        marginal = curves.marginal_cost(chosen, best_run.x, size)
    projections = [curves.project(f, target) for f in report.fits] if target is not None else []
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
        runs_used=int(kept.size),
        excluded=excluded,
        frontier_only=frontier_only,
        fits=[_fit_out(f) for f in report.fits],
        best_fit=report.best,
        best_fit_reason=report.best_reason if report.fits else None,
        failures=report.failures,
        frontier=frontier,
        projections=projections,
        marginal_cost=marginal,
        runs=[point(i) for i in listed] if include_runs else None,
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
    fields = [axis.value, "dataset", "dataset_version", "task"]
    rows = _rows(session, repository.run_rows(published, ids, filters, metric, True, fields))
    run_ids, is_published, scores, costs, datasets, versions, tasks = _columns(rows, 7)
    score_arr = np.array(scores, dtype=float)
    cost_arr = np.array([np.nan if c is None else float(c) for c in costs], dtype=float)
    profiles = _profile_lookup(session, ids)
    c0, c0_label = nofade.COST_UNITS[axis.value]
    kind = nofade.metric_kind(metric)
    n = len(rows)
    rho_arr = np.full(n, np.nan)
    entropy = np.full(n, np.nan)
    classes = np.zeros(n, dtype=int)
    reasons: list[str | None] = [None] * n

    # Runs sharing a dataset (and version) are computed together; reasons are kept per run.
    by_key: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for i, source in enumerate(zip(is_published, datasets, versions, strict=True)):
        by_key[source].append(i)
    by_profile: dict[uuid.UUID | None, list[int]] = defaultdict(list)
    chosen: dict[uuid.UUID, DatasetProfile] = {}
    for (from_catalog, dataset, version), members in by_key.items():
        project = published if from_catalog and published else caller.project_id
        profile = _profile_of(profiles, project, dataset, version)
        if profile is not None:
            chosen[profile.id] = profile
        by_profile[profile.id if profile else None].extend(members)
    for profile_id, members in by_profile.items():
        index = np.array(members)
        if profile_id is None:
            for i in members:
                reasons[i] = (
                    f"no dataset profile for {datasets[i]!r}; POST one to /api/v1/datasets/profiles"
                )
            continue
        profile = chosen[profile_id]
        entropy[index], classes[index] = profile.entropy_bits, profile.num_classes
        if kind == "none" or profile.num_classes < 2:
            for i in members:
                reasons[i] = nofade.rho(
                    score_arr[i], profile.entropy_bits, profile.num_classes, metric
                ).reason
            continue
        in_range = (score_arr[index] >= 0) & (score_arr[index] <= 1)
        rho_arr[index[in_range]] = nofade.rho_values(
            score_arr[index[in_range]], profile.entropy_bits, profile.num_classes
        )
        for i in index[~in_range]:
            reasons[i] = f"{metric} = {score_arr[i]} is not a rate in [0, 1]"

    has_rho = ~np.isnan(rho_arr)
    has_cost = ~np.isnan(cost_arr) & (cost_arr >= 0)
    scored = has_rho & has_cost
    nofade_arr = np.full(n, np.nan)
    nofade_arr[scored] = nofade.nofade_values(rho_arr[scored], cost_arr[scored], c0)
    for i in np.nonzero(has_rho & ~has_cost)[0].tolist():
        reasons[i] = f"the run has no {axis.value} cost"

    keys = datasets if group_by is GroupBy.dataset else tasks
    groups = []
    members_of: dict[str | None, list[int]] = defaultdict(list)
    for i in np.nonzero(scored)[0].tolist():
        members_of[keys[i]].append(i)
    for key in sorted(members_of, key=str):
        index = np.array(members_of[key])
        saturation = nofade.saturation(cost_arr[index], rho_arr[index], thresholds)
        groups.append(NofadeGroup(key=key, runs_with_rho=int(index.size), **asdict(saturation)))

    # Highest NoFADE first, then the runs without one; only the listed runs become objects.
    order = np.lexsort((-np.nan_to_num(nofade_arr, nan=-np.inf), np.isnan(nofade_arr)))
    top = order[:limit].tolist()
    labels = _labels(session, [run_ids[i] for i in top])
    listed = []
    for i in top:
        listed.append(
            NofadeRun(
                run_id=uuid.UUID(run_ids[i]),
                model=labels[uuid.UUID(run_ids[i])].model,
                dataset=datasets[i],
                task=tasks[i],
                score=float(score_arr[i]),
                cost=None if np.isnan(cost_arr[i]) else float(cost_arr[i]),
                entropy_bits=None if np.isnan(entropy[i]) else float(entropy[i]),
                num_classes=int(classes[i]) or None,
                rho=None if np.isnan(rho_arr[i]) else float(rho_arr[i]),
                nofade=None if np.isnan(nofade_arr[i]) else float(nofade_arr[i]),
                approximate=kind == "approximate",
                reason=reasons[i],
                published=bool(is_published[i]),
            )
        )
    return NofadeOut(
        definition=nofade.DEFINITION_VERSION,
        note=NOFADE_NOTE,
        metric=metric,
        axis=Axis(name=axis.value, unit=AXIS_UNITS[axis.value]),
        c0=c0,
        c0_label=c0_label,
        group_by=group_by,
        thresholds=Thresholds(**asdict(thresholds)),
        runs_total=n,
        runs=listed,
        groups=groups,
    )


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
    intervals: list[Any] | None = None,
) -> ReturnsOut:
    """Within-run returns, with the series reduced in SQL.

    ``intervals`` are the run's sample buckets when the caller has already fetched them (the
    run page draws them too), as rows of (t_start, t_end, kwh, co2_kg, rank, ...).

    The range, the plateau point and an even sample of steps come from the database, so a run
    of a million points costs a few index scans, not a million rows.
    """
    run = get_run(session, caller, run_id)
    higher = direction.higher_is_better
    name = metric or run.primary_metric or "accuracy"
    stats = session.scalar(repository.metric_stats(run.id, name))
    count = stats.points if stats else 0
    base: dict[str, Any] = dict(
        definition=curves.DEFINITION_VERSION,
        run_id=run.id,
        metric=name,
        direction=direction,
        axis=Axis(name=axis.value, unit=AXIS_UNITS[axis.value]),
        points_total=int(count),
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
    if stats is None:
        return ReturnsOut(
            status="insufficient_data", reason=f"the run has no points of {name!r}", **base, **empty
        )
    lowest, highest = stats.min_value, stats.max_value
    first_step, last_step = stats.first_step, stats.last_step
    threshold, epsilon = returns.plateau_threshold(lowest, highest, higher, epsilon_fraction)
    # Stride in steps, a multiple of the typical gap between logged steps, so that logging
    # every 50 steps is sampled at multiples of 50 rather than missed.
    gap = max(1, round((last_step - first_step) / max(stats.points - 1, 1)))
    stride = gap * max(1, math.ceil(stats.points / max_points))
    sampled = session.execute(
        repository.sampled_points(run.id, name, first_step, last_step, stride)
    ).all()
    plateau_row = (
        None
        if epsilon == 0
        else session.execute(repository.first_point_past(run.id, name, threshold, higher)).first()
    )
    if plateau_row is None:
        # A constant metric, or an ε below float resolution: the plateau is where the best
        # value is first reached.
        best = highest if higher else lowest
        plateau_row = session.execute(
            repository.first_point_past(run.id, name, best, higher, inclusive=True)
        ).one()
    last_row = session.execute(repository.last_point(run.id, name)).one()
    points = {row.step: row for row in (*sampled, plateau_row, last_row)}
    steps, times, values = _columns([points[s] for s in sorted(points)], 3)
    # Interpolating cumulative energy needs no more than a few thousand intervals.
    if intervals is None:
        measured = session.get(RunEnergyTotals, run.id)
        per_bucket = repository.samples_per_bucket(
            measured.samples if measured else 0, run.world_size, MAX_ENERGY_INTERVALS
        )
        intervals = list(session.execute(repository.sample_buckets(run.id, per_bucket)).all())
    starts, ends, kwh, co2, ranks = _columns([tuple(row[:5]) for row in intervals], 5)
    try:
        result = returns.summarize_returns(
            steps,
            times,
            values,
            plateau_step=plateau_row.step,
            plateau_time=plateau_row.time_s,
            plateau_value=plateau_row.value,
            epsilon=epsilon,
            final_best=highest if higher else lowest,
            point=curves.point_size([lowest, highest]),
            sample_t_start=starts,
            sample_t_end=ends,
            sample_kwh=kwh,
            sample_co2_kg=co2,
            sample_rank=ranks,
            higher_is_better=higher,
            axis=axis.value,
            max_fit_points=MAX_RETURNS_FIT_POINTS,
        )
    except InsufficientData as error:
        return ReturnsOut(status="insufficient_data", reason=error.reason, **base, **empty)
    report = result.fits
    return ReturnsOut(
        status="ok",
        reason=None,
        **base,
        # Whole columns to Python numbers at once: indexing 10,000 points one numpy scalar at
        # a time was most of this answer's Python time.
        curve=[
            CurvePoint(step=step, value=value, energy_kwh=kwh, co2_kg=co2)
            for step, value, kwh, co2 in zip(
                result.steps.tolist(),
                result.values.tolist(),
                result.energy_kwh.tolist(),
                result.co2_kg.tolist(),
                strict=True,
            )
        ],
        total_energy_kwh=result.total_energy_kwh,
        total_co2_kg=result.total_co2_kg,
        point_size=result.point_size,
        fits=[_fit_out(f) for f in report.fits] if report else [],
        best_fit=report.best if report else None,
        best_fit_reason=report.best_reason if report else result.fit_reason,
        marginal_gain=MarginalGainOut(**asdict(result.marginal_gain))
        if result.marginal_gain
        else None,
        plateau=result.plateau,
    )
