"""Alerts and the webhook over the wire."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from greenaudit.schemas import NO_NUL, WireModel


class AlertKind(str, Enum):
    budget_exceeded = "budget_exceeded"
    budget_forecast_exceeded = "budget_forecast_exceeded"
    plateau_passed = "plateau_passed"


class Delivery(str, Enum):
    """Where an alert's webhook delivery stands; ``none``: the project had no webhook."""

    pending = "pending"
    delivered = "delivered"
    failed = "failed"
    none = "none"


class AlertOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: AlertKind
    message: str
    details: dict[str, Any] = Field(description="the numbers behind the alert, with units")
    budget_id: uuid.UUID | None
    run_id: uuid.UUID | None
    created_at: datetime
    delivery: Delivery
    attempts: int
    delivered_at: datetime | None
    last_error: str | None


class WebhookIn(WireModel):
    """Where to post the project's alerts, and the secret they are signed with."""

    url: str = Field(min_length=8, max_length=2000, pattern=NO_NUL, description="http(s) URL")
    secret: str = Field(
        min_length=16,
        max_length=200,
        pattern=NO_NUL,
        description="shared with the receiver, which checks X-Greenaudit-Signature with it",
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"url": "https://hooks.example.org/greenaudit", "secret": "a long random secret"}
            ]
        },
    )


class WebhookOut(BaseModel):
    """The project's webhook; its secret is never shown again."""

    model_config = ConfigDict(from_attributes=True)

    url: str
    created_at: datetime
