"""What clients send: runs, their energy samples and metric points, dataset profiles."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import ConfigDict, Field, model_validator

from .base import (
    CLIENT_END_STATUSES,
    MAX_BATCH_ITEMS,
    MAX_EXACT_COUNT,
    NO_NUL,
    Count,
    Energy,
    FiniteFloat,
    MeasurementMethod,
    Meta,
    Name,
    NonNegativeFloat,
    Power,
    RunKind,
    RunStatus,
    SmallCount,
    UtcDatetime,
    WireModel,
)

__all__ = [
    "DatasetProfileIn",
    "EnergyBatch",
    "EnergySampleIn",
    "Hardware",
    "MetricBatch",
    "MetricPointIn",
    "RunCreate",
    "RunFinish",
    "RunUpdate",
]


class Hardware(WireModel):
    """Where a run (or rank of a run) executed."""

    node: Name | None = None
    rank: SmallCount = 0
    local_rank: SmallCount = 0
    world_size: int = Field(default=1, ge=1, le=2**31 - 1)
    cpu_model: Name | None = None
    cpu_count: SmallCount | None = None
    gpu_model: Name | None = None
    gpu_count: SmallCount = 0
    ram_total_gb: NonNegativeFloat | None = None


class RunCreate(WireModel):
    """A new run. ``id`` is made by the client, so a retried create is not a second run."""

    id: UUID
    project: Name | None = Field(
        default=None, description="the key's project name; a mismatch is an error, not a move"
    )
    name: Name | None = None
    kind: RunKind = RunKind.train
    model: Name | None = None
    model_params: Count | None = None
    flops: Annotated[float, Field(ge=0, le=1e40, allow_inf_nan=False)] | None = None
    dataset: Name | None = None
    dataset_version: Name | None = None
    dataset_size: Count | None = None
    task: Name | None = None
    primary_metric: Name | None = None
    parent_run_id: UUID | None = None
    group: Name | None = None
    hardware: Hardware = Field(default_factory=Hardware)
    country_iso: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    carbon_intensity_g_per_kwh: Annotated[float, Field(ge=0, le=1e5, allow_inf_nan=False)]
    carbon_intensity_source: Name
    pue: float = Field(default=1.0, ge=1.0, le=3.0)
    started_at: UtcDatetime
    meta: Meta = Field(default_factory=dict)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "0b5b8f1e-6f3a-4c1e-9a55-3f1f2b2f7a10",
                    "name": "mlp-64",
                    "kind": "train",
                    "model": "mlp-64",
                    "dataset": "digits",
                    "task": "classification",
                    "primary_metric": "accuracy",
                    "country_iso": "FRA",
                    "carbon_intensity_g_per_kwh": 56.039,
                    "carbon_intensity_source": "codecarbon global energy mix: France (FRA), 2023",
                    "pue": 1.0,
                    "started_at": "2026-12-01T10:00:00Z",
                }
            ]
        },
    )


class RunUpdate(WireModel):
    """Facts a run learns while it goes (``run.set``). Absent fields are left as they are."""

    model_params: Count | None = None
    flops: Annotated[float, Field(ge=0, le=1e40, allow_inf_nan=False)] | None = None
    dataset_size: Count | None = None
    samples_processed: Count | None = None
    total_steps: Count | None = None
    dataset: Name | None = None
    dataset_version: Name | None = None
    meta: Meta | None = None


class RunFinish(WireModel):
    """The end of a run."""

    status: RunStatus = RunStatus.finished
    ended_at: UtcDatetime
    duration_s: Annotated[float, Field(ge=0, le=1e10, allow_inf_nan=False)]
    error: str | None = Field(default=None, max_length=4000, pattern=NO_NUL)
    lost_items: Count = Field(
        default=0, description="items the client could not keep (its spool was full)"
    )

    @model_validator(mode="after")
    def _terminal_status(self) -> RunFinish:
        if self.status not in CLIENT_END_STATUSES:
            raise ValueError(
                "a client can finish a run only as 'finished', 'failed' or 'stopped_by_budget'"
            )
        return self


class EnergySampleIn(WireModel):
    """One measured interval of one rank. Unique on (run, rank, seq).

    A component that was not measured has ``None`` energy, power and method.
    """

    rank: SmallCount = 0
    seq: Count
    t_start: UtcDatetime
    t_end: UtcDatetime
    cpu_kwh: Energy | None = None
    gpu_kwh: Energy | None = None
    ram_kwh: Energy | None = None
    cpu_w: Power | None = None
    gpu_w: Power | None = None
    ram_w: Power | None = None
    cpu_method: MeasurementMethod | None = None
    gpu_method: MeasurementMethod | None = None
    ram_method: MeasurementMethod | None = None
    gpu_count: SmallCount = 0
    gpu_util_pct: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = Field(
        default=None, description="mean GPU utilisation over the interval, percent"
    )
    step: Count | None = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "rank": 0,
                    "seq": 0,
                    "t_start": "2026-12-01T10:00:00Z",
                    "t_end": "2026-12-01T10:00:10Z",
                    "cpu_kwh": 0.0000125,
                    "cpu_w": 4.5,
                    "cpu_method": "codecarbon",
                    "ram_kwh": 0.000008,
                    "ram_w": 2.88,
                    "ram_method": "codecarbon",
                    "step": 120,
                }
            ]
        },
    )

    @model_validator(mode="after")
    def _consistent(self) -> EnergySampleIn:
        # Runs for every sample of every batch, so the common case is tested in one line.
        if self.t_end < self.t_start:
            raise ValueError("t_end is before t_start")
        if (
            (self.cpu_kwh is None) is not (self.cpu_method is None)
            or (self.gpu_kwh is None) is not (self.gpu_method is None)
            or (self.ram_kwh is None) is not (self.ram_method is None)
        ):
            component = next(
                c
                for c in ("cpu", "gpu", "ram")
                if (getattr(self, f"{c}_kwh") is None) is not (getattr(self, f"{c}_method") is None)
            )
            raise ValueError(
                f"{component}_kwh and {component}_method must be given together: "
                "every measured energy names how it was measured"
            )
        if self.gpu_kwh is not None and self.gpu_count < 1:
            raise ValueError("gpu_kwh is given but gpu_count is 0")
        return self


class EnergyBatch(WireModel):
    """A batch of energy samples for one run."""

    samples: list[EnergySampleIn] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class MetricPointIn(WireModel):
    """One value of one metric at one step. Unique on (run, name, step)."""

    name: Name
    step: Count
    epoch: Count | None = None
    value: FiniteFloat
    time: UtcDatetime

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "accuracy",
                    "step": 3,
                    "epoch": 3,
                    "value": 0.951,
                    "time": "2026-12-01T10:00:31Z",
                }
            ]
        },
    )


class MetricBatch(WireModel):
    """A batch of metric points for one run."""

    points: list[MetricPointIn] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class DatasetProfileIn(WireModel):
    """The label distribution of a dataset's evaluation split.

    Give ``class_counts`` (images, pixels or instances per class), or only ``num_classes`` when
    the counts are unknown (a uniform distribution is then assumed).
    """

    name: Name
    version: Name = "default"
    class_counts: list[Annotated[int, Field(ge=0, le=MAX_EXACT_COUNT)]] | None = Field(
        default=None, min_length=1, max_length=100_000
    )
    num_classes: int | None = Field(default=None, ge=1, le=10_000_000)
    sample_count: Count | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DatasetProfileIn:
        if (self.class_counts is None) == (self.num_classes is None):
            raise ValueError("give exactly one of class_counts or num_classes")
        if self.class_counts is not None:
            total = sum(self.class_counts)
            if total == 0:
                raise ValueError("class_counts must not all be zero")
            # The total is the profile's sample count, and the entropy divides by it as a
            # float: past 2**53 neither would be exact (and past 2**63 no column holds it).
            if total > MAX_EXACT_COUNT:
                raise ValueError(f"class_counts add up to {total}; at most 2**53 in all")
        return self
