"""The isolation matrix: every route, called with project A's key against project B's objects.

``CASES`` maps every operation the service serves, ``(METHOD, path template)``, to how it is
called and what must happen: a key of A gets 404 for each of B's objects (never 403, so ids
cannot be probed), a list or aggregate answers 200 with A's data and nothing of B's, and admin
routes refuse a project key. Routes that need no key are listed in ``UNAUTHENTICATED`` with the
reason. ``test_every_route_has_an_isolation_case`` compares both with the routes the app serves
(its OpenAPI document and the routes left out of it, such as the dashboards), so a new route
fails the suite until it gets a case here.

The other tests reuse each case's well-formed call on A's own objects: a read key cannot write,
a revoked key and a missing or malformed credential get 401, and no refused call changes a row.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from greenaudit.api.alerts import service as alerts
from greenaudit.api.models import Base, utcnow

from ..conftest import ADMIN, ADMIN_TOKEN, ProjectKeys, create_project
from .helpers import T0, point, run_body, sample

try:  # FastAPI >= 0.120 keeps included routers nested; this yields their routes flat.
    from fastapi.routing import iter_route_contexts as _flat_routes
except ImportError:  # pragma: no cover - older FastAPI: app.routes is already flat

    def _flat_routes(routes: Iterable[Any]) -> Iterator[Any]:  # type: ignore[misc]
        yield from routes


Op = tuple[str, str]
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
FINISH = {"status": "finished", "ended_at": "2026-12-01T11:00:00+00:00", "duration_s": 3600.0}
# Columns a legitimate read may touch: a key's own use is recorded on it.
VOLATILE_COLUMNS = {"last_used_at"}


# --- the two projects --------------------------------------------------------------------------


@dataclass
class Side:
    """One project filled with one of each object, all made through the API."""

    keys: ProjectKeys
    name: str
    tag: str
    run: str  # running, with energy samples and metric points
    finished: str  # finished, with energy samples and metric points
    codecarbon_run: str  # made by CodeCarbon's endpoints, with one emission
    profile: dict[str, Any]
    second_key: dict[str, Any]  # issued through the admin route
    budget_id: str  # a budget of its group, crossed, so the project has an alert too

    @property
    def id(self) -> str:
        return str(self.keys.id)

    @property
    def write_key(self) -> str:
        return self.keys.write["Authorization"].split()[1]

    @property
    def read_key(self) -> str:
        return self.keys.read["Authorization"].split()[1]

    @property
    def run_ids(self) -> list[str]:
        return [self.run, self.finished, self.codecarbon_run]

    @property
    def model(self) -> str:
        return f"{self.tag}-net"

    @property
    def dataset(self) -> str:
        return f"{self.tag}-data"

    @property
    def group(self) -> str:
        return f"{self.tag}-sweep"

    @property
    def run_name(self) -> str:
        return f"{self.tag}-run"

    @property
    def webhook_url(self) -> str:
        return webhook_url(self.tag)

    def secrets(self) -> list[str]:
        """Every id, key and name of this project that another project must never see."""
        keys = [self.write_key, self.read_key, self.second_key["key"]]
        return [
            self.id,
            self.name,
            *self.run_ids,
            self.profile["id"],
            self.second_key["id"],
            self.second_key["name"],
            *keys,
            *(f"_{key.split('_')[1]}_" for key in keys),  # the prefixes, as they sit in keys
            self.model,
            self.dataset,
            self.group,
            self.run_name,
            f"{self.tag}-finished-run",
            self.budget_id,
            self.webhook_url,
        ]


@dataclass
class World:
    a: Side
    b: Side


def _ok(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, (
        f"{response.request.method} {response.request.url}: {response.status_code} "
        f"{response.text[:300]}"
    )
    return response.json()  # type: ignore[no-any-return]


def codecarbon_emission(run_id: str) -> dict[str, Any]:
    return {
        "timestamp": "2026-12-01T10:05:00+00:00",
        "run_id": run_id,
        "duration": 60,
        "emissions_sum": 0.0001,
        "emissions_rate": 0.000001,
        "cpu_power": 50.0,
        "gpu_power": 0.0,
        "ram_power": 10.0,
        "cpu_energy": 0.001,
        "gpu_energy": 0.0,
        "ram_energy": 0.0002,
        "energy_consumed": 0.0012,
    }


def codecarbon_run() -> dict[str, Any]:
    return {"timestamp": T0, "experiment_id": str(uuid.uuid4()), "cpu_count": 8}


def webhook_url(tag: str) -> str:
    # A public address literal: accepted without DNS, and never posted to (no alert pass runs).
    return f"https://93.184.215.14/{tag}-hook"


WEBHOOK_SECRET = "isolation-webhook-secret-0123456789"


def fill_project(client: TestClient, tag: str) -> Side:
    keys = create_project(client, f"isolation-{tag}")
    write = keys.write
    labels = {"model": f"{tag}-net", "dataset": f"{tag}-data", "group": f"{tag}-sweep"}

    run = _ok(
        client.post("/api/v1/runs", json=run_body(name=f"{tag}-run", **labels), headers=write), 201
    )["id"]
    batch = {"samples": [sample(0), sample(1), sample(2)]}
    _ok(client.post(f"/api/v1/runs/{run}/energy", json=batch, headers=write), 200)
    points = {"points": [point(1, 0.5), point(2, 0.7), point(3, 0.8)]}
    _ok(client.post(f"/api/v1/runs/{run}/metrics", json=points, headers=write), 200)

    body = run_body(name=f"{tag}-finished-run", **labels)
    finished = _ok(client.post("/api/v1/runs", json=body, headers=write), 201)["id"]
    batch = {"samples": [sample(0), sample(1)]}
    _ok(client.post(f"/api/v1/runs/{finished}/energy", json=batch, headers=write), 200)
    points = {"points": [point(1, 0.6), point(2, 0.75)]}
    _ok(client.post(f"/api/v1/runs/{finished}/metrics", json=points, headers=write), 200)
    _ok(client.post(f"/api/v1/runs/{finished}/finish", json=FINISH, headers=write), 200)

    profile = {"name": f"{tag}-data", "version": "v1", "class_counts": [50, 30, 20]}
    profile = _ok(client.post("/api/v1/datasets/profiles", json=profile, headers=write), 201)

    token = {"x-api-token": write["Authorization"].split()[1]}
    cc_run = _ok(client.post("/codecarbon/runs", json=codecarbon_run(), headers=token), 201)["id"]
    emission = codecarbon_emission(cc_run)
    _ok(client.post("/codecarbon/emissions", json=emission, headers=token), 201)

    second = _ok(
        client.post(
            f"/api/v1/projects/{keys.id}/keys",
            json={"scope": "read", "name": f"{tag}-second-key"},
            headers=ADMIN,
        ),
        201,
    )
    budget = {"group": f"{tag}-sweep", "limit_kwh": 0.001}
    budget_id = _ok(client.post("/api/v1/budgets", json=budget, headers=write), 201)["id"]
    hook = {"url": webhook_url(tag), "secret": WEBHOOK_SECRET}
    _ok(client.put("/api/v1/webhook", json=hook, headers=write), 200)
    return Side(keys, f"isolation-{tag}", tag, run, finished, cc_run, profile, second, budget_id)


@pytest.fixture
def world(client: TestClient) -> World:
    made = World(a=fill_project(client, "alpha"), b=fill_project(client, "bravo"))
    now = utcnow()
    with client.app.state.write_sessions() as session, session.begin():  # type: ignore[attr-defined]
        assert alerts.evaluate(session, now, now - timedelta(minutes=5)) >= 2
    return made


# --- calls and what must happen ----------------------------------------------------------------


@dataclass
class Ctx:
    client: TestClient
    world: World
    probe: Probe
    response: httpx.Response
    headers: dict[str, str] = field(default_factory=dict)

    def fail(self, message: str) -> str:
        return (
            f"{self.probe.describe()}: {message}; answered {self.response.status_code} "
            f"{self.response.text[:400]!r}"
        )


Expect = Callable[[Ctx], None]


@dataclass(frozen=True)
class Probe:
    """One request of an operation: its path parameters, query and body."""

    method: str
    template: str
    path_params: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] | None = None
    json: Any = None
    expect: Expect | None = None
    why: str = ""

    @property
    def url(self) -> str:
        return self.template.format(**self.path_params)

    def sent(self) -> str:
        return self.url + json.dumps(self.params) + json.dumps(self.json)

    def describe(self) -> str:
        query = f" {self.params}" if self.params else ""
        why = f" ({self.why})" if self.why else ""
        return f"{self.method} {self.url}{query}{why}"


def assert_nothing_of(ctx: Ctx, side: Side) -> None:
    """The answer holds no id, key or name of ``side``, except what the request itself sent."""
    text = ctx.response.text.lower()
    sent = ctx.probe.sent().lower()
    leaked = [s for s in side.secrets() if s.lower() not in sent and s.lower() in text]
    assert not leaked, ctx.fail(f"answer shows project {side.name}'s {leaked}")


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _swap(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, str):
        for old, new in mapping.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {k: _swap(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap(v, mapping) for v in value]
    return value


def missing_twin(probe: Probe, side: Side) -> tuple[Probe, dict[str, str]]:
    """The same request with each of ``side``'s ids and names swapped for one that never existed.

    Returns the twin and the swaps made.
    """
    sent = probe.sent()
    mapping = {
        secret: str(uuid.uuid4()) if _is_uuid(secret) else f"absent-{uuid.uuid4().hex[:10]}"
        for secret in sorted(side.secrets(), key=len, reverse=True)
        if secret in sent
    }
    assert mapping, f"{probe.describe()} names nothing of project {side.name}"
    twin = Probe(
        probe.method,
        probe.template,
        _swap(probe.path_params, mapping),
        _swap(probe.params, mapping),
        _swap(probe.json, mapping),
        why=f"twin of {probe.describe()}",
    )
    return twin, mapping


def hidden(ctx: Ctx) -> None:
    """B's object answers 404, word for word as an object that never existed does."""
    assert ctx.response.status_code == 404, ctx.fail("expected 404 for another project's object")
    if ctx.response.headers.get("content-type", "").startswith("application/json"):
        assert ctx.response.json().get("error") == "not_found", ctx.fail("expected not_found")
    assert_nothing_of(ctx, ctx.world.b)
    twin, mapping = missing_twin(ctx.probe, ctx.world.b)
    missing = send(ctx.client, twin, ctx.headers)
    back = {new: old for old, new in mapping.items()}
    assert (missing.status_code, _swap(missing.text, back)) == (404, ctx.response.text), ctx.fail(
        f"differs from the answer for an object that never existed, so B's ids can be "
        f"told apart: {missing.status_code} {missing.text[:300]!r}"
    )


