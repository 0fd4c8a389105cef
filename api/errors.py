"""The service's one error type and its handlers.

Every error leaves the service as ``{"error": code, "detail": ...}``. Code below the routes raises
:class:`GreenauditError` subclasses, never ``HTTPException``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("greenaudit.api")


class GreenauditError(Exception):
    """An error with a stable code, a message for the user and an HTTP status."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        detail: Any,
        *,
        code: str | None = None,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code

    def __init_subclass__(
        cls, *, status_code: int | None = None, code: str | None = None, **kwargs: Any
    ) -> None:
        # A kind of error states its status and code once, in its class line.
        super().__init_subclass__(**kwargs)
        if status_code is not None:
            cls.status_code = status_code
        if code is not None:
            cls.code = code


class NotFound(GreenauditError, status_code=404, code="not_found"):
    """No such resource in the caller's project."""


class Conflict(GreenauditError, status_code=409, code="conflict"):
    """The request contradicts what is stored."""


class Unauthorized(GreenauditError, status_code=401, code="unauthorized"):
    """A missing, unknown or revoked key."""


class Forbidden(GreenauditError, status_code=403, code="forbidden"):
    """The key lacks the scope the request needs."""


class TooManyRequests(GreenauditError, status_code=429, code="rate_limited"):
    """The key is over its rate limit."""


class InvalidInput(GreenauditError, status_code=422, code="validation_error"):
    """Input of the right shape that the service still cannot use."""


def _answer(
    code: str, detail: Any, status_code: int, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The one error shape, ``{"error": code, "detail": ...}``, with its HTTP status."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status_code, headers=headers)


def _readable_validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    problems = []
    for error in exc.errors():
        # "ctx" may hold the raw exception object, which is not JSON; the message says it all.
        problems.append(
            {
                "loc": [str(part) for part in error.get("loc", ())],
                "msg": error.get("msg", ""),
                "type": error.get("type", ""),
            }
        )
    return problems


def install_error_handlers(app: FastAPI) -> None:
    """Route every error, expected or not, through the one JSON shape."""

    @app.exception_handler(GreenauditError)
    async def _greenaudit_error(_request: Request, exc: GreenauditError) -> JSONResponse:
        return _answer(exc.code, exc.detail, exc.status_code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _answer("validation_error", _readable_validation_errors(exc), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status_code, "http_error"
        )
        return _answer(code, exc.detail, exc.status_code, exc.headers)

    @app.exception_handler(OperationalError)
    async def _database_unavailable(_request: Request, exc: OperationalError) -> JSONResponse:
        logger.error("database unavailable: %s", exc.orig)
        return _answer(
            "database_unavailable",
            "the database cannot be reached; retry later",
            503,
            {"Retry-After": "5"},
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(_request: Request, exc: IntegrityError) -> JSONResponse:
        # Services check uniqueness first; this answers the rare race they cannot see.
        return _answer("conflict", "the request conflicts with data stored at the same moment", 409)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return _answer("internal_error", "an unexpected error occurred; it has been logged", 500)


#: OpenAPI description of the error shape, attached to every route.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}, "detail": {}},
                    "required": ["error", "detail"],
                },
                "example": {"error": code, "detail": example},
            }
        },
    }
    for status, description, code, example in [
        (401, "Missing, unknown or revoked key", "unauthorized", "unknown or revoked API key"),
        (403, "Key lacks the scope", "forbidden", "this key is read-only"),
        (404, "Not found in the key's project", "not_found", "run not found"),
        (
            409,
            "Conflicts with stored data",
            "conflict",
            "energy sample (rank 0, seq 3) was already stored with different content",
        ),
        (
            413,
            "Request body over GREENAUDIT_MAX_BODY_MB",
            "payload_too_large",
            "Request body too large",
        ),
        (
            422,
            "Invalid input",
            "validation_error",
            [
                {
                    "loc": ["body", "samples", "0", "cpu_kwh"],
                    "msg": "Input should be greater than or equal to 0",
                    "type": "greater_than_equal",
                }
            ],
        ),
        (
            429,
            "Over the key's rate limit (GREENAUDIT_RATE_LIMIT), or too many failed "
            "authentications from the address (GREENAUDIT_AUTH_FAILURE_LIMIT); see Retry-After",
            "rate_limited",
            "this key is over its rate limit of 1000 per 1 second; retry in 1 s",
        ),
    ]
}
