"""``CREATE INDEX CONCURRENTLY`` that survives an interrupted earlier attempt.

A concurrent build that fails or is cancelled half-way (the process is killed, a deploy times
out, a lock wait is cancelled) leaves the index behind marked INVALID: Postgres keeps maintaining
it on writes but never uses it for reads. ``IF NOT EXISTS`` then sees the name and skips the
build, so a retry would keep the useless index forever. Upstream's migrations have this problem;
ours drop such a leftover first (https://www.postgresql.org/docs/current/sql-createindex.html
#SQL-CREATEINDEX-CONCURRENTLY).

Both functions must run inside ``op.get_context().autocommit_block()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alembic import op
from sqlalchemy import column, func, select, table

__all__ = ["create_index_concurrently", "drop_index_concurrently"]

_pg_index = table("pg_index", column("indexrelid"), column("indisvalid"), schema="pg_catalog")
_pg_class = table(
    "pg_class", column("oid"), column("relname"), column("relnamespace"), schema="pg_catalog"
)
_pg_namespace = table("pg_namespace", column("oid"), column("nspname"), schema="pg_catalog")


def _is_invalid(name: str, schema: str | None) -> bool:
    if op.get_context().as_sql:
        # Offline scripts cannot look at the catalog; they render the plain statement.
        return False
    query = (
        select(_pg_index.c.indisvalid)
        .join(_pg_class, _pg_class.c.oid == _pg_index.c.indexrelid)
        .join(_pg_namespace, _pg_namespace.c.oid == _pg_class.c.relnamespace)
        .where(
            _pg_class.c.relname == name,
            # Unqualified DDL lands in current_schema(), so that is where to look.
            _pg_namespace.c.nspname == (schema if schema is not None else func.current_schema()),
        )
    )
    return op.get_bind().execute(query).scalar() is False


def create_index_concurrently(
    name: str, table_name: str, columns: Sequence[str], schema: str | None, **kw: Any
) -> None:
    """Build the index without blocking writers; replaces an INVALID leftover of the same name."""
    if _is_invalid(name, schema):
        drop_index_concurrently(name, table_name, schema)
    op.create_index(
        name,
        table_name,
        list(columns),
        schema=schema,
        if_not_exists=True,
        postgresql_concurrently=True,
        **kw,
    )


def drop_index_concurrently(name: str, table_name: str, schema: str | None) -> None:
    op.drop_index(
        name,
        table_name=table_name,
        schema=schema,
        if_exists=True,
        postgresql_concurrently=True,
    )
