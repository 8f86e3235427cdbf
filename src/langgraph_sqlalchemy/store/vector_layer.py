"""The vector layer: the ``vector`` extension, ``store_vectors`` and its ANN index.

Its shape is run-time configuration (dimensions, ``vector``/``halfvec``, index kind, distance,
index parameters), not schema history, so it is created here — by ``store.setup()`` when an
index is configured, or by the CLI for a DBA — rather than by an Alembic revision. Everything
is built with Core DDL constructs on the typed ``Table`` of
:func:`langgraph_sqlalchemy.schema.vector_embedding_table`; the only user-supplied values in
DDL are validated integers.

Upstream's ``vector_migrations`` rows are recorded as upstream's own ``setup()`` records them
(0: extension, 1: table, 2: index, skipped for kind ``flat``) so that running upstream's
``setup()`` afterwards changes nothing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Index, column, func, select, table, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.schema import CreateIndex, CreateTable, DropIndex

from ..db.locks import lock_key, polled_advisory_lock
from ..errors import DatabaseError, InvalidInputError, SchemaMismatchError, VectorExtensionError
from ..schema import get_tables, validate_schema_name, vector_embedding_table

__all__ = [
    "DISTANCE_TYPES",
    "INDEX_KINDS",
    "INDEX_NAME",
    "VECTOR_TYPES",
    "embedding_index",
    "ensure_vector_layer",
    "index_parameters",
    "operator_class",
    "positive_int",
    "vector_extension_version",
]

logger = logging.getLogger("langgraph_sqlalchemy")

INDEX_NAME = "store_vectors_embedding_idx"

DISTANCE_TYPES = ("cosine", "l2", "inner_product")
VECTOR_TYPES = ("vector", "halfvec")
INDEX_KINDS = ("hnsw", "ivfflat", "flat")


def positive_int(value: object, what: str) -> int:
    # These end up in DDL (index WITH parameters), so only genuine integers pass.
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInputError(f"{what} must be a positive integer, got {value!r}")
    return value


def index_parameters(kind: str, raw: Mapping[str, Any]) -> dict[str, int]:
    """The index's WITH parameters, as validated integers (they end up in DDL)."""
    allowed = {"hnsw": {"m", "ef_construction"}, "ivfflat": {"lists", "nlist"}}.get(kind, set())
    params: dict[str, int] = {}
    for key, value in raw.items():
        if key in ("kind", "vector_type"):
            continue
        if key not in allowed:
            if kind == "flat":
                continue
            raise InvalidInputError(
                f"unknown {kind} index parameter {key!r}; expected one of {sorted(allowed)}"
            )
        params["lists" if key == "nlist" else key] = positive_int(
            value, f"ann_index_config[{key!r}]"
        )
    return params


_OPS_SUFFIX = {"cosine": "cosine_ops", "l2": "l2_ops", "inner_product": "ip_ops"}

_pg_extension = table("pg_extension", column("extname"), column("extversion"), schema="pg_catalog")
_pg_class = table(
    "pg_class", column("oid"), column("relname"), column("relnamespace"), schema="pg_catalog"
)
_pg_namespace = table("pg_namespace", column("oid"), column("nspname"), schema="pg_catalog")
_pg_attribute = table(
    "pg_attribute",
    column("attrelid"),
    column("attname"),
    column("atttypid"),
    column("atttypmod"),
    column("attisdropped"),
    schema="pg_catalog",
)
_pg_index = table("pg_index", column("indexrelid"), column("indisvalid"), schema="pg_catalog")


def operator_class(vector_type: str, distance_type: str) -> str:
    """pgvector's operator class for the index: ``vector_cosine_ops``, ``halfvec_l2_ops``, ..."""
    if vector_type not in VECTOR_TYPES:
        raise ValueError(f"vector_type must be one of {VECTOR_TYPES}, got {vector_type!r}")
    if distance_type not in DISTANCE_TYPES:
        raise ValueError(f"distance_type must be one of {DISTANCE_TYPES}, got {distance_type!r}")
    return f"{vector_type}_{_OPS_SUFFIX[distance_type]}"


