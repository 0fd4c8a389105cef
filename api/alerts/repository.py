from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, Update, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ..models import Alert, Budget, Run

if TYPE_CHECKING:
    from ..db import AnySelect


def alerts_of_project(
    project_id: uuid.UUID, kind: str | None, run_id: uuid.UUID | None
) -> Select[Alert]:
    query = select(Alert).where(Alert.project_id == project_id)
    if kind is not None:
        query = query.where(Alert.kind == kind)
    if run_id is not None:
        query = query.where(Alert.run_id == run_id)
    return query


def count_of(query: AnySelect) -> Select[int]:
    return select(func.count()).select_from(query.subquery())


def stored_keys(dedupe_keys: list[str]) -> Select[uuid.UUID, str]:
    """(project id, dedupe key) of the alerts already stored under any of ``dedupe_keys``."""
    return select(Alert.project_id, Alert.dedupe_key).where(Alert.dedupe_key.in_(dedupe_keys))


def insert_alert(dialect: str, row: dict[str, Any]) -> Any:
    """Insert unless the same crossing was stored already; returns the id when inserted."""
    insert = postgresql.insert(Alert) if dialect == "postgresql" else sqlite.insert(Alert)
    return (
        insert.values(**row)
        .on_conflict_do_nothing(index_elements=["project_id", "dedupe_key"])
        .returning(Alert.id)
    )


def all_budgets() -> Select[Budget]:
    return select(Budget).order_by(Budget.project_id)


def runs_to_watch(since: datetime) -> Select[Run]:
    """Running runs with a planned total that were heard from since ``since``."""
    return select(Run).where(
        Run.status == "running", Run.total_steps.is_not(None), Run.last_seen_at >= since
    )


def due_alerts(now: datetime, limit: int) -> Select[uuid.UUID]:
    return (
        select(Alert.id)
        .where(
            Alert.delivery == "pending",
            or_(Alert.next_attempt_at.is_(None), Alert.next_attempt_at <= now),
        )
        .order_by(Alert.created_at)
        .limit(limit)
    )


def claim(alert_id: uuid.UUID, now: datetime, until: datetime) -> Update:
    """Take an alert for one delivery attempt; another worker's claim makes this match none."""
    return (
        update(Alert)
        .where(
            Alert.id == alert_id,
            Alert.delivery == "pending",
            or_(Alert.next_attempt_at.is_(None), Alert.next_attempt_at <= now),
        )
        .values(next_attempt_at=until)
    )
