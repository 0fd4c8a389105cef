"""The on-disk spool: every operation of a run is written here before it is sent.

One run is two files in the spool folder: ``<run_id>.jsonl`` holds the run's operations, one
JSON object per line, in the order they happened; ``<run_id>.acked`` holds how many of those
lines the service has acknowledged. Re-sending is harmless because every operation is
idempotent on the service, so the acknowledged count only has to be a lower bound.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RANK_MARK = ".rank"


@dataclass(frozen=True)
class SpooledOp:
    """One operation of a run and its wire payload.

    ``op`` is create_run, update_run, energy, metric, dataset_profile or finish_run.
    """

    op: str
    body: dict[str, Any]


class RunSpool:
    """The spool files of one run."""

    def __init__(
        self, folder: Path, run_id: str, max_bytes: int | None = None, rank: int = 0
    ) -> None:
        self.folder = folder
        self.run_id = run_id
        self.max_bytes = max_bytes
        self._size = 0
        # Each rank of a distributed run keeps its own files: they share the run, not the spool.
        name = run_id if rank == 0 else f"{run_id}{RANK_MARK}{rank}"
        self.path = folder / f"{name}.jsonl"
        self._acked_path = folder / f"{name}.acked"
        self._handle: Any = None

    def lock(self) -> bool:
        """Hold the spool for this process, so ``greenaudit flush`` leaves a live run alone.

        Returns False when another process holds it.
        """
        if self._handle is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            self._size = self.path.stat().st_size
        try:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def append(self, ops: list[SpooledOp]) -> tuple[int, int]:
        """Append operations and hand them to the OS, so a killed process keeps them.

        Returns (items that could not be written as JSON, items dropped because the spool is
        at ``max_bytes``). Raises ``OSError`` when the spool cannot be written at all.
        """
        if self._handle is None:
            self.lock()
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
                    try:
                        record = json.loads(line)
                        ops.append(SpooledOp(record["op"], record["body"]))
                    except (ValueError, KeyError, TypeError):
                        continue  # a line torn by a killed process: the rest still counts
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

    def __init__(
        self, folder: Path, run_id: str, ops: list[SpooledOp], max_items: int = 1_000_000
    ) -> None:
        super().__init__(folder, run_id)
        self._ops = list(ops)
        self._acked = 0
        self._max_items = max_items

    def lock(self) -> bool:
        return True

    def append(self, ops: list[SpooledOp]) -> tuple[int, int]:
        room = max(self._max_items - (len(self._ops) - self._acked), 0)
        essential = [o for o in ops if o.op in ("create_run", "finish_run", "end_rank")]
        rest = [o for o in ops if o.op not in ("create_run", "finish_run", "end_rank")]
        kept = rest[:room]
        self._ops.extend(kept + essential)
        return 0, len(rest) - len(kept)

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
    """The spools in ``folder`` (one per run and rank), oldest first."""
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.jsonl"), key=_modified):
        run_id, _, rank = path.stem.partition(RANK_MARK)
        yield RunSpool(folder, run_id, rank=int(rank) if rank.isdigit() else 0)
