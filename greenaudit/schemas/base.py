"""What every wire schema builds on: limits, checked field types, the enums of a run, pages.

Units are part of every field name: ``_kwh`` kilowatt-hours, ``_w`` watts, ``_kg`` kilograms of
CO2-equivalent, ``_s`` seconds, ``_g_per_kwh`` grams of CO2-equivalent per kilowatt-hour.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = [
    "CLIENT_END_STATUSES",
    "MAX_BATCH_ITEMS",
    "MAX_EXACT_COUNT",
    "MAX_GRID_INTENSITY_G_PER_KWH",
    "MAX_META_BYTES",
    "MAX_META_DEPTH",
    "MAX_NAME_LENGTH",
    "NO_NUL",
    "BatchResult",
    "Count",
    "Energy",
    "FiniteFloat",
    "MeasurementMethod",
    "Meta",
    "Name",
    "NonNegativeFloat",
    "Page",
    "Power",
    "RunKind",
    "RunStatus",
    "SmallCount",
    "UtcDatetime",
    "WireModel",
]

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
