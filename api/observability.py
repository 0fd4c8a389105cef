"""Operational metrics (Prometheus, at ``/metrics``) and structured access logs.

Labels name route templates (``/api/v1/runs/{run_id}/energy``), never concrete paths or keys,
so the number of series stays fixed and no project's ids leave through the metrics.

With ``greenaudit serve --workers N`` every worker counts into files under
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode), and ``/metrics``, answered
by any worker, sums them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

access_log = logging.getLogger("greenaudit.access")

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"

REQUESTS = Counter(
    "greenaudit_http_requests",
    "HTTP requests answered, by route template and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "greenaudit_http_request_duration_seconds",
    "Time from request to the end of the response, seconds.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ROWS_INGESTED = Counter(
    "greenaudit_ingested_rows",
    "Energy samples and metric points stored.",
    ["kind"],
)
ROWS_DUPLICATE = Counter(
    "greenaudit_duplicate_rows",
    "Re-sent energy samples and metric points that were already stored and were ignored "
    "(client spool re-sends).",
    ["kind"],
)
BATCHES_REJECTED = Counter(
    "greenaudit_rejected_batches",
    "Ingestion requests refused, by status (invalid, conflicting, unknown run, oversized).",
    ["kind", "status"],
)

# Ingestion routes, by template, and the kind of row they store.
INGEST_ROUTES = {
    "/api/v1/runs/{run_id}/energy": "energy_sample",
    "/api/v1/runs/{run_id}/metrics": "metric_point",
    "/codecarbon/emissions": "energy_sample",
}


def count_ingested(kind: str, inserted: int, duplicates: int) -> None:
    """Count what one accepted batch stored and what it re-sent."""
    ROWS_INGESTED.labels(kind).inc(inserted)
    if duplicates:
        ROWS_DUPLICATE.labels(kind).inc(duplicates)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class HttpMiddleware:
    """Plain ASGI middleware that handles HTTP requests and passes anything else through.

    Plain ASGI rather than Starlette's BaseHTTPMiddleware, which would add a task and a stream
    per request to the ingestion path.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one HTTP request, usually by calling ``self.app`` around it."""
        raise NotImplementedError


class ObservabilityMiddleware(HttpMiddleware):
    """Counts and times every HTTP request and writes one JSON access-log line for it."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500  # what the client sees if the app fails before answering
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, counting_receive, recording_send)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = scope["method"]
            REQUESTS.labels(method, route, str(status)).inc()
            LATENCY.labels(method, route).observe(elapsed)
            kind = INGEST_ROUTES.get(route)
            if kind is not None and status >= 400:
                BATCHES_REJECTED.labels(kind, str(status)).inc()
            if access_log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                access_log.info(
                    json.dumps(
                        {
                            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                            "method": method,
                            "path": scope["path"],
                            "route": route,
                            "status": status,
                            "duration_ms": round(elapsed * 1000, 2),
                            "request_bytes": received,
                            "client": client[0] if client else None,
                            "pid": os.getpid(),
                        }
                    )
                )


router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
def metrics() -> Response:
    """Operational metrics in Prometheus' text format (all workers together)."""
    registry = REGISTRY
    if os.environ.get(MULTIPROCESS_DIR_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def worker_exited() -> None:
    """Tell the multiprocess collector that this worker's live series are gone."""
    if os.environ.get(MULTIPROCESS_DIR_ENV):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
