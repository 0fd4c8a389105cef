"""The wire contract: every request a client sends and every answer it reads, defined once.

The service (``greenaudit.api``) validates requests and serialises answers with these models;
the client side (the hook, the CLI, the report) validates the service's answers with the same
ones. They import only pydantic, so the client-only install can use them.

* :mod:`.base`: limits, checked field types, the enums of a run, :class:`Page`.
* :mod:`.requests`: what clients send (runs, energy samples, metric points, dataset profiles).
* :mod:`.runs`, :mod:`.totals`, :mod:`.analytics`, :mod:`.budgets`: the service's answers.
"""

from .base import (
    CLIENT_END_STATUSES,
    MAX_BATCH_ITEMS,
    MAX_EXACT_COUNT,
    MAX_GRID_INTENSITY_G_PER_KWH,
    MAX_META_BYTES,
    MAX_META_DEPTH,
    MAX_NAME_LENGTH,
    NO_NUL,
    BatchResult,
    Count,
    Energy,
    FiniteFloat,
    MeasurementMethod,
    Meta,
    Name,
    NonNegativeFloat,
    Page,
    Power,
    RunKind,
    RunStatus,
    SmallCount,
    UtcDatetime,
    WireModel,
)
from .requests import (
    DatasetProfileIn,
    EnergyBatch,
    EnergySampleIn,
    Hardware,
    MetricBatch,
    MetricPointIn,
    RunCreate,
    RunFinish,
    RunUpdate,
)

__all__ = [
    "CLIENT_END_STATUSES",
    "MAX_BATCH_ITEMS",
    "MAX_EXACT_COUNT",
    "MAX_GRID_INTENSITY_G_PER_KWH",
    "MAX_META_DEPTH",
    "MAX_META_BYTES",
    "MAX_NAME_LENGTH",
    "NO_NUL",
    "BatchResult",
    "Count",
    "DatasetProfileIn",
    "Energy",
    "EnergyBatch",
    "EnergySampleIn",
    "FiniteFloat",
    "Hardware",
    "MeasurementMethod",
    "Meta",
    "MetricBatch",
    "MetricPointIn",
    "Name",
    "NonNegativeFloat",
    "Page",
    "Power",
    "RunCreate",
    "RunFinish",
    "RunKind",
    "RunStatus",
    "RunUpdate",
    "SmallCount",
    "UtcDatetime",
    "WireModel",
]