def clean(*present: str) -> Expect:
    """A 200 that shows A's ``present`` attributes (so the check can fail) and nothing of B."""

    def check(ctx: Ctx) -> None:
        assert ctx.response.status_code == 200, ctx.fail("expected 200")
        for attribute in present:
            value = str(getattr(ctx.world.a, attribute))
            assert value in ctx.response.text, ctx.fail(f"A's own {attribute} {value} is missing")
        assert_nothing_of(ctx, ctx.world.b)

    return check


def empty_page(ctx: Ctx) -> None:
    """A filter naming B's model, group or dataset matches nothing."""
    clean()(ctx)
    body = ctx.response.json()
    assert body["total"] == 0 and body["items"] == [], ctx.fail("expected an empty page")


def no_rows(ctx: Ctx) -> None:
    """A filter naming B's labels matches nothing (a list, or totals' rows)."""
    clean()(ctx)
    body = ctx.response.json()
    rows = body["rows"] if isinstance(body, dict) else body
    assert rows == [], ctx.fail("expected no rows")


def admin_only(ctx: Ctx) -> None:
    """A project key is not the admin token."""
    assert ctx.response.status_code in (401, 403), ctx.fail("a project key reached an admin route")
    assert_nothing_of(ctx, ctx.world.b)


def taken_id(ctx: Ctx) -> None:
    """Creating a run with B's run id cannot succeed and must not show B's run.

    Run ids are client-made UUIDs in one key space for all projects. The refusal is 404, like
    every other access to B's data (it was 409 "already in use" before issue 16); it still
    differs from the 201 a fresh id gets, but random UUIDs cannot be enumerated, and nothing
    else of B's leaks.
    """
    assert ctx.response.status_code in (404, 409), ctx.fail("B's run id was accepted")
    assert_nothing_of(ctx, ctx.world.b)


