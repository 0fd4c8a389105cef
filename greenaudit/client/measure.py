"""Energy measurement: CodeCarbon for CPU and RAM, NVML for GPUs, on a thread of its own.

The meter thread wakes every ``measure_interval_s``, asks each source for the energy used since
its last wake-up and hands one energy sample (a wire-format dict) to ``on_sample``. Nothing here
runs on the training thread, and nothing here raises into it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from greenaudit.schemas import MeasurementMethod
from greenaudit.settings import Settings

from .nvml import NvmlGpuMeter

logger = logging.getLogger("greenaudit")

J_PER_KWH = 3.6e6
# Below this, an interval with no energy is start-up or shut-down noise, not a measurement.
MIN_EMPTY_INTERVAL_S = 1.0


@dataclass(frozen=True)
class CarbonIntensity:
    """The grid carbon intensity a run is charged at, and where the figure comes from."""

    g_per_kwh: float
    source: str
    country_iso: str | None


def resolve_carbon_intensity(settings: Settings) -> CarbonIntensity:
    """Carbon intensity from the override, else CodeCarbon's table for the country.

    Never looks the location up over the network. Without a country, CodeCarbon's world
    average is used and the source says so.
    """
    if settings.carbon_intensity is not None:
        return CarbonIntensity(
            settings.carbon_intensity, "override (GREENAUDIT_CARBON_INTENSITY)", settings.country
        )
    from codecarbon.input import DataSource

    source = DataSource()  # type: ignore[no-untyped-call]
    if settings.country is not None:
        mix = source.get_global_energy_mix_data().get(settings.country)
        if mix is not None:
            return CarbonIntensity(
                float(mix["carbon_intensity"]),
                f"codecarbon global energy mix: {mix['country_name']} ({settings.country}), "
                f"{mix.get('year', 'year unknown')}",
                settings.country,
            )
        logger.warning(
            "greenaudit: CodeCarbon has no carbon intensity for %s; using its world average",
            settings.country,
        )
    world = float(source.get_carbon_intensity_per_source_data()["world_average"])
    return CarbonIntensity(
        world,
        "codecarbon world average (set GREENAUDIT_COUNTRY for the local grid)",
        settings.country,
    )


def _codecarbon_cpu_method(tracker: Any) -> MeasurementMethod:
    # CodeCarbon does not publish which CPU method it picked; its CPU object keeps it in _mode.
    for hardware in getattr(tracker, "_hardware", []):
        mode = getattr(hardware, "_mode", None)
        if type(hardware).__name__ == "CPU" and mode is not None:
            if mode == "intel_rapl":
                return MeasurementMethod.rapl
            if mode == "constant":
                return MeasurementMethod.tdp_estimate
    return MeasurementMethod.codecarbon


def _new_codecarbon_tracker(settings: Settings, handlers: list[Any]) -> Any:
    from codecarbon import OfflineEmissionsTracker

    # CodeCarbon logs at INFO before it applies its log_level; its chatter is not the user's.
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    return OfflineEmissionsTracker(
        # Only CodeCarbon's CPU and RAM energy are used; CO2 is greenaudit's, so this country
        # never reaches a result.
        country_iso_code=settings.country or "USA",
        measure_power_secs=settings.measure_interval_s,
        api_call_interval=-1,
        output_methods=[],
        output_handlers=handlers,
        log_level="error",
        pue=1.0,  # greenaudit applies the PUE once, to CO2, on the service
        allow_multiple_runs=True,
    )


_warm_up_lock = threading.Lock()
_warm_up_started = threading.Event()
_warm_up_done = threading.Event()


def warm_up_in_background(settings: Settings | None = None) -> threading.Event:
    """Detect the hardware once, on a background thread, before the first run starts.

    CodeCarbon's first hardware detection in a process takes seconds (about 1.6 s on a
    2-core VM); it caches the result for the process. Energy is measured only from the moment
    the meter is ready, so ``@track`` warms up when it decorates, long before training starts.
    Returns an event that is set once the hardware is known.
    """
    with _warm_up_lock:
        if _warm_up_started.is_set():
            return _warm_up_done
        _warm_up_started.set()

    def warm() -> None:
        try:
            _new_codecarbon_tracker(settings or Settings(), []).get_detected_hardware()
        except Exception:  # the run itself will report what fails
            pass
        finally:
            _warm_up_done.set()

    threading.Thread(target=warm, name="greenaudit-warm-up", daemon=True).start()
    return _warm_up_done


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class EnergyMeter:
    """Samples CPU, RAM and GPU energy on a background thread until :meth:`stop`."""

    def __init__(
        self,
        settings: Settings,
        *,
        rank: int,
        local_rank: int = 0,
        world_size: int = 1,
        on_sample: Callable[[dict[str, Any]], None],
        current_step: Callable[[], int | None],
    ) -> None:
        self._settings = settings
        self._rank = rank
        # In a distributed job every rank of a node sees the same host: only local rank 0
        # reports CPU and RAM, and each rank reports its own GPU, so nothing is counted twice.
        self._measures_host = local_rank == 0
        own_device = local_rank if world_size > 1 else None
        self._on_sample = on_sample
        self._current_step = current_step
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="greenaudit-meter", daemon=True)
        self._tracker: Any = None
        self._cpu_method = MeasurementMethod.codecarbon
        self._gpu = NvmlGpuMeter(own_device=own_device)
        self._last_cc: Any = None
        self._seq = 0
        self._t_last = _utcnow()
        self.gpu_model: str | None = None
        self.gpu_count = 0
        #: Set once the sources are started (or have failed to), so hardware facts are known.
        self.ready = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        """Take the final sample and stop. Waits at most ``timeout_s``."""
        self._stopping.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.warning("greenaudit: the energy meter did not stop within %.0f s", timeout_s)

    def _run(self) -> None:
        try:
            try:
                self._start_sources()
            finally:
                self.ready.set()
            while not self._stopping.wait(self._settings.measure_interval_s):
                self._sample(final=False)
            self._sample(final=True)
        except Exception:
            logger.exception("greenaudit: energy measurement stopped early")
        finally:
            self._gpu.close()

    def _start_sources(self) -> None:
        if self._measures_host:
            self._start_codecarbon()
        if self._gpu.start():
            self.gpu_model, self.gpu_count = self._gpu.model, self._gpu.device_count
        self._t_last = _utcnow()

    def _start_codecarbon(self) -> None:
        try:
            from codecarbon.output_methods.base_output import BaseOutput

            meter = self

            class _DeltaCatcher(BaseOutput):
                def out(self, total: Any, delta: Any) -> None:
                    meter._last_cc = delta

            tracker = _new_codecarbon_tracker(self._settings, [_DeltaCatcher()])
            tracker.start()
            self._tracker = tracker
            self._cpu_method = _codecarbon_cpu_method(tracker)
        except Exception as error:
            logger.warning(
                "greenaudit: CodeCarbon could not start (%s); CPU and RAM energy are not measured",
                error,
            )

    def _sample(self, *, final: bool) -> None:
        self._last_cc = None
        if self._tracker is not None:
            # flush() and stop() hand the energy since the previous call to _DeltaCatcher.
            if final:
                self._tracker.stop()
            else:
                self._tracker.flush()
        gpu = self._gpu.read()
        now = _utcnow()
        duration_s = (now - self._t_last).total_seconds()
        sample: dict[str, Any] = {
            "rank": self._rank,
            "seq": self._seq,
            "t_start": self._t_last.isoformat(),
            "t_end": now.isoformat(),
            "gpu_count": 0,
            "step": self._current_step(),
        }
        energy = 0.0
        cc = self._last_cc
        if cc is not None:
            for component, kwh, method in (
                ("cpu", float(cc.cpu_energy), self._cpu_method),
                ("ram", float(cc.ram_energy), MeasurementMethod.codecarbon),
            ):
                kwh = max(kwh, 0.0)
                sample[f"{component}_kwh"] = kwh
                sample[f"{component}_w"] = kwh * J_PER_KWH / duration_s if duration_s > 0 else 0.0
                sample[f"{component}_method"] = method.value
                energy += kwh
        if gpu is not None:
            sample.update(
                gpu_kwh=gpu.kwh,
                gpu_w=gpu.mean_w,
                gpu_method=gpu.method.value,
                gpu_count=gpu.device_count,
            )
            if gpu.util_pct is not None:
                sample["gpu_util_pct"] = gpu.util_pct
            energy += gpu.kwh
        if energy == 0.0 and duration_s < MIN_EMPTY_INTERVAL_S:
            return
        self._t_last = now
        self._seq += 1
        self._on_sample(sample)
