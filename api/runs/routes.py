from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from greenaudit.schemas import (
    BatchResult,
    EnergyBatch,
    MetricBatch,
    Page,
    RunCreate,
    RunFinish,
    RunUpdate,
)

from ..body import body_schema, json_body
from ..deps import ReaderDep, SessionDep, WriterDep
from ..errors import ERROR_RESPONSES
from ..observability import count_ingested
from ..params import Filters, OptionalName, created_or_stored
from . import service
from .schemas import (
    CreationCostOut,
    EnergySampleOut,
    MetricPointOut,
    RunOut,
    RunSort,
    SortOrder,
)

router = APIRouter(prefix="/api/v1/runs", tags=["runs"], responses=ERROR_RESPONSES)

MAX_PAGE = 500
MAX_SERIES_PAGE = 10_000
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"page size, at most {MAX_PAGE}")]
SeriesLimit = Annotated[
    int, Query(ge=1, le=MAX_SERIES_PAGE, description=f"page size, at most {MAX_SERIES_PAGE}")
]
Offset = Annotated[int, Query(ge=0, le=10**12)]


def _counted(kind: str, result: BatchResult) -> BatchResult:
    """A batch's result, once what it stored and what it re-sent are counted."""
    count_ingested(kind, result.inserted, result.duplicates)
    return result


@router.post("", status_code=201, response_model=RunOut)
def create_run(
    body: RunCreate, response: Response, session: SessionDep, caller: WriterDep
) -> RunOut:
    """Create a run with the client's UUID.

    Answers 201 when the run is new, and 200 with the stored run when the same create is
    re-sent (a retry, or another rank of a distributed run).
    """
    return created_or_stored(response, service.create_run(session, caller, body))


@router.get("", response_model=Page[RunOut])
def list_runs(
    session: SessionDep,
    caller: ReaderDep,
    filters: Filters,
    limit: Limit = 50,
    offset: Offset = 0,
    sort: RunSort = RunSort.started_at,
    order: SortOrder = SortOrder.desc,
) -> Page[RunOut]:
    """The key's runs with their totals, newest first unless ``sort`` says otherwise."""
    return service.list_runs(session, caller, filters, limit, offset, sort, order)


@router.get("/{run_id}", response_model=RunOut)
def get_run(run_id: uuid.UUID, session: SessionDep, caller: ReaderDep) -> RunOut:
    """One run with its totals and the measurement methods behind them."""
    return service.run_detail(session, caller, run_id)


@router.patch("/{run_id}", response_model=RunOut)
def update_run(
    run_id: uuid.UUID, body: RunUpdate, session: SessionDep, caller: WriterDep
) -> RunOut:
    """Record facts learned while the run goes (``run.set``)."""
    return service.update_run(session, caller, run_id, body)


@router.post("/{run_id}/finish", response_model=RunOut)
def finish_run(
    run_id: uuid.UUID, body: RunFinish, session: SessionDep, caller: WriterDep
) -> RunOut:
    """End a run as finished or failed. Re-sending the same finish is harmless."""
    return service.finish_run(session, caller, run_id, body)


@router.get("/{run_id}/cost", response_model=CreationCostOut)
def creation_cost(run_id: uuid.UUID, session: SessionDep, caller: ReaderDep) -> CreationCostOut:
    """What creating this run's model cost, next to the run itself.

    Creation counts the run, its ancestors through ``parent_run_id`` (pre-training) and every
    other run of the groups they belong to (a sweep's or an architecture search's trials), each
    once; kWh, kg CO2e and GPU-hours, with the ratio of creation to final.
    """
    return service.creation_cost(session, caller, run_id)


@router.post("/{run_id}/heartbeat", response_model=RunOut)
def heartbeat(run_id: uuid.UUID, session: SessionDep, caller: WriterDep) -> RunOut:
    """Say the training process is alive.

    Runs not heard from for ``GREENAUDIT_HEARTBEAT_TIMEOUT_S`` are marked ``crashed``; a
    heartbeat brings such a run back to ``running``.
    """
    return service.heartbeat(session, caller, run_id)


@router.post("/{run_id}/energy", response_model=BatchResult, openapi_extra=body_schema(EnergyBatch))
def ingest_energy(
    run_id: uuid.UUID,
    body: Annotated[EnergyBatch, json_body(EnergyBatch)],
    session: SessionDep,
    caller: WriterDep,
) -> BatchResult:
    """Store a batch of energy samples, idempotently on (rank, seq).

    The service computes each sample's co2_kg from the run's carbon intensity and PUE.
    """
    return _counted("energy_sample", service.ingest_energy(session, caller, run_id, body))


@router.get("/{run_id}/energy", response_model=Page[EnergySampleOut])
def energy_series(
    run_id: uuid.UUID,
    session: SessionDep,
    caller: ReaderDep,
    limit: SeriesLimit = 1000,
    offset: Offset = 0,
) -> Page[EnergySampleOut]:
    """The run's energy samples in time order."""
    return service.energy_of_run(session, caller, run_id, limit, offset)


@router.post(
    "/{run_id}/metrics", response_model=BatchResult, openapi_extra=body_schema(MetricBatch)
)
def ingest_metrics(
    run_id: uuid.UUID,
    body: Annotated[MetricBatch, json_body(MetricBatch)],
    session: SessionDep,
    caller: WriterDep,
) -> BatchResult:
    """Store a batch of metric points, idempotently on (name, step)."""
    return _counted("metric_point", service.ingest_metrics(session, caller, run_id, body))


@router.get("/{run_id}/metrics", response_model=Page[MetricPointOut])
def metric_series(
    run_id: uuid.UUID,
    session: SessionDep,
    caller: ReaderDep,
    name: OptionalName = None,
    limit: SeriesLimit = 1000,
    offset: Offset = 0,
) -> Page[MetricPointOut]:
    """The run's metric points, by name and step."""
    return service.metrics_of_run(session, caller, run_id, name, limit, offset)
