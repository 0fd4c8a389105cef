"""CodeCarbon runs and emissions, stored as greenaudit runs and energy samples."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from greenaudit.schemas import MeasurementMethod, RunKind, RunStatus

from ..auth import Principal
from ..models import Run, utcnow
from ..runs import repository
from ..runs.service import ingest_target

PENDING = "codecarbon: set from its first report"
KG_TO_G = 1000.0


def create_run(session: Session, caller: Principal, body: dict[str, Any]) -> Run:
    hardware = {
        "cpu_model": body.get("cpu_model"),
        "cpu_count": body.get("cpu_count"),
        "gpu_model": body.get("gpu_model") or None,
        "gpu_count": body.get("gpu_count") or 0,
        "ram_total_gb": body.get("ram_total_size"),
    }
    run = Run(
        id=uuid.uuid4(),
        project_id=caller.project_id,
        name="codecarbon run",
        kind=RunKind.train.value,
        status=RunStatus.running.value,
        group_name=f"codecarbon:{body['experiment_id']}",
        world_size=1,
        hardware=hardware,
        carbon_intensity_g_per_kwh=0.0,
        carbon_intensity_source=PENDING,
        pue=1.0,
        meta={
            k: body.get(k)
            for k in (
                "os",
                "python_version",
                "codecarbon_version",
                "region",
                "provider",
                "tracking_mode",
            )
            if body.get(k) is not None
        },
        started_at=body["timestamp"],
        last_seen_at=utcnow(),
    )
    session.add(run)
    session.flush()
    return run


def add_emission(session: Session, caller: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """Store one CodeCarbon interval as the run's next energy sample.

    CodeCarbon sends no sequence number, so the sample takes the next one; the run's row is
    locked meanwhile, so two intervals of one run posted at once cannot take the same.
    """
    run = ingest_target(session, caller, body["run_id"], lock=True)
    energy = body["cpu_energy"] + body["gpu_energy"] + body["ram_energy"]
    intensity = run.carbon_intensity_g_per_kwh
    if run.carbon_intensity_source == PENDING and energy > 0:
        # CodeCarbon computes CO2 with its own intensity (and has applied its PUE to the
        # energy); taking the intensity from its first report keeps greenaudit's CO2 equal.
        intensity = body["emissions_sum"] / energy * KG_TO_G
        session.execute(
            repository.RUN_INTENSITY,
            {
                "run_id": run.id,
                "intensity": intensity,
                "source": "codecarbon (as its client reported)",
            },
        )
    seq = session.scalar(repository.SAMPLES_OF_RUN, {"run_id": run.id}) or 0
    t_end = body["timestamp"]
    gpu = body["gpu_energy"] > 0
    row = {
        "run_id": run.id,
        "rank": 0,
        "seq": seq,
        "t_start": t_end - timedelta(seconds=body["duration"]),
        "t_end": t_end,
        "duration_s": float(body["duration"]),
        "cpu_kwh": body["cpu_energy"],
        "cpu_w": body["cpu_power"],
        "cpu_method": MeasurementMethod.codecarbon.value,
        "gpu_kwh": body["gpu_energy"] if gpu else None,
        "gpu_w": body["gpu_power"] if gpu else None,
        "gpu_method": MeasurementMethod.codecarbon.value if gpu else None,
        "ram_kwh": body["ram_energy"],
        "ram_w": body["ram_power"],
        "ram_method": MeasurementMethod.codecarbon.value,
        "gpu_count": max(1, int(run.hardware.get("gpu_count") or 0)) if gpu else 0,
        "gpu_util_pct": None,
        "co2_kg": energy * intensity / KG_TO_G * run.pue,
        "step": None,
    }
    repository.insert_new_samples(session, [row])
    repository.add_energy_totals(session, run.id, [row])
    repository.add_methods(session, run.id, [row])
    return {"id": str(uuid.uuid4()), "run_id": str(run.id), "seq": seq}
