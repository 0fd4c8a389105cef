from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from ..analytics.schemas import DEFAULT_DIRECTION, Direction
from ..deps import ReaderDep, SessionDep, WriterDep
from ..errors import ERROR_RESPONSES
from ..params import EpsilonFraction, created_or_stored, run_metric
from . import service
from .schemas import BudgetIn, BudgetOut, RunForecastOut

router = APIRouter(tags=["budgets"], responses=ERROR_RESPONSES)


@router.post("/api/v1/budgets", status_code=201, response_model=BudgetOut)
def set_budget(
    body: BudgetIn, response: Response, session: SessionDep, caller: WriterDep
) -> BudgetOut:
    """Set the carbon budget of the project, or of one group, for a period or for good.

    One budget per scope and period: posting again replaces its limits (200); a new one is
    201, and 409 ``too_many_budgets`` once the project has 100. The answer shows what is
    spent, forecast and remaining.
    """
    return created_or_stored(response, service.set_budget(session, caller, body))


@router.get("/api/v1/budgets", response_model=list[BudgetOut])
def list_budgets(
    session: SessionDep,
    caller: ReaderDep,
    response: Response,
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=service.MAX_BUDGETS_PER_PROJECT,
            description=f"page size, at most {service.MAX_BUDGETS_PER_PROJECT} (the cap on a "
            "project's budgets, so the default page holds them all)",
        ),
    ] = service.MAX_BUDGETS_PER_PROJECT,
    offset: Annotated[int, Query(ge=0, le=10**12)] = 0,
) -> list[BudgetOut]:
    """The project's budgets, each with spent, forecast and remaining (kWh and kg CO2e).

    A page of ``limit`` from ``offset``, in a stable order; the ``X-Total-Count`` header says
    how many the project has. A project holds at most 100 budgets.
    """
    budgets, total = service.list_budgets(session, caller, limit, offset)
    response.headers["X-Total-Count"] = str(total)
    return budgets


@router.get("/api/v1/budgets/{budget_id}", response_model=BudgetOut)
def get_budget(budget_id: uuid.UUID, session: SessionDep, caller: ReaderDep) -> BudgetOut:
    """One budget with spent, forecast and remaining."""
    return service.get_budget(session, caller, budget_id)


@router.delete("/api/v1/budgets/{budget_id}", status_code=204)
def delete_budget(budget_id: uuid.UUID, session: SessionDep, caller: WriterDep) -> Response:
    """Remove a budget. Its alerts stay listed."""
    service.delete_budget(session, caller, budget_id)
    return Response(status_code=204)


@router.get("/api/v1/runs/{run_id}/forecast", response_model=RunForecastOut, tags=["runs"])
def run_forecast(
    run_id: uuid.UUID,
    session: SessionDep,
    caller: ReaderDep,
    metric: Annotated[
        str | None, run_metric("for the plateau; default: the run's primary metric")
    ] = None,
    direction: Direction = DEFAULT_DIRECTION,
    epsilon_fraction: EpsilonFraction = 0.005,
) -> RunForecastOut:
    """A running run's forecast total energy and CO2 with an interval, from its progress.

    Also where its metric is forecast to plateau and what the steps after that will cost, and
    the budgets the run counts against. The forecast is worked out afresh on every call, from
    everything received so far.
    """
    return service.run_forecast(
        session,
        caller,
        run_id,
        metric=metric,
        direction=direction,
        epsilon_fraction=epsilon_fraction,
    )
