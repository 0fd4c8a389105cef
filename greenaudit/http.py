"""The client side's one HTTP layer: every request greenaudit makes to its service goes here.

:class:`ServiceHttp` holds the base URL (with the ``/api/v1`` prefix), the bearer key and the
timeout, and turns every failure into one :class:`~greenaudit.errors.ServiceError` worded for
a terminal: a service that cannot be reached, a refused key, an unknown resource, or any other
``{"error": code, "detail": ...}`` answer. Callers keep their own policy on top: the transport
retries and spools, the CLI prints the message and exits.

Example:
    >>> from greenaudit.http import ServiceHttp
    >>> with ServiceHttp("http://127.0.0.1:8000", "ga_...") as http:  # doctest: +SKIP
    ...     runs = http.get("/runs", {"group": "sweep-a"})

The report's ``_Api`` maps onto it in a few lines. Its request log is the ``on_request``
hook (the logged path still reads ``/api/v1/...``: the prefix is part of the URL), its paths
drop the ``/api/v1`` prefix, and its wording of a failure (``cannot reach``, ``the service
refused the key (HTTP 401 on ...)``, ``not found (HTTP 404 on ...)``) is :func:`refusal`'s::

    with ServiceHttp(
        url, api_key, timeout_s=timeout_s,
        on_request=lambda r: provenance.requests.append(f"GET {r.url.raw_path.decode()}"),
    ) as http:
        ...
        try:
            answer = shape.validate_python(http.get(f"/runs/{run_id}", params))
        except ServiceError as error:
            raise ReportError(str(error)) from error
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from greenaudit.errors import ServiceError, ServiceNotConfigured
from greenaudit.settings import Settings

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT_S = 30.0
#: What to set when a read or write key is refused.
API_KEY_HINT = "set GREENAUDIT_API_KEY to a read or write key of the project"
WRITE_KEY_HINT = "set GREENAUDIT_API_KEY to a write key of the project"
ADMIN_TOKEN_HINT = "set GREENAUDIT_ADMIN_TOKEN to the service's admin token"
# A proxy's HTML error page is not worth more than this on a terminal.
MAX_DETAIL_CHARS = 500


def _detail_text(detail: Any) -> str:
    """The service's ``detail`` as one line: validation errors as ``where: what; ...``."""
    if isinstance(detail, list) and all(isinstance(d, dict) for d in detail):
        parts = []
        for problem in detail:
            where = ".".join(str(p) for p in problem.get("loc", ()))
            parts.append(f"{where}: {problem.get('msg', '')}" if where else str(problem.get("msg")))
        text = "; ".join(parts)
    else:
        text = str(detail)
    return text if len(text) <= MAX_DETAIL_CHARS else text[:MAX_DETAIL_CHARS] + "…"


def refusal(response: httpx.Response, key_hint: str | None = None) -> ServiceError:
    """The error for a non-2xx answer, worded for a terminal.

    The message reads ``HTTP 422 on POST /api/v1/runs: <detail>``; a refused key (401, 403)
    says so and, with ``key_hint``, what to set; an unknown resource (404) says ``not found``.
    """
    code: str | None = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        detail: Any = body["detail"]
        code = body.get("error") if isinstance(body.get("error"), str) else None
    else:
        detail = response.text
    status = response.status_code
    method, path = response.request.method, response.request.url.path
    where = f"{method} {path}"
    text = _detail_text(detail)
    if status in (401, 403):
        hint = f"{key_hint} ({text})" if key_hint else text
        message = f"the service refused the key (HTTP {status} on {where}): {hint}"
    elif status == 404:
        message = f"not found (HTTP 404 on {where}): {text}"
    else:
        message = f"HTTP {status} on {where}: {text}"
    return ServiceError(
        message, status_code=status, code=code, detail=detail, method=method, path=path
    )


