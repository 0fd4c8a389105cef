"""Wire schemas shared by the client hook and the service.

Units are part of every field name: ``_kwh`` kilowatt-hours, ``_w`` watts, ``_kg`` kilograms of
CO2-equivalent, ``_s`` seconds, ``_g_per_kwh`` grams of CO2-equivalent per kilowatt-hour.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

#: Most energy samples or metric points accepted in one batch request.
MAX_BATCH_ITEMS = 5000
#: Longest name (run, model, dataset, metric, group ...) accepted.
MAX_NAME_LENGTH = 200
#: Largest run metadata accepted, as JSON.
MAX_META_BYTES = 65_536
#: Largest count that a float (and so an entropy or a mean over it) still holds exactly.
MAX_EXACT_COUNT = 2**53
#: Highest carbon intensity of electricity accepted where it is derived rather than given,
#: g CO2e/kWh. CodeCarbon's own tables put coal, the most carbon-intense source, at 995 g/kWh
#: (``carbon_intensity_per_source.json``) and the most carbon-intense country mix, Turkmenistan's,
#: at 1,306 g/kWh (``global_energy_mix.json``, 2023). 2,000 leaves room for any real grid and
#: refuses only nonsense, such as 1e12 kg over 1e-300 kWh.
MAX_GRID_INTENSITY_G_PER_KWH = 2000.0
#: Deepest nesting of run metadata accepted (the object itself is level 1).
MAX_META_DEPTH = 32


class RunKind(str, Enum):
    """What a run did."""

    train = "train"
    finetune = "finetune"
    eval = "eval"
    inference = "inference"
    search_trial = "search-trial"


class RunStatus(str, Enum):
    """Where a run is in its life. ``crashed`` is set by the service when heartbeats stop."""

    running = "running"
    finished = "finished"
    failed = "failed"
    crashed = "crashed"
    # The client stopped the training because a carbon budget was spent (on_budget="stop").
    stopped_by_budget = "stopped_by_budget"


CLIENT_END_STATUSES = frozenset({RunStatus.finished, RunStatus.failed, RunStatus.stopped_by_budget})


class MeasurementMethod(str, Enum):
    """How one component's energy in a sample was obtained.

    ``nvml-counter`` reads NVML's cumulative energy counter; ``nvml-power`` integrates NVML power
    readings where the counter is missing; ``rapl`` reads Intel/AMD RAPL counters; ``codecarbon``
    is CodeCarbon's load-based estimate; ``tdp-estimate`` assumes the CPU's rated TDP.
    """

    nvml_counter = "nvml-counter"
    nvml_power = "nvml-power"
    rapl = "rapl"
    codecarbon = "codecarbon"
    tdp_estimate = "tdp-estimate"


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a timezone, for example 2026-01-01T00:00:00Z")
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("timestamp is outside the years 1 to 9999 in UTC") from None


def _check_depth(value: Any) -> None:
    # Iterative, so that a hostile depth meets this limit and not Python's recursion limit.
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_META_DEPTH:
            raise ValueError(f"meta nests deeper than {MAX_META_DEPTH} levels")
        if isinstance(item, dict):
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)


def _json_object(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """The one check of free-form JSON metadata, for every request that carries some.

    Plain JSON only, storable as it is by both databases and by an export: no NaN or
    infinity, no text that is not Unicode (a lone surrogate, which cannot be encoded as
    UTF-8), at most ``MAX_META_DEPTH`` levels and ``MAX_META_BYTES``.
    """
    if value is None:
        return None
    _check_depth(value)
    try:
        encoded = json.dumps(value, allow_nan=False, ensure_ascii=False).encode()
    except UnicodeEncodeError as error:  # before ValueError, of which it is one
        bad = error.object[error.start : error.end]
        raise ValueError(
            f"meta holds text that is not valid Unicode ({bad!a}, a lone surrogate)"
        ) from None
    except ValueError:
        raise ValueError("meta must be plain JSON: NaN and infinity are not allowed") from None
    if len(encoded) > MAX_META_BYTES:
        raise ValueError(f"meta is {len(encoded)} bytes as JSON; the limit is {MAX_META_BYTES}")
    return value


UtcDatetime = Annotated[datetime, AfterValidator(_aware_utc)]
#: A count or sequence number: what a signed 64-bit column holds.
Count = Annotated[int, Field(ge=0, le=2**63 - 1)]
#: A rank, a device count: what a 32-bit column holds.
SmallCount = Annotated[int, Field(ge=0, le=2**31 - 1)]
#: Energy of one interval, kWh (10^9 kWh is a terawatt-hour: far past any real sample).
Energy = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]
#: Mean power over an interval, W.
Power = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]
Meta = Annotated[dict[str, Any], AfterValidator(_json_object)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
# PostgreSQL text cannot hold NUL; refusing it here keeps such input a 422, not a 500.
NO_NUL = r"^[^\x00]*$"
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=NO_NUL)]


class WireModel(BaseModel):
    """Base of every request body: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


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


class BatchResult(BaseModel):
    """What a batch did: rows newly stored, and re-sent rows that were already there."""

    inserted: int
    duplicates: int


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list, with the total number of matching items."""

    items: list[T]
    total: int
    limit: int
    offset: int
