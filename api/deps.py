"""Request dependencies: the database session, settings and the caller's identity."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, TypeVar

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session, sessionmaker

from greenaudit.settings import Settings

from .auth import (
    Principal,
    authenticate_key,
    check_admin_token,
    mark_key_used,
    mark_key_used_in,
    parse_bearer,
)
from .errors import Unauthorized
from .ratelimit import FailedAuthThrottle

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
T = TypeVar("T")


# Dependencies that do no I/O are async: FastAPI runs a plain def in its thread pool, and the hop
# there and back cost more than the work.


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def write_turn(request: Request) -> AsyncIterator[None]:
    """On SQLite, let this process's writing requests take the write lock one at a time.

    SQLite admits one writer; a writer that finds the lock taken polls for it in SQLite's busy
    handler, sleeping up to 100 ms between tries, which made the slowest batches wait hundreds
    of milliseconds under load. Queueing on an asyncio lock instead hands the database to the
    next request the moment the last one commits. It is awaited, not blocked on, so waiting
    requests hold no worker thread that the request holding the lock could need. Writers of
    other processes (``--workers``) still meet the busy timeout.
    """
    gate: asyncio.Lock | None = request.app.state.write_gate
    if gate is None or request.method in READ_METHODS:
        yield
        return
    async with gate:
        yield


def get_session(
    request: Request, _turn: Annotated[None, Depends(write_turn, scope="function")]
) -> Iterator[Session]:
    """One transaction per request: committed when the route returns, rolled back on error.

    Requests that change data get a writer session; reads never take the SQLite write lock.
    """
    factory: sessionmaker[Session] = (
        request.app.state.read_sessions
        if request.method in READ_METHODS
        else request.app.state.write_sessions
    )
    with factory() as session, session.begin():
        yield session


# scope="function": commit before the response is sent, so that a client which has its answer
# can read what it wrote (since FastAPI 0.118 the default runs after the response).
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
AuthorizationHeader = Annotated[
    str | None,
    Header(description="`Bearer <project key>` (or the admin token on admin routes)"),
]


def client_address(request: Request) -> str:
    """The caller's address; behind a proxy, uvicorn puts the forwarded one here."""
    return request.client.host if request.client else "unknown"


def throttled(request: Request, attempt: Callable[[], T]) -> T:
    """Run one credential check, refused while the caller's address is over its failures.

    An :class:`Unauthorized` from ``attempt`` counts as a failure of the address.
    """
    throttle: FailedAuthThrottle = request.app.state.auth_throttle
    address = client_address(request)
    throttle.check(address)
    try:
        return attempt()
    except Unauthorized:
        throttle.failed(address)
        raise


def authenticate(request: Request, session: Session, key: str) -> Principal:
    """The caller behind ``key``: checked, counted against its rate limit, its use recorded.

    Failures count against the caller's address (:func:`throttled`).
    """
    principal, stale = throttled(request, lambda: authenticate_key(session, key))
    request.app.state.rate_limiter.admit(principal.key_id)
    if stale:
        # A writing request already holds the write lock, so it records the use itself; a
        # read uses a short transaction of its own (waiting for the lock would self-deadlock).
        if request.method in READ_METHODS:
            mark_key_used(request.app.state.write_sessions, principal.key_id)
        else:
            mark_key_used_in(session, principal.key_id)
    return principal


def get_principal(
    request: Request, session: SessionDep, authorization: AuthorizationHeader = None
) -> Principal:
    return authenticate(request, session, parse_bearer(authorization))


async def get_writer(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    principal.require_write()
    return principal


def require_admin(
    request: Request, settings: SettingsDep, authorization: AuthorizationHeader = None
) -> None:
    # A plain def: with a shared store the throttle's count is network I/O, kept off the loop.
    presented = parse_bearer(authorization)
    throttled(request, lambda: check_admin_token(settings.admin_token, presented))


ReaderDep = Annotated[Principal, Depends(get_principal)]
WriterDep = Annotated[Principal, Depends(get_writer)]
AdminDep = Annotated[None, Depends(require_admin)]