def profile_kept_apart(ctx: Ctx) -> None:
    """A profile with the name and version of B's is A's own: no 409 against B's."""
    assert ctx.response.status_code == 201, ctx.fail("expected A's own new profile")
    assert ctx.response.json()["id"] != ctx.world.b.profile["id"], ctx.fail("got B's profile")
    assert_nothing_of(ctx, ctx.world.b)


def own_change(ctx: Ctx) -> None:
    """A change to A's own settings (its webhook) succeeds and shows nothing of B."""
    assert 200 <= ctx.response.status_code < 300, ctx.fail("expected success on A's own")
    assert_nothing_of(ctx, ctx.world.b)


def budget_of_a_alone(ctx: Ctx) -> None:
    """A budget for a group named like B's is A's: it counts none of B's runs."""
    assert ctx.response.status_code in (200, 201), ctx.fail("expected A's own budget")
    body = ctx.response.json()
    assert body["id"] != ctx.world.b.budget_id, ctx.fail("got B's budget")
    assert (body["runs"], body["spent"]["kwh"]) == (0, 0.0), ctx.fail("counts B's runs")
    assert_nothing_of(ctx, ctx.world.b)


def codecarbon_run_is_as(ctx: Ctx) -> None:
    """A CodeCarbon run made with A's key belongs to A."""
    assert ctx.response.status_code == 201, ctx.fail("expected 201")
    run_id = ctx.response.json()["id"]
    mine = ctx.client.get(f"/api/v1/runs/{run_id}", headers=ctx.world.a.keys.read)
    assert mine.status_code == 200 and mine.json()["project_id"] == ctx.world.a.id, ctx.fail(
        "the new run is not A's"
    )
    theirs = ctx.client.get(f"/api/v1/runs/{run_id}", headers=ctx.world.b.keys.read)
    assert theirs.status_code == 404, ctx.fail("B's key sees A's new run")


# --- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """How an operation is called, and who may call it.

    ``auth``: ``key`` (a project key as ``Authorization: Bearer``), ``codecarbon`` (a write key
    in ``x-api-token``), ``dashboard`` (a project key in the ``greenaudit_key`` cookie or as a
    bearer) or ``admin`` (the admin token as the bearer). ``attacks`` are A's calls on B's
    objects; ``own`` is a well-formed call on A's own objects that its rightful credential makes
    with success, used to show that a refusal is about the credential.
    """

    auth: str
    write: bool
    attacks: Callable[[World], list[Probe]]
    own: Callable[[World], Probe]


RUN_KINDS = ("running run", "finished run", "CodeCarbon run")


def _runs_of_b(method: str, template: str, **kw: Any) -> Callable[[World], list[Probe]]:
    """The call on each of B's runs (running, finished, made through CodeCarbon): 404."""
    return lambda w: [
        Probe(method, template, {"run_id": run}, expect=hidden, why=why, **kw)
        for run, why in zip(w.b.run_ids, RUN_KINDS, strict=True)
    ]


def _own_run(method: str, template: str, **kw: Any) -> Callable[[World], Probe]:
    return lambda w: Probe(method, template, {"run_id": w.a.run}, **kw)


def _run_route(method: str, template: str, write: bool, **kw: Any) -> Case:
    """A route on one run, called alike on B's runs (404) and on A's own."""
    return Case("key", write, _runs_of_b(method, template, **kw), _own_run(method, template, **kw))


def _one_call(auth: str, method: str, template: str, write: bool, expect: Expect) -> Case:
    """A route with no id in its path: A's one call, checked by ``expect``, and A's own."""
    return Case(
        auth,
        write,
        lambda w: [Probe(method, template, expect=expect)],
        lambda w: Probe(method, template),
    )


def _by_id(method: str, template: str, write: bool, param: str, of: Callable[[Side], str]) -> Case:
    """A route on one object, its id ``of`` a side in ``param``: B's is hidden (404), A's works."""
    return Case(
        "key",
        write,
        lambda w: [Probe(method, template, {param: of(w.b)}, expect=hidden)],
        lambda w: Probe(method, template, {param: of(w.a)}),
    )


RUNS = "/api/v1/runs"
RUN = "/api/v1/runs/{run_id}"
PROJECTS = "/api/v1/projects"
PROJECT = "/api/v1/projects/{project_id}"
KEYS = "/api/v1/projects/{project_id}/keys"
REVOKE = "/api/v1/projects/{project_id}/keys/{key_id}/revoke"
PROFILES = "/api/v1/datasets/profiles"
BUDGETS = "/api/v1/budgets"
BUDGET = "/api/v1/budgets/{budget_id}"
ALERTS = "/api/v1/alerts"
WEBHOOK = "/api/v1/webhook"
TOTALS = "/api/v1/totals"
CURVES = "/api/v1/analytics/diminishing-returns"
NOFADE = "/api/v1/analytics/nofade"
NEW_FLOPS = {"flops": 123.0, "meta": {"touched": "by-alpha"}}
NEW_SAMPLE = {"samples": [sample(100)]}
NEW_POINT = {"points": [point(50, 0.9)]}


