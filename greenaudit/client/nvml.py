"""GPU energy straight from NVML, for the devices this process may use.

``pynvml`` (the ``nvidia-ml-py`` distribution, extra ``gpu``) is imported lazily, when a run
starts, never at import. Any NVML failure means "no GPU measured", never an exception.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from greenaudit.schemas import MeasurementMethod
from greenaudit.units import J_PER_KWH, MJ_PER_KWH

logger = logging.getLogger("greenaudit")

MW_PER_W = 1000.0  # NVML reports power in milliwatts


@dataclass(frozen=True)
class GpuInterval:
    """Energy the measured GPUs used over one interval."""

    kwh: float
    mean_w: float
    method: MeasurementMethod
    device_count: int
    util_pct: float | None = None


@dataclass
class _Device:
    handle: Any
    has_counter: bool
    last_mj: int = 0
    last_mw: float = 0.0


def visible_device_selectors(environ: Mapping[str, str] | None = None) -> list[str] | None:
    """The devices ``CUDA_VISIBLE_DEVICES`` names, or ``None`` when it is unset (all devices).

    Entries are indices (``"0,2"``) or UUIDs (``"GPU-…"``, ``"MIG-…"``). An empty value, or
    ``-1``, hides every device. CUDA ignores everything from the first invalid entry on.
    """
    raw = (os.environ if environ is None else environ).get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    selectors = []
    for part in (p.strip() for p in raw.split(",")):
        if not part or part.startswith("-"):
            break
        selectors.append(part)
    return selectors


class NvmlGpuMeter:
    """Reads the energy of the visible NVIDIA GPUs between calls to :meth:`read`."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, own_device: int | None = None
    ) -> None:
        """Measure the visible GPUs, or only ``own_device`` in a distributed job.

        ``own_device`` is the rank's local rank: the device it uses, so that the ranks of a
        node do not each measure every GPU.
        """
        self._clock = clock
        self._own_device = own_device
        self._nvml: Any = None
        self._devices: list[_Device] = []
        self._last_read = 0.0
        self.model: str | None = None

    @property
    def device_count(self) -> int:
        return len(self._devices)

    def start(self) -> bool:
        """Find the visible devices and take a first reading. Returns whether any was found."""
        try:
            import pynvml
        except ImportError:
            return False
        try:
            pynvml.nvmlInit()
        except Exception:  # NVMLError and driver-library load failures alike: no GPU here.
            return False
        self._nvml = pynvml
        try:
            self._devices = [self._open(handle) for handle in self._handles()]
            if self._devices:
                name = pynvml.nvmlDeviceGetName(self._devices[0].handle)
                self.model = name.decode() if isinstance(name, bytes) else str(name)
        except Exception as error:
            logger.warning(
                "greenaudit: NVML could not list GPUs (%s); GPU energy not measured", error
            )
            self._devices = []
        self._last_read = self._clock()
        if not self._devices:
            self.close()
        return bool(self._devices)

    def _handles(self) -> list[Any]:
        nvml = self._nvml
        selectors = visible_device_selectors()
        if selectors is None and self._own_device is not None:
            selectors = [str(self._own_device)]
        if selectors is None:
            return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        if self._own_device is not None and len(selectors) > 1:
            # The launcher showed this rank several devices; it uses the one at its local rank.
            selectors = selectors[self._own_device : self._own_device + 1]
        handles = []
        for selector in selectors:
            try:
                if selector.isdigit():
                    handles.append(nvml.nvmlDeviceGetHandleByIndex(int(selector)))
                else:
                    handles.append(nvml.nvmlDeviceGetHandleByUUID(selector))
            except Exception:
                # CUDA ignores an invalid entry and everything after it; so do we.
                break
        return handles

    def _open(self, handle: Any) -> _Device:
        nvml = self._nvml
        try:
            counter_mj = int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
            return _Device(handle, True, last_mj=counter_mj)
        except Exception:
            # Pre-Volta GPUs and some virtualised ones have no counter: integrate power instead.
            return _Device(handle, False, last_mw=float(nvml.nvmlDeviceGetPowerUsage(handle)))

    def read(self) -> GpuInterval | None:
        """Energy since the previous reading, or ``None`` when no GPU is measured."""
        if not self._devices:
            return None
        now = self._clock()
        elapsed = now - self._last_read
        self._last_read = now
        total_kwh = 0.0
        integrated = False
        utilisation = []
        for device in self._devices:
            try:
                if device.has_counter:
                    mj = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(device.handle))
                    total_kwh += max(mj - device.last_mj, 0) / MJ_PER_KWH
                    device.last_mj = mj
                else:
                    mw = float(self._nvml.nvmlDeviceGetPowerUsage(device.handle))
                    # Trapezoid between this reading and the previous one.
                    mean_w = (mw + device.last_mw) / 2 / MW_PER_W
                    total_kwh += mean_w * elapsed / J_PER_KWH
                    device.last_mw = mw
                    integrated = True
                try:
                    rates = self._nvml.nvmlDeviceGetUtilizationRates(device.handle)
                    utilisation.append(float(rates.gpu))
                except Exception:  # some devices (vGPU, MIG) do not report it
                    pass
            except Exception as error:
                logger.warning("greenaudit: NVML read failed (%s); GPU energy not measured", error)
                self.close()
                return None
        return GpuInterval(
            kwh=total_kwh,
            mean_w=total_kwh * J_PER_KWH / elapsed if elapsed > 0 else 0.0,
            method=MeasurementMethod.nvml_power if integrated else MeasurementMethod.nvml_counter,
            device_count=len(self._devices),
            util_pct=sum(utilisation) / len(utilisation) if utilisation else None,
        )

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
        self._nvml = None
        self._devices = []
