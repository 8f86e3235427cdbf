"""Suite 6: the application runs as a role that can only read and write rows.

The owner (a superuser here) migrates; the application role gets CONNECT, USAGE on the schema and
SELECT/INSERT/UPDATE/DELETE on the tables, nothing else (no CREATE on the schema, no TEMP on the
database). The saver and the store must work with that role, issuing no DDL at run time.

Decision for ``setup()`` by such a role: at head it is a no-op and succeeds (so an application
may call ``setup()`` unconditionally at start-up); on a database that needs migrating it fails
with ``MigrationError`` chained to the server's "permission denied", and writes nothing.
Runs on the shared test server (embedded or ``TEST_DATABASE_URL``).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from langgraph_sqlalchemy import AsyncSQLAlchemySaver, AsyncSQLAlchemyStore, migrations
from langgraph_sqlalchemy.engine import create_engine
from langgraph_sqlalchemy.errors import MigrationError

from .workload import make_checkpoint

DDL = re.compile(r"^\s*(CREATE|ALTER|DROP|TRUNCATE|GRANT|REVOKE|COMMENT)\b", re.IGNORECASE)


def as_role(url: str, role: str) -> str:
    return make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


async def grant_dml_only(url: str, role: str, *, tables: bool) -> None:
    """Create ``role`` with row access only. Identifiers are generated hex, never input."""
    database = make_url(url).database
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE ROLE "{role}" LOGIN')
        await conn.execute(f'REVOKE CREATE, TEMPORARY ON DATABASE "{database}" FROM PUBLIC')
        await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        await conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"')
        await conn.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        if tables:
            await conn.execute(
                f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"'
            )
    finally:
        await conn.close()


async def drop_role(url: str, role: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP OWNED BY "{role}"')  # revokes its grants in this database
        await conn.execute(f'DROP ROLE "{role}"')
    finally:
        await conn.close()


class StatementLog:
    """Every statement an engine sends (SQLAlchemy's cursor events see them all)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.statements: list[str] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)

    @property
    def ddl(self) -> list[str]:
        return [s for s in self.statements if DDL.match(s)]


@pytest.fixture
async def app_role(migrated_url: str) -> AsyncIterator[str]:
    role = f"lgsa_app_{os.urandom(5).hex()}"
    await grant_dml_only(migrated_url, role, tables=True)
    yield role
    await drop_role(migrated_url, role)


async def test_saver_and_store_run_with_row_privileges_only(
    migrated_url: str, app_role: str
) -> None:
    engine = create_engine(as_role(migrated_url, app_role))
    log = StatementLog(engine)
    try:
        saver = AsyncSQLAlchemySaver(engine)
        store = AsyncSQLAlchemyStore(engine, ttl={"default_ttl": 5, "refresh_on_read": True})
        await saver.setup()  # at head: a no-op for this role
        await store.setup()

        config: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        first, versions = make_checkpoint(saver, 1, None, {"a": [1, 2]})
        saved = await saver.aput(config, first, {"run_id": "r1"}, versions)
        await saver.aput_writes(saved, [("out", 1)], "task")
        second, versions = make_checkpoint(saver, 2, first, {"a": [3]})
        latest = await saver.aput(saved, second, {"run_id": "r2"}, versions)
        got = await saver.aget_tuple(config)
        assert got is not None and got.config["configurable"]["checkpoint_id"] == second["id"]
        assert len([c async for c in saver.alist(config)]) == 2
        await saver.acopy_thread("t", "t-copy")
        await saver.adelete_for_runs(["r1"])
        await saver.aprune(["t-copy"], strategy="keep_latest")
        assert len([c async for c in saver.alist({"configurable": {"thread_id": "t-copy"}})]) == 1
        await saver.adelete_thread("t")
        assert await saver.aget_tuple(latest) is None

        await store.aput(("users", "u1"), "prefs", {"theme": "dark", "n": 1})
        await store.aput(("users", "u2"), "prefs", {"theme": "light", "n": 2})
        item = await store.aget(("users", "u1"), "prefs")
        assert item is not None and item.value["theme"] == "dark"
        found = await store.asearch(("users",), filter={"n": {"$gt": 1}})
        assert [i.namespace for i in found] == [("users", "u2")]
        assert await store.alist_namespaces(prefix=("users",)) == [
            ("users", "u1"), ("users", "u2")
        ]
        await store.adelete(("users", "u1"), "prefs")
        assert await store.sweep_ttl() == 0
    finally:
        await engine.dispose()
    assert len(log.statements) > 10
    assert log.ddl == [], f"DDL at run time: {log.ddl}"


async def test_setup_by_a_row_only_role_on_an_unmigrated_database_fails_clearly(
    database_factory: Callable[[], Awaitable[str]],
) -> None:
    url = await database_factory()
    role = f"lgsa_app_{os.urandom(5).hex()}"
    await grant_dml_only(url, role, tables=False)
    engine = create_engine(as_role(url, role))
    try:
        with pytest.raises(MigrationError) as caught:
            await AsyncSQLAlchemySaver(engine).setup()
        assert "permission denied" in str(caught.value).lower()
        assert caught.value.__cause__ is not None
    finally:
        await engine.dispose()
        await drop_role(url, role)
    owner = create_engine(url)
    try:
        assert await migrations.current_revision(owner) is None  # nothing half-created
        await migrations.upgrade(owner)  # and the owner can still migrate it
        assert await migrations.is_at_head(owner)
    finally:
        await owner.dispose()
