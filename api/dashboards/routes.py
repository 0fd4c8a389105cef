"""Server-rendered dashboard pages under /dashboards/, signed in with a project key."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, quote

import plotly
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

import greenaudit.dashboards
from greenaudit.schemas import RunStatus
from greenaudit.units import significant

from ..analytics.schemas import CostAxis, NofadeAxis, ReturnsAxis
from ..auth import Principal, Scope, authenticate_key, parse_bearer
from ..deps import SessionDep, authenticate, throttled
from ..errors import InvalidInput, TooManyRequests, Unauthorized
from ..runs.schemas import RunFilters, RunSort, SortOrder
from ..security import cross_site_problem
from . import service

COOKIE = "greenaudit_key"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
DASHBOARDS_JS = Path(greenaudit.dashboards.__file__).parent / "static" / "dashboards.js"
templates = Environment(
    loader=PackageLoader("greenaudit.dashboards", "templates"),
    autoescape=select_autoescape(["html"]),
)
# The pages print numbers as the report and the CLI do (macros.html's num).
templates.globals["significant"] = significant
router = APIRouter(prefix="/dashboards", include_in_schema=False)


class SignInRequired(Exception):
    """The page needs a project key; the browser is sent to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


class SignInThrottled(Exception):
    """The browser's address is over its failed sign-ins; it is shown the wait, not JSON."""

    def __init__(self, refusal: TooManyRequests, next_path: str) -> None:
        self.refusal = refusal
        self.next_path = next_path


def _render(
    name: str, status_code: int = 200, headers: dict[str, str] | None = None, **context: Any
) -> HTMLResponse:
    return HTMLResponse(
        templates.get_template(name).render(**context), status_code=status_code, headers=headers
    )


def _sign_in_page(
    next_path: str, error: str, status_code: int, headers: dict[str, str] | None = None
) -> HTMLResponse:
    return _render(
        "login.html",
        status_code=status_code,
        headers=headers,
        title="Sign in",
        bare=True,
        next=next_path,
        error=error,
    )


def _caller(request: Request, session: SessionDep) -> Principal:
    """The signed-in key (cookie), or a key sent as a bearer by a script.

    A browser without a working key is sent to the sign-in page; a script that sent an
    Authorization header that does not hold a working key gets the API's 401, as anywhere else.
    """
    if "authorization" in request.headers:
        return authenticate(request, session, parse_bearer(request.headers["authorization"]))
    key = request.cookies.get(COOKIE)
    if not key:
        raise SignInRequired(request.url.path)
    try:
        return authenticate(request, session, key)
    except Unauthorized as error:
        raise SignInRequired(request.url.path) from error
    except TooManyRequests as error:
        raise SignInThrottled(error, request.url.path) from error


def install(app: FastAPI) -> None:
    """Add the dashboard pages and their sign-in redirect to ``app``."""

    @app.exception_handler(SignInRequired)
    async def _sign_in(_request: Request, exc: SignInRequired) -> RedirectResponse:
        return RedirectResponse(f"/dashboards/login?next={quote(exc.next_path)}", status_code=303)

    @app.exception_handler(SignInThrottled)
    async def _throttled(_request: Request, exc: SignInThrottled) -> HTMLResponse:
        return _sign_in_page(
            _safe_next(exc.next_path),
            f"Signing in is paused: {exc.refusal.detail}.",
            exc.refusal.status_code,
            exc.refusal.headers,
        )

    app.include_router(router)


def _safe_next(value: str) -> str:
    # Only paths of this site, so the sign-in page cannot be used to redirect elsewhere.
    return value if value.startswith("/dashboards") and "//" not in value else "/dashboards/"


@router.get("/static/plotly.min.js")
def plotly_js() -> FileResponse:
    return FileResponse(
        PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
    )


@router.get("/static/dashboards.js")
def dashboards_js() -> FileResponse:
    return FileResponse(
        DASHBOARDS_JS,
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=3600"},
    )


@router.get("/login", response_class=HTMLResponse)
def login_form(next: str = "/dashboards/") -> HTMLResponse:  # noqa: A002 - the URL's name
    return _render("login.html", title="Sign in", bare=True, next=_safe_next(next), error=None)


def _cross_site_refusal(
    request: Request, what: str, after: str, next_path: str
) -> HTMLResponse | None:
    """The 403 page for a sign-in or sign-out another site's page made the browser send."""
    problem = cross_site_problem(request)
    if problem is None:
        return None
    return _sign_in_page(next_path, f"This {what} was refused because {problem}. {after}", 403)


