"""Sign-in and sign-out in a real browser (issue 16, finding 14): the service's own form works,
and a page of another site cannot sign the browser in or out.

The other site is ``http://evil.example``, whose page the browser is handed by Playwright, so
the browser itself decides which headers mark the post as cross-site.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from greenaudit.api.app import create_app
from greenaudit.settings import Settings

from ..browser import headless_chromium, new_context
from ..conftest import ProjectKeys, create_project, serving

pytestmark = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from headless_chromium("the sign-in tests")


@pytest.fixture
def site(settings: Settings, engine: Engine, client: TestClient) -> Iterator[dict[str, Any]]:
    mine = create_project(client, "mine")
    attackers = create_project(client, "attackers")
    with serving(create_app(settings, engine)) as url:
        yield {"url": url, "mine": mine, "attackers": attackers}


def _read_key(keys: ProjectKeys) -> str:
    return keys.read["Authorization"].split()[1]


def _key_cookies(context: Any) -> list[str]:
    return [c["value"] for c in context.cookies() if c["name"] == "greenaudit_key"]


def _from_evil_page(page: Any, site: dict[str, Any], form: str) -> Any:
    """Open, as http://evil.example/, a page that submits ``form`` as soon as it loads.

    Returns the service's answer to that post, once the browser has shown it.
    """
    html = f"<html><body>{form}<script>document.forms[0].submit()</script></body></html>"
    page.context.route(
        f"{EVIL}/**", lambda route: route.fulfill(body=html, content_type="text/html")
    )
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.goto(EVIL + "/")
    page.wait_for_url(site["url"] + "/dashboards/**")
    page.wait_for_load_state()
    return answer.value


def test_the_services_own_form_signs_in_and_out(browser: Any, site: dict[str, Any]):
    context = new_context(browser)
    page = context.new_page()
    posts: list[Any] = []
    page.on("request", lambda request: posts.append(request) if request.method == "POST" else None)
    page.goto(site["url"] + "/dashboards/runs")
    assert page.url.startswith(site["url"] + "/dashboards/login")
    page.fill("input[name=key]", _read_key(site["mine"]))
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.url == site["url"] + "/dashboards/runs"
    assert _key_cookies(context) == [_read_key(site["mine"])]
    with page.expect_navigation():
        page.click("text=Sign out")
    assert page.url.startswith(site["url"] + "/dashboards/login")
    assert _key_cookies(context) == []
    # What the rule rests on: under the pages' no-referrer policy Chromium hides the origin of
    # their own forms' posts ("null") and vouches for them in Sec-Fetch-Site.
    assert len(posts) == 2
    for post in posts:
        headers = post.all_headers()
        assert headers.get("origin") == "null", headers
        assert headers.get("sec-fetch-site") == "same-origin", headers
        assert "referer" not in headers, headers
    context.close()


def test_another_site_cannot_sign_the_browser_in(browser: Any, site: dict[str, Any]):
    context = new_context(browser)
    page = context.new_page()
    # Login CSRF: the browser would be signed in to the attacker's project, and show its data.
    answer = _from_evil_page(
        page,
        site,
        f'<form method="post" action="{site["url"]}/dashboards/login">'
        f'<input name="key" value="{_read_key(site["attackers"])}">'
        '<input name="next" value="/dashboards/runs"></form>',
    )
    assert answer.status == 403
    assert answer.request.all_headers().get("origin") == EVIL
    assert "This sign-in was refused because" in page.content()
    assert _key_cookies(context) == []
    context.close()


def test_another_site_cannot_sign_the_browser_out(browser: Any, site: dict[str, Any]):
    context = new_context(browser)
    page = context.new_page()
    page.goto(site["url"] + "/dashboards/login")
    page.fill("input[name=key]", _read_key(site["mine"]))
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert _key_cookies(context) == [_read_key(site["mine"])]
    answer = _from_evil_page(
        page, site, f'<form method="post" action="{site["url"]}/dashboards/logout"></form>'
    )
    assert answer.status == 403
    assert "This sign-out was refused because" in page.content()
    assert _key_cookies(context) == [_read_key(site["mine"])]
    assert page.goto(site["url"] + "/dashboards/runs").status == 200
    context.close()