def _filters_of_b(
    method: str, template: str, unfiltered: Expect, empty: Expect, **fixed: Any
) -> Callable[[World], list[Probe]]:
    """A list or aggregate: A's data without a filter, and B's project or labels as filters."""

    def probes(w: World) -> list[Probe]:
        def with_(**params: Any) -> dict[str, Any]:
            return {**fixed, **params}

        return [
            Probe(method, template, params=with_(), expect=unfiltered, why="no filter"),
            Probe(method, template, params=with_(project=w.b.name), expect=hidden),
            Probe(method, template, params=with_(project=w.b.id), expect=hidden),
            Probe(method, template, params=with_(model=w.b.model), expect=empty),
            Probe(method, template, params=with_(dataset=w.b.dataset), expect=empty),
            Probe(method, template, params=with_(group=w.b.group), expect=empty),
        ]

    return probes


def _runs_list(w: World) -> list[Probe]:
    finished = Probe(
        "GET", RUNS, params={"status": "finished"}, expect=clean("finished"), why="finished"
    )
    return [*_filters_of_b("GET", RUNS, clean("run", "finished"), empty_page)(w), finished]


def _create_run(w: World) -> list[Probe]:
    def body(**overrides: Any) -> dict[str, Any]:
        return run_body(name="alpha-new-run", model=w.a.model, **overrides)

    return [
        Probe("POST", RUNS, json=body(project=w.b.name), expect=hidden, why="B's project name"),
        Probe("POST", RUNS, json=body(project=w.b.id), expect=hidden, why="B's project id"),
        Probe("POST", RUNS, json=body(parent_run_id=w.b.run), expect=hidden, why="B's parent"),
        Probe("POST", RUNS, json=body(id=w.b.run), expect=taken_id, why="B's run id"),
    ]


def _admin(method: str, template: str, body: Any = None) -> Callable[[World], list[Probe]]:
    """An admin route called with A's write key, for B's project and for A's own."""

    def probes(w: World) -> list[Probe]:
        out = []
        for side, whose in ((w.b, "B's project"), (w.a, "A's own project")):
            params = {"project_id": side.id, "key_id": side.second_key["id"]}
            used = {k: v for k, v in params.items() if "{" + k + "}" in template}
            out.append(Probe(method, template, used, json=body, expect=admin_only, why=whose))
        return out

    return probes


def _own_admin(method: str, template: str, body: Any = None) -> Callable[[World], Probe]:
    def probe(w: World) -> Probe:
        params = {"project_id": w.a.id, "key_id": w.a.second_key["id"]}
        used = {k: v for k, v in params.items() if "{" + k + "}" in template}
        return Probe(method, template, used, json=body)

    return probe


