"""Request size limit, security headers, the dashboards' CSP and their forms' origin check."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse

from .observability import ASGIApp, HttpMiddleware, Message, Receive, Scope, Send

# The dashboards load only what the service itself serves: plotly.min.js and dashboards.js
# from /dashboards/static, no inline script and no eval. Styles may be inline because plotly
# sets them on the elements it draws.
DASHBOARD_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
EVERY_RESPONSE = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
DASHBOARD_RESPONSE = [
    (b"content-security-policy", DASHBOARD_CSP.encode()),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeadersMiddleware(HttpMiddleware):
    """Adds ``nosniff`` and ``no-referrer`` everywhere, and the CSP to dashboard pages.

    The API docs at ``/docs`` load Swagger UI from a CDN, so the CSP is kept to the dashboards.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        extra = EVERY_RESPONSE
        if scope["path"].startswith("/dashboards"):
            extra = EVERY_RESPONSE + DASHBOARD_RESPONSE

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware(HttpMiddleware):
    """Answers 413, in the service's error shape, to a body over ``max_bytes``.

    A declared ``Content-Length`` over the limit is refused before anything is read; a body
    without one (chunked) is counted as it arrives and refused as soon as it passes the limit.
    Either way nothing of it reaches a route, so nothing is stored. (Starlette's own limiter
    answers in plain text, which would be the one error not in ``{"error", "detail"}``.)
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes

    def _refusal(self) -> JSONResponse:
        return JSONResponse(
            {
                "error": "payload_too_large",
                "detail": f"the request body is over {self.max_bytes} bytes "
                "(GREENAUDIT_MAX_BODY_MB); send smaller batches",
            },
            status_code=413,
        )

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refusal()(scope, receive, send)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except _BodyTooLarge:
            if started:
                raise
            await self._refusal()(scope, receive, send)


# Sec-Fetch-Site values of a request this service's own pages made, or the user made directly.
OWN_FETCH_SITES = frozenset({"same-origin", "none"})
DEFAULT_PORTS = {"http": "80", "https": "443"}


def _host_of(url: str) -> str | None:
    """``host[:port]`` of an absolute URL, lower-cased, its scheme's default port dropped."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port out of range or not a number
        return None
    if not parts.scheme or not parts.hostname:
        return None
    if port is None or str(port) == DEFAULT_PORTS.get(parts.scheme):
        return parts.hostname
    return f"{parts.hostname}:{port}"


def cross_site_problem(request: Request) -> str | None:
    """Why a form post did not come from this service's own pages, or ``None`` when it did.

    A browser marks where a request came from in headers no page can set: ``Sec-Fetch-Site``
    (every current browser), ``Origin`` on every POST, ``Referer`` where the policy allows.
    The service's pages send ``Referrer-Policy: no-referrer``, under which a browser posts
    their forms with ``Origin: null``, so ``null`` is taken only with ``Sec-Fetch-Site:
    same-origin`` beside it. A request with none of the three is not from a browser, so no
    other site can have made it. Hosts are compared, not schemes: behind a proxy that ends
    TLS the service sees ``http`` where the browser says ``https``.
    """
    own = _host_of(f"{request.url.scheme}://{request.headers.get('host', '')}")
    site = request.headers.get("sec-fetch-site")
    if site is not None and site.lower() not in OWN_FETCH_SITES:
        return f"the browser says it came from another site (Sec-Fetch-Site: {site})"
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        if own is None or _host_of(origin) != own:
            return f"it came from {origin}, not from this service ({own})"
        return None
    if site is not None:
        return None
    if origin == "null":
        return "its origin is hidden (Origin: null) and the browser did not say it is this site"
    referer = request.headers.get("referer")
    if referer is not None and (own is None or _host_of(referer) != own):
        return f"it came from {_host_of(referer) or referer!r}, not from this service ({own})"
    return None
