"""A run as the service answers it: its facts, totals, samples, points and creation cost."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from .base import MeasurementMethod, RunKind, RunStatus


class RunTotals(BaseModel):
    """What a run has spent so far, summed over all its ranks and samples."""

    energy_kwh: float = Field(description="cpu_kwh + gpu_kwh + ram_kwh")
    cpu_kwh: float
    gpu_kwh: float
    ram_kwh: float
    co2_kg: float = Field(description="energy_kwh x carbon intensity x PUE")
    gpu_hours: float = Field(description="device-hours of the GPUs that were measured")
    energy_samples: int
    methods: dict[str, list[MeasurementMethod]] = Field(
        description="measurement methods used, per component (cpu, gpu, ram)"
    )
    j_per_sample: float | None = Field(
        description="joules per processed training sample, where the run reported samples_processed"
    )


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    project_id: uuid.UUID
    name: str | None
    kind: RunKind
    status: RunStatus
    model: str | None
    model_params: int | None
    flops: float | None
    dataset: str | None
    dataset_version: str | None
    dataset_size: int | None
    task: str | None
    primary_metric: str | None
    parent_run_id: uuid.UUID | None
    # The service reads ``group_name`` off the database row; a client reads ``group`` off the JSON.
    group: str | None = Field(validation_alias=AliasChoices("group_name", "group"))
    node: str | None
    world_size: int
    hardware: dict[str, Any]
    country_iso: str | None
    carbon_intensity_g_per_kwh: float
    carbon_intensity_source: str
    pue: float
    samples_processed: int | None
    total_steps: int | None
    duration_s: float | None
    error: str | None
    lost_items: int
    meta: dict[str, Any]
    started_at: datetime
    ended_at: datetime | None
    totals: RunTotals


class EnergySampleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    rank: int
    seq: int
    t_start: datetime
    t_end: datetime
    duration_s: float
    cpu_kwh: float | None
    gpu_kwh: float | None
    ram_kwh: float | None
    cpu_w: float | None
    gpu_w: float | None
    ram_w: float | None
    cpu_method: MeasurementMethod | None
    gpu_method: MeasurementMethod | None
    ram_method: MeasurementMethod | None
    gpu_count: int
    gpu_util_pct: float | None
    co2_kg: float
    step: int | None


class MetricPointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    step: int
    epoch: int | None
    value: float
    time: datetime


class Cost(BaseModel):
    """Energy, CO2 and GPU time of one or more runs."""

    energy_kwh: float
    co2_kg: float
    gpu_hours: float
    runs: int


class CostOfRun(BaseModel):
    id: uuid.UUID
    name: str | None
    group: str | None
    relation: str = Field(
        description="final (the run asked about), ancestor (through parent_run_id) or trial "
        "(another run of a group the final run or an ancestor belongs to)"
    )
    energy_kwh: float
    co2_kg: float
    gpu_hours: float


class CreationCostOut(BaseModel):
    """What creating a model cost, next to what its final run cost."""

    run_id: uuid.UUID
    final: Cost = Field(description="the run itself")
    creation: Cost = Field(
        description="the run, its ancestors through parent_run_id (pre-training), and every "
        "other run of the groups they belong to (the trials of the searches), each once"
    )
    energy_ratio: float | None = Field(
        description="creation energy / final energy; null when the final run used none"
    )
    co2_ratio: float | None = Field(description="creation CO2 / final CO2; null when zero")
    runs: list[CostOfRun]
