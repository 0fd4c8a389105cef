"""Energy measurement: CodeCarbon for CPU and RAM, NVML for GPUs, on a thread of its own.

The meter thread wakes every ``measure_interval_s``, asks each source for the energy used since
its last wake-up and hands one :class:`EnergySample` to ``on_sample``. Nothing here runs on the
training thread, and nothing here raises into it.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from greenaudit.schemas import EnergySampleIn, MeasurementMethod
from greenaudit.settings import Settings
from greenaudit.units import J_PER_KWH

from .nvml import NvmlGpuMeter
from .threads import OnceWorker

logger = logging.getLogger("greenaudit")

# Below this, an interval with no energy is start-up or shut-down noise, not a measurement.
MIN_EMPTY_INTERVAL_S = 1.0


@dataclass(frozen=True)
class ComponentEnergy:
    """What one component (CPU, GPU or RAM) used over one interval, and how it was measured.

    Attributes:
        energy_kwh: Energy over the interval, kWh (never negative).
        mean_power_w: Mean power over the interval, W.
        method: How the energy was obtained.

    """

    energy_kwh: float
    mean_power_w: float
    method: MeasurementMethod


@dataclass(frozen=True)
class EnergySample:
    """One measured interval of one rank: what the meter hands on, before it goes on the wire.

    A component that was not measured is ``None``. :meth:`to_wire` is the one place it becomes
    the service's :class:`~greenaudit.schemas.EnergySampleIn`.

    Attributes:
        rank: The rank that measured it.
        seq: Its number among the rank's samples, from 0.
        t_start: Start of the interval (UTC).
        t_end: End of the interval (UTC).
        cpu: CPU energy, or ``None`` when this rank does not measure the host.
        gpu: GPU energy of the measured devices, or ``None`` without a GPU.
        ram: RAM energy, or ``None`` when this rank does not measure the host.
        gpu_count: Devices the GPU energy covers.
        gpu_util_pct: Mean GPU utilisation over the interval, percent, when reported.
        step: The last step logged when the interval ended.

    Example:
        >>> from datetime import datetime, timedelta, timezone
        >>> start = datetime(2026, 12, 1, tzinfo=timezone.utc)
        >>> cpu = ComponentEnergy(1e-5, 3.6, MeasurementMethod.rapl)
        >>> sample = EnergySample(0, 0, start, start + timedelta(seconds=10), cpu=cpu)
        >>> sample.duration_s, sample.energy_kwh, sample.to_wire().cpu_method.value
        (10.0, 1e-05, 'rapl')

    """

    rank: int
    seq: int
    t_start: datetime
    t_end: datetime
    cpu: ComponentEnergy | None = None
    gpu: ComponentEnergy | None = None
    ram: ComponentEnergy | None = None
    gpu_count: int = 0
    gpu_util_pct: float | None = None
    step: int | None = None

    @property
    def duration_s(self) -> float:
        """Length of the interval, seconds."""
        return (self.t_end - self.t_start).total_seconds()

    @property
    def energy_kwh(self) -> float:
        """CPU, GPU and RAM energy together, kWh."""
        return sum(part.energy_kwh for _, part in self.components())

    def components(self) -> Iterator[tuple[str, ComponentEnergy]]:
        """The measured components, as ``("cpu" | "gpu" | "ram", energy)``."""
        for name, part in (("cpu", self.cpu), ("gpu", self.gpu), ("ram", self.ram)):
            if part is not None:
                yield name, part

    def to_wire(self) -> EnergySampleIn:
        """The sample as the service takes it. Raises ``ValidationError`` on an invalid one."""
        cpu, gpu, ram = self.cpu, self.gpu, self.ram
        return EnergySampleIn(
            rank=self.rank,
            seq=self.seq,
            t_start=self.t_start,
            t_end=self.t_end,
            cpu_kwh=cpu.energy_kwh if cpu else None,
            cpu_w=cpu.mean_power_w if cpu else None,
            cpu_method=cpu.method if cpu else None,
            gpu_kwh=gpu.energy_kwh if gpu else None,
            gpu_w=gpu.mean_power_w if gpu else None,
            gpu_method=gpu.method if gpu else None,
            ram_kwh=ram.energy_kwh if ram else None,
            ram_w=ram.mean_power_w if ram else None,
            ram_method=ram.method if ram else None,
            gpu_count=self.gpu_count,
            gpu_util_pct=self.gpu_util_pct,
            step=self.step,
        )


def _component(kwh: float, duration_s: float, method: MeasurementMethod) -> ComponentEnergy:
    # CodeCarbon's deltas can come out slightly negative (or NaN) around a restart.
    kwh = kwh if math.isfinite(kwh) and kwh > 0.0 else 0.0
    return ComponentEnergy(kwh, kwh * J_PER_KWH / duration_s if duration_s > 0 else 0.0, method)


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
        on_sample: Callable[[EnergySample], None],
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
        self._worker = OnceWorker(self._run, name="greenaudit-meter")
        # Held while a sample is handed on, so that none is handed on once stop() returns.
        self._emit_lock = threading.Lock()
        self._closed = False
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
        """Start measuring on the meter thread (from any thread, at most once)."""
        if self._stopping.is_set() or not self._worker.start():
            self.ready.set()  # nothing will be measured; nobody should wait for it

    def stop(self, timeout_s: float) -> None:
        """Take the final sample and stop. Waits at most ``timeout_s``.

        Safe however soon it is called: a meter whose thread has not begun (not started yet,
        or waiting for a CPU) measures nothing and never will. Once this returns,
        ``on_sample`` is not called again.
        """
        self._stopping.set()
        if self._worker.claim():
            self.ready.set()
        elif not self._worker.wait(timeout_s):
            logger.warning(
                "greenaudit: the energy meter did not stop within %.0f s; "
                "its last interval is not counted",
                timeout_s,
            )
        with self._emit_lock:
            self._closed = True

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
        cc = self._last_cc
        cpu = ram = None
        if cc is not None:
            cpu = _component(float(cc.cpu_energy), duration_s, self._cpu_method)
            ram = _component(float(cc.ram_energy), duration_s, MeasurementMethod.codecarbon)
        sample = EnergySample(
            rank=self._rank,
            seq=self._seq,
            t_start=self._t_last,
            t_end=now,
            cpu=cpu,
            gpu=ComponentEnergy(gpu.kwh, gpu.mean_w, gpu.method) if gpu is not None else None,
            ram=ram,
            gpu_count=gpu.device_count if gpu is not None else 0,
            gpu_util_pct=gpu.util_pct if gpu is not None else None,
            step=self._current_step(),
        )
        if sample.energy_kwh == 0.0 and duration_s < MIN_EMPTY_INTERVAL_S:
            return
        with self._emit_lock:
            if self._closed:
                return  # the run has been summed up without it
            self._t_last = now
            self._seq += 1
            self._on_sample(sample)
