"""Schemathesis against `/openapi.json`, on both databases: no 5xx, no answer off its schema.

Every operation of the document gets generated requests, valid ones and invalid ones, with a
real key: the project's write key (the admin token on admin routes, the `x-api-token` header on
CodeCarbon's), and, for paths with a run id, sometimes the id of a real run so that valid
bodies reach the database. The number of examples per operation and mode is bounded so CI
stays quick; `GREENAUDIT_FUZZ_EXAMPLES` raises it for a longer local run.
"""

from __future__ import annotations

import os

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy import Engine

from greenaudit.api.app import create_app
from greenaudit.settings import Settings

from ..conftest import ADMIN_TOKEN, create_project
from .helpers import run_body

EXAMPLES = int(os.environ.get("GREENAUDIT_FUZZ_EXAMPLES", "10"))
CHECKS = [schemathesis.checks.not_a_server_error, response_schema_conformance]


def _admin_route(method: str, path: str) -> bool:
    return path == "/api/v1/projects" or (path.startswith("/api/v1/projects/") and "/keys" in path)


def _examples(strategy: SearchStrategy[schemathesis.Case], headers: dict[str, str]) -> list[int]:
    """Send up to EXAMPLES cases drawn from ``strategy``; returns their statuses.

    Raises on the first 5xx or answer off its schema, with the case to reproduce it.
    """
    seen: list[int] = []

    @hypothesis_settings(
        max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=strategy)
    def send(case: schemathesis.Case) -> None:
        response = case.call_and_validate(
            headers={**(case.headers or {}), **headers}, checks=CHECKS
        )
        seen.append(response.status_code)

    try:
        send()
    except Unsatisfiable:
        # Nothing of this operation can be made invalid (no parameters, no body).
        assert not seen
    return seen


def test_no_server_error_and_every_answer_fits_its_schema(settings: Settings, engine: Engine):
    # Rate limiting off: the fuzzer's burst is not what is under test here.
    app = create_app(settings.model_copy(update={"rate_limit": "off"}), engine)
    with TestClient(app) as client:
        keys = create_project(client, "fuzz")
        run = client.post("/api/v1/runs", json=run_body(), headers=keys.write).json()
        write_key = keys.write["Authorization"].split()[1]
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        sent: dict[str, int] = {}
        statuses: dict[int, int] = {}

        for operation in operations:
            label = f"{operation.method.upper()} {operation.path}"
            admin = _admin_route(operation.method.upper(), operation.path)
            strategies = [
                operation.as_strategy(generation_mode=mode)
                for mode in (
                    schemathesis.GenerationMode.POSITIVE,
                    schemathesis.GenerationMode.NEGATIVE,
                )
            ]
            if "{run_id}" in operation.path:
                strategies.append(operation.as_strategy(path_parameters={"run_id": run["id"]}))
            extra = {"x-api-token": write_key} if operation.path.startswith("/codecarbon") else {}
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN if admin else write_key}", **extra}
            for strategy in strategies:
                for status in _examples(strategy, headers):
                    sent[label] = sent.get(label, 0) + 1
                    statuses[status] = statuses.get(status, 0) + 1

    total = sum(sent.values())
    print(
        f"\nfuzz ({engine.dialect.name}): {len(operations)} operations, {total} requests, "
        f"statuses {dict(sorted(statuses.items()))}"
    )
    assert set(sent) == {f"{op.method.upper()} {op.path}" for op in operations}
    assert not [status for status in statuses if status >= 500]
