"""The tables, as SQLAlchemy Core ``Table`` objects on one ``MetaData``.

These are the very tables ``langgraph-checkpoint-postgres`` creates (same names, columns, types,
nullability, defaults, primary keys and index names), so that one database can be used by the
upstream package and by this one alternately. The one deliberate difference is
``store.ttl_minutes``: upstream declares it ``INTEGER``, which rounds a 0.1-minute TTL to 0 (an
item that is expired the moment it is written). It is ``DOUBLE PRECISION`` here; upstream's own
statements (``ttl_minutes || ' minutes'``, an integer bound to it) keep working on it. One table
is ours alone, ``checkpoint_thread_activity`` (thread retention); upstream never reads or writes
it, and its writes are unaffected by it.

Hosts may import :data:`metadata` (e.g. to exclude our tables from their own autogenerate) or
call :func:`get_tables` for a copy placed in another Postgres schema. The schema is written into
every statement (``"name".checkpoints``): nothing relies on ``search_path``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from pgvector.sqlalchemy import HALFVEC, VECTOR
from sqlalchemy import (
    Column,
    DateTime,
    Double,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import BYTEA, JSONB

__all__ = [
    "CHECKPOINT_TABLE_NAMES",
    "NAMING_CONVENTION",
    "STORE_TABLE_NAMES",
    "TABLE_NAMES",
    "Tables",
    "checkpoint_blobs",
    "checkpoint_migrations",
    "checkpoint_thread_activity",
    "checkpoint_writes",
    "checkpoints",
    "get_tables",
    "metadata",
    "store",
    "store_migrations",
    "store_vectors",
    "vector_embedding_table",
    "vector_migrations",
]

# Postgres' own default constraint names, so that a table created by upstream's plain
# ``PRIMARY KEY (...)`` / ``FOREIGN KEY (...)`` DDL and one created from this metadata carry the
# same names and autogenerate sees no difference between them.
NAMING_CONVENTION = {
    "pk": "%(table_name)s_pkey",
    "fk": "%(table_name)s_%(column_0_N_name)s_fkey",
    "ix": "%(table_name)s_%(column_0_N_name)s_idx",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "ck": "%(table_name)s_%(constraint_name)s_check",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# --- upstream's migration tracking tables -------------------------------------------------------
# Upstream's ``setup()`` reads max(v) from these and runs every migration after it. Our Alembic
# revisions keep them current so that upstream's ``setup()`` is a no-op on a database we migrated.

checkpoint_migrations = Table(
    "checkpoint_migrations",
    metadata,
    Column("v", Integer, nullable=False, autoincrement=False),
    PrimaryKeyConstraint("v"),
)

store_migrations = Table(
    "store_migrations",
    metadata,
    Column("v", Integer, nullable=False, autoincrement=False),
    PrimaryKeyConstraint("v"),
)

vector_migrations = Table(
    "vector_migrations",
    metadata,
    Column("v", Integer, nullable=False, autoincrement=False),
    PrimaryKeyConstraint("v"),
)

# --- checkpoints ----------------------------------------------------------------------------------

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("thread_id", Text, nullable=False),
    Column("checkpoint_ns", Text, nullable=False, server_default=text("''")),
    Column("checkpoint_id", Text, nullable=False),
    Column("parent_checkpoint_id", Text, nullable=True),
    Column("type", Text, nullable=True),
    Column("checkpoint", JSONB(none_as_null=True), nullable=False),
    Column("metadata", JSONB(none_as_null=True), nullable=False, server_default=text("'{}'")),
    PrimaryKeyConstraint("thread_id", "checkpoint_ns", "checkpoint_id"),
    Index("checkpoints_thread_id_idx", "thread_id"),
)

checkpoint_blobs = Table(
    "checkpoint_blobs",
    metadata,
    Column("thread_id", Text, nullable=False),
    Column("checkpoint_ns", Text, nullable=False, server_default=text("''")),
    Column("channel", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("type", Text, nullable=False),
    # NULL for the "empty" marker of a channel that has a version but no value.
    Column("blob", LargeBinary().with_variant(BYTEA(), "postgresql"), nullable=True),
    PrimaryKeyConstraint("thread_id", "checkpoint_ns", "channel", "version"),
    Index("checkpoint_blobs_thread_id_idx", "thread_id"),
)

checkpoint_writes = Table(
    "checkpoint_writes",
    metadata,
    Column("thread_id", Text, nullable=False),
    Column("checkpoint_ns", Text, nullable=False, server_default=text("''")),
    Column("checkpoint_id", Text, nullable=False),
    Column("task_id", Text, nullable=False),
    Column("idx", Integer, nullable=False),
    Column("channel", Text, nullable=False),
    Column("type", Text, nullable=True),
    Column("blob", LargeBinary().with_variant(BYTEA(), "postgresql"), nullable=False),
    Column("task_path", Text, nullable=False, server_default=text("''")),
    PrimaryKeyConstraint("thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx"),
    Index("checkpoint_writes_thread_id_idx", "thread_id"),
)

# Ours, not upstream's (revision 0007): when each thread was last written, for thread retention
# (:mod:`langgraph_sqlalchemy.checkpoint.retention`). One row per thread, whatever its namespaces:
# the saver's put and put_writes statements touch it, upstream's never do (the sweep falls back to
# the checkpoints' own ``ts`` for what upstream wrote). No index besides the key, so that the
# touch on every write is a HOT update; the sweep reads the table whole.
checkpoint_thread_activity = Table(
    "checkpoint_thread_activity",
    metadata,
    Column("thread_id", Text, nullable=False),
    Column(
        "last_activity",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.current_timestamp(),
    ),
    # The thread's own TTL in minutes (the run config's ``checkpoint_ttl``); NULL: the
    # sweeping saver's ``default_ttl``.
    Column("ttl_minutes", Double(), nullable=True),
    # When a ``keep_latest`` sweep last pruned the thread (it stays, so it must not be due
    # again until a further TTL has passed).
    Column("swept_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("thread_id"),
)

# --- store ----------------------------------------------------------------------------------------

store = Table(
    "store",
    metadata,
    Column("prefix", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("value", JSONB(none_as_null=True), nullable=False),
    Column("created_at", DateTime(timezone=True), server_default=func.current_timestamp()),
    Column("updated_at", DateTime(timezone=True), server_default=func.current_timestamp()),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("ttl_minutes", Double(), nullable=True),
    PrimaryKeyConstraint("prefix", "key"),
    # text_pattern_ops lets ``prefix LIKE 'a.b.%'`` use the index under any collation.
    Index("store_prefix_idx", "prefix", postgresql_ops={"prefix": "text_pattern_ops"}),
    Index(
        "idx_store_expires_at",
        "expires_at",
        postgresql_where=text("expires_at IS NOT NULL"),
    ),
    # Ours, not upstream's (revision 0006): search filters' containment test uses it.
    Index(
        "store_value_idx",
        "value",
        postgresql_using="gin",
        postgresql_ops={"value": "jsonb_path_ops"},
        postgresql_with={"fastupdate": "off"},
    ),
)

# The vector layer is created at run time (its dimensions and type are configuration, not
# schema history), so this table carries a dimensionless ``vector`` column: it documents the shape
# and lets hosts exclude it from autogenerate. :func:`vector_embedding_table` builds the typed
# twin the store actually queries.
store_vectors = Table(
    "store_vectors",
    metadata,
    Column("prefix", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("field_name", Text, nullable=False),
    Column("embedding", VECTOR(), nullable=True),
    Column("created_at", DateTime(timezone=True), server_default=func.current_timestamp()),
    Column("updated_at", DateTime(timezone=True), server_default=func.current_timestamp()),
    PrimaryKeyConstraint("prefix", "key", "field_name"),
    ForeignKeyConstraint(["prefix", "key"], ["store.prefix", "store.key"], ondelete="CASCADE"),
)

CHECKPOINT_TABLE_NAMES = (
    "checkpoint_migrations",
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
    "checkpoint_thread_activity",
)
STORE_TABLE_NAMES = ("store_migrations", "store")
VECTOR_TABLE_NAMES = ("vector_migrations", "store_vectors")
TABLE_NAMES = CHECKPOINT_TABLE_NAMES + STORE_TABLE_NAMES + VECTOR_TABLE_NAMES


@dataclass(frozen=True)
class Tables:
    """The tables of one Postgres schema (``schema=None``: unqualified, as upstream)."""

    schema: str | None
    metadata: MetaData
    checkpoint_migrations: Table
    checkpoints: Table
    checkpoint_blobs: Table
    checkpoint_writes: Table
    checkpoint_thread_activity: Table
    store_migrations: Table
    store: Table
    vector_migrations: Table
    store_vectors: Table


def _tables_of(md: MetaData, schema: str | None) -> Tables:
    def t(name: str) -> Table:
        return md.tables[f"{schema}.{name}" if schema else name]

    return Tables(
        schema=schema,
        metadata=md,
        checkpoint_migrations=t("checkpoint_migrations"),
        checkpoints=t("checkpoints"),
        checkpoint_blobs=t("checkpoint_blobs"),
        checkpoint_writes=t("checkpoint_writes"),
        checkpoint_thread_activity=t("checkpoint_thread_activity"),
        store_migrations=t("store_migrations"),
        store=t("store"),
        vector_migrations=t("vector_migrations"),
        store_vectors=t("store_vectors"),
    )


def validate_schema_name(schema: str | None) -> str | None:
    """Reject schema names Postgres would silently truncate or that cannot be a schema."""
    if schema is None:
        return None
    if not isinstance(schema, str) or not schema:
        raise ValueError(f"schema must be a non-empty string or None, got {schema!r}")
    if "\x00" in schema:
        raise ValueError("schema name must not contain NUL characters")
    if len(schema.encode()) > 63:
        # Postgres truncates identifiers to 63 bytes (NAMEDATALEN - 1); two long names
        # would silently share one schema.
        raise ValueError(f"schema name is longer than Postgres' 63-byte limit: {schema!r}")
    return schema


@functools.lru_cache(maxsize=64)
def get_tables(schema: str | None = None) -> Tables:
    """The tables in ``schema``; the same objects on every call, so compiled SQL is cached."""
    schema = validate_schema_name(schema)
    if schema is None:
        return _tables_of(metadata, None)
    md = MetaData(schema=schema, naming_convention=NAMING_CONVENTION)
    # ``store`` first: ``store_vectors`` refers to it and to_metadata retargets that foreign
    # key to the new schema.
    for table in metadata.sorted_tables:
        table.to_metadata(md, schema=schema)
    return _tables_of(md, schema)


@functools.lru_cache(maxsize=64)
def vector_embedding_table(
    schema: str | None, vector_type: str, dims: int
) -> Table:
    """``store_vectors`` with its ``embedding`` column typed ``vector(dims)`` or ``halfvec(dims)``.

    Built in a private ``MetaData`` (with a copy of ``store`` for its foreign key) so the
    shared metadata keeps the dimensionless column hosts see.
    """
    if vector_type not in ("vector", "halfvec"):
        raise ValueError(f"vector_type must be 'vector' or 'halfvec', got {vector_type!r}")
    if isinstance(dims, bool) or not isinstance(dims, int) or dims <= 0:
        raise ValueError(f"dims must be a positive integer, got {dims!r}")
    base = get_tables(schema)
    md = MetaData(schema=schema, naming_convention=NAMING_CONVENTION)
    # The copy keeps ``store``'s schema, which is already ``schema``.
    base.store.to_metadata(md)
    column_type = VECTOR(dims) if vector_type == "vector" else HALFVEC(dims)
    return Table(
        "store_vectors",
        md,
        Column("prefix", Text, nullable=False),
        Column("key", Text, nullable=False),
        Column("field_name", Text, nullable=False),
        Column("embedding", column_type, nullable=True),
        Column("created_at", DateTime(timezone=True), server_default=func.current_timestamp()),
        Column("updated_at", DateTime(timezone=True), server_default=func.current_timestamp()),
        PrimaryKeyConstraint("prefix", "key", "field_name"),
        ForeignKeyConstraint(
            ["prefix", "key"],
            [f"{schema}.store.prefix" if schema else "store.prefix",
             f"{schema}.store.key" if schema else "store.key"],
            ondelete="CASCADE",
        ),
        schema=schema,
    )
