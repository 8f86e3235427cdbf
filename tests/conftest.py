"""Test harness: a real PostgreSQL for every test, migrated by the code users run.

The server is ``TEST_DATABASE_URL`` when set, else the embedded PostgreSQL 18 + pgvector started
in ``.pgdata-test`` (reused across runs and across concurrent pytest processes). Each pytest
session works in a database of its own, created here and dropped at the end; tests that use the
``engine`` fixture start from empty tables. Tests marked ``vector`` skip, with the reason, on a
server without the pgvector extension (such as the PostgreSQL 15 service).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from langgraph_sqlalchemy import migrations
from langgraph_sqlalchemy.engine import create_engine
from scratch_databases import scratch_databases

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class PgServer:
    """The server the tests run on."""

    admin_url: str  # libpq-style URL of a maintenance database
    has_pgvector: bool
    version: int

    def url(self, database: str) -> str:
        """URL of ``database`` on this server, libpq style (usable by asyncpg and psycopg)."""
        return make_url(self.admin_url).set(database=database).render_as_string(
            hide_password=False
        )


def _server_admin_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    from langgraph_sqlalchemy.embedded import start_embedded

    return start_embedded(os.environ.get("TEST_PGDATA", ROOT / ".pgdata-test"))


async def _admin(server_url: str, *statements: str) -> list[object]:
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    results: list[object] = []
    try:
        async with engine.connect() as conn:
            for statement in statements:
                result = await conn.execute(text(statement))
                results.append(result.scalar() if result.returns_rows else None)
    finally:
        await engine.dispose()
    return results


def _quote_ident(name: str) -> str:
    # Only for database names generated below (hex), never for input.
    assert name.replace("_", "").isalnum(), name
    return f'"{name}"'


@pytest.fixture(scope="session")
async def pg_server() -> PgServer:
    admin_url = _server_admin_url()
    has_vector, version = await _admin(
        admin_url,
        "SELECT count(*) > 0 FROM pg_available_extensions WHERE name = 'vector'",
        "SELECT current_setting('server_version_num')::int / 10000",
    )
    return PgServer(admin_url=admin_url, has_pgvector=bool(has_vector), version=int(version))  # type: ignore[call-overload]


@pytest.fixture(scope="session")
async def database_factory(
    pg_server: PgServer,
) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Creates empty databases on the server (dropped at the end of the session)."""
    created: list[str] = []

    async def create() -> str:
        name = f"lgsa_test_{uuid.uuid4().hex[:12]}"
        await _admin(pg_server.admin_url, f"CREATE DATABASE {_quote_ident(name)}")
        created.append(name)
        return pg_server.url(name)

    yield create
    for name in created:
        await _admin(
            pg_server.admin_url, f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)"
        )


@pytest.fixture
async def new_database(
    database_factory: Callable[[], Awaitable[str]],
) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """``await new_database()`` gives an empty database (recycled after the test)."""
    async with scratch_databases(database_factory) as new:
        yield new


@pytest.fixture
async def own_database(new_database: Callable[[], Awaitable[str]]) -> str:
    """A migrated database nobody else connects to (its backends are ours to count and kill)."""
    url = await new_database()
    engine = create_engine(url)
    try:
        await migrations.upgrade(engine)
    finally:
        await engine.dispose()
    return url


@pytest.fixture
async def empty_url(new_database: Callable[[], Awaitable[str]]) -> str:
    return await new_database()


@pytest.fixture
async def fresh_database_url(database_factory: Callable[[], Awaitable[str]]) -> str:
    """An empty database of its own (for migration tests)."""
    return await database_factory()


@pytest.fixture(scope="session")
async def database_url(database_factory: Callable[[], Awaitable[str]]) -> str:
    """The session's database, migrated to head by ``migrations.upgrade`` (what setup() runs)."""
    url = await database_factory()
    engine = create_engine(url)
    try:
        await migrations.upgrade(engine)
    finally:
        await engine.dispose()
    return url


@pytest.fixture(scope="session")
async def session_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=10, max_overflow=10)
    yield engine
    await engine.dispose()


_DATA_TABLES = (
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
    "checkpoint_thread_activity",
    "store",
)


@pytest.fixture
async def engine(session_engine: AsyncEngine) -> AsyncEngine:
    """The session's engine, with every table emptied and no vector layer."""
    async with session_engine.begin() as conn:
        # The vector layer is per-test configuration (dims, type, index), so it is dropped
        # rather than emptied.
        await conn.execute(text("DROP TABLE IF EXISTS store_vectors"))
        await conn.execute(text("DELETE FROM vector_migrations"))
        await conn.execute(text(f"TRUNCATE {', '.join(_DATA_TABLES)}"))
    return session_engine


@pytest.fixture(autouse=True)
def _skip_without_pgvector(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("vector") is not None:
        server: PgServer = request.getfixturevalue("pg_server")
        if not server.has_pgvector:
            pytest.skip(
                "needs the pgvector extension, which this server does not have "
                "(run without TEST_DATABASE_URL to use the embedded PostgreSQL 18 + pgvector)"
            )
    yield
