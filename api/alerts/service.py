"""Deciding alerts (budgets crossed, plateaus passed) and delivering them by webhook.

A pass (:func:`evaluate` then :func:`deliver_due`) runs every ``GREENAUDIT_ALERT_INTERVAL_S``
in each service process. Several processes may find the same crossing; the alert's dedupe key
lets one insert win. Delivery claims each alert with a conditional update, so one process posts
it, and retries with backoff until the receiver answers 2xx or the attempts run out.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

import httpx
from sqlalchemy import CursorResult, select
from sqlalchemy.orm import Session

from ..auth import Principal
from ..budgets import service as budgets
from ..budgets.schemas import BudgetOut
from ..errors import InvalidInput, NotFound
from ..idempotent import insert_if_absent
from ..models import Alert, Budget, Run, Webhook, utcnow
from . import repository
from .schemas import AlertKind, AlertOut, Delivery, WebhookIn, WebhookOut
from .webhook import DEADLINE_S, UnsafeWebhook, check_url, post_alert

logger = logging.getLogger("greenaudit.alerts")

MAX_ATTEMPTS = 10
MAX_BACKOFF_S = 600.0
CLAIM_S = 60.0
DELIVERIES_PER_PASS = 100
# Dedupe keys looked up in one query: well under SQLite's 32,766 bound parameters.
KEYS_PER_QUERY = 500
T = TypeVar("T")
UNITS = (("limit_kg_co2", "kg_co2", "kg CO2e"), ("limit_kwh", "kwh", "kWh"))


def backoff_s(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: 1, 2, 4 ... 600."""
    return float(min(2 ** max(attempts - 1, 0), MAX_BACKOFF_S))


@dataclass(frozen=True)
class Crossing:
    """An alert the compute phase decided on, to be stored unless its dedupe key is taken."""

    what: str
    project_id: uuid.UUID
    fields: dict[str, Any]


def _store(session: Session, crossing: Crossing, has_webhook: bool) -> bool:
    row = {
        "id": uuid.uuid4(),
        "project_id": crossing.project_id,
        "created_at": utcnow(),
        "delivery": Delivery.pending.value if has_webhook else Delivery.none.value,
        "attempts": 0,
        **crossing.fields,
    }
    dialect = session.get_bind().dialect.name
    return session.execute(repository.insert_alert(dialect, row)).first() is not None


def _scope(state: BudgetOut) -> str:
    scope = f"group {state.group!r}" if state.group else "the project"
    return scope if state.period_start is None else f"{scope} this {state.period.value}"


def _budget_crossings(budget: Budget, state: BudgetOut) -> list[Crossing]:
    crossings = []
    window = state.period_start.isoformat() if state.period_start else "all"
    for field, unit, label in UNITS:
        limit = getattr(budget, field)
        if limit is None:
            continue
        spent, forecast = getattr(state.spent, unit), getattr(state.forecast, unit)
        if spent > limit:
            kind, amount = AlertKind.budget_exceeded, spent
            message = f"{_scope(state)} has spent {spent:.4g} {label}"
        elif forecast > limit:
            kind, amount = AlertKind.budget_forecast_exceeded, forecast
            message = f"{_scope(state)} is forecast to spend {forecast:.4g} {label}"
        else:
            continue
        message += f", over its budget of {limit:.4g} {label}"
        fields = {
            "budget_id": budget.id,
            "run_id": None,
            "kind": kind.value,
            "dedupe_key": f"budget:{budget.id}:{window}:{kind.value}:{unit}:{limit!r}",
            "message": message,
            "details": {
                "unit": unit,
                "limit": limit,
                "spent": spent,
                "forecast": forecast,
                "amount": amount,
                "group": state.group,
                "period": state.period.value,
                "period_start": state.period_start.isoformat() if state.period_start else None,
            },
        }
        crossings.append(Crossing(f"budget {budget.id}", budget.project_id, fields))
    return crossings


def _plateau_crossings(session: Session, run: Run, cache: budgets.ForecastCache) -> list[Crossing]:
    if run.id not in cache:
        cache[run.id] = budgets.forecast_of_run(session, run)
    energy = cache[run.id][0]
    plateau, _ = budgets.plateau_of_run(session, run, energy)
    if plateau is None or not plateau.passed or plateau.steps_after == 0:
        return []
    label = run.name or str(run.id)
    fields = {
        "budget_id": None,
        "run_id": run.id,
        "kind": AlertKind.plateau_passed.value,
        "dedupe_key": f"run:{run.id}:plateau_passed",
        "message": (
            f"run {label} passed its forecast plateau at step {plateau.step} "
            f"({plateau.metric} {plateau.value:.4g}); the {plateau.steps_after} steps after "
            f"it will cost {plateau.energy_after_kwh:.4g} kWh, "
            f"{plateau.co2_after_kg:.4g} kg CO2e"
        ),
        "details": plateau.model_dump(),
    }
    return [Crossing(f"run {run.id}", run.project_id, fields)]


