"""Ask the service everything a report prints, through :class:`~.reader.ServiceReader`."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timezone

from greenaudit._version import __version__
from greenaudit.schemas import Page
from greenaudit.schemas.analytics import (
    DEFAULT_DIRECTION,
    Direction,
    NofadeOut,
    NofadeRun,
    ReturnsOut,
)
from greenaudit.schemas.runs import CreationCostOut, RunOut
from greenaudit.schemas.totals import TotalsOut

from .model import (
    DEFAULT_CURVE_POINTS,
    NOFADE_NEEDS_HIGHER,
    GroupReport,
    Provenance,
    Report,
    ReportError,
    RunNofade,
    RunReport,
)
from .reader import ServiceReader

#: Runs per page when listing a group (the API's largest page).
RUNS_PAGE = 500
#: Runs a NoFADE answer lists at most (the API's largest ``limit``).
NOFADE_LIMIT = 10_000


def is_run_id(target: str) -> bool:
    """Whether ``target`` names a run (a UUID) rather than a group.

    Example:
        >>> is_run_id("0b5b8f1e-6f3a-4c1e-9a55-3f1f2b2f7a10"), is_run_id("sweep-a")
        (True, False)
    """
    try:
        uuid.UUID(target)
    except ValueError:
        return False
    return True


def gather(
    target: str,
    *,
    url: str,
    api_key: str,
    metric: str | None = None,
    direction: Direction = DEFAULT_DIRECTION,
    curve_points: int = DEFAULT_CURVE_POINTS,
    generated_at: datetime | None = None,
    timeout_s: float = 60.0,
) -> Report:
    """Ask the service everything a report on ``target`` prints.

    Args:
        target: A run id (UUID), or else the name of a group of runs.
        url: The service's base URL, e.g. ``http://127.0.0.1:8000``.
        api_key: A read (or write) key of the project.
        metric: The metric of the returns curve and NoFADE; default the run's primary metric
            (for a group, the primary metric most of its runs name).
        direction: Whether higher or lower values of the metric are better. With ``lower`` (a
            loss), the run's returns curve and plateau are taken that way and NoFADE, defined
            on higher-is-better scores, is left out; a group report, which ranks runs by
            NoFADE's score, refuses it.
        curve_points: Most points of the returns curve to ask for (10 to 100,000).
        generated_at: The time printed as the report's generation time (UTC); default now.
        timeout_s: Seconds to wait for each answer.

    Returns:
        A :class:`RunReport` or :class:`GroupReport` holding the answers.

    Raises:
        ReportError: The service could not be reached or refused a request (unknown run 404,
            bad key 401), a group has no runs, or a group was asked for with ``lower``.
    """
    provenance = Provenance(
        service_url=url.rstrip("/"),
        generated_at=(generated_at or datetime.now(timezone.utc)).astimezone(timezone.utc),
        version=__version__,
    )
    with ServiceReader(url, api_key, timeout_s, provenance.requests) as api:
        if is_run_id(target):
            return _gather_run(api, provenance, target, metric, direction, curve_points)
        if not direction.higher_is_better:
            raise ReportError(
                "a group report ranks its runs by their highest score and NoFADE, which need a "
                "higher-is-better metric; report on one run with --direction lower instead"
            )
        return _gather_group(api, provenance, target, metric, curve_points)


def _gather_run(
    api: ServiceReader,
    provenance: Provenance,
    run_id: str,
    metric: str | None,
    direction: Direction,
    curve_points: int,
) -> RunReport:
    run = api.get(f"/runs/{run_id}", {}, RunOut)
    returns = api.get(
        f"/runs/{run_id}/returns",
        {"metric": metric, "direction": direction.value, "max_points": curve_points},
        ReturnsOut,
    )
    cost = api.get(f"/runs/{run_id}/cost", {}, CreationCostOut)
    nofade = _nofade_of_run(api, run, returns)
    if not direction.higher_is_better:
        # The answer's definition is still shown; the run's entry would rank a loss upside down.
        nofade = RunNofade(answer=nofade.answer, run=None, dataset=None, reason=NOFADE_NEEDS_HIGHER)
    return RunReport(provenance=provenance, run=run, returns=returns, cost=cost, nofade=nofade)


def _nofade_of_run(api: ServiceReader, run: RunOut, returns: ReturnsOut) -> RunNofade:
    """The run's entry in the NoFADE answer for its dataset, and its dataset's saturation.

    The API has no per-run NoFADE route: it lists runs by NoFADE, so the run is picked out of
    the answer for its dataset by id. Should the dataset have more runs than one answer lists,
    a second question narrowed to the run's model, task, group and kind finds it.
    """
    metric = returns.metric
    wide = {"metric": metric, "dataset": run.dataset, "limit": NOFADE_LIMIT}
    answer = api.get("/analytics/nofade", wide, NofadeOut)
    entry = _entry_of(answer, run.id)
    if entry is None and answer.runs_total > len(answer.runs):
        narrow = {
            **wide,
            "model": run.model,
            "task": run.task,
            "group": run.group,
            "kind": run.kind.value,
        }
        entry = _entry_of(api.get("/analytics/nofade", narrow, NofadeOut), run.id)
    dataset = None
    if run.dataset is not None:
        dataset = next((g for g in answer.groups if g.key == run.dataset), None)
    reason = None
    if entry is None:
        reason = (
            f"the run has no points of {metric!r}"
            if returns.points_total == 0
            else "the run is not among the runs the NoFADE answer lists"
        )
    return RunNofade(answer=answer, run=entry, dataset=dataset, reason=reason)


def _entry_of(answer: NofadeOut, run_id: uuid.UUID) -> NofadeRun | None:
    return next((r for r in answer.runs if r.run_id == run_id), None)


def _gather_group(
    api: ServiceReader, provenance: Provenance, group: str, metric: str | None, curve_points: int
) -> GroupReport:
    runs: list[RunOut] = []
    while True:
        page = api.get(
            "/runs",
            {
                "group": group,
                "limit": RUNS_PAGE,
                "offset": len(runs),
                "sort": "started_at",
                "order": "asc",
            },
            Page[RunOut],
        )
        runs += page.items
        if not page.items or len(runs) >= page.total:
            break
    if not runs:
        raise ReportError(f"the group {group!r} has no runs in the key's project")
    # Started first, listed first; the id settles runs started at the same instant, so the
    # order is the same on every database.
    runs.sort(key=lambda r: (r.started_at, r.id))
    named = Counter(r.primary_metric for r in runs if r.primary_metric)
    chosen = metric or min(named, key=lambda m: (-named[m], m), default="accuracy")
    totals = api.get("/totals", {"by": "project", "group": group}, TotalsOut)
    scores = api.get(
        "/analytics/nofade",
        {"metric": chosen, "group": group, "limit": NOFADE_LIMIT},
        NofadeOut,
    )
    # The answer lists runs highest NoFADE first, so among equal scores the cheaper run wins.
    members = {r.id: r for r in runs}
    scored = [entry for entry in scores.runs if entry.run_id in members]
    best_entry = max(scored, key=lambda entry: entry.score, default=None)
    best = members[best_entry.run_id] if best_entry else None
    best_returns = best_cost = None
    if best is not None:
        best_returns = api.get(
            f"/runs/{best.id}/returns",
            {"metric": chosen, "max_points": curve_points},
            ReturnsOut,
        )
        best_cost = api.get(f"/runs/{best.id}/cost", {}, CreationCostOut)
    return GroupReport(
        provenance=provenance,
        group=group,
        metric=chosen,
        runs=runs,
        totals=totals.rows[0] if totals.rows else None,
        scores=scores,
        best=best,
        best_returns=best_returns,
        best_cost=best_cost,
    )
