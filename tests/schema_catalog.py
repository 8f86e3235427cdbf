"""A database schema as data, read from the Postgres catalog, for schema comparisons.

The migration and parity tests compare what upstream's ``setup()`` builds with what our Alembic
revisions build, so the snapshot reads only the catalog (never our ``MetaData``): tables,
columns with their formatted types, nullability and defaults, every constraint with Postgres' own
rendering of it (``pg_get_constraintdef``), and every index with its ``indexdef``. Names in a
snapshot are schema-relative, so snapshots of two Postgres schemas compare equal when their
contents do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from langgraph_sqlalchemy import migrations
from langgraph_sqlalchemy.engine import create_engine

VERSION_TABLE = "langgraph_sqlalchemy_version"

# Catalog queries are text(): they read pg_catalog views that no Table object describes; the
# schema name is always a bound parameter.
_TABLES = sa.text(
    "SELECT table_name FROM information_schema.tables "
    "WHERE table_schema = :schema AND table_type = 'BASE TABLE'"
)
_COLUMNS = sa.text(
    """
    SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
           pg_get_expr(d.adbin, d.adrelid), a.attnum
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE n.nspname = :schema AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
    """
)
_CONSTRAINTS = sa.text(
    """
    SELECT c.relname, con.conname, con.contype::text, pg_get_constraintdef(con.oid)
    FROM pg_constraint con
    JOIN pg_class c ON c.oid = con.conrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = :schema AND con.contype <> 'n'
    """
)
# pg_get_indexdef is what pg_indexes.indexdef shows; indisvalid is not in that view, and an
# INVALID index (left by an interrupted CONCURRENTLY build) must not pass for a real one.
_INDEXES = sa.text(
    """
    SELECT t.relname, i.relname, pg_get_indexdef(i.oid), x.indisvalid
    FROM pg_index x
    JOIN pg_class i ON i.oid = x.indexrelid
    JOIN pg_class t ON t.oid = x.indrelid
    JOIN pg_namespace n ON n.oid = i.relnamespace
    WHERE n.nspname = :schema
    """
)


@dataclass(frozen=True)
class Catalog:
    """One Postgres schema's tables as the catalog describes them."""

    tables: frozenset[str]
    # (table, column) -> (type, nullable, default)
    columns: dict[tuple[str, str], tuple[str, bool, str | None]]
    # column order per table, to notice a column added in another position
    column_order: dict[str, tuple[str, ...]]
    # (table, constraint name) -> (kind, definition)
    constraints: dict[tuple[str, str], tuple[str, str]]
    # index name -> (table, definition with the schema qualification removed, valid)
    indexes: dict[str, tuple[str, str, bool]]
    extra: dict[str, Any] = field(default_factory=dict)

    def without_tables(self, *names: str) -> Catalog:
        drop = set(names)
        return Catalog(
            tables=frozenset(t for t in self.tables if t not in drop),
            columns={k: v for k, v in self.columns.items() if k[0] not in drop},
            column_order={k: v for k, v in self.column_order.items() if k not in drop},
            constraints={k: v for k, v in self.constraints.items() if k[0] not in drop},
            indexes={k: v for k, v in self.indexes.items() if v[0] not in drop},
        )

    def differences(self, other: Catalog) -> list[str]:
        """Readable differences (empty when equal), for assertion messages."""
        out: list[str] = []
        for attr in ("tables", "columns", "column_order", "constraints", "indexes"):
            mine, theirs = getattr(self, attr), getattr(other, attr)
            if isinstance(mine, frozenset):
                out += [f"table only on left: {t}" for t in sorted(mine - theirs)]
                out += [f"table only on right: {t}" for t in sorted(theirs - mine)]
                continue
            for key in sorted(set(mine) | set(theirs), key=repr):
                if mine.get(key) != theirs.get(key):
                    out.append(f"{attr} {key}: {mine.get(key)!r} != {theirs.get(key)!r}")
        return out


def _strip_schema(definition: str, schema: str) -> str:
    return definition.replace(f" {schema}.", " ").replace(f' "{schema}".', " ")


def _normalize_index(definition: str, schema: str) -> str:
    """Schema-relative, with storage parameters sorted: ``WITH (m='8', ef_construction='32')``
    and ``WITH (ef_construction='32', m='8')`` build the same index."""
    definition = _strip_schema(definition, schema)
    head, sep, tail = definition.partition(" WITH (")
    if not sep:
        return definition
    options, close, rest = tail.partition(")")
    return f"{head}{sep}{', '.join(sorted(options.split(', ')))}{close}{rest}"


async def read_catalog(
    bind: AsyncEngine | AsyncConnection, schema: str = "public"
) -> Catalog:
    if isinstance(bind, AsyncEngine):
        async with bind.connect() as conn:
            return await read_catalog(conn, schema)
    conn = bind
    params = {"schema": schema}
    tables = frozenset((await conn.execute(_TABLES, params)).scalars())
    columns: dict[tuple[str, str], tuple[str, bool, str | None]] = {}
    ordered: dict[str, list[tuple[int, str]]] = {}
    for table, column, type_, nullable, default, attnum in await conn.execute(_COLUMNS, params):
        columns[(table, column)] = (type_, nullable, default)
        ordered.setdefault(table, []).append((attnum, column))
    constraints = {
        (table, name): (kind, _strip_schema(definition, schema))
        for table, name, kind, definition in await conn.execute(_CONSTRAINTS, params)
    }
    indexes = {
        name: (table, _normalize_index(definition, schema), valid)
        for table, name, definition, valid in await conn.execute(_INDEXES, params)
    }
    return Catalog(
        tables=tables,
        columns=columns,
        column_order={t: tuple(c for _, c in sorted(cols)) for t, cols in ordered.items()},
        constraints=constraints,
        indexes=indexes,
    )


async def tracking_versions(
    bind: AsyncEngine | AsyncConnection, table: str, schema: str | None = None
) -> list[int]:
    """Rows of one of upstream's migration tracking tables (``[]`` if it does not exist)."""
    t = sa.table(table, sa.column("v"), schema=schema)
    if isinstance(bind, AsyncEngine):
        async with bind.connect() as conn:
            return await tracking_versions(conn, table, schema)
    exists = (
        await bind.execute(sa.select(sa.func.to_regclass(f"{schema or 'public'}.{table}")))
    ).scalar()
    if exists is None:
        return []
    return list((await bind.execute(sa.select(t.c.v).order_by(t.c.v))).scalars())


async def dump_tables(
    bind: AsyncEngine | AsyncConnection, tables: list[str], schema: str | None = None
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of ``tables``, sorted, as plain tuples (for before/after comparisons)."""
    if isinstance(bind, AsyncEngine):
        async with bind.connect() as conn:
            return await dump_tables(conn, tables, schema)
    md = sa.MetaData(schema=schema)
    out: dict[str, list[tuple[Any, ...]]] = {}
    for name in tables:
        table = await bind.run_sync(
            lambda sync_conn, n=name: sa.Table(n, md, autoload_with=sync_conn)
        )
        rows = (await bind.execute(sa.select(table))).all()
        out[name] = sorted((tuple(r) for r in rows), key=repr)
    return out


_reference: list[Catalog] = []


async def reference_catalog(database_factory: Callable[[], Awaitable[str]]) -> Catalog:
    """What ``migrations.upgrade`` builds on an empty database (built once per test process)."""
    if not _reference:
        engine = create_engine(await database_factory())
        try:
            await migrations.upgrade(engine)
            _reference.append(await read_catalog(engine))
        finally:
            await engine.dispose()
    return _reference[0]
