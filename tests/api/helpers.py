"""Request bodies for API tests, with round numbers so expected totals can be worked by hand."""

from __future__ import annotations

import uuid
from typing import Any

T0 = "2026-12-01T10:00:00+00:00"


def run_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "name": "resnet-a",
        "kind": "train",
        "model": "resnet18",
        "dataset": "cifar10",
        "task": "classification",
        "primary_metric": "accuracy",
        "country_iso": "FRA",
        "carbon_intensity_g_per_kwh": 50.0,
        "carbon_intensity_source": "test fixture",
        "pue": 1.2,
        "started_at": T0,
        "hardware": {"node": "node-1", "gpu_count": 2, "gpu_model": "H100"},
    }
    body.update(overrides)
    return body


def sample(seq: int, rank: int = 0, **overrides: Any) -> dict[str, Any]:
    """A 60-second sample: cpu 0.001 kWh, gpu 0.004 kWh on 2 GPUs, ram 0.0005 kWh."""
    minute = 10 * 60 + seq
    body: dict[str, Any] = {
        "rank": rank,
        "seq": seq,
        "t_start": f"2026-12-01T{minute // 60:02d}:{minute % 60:02d}:00+00:00",
        "t_end": f"2026-12-01T{(minute + 1) // 60:02d}:{(minute + 1) % 60:02d}:00+00:00",
        "cpu_kwh": 0.001,
        "cpu_w": 60.0,
        "cpu_method": "rapl",
        "gpu_kwh": 0.004,
        "gpu_w": 240.0,
        "gpu_method": "nvml-counter",
        "gpu_count": 2,
        "ram_kwh": 0.0005,
        "ram_w": 30.0,
        "ram_method": "codecarbon",
        "step": seq * 10,
    }
    body.update(overrides)
    return body


def cpu_sample(seq: int, cpu_kwh: float, **overrides: Any) -> dict[str, Any]:
    """A sample of a machine without GPU, whose RAM is not measured: ``cpu_kwh`` kWh alone."""
    no_gpu_nor_ram = {
        "gpu_kwh": None,
        "gpu_method": None,
        "gpu_w": None,
        "gpu_count": 0,
        "ram_kwh": None,
        "ram_method": None,
        "ram_w": None,
    }
    return sample(seq, cpu_kwh=cpu_kwh, **{**no_gpu_nor_ram, **overrides})


def point(step: int, value: float, name: str = "accuracy") -> dict[str, Any]:
    return {
        "name": name,
        "step": step,
        "epoch": step,
        "value": value,
        "time": f"2026-12-01T10:{step:02d}:30+00:00",
    }
