"""Programmatic access to the schema migrations.

The Alembic scripts ship inside the package (``langgraph_sqlalchemy:migrations``), so an installed
wheel can migrate a database with no repository around::

    from langgraph_sqlalchemy.migrations import upgrade, is_at_head

    await upgrade(engine)                 # what setup() runs
    assert await is_at_head(engine)       # with index=STORE_INDEX: the vector layer too

    status = await check_schema(engine, index=STORE_INDEX)
    for problem in status.problems:       # each names the command that fixes it
        print(problem)

Concurrent upgrades (several replicas calling ``setup()`` at start-up) are serialised with a
Postgres advisory lock, taken by polling ``pg_try_advisory_lock`` on a connection with no open
transaction. A blocking ``pg_advisory_lock`` would deadlock: the waiting session sits in a
transaction, and ``CREATE INDEX CONCURRENTLY`` in the session holding the lock waits for every
open transaction to finish.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..db.database import server_address
from ..db.errors import describe, is_driver_error, is_transient
from ..db.locks import lock_key, polled_advisory_lock
from ..errors import DatabaseUnavailableError, MigrationError
from ..schema import validate_schema_name
from .naming import VERSION_TABLE, include_name_for, include_object_for, is_our_table
from .status import SchemaStatus, VectorLayerConfig, schema_problems

__all__ = [
    "VERSION_TABLE",
    "SchemaStatus",
    "VectorLayerConfig",
    "alembic_config",
    "check_schema",
    "current_revision",
    "downgrade",
    "head_revision",
    "include_name_for",
    "include_object_for",
    "is_at_head",
    "is_our_table",
    "render_sql",
    "script_location",
    "upgrade",
]

SCRIPT_LOCATION = "langgraph_sqlalchemy:migrations"


def script_location() -> str:
    """Filesystem path of the packaged migration scripts."""
    return str(resources.files("langgraph_sqlalchemy") / "migrations")


def alembic_config(
    *, url: str | None = None, schema: str | None = None, connection: Connection | None = None
) -> Config:
    """An Alembic ``Config`` for our scripts, with no ``alembic.ini`` needed."""
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        # ConfigParser interpolation would read a "%" in a password as a reference.
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["schema"] = validate_schema_name(schema)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def head_revision() -> str:
    """The newest revision this installed version knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise MigrationError("no migration scripts found in the package")
    return head


def _engine_of(bind: AsyncEngine | AsyncConnection) -> AsyncEngine:
    # A host connection may sit inside the host's transaction, where CREATE INDEX
    # CONCURRENTLY cannot run; migrations always take a fresh connection of the same engine.
    return bind if isinstance(bind, AsyncEngine) else bind.engine


def _refuse_open_transaction(bind: AsyncEngine | AsyncConnection, what: str) -> None:
    # The migration runs on a connection of its own, and CREATE/DROP INDEX CONCURRENTLY there
    # waits for every transaction open in the database to end, including the caller's: with
    # the caller awaiting us, that wait never ends. Failing fast names the way out instead.
    if isinstance(bind, AsyncConnection) and bind.in_transaction():
        raise MigrationError(
            f"cannot {what} the langgraph-sqlalchemy schema through a connection with an open "
            "transaction: the migration builds indexes CONCURRENTLY, which waits for that "
            "transaction to finish while it waits for the migration. Call it with the engine, "
            "before beginning a transaction, or run `langgraph-sqlalchemy upgrade` once at "
            "deploy time."
        )


def _translated_error(what: str) -> MigrationError:
    # The revisions' own SQL (ALTER TABLE ..., CREATE INDEX ...) names tables as text, which a
    # schema_translate_map does not reach: half of a migration would go elsewhere.
    return MigrationError(
        f"cannot {what} the schema through an engine with a schema_translate_map; run "
        "setup() (or `langgraph-sqlalchemy upgrade --schema NAME`) on an engine without one, "
        "with schema='NAME' for the schema the map points at; the saver and store then work "
        "through the mapped engine"
    )


async def _run_locked(
    bind: AsyncEngine | AsyncConnection,
    schema: str | None,
    action: Callable[[Config], None],
    lock_timeout: float,
    what: str,
) -> None:
    _refuse_open_transaction(bind, what)
    engine = _engine_of(bind)
    if engine.get_execution_options().get("schema_translate_map"):
        raise _translated_error(what)
    def stuck(timeout: float) -> MigrationError:
        return MigrationError(
            f"another process held the migration lock for over {timeout:.0f}s; "
            "is a migration stuck? (pg_locks, locktype = 'advisory')"
        )

    def run(sync_conn: Connection) -> None:
        action(alembic_config(schema=schema, connection=sync_conn))

    async with engine.connect() as conn, polled_advisory_lock(
        conn, lock_key("migrations", schema), timeout=lock_timeout, on_timeout=stuck
    ):
        try:
            await conn.run_sync(run)
            await conn.commit()
        except MigrationError:
            raise
        except Exception as exc:
            raise MigrationError(f"migrating the database failed: {exc}") from exc
        finally:
            if not conn.closed and not conn.invalidated:
                await conn.rollback()


