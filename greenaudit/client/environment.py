"""Facts about where a run executes: distributed rank, node and host hardware.

All cheap reads of environment variables and /proc; nothing here touches the network.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    """A process's place in a (possibly distributed) job."""

    rank: int
    local_rank: int
    world_size: int
    node: str


def _first_int(
    environ: dict[str, str] | os._Environ[str], names: tuple[str, ...], default: int
) -> int:
    for name in names:
        value = environ.get(name)
        if value is not None and value.strip().isdigit():
            return int(value)
    return default


def placement(environ: dict[str, str] | None = None) -> Placement:
    """Rank, local rank, world size and node, from torchrun's variables or else SLURM's."""
    env = os.environ if environ is None else environ
    return Placement(
        rank=_first_int(env, ("RANK", "SLURM_PROCID"), 0),
        local_rank=_first_int(env, ("LOCAL_RANK", "SLURM_LOCALID"), 0),
        world_size=max(1, _first_int(env, ("WORLD_SIZE", "SLURM_NTASKS"), 1)),
        node=env.get("SLURMD_NODENAME") or socket.gethostname(),
    )


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo, where there is one."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return None


def ram_total_gb() -> float | None:
    """Physical memory in GiB."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (ValueError, OSError, AttributeError):
        return None
