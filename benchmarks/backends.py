"""The implementations under test, each on a fresh database of its own on one server.

- ``ours``: ``AsyncSQLAlchemySaver`` / ``AsyncSQLAlchemyStore`` on one ``AsyncEngine``
  (``create_engine(url, pool_size=10, max_overflow=0)``), schema by ``migrations.upgrade`` and
  the store's ``setup()`` (vector layer).
- ``upstream``: ``AsyncPostgresSaver`` / ``AsyncPostgresStore`` on one psycopg
  ``AsyncConnectionPool`` of 10 connections with the settings upstream's ``from_conn_string``
  uses (autocommit, ``prepare_threshold=0``, dict rows), schema by their ``setup()``.
- ``memory``: LangGraph's ``InMemorySaver`` / ``InMemoryStore``, the floor with no database.
- ``sql``: no library at all, hand-written SQL over one asyncpg connection into the same tables
  and indexes as ``ours`` (the floor a database write cannot go below).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from pgvector.asyncpg import register_vector
from sqlalchemy.engine import make_url

from langgraph_sqlalchemy import migrations
from langgraph_sqlalchemy.engine import create_engine

from .harness import MEMORY, OURS, OURS_TRACED, PLAIN_SQL, UPSTREAM

ROOT = Path(__file__).resolve().parents[1]
BENCH_PGDATA = ROOT / ".pgdata-bench"
POOL_SIZE = 10


@dataclass
class Backend:
    name: str
    url: str | None = None  # libpq-style URL of its database (None for memory)
    saver: Any = None
    store: Any = None
    index: dict[str, Any] | None = None  # the store's index config, to rebuild it
    state: dict[str, Any] = field(default_factory=dict)  # workload data already loaded
    activate: Callable[[], None] | None = None  # called before each measured turn
    deactivate: Callable[[], None] | None = None  # and after it
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _raw: asyncpg.Connection | None = None

    async def raw(self) -> asyncpg.Connection:
        """A plain asyncpg connection to this backend's database (loading data, EXPLAIN)."""
        if self._raw is None or self._raw.is_closed():
            assert self.url is not None, f"{self.name} has no database"
            self._raw = await asyncpg.connect(_asyncpg_dsn(self.url))
            await register_vector(self._raw)
        return self._raw

    async def close(self) -> None:
        for closer in reversed(self._closers):
            await closer()
        if self._raw is not None and not self._raw.is_closed():
            await self._raw.close()


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def server_admin_url() -> tuple[str, str]:
    """(admin URL, description): ``DATABASE_URL`` if set, else the embedded server."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url, "DATABASE_URL"
    from langgraph_sqlalchemy.embedded import start_embedded

    data_dir = os.environ.get("BENCH_PGDATA", str(BENCH_PGDATA))
    return start_embedded(data_dir), f"embedded PostgreSQL in {data_dir}"


def database_url(admin_url: str, name: str) -> str:
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def _admin(admin_url: str, *statements: str) -> list[Any]:
    conn = await asyncpg.connect(_asyncpg_dsn(admin_url))
    try:
        return [await conn.fetchval(statement) for statement in statements]
    finally:
        await conn.close()


async def server_facts(admin_url: str) -> dict[str, Any]:
    version, has_vector = await _admin(
        admin_url,
        "SELECT current_setting('server_version')",
        "SELECT count(*) > 0 FROM pg_available_extensions WHERE name = 'vector'",
    )
    return {"server_version": version, "pgvector_available": bool(has_vector)}


# Per process, so two runs on one server (two people, or a run and a profile) never drop each
# other's databases.
RUN_TAG = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"


def database_name(impl: str) -> str:
    name = f"lgsa_bench_{impl}_{RUN_TAG}"
    # Identifiers cannot be bound; the name is built from a fixed key and hex digits only.
    assert name.replace("_", "").isalnum()
    return name


async def fresh_database(admin_url: str, impl: str) -> str:
    """Create ``lgsa_bench_<impl>_<run tag>``, empty, for this run."""
    name = database_name(impl)
    await _admin(
        admin_url,
        f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        f'CREATE DATABASE "{name}"',
    )
    return database_url(admin_url, name)


async def drop_database(admin_url: str, impl: str) -> None:
    await _admin(admin_url, f'DROP DATABASE IF EXISTS "{database_name(impl)}" WITH (FORCE)')


def ours_missing() -> dict[str, str]:
    """Which of our classes do not import (yet), and why; the harness runs the rest."""
    missing = {}
    for part, name in (("saver", "AsyncSQLAlchemySaver"), ("store", "AsyncSQLAlchemyStore")):
        try:
            getattr(__import__("langgraph_sqlalchemy", fromlist=[name]), name)
        except Exception as exc:
            missing[part] = f"{type(exc).__name__}: {exc}"
    return missing


async def make_ours(
    url: str, index: dict[str, Any], missing: dict[str, str], *, traced: bool = False
) -> Backend:
    """Ours on an engine of its own; ``traced``: with production's observability on (see
    :mod:`.tracing`)."""
    engine = create_engine(url, pool_size=POOL_SIZE, max_overflow=0)
    await migrations.upgrade(engine)
    backend = Backend(OURS_TRACED if traced else OURS, url=url, index=index)
    if traced:
        from . import tracing

        backend.state["statement_counter"] = tracing.instrument(engine)
        backend.activate = tracing.activate
        backend.deactivate = tracing.deactivate
    backend._closers.append(engine.dispose)
    if "saver" not in missing:
        from langgraph_sqlalchemy import AsyncSQLAlchemySaver

        backend.saver = AsyncSQLAlchemySaver(engine)
        await backend.saver.setup()
    if "store" not in missing:
        from langgraph_sqlalchemy import AsyncSQLAlchemyStore

        backend.store = AsyncSQLAlchemyStore(engine, index=index)
        await backend.store.setup()
    return backend


async def make_upstream(url: str, index: dict[str, Any]) -> Backend:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.store.postgres.aio import AsyncPostgresStore
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        url,
        min_size=POOL_SIZE,
        max_size=POOL_SIZE,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        open=False,
    )
    await pool.open(wait=True)
    saver = AsyncPostgresSaver(pool)
    await saver.setup()
    store = AsyncPostgresStore(pool, index=index)  # type: ignore[arg-type]
    await store.setup()
    backend = Backend(UPSTREAM, url=url, saver=saver, store=store, index=index)
    backend._closers.append(pool.close)
    return backend


def make_memory(index: dict[str, Any]) -> Backend:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.store.memory import InMemoryStore

    return Backend(MEMORY, saver=InMemorySaver(), store=InMemoryStore(index=index), index=index)  # type: ignore[arg-type]


def reset_memory_store(backend: Backend) -> None:
    from langgraph.store.memory import InMemoryStore

    backend.store = InMemoryStore(index=backend.index)  # type: ignore[arg-type]


async def make_plain_sql(url: str, index: dict[str, Any], *, ours_ok: bool) -> Backend:
    """The same tables and ANN index as ``ours`` (or upstream's, if ours is unavailable)."""
    if ours_ok:
        from langgraph_sqlalchemy import AsyncSQLAlchemyStore

        engine = create_engine(url, pool_size=1, max_overflow=0)
        try:
            await migrations.upgrade(engine)
            await AsyncSQLAlchemyStore(engine, index=index).setup()
        finally:
            await engine.dispose()
    else:
        from langgraph.store.postgres.aio import AsyncPostgresStore

        async with AsyncPostgresStore.from_conn_string(url, index=index) as store:  # type: ignore[arg-type]
            await store.setup()
    return Backend(PLAIN_SQL, url=url, index=index)


async def truncate_store(backend: Backend) -> None:
    """Empty the store (and its vectors, by the foreign key's cascade); untimed."""
    if backend.name == MEMORY:
        reset_memory_store(backend)
        return
    conn = await backend.raw()
    await conn.execute("TRUNCATE store CASCADE")


async def explain(backend: Backend, sql: str, *params: Any) -> str:
    conn = await backend.raw()
    rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *params)
    return "\n".join(r[0] for r in rows)


def unique_thread() -> str:
    return f"bench-{uuid.uuid4().hex}"


__all__ = [
    "Backend",
    "drop_database",
    "explain",
    "fresh_database",
    "make_memory",
    "make_ours",
    "make_plain_sql",
    "make_upstream",
    "ours_missing",
    "server_admin_url",
    "server_facts",
    "truncate_store",
    "unique_thread",
]