CASES: dict[Op, Case] = {
    # Projects and keys: the admin token only; GET of one project is for the project's own key.
    ("POST", PROJECTS): Case(
        "admin",
        True,
        lambda w: [Probe("POST", PROJECTS, json={"name": "made-by-alpha"}, expect=admin_only)],
        lambda w: Probe("POST", PROJECTS, json={"name": "made-by-admin"}),
    ),
    ("GET", PROJECTS): _one_call("admin", "GET", PROJECTS, False, admin_only),
    ("GET", PROJECT): _by_id("GET", PROJECT, False, "project_id", lambda side: side.id),
    ("POST", KEYS): Case(
        "admin",
        True,
        _admin("POST", KEYS, {"scope": "write", "name": "made-by-alpha"}),
        _own_admin("POST", KEYS, {"scope": "read"}),
    ),
    ("GET", KEYS): Case("admin", False, _admin("GET", KEYS), _own_admin("GET", KEYS)),
    ("POST", REVOKE): Case("admin", True, _admin("POST", REVOKE), _own_admin("POST", REVOKE)),
    # Runs.
    ("POST", RUNS): Case(
        "key",
        True,
        _create_run,
        lambda w: Probe("POST", RUNS, json=run_body(name="alpha-new-run", project=w.a.name)),
    ),
    ("GET", RUNS): Case("key", False, _runs_list, lambda w: Probe("GET", RUNS)),
    ("GET", RUN): _run_route("GET", RUN, False),
    ("PATCH", RUN): _run_route("PATCH", RUN, True, json=NEW_FLOPS),
    ("POST", RUN + "/finish"): Case(
        "key",
        True,
        _runs_of_b("POST", RUN + "/finish", json={**FINISH, "status": "failed"}),
        _own_run("POST", RUN + "/finish", json=FINISH),
    ),
    ("POST", RUN + "/heartbeat"): _run_route("POST", RUN + "/heartbeat", True),
    ("POST", RUN + "/energy"): _run_route("POST", RUN + "/energy", True, json=NEW_SAMPLE),
    ("GET", RUN + "/energy"): _run_route("GET", RUN + "/energy", False),
    ("POST", RUN + "/metrics"): _run_route("POST", RUN + "/metrics", True, json=NEW_POINT),
    ("GET", RUN + "/metrics"): Case(
        "key",
        False,
        lambda w: [
            *_runs_of_b("GET", RUN + "/metrics")(w),
            *_runs_of_b("GET", RUN + "/metrics", params={"name": "accuracy"})(w),
        ],
        _own_run("GET", RUN + "/metrics"),
    ),
    # Datasets.
    ("POST", PROFILES): Case(
        "key",
        True,
        lambda w: [
            Probe(
                "POST",
                PROFILES,
                json={"name": w.b.profile["name"], "version": "v1", "class_counts": [1, 1]},
                expect=profile_kept_apart,
                why="the name and version of B's profile, other counts",
            )
        ],
        lambda w: Probe("POST", PROFILES, json={"name": "alpha-other", "num_classes": 10}),
    ),
    ("GET", PROFILES): Case(
        "key",
        False,
        lambda w: [
            Probe("GET", PROFILES, expect=clean("dataset"), why="no filter"),
            Probe("GET", PROFILES, params={"name": w.b.profile["name"]}, expect=no_rows),
        ],
        lambda w: Probe("GET", PROFILES),
    ),
    # Totals and analytics: aggregates over the key's project only.
    ("GET", TOTALS): Case(
        "key",
        False,
        lambda w: [
            *_filters_of_b("GET", TOTALS, clean("name"), no_rows, by="project")(w),
            Probe("GET", TOTALS, params={"by": "model"}, expect=clean("model")),
            Probe("GET", TOTALS, params={"by": "dataset"}, expect=clean("dataset")),
        ],
        lambda w: Probe("GET", TOTALS),
    ),
    ("GET", CURVES): Case(
        "key",
        False,
        lambda w: [
            *_filters_of_b("GET", CURVES, clean("run", "finished"), clean(), include_runs=True)(w),
            Probe(
                "GET",
                CURVES,
                params={"include_runs": True, "include_published": True, "x": "energy_kwh"},
                expect=clean("run", "finished"),
                why="with the published catalog",
            ),
        ],
        lambda w: Probe("GET", CURVES),
    ),
    ("GET", NOFADE): Case(
        "key",
        False,
        lambda w: [
            *_filters_of_b("GET", NOFADE, clean("run", "finished"), clean())(w),
            Probe(
                "GET",
                NOFADE,
                params={"include_published": True, "group_by": "task"},
                expect=clean("run", "finished"),
                why="with the published catalog",
            ),
        ],
        lambda w: Probe("GET", NOFADE),
    ),
    ("GET", RUN + "/cost"): _run_route("GET", RUN + "/cost", False),
    ("GET", RUN + "/forecast"): _run_route("GET", RUN + "/forecast", False),
    # Budgets, alerts and the webhook: each project's own.
    ("POST", BUDGETS): Case(
        "key",
        True,
        lambda w: [
            Probe(
                "POST",
                BUDGETS,
                json={"group": w.b.group, "limit_kwh": 5.0},
                expect=budget_of_a_alone,
                why="B's group name",
            )
        ],
        lambda w: Probe("POST", BUDGETS, json={"group": w.a.group, "limit_kwh": 5.0}),
    ),
    ("GET", BUDGETS): _one_call("key", "GET", BUDGETS, False, clean("budget_id", "group")),
    ("GET", BUDGET): _by_id("GET", BUDGET, False, "budget_id", lambda side: side.budget_id),
    ("DELETE", BUDGET): _by_id("DELETE", BUDGET, True, "budget_id", lambda side: side.budget_id),
    ("GET", ALERTS): Case(
        "key",
        False,
        lambda w: [
            Probe("GET", ALERTS, expect=clean("budget_id", "group")),
            Probe("GET", ALERTS, params={"run_id": w.b.run}, expect=empty_page),
        ],
        lambda w: Probe("GET", ALERTS),
    ),
    ("PUT", WEBHOOK): Case(
        "key",
        True,
        lambda w: [
            Probe(
                "PUT",
                WEBHOOK,
                json={"url": webhook_url("alpha-new"), "secret": WEBHOOK_SECRET},
                expect=own_change,
            )
        ],
        lambda w: Probe(
            "PUT", WEBHOOK, json={"url": webhook_url("alpha-new"), "secret": WEBHOOK_SECRET}
        ),
    ),
    ("GET", WEBHOOK): _one_call("key", "GET", WEBHOOK, False, clean("webhook_url")),
    ("DELETE", WEBHOOK): _one_call("key", "DELETE", WEBHOOK, True, own_change),
    ("GET", RUN + "/returns"): Case(
        "key",
        False,
        lambda w: [
            *_runs_of_b("GET", RUN + "/returns")(w),
            *_runs_of_b("GET", RUN + "/returns", params={"metric": "accuracy"})(w),
        ],
        _own_run("GET", RUN + "/returns"),
    ),
    # CodeCarbon's endpoints: a write key in x-api-token.
    ("POST", "/codecarbon/runs"): Case(
        "codecarbon",
        True,
        lambda w: [
            Probe("POST", "/codecarbon/runs", json=codecarbon_run(), expect=codecarbon_run_is_as)
        ],
        lambda w: Probe("POST", "/codecarbon/runs", json=codecarbon_run()),
    ),
    ("POST", "/codecarbon/emissions"): Case(
        "codecarbon",
        True,
        lambda w: [
            Probe(
                "POST",
                "/codecarbon/emissions",
                json=codecarbon_emission(run),
                expect=hidden,
                why=why,
            )
            for run, why in ((w.b.codecarbon_run, "B's CodeCarbon run"), (w.b.run, "B's run"))
        ],
        lambda w: Probe(
            "POST", "/codecarbon/emissions", json=codecarbon_emission(w.a.codecarbon_run)
        ),
    ),
    # Dashboards: HTML pages, the key in a cookie or as a bearer.
    ("GET", "/dashboards/"): Case(
        "dashboard",
        False,
        lambda w: [
            Probe("GET", "/dashboards/", expect=clean("name", "model", "dataset")),
            Probe("GET", "/dashboards/", params={"period": "7"}, expect=clean("name")),
        ],
        lambda w: Probe("GET", "/dashboards/"),
    ),
    ("GET", "/dashboards/runs"): Case(
        "dashboard",
        False,
        lambda w: [
            Probe("GET", "/dashboards/runs", expect=clean("run", "run_name", "model")),
            Probe(
                "GET", "/dashboards/runs", params={"status": "finished"}, expect=clean("finished")
            ),
            Probe("GET", "/dashboards/runs", params={"model": w.b.model}, expect=clean()),
        ],
        lambda w: Probe("GET", "/dashboards/runs"),
    ),
    ("GET", "/dashboards/runs/{run_id}"): Case(
        "dashboard",
        False,
        _runs_of_b("GET", "/dashboards/runs/{run_id}"),
        _own_run("GET", "/dashboards/runs/{run_id}"),
    ),
    ("GET", "/dashboards/curves"): Case(
        "dashboard",
        False,
        lambda w: [
            Probe("GET", "/dashboards/curves", expect=clean("run_name")),
            Probe("GET", "/dashboards/curves", params={"published": True}, expect=clean()),
        ],
        lambda w: Probe("GET", "/dashboards/curves"),
    ),
    ("GET", "/dashboards/nofade"): Case(
        "dashboard",
        False,
        lambda w: [Probe("GET", "/dashboards/nofade", expect=clean("dataset"))],
        lambda w: Probe("GET", "/dashboards/nofade"),
    ),
}

