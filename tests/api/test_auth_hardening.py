"""Issue 16, findings 13 and 14: failed authentication is throttled per address, patterned
admin tokens are refused, and the dashboards' sign-in takes read keys from their own pages only.

The throttle tests count within an hour-long window, so they do not depend on how fast the
machine runs them.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from greenaudit.api.app import InsecureConfiguration, create_app
from greenaudit.api.auth import MIN_ADMIN_TOKEN_DEFLATED_BYTES, admin_token_problem, pattern_bytes
from greenaudit.cli import app as cli_app
from greenaudit.settings import Settings

from ..conftest import ADMIN, ADMIN_TOKEN, ProjectKeys, create_project

WRONG_ADMIN = {"Authorization": "Bearer " + "wrong-admin-token-" + "q" * 24}
UNKNOWN_KEY = {"Authorization": "Bearer ga_000000000000_" + "x" * 43}
LIMIT = "3/hour"
HOUR_S = 3600


@pytest.fixture
def throttled_app(settings: Settings, engine: Engine) -> object:
    """The service with 3 failed authentications allowed per address and hour."""
    return create_app(settings.model_copy(update={"auth_failure_limit": LIMIT}), engine)


def _client(app: object, address: str) -> TestClient:
    return TestClient(app, raise_server_exceptions=False, client=(address, 50000))  # type: ignore[arg-type]


@pytest.fixture
def clients(throttled_app: object) -> Iterator[tuple[TestClient, TestClient]]:
    """Two callers of one service, from 10.0.0.1 and from 10.0.0.2."""
    with _client(throttled_app, "10.0.0.1") as first, _client(throttled_app, "10.0.0.2") as second:
        yield first, second


def _key(keys: ProjectKeys, scope: str) -> str:
    return getattr(keys, scope)["Authorization"].split()[1]


def _sign_in(
    client: TestClient,
    key: str,
    next_page: str = "/dashboards/",
    headers: dict[str, str] | None = None,
) -> Any:
    """Post the dashboards' sign-in form with ``key``; the redirect is not followed.

    Returns the TestClient's response (httpx2's or httpx's, by what starlette finds).
    """
    return client.post(
        "/dashboards/login",
        data={"key": key, "next": next_page},
        headers=headers,
        follow_redirects=False,
    )


def _assert_throttled(response: object, retry_at_most_s: int = HOUR_S) -> None:
    assert response.status_code == 429, response.text  # type: ignore[attr-defined]
    retry_s = int(response.headers["Retry-After"])  # type: ignore[attr-defined]
    # The first failure leaves the hour-long window an hour after it happened.
    assert HOUR_S - 120 <= retry_s <= retry_at_most_s


# --- finding 13: failed authentication is throttled per address -----------------------------


def test_wrong_admin_tokens_are_throttled_per_address(clients: tuple[TestClient, TestClient]):
    attacker, neighbour = clients
    answers = [
        attacker.post("/api/v1/projects", json={"name": "x"}, headers=WRONG_ADMIN).status_code
        for _ in range(6)
    ]
    # 3 failures are allowed in the hour; each later attempt is refused before it is checked.
    assert answers == [401, 401, 401, 429, 429, 429]
    refused = attacker.post("/api/v1/projects", json={"name": "x"}, headers=WRONG_ADMIN)
    _assert_throttled(refused)
    body = refused.json()
    assert body["error"] == "rate_limited"
    assert "too many failed authentications from this address" in body["detail"]
    assert "GREENAUDIT_AUTH_FAILURE_LIMIT" in body["detail"] and "3 per 1 hour" in body["detail"]
    # Refused attempts do not lengthen the wait: the 429s did not count as failures.
    # The right token from the throttled address waits too, or the throttle would still
    # answer every guess; from another address it works at once.
    right = attacker.post("/api/v1/projects", json={"name": "mine"}, headers=ADMIN)
    assert right.status_code == 429
    assert neighbour.post("/api/v1/projects", json={"name": "mine"}, headers=ADMIN).status_code == (
        201
    )


def test_keys_admin_tokens_and_sign_ins_share_one_count(clients: tuple[TestClient, TestClient]):
    attacker, neighbour = clients
    keys = create_project(neighbour, "vision")
    assert attacker.get("/api/v1/runs", headers=UNKNOWN_KEY).status_code == 401
    assert attacker.post("/api/v1/projects", json={"name": "x"}, headers=WRONG_ADMIN).status_code
    attacker.cookies.clear()
    signed = attacker.post(
        "/dashboards/login", data={"key": "ga_nope_nope", "next": "/dashboards/"}
    )
    assert signed.status_code == 401
    # The fourth failure of any kind is throttled, on the API (the error shape) ...
    api = attacker.get("/api/v1/runs", headers=UNKNOWN_KEY)
    _assert_throttled(api)
    assert api.json()["error"] == "rate_limited"
    # ... and on the sign-in form (a page saying how long to wait), even with a right key.
    page = _sign_in(attacker, _key(keys, "read"))
    _assert_throttled(page)
    assert "Signing in is paused: too many failed authentications" in page.text
    assert "greenaudit_key" not in page.headers.get("set-cookie", "")
    # A dashboard page with a cookie is answered the same way, not with a sign-in loop.
    attacker.cookies.set("greenaudit_key", "ga_nope_nope", path="/dashboards")
    viewed = attacker.get("/dashboards/runs", follow_redirects=False)
    _assert_throttled(viewed)
    assert "Signing in is paused" in viewed.text
    attacker.cookies.clear()
    # The other address has failed nothing and reads and signs in as before.
    assert neighbour.get("/api/v1/runs", headers=keys.read).status_code == 200
    neighbour.cookies.clear()
    signed_in = _sign_in(neighbour, _key(keys, "read"))
    assert signed_in.status_code == 303


def test_successful_requests_are_not_counted(clients: tuple[TestClient, TestClient]):
    user, _ = clients
    keys = create_project(user, "vision")
    answers = []
    for round_ in range(3):
        answers += [user.get("/api/v1/runs", headers=keys.read).status_code for _ in range(20)]
        answers.append(
            user.post("/api/v1/projects", json={"name": f"p{round_}"}, headers=ADMIN).status_code
        )
        if round_ < 2:
            answers.append(user.get("/api/v1/runs", headers=UNKNOWN_KEY).status_code)
    # 63 successes and 2 failures: the address still has 1 failure left in the hour.
    assert answers.count(200) == 60 and answers.count(201) == 3
    assert answers.count(401) == 2 and 429 not in answers
    assert user.get("/api/v1/runs", headers=UNKNOWN_KEY).status_code == 401
    # The third failure uses up the hour: from now on the address waits, whatever it sends.
    _assert_throttled(user.get("/api/v1/runs", headers=UNKNOWN_KEY))
    _assert_throttled(user.get("/api/v1/runs", headers=keys.read))


def test_a_missing_credential_is_not_a_failed_guess(clients: tuple[TestClient, TestClient]):
    caller, _ = clients
    for _ in range(10):
        assert caller.get("/api/v1/runs").status_code == 401
        assert caller.post("/api/v1/projects", json={"name": "x"}).status_code == 401
    assert caller.post("/api/v1/projects", json={"name": "x"}, headers=ADMIN).status_code == 201


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_the_failure_limit_can_be_turned_off_and_is_checked(settings: Settings, engine: Engine):
    app = create_app(settings.model_copy(update={"auth_failure_limit": "off"}), engine)
    with TestClient(app, raise_server_exceptions=False) as client:
        answers = {client.get("/api/v1/runs", headers=UNKNOWN_KEY).status_code for _ in range(30)}
    assert answers == {401}
    assert Settings().auth_failure_limit == "20/minute"


def test_serve_refuses_a_failure_limit_it_cannot_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("GREENAUDIT_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("GREENAUDIT_HOME", str(tmp_path))
    monkeypatch.setenv("GREENAUDIT_AUTH_FAILURE_LIMIT", "many")
    # An address this machine does not have: were the setting let through, serving would fail
    # at once (after migrating, which the last line catches) rather than serve for good.
    result = CliRunner().invoke(cli_app, ["serve", "--host", "192.0.2.1", "--port", "1"])
    assert result.exit_code == 2
    assert "GREENAUDIT_AUTH_FAILURE_LIMIT='many' is not a rate" in " ".join(result.output.split())
    assert not (tmp_path / "greenaudit.db").exists()


# --- finding 13: patterned admin tokens are refused --------------------------------------------

PATTERNED = {
    "0123456789 x 4": "0123456789" * 4,
    "the alphabet": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
    "a descending run": "".join(chr(c) for c in range(ord("z"), ord("z") - 40, -1)),
    "a phrase repeated": "Admin-2024!" * 3,
    "hex counting": "0123456789abcdef" * 2,
}


@pytest.mark.parametrize("token", PATTERNED.values(), ids=PATTERNED.keys())
def test_patterned_admin_tokens_are_refused(settings: Settings, engine: Engine, token: str):
    # Each passes the old checks: 32+ characters, 10+ distinct.
    assert len(token) >= 32 and len(set(token)) >= 10
    assert pattern_bytes(token) < MIN_ADMIN_TOKEN_DEFLATED_BYTES
    with pytest.raises(InsecureConfiguration) as refused:
        create_app(settings.model_copy(update={"admin_token": token}), engine)
    message = str(refused.value)
    assert "GREENAUDIT_ADMIN_TOKEN is patterned: it repeats or runs in sequence" in message
    assert f"describes it in {pattern_bytes(token)} bytes (at least 16" in message
    assert "python -c 'import secrets; print(secrets.token_urlsafe(32))'" in message


def test_pattern_bytes_of_the_reported_token():
    # Worked by hand from zlib's output: 10 literal bytes, one match of length 30 at distance 10
    # and the end of the block, 15 bytes in all, less the 8 of an empty stream's frame; its steps
    # (1 nine times, then -9 mod 256 = 247) deflate to 7 as well.
    assert pattern_bytes("0123456789" * 4) == 7


def test_serve_refuses_the_reported_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("GREENAUDIT_ADMIN_TOKEN", "0123456789" * 4)
    monkeypatch.setenv("GREENAUDIT_HOME", str(tmp_path))
    result = CliRunner().invoke(cli_app, ["serve", "--host", "192.0.2.1", "--port", "1"])
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "the service will not start: GREENAUDIT_ADMIN_TOKEN is patterned" in output
    assert "secrets.token_urlsafe(32)" in output
    assert not (tmp_path / "greenaudit.db").exists()


def test_random_tokens_of_the_usual_makers_pass():
    # The bytes behind secrets.token_urlsafe(24) (greenaudit demo's), token_urlsafe(32) (the
    # hint's) and token_hex(32), drawn from a seeded generator so the test is the same each run.
    draw = random.Random(16)
    tokens = [base64.urlsafe_b64encode(draw.randbytes(24)).decode() for _ in range(2000)]
    tokens += [
        base64.urlsafe_b64encode(draw.randbytes(32)).decode().rstrip("=") for _ in range(2000)
    ]
    tokens += [draw.randbytes(32).hex() for _ in range(2000)]
    refused = [t for t in tokens if admin_token_problem(t) is not None]
    assert refused == []
    # Far from the line: the least describable of them still needs 27 bytes or more.
    assert min(pattern_bytes(t) for t in tokens) >= 27


# --- finding 14: sign-in takes read keys, and only from the service's own pages ------------


def test_sign_in_refuses_a_write_key(client: TestClient, project: ProjectKeys):
    client.cookies.clear()
    refused = _sign_in(client, _key(project, "write"), "/dashboards/runs")
    assert refused.status_code == 403
    assert "That is the project&#39;s write key" in refused.text
    assert "sign in with the project&#39;s read key" in refused.text
    assert "set-cookie" not in refused.headers and "greenaudit_key" not in client.cookies
    # A write key is not a failed guess: the read key then signs in.
    signed_in = _sign_in(client, _key(project, "read"), "/dashboards/runs")
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/dashboards/runs"
    assert client.cookies["greenaudit_key"] == _key(project, "read")
    client.cookies.clear()


CROSS_SITE = {
    "another origin": {"Origin": "https://evil.example"},
    "a look-alike host": {"Origin": "http://testserver.evil.example"},
    "another port": {"Origin": "http://testserver:8080"},
    "Sec-Fetch-Site cross-site": {"Sec-Fetch-Site": "cross-site"},
    "Sec-Fetch-Site same-site": {"Sec-Fetch-Site": "same-site"},
    "our Origin but cross-site fetch": {
        "Origin": "http://testserver",
        "Sec-Fetch-Site": "cross-site",
    },
    "a hidden origin alone": {"Origin": "null"},
    "another Referer": {"Referer": "https://evil.example/page"},
    "a malformed Origin": {"Origin": "http://testserver:99999"},
}
SAME_SITE = {
    "no browser headers (a script)": {},
    "our Origin": {"Origin": "http://testserver"},
    "our host behind a TLS proxy": {"Origin": "https://testserver"},
    "our Origin with its default port": {"Origin": "http://testserver:80"},
    "a hidden origin from our page (no-referrer)": {
        "Origin": "null",
        "Sec-Fetch-Site": "same-origin",
    },
    "a user-initiated request": {"Sec-Fetch-Site": "none"},
    "our Referer": {"Referer": "http://testserver/dashboards/login"},
}


@pytest.mark.parametrize("headers", CROSS_SITE.values(), ids=CROSS_SITE.keys())
def test_sign_in_from_another_site_is_refused(
    client: TestClient, project: ProjectKeys, headers: dict[str, str]
):
    client.cookies.clear()
    refused = _sign_in(client, _key(project, "read"), headers=headers)
    assert refused.status_code == 403, refused.text
    assert "This sign-in was refused because" in refused.text
    assert "Nothing changed; to sign in, use this form." in refused.text
    assert "set-cookie" not in refused.headers and "greenaudit_key" not in client.cookies


@pytest.mark.parametrize("headers", SAME_SITE.values(), ids=SAME_SITE.keys())
def test_sign_in_from_the_services_own_page_works(
    client: TestClient, project: ProjectKeys, headers: dict[str, str]
):
    client.cookies.clear()
    signed_in = _sign_in(client, _key(project, "read"), headers=headers)
    assert signed_in.status_code == 303, signed_in.text
    assert client.cookies["greenaudit_key"] == _key(project, "read")
    client.cookies.clear()


def test_sign_out_from_another_site_is_refused(client: TestClient, project: ProjectKeys):
    client.cookies.clear()
    client.post("/dashboards/login", data={"key": _key(project, "read"), "next": "/dashboards/"})
    assert "greenaudit_key" in client.cookies
    for headers in CROSS_SITE.values():
        refused = client.post("/dashboards/logout", headers=headers, follow_redirects=False)
        assert refused.status_code == 403, (headers, refused.text)
        assert "This sign-out was refused because" in refused.text
        assert "set-cookie" not in refused.headers
    # Still signed in.
    assert client.get("/dashboards/runs", follow_redirects=False).status_code == 200
    signed_out = client.post(
        "/dashboards/logout", headers={"Origin": "http://testserver"}, follow_redirects=False
    )
    assert signed_out.status_code == 303
    assert 'greenaudit_key=""' in signed_out.headers["set-cookie"]
    client.cookies.clear()
