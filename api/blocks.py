"""Energy blocks: a run's samples summed over blocks of consecutive seqs, kept by ingestion.

A forecast or a power curve over a run of a million samples must not read a million rows
(issue 16, finding 10). Ingestion therefore adds each new sample to one block of each width in
:data:`WIDTHS` (``run_energy_block``), in the same transaction as the running totals, and the
readers pick the narrowest width that keeps them under their row budget. Block ``b`` of width
``w`` holds the rank's samples with ``b*w <= seq < (b+1)*w``, so a group of blocks of one
width is exactly a group of ``seq // (k*w)``: sums, minima and maxima over blocks equal those
over the samples they hold.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, Uuid, bindparam, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .models import RunEnergyBlock

# Each width 16 times the last: a reader needing buckets of n samples finds a width within
# a factor 16 below n, and a batch of 1,000 samples of one rank updates about 70 blocks.
WIDTHS = (16, 256, 4096, 65536)
_block = RunEnergyBlock.__table__.c


def _kwh(row: dict[str, Any]) -> float:
    return float((row["cpu_kwh"] or 0.0) + (row["gpu_kwh"] or 0.0) + (row["ram_kwh"] or 0.0))


def _peak(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else max(a, b)


def summed(run_id: uuid.UUID, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The blocks of every width that ``rows`` (newly stored samples of one run) add to."""
    blocks: dict[tuple[int, int, int], dict[str, Any]] = {}
    for row in rows:
        kwh = _kwh(row)
        for width in WIDTHS:
            key = (width, row["rank"], row["seq"] // width)
            block = blocks.get(key)
            if block is None:
                blocks[key] = {
                    "run_id": run_id,
                    "width": width,
                    "rank": row["rank"],
                    "block": key[2],
                    "t_start": row["t_start"],
                    "t_end": row["t_end"],
                    "kwh": kwh,
                    "co2_kg": row["co2_kg"],
                    "samples": 1,
                    "step": row.get("step"),
                    "cpu_w": row.get("cpu_w"),
                    "gpu_w": row.get("gpu_w"),
                    "ram_w": row.get("ram_w"),
                }
                continue
            block["t_start"] = min(block["t_start"], row["t_start"])
            block["t_end"] = max(block["t_end"], row["t_end"])
            block["kwh"] += kwh
            block["co2_kg"] += row["co2_kg"]
            block["samples"] += 1
            for name in ("step", "cpu_w", "gpu_w", "ram_w"):
                block[name] = _peak(block[name], row.get(name))
    return [blocks[key] for key in sorted(blocks)]


def _greatest(dialect: str, a: Any, b: Any, nullable: bool = False) -> Any:
    if nullable:
        # SQLite's max(a, b) is NULL when either is; a block's peak ignores unknown values.
        a, b = func.coalesce(a, b), func.coalesce(b, a)
    return func.greatest(a, b) if dialect == "postgresql" else func.max(a, b)


@cache
def _upsert(dialect: str) -> Any:
    table = RunEnergyBlock.__table__
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    new = insert.excluded
    least = func.least if dialect == "postgresql" else func.min
    return insert.on_conflict_do_update(
        index_elements=[_block.run_id, _block.width, _block.rank, _block.block],
        set_={
            "t_start": least(_block.t_start, new.t_start),
            "t_end": _greatest(dialect, _block.t_end, new.t_end),
            "kwh": _block.kwh + new.kwh,
            "co2_kg": _block.co2_kg + new.co2_kg,
            "samples": _block.samples + new.samples,
            **{
                name: _greatest(dialect, _block[name], new[name], nullable=True)
                for name in ("step", "cpu_w", "gpu_w", "ram_w")
            },
        },
    )


def add(session: Session, run_id: uuid.UUID, rows: Sequence[dict[str, Any]]) -> None:
    """Add newly stored samples of one run to its blocks, atomically (an upsert per block)."""
    if rows:
        session.execute(_upsert(session.get_bind().dialect.name), summed(run_id, rows))


def rebuild_sql(samples: str = "energy_sample") -> list[str]:
    """Statements that fill the blocks from ``samples`` (for rows stored around ingestion).

    ``samples`` is the table, or a parenthesised, aliased subquery of it, to read samples from.
    """
    return [
        "INSERT INTO run_energy_block (run_id, width, rank, block, t_start, t_end, kwh, co2_kg, "
        "samples, step, cpu_w, gpu_w, ram_w) "
        f"SELECT run_id, {width}, rank, seq / {width}, MIN(t_start), MAX(t_end), "
        "SUM(COALESCE(cpu_kwh, 0) + COALESCE(gpu_kwh, 0) + COALESCE(ram_kwh, 0)), SUM(co2_kg), "
        "COUNT(*), MAX(step), MAX(cpu_w), MAX(gpu_w), MAX(ram_w) "
        f"FROM {samples} GROUP BY run_id, rank, seq / {width}"
        for width in WIDTHS
    ]


def rebuild(session: Session) -> None:
    """Fill the blocks from the stored samples (the table must be empty)."""
    for statement in rebuild_sql():
        session.execute(text(statement))


def rebuild_project(connection: Connection, project_id: uuid.UUID) -> None:
    """Fill the blocks of one project's runs from their samples (its blocks must be absent)."""
    of_project = (
        "(SELECT * FROM energy_sample WHERE run_id IN "
        "(SELECT id FROM run WHERE project_id = :project_id)) AS s"
    )
    for statement in rebuild_sql(of_project):
        query = text(statement).bindparams(bindparam("project_id", type_=Uuid()))
        connection.execute(query, {"project_id": project_id})


def width_for(samples: int, max_rows: int) -> int | None:
    """The narrowest width that reads at most ``max_rows`` blocks of a run.

    None when the samples themselves are no more than ``max_rows``. A rank's partial blocks
    add one row each at most.
    """
    if samples <= max_rows:
        return None
    for width in WIDTHS:
        if samples / width <= max_rows:
            return width
    return WIDTHS[-1]


def width_within(per_bucket: int) -> int | None:
    """The widest width no more than twice ``per_bucket``, or None below the narrowest.

    Buckets are then whole blocks of it, so a reader asking for n buckets gets between n/2
    and n of them and reads at most 8n blocks: wider blocks, fewer rows.
    """
    fitting = [width for width in WIDTHS if width <= 2 * per_bucket]
    return fitting[-1] if fitting and per_bucket >= WIDTHS[0] else None


def progress(run_id: uuid.UUID, width: int) -> Select[Any]:
    """Each block's highest step, kWh and kg CO2e, in the order the blocks ended (all ranks)."""
    return (
        select(_block.step, _block.kwh, _block.co2_kg)
        .where(_block.run_id == run_id, _block.width == width)
        .order_by(_block.t_end, _block.rank, _block.block)
    )


def buckets(run_id: uuid.UUID, width: int, per_bucket: int, epoch: Any) -> tuple[Select[Any], int]:
    """Buckets of ``per_bucket`` samples of each rank (rounded up to whole blocks) from blocks.

    Returns the query, with the columns of ``analytics.repository.sample_buckets``, and the
    bucket size it used. ``epoch`` turns a timestamp column into seconds since 1970.
    """
    per_block = -(-per_bucket // width)
    group: ColumnElement[int] = _block.block // per_block if per_block > 1 else _block.block
    query = (
        select(
            epoch(func.min(_block.t_start)).label("t_start"),
            epoch(func.max(_block.t_end)).label("t_end"),
            func.sum(_block.kwh).label("kwh"),
            func.sum(_block.co2_kg).label("co2_kg"),
            _block.rank,
            func.max(_block.cpu_w).label("cpu_w"),
            func.max(_block.gpu_w).label("gpu_w"),
            func.max(_block.ram_w).label("ram_w"),
        )
        .where(_block.run_id == run_id, _block.width == width)
        .group_by(_block.rank, group)
        .order_by(func.min(_block.t_start), _block.rank)
    )
    return query, per_block * width
