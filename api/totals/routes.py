from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ..deps import ReaderDep, SessionDep
from ..errors import ERROR_RESPONSES
from ..params import Filters
from . import service
from .schemas import TotalsBy, TotalsOut

router = APIRouter(prefix="/api/v1/totals", tags=["totals"], responses=ERROR_RESPONSES)


@router.get("", response_model=TotalsOut)
def totals(
    session: SessionDep,
    caller: ReaderDep,
    filters: Filters,
    by: Annotated[TotalsBy, Query(description="what to total by")] = TotalsBy.project,
) -> TotalsOut:
    """KWh by component, kg CO2e, GPU-hours, duration, run count and J per sample.

    Totalled per project, model or dataset over the runs that match the filters.
    """
    return service.totals(session, caller, by, filters)
