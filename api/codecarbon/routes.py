"""CodeCarbon-compatible endpoints: CodeCarbon's own client reports into greenaudit unchanged.

Point ``EmissionsTracker(save_to_api=True, api_endpoint="<greenaudit>/codecarbon",
experiment_id=..., api_key=<write key>)`` here. Its client creates a run (``POST /runs``,
answered 201 with ``{"id": ...}``), then posts each interval's emissions (``POST /emissions``,
answered 201), with the key in the ``x-api-token`` header. The schemas are CodeCarbon's
(``codecarbon/core/schemas.py``).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from greenaudit.schemas import MAX_NAME_LENGTH, NO_NUL, UtcDatetime

from ..auth import Principal
from ..deps import SessionDep, authenticate
from ..errors import ERROR_RESPONSES, Unauthorized
from ..observability import count_ingested
from . import service

router = APIRouter(prefix="/codecarbon", tags=["codecarbon"], responses=ERROR_RESPONSES)

Float = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]
# CodeCarbon sends empty strings for what it does not know.
Text = Annotated[str, Field(max_length=MAX_NAME_LENGTH, pattern=NO_NUL)]


class CodeCarbonRun(BaseModel):
    """CodeCarbon's ``RunCreate``: a run of an experiment, with the machine it runs on."""

    model_config = ConfigDict(extra="ignore")

    timestamp: UtcDatetime
    experiment_id: uuid.UUID
    os: Text | None = None
    python_version: Text | None = None
    codecarbon_version: Text | None = None
    cpu_count: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    cpu_model: Text | None = None
    gpu_count: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    gpu_model: Text | None = None
    longitude: Annotated[float, Field(ge=-180, le=180)] | None = None
    latitude: Annotated[float, Field(ge=-90, le=90)] | None = None
    region: Text | None = None
    provider: Text | None = None
    ram_total_size: Float | None = None
    tracking_mode: Text | None = None


class CodeCarbonEmission(BaseModel):
    """CodeCarbon's ``EmissionCreate``: what one interval used (kWh) and emitted (kg CO2e)."""

    model_config = ConfigDict(extra="ignore")

    timestamp: UtcDatetime
    run_id: uuid.UUID
    duration: Annotated[int, Field(ge=0, le=10**9)]
    emissions_sum: Float
    emissions_rate: Float
    cpu_power: Float
    gpu_power: Float
    ram_power: Float
    cpu_energy: Float
    gpu_energy: Float
    ram_energy: Float
    energy_consumed: Float

    @model_validator(mode="after")
    def _starts_in_a_year(self) -> CodeCarbonEmission:
        # The interval's start is its timestamp less its duration: it must be a date as well.
        try:
            self.timestamp - timedelta(seconds=self.duration)
        except OverflowError:
            raise ValueError(
                f"an interval of {self.duration} s ending at {self.timestamp.isoformat()} "
                "would begin before year 1"
            ) from None
        return self


class Created(BaseModel):
    id: uuid.UUID
    timestamp: datetime | None = None


def _caller(request: Request, session: SessionDep, x_api_token: str | None) -> Principal:
    if not x_api_token:
        raise Unauthorized("missing x-api-token header: send a greenaudit write key")
    principal = authenticate(request, session, x_api_token)
    principal.require_write()
    return principal


@router.post("/runs", status_code=201, response_model=Created)
def create_run(
    body: CodeCarbonRun,
    request: Request,
    session: SessionDep,
    x_api_token: Annotated[str | None, Header()] = None,
) -> Created:
    """Create a greenaudit run for a CodeCarbon run; its experiment becomes the run's group."""
    caller = _caller(request, session, x_api_token)
    run = service.create_run(session, caller, body.model_dump())
    return Created(id=run.id, timestamp=run.started_at)


@router.post("/emissions", status_code=201, response_model=dict[str, Any])
def add_emission(
    body: CodeCarbonEmission,
    request: Request,
    session: SessionDep,
    x_api_token: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Store one CodeCarbon interval as an energy sample (method ``codecarbon``)."""
    caller = _caller(request, session, x_api_token)
    stored = service.add_emission(session, caller, body.model_dump())
    count_ingested("energy_sample", 1, 0)
    return stored