@functools.lru_cache(maxsize=32)
def _cached_index(
    schema: str | None,
    vector_type: str,
    dims: int,
    kind: str,
    distance_type: str,
    params: tuple[tuple[str, int], ...],
) -> Index:
    # One Index object per configuration: building it attaches it to the (cached) typed table.
    vectors = vector_embedding_table(schema, vector_type, dims)
    return Index(
        INDEX_NAME,
        vectors.c.embedding,
        postgresql_using=kind,
        postgresql_with=dict(params),
        postgresql_ops={"embedding": operator_class(vector_type, distance_type)},
        postgresql_concurrently=True,
    )


def embedding_index(
    *,
    schema: str | None,
    vector_type: str,
    dims: int,
    kind: str,
    distance_type: str,
    params: Mapping[str, int],
) -> Index:
    """The ANN index on ``store_vectors.embedding`` (built CONCURRENTLY) as a Core ``Index``."""
    if kind not in ("hnsw", "ivfflat"):
        raise ValueError(f"no ANN index for kind {kind!r}")
    return _cached_index(
        schema, vector_type, dims, kind, distance_type, tuple(sorted(params.items()))
    )


async def vector_extension_version(conn: AsyncConnection) -> str | None:
    """The installed pgvector version in this database, or None."""
    return (
        await conn.execute(
            select(_pg_extension.c.extversion).where(_pg_extension.c.extname == "vector")
        )
    ).scalar_one_or_none()


async def _ensure_extension(conn: AsyncConnection) -> None:
    if await vector_extension_version(conn) is not None:
        return
    try:
        async with conn.begin_nested():
            # No Core construct for CREATE EXTENSION; the statement has no variable part.
            await conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
    except DBAPIError as exc:
        database = (await conn.execute(select(func.current_database()))).scalar_one()
        raise VectorExtensionError(
            "the pgvector extension is not installed in database "
            f"{database!r} and could not be created ({exc.orig}). Fix: install pgvector on "
            "the server (https://github.com/pgvector/pgvector#installation) and have a "
            f'superuser or the database owner run  CREATE EXTENSION vector;  in "{database}"'
        ) from exc


async def _existing_embedding_type(conn: AsyncConnection, schema: str | None) -> str | None:
    """``format_type`` of ``store_vectors.embedding`` ("vector(1536)"), None if no table."""
    if schema is None:
        relation = func.to_regclass("store_vectors")
        where = _pg_attribute.c.attrelid == relation
    else:
        where = _pg_attribute.c.attrelid == (
            select(_pg_class.c.oid)
            .join(_pg_namespace, _pg_namespace.c.oid == _pg_class.c.relnamespace)
            .where(_pg_class.c.relname == "store_vectors", _pg_namespace.c.nspname == schema)
            .scalar_subquery()
        )
    stmt = select(func.format_type(_pg_attribute.c.atttypid, _pg_attribute.c.atttypmod)).where(
        where, _pg_attribute.c.attname == "embedding", _pg_attribute.c.attisdropped.is_(False)
    )
    table_exists = (
        select(func.count())
        .select_from(_pg_attribute)
        .where(where, _pg_attribute.c.attname.in_(["prefix", "key"]))
    )
    found = (await conn.execute(stmt)).scalar_one_or_none()
    if found is None and (await conn.execute(table_exists)).scalar_one():
        return "<no embedding column>"
    return found


async def _index_state(conn: AsyncConnection, schema: str | None) -> bool | None:
    """Whether the ANN index is valid (None: it does not exist)."""
    # quote_ident runs in SQL: the schema name stays a bound value.
    relation = func.to_regclass(
        func.concat(func.quote_ident(schema), ".", INDEX_NAME) if schema else INDEX_NAME
    )
    return (
        await conn.execute(select(_pg_index.c.indisvalid).where(_pg_index.c.indexrelid == relation))
    ).scalar_one_or_none()


