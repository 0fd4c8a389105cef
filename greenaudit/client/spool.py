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

    def __init__(self, folder: Path, run_id: str, max_bytes: int | None = None) -> None:
        self.folder = folder
        self.run_id = run_id
        self.max_bytes = max_bytes
        self._size = 0
        self.path = folder / f"{run_id}.jsonl"
        self._acked_path = folder / f"{run_id}.acked"
        self._handle: Any = None

    def append(self, ops: list[SpooledOp]) -> tuple[int, int]:
        """Append operations and hand them to the OS, so a killed process keeps them.

        Returns (items that could not be written as JSON, items dropped because the spool is
        at ``max_bytes``). Raises ``OSError`` when the spool cannot be written at all.
        """
        if self._handle is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            self._size = self.path.stat().st_size
        lines, skipped, dropped = [], 0, 0
        for op in ops:
            try:
                line = (
                    json.dumps(
                        {"op": op.op, "body": op.body}, separators=(",", ":"), allow_nan=False
                    )
                    + "\n"
                )
            except (TypeError, ValueError):
                skipped += 1
                continue
            # The run's own creation and end are always kept, so the rest stays attributable.
            essential = op.op in ("create_run", "finish_run", "end_rank")
            if self.max_bytes and self._size + len(line) > self.max_bytes and not essential:
                dropped += 1
                continue
            lines.append(line)
            self._size += len(line)
        self._handle.write("".join(lines))
        self._handle.flush()
        return skipped, dropped

    def compact(self) -> None:
        """Empty a spool whose every line the service has acknowledged, so it stays small.

        The count is reset before the file is cut: a crash in between only re-sends lines.
        """
        if self._handle is None or self.acked() < len(self.read()):
            return
        self.set_acked(0)
        self._handle.seek(0)
        self._handle.truncate()
        self._size = 0

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

    def append(self, ops: list[SpooledOp]) -> tuple[int, int]:
        self._ops.extend(ops)
        return 0, 0

    def compact(self) -> None:
        self._ops = self._ops[self._acked :]
        self._acked = 0

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
