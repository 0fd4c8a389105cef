"""Importing CodeCarbon's ``emissions.csv``: each CodeCarbon run becomes a greenaudit run.

CodeCarbon writes a row when a tracker stops (or flushes), holding the run's totals so far. The
last row of each run (its longest duration) is imported as one finished run with one energy
sample covering the whole run, measured by ``codecarbon``. Carbon intensity is CodeCarbon's
own (its emissions over its energy), so the CO2 matches what CodeCarbon reported.
"""

from __future__ import annotations

import csv
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from greenaudit.http import WRITE_KEY_HINT, ServiceHttp
from greenaudit.units import G_PER_KG

CODECARBON_COLUMNS = {
    "run_id",
    "duration",
    "emissions",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "timestamp",
}
_NAMESPACE = uuid.UUID("0d7c1f6e-3b52-4a8e-9d1f-5c2b7a9e4f31")


def is_emissions_csv(path: Path) -> bool:
    """Whether ``path`` is a CSV with CodeCarbon's columns."""
    with open(path, newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), [])
    return CODECARBON_COLUMNS <= set(header)


def _number(row: dict[str, str], name: str) -> float:
    text = (row.get(name) or "").strip()
    return float(text) if text else 0.0


def _run_uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        return uuid.uuid5(_NAMESPACE, text)


def latest_rows(path: Path) -> list[dict[str, str]]:
    """The last (longest) row of each CodeCarbon run in the file."""
    latest: dict[str, dict[str, str]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            key = row["run_id"]
            if key not in latest or _number(row, "duration") >= _number(latest[key], "duration"):
                latest[key] = row
    return list(latest.values())


def _bodies(row: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    ended = datetime.fromisoformat(row["timestamp"])
    if ended.tzinfo is None:
        ended = ended.replace(tzinfo=timezone.utc)  # CodeCarbon writes UTC without an offset
    duration = _number(row, "duration")
    started = ended - timedelta(seconds=duration)
    energy = {c: _number(row, f"{c}_energy") for c in ("cpu", "gpu", "ram")}
    total = sum(energy.values())
    intensity = _number(row, "emissions") / total * G_PER_KG if total > 0 else 0.0
    country = (row.get("country_iso_code") or "").strip().upper()
    run_id = str(_run_uuid(row["run_id"]))
    run = {
        "id": run_id,
        "name": row.get("project_name") or "codecarbon run",
        "group": f"codecarbon:{row['experiment_id']}" if row.get("experiment_id") else None,
        "carbon_intensity_g_per_kwh": intensity,
        "carbon_intensity_source": "codecarbon emissions.csv"
        + (f" ({row.get('country_name')}, {country})" if country else ""),
        "country_iso": country if len(country) == 3 and country.isalpha() else None,
        "started_at": started.isoformat(),
        "hardware": {
            "cpu_model": row.get("cpu_model") or None,
            "gpu_model": row.get("gpu_model") or None,
            "gpu_count": int(_number(row, "gpu_count")),
        },
        "meta": {
            "imported_from": "codecarbon emissions.csv",
            "codecarbon_version": row.get("codecarbon_version"),
        },
    }
    gpu = energy["gpu"] > 0
    sample = {
        "seq": 0,
        "t_start": started.isoformat(),
        "t_end": ended.isoformat(),
        "cpu_kwh": energy["cpu"],
        "cpu_w": _number(row, "cpu_power"),
        "cpu_method": "codecarbon",
        "ram_kwh": energy["ram"],
        "ram_w": _number(row, "ram_power"),
        "ram_method": "codecarbon",
    }
    if gpu:
        sample.update(
            gpu_kwh=energy["gpu"],
            gpu_w=_number(row, "gpu_power"),
            gpu_method="codecarbon",
            gpu_count=max(1, int(_number(row, "gpu_count"))),
        )
    finish = {"status": "finished", "ended_at": ended.isoformat(), "duration_s": duration}
    return {k: v for k, v in run.items() if v is not None}, sample, finish


def import_emissions_csv(url: str, api_key: str, path: Path) -> int:
    """Import every CodeCarbon run in ``path`` into the key's project. Returns how many.

    Safe to run again: run ids are CodeCarbon's, and re-sent data is recognised. Raises
    :class:`~greenaudit.errors.ServiceError` when the service cannot be reached or refuses.
    """
    rows = latest_rows(path)
    with ServiceHttp(url, api_key, key_hint=WRITE_KEY_HINT) as http:
        for row in rows:
            run, sample, finish = _bodies(row)
            http.post("/runs", run)
            http.post(f"/runs/{run['id']}/energy", {"samples": [sample]})
            http.post(f"/runs/{run['id']}/finish", finish)
    return len(rows)