def decide(session: Session, now: datetime, since: datetime) -> list[Crossing]:
    """The compute phase: every crossing as of ``now``, found by reading only.

    Every budget is checked on every pass (a budget set over spending already done must fire
    too); plateaus are checked for running runs heard from since ``since``.
    """
    cache: budgets.ForecastCache = {}
    crossings: list[Crossing] = []
    every = session.scalars(repository.all_budgets()).all()

    def spending() -> dict[uuid.UUID, budgets.Scope]:
        return budgets.scopes_of(session, every, now, every=True)

    # Each budget's scope in a few grouped queries; should they fail, each budget asks its own.
    nothing: dict[uuid.UUID, budgets.Scope] = {}
    scopes = _isolated(session, "the spending of every budget", spending, nothing)
    for budget in every:

        def check_budget(budget: Budget = budget) -> list[Crossing]:
            state = budgets.budget_state(session, budget, now, cache, scopes.get(budget.id))
            return _budget_crossings(budget, state)

        crossings += _isolated(session, f"budget {budget.id}", check_budget, [])
        _let_requests_run()
    for run in session.scalars(repository.runs_to_watch(since)).all():

        def check_run(run: Run = run) -> list[Crossing]:
            return _plateau_crossings(session, run, cache)

        crossings += _isolated(session, f"run {run.id}", check_run, [])
        _let_requests_run()
    return crossings


def _let_requests_run() -> None:
    """Hand the GIL to a waiting request thread between two items of the pass.

    The pass shares its process with the worker's requests; without a blocking call it keeps
    the GIL for whole switch intervals, which a 1-sample write then waits out at each step.
    """
    time.sleep(0)


def store(session: Session, crossings: list[Crossing]) -> int:
    """The write phase: store each crossing not stored yet; returns how many were stored.

    The dedupe key decides between processes that found the same crossing: one insert wins.
    """
    if not crossings:
        return 0
    hooked = set(session.scalars(select(Webhook.project_id)))
    stored = 0
    for crossing in crossings:

        def insert(crossing: Crossing = crossing) -> bool:
            return _store(session, crossing, crossing.project_id in hooked)

        stored += _isolated(session, crossing.what, insert, False)
    return stored


def evaluate(session: Session, now: datetime, since: datetime) -> int:
    """Decide and store in one session's transaction; returns how many alerts were stored.

    The service uses :func:`alert_pass`, which does not hold the write lock while deciding.
    """
    return store(session, decide(session, now, since))


def alert_pass(
    read_sessions: Callable[[], AbstractContextManager[Session]],
    write_sessions: Callable[[], AbstractContextManager[Session]],
    now: datetime,
    since: datetime,
) -> int:
    """One pass: decide in a read transaction, then store in a short write transaction.

    Deciding reads every budget's scope and forecasts running runs, which can take a while;
    on SQLite a writer's transaction holds the one write lock, so deciding inside it stalled
    every writer of every project for that long (issue 16, finding 9). Only the inserts of
    the new alerts take the lock now. Returns how many alerts were stored.
    """
    with read_sessions() as session, session.begin():
        crossings = unstored(session, decide(session, now, since))
    if not crossings:
        return 0
    with write_sessions() as session, session.begin():
        return store(session, crossings)


def unstored(session: Session, crossings: list[Crossing]) -> list[Crossing]:
    """The crossings whose alert is not stored yet, found by reading.

    A crossing stays crossed pass after pass; inserting it again only to hit its dedupe key
    took SQLite's write lock on every pass, and a writer arriving then waited in SQLite's busy
    handler. A crossing stored by another worker after this read still meets the dedupe key.
    """
    taken: set[tuple[uuid.UUID, str]] = set()
    keys = sorted({crossing.fields["dedupe_key"] for crossing in crossings})
    for first in range(0, len(keys), KEYS_PER_QUERY):
        rows = session.execute(repository.stored_keys(keys[first : first + KEYS_PER_QUERY]))
        taken.update((project_id, key) for project_id, key in rows)
    return [c for c in crossings if (c.project_id, c.fields["dedupe_key"]) not in taken]


def _isolated(session: Session, what: str, check: Callable[[], T], failed: T) -> T:
    """One item's check or insert in a savepoint: what fails there is logged and skipped.

    The pass covers every project; one item that cannot be checked must not silence the rest.
    """
    try:
        with session.begin_nested():
            return check()
    except Exception:
        logger.exception("alert check of %s failed; the other checks go on", what)
        return failed


