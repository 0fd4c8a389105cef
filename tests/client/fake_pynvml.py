"""A stand-in for the whole ``pynvml`` module, for machines without an NVIDIA GPU.

Each fake device has an energy counter (mJ) and a power reading (mW) that tests advance.
"""

from __future__ import annotations

import types
from dataclasses import dataclass


class NVMLError(Exception):
    pass


@dataclass
class FakeDevice:
    uuid: str
    name: str = "NVIDIA H200"
    energy_mj: int = 0
    power_mw: float = 0.0
    has_counter: bool = True
    # Added to the counter at every read, so a device "works" while a run is measured.
    mj_per_read: int = 0
    utilisation_pct: int = 0


def make_module(devices: list[FakeDevice], *, init_fails: bool = False) -> types.ModuleType:
    module = types.ModuleType("pynvml")
    state = {"initialised": 0}

    def nvmlInit() -> None:
        if init_fails:
            raise NVMLError("NVML Shared Library Not Found")
        state["initialised"] += 1

    def nvmlShutdown() -> None:
        state["initialised"] -= 1

    def nvmlDeviceGetCount() -> int:
        return len(devices)

    def nvmlDeviceGetHandleByIndex(index: int) -> FakeDevice:
        if index >= len(devices):
            raise NVMLError("Invalid Argument")
        return devices[index]

    def nvmlDeviceGetHandleByUUID(uuid: str) -> FakeDevice:
        for device in devices:
            if device.uuid == uuid:
                return device
        raise NVMLError("Not Found")

    def nvmlDeviceGetName(device: FakeDevice) -> str:
        return device.name

    def nvmlDeviceGetTotalEnergyConsumption(device: FakeDevice) -> int:
        if not device.has_counter:
            raise NVMLError("Not Supported")
        device.energy_mj += device.mj_per_read
        return device.energy_mj

    def nvmlDeviceGetPowerUsage(device: FakeDevice) -> float:
        return device.power_mw

    def nvmlDeviceGetUtilizationRates(device: FakeDevice) -> types.SimpleNamespace:
        return types.SimpleNamespace(gpu=device.utilisation_pct, memory=0)

    for name, value in list(locals().items()):
        if name.startswith("nvml"):
            setattr(module, name, value)
    module.NVMLError = NVMLError  # type: ignore[attr-defined]
    module.state = state  # type: ignore[attr-defined]
    return module
