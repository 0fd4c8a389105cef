from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from greenaudit.schemas import Name, WireModel

from ..auth import Scope


class ProjectCreate(WireModel):
    name: Name
    budget_kg_co2: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="A carbon budget for the project's whole life, kg CO2e; the same as "
        "POST /api/v1/budgets with period 'all'.",
    )

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "vision", "budget_kg_co2": 50}]}
    )


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    created_at: datetime


class KeyCreate(WireModel):
    scope: Scope
    name: Name | None = None


class KeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str | None
    prefix: str
    scope: Scope
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class KeyIssued(KeyOut):
    key: str = Field(description="The key itself. It is shown only this once.")


class ProjectCreated(BaseModel):
    project: ProjectOut
    write_key: KeyIssued
    read_key: KeyIssued