UNAUTHENTICATED: dict[Op, str] = {
    ("GET", "/healthz"): "liveness for load balancers; answers only status and version",
    ("GET", "/metrics"): "Prometheus scrape target; labels are route templates, never ids "
    "(test_public_routes_need_no_key_and_show_no_project checks)",
    ("GET", "/openapi.json"): "the public API description",
    ("GET", "/docs"): "Swagger UI, a static page around /openapi.json",
    ("GET", "/docs/oauth2-redirect"): "Swagger UI's static OAuth2 helper page",
    ("GET", "/redoc"): "ReDoc, a static page around /openapi.json",
    ("GET", "/dashboards/login"): "the sign-in form itself",
    ("POST", "/dashboards/login"): "takes the key in its form and checks it: 401 page otherwise",
    ("POST", "/dashboards/logout"): "only clears the key cookie",
    ("GET", "/dashboards/static/plotly.min.js"): "plotly's library, a static file",
    ("GET", "/dashboards/static/dashboards.js"): "the dashboards' script, a static file",
}

PROJECT_KEY_AUTH = ("key", "codecarbon", "dashboard")
OPS = sorted(CASES)
PROJECT_KEY_OPS = [op for op in OPS if CASES[op].auth in PROJECT_KEY_AUTH]
WRITE_OPS = [op for op in PROJECT_KEY_OPS if CASES[op].write]
NON_PUBLIC_OPS = OPS


def op_id(op: Op) -> str:
    return f"{op[0]} {op[1]}"


# --- sending ----------------------------------------------------------------------------------


def credential(auth: str, secret: str, transport: str = "bearer") -> dict[str, str]:
    if auth == "codecarbon":
        return {"x-api-token": secret}
    if auth == "dashboard" and transport == "cookie":
        return {"Cookie": f"greenaudit_key={secret}"}
    return {"Authorization": f"Bearer {secret}"}


def transports(auth: str) -> tuple[str, ...]:
    return ("bearer", "cookie") if auth == "dashboard" else ("bearer",)


def send(client: TestClient, probe: Probe, headers: dict[str, str]) -> httpx.Response:
    # Requests carry their credential themselves; the client's cookie jar must not add one.
    client.cookies.clear()
    return client.request(
        probe.method,
        probe.url,
        params=probe.params,
        json=probe.json,
        headers=headers,
        follow_redirects=False,
    )


def rightful(case: Case, side: Side) -> str:
    return ADMIN_TOKEN if case.auth == "admin" else side.write_key


def assert_succeeds(client: TestClient, case: Case, probe: Probe, secret: str) -> None:
    """The control: the same call with a credential that may make it succeeds."""
    response = send(client, probe, credential(case.auth, secret))
    assert 200 <= response.status_code < 300, (
        f"control call {probe.describe()} with a valid credential failed, so the refusal above "
        f"proves nothing: {response.status_code} {response.text[:300]}"
    )


def assert_unauthenticated(case: Case, probe: Probe, response: httpx.Response, what: str) -> None:
    """401; the dashboards' pages answer a browser (a cookie, no bearer) with the sign-in page."""
    bearer = "authorization" in response.request.headers
    if case.auth == "dashboard" and not bearer and response.status_code == 303:
        location = response.headers.get("location", "")
        assert location.startswith("/dashboards/login"), (
            f"{probe.describe()} with {what}: redirected to {location!r}, not the sign-in page"
        )
        return
    assert response.status_code == 401, (
        f"{probe.describe()} with {what}: expected 401, got {response.status_code} "
        f"{response.text[:300]!r}"
    )
    if response.headers.get("content-type", "").startswith("application/json"):
        assert response.json().get("error") == "unauthorized", response.text


# --- snapshots -----------------------------------------------------------------------------------


