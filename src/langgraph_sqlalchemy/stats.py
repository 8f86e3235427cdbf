"""Rows and on-disk size of each of this library's tables (``langgraph-sqlalchemy stats`` and
the demo's last section).

Its own module so that the CLI and the demo share it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import TABLE_NAMES, get_tables

__all__ = ["TableStats", "human_bytes", "table_stats"]


@dataclass(frozen=True)
class TableStats:
    """One table: its row count and total size (heap, indexes, TOAST); None when the table
    does not exist (a vector layer never created, a schema never migrated)."""

    name: str
    rows: int | None
    size_bytes: int | None


async def table_stats(conn: AsyncConnection, schema: str | None = None) -> list[TableStats]:
    """Every table of ``schema`` in :data:`~langgraph_sqlalchemy.schema.TABLE_NAMES` order."""
    tables = get_tables(schema)
    found: list[TableStats] = []
    for name in TABLE_NAMES:
        table = getattr(tables, name)
        # The name is passed as a bound value to to_regclass (never formatted into SQL), which
        # answers NULL for a table that does not exist instead of failing the whole report.
        qualified = f"{schema}.{name}" if schema else name
        oid = (await conn.execute(select(func.to_regclass(qualified)))).scalar()
        if oid is None:
            found.append(TableStats(name, None, None))
            continue
        rows = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
        size_of = func.pg_total_relation_size(func.to_regclass(qualified))
        size = (await conn.execute(select(size_of))).scalar_one()
        found.append(TableStats(name, int(rows), int(size)))
    return found


def human_bytes(size: int) -> str:
    """``size`` bytes as "512 B", "1.5 kB", "2.0 MB" (powers of 1024, as PostgreSQL's
    ``pg_size_pretty``), up to GB."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable: the loop returns at GB")  # pragma: no cover
