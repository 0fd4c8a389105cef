"""Runs: create, update, finish, batch ingestion and reading back."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session

from greenaudit.schemas import (
    CLIENT_END_STATUSES,
    BatchResult,
    EnergyBatch,
    EnergySampleIn,
    MeasurementMethod,
    MetricBatch,
    Page,
    RunCreate,
    RunFinish,
    RunStatus,
    RunUpdate,
)
from greenaudit.units import G_PER_KG, J_PER_KWH, SECONDS_PER_HOUR

from ..auth import Principal
from ..errors import Conflict, InvalidInput, NotFound
from ..idempotent import insert_if_absent
from ..models import EnergySample, Run, utcnow
from . import repository
from .schemas import (
    Cost,
    CostOfRun,
    CreationCostOut,
    EnergySampleOut,
    MetricPointOut,
    RunFilters,
    RunOut,
    RunSort,
    RunTotals,
    SortOrder,
)

if TYPE_CHECKING:
    from ..db import AnySelect

Item = TypeVar("Item", bound=BaseModel)

LIVENESS_RESOLUTION = timedelta(seconds=5)
# Fields that say which run this is: a re-sent create must agree on them.
IDENTITY_FIELDS = ("name", "kind", "model", "dataset", "task", "parent_run_id", "group")


@dataclass(frozen=True)
class _ItemKind:
    """One kind of batch item: its unique key, how it is stored and how errors name it."""

    #: The item's name in errors, and the batch field that lists the items.
    what: str
    batch_field: str
    #: The unique key within a run, and how one key reads (``label.format(*key)``).
    key: tuple[str, str]
    label: str
    #: The stored columns a re-sent item must agree on.
    fields: Sequence[str]
    #: Inserts the rows not stored yet and answers the keys it inserted.
    insert: Callable[[Session, list[dict[str, Any]]], set[Any]]
    #: The query for a run's stored items among some keys.
    stored: Callable[[uuid.UUID, list[tuple[Any, Any]]], AnySelect]


_SAMPLES = _ItemKind(
    what="energy sample",
    batch_field="samples",
    key=repository.SAMPLE_KEY,
    label="(rank {0}, seq {1})",
    fields=tuple(f for f in EnergySampleIn.model_fields if f not in repository.SAMPLE_KEY),
    insert=repository.insert_new_samples,
    stored=repository.stored_samples,
)
_POINTS = _ItemKind(
    what="metric point",
    batch_field="points",
    key=repository.POINT_KEY,
    label="({0!r}, step {1})",
    fields=("epoch", "value", "time"),
    insert=repository.insert_new_points,
    stored=repository.stored_points,
)


def get_run(session: Session, caller: Principal, run_id: uuid.UUID) -> Run:
    """The run, if it belongs to the caller's project; otherwise 404, never 403."""
    return caller.own(session, Run, run_id, "run")


def seen(run: Run) -> None:
    """Note that the run was heard from (at most every few seconds, to spare the row)."""
    now = utcnow()
    if run.last_seen_at is None or now - run.last_seen_at > LIVENESS_RESOLUTION:
        run.last_seen_at = now


def heartbeat(session: Session, caller: Principal, run_id: uuid.UUID) -> RunOut:
    """The client is alive: a run marked crashed while it was unreachable runs again."""
    run = get_run(session, caller, run_id)
    run.last_seen_at = utcnow()
    if run.status == RunStatus.crashed.value:
        run.status = RunStatus.running.value
    return _with_totals(session, [run])[0]


