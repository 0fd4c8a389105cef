"""The on-disk spool: every operation of a run is written here before it is sent.

One run is two files in the spool folder: ``<run_id>.jsonl`` holds the run's operations, one
JSON object per line, in the order they happened; ``<run_id>.acked`` holds how many of those
lines the service has acknowledged. Re-sending is harmless because every operation is
idempotent on the service, so the acknowledged count only has to be a lower bound.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SpooledOp:
    """One operation of a run and its wire payload.

    ``op`` is create_run, update_run, energy, metric, dataset_profile or finish_run.
    """

    op: str
    body: dict[str, Any]


class RunSpool:
    """The spool files of one run."""

    def __init__(self, folder: Path, run_id: str) -> None:
        self.folder = folder
        self.run_id = run_id
        self.path = folder / f"{run_id}.jsonl"
        self._acked_path = folder / f"{run_id}.acked"
        self._handle: Any = None

    def append(self, ops: list[SpooledOp]) -> int:
        """Append operations and hand them to the OS, so a killed process keeps them.

        Returns how many could not be written as JSON (they are skipped). Raises ``OSError``
        when the spool cannot be written at all.
        """
        lines, skipped = [], 0
        for op in ops:
            try:
                lines.append(
                    json.dumps(
                        {"op": op.op, "body": op.body}, separators=(",", ":"), allow_nan=False
                    )
                )
            except (TypeError, ValueError):
                skipped += 1
        if self._handle is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._handle.write("".join(line + "\n" for line in lines))
        self._handle.flush()
        return skipped

    def close(self) -> None:
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None

    def acked(self) -> int:
        try:
            return int(self._acked_path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def set_acked(self, count: int) -> None:
        tmp = self._acked_path.with_suffix(".acked.tmp")
        tmp.write_text(str(count))
        os.replace(tmp, self._acked_path)

    def read(self) -> list[SpooledOp]:
        """Every complete operation in the spool (a torn last line is ignored)."""
        ops = []
        try:
            with open(self.path, encoding="utf-8") as handle:
                for line in handle:
                    if not line.endswith("\n"):
                        break
                    record = json.loads(line)
                    ops.append(SpooledOp(record["op"], record["body"]))
        except FileNotFoundError:
            pass
        return ops

    def is_complete(self) -> bool:
        """Whether every operation has been acknowledged."""
        return self.acked() >= len(self.read())

    @property
    def rejected_path(self) -> Path:
        """Where requests the service refused are kept, with the reason."""
        return self.folder / f"{self.run_id}.rejected"

    def remove(self) -> None:
        """Delete the delivered spool (refused requests stay in ``rejected_path``)."""
        self.close()
        for path in (self.path, self._acked_path):
            path.unlink(missing_ok=True)


class MemorySpool(RunSpool):
    """Stands in for a spool that cannot be written (a read-only or full disk).

    The run is still sent; only a crash of the process can lose it.
    """

    def __init__(self, folder: Path, run_id: str, ops: list[SpooledOp]) -> None:
        super().__init__(folder, run_id)
        self._ops = list(ops)
        self._acked = 0

    def append(self, ops: list[SpooledOp]) -> int:
        self._ops.extend(ops)
        return 0

    def close(self) -> None:
        pass

    def acked(self) -> int:
        return self._acked

    def set_acked(self, count: int) -> None:
        self._acked = count

    def read(self) -> list[SpooledOp]:
        return list(self._ops)

    def remove(self) -> None:
        self._ops = []


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # delivered and removed by another process meanwhile
        return float("inf")


def spooled_runs(folder: Path) -> Iterator[RunSpool]:
    """The runs that have a spool in ``folder``, oldest first."""
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.jsonl"), key=_modified):
        yield RunSpool(folder, path.stem)
