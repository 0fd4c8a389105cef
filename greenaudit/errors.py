"""The client side's exceptions: one root, so a caller can catch everything greenaudit raises.

Every exception the greenaudit library raises on purpose extends :class:`GreenauditError`:
the HTTP layer's :class:`ServiceError`, the transport's ``TransientError`` and
``RejectedError``, :class:`~greenaudit.client.policy.BudgetExceeded` and the report's
``ReportError``. The service (``greenaudit.api``) has its own root, which answers as
``{"error": code, "detail": ...}``; :class:`ServiceError` is that answer seen from the client.

Example:
    >>> from greenaudit.errors import GreenauditError, ServiceError
    >>> try:
    ...     raise ServiceError("not found (HTTP 404 on GET /api/v1/runs/x): unknown run",
    ...                        status_code=404, code="not_found")
    ... except GreenauditError as error:
    ...     (error.status_code, error.code)
    (404, 'not_found')
"""

from __future__ import annotations

from typing import Any


class GreenauditError(Exception):
    """The root of every exception greenaudit's client side raises on purpose."""


class ServiceNotConfigured(GreenauditError, ValueError):
    """The service's URL or key is not set; the message names the variables to set.

    A ``ValueError`` too, since that is what callers caught before this class existed.
    """


class ServiceError(GreenauditError):
    """A request to the greenaudit service failed; the message says what to do about it.

    Attributes:
        status_code: The HTTP status of the answer, or ``None`` when no answer came (the
            service could not be reached, or the connection broke).
        code: The ``error`` field of the service's ``{"error", "detail"}`` answer, if any.
        detail: Its ``detail`` field (text, or the list of validation errors), if any.
        method: The request's method, e.g. ``"POST"``.
        path: The request's path, e.g. ``"/api/v1/runs"``.

    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        detail: Any = None,
        method: str = "",
        path: str = "",
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.detail = detail
        self.method = method
        self.path = path

    @property
    def unreachable(self) -> bool:
        """Whether no answer came at all (network failure, timeout, refused connection)."""
        return self.status_code is None