def stored_rows(engine: Engine, project_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row that belongs to a project, in every table that has an owner column."""
    pid = uuid.UUID(project_id)
    run = Base.metadata.tables["run"]
    runs_of_project = select(run.c.id).where(run.c.project_id == pid)
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            if table.name == "project":
                condition = table.c.id == pid
            elif "project_id" in table.c:
                condition = table.c.project_id == pid
            elif "run_id" in table.c:
                condition = table.c.run_id.in_(runs_of_project)
            else:  # not owned by a project, so no project's data
                continue
            columns = [c for c in table.c if c.name not in VOLATILE_COLUMNS]
            query = select(*columns).where(condition).order_by(*table.primary_key.columns)
            rows[table.name] = [tuple(row) for row in connection.execute(query)]
    return rows


def api_view(client: TestClient, side: Side) -> dict[str, Any]:
    """What the project's own key reads of it: each run's detail and series, lists, keys."""
    headers = side.keys.write
    client.cookies.clear()
    view: dict[str, Any] = {}
    for run in side.run_ids:
        view[run] = [
            _ok(client.get(f"/api/v1/runs/{run}", headers=headers), 200),
            _ok(client.get(f"/api/v1/runs/{run}/energy", headers=headers), 200),
            _ok(client.get(f"/api/v1/runs/{run}/metrics", headers=headers), 200),
        ]
    view["runs"] = _ok(client.get(RUNS, params={"limit": 500}, headers=headers), 200)
    view["profiles"] = _ok(client.get(PROFILES, headers=headers), 200)
    keys = _ok(client.get(f"/api/v1/projects/{side.id}/keys", headers=ADMIN), 200)
    view["keys"] = [{k: v for k, v in key.items() if k not in VOLATILE_COLUMNS} for key in keys]
    view["projects"] = _ok(client.get(PROJECTS, headers=ADMIN), 200)
    return view


def snapshot(client: TestClient, engine: Engine, side: Side) -> dict[str, Any]:
    return {"api": api_view(client, side), "rows": stored_rows(engine, side.id)}


def assert_unchanged(before: dict[str, Any], after: dict[str, Any], side: Side, by: str) -> None:
    for part in ("rows", "api"):
        for name in before[part]:
            assert after[part].get(name) == before[part][name], (
                f"project {side.name}'s {name} ({part}) changed after {by}"
            )


# --- the tests ---------------------------------------------------------------------------------


def served_operations(app: FastAPI) -> set[Op]:
    """Every (METHOD, path) the app answers: its OpenAPI document and the routes left out of it."""
    operations = {
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    for route in _flat_routes(app.routes):
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None)
        if path is None:
            continue
        if not methods:  # a mount or a websocket: it needs a case all the same
            operations.add((type(getattr(route, "original_route", route)).__name__, path))
            continue
        for method in methods:
            if method != "HEAD" or "GET" not in methods:  # Starlette adds HEAD to each GET
                operations.add((method, path))
    return operations


def test_every_route_has_an_isolation_case(client: TestClient):
    served = served_operations(client.app)  # type: ignore[arg-type]
    cased = set(CASES) | set(UNAUTHENTICATED)
    assert not set(CASES) & set(UNAUTHENTICATED)
    missing = sorted(served - cased)
    assert not missing, (
        "routes without an isolation case; add each to CASES (how A's key is refused B's "
        "objects) or to UNAUTHENTICATED (with the reason it needs no key): "
        + ", ".join(map(op_id, missing))
    )
    stale = sorted(cased - served)
    assert not stale, "isolation cases for routes the app no longer serves: " + ", ".join(
        map(op_id, stale)
    )
    assert len(served) == len(CASES) + len(UNAUTHENTICATED)


@pytest.mark.parametrize("op", OPS, ids=op_id)
def test_a_key_of_project_a_cannot_reach_project_b(
    op: Op, client: TestClient, engine: Engine, world: World
):
    case = CASES[op]
    before = snapshot(client, engine, world.b)
    probes = case.attacks(world)
    assert probes and all((p.method, p.template) == op for p in probes), op_id(op)
    for probe in probes:
        assert probe.expect is not None, probe.describe()
        for transport in transports(case.auth):
            write = credential(case.auth, world.a.write_key, transport)
            read = credential(case.auth, world.a.read_key, transport)
            response = send(client, probe, write)
            probe.expect(Ctx(client, world, probe, response, write))
            response = send(client, probe, read)
            ctx = Ctx(client, world, probe, response, read)
            if case.write and case.auth != "admin":
                # A's read key: refused for its scope, or the same 404; never a change.
                assert response.status_code in (403, 404), ctx.fail("A's read key")
                assert_nothing_of(ctx, world.b)
            else:
                probe.expect(ctx)
    assert_unchanged(before, snapshot(client, engine, world.b), world.b, f"A's {op_id(op)}")
    # B's second key, which A's key tried to revoke on admin routes, still works.
    second = {"Authorization": f"Bearer {world.b.second_key['key']}"}
    assert client.get(RUNS, headers=second).status_code == 200


def test_project_b_is_unchanged_after_all_of_as_attempts(
    client: TestClient, engine: Engine, world: World
):
    before = snapshot(client, engine, world.b)
    for op in OPS:
        case = CASES[op]
        for probe in case.attacks(world):
            for secret in (world.a.write_key, world.a.read_key):
                send(client, probe, credential(case.auth, secret))
    assert_unchanged(before, snapshot(client, engine, world.b), world.b, "every attempt of A's")


@pytest.mark.parametrize("op", WRITE_OPS, ids=op_id)
def test_a_read_key_cannot_write(op: Op, client: TestClient, engine: Engine, world: World):
    case = CASES[op]
    probe = case.own(world)
    before = snapshot(client, engine, world.a)
    response = send(client, probe, credential(case.auth, world.a.read_key))
    assert response.status_code == 403, (
        f"{probe.describe()} with A's read key: expected 403, got {response.status_code} "
        f"{response.text[:300]!r}"
    )
    assert response.json()["error"] == "forbidden"
    assert_unchanged(before, snapshot(client, engine, world.a), world.a, f"read-key {op_id(op)}")
    assert_succeeds(client, case, probe, world.a.write_key)


@pytest.fixture
def revoked_key(client: TestClient, world: World) -> str:
    """A third key of A's, a write key, shown to work and then revoked by the admin."""
    issued = _ok(
        client.post(f"/api/v1/projects/{world.a.id}/keys", json={"scope": "write"}, headers=ADMIN),
        201,
    )
    headers = {"Authorization": f"Bearer {issued['key']}"}
    assert client.get(RUNS, headers=headers).status_code == 200
    revoke = f"/api/v1/projects/{world.a.id}/keys/{issued['id']}/revoke"
    assert _ok(client.post(revoke, headers=ADMIN), 200)["revoked_at"] is not None
    return str(issued["key"])


# Credentials are checked by one key look-up before any route touches data, the same query on
# both databases (tests/api/test_projects_and_keys.py runs it on each); these families, two
# hundred requests a backend, run on SQLite.
AUTH_ONLY = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)


@AUTH_ONLY
@pytest.mark.parametrize("op", PROJECT_KEY_OPS, ids=op_id)
def test_a_revoked_key_gets_401(
    op: Op, client: TestClient, engine: Engine, world: World, revoked_key: str
):
    case = CASES[op]
    probe = case.own(world)
    before = snapshot(client, engine, world.a)
    for transport in transports(case.auth):
        response = send(client, probe, credential(case.auth, revoked_key, transport))
        assert_unauthenticated(case, probe, response, f"a revoked key ({transport})")
        assert_nothing_of(Ctx(client, world, probe, response), world.a)
    assert_unchanged(before, snapshot(client, engine, world.a), world.a, f"revoked {op_id(op)}")
    assert_succeeds(client, case, probe, rightful(case, world.a))


