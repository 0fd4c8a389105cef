"""The client's one HTTP layer and its one exception root, against a real service."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

import greenaudit
from greenaudit.admin import project_keys
from greenaudit.client.measure import ComponentEnergy, EnergySample
from greenaudit.client.policy import BudgetExceeded
from greenaudit.client.transport import RejectedError, TransientError, classify
from greenaudit.errors import GreenauditError, ServiceError, ServiceNotConfigured
from greenaudit.http import ADMIN_TOKEN_HINT, API_KEY_HINT, ServiceHttp
from greenaudit.schemas import MeasurementMethod
from greenaudit.settings import Settings

from ..conftest import ADMIN_TOKEN, LiveServer, free_port


def test_every_client_error_has_one_root():
    for error in (BudgetExceeded, TransientError, RejectedError, ServiceError):
        assert issubclass(error, GreenauditError)
    # greenaudit flush caught ValueError before the root existed; it still does.
    assert issubclass(ServiceNotConfigured, ValueError)
    assert greenaudit.GreenauditError is GreenauditError
    assert greenaudit.ServiceError is ServiceError


def test_a_service_that_cannot_be_reached_is_one_clear_error():
    url = f"http://127.0.0.1:{free_port()}"
    with ServiceHttp(url, "ga_key", timeout_s=2.0) as http, pytest.raises(ServiceError) as caught:
        http.get("/runs")
    error = caught.value
    assert str(error).startswith(f"cannot reach {url}: ")
    assert error.unreachable and error.status_code is None
    assert (error.method, error.path) == ("GET", "/api/v1/runs")


def test_answers_and_refusals_of_a_real_service(live_server: LiveServer):
    run_id = str(uuid.uuid4())
    seen: list[str] = []
    with ServiceHttp(
        live_server.url + "/",  # a trailing slash is the same service
        live_server.write_key,
        on_request=lambda r: seen.append(f"{r.method} {r.url.raw_path.decode()}"),
    ) as http:
        created = http.post(
            "/runs",
            {
                "id": run_id,
                "started_at": "2026-12-01T10:00:00Z",
                "carbon_intensity_g_per_kwh": 56.0,
                "carbon_intensity_source": "test",
            },
        )
        assert created["id"] == run_id
        page = http.get("/runs", {"group": None, "limit": 5})
        assert [r["id"] for r in page["items"]] == [run_id]

        with pytest.raises(ServiceError) as missing:
            http.get(f"/runs/{uuid.uuid4()}")
        with pytest.raises(ServiceError) as invalid:
            http.post("/runs", {"id": "not-a-uuid", "started_at": "2026-12-01T10:00:00Z"})
    # Parameters that are None are left out of the query.
    assert seen[:2] == ["POST /api/v1/runs", "GET /api/v1/runs?limit=5"]

    assert missing.value.status_code == 404 and missing.value.code == "not_found"
    assert str(missing.value).startswith("not found (HTTP 404 on GET /api/v1/runs/")
    assert invalid.value.status_code == 422 and invalid.value.code == "validation_error"
    assert str(invalid.value).startswith("HTTP 422 on POST /api/v1/runs: body.id: ")
    assert isinstance(invalid.value.detail, list)

    with ServiceHttp(live_server.url, "ga_000000000000_wrong") as http:
        with pytest.raises(ServiceError) as refused:
            http.get("/runs")
    assert refused.value.status_code == 401 and refused.value.code == "unauthorized"
    assert str(refused.value).startswith(
        f"the service refused the key (HTTP 401 on GET /api/v1/runs): {API_KEY_HINT} ("
    )


def test_project_keys_creates_then_issues_fresh_keys(live_server: LiveServer):
    first = project_keys(live_server.url, ADMIN_TOKEN, "keys")
    again = project_keys(live_server.url, ADMIN_TOKEN, "keys")  # 409 on create: new keys
    assert len({*first, *again}) == 4
    for _write, read in (first, again):
        with ServiceHttp(live_server.url, read) as http:
            assert http.get("/runs")["total"] == 0
    with pytest.raises(ServiceError) as refused:
        project_keys(live_server.url, "wrong-admin-token-" + "y" * 24, "keys")
    assert refused.value.status_code == 401
    assert f"{ADMIN_TOKEN_HINT} (" in str(refused.value)


@pytest.mark.parametrize(
    ("status", "retried"),
    [(None, True), (500, True), (503, True), (408, True), (429, True), (401, True), (403, True)]
    + [(400, False), (404, False), (409, False), (413, False), (422, False)],
)
def test_the_transport_retries_what_may_pass_later_and_sets_aside_the_rest(
    status: int | None, retried: bool
):
    error = ServiceError(f"HTTP {status} on POST /api/v1/runs: x", status_code=status)
    classified = classify(error)
    assert isinstance(classified, TransientError if retried else RejectedError)
    assert str(classified) == str(error)


def test_from_settings_names_what_is_missing(tmp_path: Path):
    settings = Settings(home=tmp_path, url=None, api_key=None)  # type: ignore[call-arg]
    with pytest.raises(ServiceNotConfigured) as caught:
        ServiceHttp.from_settings(settings, purpose="(a read or write key) to query")
    assert str(caught.value) == (
        "set GREENAUDIT_URL and GREENAUDIT_API_KEY (a read or write key) to query"
    )
    for unusable in ("127.0.0.1:8000", "ftp://host", "http://"):
        with pytest.raises(ServiceError) as caught:
            ServiceHttp(unusable, "ga_key")
        assert str(caught.value).startswith(f"{unusable!r} is not a usable service URL: ")


def test_an_energy_sample_goes_on_the_wire_with_its_units():
    start = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
    sample = EnergySample(
        rank=1,
        seq=4,
        t_start=start,
        t_end=start + timedelta(seconds=10),
        # 1e-5 kWh over 10 s: 1e-5 x 3.6e6 J / 10 s = 3.6 W.
        cpu=ComponentEnergy(1e-5, 3.6, MeasurementMethod.rapl),
        gpu=ComponentEnergy(2e-4, 72.0, MeasurementMethod.nvml_counter),
        gpu_count=2,
        gpu_util_pct=87.5,
        step=12,
    )
    assert sample.duration_s == 10.0
    assert math.isclose(sample.energy_kwh, 2.1e-4, rel_tol=1e-12)
    assert [name for name, _ in sample.components()] == ["cpu", "gpu"]
    assert sample.to_wire().model_dump(mode="json", exclude_none=True) == {
        "rank": 1,
        "seq": 4,
        "t_start": "2026-12-01T10:00:00Z",
        "t_end": "2026-12-01T10:00:10Z",
        "cpu_kwh": 1e-5,
        "cpu_w": 3.6,
        "cpu_method": "rapl",
        "gpu_kwh": 2e-4,
        "gpu_w": 72.0,
        "gpu_method": "nvml-counter",
        "gpu_count": 2,
        "gpu_util_pct": 87.5,
        "step": 12,
    }
    backwards = EnergySample(rank=0, seq=0, t_start=start, t_end=start - timedelta(seconds=1))
    with pytest.raises(ValidationError, match="t_end is before t_start"):
        backwards.to_wire()
