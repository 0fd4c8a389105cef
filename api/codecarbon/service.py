"""CodeCarbon runs and emissions, stored as greenaudit runs and energy samples."""

from __future__ import annotations

import math
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from greenaudit.schemas import MAX_GRID_INTENSITY_G_PER_KWH, MeasurementMethod, RunKind, RunStatus
from greenaudit.units import G_PER_KG

from ..auth import Principal
from ..errors import Conflict, InvalidInput
from ..models import Run, utcnow
from ..runs import repository
from ..runs.service import check_measured_before_end, ingest_target

PENDING = "codecarbon: set from its first report"
#: A CodeCarbon run's group is its experiment: ``codecarbon:<experiment_id>``.
GROUP_PREFIX = "codecarbon:"


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
        group_name=f"{GROUP_PREFIX}{body['experiment_id']}",
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


#: Tries at the next free seq; each can lose only to a sample that ``/energy`` stored for rank 0 at
#: that moment (CodeCarbon's own reports queue on the run's lock), so a few always suffice.
SEQ_TRIES = 8


def add_emission(session: Session, caller: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """Store one CodeCarbon interval as the next energy sample of the run's rank 0.

    CodeCarbon sends no sequence number, so the sample takes the next free one: one past the
    highest stored for rank 0, never a count of samples (which ``/energy`` samples of other seqs
    or ranks would throw off). The run's row is locked meanwhile, so two intervals of one run
    posted at once cannot take the same seq. The totals add the row only once it is stored.
    """
    run = ingest_target(session, caller, body["run_id"], lock=True)
    t_end = body["timestamp"]
    t_start = t_end - timedelta(seconds=body["duration"])
    if (
        run.status == RunStatus.finished.value
        and run.group_name is not None
        and run.group_name.startswith(GROUP_PREFIX)
    ):
        # CodeCarbon's protocol has no finish: the service ended the run when it went quiet, so
        # a report now was still measured, and the run runs again.
        session.execute(
            repository.RUN_REOPEN, {"run_id": run.id, "status": RunStatus.running.value}
        )
    else:
        check_measured_before_end(run, [("the CodeCarbon interval", t_start)])
    energy = body["cpu_energy"] + body["gpu_energy"] + body["ram_energy"]
    intensity = run.carbon_intensity_g_per_kwh
    if run.carbon_intensity_source == PENDING and energy > 0:
        # CodeCarbon computes CO2 with its own intensity (and has applied its PUE to the
        # energy); taking the intensity from its first report keeps greenaudit's CO2 equal.
        intensity = body["emissions_sum"] / energy * G_PER_KG
        if not math.isfinite(intensity) or intensity > MAX_GRID_INTENSITY_G_PER_KWH:
            raise InvalidInput(
                f"emissions_sum {body['emissions_sum']:g} kg over {energy:g} kWh is "
                f"{intensity:g} g/kWh; no grid emits more than "
                f"{MAX_GRID_INTENSITY_G_PER_KWH:g} g/kWh"
            )
        session.execute(
            repository.RUN_INTENSITY,
            {
                "run_id": run.id,
                "intensity": intensity,
                "source": "codecarbon (as its client reported)",
            },
        )
    gpu = body["gpu_energy"] > 0
    row = {
        "run_id": run.id,
        "rank": 0,
        "seq": 0,
        "t_start": t_start,
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
        "co2_kg": energy * intensity / G_PER_KG * run.pue,
        "step": None,
    }
    for _ in range(SEQ_TRIES):
        row["seq"] = session.scalar(repository.NEXT_SEQ, {"run_id": run.id, "rank": 0})
        if repository.insert_new_samples(session, [row]):
            break
    else:
        raise Conflict(f"run {run.id}: rank 0 kept taking new seqs; send the report again")
    repository.add_energy_totals(session, run.id, [row])
    repository.add_methods(session, run.id, [row])
    return {"id": str(uuid.uuid4()), "run_id": str(run.id), "seq": row["seq"]}
