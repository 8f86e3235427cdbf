"""Is the database ready for this installed version? The answer behind ``is_at_head`` and
``langgraph-sqlalchemy check``.

The version table alone can say "at head" for a database a store still cannot use: the vector
layer is created from run-time configuration (``store.setup()`` with an index, or
``langgraph-sqlalchemy vectors``), not by a revision, and a table can be dropped by hand after
the migrations ran. So the check also looks at the tables themselves and, given the store's
index configuration, at the vector layer; each problem it finds is one line that names the
command that fixes it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import column, func, select, table
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import InvalidInputError
from ..schema import TABLE_NAMES
from ..store.vector_layer import (
    DISTANCE_TYPES,
    INDEX_KINDS,
    INDEX_NAME,
    VECTOR_TYPES,
    index_parameters,
    operator_class,
    positive_int,
    vector_extension_version,
)

__all__ = ["SchemaStatus", "VectorLayerConfig", "schema_problems"]

# What the revisions create; store_vectors comes from the vector layer's own configuration.
_MIGRATED_TABLES = tuple(name for name in TABLE_NAMES if name != "store_vectors")

_pg_available_extensions = table(
    "pg_available_extensions", column("name"), schema="pg_catalog"
)
_pg_index = table("pg_index", column("indexrelid"), column("indisvalid"), schema="pg_catalog")
_pg_attribute = table(
    "pg_attribute",
    column("attrelid"),
    column("attname"),
    column("atttypid"),
    column("atttypmod"),
    column("attisdropped"),
    schema="pg_catalog",
)


@dataclass(frozen=True)
class VectorLayerConfig:
    """The parts of the store's ``index`` configuration the vector layer's shape depends on."""

    dims: int
    vector_type: str = "vector"
    distance_type: str = "cosine"
    kind: str = "hnsw"
    index_params: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_index_config(cls, index: Mapping[str, Any]) -> VectorLayerConfig:
        """From upstream's ``PostgresIndexConfig`` (the store's ``index=``); ``embed`` and
        ``fields`` are not needed and never resolved."""
        if not isinstance(index, Mapping) or "dims" not in index:
            raise InvalidInputError(
                "index must be the store's index configuration, a dict with 'dims'"
            )
        ann = dict(index.get("ann_index_config") or {})
        return cls(
            dims=positive_int(index["dims"], "index['dims']"),
            vector_type=ann.get("vector_type", "vector"),
            distance_type=index.get("distance_type", "cosine"),
            kind=ann.get("kind", "hnsw"),
            index_params=index_parameters(ann.get("kind", "hnsw"), ann),
        )

    def __post_init__(self) -> None:
        positive_int(self.dims, "dims")
        for value, allowed, what in (
            (self.vector_type, VECTOR_TYPES, "vector_type"),
            (self.distance_type, DISTANCE_TYPES, "distance_type"),
            (self.kind, INDEX_KINDS, "index kind"),
        ):
            if value not in allowed:
                raise InvalidInputError(f"{what} must be one of {allowed}, got {value!r}")

    @property
    def column_type(self) -> str:
        return f"{self.vector_type}({self.dims})"

    def describe(self) -> str:
        index = "no ANN index (flat)" if self.kind == "flat" else f"{self.kind} index"
        return f"{self.column_type}, {self.distance_type} distance, {index}"

    def fix_command(self, schema: str | None) -> str:
        """The ``langgraph-sqlalchemy vectors`` command line that creates this layer."""
        parts = ["vectors", "--dims", str(self.dims)]
        if self.vector_type != "vector":
            parts += ["--type", self.vector_type]
        if self.distance_type != "cosine":
            parts += ["--distance", self.distance_type]
        if self.kind != "hnsw":
            parts += ["--index", self.kind]
        for name, value in sorted(self.index_params.items()):
            parts += [f"--{name.replace('_', '-')}", str(value)]
        return _cli(schema, *parts)


@dataclass(frozen=True)
class SchemaStatus:
    """What :func:`check_schema` found; ``ok`` when nothing needs fixing."""

    revision: str | None
    head: str
    problems: tuple[str, ...]

    @property
    def at_head(self) -> bool:
        return self.revision == self.head

    @property
    def ok(self) -> bool:
        return not self.problems


def _relation(schema: str | None, name: str) -> Any:
    # to_regclass answers NULL for a missing relation instead of failing; quote_ident runs in
    # SQL, so the schema name stays a bound value.
    return func.to_regclass(
        func.concat(func.quote_ident(schema), ".", name) if schema else name
    )


def _cli(schema: str | None, *args: str) -> str:
    return shlex.join(["langgraph-sqlalchemy", *args, *(["--schema", schema] if schema else [])])


async def _embedding_type(conn: AsyncConnection, schema: str | None) -> str | None:
    """``store_vectors.embedding`` as Postgres spells its type ("vector(1536)"); None if the
    table does not exist, "" if it has no such column."""
    vectors = _relation(schema, "store_vectors")
    type_name = (
        select(func.format_type(_pg_attribute.c.atttypid, _pg_attribute.c.atttypmod))
        .where(
            _pg_attribute.c.attrelid == vectors,
            _pg_attribute.c.attname == "embedding",
            _pg_attribute.c.attisdropped.is_(False),
        )
        .scalar_subquery()
    )
    oid, found = (await conn.execute(select(vectors, type_name))).one()
    if oid is None:
        return None
    return found or ""


async def _missing_tables(conn: AsyncConnection, schema: str | None) -> list[str]:
    found = (
        await conn.execute(select(*(_relation(schema, name) for name in _MIGRATED_TABLES)))
    ).one()
    return [name for name, oid in zip(_MIGRATED_TABLES, found, strict=True) if oid is None]


async def _vector_layer_problems(
    conn: AsyncConnection, schema: str | None, config: VectorLayerConfig
) -> list[str]:
    fix = config.fix_command(schema)
    if await vector_extension_version(conn) is None:
        available = (
            await conn.execute(
                select(func.count())
                .select_from(_pg_available_extensions)
                .where(_pg_available_extensions.c.name == "vector")
            )
        ).scalar_one()
        if not available:
            return [
                "the vector layer is missing: the server has no pgvector extension; install "
                "pgvector on the server (https://github.com/pgvector/pgvector#installation), "
                f"then run: {fix}"
            ]
        return [
            "the vector layer is missing: the pgvector extension is not created in this "
            f"database; fix: {fix} (creating the extension needs the database owner or a "
            "superuser)"
        ]
    existing = await _embedding_type(conn, schema)
    if existing is None:
        return [
            f"the vector layer is missing: there is no store_vectors table for the configured "
            f"index ({config.describe()}); fix: {fix}"
        ]
    if existing != config.column_type:
        return [
            f"store_vectors has embedding {existing or '(no such column)'}, but the index is "
            f"configured for {config.column_type}; use the matching configuration, or drop "
            "store_vectors "
            f"(its vectors must be re-embedded) and run: {fix}"
        ]
    if config.kind == "flat":
        return []
    row = (
        await conn.execute(
            select(_pg_index.c.indisvalid, func.pg_get_indexdef(_pg_index.c.indexrelid)).where(
                _pg_index.c.indexrelid == _relation(schema, INDEX_NAME)
            )
        )
    ).one_or_none()
    if row is None:
        return [
            f"the vector layer's ANN index {INDEX_NAME} is missing (searches scan every "
            f"vector); fix: {fix}"
        ]
    valid, definition = row
    if not valid:
        return [
            f"the vector layer's ANN index {INDEX_NAME} is invalid (an interrupted CREATE "
            f"INDEX CONCURRENTLY); fix: {fix} (rebuilds it)"
        ]
    opclass = operator_class(config.vector_type, config.distance_type)
    if f" USING {config.kind} " not in definition or opclass not in definition:
        quoted_schema = '"' + schema.replace('"', '""') + '"' if schema else None
        where = f"{quoted_schema}.{INDEX_NAME}" if quoted_schema else INDEX_NAME
        return [
            f"the vector layer's ANN index is not the configured {config.kind} index with "
            f"{opclass} (it is: {definition}), so searches cannot use it; fix: "
            f"DROP INDEX CONCURRENTLY {where}; then run: {fix}"
        ]
    return []


async def schema_problems(
    conn: AsyncConnection,
    *,
    revision: str | None,
    head: str,
    schema: str | None,
    vectors: VectorLayerConfig | None,
) -> list[str]:
    """Every reason the database at ``revision`` is not ready for this version; read-only."""
    upgrade = _cli(schema, "upgrade")
    problems: list[str] = []
    if revision != head:
        problems.append(
            f"behind: database at {revision or 'none (never migrated)'}, head is {head}; "
            f"fix: {upgrade}"
        )
    else:
        for name in await _missing_tables(conn, schema):
            problems.append(
                f"table {name} is missing although the database is recorded at {head} "
                "(dropped outside the migrations?); restore it from a backup, or on a "
                f"database you can rebuild run {_cli(schema, 'downgrade', 'base')}, then "
                f"{upgrade}"
            )
    if vectors is not None:
        problems.extend(await _vector_layer_problems(conn, schema, vectors))
    return problems