def mark_crashed(session: Session, timeout_s: float) -> int:
    """Mark running runs not heard from for ``timeout_s`` as crashed; returns how many.

    CodeCarbon's protocol has no finish: its quiet runs are ``finished`` at their last report.
    """
    cutoff = utcnow() - timedelta(seconds=timeout_s)
    quiet = (Run.status == RunStatus.running.value, Run.last_seen_at < cutoff)
    from_codecarbon = Run.group_name.like("codecarbon:%")
    session.execute(
        update(Run)
        .where(*quiet, from_codecarbon)
        .values(status=RunStatus.finished.value, ended_at=Run.last_seen_at)
    )
    result = session.execute(
        update(Run)
        .where(*quiet, or_(Run.group_name.is_(None), ~from_codecarbon))  # NULL is not LIKE
        .values(status=RunStatus.crashed.value)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _with_totals(session: Session, runs: Sequence[Run]) -> list[RunOut]:
    ids = [run.id for run in runs]
    stored = {t.run_id: t for t in session.scalars(repository.energy_totals(ids))} if ids else {}
    methods = repository.methods_by_run(session, ids)
    result = []
    for run in runs:
        row = stored.get(run.id)
        cpu, gpu, ram = (row.cpu_kwh, row.gpu_kwh, row.ram_kwh) if row else (0.0, 0.0, 0.0)
        energy = cpu + gpu + ram
        totals = RunTotals(
            energy_kwh=energy,
            cpu_kwh=cpu,
            gpu_kwh=gpu,
            ram_kwh=ram,
            co2_kg=row.co2_kg if row else 0.0,
            gpu_hours=row.gpu_seconds / SECONDS_PER_HOUR if row else 0.0,
            energy_samples=row.samples if row else 0,
            methods={
                c: [MeasurementMethod(v) for v in sorted(m)] for c, m in methods[run.id].items()
            },
            j_per_sample=(
                energy * J_PER_KWH / run.samples_processed if run.samples_processed else None
            ),
        )
        result.append(RunOut.model_validate({**_run_fields(run), "totals": totals}))
    return result


def _run_fields(run: Run) -> dict[str, Any]:
    fields = {
        name: getattr(run, name) for name in RunOut.model_fields if name not in ("group", "totals")
    }
    fields["group_name"] = run.group_name
    return fields


def run_detail(session: Session, caller: Principal, run_id: uuid.UUID) -> RunOut:
    return _with_totals(session, [get_run(session, caller, run_id)])[0]


def create_run(session: Session, caller: Principal, body: RunCreate) -> tuple[RunOut, bool]:
    """Create a run, or return the one a retried request already made.

    Returns the run and whether it was created now. Every rank of a job creates the one run
    it reports into, at the same moment: the row is inserted unless present, so one request
    creates it and the others answer as retries (200), on both databases.
    """
    if body.project is not None:
        check_project_filter(session, caller, RunFilters(project=body.project))
    existing = session.get(Run, body.id)
    if existing is not None:
        return _as_retry(session, caller, existing, body), False

    if body.parent_run_id is not None:
        caller.own(session, Run, body.parent_run_id, "parent run")

    values = {
        "id": body.id,
        "project_id": caller.project_id,
        "name": body.name,
        "kind": body.kind.value,
        "status": RunStatus.running.value,
        "model": body.model,
        "model_params": body.model_params,
        "flops": body.flops,
        "dataset": body.dataset,
        "dataset_version": body.dataset_version,
        "dataset_size": body.dataset_size,
        "task": body.task,
        "primary_metric": body.primary_metric,
        "parent_run_id": body.parent_run_id,
        "group_name": body.group,
        "node": body.hardware.node,
        "world_size": body.hardware.world_size,
        "hardware": body.hardware.model_dump(mode="json"),
        "country_iso": body.country_iso,
        "carbon_intensity_g_per_kwh": body.carbon_intensity_g_per_kwh,
        "carbon_intensity_source": body.carbon_intensity_source,
        "pue": body.pue,
        "meta": body.meta,
        "started_at": body.started_at,
        "last_seen_at": utcnow(),
    }
    created = insert_if_absent(session, Run, values, ["id"])
    run = session.get(Run, body.id)
    assert run is not None  # inserted now, or by the request that won the race
    if not created:
        return _as_retry(session, caller, run, body), False
    return _with_totals(session, [run])[0], True


def _as_retry(session: Session, caller: Principal, existing: Run, body: RunCreate) -> RunOut:
    """The answer to a create of a run id that is stored: the same run, or an error."""
    if existing.project_id != caller.project_id:
        # Like every other access to another project's run: not found, not "taken", so the
        # answer says nothing about the other project.
        raise NotFound(f"run {body.id} not found; a new run needs a new UUID")
    stored = {**_run_fields(existing), "group": existing.group_name}
    differing = [f for f in IDENTITY_FIELDS if stored[f] != _identity_value(body, f)]
    if differing:
        raise Conflict(f"run {body.id} already exists with different {', '.join(differing)}")
    return _with_totals(session, [existing])[0]


def _identity_value(body: RunCreate, field: str) -> Any:
    value = getattr(body, field)
    return value.value if hasattr(value, "value") else value


def update_run(session: Session, caller: Principal, run_id: uuid.UUID, body: RunUpdate) -> RunOut:
    run = get_run(session, caller, run_id)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    meta = changes.pop("meta", None)
    for field, value in changes.items():
        setattr(run, field, value)
    if meta:
        run.meta = {**run.meta, **meta}
    return _with_totals(session, [run])[0]


def finish_run(session: Session, caller: Principal, run_id: uuid.UUID, body: RunFinish) -> RunOut:
    run = get_run(session, caller, run_id)
    terminal = {status.value for status in CLIENT_END_STATUSES}
    if run.status in terminal and (run.status, run.ended_at) != (body.status.value, body.ended_at):
        raise Conflict(f"run {run_id} has already ended as {run.status} at {run.ended_at}")
    if body.ended_at < run.started_at:
        raise InvalidInput("ended_at is before the run's started_at")
    run.status = body.status.value
    run.ended_at = body.ended_at
    run.duration_s = body.duration_s
    run.error = body.error
    run.lost_items = body.lost_items
    return _with_totals(session, [run])[0]


def _conflict_detail(kind: str, key: str, stored: Any, sent: Any, fields: Sequence[str]) -> str:
    differing = [f for f in fields if getattr(stored, f) != sent[f]]
    return (
        f"{kind} {key} was already stored with different content "
        f"({', '.join(differing)}); a re-sent item must be identical"
    )


def ingest_target(
    session: Session, caller: Principal, run_id: uuid.UUID, *, lock: bool = False
) -> repository.IngestRun:
    """The columns of a run that ingestion needs, if it is the caller's; 404 otherwise.

    Marks the run as heard from. ``lock`` holds the run's row until the transaction ends
    (PostgreSQL; a SQLite writer holds the whole database). A plain row, not an ORM object:
    loading the object cost more than storing a small batch.
    """
    query = repository.RUN_FOR_INGEST_LOCKED if lock else repository.RUN_FOR_INGEST
    run = session.execute(query, {"run_id": run_id}).one_or_none()
    if run is None or run.project_id != caller.project_id:
        raise NotFound(f"run {run_id} not found")
    now = utcnow()
    if run.last_seen_at is None or now - run.last_seen_at > LIVENESS_RESOLUTION:
        session.execute(repository.RUN_SEEN, {"run_id": run_id, "now": now})
    return run


#: How much later than a finished run's end a sample may begin and still count: the clocks of a
#: run's nodes (each rank stamps its own samples) may disagree by a little.
END_CLOCK_ALLOWANCE = timedelta(seconds=5)
_END_STATUSES = frozenset(status.value for status in CLIENT_END_STATUSES)


def check_measured_before_end(
    run: repository.IngestRun, starts: Iterable[tuple[str, datetime]]
) -> None:
    """Refuse (409 ``run_finished``) samples that began after the run's end.

    A finished run's totals are final. Anything measured before its end still counts, however
    late it arrives: a spool re-sends after a lost answer or a restart, and the last interval
    begins before ``ended_at`` and ends when the meter stops, after it. So the test is the
    sample's start, not its end nor its arrival. ``starts`` gives (what, t_start) per sample.
    """
    if run.ended_at is None or run.status not in _END_STATUSES:
        return
    cutoff = run.ended_at + END_CLOCK_ALLOWANCE
    for what, t_start in starts:
        if t_start > cutoff:
            raise Conflict(
                f"{what} began at {t_start.isoformat()}, "
                f"after run {run.id} ended as {run.status} at {run.ended_at.isoformat()}; "
                "a finished run's totals are final",
                code="run_finished",
            )


def _unique_items(
    items: list[dict[str, Any]], kind: _ItemKind
) -> dict[tuple[Any, Any], dict[str, Any]]:
    """The batch's items by their unique key; an item repeated with other content is an error."""
    by_key: dict[tuple[Any, Any], dict[str, Any]] = {}
    for index, item in enumerate(items):
        key = (item[kind.key[0]], item[kind.key[1]])
        if by_key.setdefault(key, item) is not item and by_key[key] != item:
            raise InvalidInput(
                f"{kind.batch_field}[{index}] repeats {kind.label.format(*key)} "
                "with different content"
            )
    return by_key


def _insert_new(
    session: Session,
    run_id: uuid.UUID,
    kind: _ItemKind,
    sent: dict[tuple[Any, Any], dict[str, Any]],
    rows: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Insert the rows not stored yet, and answer them.

    Items sent again must equal what is stored; anything else is a conflict, not a duplicate.
    """
    inserted = kind.insert(session, rows)
    resent = [key for key in sent if key not in inserted]
    if resent:
        for row in session.execute(kind.stored(run_id, resent)):
            key = (getattr(row, kind.key[0]), getattr(row, kind.key[1]))
            if (
                key in sent
                and key not in inserted
                and any(getattr(row, f) != sent[key][f] for f in kind.fields)
            ):
                label = kind.label.format(*key)
                raise Conflict(_conflict_detail(kind.what, label, row, sent[key], kind.fields))
    return [row for row in rows if (row[kind.key[0]], row[kind.key[1]]) in inserted]


def ingest_energy(
    session: Session, caller: Principal, run_id: uuid.UUID, batch: EnergyBatch
) -> BatchResult:
    """Store a batch of energy samples in one transaction; re-sent samples change nothing.

    The new samples and the run's running totals are written in the same transaction, so a
    batch is stored whole or not at all. A sample whose (rank, seq) is stored with different
    content rejects the whole batch.
    """
    run = ingest_target(session, caller, run_id)
    samples = batch.model_dump()["samples"]
    for values in samples:
        for component in ("cpu", "gpu", "ram"):
            method = values[f"{component}_method"]
            if method is not None:
                values[f"{component}_method"] = method.value
    sent = _unique_items(samples, _SAMPLES)
    check_measured_before_end(
        run,
        (
            (f"{_SAMPLES.what} {_SAMPLES.label.format(*key)}", v["t_start"])
            for key, v in sent.items()
        ),
    )
    kg_per_kwh = run.carbon_intensity_g_per_kwh / G_PER_KG * run.pue
    rows = []
    # One order for every batch, so concurrent batches on the same keys cannot deadlock.
    for key in sorted(sent):
        values = sent[key]
        energy = (
            (values["cpu_kwh"] or 0.0) + (values["gpu_kwh"] or 0.0) + (values["ram_kwh"] or 0.0)
        )
        rows.append(
            {
                **values,
                "run_id": run.id,
                "duration_s": (values["t_end"] - values["t_start"]).total_seconds(),
                "co2_kg": energy * kg_per_kwh,
            }
        )
    new_rows = _insert_new(session, run.id, _SAMPLES, sent, rows)
    if new_rows:
        repository.add_energy_totals(session, run.id, new_rows)
        repository.add_methods(session, run.id, new_rows)
    return BatchResult(inserted=len(new_rows), duplicates=len(batch.samples) - len(new_rows))


def ingest_metrics(
    session: Session, caller: Principal, run_id: uuid.UUID, batch: MetricBatch
) -> BatchResult:
    """Store a batch of metric points in one transaction; re-sent points change nothing."""
    run = ingest_target(session, caller, run_id)
    points = batch.model_dump()["points"]
    sent = _unique_items(points, _POINTS)
    rows = [{**sent[key], "run_id": run.id} for key in sorted(sent)]
    new_rows = _insert_new(session, run.id, _POINTS, sent, rows)
    if new_rows:
        repository.add_metric_stats(session, run.id, new_rows)
    return BatchResult(inserted=len(new_rows), duplicates=len(batch.points) - len(new_rows))


def list_runs(
    session: Session,
    caller: Principal,
    filters: RunFilters,
    limit: int,
    offset: int,
    sort: RunSort = RunSort.started_at,
    order: SortOrder = SortOrder.desc,
) -> Page[RunOut]:
    check_project_filter(session, caller, filters)
    query = repository.runs_matching(caller.project_id, filters)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    runs = session.scalars(
        repository.sorted_runs(query, sort, order).limit(limit).offset(offset)
    ).all()
    return Page[RunOut](items=_with_totals(session, runs), total=total, limit=limit, offset=offset)


def check_project_filter(session: Session, caller: Principal, filters: RunFilters) -> None:
    if (
        filters.project is not None
        and session.scalar(repository.project_matching(caller.project_id, filters.project)) is None
    ):
        raise NotFound(f"project {filters.project!r} not found")


def energy_of_run(
    session: Session, caller: Principal, run_id: uuid.UUID, limit: int, offset: int
) -> Page[EnergySampleOut]:
    run = get_run(session, caller, run_id)
    query = repository.energy_series(run.id)
    total = (
        session.scalar(
            select(func.count()).select_from(EnergySample).where(EnergySample.run_id == run.id)
        )
        or 0
    )
    return _page_of(EnergySampleOut, session, query, total, limit, offset)


def metrics_of_run(
    session: Session,
    caller: Principal,
    run_id: uuid.UUID,
    name: str | None,
    limit: int,
    offset: int,
) -> Page[MetricPointOut]:
    run = get_run(session, caller, run_id)
    query = repository.metric_series(run.id, name)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    return _page_of(MetricPointOut, session, query, total, limit, offset)


def _page_of(
    out: type[Item], session: Session, query: Select[Any], total: int, limit: int, offset: int
) -> Page[Item]:
    """One page of ``query``'s rows (of ``total``), each read as ``out``."""
    rows = session.scalars(query.limit(limit).offset(offset)).all()
    return Page[out](  # type: ignore[valid-type]
        items=[out.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


MAX_LINEAGE_DEPTH = 100


def creation_cost(session: Session, caller: Principal, run_id: uuid.UUID) -> CreationCostOut:
    """What creating ``run_id``'s model cost, next to the run itself.

    Creation is the run, its ancestors through ``parent_run_id`` and the other runs of their
    groups (the search trials), each counted once, in the caller's project only.
    """
    final = get_run(session, caller, run_id)
    chain = [final]
    seen = {final.id}
    # Parents are created before children and never change, so the chain ends; the depth cap
    # and the seen set only guard against data written around the API.
    while chain[-1].parent_run_id is not None and len(chain) < MAX_LINEAGE_DEPTH:
        parent = session.get(Run, chain[-1].parent_run_id)
        if parent is None or parent.project_id != caller.project_id or parent.id in seen:
            break
        chain.append(parent)
        seen.add(parent.id)
    groups = {run.group_name for run in chain if run.group_name is not None}
    trials = (
        session.scalars(
            select(Run)
            .where(
                Run.project_id == caller.project_id,
                Run.group_name.in_(groups),
                Run.id.not_in(seen),
            )
            .order_by(Run.started_at, Run.id)
        ).all()
        if groups
        else []
    )
    related = [(final, "final")] + [(run, "ancestor") for run in chain[1:]]
    related += [(run, "trial") for run in trials]
    stored = {
        t.run_id: t
        for t in session.scalars(repository.energy_totals([run.id for run, _ in related]))
    }
    costs = []
    for run, relation in related:
        row = stored.get(run.id)
        costs.append(
            CostOfRun(
                id=run.id,
                name=run.name,
                group=run.group_name,
                relation=relation,
                energy_kwh=(row.cpu_kwh + row.gpu_kwh + row.ram_kwh) if row else 0.0,
                co2_kg=row.co2_kg if row else 0.0,
                gpu_hours=row.gpu_seconds / SECONDS_PER_HOUR if row else 0.0,
            )
        )

    def total(items: Sequence[CostOfRun]) -> Cost:
        return Cost(
            energy_kwh=sum(c.energy_kwh for c in items),
            co2_kg=sum(c.co2_kg for c in items),
            gpu_hours=sum(c.gpu_hours for c in items),
            runs=len(items),
        )

    final_cost, creation = total(costs[:1]), total(costs)
    return CreationCostOut(
        run_id=final.id,
        final=final_cost,
        creation=creation,
        energy_ratio=(
            creation.energy_kwh / final_cost.energy_kwh if final_cost.energy_kwh > 0 else None
        ),
        co2_ratio=creation.co2_kg / final_cost.co2_kg if final_cost.co2_kg > 0 else None,
        runs=costs,
    )
