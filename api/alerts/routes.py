from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from greenaudit.schemas import Page

from ..deps import ReaderDep, SessionDep, SettingsDep, WriterDep
from ..errors import ERROR_RESPONSES
from . import service
from .schemas import AlertKind, AlertOut, WebhookIn, WebhookOut

router = APIRouter(tags=["alerts"], responses=ERROR_RESPONSES)

MAX_PAGE = 500


@router.get("/api/v1/alerts", response_model=Page[AlertOut])
def list_alerts(
    session: SessionDep,
    caller: ReaderDep,
    kind: AlertKind | None = None,
    run_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**12)] = 0,
) -> Page[AlertOut]:
    """The project's alerts, newest first, with where their webhook delivery stands."""
    items, total = service.list_alerts(session, caller, kind, run_id, limit, offset)
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.put("/api/v1/webhook", response_model=WebhookOut)
def set_webhook(
    body: WebhookIn, session: SessionDep, caller: WriterDep, settings: SettingsDep
) -> WebhookOut:
    """Post the project's alerts to this URL, signed with this secret (HMAC-SHA256).

    Hosts on private or local networks are refused unless the service runs with
    ``GREENAUDIT_WEBHOOK_ALLOW_PRIVATE=true``.
    """
    return service.set_webhook(session, caller, body, settings.webhook_allow_private)


@router.get("/api/v1/webhook", response_model=WebhookOut)
def get_webhook(session: SessionDep, caller: ReaderDep) -> WebhookOut:
    """The project's webhook URL (the secret is never shown)."""
    return service.get_webhook(session, caller)


@router.delete("/api/v1/webhook", status_code=204)
def delete_webhook(session: SessionDep, caller: WriterDep) -> Response:
    """Stop posting alerts; they are still stored and listed."""
    service.delete_webhook(session, caller)
    return Response(status_code=204)
