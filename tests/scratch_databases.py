"""Empty databases for migration tests, recycled instead of dropped.

The migration and parity tests need dozens of empty databases. ``DROP DATABASE`` forces a
server checkpoint, which costs seconds on a busy shared server; emptying a database (dropping its
schemas and extensions) costs milliseconds. So a database handed out here is emptied after its
test and handed out again; the conftest's ``database_factory`` still creates the first ones and
drops them all at the end of the session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import sqlalchemy as sa
from sqlalchemy.schema import CreateSchema, DropSchema

from langgraph_sqlalchemy.engine import create_engine

_free: list[str] = []

_USER_SCHEMAS = sa.text(
    "SELECT nspname FROM pg_namespace "
    "WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'"
)


async def _empty(url: str) -> bool:
    """Back to the state of a new database; False if something still holds it."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            # A test that leaked a connection must not make the next one wait forever.
            await conn.execute(sa.text("SET lock_timeout = '5s'"))
            # No Core construct for extensions: pgvector, created by vector tests.
            await conn.execute(sa.text("DROP EXTENSION IF EXISTS vector CASCADE"))
            for schema in (await conn.execute(_USER_SCHEMAS)).scalars().all():
                await conn.execute(DropSchema(schema, cascade=True))
            await conn.execute(CreateSchema("public"))
        return True
    except sa.exc.DBAPIError:
        return False
    finally:
        await engine.dispose()


@asynccontextmanager
async def scratch_databases(
    database_factory: Callable[[], Awaitable[str]],
) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Yields ``new()`` -> URL of an empty database; they are recycled after the block."""
    taken: list[str] = []

    async def new() -> str:
        url = _free.pop() if _free else await database_factory()
        taken.append(url)
        return url

    try:
        yield new
    finally:
        for url in taken:
            if await _empty(url):
                _free.append(url)