async def _record_vector_migrations(
    conn: AsyncConnection, schema: str | None, versions: list[int]
) -> None:
    tracking = get_tables(schema).vector_migrations
    await conn.execute(
        insert(tracking).values([{"v": v} for v in versions]).on_conflict_do_nothing()
    )


async def ensure_vector_layer(
    bind: AsyncEngine | AsyncConnection,
    *,
    dims: int,
    vector_type: str = "vector",
    distance_type: str = "cosine",
    kind: str = "hnsw",
    index_params: Mapping[str, int] | None = None,
    schema: str | None = None,
) -> None:
    """Create the vector layer for this configuration if missing; idempotent.

    Needs the base tables (run the migrations first). Raises :class:`VectorExtensionError`
    when pgvector is missing and cannot be created, :class:`SchemaMismatchError` when an
    existing ``store_vectors`` has other dimensions or another vector type. The ANN index is
    built ``CONCURRENTLY`` (writers are not blocked), on a connection outside any transaction.
    """
    schema = validate_schema_name(schema)
    if kind not in INDEX_KINDS:
        raise ValueError(f"kind must be one of {INDEX_KINDS}, got {kind!r}")
    params = index_parameters(kind, dict(index_params or {}))
    vectors = vector_embedding_table(schema, vector_type, dims)
    operator_class(vector_type, distance_type)  # validates both before any DDL
    engine = bind if isinstance(bind, AsyncEngine) else bind.engine
    expected = f"{vector_type}({dims})"
    try:
        async with engine.begin() as conn:
            # Serialises concurrent setup() calls on the table check-then-create (a plain
            # CREATE TABLE IF NOT EXISTS can still collide on the table's row type). Held
            # only by this short transaction, never across CREATE INDEX CONCURRENTLY.
            await conn.execute(select(func.pg_advisory_xact_lock(lock_key("vector_layer", schema))))
            await _ensure_extension(conn)
            existing = await _existing_embedding_type(conn, schema)
            if existing is None:
                await conn.execute(CreateTable(vectors, if_not_exists=True))
            elif existing != expected:
                where = f'schema "{schema}"' if schema else "the default schema"
                raise SchemaMismatchError(
                    f"store_vectors in {where} has embedding {existing}, but the store is "
                    f"configured for {expected} (index dims={dims}, vector_type="
                    f"{vector_type!r}); use the matching configuration, or drop/migrate "
                    "store_vectors (its vectors must be re-embedded)"
                )
            await _record_vector_migrations(conn, schema, [0, 1])
        if kind == "flat":
            return
        index = embedding_index(
            schema=schema,
            vector_type=vector_type,
            dims=dims,
            kind=kind,
            distance_type=distance_type,
            params=params,
        )
        def stuck(timeout: float) -> DatabaseError:
            # Concurrent CREATE INDEX CONCURRENTLY runs on one table fail ("tuple concurrently
            # updated"), so builds are serialised.
            return DatabaseError(
                f"another process held the vector-layer lock for over {timeout:.0f}s "
                "(is an index build stuck? see pg_locks, locktype = 'advisory')"
            )

        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            async with polled_advisory_lock(
                conn, lock_key("vector_layer", schema), timeout=600.0, on_timeout=stuck
            ):
                if await _index_state(conn, schema) is False:
                    # A CONCURRENTLY build that was interrupted leaves an invalid index
                    # behind, which IF NOT EXISTS would keep forever.
                    logger.warning("rebuilding the invalid ANN index %s", INDEX_NAME)
                    await conn.execute(DropIndex(index, if_exists=True))
                await conn.execute(CreateIndex(index, if_not_exists=True))
                await _record_vector_migrations(conn, schema, [2])
    except (SchemaMismatchError, VectorExtensionError):
        raise
    except DBAPIError as exc:
        raise DatabaseError(f"creating the vector layer failed: {exc.orig}") from exc
