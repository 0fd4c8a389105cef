"""Runs with round numbers for the report tests, so every figure can be worked by hand.

Each energy sample (tests/api/helpers.sample) is 60 s: CPU 0.001 kWh (rapl), GPU 0.004 kWh
(nvml-counter, 2 GPUs), RAM 0.0005 kWh (codecarbon), 0.0055 kWh in all. At 50 g CO2e/kWh and
PUE 1.2 that is 0.0055 x 50 x 1.2 = 0.33 g = 0.00033 kg CO2e and 2 GPU-minutes per sample.

Ids are fixed, so the reports are the same on every database and every run of the suite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from greenaudit.api.app import create_app
from greenaudit.settings import Settings

from ..api.helpers import point, run_body, sample
from ..conftest import ProjectKeys, create_project, serving

GENERATED_AT = datetime(2026, 12, 2, 9, 30, tzinfo=timezone.utc)
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)

PRETRAIN = "00000000-0000-4000-8000-0000000000a0"
RUN = "00000000-0000-4000-8000-0000000000a1"
# Accuracy at steps 0..9, one point half-way through each minute's sample.
RUN_ACCURACY = [0.5, 0.7, 0.8, 0.85, 0.88, 0.899, 0.9, 0.9, 0.9, 0.9]
RUN_SAMPLES = 10
PRETRAIN_SAMPLES = 4

KWH_PER_SAMPLE = 0.0055
KG_PER_KWH = 50 * 1.2 / 1000

GROUP = "search-1"
GROUP_PRETRAIN = "00000000-0000-4000-8000-0000000000b0"
# (id, name, kind, samples, accuracy per step)
GROUP_RUNS = [
    ("00000000-0000-4000-8000-0000000000b1", "trial-1", "search-trial", 2, [0.6, 0.7]),
    ("00000000-0000-4000-8000-0000000000b2", "trial-2", "search-trial", 3, [0.6, 0.75, 0.8]),
    ("00000000-0000-4000-8000-0000000000b3", "trial-3", "search-trial", 4, [0.6, 0.7, 0.72, 0.75]),
    (
        "00000000-0000-4000-8000-0000000000b4",
        "final",
        "train",
        6,
        [0.6, 0.7, 0.8, 0.84, 0.85, 0.85],
    ),
]
GROUP_PRETRAIN_SAMPLES = 5


def rho(accuracy: float, classes: int) -> float:
    """ρ of greenaudit-1 on a uniform dataset of ``classes`` classes, worked from the formula."""
    error = 1 - accuracy
    h2 = -error * math.log2(error) - (1 - error) * math.log2(1 - error)
    remaining = h2 + error * math.log2(classes - 1)
    entropy = math.log2(classes)
    return (entropy - remaining) / entropy


def _add(
    client: TestClient,
    keys: ProjectKeys,
    *,
    samples: int,
    accuracy: list[float],
    minutes: int,
    **fields: Any,
) -> None:
    started = (T0 + timedelta(seconds=minutes)).isoformat()
    created = client.post(
        "/api/v1/runs", json=run_body(started_at=started, **fields), headers=keys.write
    )
    assert created.status_code == 201, created.text
    run_id = fields["id"]
    energy = client.post(
        f"/api/v1/runs/{run_id}/energy",
        json={"samples": [sample(i) for i in range(samples)]},
        headers=keys.write,
    )
    assert energy.status_code == 200, energy.text
    if accuracy:
        points = [point(step, value) for step, value in enumerate(accuracy)]
        metrics = client.post(
            f"/api/v1/runs/{run_id}/metrics", json={"points": points}, headers=keys.write
        )
        assert metrics.status_code == 200, metrics.text
    finished = client.post(
        f"/api/v1/runs/{run_id}/finish",
        json={
            "ended_at": (T0 + timedelta(minutes=samples)).isoformat(),
            "duration_s": 60.0 * samples,
        },
        headers=keys.write,
    )
    assert finished.status_code == 200, finished.text


def _profile(client: TestClient, keys: ProjectKeys) -> None:
    response = client.post(
        "/api/v1/datasets/profiles", json={"name": "cifar10", "num_classes": 10}, headers=keys.write
    )
    assert response.status_code in (200, 201), response.text


def _pretrain(client: TestClient, keys: ProjectKeys, run_id: str, samples: int) -> None:
    """A pre-training run on imagenet-subset with no metric, the parent of a fine-tune."""
    _add(
        client,
        keys,
        id=run_id,
        name="pretrain",
        dataset="imagenet-subset",
        samples=samples,
        accuracy=[],
        minutes=0,
    )


def seed_run(client: TestClient, keys: ProjectKeys) -> str:
    """A pre-training run, then a fine-tune of it on cifar10 with a plateau at step 5."""
    _profile(client, keys)
    _pretrain(client, keys, PRETRAIN, PRETRAIN_SAMPLES)
    _add(
        client,
        keys,
        id=RUN,
        name="resnet-a",
        kind="finetune",
        parent_run_id=PRETRAIN,
        samples=RUN_SAMPLES,
        accuracy=RUN_ACCURACY,
        minutes=1,
    )
    return RUN


def seed_group(client: TestClient, keys: ProjectKeys) -> str:
    """Three search trials and a final run in one group; the final run has a parent outside."""
    _profile(client, keys)
    _pretrain(client, keys, GROUP_PRETRAIN, GROUP_PRETRAIN_SAMPLES)
    for i, (run_id, name, kind, samples, accuracy) in enumerate(GROUP_RUNS):
        parent = {"parent_run_id": GROUP_PRETRAIN} if name == "final" else {}
        _add(
            client,
            keys,
            id=run_id,
            name=name,
            kind=kind,
            group=GROUP,
            samples=samples,
            accuracy=accuracy,
            minutes=i + 1,
            **parent,
        )
    return GROUP


@contextmanager
def serving_seeded(
    settings: Settings,
    engine: Engine,
    client: TestClient,
    seed: Callable[[TestClient, ProjectKeys], str],
) -> Iterator[tuple[str, ProjectKeys, str]]:
    """Project "vision" seeded by ``seed`` and served over HTTP: its URL, keys and seed's id."""
    keys = create_project(client, "vision")
    seeded = seed(client, keys)
    with serving(create_app(settings, engine)) as url:
        yield url, keys, seeded