def bad_credentials(case: Case, side: Side) -> list[tuple[str, dict[str, str]]]:
    """Missing and malformed credentials for the case's way of sending one."""
    valid = rightful(case, side)
    tampered = valid[:-4] + ("AAAA" if not valid.endswith("AAAA") else "BBBB")
    if case.auth == "codecarbon":
        return [
            ("no x-api-token", {}),
            ("an empty x-api-token", {"x-api-token": ""}),
            ("a malformed x-api-token", {"x-api-token": "not-a-key"}),
            ("an unknown key", {"x-api-token": "ga_000000000000_" + "x" * 43}),
            ("a tampered key", {"x-api-token": tampered}),
            ("the key as a bearer instead", {"Authorization": f"Bearer {valid}"}),
        ]
    bad = [
        ("no Authorization", {}),
        ("an empty Authorization", {"Authorization": ""}),
        ("the Basic scheme", {"Authorization": f"Basic {valid}"}),
        ("no scheme", {"Authorization": valid}),
        ("an empty bearer", {"Authorization": "Bearer "}),
        ("a malformed bearer", {"Authorization": "Bearer not-a-key"}),
        ("an unknown key", {"Authorization": "Bearer ga_000000000000_" + "x" * 43}),
        ("a tampered key", {"Authorization": f"Bearer {tampered}"}),
    ]
    if case.auth == "dashboard":
        bad += [
            ("a malformed cookie", {"Cookie": "greenaudit_key=not-a-key"}),
            ("a tampered cookie", {"Cookie": f"greenaudit_key={tampered}"}),
        ]
    return bad


@AUTH_ONLY
@pytest.mark.parametrize("op", NON_PUBLIC_OPS, ids=op_id)
def test_a_missing_or_malformed_credential_gets_401(
    op: Op, client: TestClient, engine: Engine, world: World
):
    case = CASES[op]
    probe = case.own(world)
    before = snapshot(client, engine, world.a)
    for what, headers in bad_credentials(case, world.a):
        response = send(client, probe, headers)
        assert_unauthenticated(case, probe, response, what)
    assert_unchanged(before, snapshot(client, engine, world.a), world.a, f"bad {op_id(op)}")
    assert_succeeds(client, case, probe, rightful(case, world.a))


@AUTH_ONLY
@pytest.mark.parametrize("op", sorted(UNAUTHENTICATED), ids=op_id)
def test_public_routes_need_no_key_and_show_no_project(op: Op, client: TestClient, world: World):
    method, path = op
    # Some traffic of each project first, so /metrics has had the chance to record ids.
    for side in (world.a, world.b):
        client.get(f"/api/v1/runs/{side.run}", headers=side.keys.read)
        client.get(f"/dashboards/runs/{side.run}", headers=side.keys.read)
    data = {"key": "not-a-key", "next": "/dashboards/"} if method == "POST" else None
    client.cookies.clear()
    response = client.request(method, path, data=data, follow_redirects=False)
    expected = {("POST", "/dashboards/login"): 401, ("POST", "/dashboards/logout"): 303}
    assert response.status_code == expected.get(op, 200), (
        f"{op_id(op)} without a key: {response.status_code} {response.text[:300]!r}"
    )
    assert "greenaudit_key=" not in response.headers.get("set-cookie", "").replace(
        'greenaudit_key=""', ""
    ), f"{op_id(op)} set a key cookie without a valid key"
    text = response.text.lower()
    for side in (world.a, world.b):
        ids = [side.id, *side.run_ids, side.profile["id"], side.second_key["id"]]
        markers = [*side.secrets(), *(i.replace("-", "") for i in ids)]
        leaked = [s for s in markers if s.lower() in text]
        assert not leaked, f"{op_id(op)} shows project {side.name}'s {leaked}"


def test_dashboard_sign_in_cookie_is_isolated_too(client: TestClient, world: World):
    """The cookie that the sign-in form sets carries A's key, and with it B's pages are 404."""
    client.cookies.clear()
    signed_in = client.post(
        "/dashboards/login",
        data={"key": world.a.read_key, "next": "/dashboards/runs"},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303, signed_in.text
    assert "greenaudit_key" in client.cookies
    try:
        for run in world.b.run_ids:
            page = client.get(f"/dashboards/runs/{run}", follow_redirects=False)
            assert page.status_code == 404, f"B's run {run} through the sign-in cookie"
        mine = client.get(f"/dashboards/runs/{world.a.run}", follow_redirects=False)
        assert mine.status_code == 200
        listing = client.get("/dashboards/runs", follow_redirects=False)
        assert world.a.run_name in listing.text
        assert not [s for s in world.b.secrets() if s in listing.text]
    finally:
        client.cookies.clear()


def test_sign_in_refuses_a_revoked_key(client: TestClient, world: World, revoked_key: str):
    client.cookies.clear()
    response = client.post(
        "/dashboards/login",
        data={"key": revoked_key, "next": "/dashboards/"},
        follow_redirects=False,
    )
    assert response.status_code == 401
    assert "greenaudit_key" not in client.cookies
    client.cookies.clear()


def test_admin_cannot_revoke_a_key_through_another_projects_path(client: TestClient, world: World):
    """A key id is looked up within the project in the path: B's key is not A's to revoke."""
    path = f"/api/v1/projects/{world.a.id}/keys/{world.b.second_key['id']}/revoke"
    response = client.post(path, headers=ADMIN)
    assert response.status_code == 404, response.text
    second = {"Authorization": f"Bearer {world.b.second_key['key']}"}
    assert client.get(RUNS, headers=second).status_code == 200
    keys = _ok(client.get(f"/api/v1/projects/{world.b.id}/keys", headers=ADMIN), 200)
    assert all(key["revoked_at"] is None for key in keys)
    a_keys = _ok(client.get(f"/api/v1/projects/{world.a.id}/keys", headers=ADMIN), 200)
    assert world.b.second_key["id"] not in {key["id"] for key in a_keys}