@router.post("/login", response_model=None)
async def login(request: Request, session: SessionDep) -> Response:
    """Sign in with a project's read key, kept in a cookie for the dashboards.

    Only from this service's own pages (:func:`cross_site_problem`), so no other site can sign a
    browser in to a project of its choosing. Only read keys: the dashboards only read, and a
    write key left in a browser is one more place to lose it. Failed keys count against the
    address like any failed authentication.
    """
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    target = _safe_next((form.get("next") or ["/dashboards/"])[0])
    refused = _cross_site_refusal(
        request, "sign-in", "Nothing changed; to sign in, use this form.", target
    )
    if refused is not None:
        return refused
    try:
        principal, _stale = throttled(request, lambda: authenticate_key(session, key))
    except TooManyRequests as error:
        return _sign_in_page(
            target, f"Signing in is paused: {error.detail}.", error.status_code, error.headers
        )
    except Unauthorized as error:
        return _sign_in_page(target, f"That key does not work: {error.detail}.", 401)
    if principal.scope is not Scope.read:
        return _sign_in_page(
            target,
            "That is the project's write key. The dashboards only read: sign in with the "
            "project's read key (greenaudit project create prints both).",
            403,
        )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        key,
        httponly=True,
        samesite="strict",
        path="/dashboards",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout", response_model=None)
def logout(request: Request) -> Response:
    """Sign out: the cookie is cleared. Only from this service's own pages, like sign-in."""
    refused = _cross_site_refusal(
        request,
        "sign-out",
        "Nothing changed: sign out with the Sign out button of the dashboards' own pages.",
        "/dashboards/",
    )
    if refused is not None:
        return refused
    response = RedirectResponse("/dashboards/login", status_code=303)
    response.delete_cookie(COOKIE, path="/dashboards")
    return response


def _page(name: str, title: str, data: dict[str, Any]) -> HTMLResponse:
    """A signed-in page: template ``name``.html, with ``name`` active in the navigation."""
    return _render(f"{name}.html", title=title, active=name, **data)


# The metric a page plots, as logged.
PageMetric = Annotated[str, Query(min_length=1, max_length=200)]


@router.get("/", response_class=HTMLResponse)
def overview(
    request: Request, session: SessionDep, period: Literal["7", "30", "365", "all"] = "all"
) -> HTMLResponse:
    caller = _caller(request, session)
    data = service.overview(session, caller, period, datetime.now(timezone.utc))
    return _page("overview", "Overview", data)


@router.get("/runs", response_class=HTMLResponse)
def project(
    request: Request,
    session: SessionDep,
    model: Annotated[str | None, Query(max_length=200)] = None,
    status: str | None = None,
    sort: RunSort = RunSort.started_at,
    order: SortOrder = SortOrder.desc,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    caller = _caller(request, session)
    # Empty select values mean "all"; an unknown status is a 422 like anywhere else.
    try:
        filters = RunFilters(model=model or None, status=RunStatus(status) if status else None)
    except ValueError as error:
        raise InvalidInput(f"unknown status {status!r}") from error
    return _page(
        "project", "Runs", service.project_page(session, caller, filters, sort, order, page)
    )


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run(
    run_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    metric: Annotated[str | None, Query(max_length=200)] = None,
    axis: ReturnsAxis = ReturnsAxis.energy_kwh,
) -> HTMLResponse:
    caller = _caller(request, session)
    return _page("run", "Run", service.run_page(session, caller, run_id, metric or None, axis))


@router.get("/curves", response_class=HTMLResponse)
def curves(
    request: Request,
    session: SessionDep,
    x: CostAxis = CostAxis.energy_kwh,
    metric: PageMetric = "accuracy",
    target: str | None = None,
    published: bool = False,
) -> HTMLResponse:
    caller = _caller(request, session)
    try:
        wanted = float(target) if target else None
    except ValueError:
        wanted = None
    data = service.curves_page(session, caller, x, metric, wanted, published)
    return _page("curves", "Diminishing returns", data)


@router.get("/nofade", response_class=HTMLResponse)
def nofade(
    request: Request,
    session: SessionDep,
    axis: NofadeAxis = NofadeAxis.co2_kg,
    metric: PageMetric = "accuracy",
) -> HTMLResponse:
    caller = _caller(request, session)
    return _page("nofade", "NoFADE", service.nofade_page(session, caller, axis, metric))
