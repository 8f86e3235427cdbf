"""Keeping upstream's migration tracking tables current from our revisions.

``langgraph-checkpoint-postgres`` decides what to run from ``max(v)`` of
``checkpoint_migrations`` / ``store_migrations`` / ``vector_migrations``. Each of our revisions
that reproduces some of upstream's migrations records their numbers, so upstream's ``setup()``
finds nothing left to do on a database we migrated, and a downgrade takes them back out so it
would redo exactly what we removed.
"""

from __future__ import annotations

from collections.abc import Iterable

from alembic import op
from sqlalchemy import Column, Integer, MetaData, Table, delete
from sqlalchemy.dialects.postgresql import insert

__all__ = ["forget_versions", "record_versions"]


def _tracking_table(name: str, schema: str | None) -> Table:
    # A private lightweight Table: revisions must not depend on the current metadata, which
    # later releases may change.
    return Table(
        name,
        MetaData(),
        Column("v", Integer, primary_key=True, autoincrement=False),
        schema=schema,
    )


def record_versions(name: str, versions: Iterable[int], schema: str | None) -> None:
    rows = [{"v": v} for v in versions]
    op.execute(insert(_tracking_table(name, schema)).values(rows).on_conflict_do_nothing())


def forget_versions(name: str, versions: Iterable[int], schema: str | None) -> None:
    table = _tracking_table(name, schema)
    op.execute(delete(table).where(table.c.v.in_(list(versions))))