def _payload(alert: Alert) -> dict[str, Any]:
    return {
        "id": str(alert.id),
        "kind": alert.kind,
        "project_id": str(alert.project_id),
        "budget_id": str(alert.budget_id) if alert.budget_id else None,
        "run_id": str(alert.run_id) if alert.run_id else None,
        "message": alert.message,
        "details": alert.details,
        "created_at": alert.created_at.isoformat(),
    }


def deliver_due(
    sessions: Callable[[], AbstractContextManager[Session]],
    now: datetime,
    *,
    allow_private: bool,
    read_sessions: Callable[[], AbstractContextManager[Session]] | None = None,
) -> int:
    """Post the alerts that are due, each claimed first; returns how many were delivered.

    The request is made outside any transaction, so a slow receiver holds no database lock.
    The due alerts are listed from ``read_sessions`` when given: each is claimed before it is
    posted anyway, and a ``sessions`` writer takes SQLite's write lock on every pass.
    """
    delivered = 0
    with (read_sessions or sessions)() as session:
        due = list(session.scalars(repository.due_alerts(now, DELIVERIES_PER_PASS)))
    for alert_id in due:
        # The claim runs from now, not from the start of the pass: posts before this one may
        # have taken minutes, and a claim that has already run out is no claim.
        claimed_at = max(now, utcnow())
        with sessions() as session, session.begin():
            # An UPDATE's result is a CursorResult; Session.execute is typed as any Result.
            claimed = cast(
                "CursorResult[Any]",
                session.execute(
                    repository.claim(alert_id, claimed_at, claimed_at + timedelta(seconds=CLAIM_S))
                ),
            ).rowcount
            alert = session.get(Alert, alert_id) if claimed else None
            if alert is None:
                continue  # another process has it
            hook = session.get(Webhook, alert.project_id)
            target = (hook.url, hook.secret) if hook else None
            payload = _payload(alert)
        error = None
        if target is None:
            error = "the project's webhook was removed"
        else:
            url, secret = target
            try:
                check_url(url, allow_private)
                post_alert(url, secret, str(alert_id), payload)
            except TimeoutError:
                error = f"TimeoutError: no complete answer within {DEADLINE_S:g} s"
            except (httpx.HTTPError, UnsafeWebhook, UnicodeError) as failure:
                # UnicodeError: a host name that cannot be encoded, stored before this check.
                error = f"{type(failure).__name__}: {failure}"[:2000]
        with sessions() as session, session.begin():
            row = session.get(Alert, alert_id)
            if row is None:
                continue
            row.attempts += 1
            if error is None:
                row.delivery, row.delivered_at, row.last_error = (
                    Delivery.delivered.value,
                    utcnow(),
                    None,
                )
                delivered += 1
            else:
                row.last_error = error
                if row.attempts >= MAX_ATTEMPTS or target is None:
                    row.delivery = Delivery.failed.value
                    logger.warning("alert %s not delivered, giving up: %s", alert_id, error)
                else:
                    row.next_attempt_at = utcnow() + timedelta(seconds=backoff_s(row.attempts))
    return delivered


def list_alerts(
    session: Session,
    caller: Principal,
    kind: AlertKind | None,
    run_id: uuid.UUID | None,
    limit: int,
    offset: int,
) -> tuple[list[AlertOut], int]:
    query = repository.alerts_of_project(caller.project_id, kind.value if kind else None, run_id)
    total = session.scalar(repository.count_of(query)) or 0
    rows = session.scalars(
        query.order_by(Alert.created_at.desc(), Alert.id).limit(limit).offset(offset)
    )
    return [AlertOut.model_validate(row) for row in rows], total


def set_webhook(
    session: Session, caller: Principal, body: WebhookIn, allow_private: bool
) -> WebhookOut:
    try:
        check_url(body.url, allow_private)
    except UnsafeWebhook as error:
        raise InvalidInput(str(error)) from None
    # Inserted unless present, so that webhooks set at the same moment all answer 200.
    values = {"project_id": caller.project_id, "url": body.url, "secret": body.secret}
    created = insert_if_absent(session, Webhook, values, ["project_id"])
    hook = session.get_one(Webhook, caller.project_id)
    if not created:
        hook.url, hook.secret, hook.created_at = body.url, body.secret, utcnow()
        session.flush()
    return WebhookOut.model_validate(hook)


def get_webhook(session: Session, caller: Principal) -> WebhookOut:
    hook = session.get(Webhook, caller.project_id)
    if hook is None:
        raise NotFound("the project has no webhook")
    return WebhookOut.model_validate(hook)


def delete_webhook(session: Session, caller: Principal) -> None:
    hook = session.get(Webhook, caller.project_id)
    if hook is None:
        raise NotFound("the project has no webhook")
    session.delete(hook)