class ServiceHttp:
    """One key on one greenaudit service, over a kept-alive ``httpx.Client``.

    Paths are relative to ``/api/v1`` (``"/runs"`` asks ``<url>/api/v1/runs``). Every method
    returns only on a 2xx answer and raises :class:`~greenaudit.errors.ServiceError`
    otherwise; ``status_code`` is ``None`` when no answer came. Not thread-safe beyond what
    ``httpx.Client`` is; one instance per thread that sends.

    Args:
        url: The service's base URL, e.g. ``http://127.0.0.1:8000`` (a trailing ``/`` and a
            path prefix behind a proxy are kept).
        key: A project key or the admin token, sent as ``Authorization: Bearer``; ``None``
            sends no header.
        timeout_s: Seconds to wait to connect, and for each read and write.
        key_hint: What the user should set when the key is refused (HTTP 401 or 403).
        on_request: Called with each request just before it is sent (the report lists them).

    Raises:
        ServiceError: ``url`` is not a usable URL.

    """

    def __init__(
        self,
        url: str,
        key: str | None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        key_hint: str | None = API_KEY_HINT,
        on_request: Callable[[httpx.Request], None] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._key_hint = key_hint
        self._on_request = on_request
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        try:
            parsed = httpx.URL(self.url)
            if parsed.scheme not in ("http", "https") or not parsed.host:
                raise ValueError("it needs http:// or https:// and a host")
            self._client = httpx.Client(
                base_url=self.url + API_PREFIX, headers=headers, timeout=timeout_s
            )
        except (httpx.InvalidURL, ValueError, TypeError) as error:
            raise ServiceError(f"{url!r} is not a usable service URL: {error}") from error

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        purpose: str,
        url: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> ServiceHttp:
        """The service and key of ``GREENAUDIT_URL`` and ``GREENAUDIT_API_KEY``.

        Args:
            settings: Where the URL and key come from.
            purpose: What they are needed for, ending the error's message, e.g.
                ``"(a read or write key) to query"``.
            url: A URL given on the command line, taking the place of ``GREENAUDIT_URL``.
            timeout_s: As for the constructor.

        Raises:
            ServiceNotConfigured: The URL or the key is unset.

        """
        base = url or settings.url
        if not base or not settings.api_key:
            raise ServiceNotConfigured(f"set GREENAUDIT_URL and GREENAUDIT_API_KEY {purpose}")
        return cls(str(base), settings.api_key, timeout_s=timeout_s)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """Send one request; parameters that are ``None`` are left out of the query.

        Returns the answer when its status is 2xx; raises :class:`ServiceError` otherwise.
        """
        query = {k: v for k, v in params.items() if v is not None} if params else None
        try:
            request = self._client.build_request(method, path, json=json, params=query)
        except (httpx.InvalidURL, ValueError, TypeError) as error:
            raise ServiceError(
                f"{method} {path} cannot be sent: {error}", method=method, path=path
            ) from error
        if self._on_request is not None:
            self._on_request(request)
        try:
            response = self._client.send(request)
        except httpx.HTTPError as error:
            raise ServiceError(
                f"cannot reach {self.url}: {error or type(error).__name__}",
                method=method,
                path=request.url.path,
            ) from error
        if not 200 <= response.status_code < 300:
            raise refusal(response, self._key_hint)
        return response

    def _json(self, response: httpx.Response) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as error:
            where = f"{response.request.method} {response.request.url.path}"
            raise ServiceError(
                f"the service's answer to {where} is not JSON: {response.text[:200]!r}",
                status_code=response.status_code,
                method=response.request.method,
                path=response.request.url.path,
            ) from error

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``path`` and return its JSON answer."""
        return self._json(self.request("GET", path, params=params))

    def post(self, path: str, body: Any = None) -> Any:
        """POST ``body`` as JSON to ``path`` and return the JSON answer (``None`` if empty)."""
        return self._json(self.request("POST", path, json=body))

    def patch(self, path: str, body: Any) -> Any:
        """PATCH ``path`` with ``body`` as JSON and return the JSON answer."""
        return self._json(self.request("PATCH", path, json=body))

    def close(self) -> None:
        """Close the kept-alive connections."""
        self._client.close()

    def __enter__(self) -> ServiceHttp:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