async def upgrade(
    bind: AsyncEngine | AsyncConnection,
    *,
    revision: str = "head",
    schema: str | None = None,
    lock_timeout: float = 600.0,
) -> None:
    """Migrate the database to ``revision`` (default: head). Idempotent, safe to run
    from many processes at once.

    A database already at head costs one read and no lock, so ``setup()`` on every start-up
    of every replica is cheap, and works through a host connection inside a transaction.
    """
    schema = validate_schema_name(schema)
    if revision == "head":
        try:
            if await _already_at_head(bind, schema):
                return
        except Exception as exc:
            if _engine_of(bind).get_execution_options().get("schema_translate_map"):
                raise _translated_error("upgrade") from exc
            if is_driver_error(exc) and is_transient(exc):
                # Most often a server that is not running or a wrong address: the error users
                # of every other call get for it, naming where we tried.
                raise DatabaseUnavailableError(
                    f"setup: could not reach PostgreSQL at {server_address(_engine_of(bind))} "
                    f"({describe(exc)}); is the server running, and are the host, port and "
                    "socket path right?"
                ) from exc
            raise MigrationError(f"reading the schema revision failed: {exc}") from exc
    await _run_locked(
        bind, schema, lambda cfg: command.upgrade(cfg, revision), lock_timeout, "upgrade"
    )


async def _already_at_head(bind: AsyncEngine | AsyncConnection, schema: str | None) -> bool:
    if isinstance(bind, AsyncEngine):
        return await current_revision(bind, schema=schema) == head_revision()
    # Read through the host's connection itself, so that a host whose pool is down to that one
    # connection is not made to wait for a second one; a read leaves its transaction (if any)
    # as it was, and one we had to begin is ended again.
    began = not bind.in_transaction()
    try:
        return await current_revision(bind, schema=schema) == head_revision()
    finally:
        if began and bind.in_transaction():
            await bind.rollback()


async def downgrade(
    bind: AsyncEngine | AsyncConnection,
    revision: str,
    *,
    schema: str | None = None,
    lock_timeout: float = 600.0,
) -> None:
    """Migrate down to ``revision`` (``"base"`` removes every table of this library)."""
    await _run_locked(
        bind, schema, lambda cfg: command.downgrade(cfg, revision), lock_timeout, "downgrade"
    )


async def current_revision(
    bind: AsyncEngine | AsyncConnection, *, schema: str | None = None
) -> str | None:
    """The revision the database is at, or None when our migrations never ran."""
    schema = validate_schema_name(schema)

    def read(sync_conn: Connection) -> str | None:
        ctx = MigrationContext.configure(
            sync_conn,
            opts={"version_table": VERSION_TABLE, "version_table_schema": schema},
        )
        return ctx.get_current_revision()

    if isinstance(bind, AsyncConnection):
        return await bind.run_sync(read)
    async with bind.connect() as conn:
        return await conn.run_sync(read)


async def check_schema(
    bind: AsyncEngine | AsyncConnection,
    *,
    schema: str | None = None,
    index: Mapping[str, Any] | VectorLayerConfig | None = None,
) -> SchemaStatus:
    """What stands between the database and this installed version, each problem with its fix.

    Looks at the recorded revision and at the tables themselves; ``index`` (the store's index
    configuration, or a :class:`VectorLayerConfig`) adds the vector layer: the pgvector
    extension, ``store_vectors`` with the configured dimensions and type, and its ANN index.
    Read-only.
    """
    schema = validate_schema_name(schema)
    vectors = (
        index
        if index is None or isinstance(index, VectorLayerConfig)
        else VectorLayerConfig.from_index_config(index)
    )
    head = head_revision()

    async def inspect(conn: AsyncConnection) -> SchemaStatus:
        revision = await current_revision(conn, schema=schema)
        problems = await schema_problems(
            conn, revision=revision, head=head, schema=schema, vectors=vectors
        )
        return SchemaStatus(revision=revision, head=head, problems=tuple(problems))

    if isinstance(bind, AsyncConnection):
        # A host connection is left as it was found: a transaction these reads began ends.
        began = not bind.in_transaction()
        try:
            return await inspect(bind)
        finally:
            if began and bind.in_transaction():
                await bind.rollback()
    async with bind.connect() as conn:
        return await inspect(conn)


async def is_at_head(
    bind: AsyncEngine | AsyncConnection,
    *,
    schema: str | None = None,
    index: Mapping[str, Any] | VectorLayerConfig | None = None,
) -> bool:
    """Whether the database is at the newest revision this installed version knows, with
    every table in place (and, given the store's ``index`` configuration, its vector layer):
    :func:`check_schema` finding nothing to fix."""
    return (await check_schema(bind, schema=schema, index=index)).ok


def render_sql(
    *, revision: str = "head", schema: str | None = None, start: str | None = None
) -> str:
    """The upgrade DDL as SQL text (Alembic offline mode), for DBAs who apply it by hand."""
    cfg = alembic_config(schema=schema)
    buffer = io.StringIO()
    cfg.output_buffer = buffer
    target = f"{start}:{revision}" if start else revision
    command.upgrade(cfg, target, sql=True)
    return buffer.getvalue()
