"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import Response

from greenaudit import __version__
from greenaudit.settings import Settings

from . import models, observability
from .alerts import service as alerts_service
from .alerts.routes import router as alerts_router
from .analytics.routes import router as analytics_router
from .auth import admin_token_problem
from .body import add_body_schemas
from .budgets.routes import router as budgets_router
from .codecarbon.routes import router as codecarbon_router
from .dashboards.routes import install as install_dashboards
from .datasets.routes import router as datasets_router
from .db import make_engine, make_session_factory
from .errors import install_error_handlers
from .observability import HttpMiddleware, Receive, Scope, Send
from .projects.routes import router as projects_router
from .ratelimit import FailedAuthThrottle, KeyRateLimiter
from .runs import service as runs_service
from .runs.routes import router as runs_router
from .security import BodySizeLimitMiddleware, SecurityHeadersMiddleware
from .totals.routes import router as totals_router

logger = logging.getLogger("greenaudit.api")


async def _mark_crashed_runs(app: FastAPI) -> None:
    """Every so often, mark running runs whose client has gone quiet as crashed."""
    settings: Settings = app.state.settings
    interval_s = max(0.5, min(60.0, settings.heartbeat_timeout_s / 4))

    def sweep() -> None:
        with app.state.write_sessions() as session, session.begin():
            marked = runs_service.mark_crashed(session, settings.heartbeat_timeout_s)
        if marked:
            logger.info(
                "marked %d run(s) crashed: no heartbeat for %.0f s",
                marked,
                settings.heartbeat_timeout_s,
            )

    while True:
        await asyncio.sleep(interval_s)
        try:
            await run_in_threadpool(sweep)
        except Exception:  # a database hiccup must not end the sweeps
            logger.exception("could not mark crashed runs")


async def _watch_budgets(app: FastAPI) -> None:
    """Every ``alert_interval_s``, store new alerts, then post those due to webhooks."""
    settings: Settings = app.state.settings
    interval_s = settings.alert_interval_s
    since = models.utcnow()

    def one_pass() -> None:
        nonlocal since
        now = models.utcnow()
        stored = alerts_service.alert_pass(
            app.state.read_sessions,
            app.state.write_sessions,
            now,
            since - timedelta(seconds=interval_s),
        )
        since = now
        if stored:
            logger.info("stored %d new alert(s)", stored)
        alerts_service.deliver_due(
            app.state.write_sessions,
            models.utcnow(),
            allow_private=settings.webhook_allow_private,
            read_sessions=app.state.read_sessions,
        )

    while True:
        await asyncio.sleep(interval_s)
        try:
            await run_in_threadpool(one_pass)
        except Exception:  # a database or network hiccup must not end the watch
            logger.exception("could not check budgets and deliver alerts")


_start_up_frozen = False


def _freeze_start_up_objects() -> None:
    """Move what is loaded by now out of the cyclic collector's reach, once per process.

    FastAPI, SQLAlchemy, pydantic and the analytics stack live as long as the process. Left to
    the collector, each full collection walked those ~200,000 objects for about 60 ms, and that
    pause was the slowest batches' latency under load. Once is enough: a second app in the same
    process (tests) would only pay for another full collection.
    """
    global _start_up_frozen
    if not _start_up_frozen:
        gc.collect()
        gc.freeze()
        _start_up_frozen = True


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    _freeze_start_up_objects()
    tasks = [
        asyncio.create_task(_mark_crashed_runs(app)),
        asyncio.create_task(_watch_budgets(app)),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        observability.worker_exited()


class ErrorShapedCORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware, whose refused preflight answers the one error shape.

    Starlette answers a refused preflight in plain text; every other error of the service is
    ``{"error": code, "detail": ...}``, and a script that reads errors should not need a case.
    """

    def preflight_response(self, request_headers: Headers) -> Response:
        answer = super().preflight_response(request_headers)
        if answer.status_code < 400:
            return answer
        refusal = bytes(answer.body).decode()  # "Disallowed CORS origin, method"
        headers = {
            name: value
            for name, value in answer.headers.items()
            if name not in ("content-length", "content-type")
        }
        return JSONResponse(
            {
                "error": "cors_refused",
                "detail": f"{refusal}; the allowed origins are set by GREENAUDIT_CORS_ORIGINS",
            },
            status_code=answer.status_code,
            headers=headers,
        )


# Requests whose work grows with a run's length (bounded, but each still seconds of CPU
# eight at a time): a run's forecast and returns, and its dashboard page, which draws both.
HEAVY_PATHS = re.compile(r"^(/api/v1/runs/[^/]+/(forecast|returns)|/dashboards/runs/[^/]+)/?$")
# How many of them one worker works on at once; the rest wait their turn (issue 16, finding
# 10). Measured with eight at once on the 2-core VM (benchmarks/RESULTS.md): two at a time
# kept /healthz fastest but queued the eighth returns answer past 3 s; four keeps most of the
# health check's gain, and a request's database time overlaps another's Python.
HEAVY_AT_ONCE = 4


class HeavyRequestGate(HttpMiddleware):
    """Lets at most ``at_once`` heavy requests of one worker run together; the others queue.

    Heavy work is Python and database CPU. Eight of them at once in one worker answer no sooner
    in all than a few at a time, but each holds a thread that contends for the GIL, so a cheap
    request (``/healthz``, an ingest batch) waited behind all eight at every switch. Queued
    here, on the event loop, a waiting request holds no thread and no connection.
    """

    def __init__(self, app: Any, at_once: int = HEAVY_AT_ONCE) -> None:
        super().__init__(app)
        self.slots = asyncio.Semaphore(at_once)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not HEAVY_PATHS.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        async with self.slots:
            await self.app(scope, receive, send)


class InsecureConfiguration(RuntimeError):
    """The service will not start: its configuration would leave it open."""


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """Build the service for ``settings``. The schema must already be migrated.

    Raises :class:`InsecureConfiguration` when the admin token is missing or weak: no service
    starts without one (``greenaudit demo`` makes a random one for its session).
    """
    settings = settings or Settings()
    problem = admin_token_problem(settings.admin_token)
    if problem:
        raise InsecureConfiguration(problem)
    engine = engine or make_engine(settings)
    app = FastAPI(
        lifespan=_lifespan,
        title="greenaudit",
        version=__version__,
        summary="What did this accuracy cost? Energy, CO2 and compute of ML training, "
        "joined to the metrics it bought.",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.read_sessions = make_session_factory(engine, writer=False)
    app.state.write_sessions = make_session_factory(engine, writer=True)
    app.state.write_gate = asyncio.Lock() if engine.dialect.name == "sqlite" else None
    app.state.rate_limiter = KeyRateLimiter(settings.rate_limit, settings.rate_limit_storage)
    app.state.auth_throttle = FailedAuthThrottle(
        settings.auth_failure_limit, settings.rate_limit_storage
    )
    install_error_handlers(app)
    app.add_middleware(HeavyRequestGate)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=int(settings.max_body_mb * 1024 * 1024))
    if settings.cors_origins:
        app.add_middleware(
            ErrorShapedCORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "x-api-token"],
            max_age=600,
        )
    # Added last, so it is outermost and times and counts everything, CORS answers included.
    app.add_middleware(observability.ObservabilityMiddleware)
    for router in (
        observability.router,
        projects_router,
        runs_router,
        budgets_router,
        alerts_router,
        datasets_router,
        totals_router,
        analytics_router,
        codecarbon_router,
    ):
        app.include_router(router)

    install_dashboards(app)
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            add_body_schemas(default_openapi())
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness and database reachability."""
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return {"status": "ok", "version": __version__}

    return app
