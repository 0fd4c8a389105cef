"""The published-results catalog, and importing it as reference runs.

The catalog (``greenaudit/data/published_cv_results.csv``) holds accuracy, parameter and FLOP
figures from the papers this project grew from, each with its source. ``greenaudit import``
turns every row into a finished run of kind ``eval`` in the ``published`` project, with no
energy (the papers give none), so that your runs can be drawn against the field on parameters
or GFLOPs.
"""

from __future__ import annotations

import csv
import re
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from greenaudit.admin import project_keys
from greenaudit.http import WRITE_KEY_HINT, ServiceHttp

PUBLISHED_PROJECT = "published"
CATALOG_COLUMNS = {"model", "task", "dataset", "metric", "value", "params_m", "gflops", "source"}
# Fixed, so that importing twice is a harmless re-send (run ids are derived from the row too).
_NAMESPACE = uuid.UUID("6f1c9a52-8d1e-4b7a-9c3e-2a5d7e9b1f40")
# Label distributions known exactly: ImageNet-1k's validation split has 50 images per class.
KNOWN_PROFILES = {"ImageNet-1k": {"num_classes": 1000, "sample_count": 50_000}}


@dataclass(frozen=True)
class CatalogRow:
    """One published result."""

    model: str
    task: str
    dataset: str
    metric: str
    value: float
    params_m: float | None
    gflops: float | None
    latency_ms: float | None
    latency_device: str | None
    source: str
    note: str | None

    @property
    def arxiv_id(self) -> str | None:
        """The arXiv id named in the source, e.g. ``1911.09070``."""
        found = re.search(r"arXiv (\d{4}\.\d{4,5})", self.source)
        return found.group(1) if found else None

    @property
    def run_id(self) -> uuid.UUID:
        """A run id derived from the row, the same at every import."""
        return uuid.uuid5(
            _NAMESPACE, "|".join((self.model, self.dataset, self.metric, self.source))
        )

    @property
    def published_at(self) -> str:
        """The paper's arXiv month (YYMM in the id), as the run's time."""
        arxiv = self.arxiv_id
        if arxiv is None:
            return "2000-01-01T00:00:00Z"
        return f"20{arxiv[:2]}-{arxiv[2:4]}-01T00:00:00Z"


def _number(text: str) -> float | None:
    return float(text) if text.strip() else None


def is_catalog(path: Path) -> bool:
    """Whether ``path`` is a CSV with the catalog's columns."""
    with open(path, newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), [])
    return CATALOG_COLUMNS <= set(header)


def load_catalog(path: Path | None = None) -> list[CatalogRow]:
    """Read the catalog (the packaged one by default)."""
    source = path or Path(str(resources.files("greenaudit.data") / "published_cv_results.csv"))
    with open(source, newline="", encoding="utf-8") as handle:
        return [
            CatalogRow(
                model=row["model"],
                task=row["task"],
                dataset=row["dataset"],
                metric=row["metric"],
                value=float(row["value"]),
                params_m=_number(row.get("params_m", "")),
                gflops=_number(row.get("gflops", "")),
                latency_ms=_number(row.get("latency_ms", "")),
                latency_device=row.get("latency_device") or None,
                source=row["source"],
                note=row.get("note") or None,
            )
            for row in csv.DictReader(handle)
        ]


def _run_body(row: CatalogRow) -> dict[str, Any]:
    return {
        "id": str(row.run_id),
        "project": PUBLISHED_PROJECT,
        "name": row.model,
        "kind": "eval",
        "model": row.model,
        "dataset": row.dataset,
        "dataset_version": "published",
        "task": row.task,
        "primary_metric": row.metric,
        "group": f"arXiv {row.arxiv_id}" if row.arxiv_id else None,
        "model_params": int(round(row.params_m * 1e6)) if row.params_m is not None else None,
        "flops": row.gflops * 1e9 if row.gflops is not None else None,
        "carbon_intensity_g_per_kwh": 0.0,
        "carbon_intensity_source": "not measured: published result",
        "started_at": row.published_at,
        "meta": {
            "published": True,
            "source": row.source,
            "note": row.note,
            "latency_ms": row.latency_ms,
            "latency_device": row.latency_device,
            "flops_kind": "inference FLOPs per image (the paper's GFLOPs x 1e9)",
        },
    }


def import_catalog(url: str, admin_token: str, path: Path | None = None) -> tuple[int, str]:
    """Import the catalog into the ``published`` project. Returns (rows, a read key).

    Safe to run again: runs, points and profiles are re-sent idempotently. Raises
    :class:`~greenaudit.errors.ServiceError` when the service cannot be reached or refuses.
    """
    rows = load_catalog(path)
    write_key, read_key = project_keys(url, admin_token, PUBLISHED_PROJECT)
    with ServiceHttp(url, write_key, key_hint=WRITE_KEY_HINT) as http:
        for dataset, profile in KNOWN_PROFILES.items():
            if any(row.dataset == dataset for row in rows):
                http.post(
                    "/datasets/profiles", {"name": dataset, "version": "published", **profile}
                )
        for row in rows:
            body = {k: v for k, v in _run_body(row).items() if v is not None}
            http.post("/runs", body)
            point = {"name": row.metric, "step": 0, "value": row.value, "time": row.published_at}
            http.post(f"/runs/{row.run_id}/metrics", {"points": [point]})
            http.post(
                f"/runs/{row.run_id}/finish",
                {"status": "finished", "ended_at": row.published_at, "duration_s": 0.0},
            )
    return len(rows), read_key
