"""Idempotent creates at the same moment: `greenaudit serve --workers 2`, 20 threads released by
one barrier, each sending the same body on a connection of its own.

Every rank of a job creates the run it shares, its dataset profile and maybe a budget, all at
once. Each must answer as it does one at a time: 201 for the request that created it, then 200
for the identical others (a webhook, set by PUT, is 200 throughout), never a 500 or a 409. A
project's keys are shown once, so a project name is created once and refused after (409,
"already exists"), the same way at once as one at a time.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..api.helpers import run_body
from ..conftest import free_port
from .service import database, make_project, start_service, stop_service
from .test_serve_track_query import ADMIN_TOKEN

pytestmark = pytest.mark.e2e

THREADS = 20
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(params=["postgresql", "sqlite"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path, "creates") as database_url:
        port = free_port()
        # Webhooks on loopback are allowed so that the URL checks pass without a network.
        server = start_service(
            database_url,
            port,
            tmp_path / "serve.log",
            workers=2,
            env={"GREENAUDIT_WEBHOOK_ALLOW_PRIVATE": "true"},
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_service(server)


def at_once(send: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """``send`` from THREADS threads, released together by a barrier."""
    barrier = threading.Barrier(THREADS)

    def one(_: int) -> httpx.Response:
        barrier.wait()
        return send()

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(one, range(THREADS)))


def statuses(answers: list[httpx.Response]) -> Counter[int]:
    return Counter(answer.status_code for answer in answers)


def test_identical_creates_at_once_answer_201_once_then_200(service: str) -> None:
    url = service
    key, read = make_project(url, "ranks")
    write = {"Authorization": f"Bearer {key}"}

    def post(path: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        # httpx.post opens a connection per request, so both workers take a share.
        return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=60)

    for _ in range(5):  # the shared run of a 20-rank job
        body = run_body(id=str(uuid.uuid4()), name="shared")
        answers = at_once(partial(post, "/api/v1/runs", body, write))
        assert statuses(answers) == {201: 1, 200: THREADS - 1}, [a.text for a in answers]
        assert {a.json()["id"] for a in answers} == {body["id"]}
    assert httpx.get(f"{url}/api/v1/runs", headers=read).json()["total"] == 5

    for round_ in range(3):
        profile = {"name": f"digits-{round_}", "class_counts": [178, 182, 177, 183]}
        answers = at_once(partial(post, "/api/v1/datasets/profiles", profile, write))
        assert statuses(answers) == {201: 1, 200: THREADS - 1}, [a.text for a in answers]
        assert len({a.json()["id"] for a in answers}) == 1

        budget = {"group": f"sweep-{round_}", "limit_kg_co2": 2.5}
        answers = at_once(partial(post, "/api/v1/budgets", budget, write))
        assert statuses(answers) == {201: 1, 200: THREADS - 1}, [a.text for a in answers]
        assert len({a.json()["id"] for a in answers}) == 1

        # A project of its own per round, so that each round races to create the webhook row.
        hook_key, hook_read = make_project(url, f"hooked-{round_}")
        hook = {"url": f"http://127.0.0.1:9/hook-{round_}", "secret": "s" * 32}
        answers = at_once(
            partial(
                httpx.put,
                f"{url}/api/v1/webhook",
                json=hook,
                headers={"Authorization": f"Bearer {hook_key}"},
                timeout=60,
            )
        )
        assert statuses(answers) == {200: THREADS}, [a.text for a in answers]
        stored = httpx.get(f"{url}/api/v1/webhook", headers=hook_read).json()
        assert stored["url"] == hook["url"]

        name = {"name": f"team-{round_}"}
        answers = at_once(partial(post, "/api/v1/projects", name, ADMIN))
        assert statuses(answers) == {201: 1, 409: THREADS - 1}, [a.text for a in answers]
        refusals = {a.json()["detail"] for a in answers if a.status_code == 409}
        assert refusals == {f"a project named {name['name']!r} already exists"}

    budgets = httpx.get(f"{url}/api/v1/budgets", headers=read).json()
    assert sorted(b["group"] for b in budgets) == ["sweep-0", "sweep-1", "sweep-2"]
    profiles = httpx.get(f"{url}/api/v1/datasets/profiles", headers=read).json()
    assert [p["sample_count"] for p in profiles] == [720, 720, 720]
