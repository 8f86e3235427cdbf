"""Suite 4: PgBouncer in transaction pooling mode between the library and the server.

In transaction mode a client's consecutive transactions may run on different server
connections, and several clients share one server connection in turn. asyncpg prepares every
statement under a name (``__asyncpg_stmt_N__``) and caches it per client connection, so without
``create_engine(url, pgbouncer=True)`` a client executes a statement that was prepared on
another server connection ("prepared statement ... does not exist") or prepares a name another
client already used there ("... already exists"). PgBouncer 1.18 (Debian 12) has no prepared
statement support at all; 1.21+ can track protocol-level prepared statements when
``max_prepared_statements`` is set, but the switch works with every version.

The pooler runs with a server pool of 2 and 16 concurrent client tasks, so multiplexing is
certain. Skips with the install line when the ``pgbouncer`` binary is missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from langgraph.store.base import PutOp

from langgraph_sqlalchemy import AsyncSQLAlchemySaver, AsyncSQLAlchemyStore, migrations
from langgraph_sqlalchemy.engine import create_engine
from langgraph_sqlalchemy.errors import DatabaseError

from .conftest import PgBouncer
from .workload import make_checkpoint

CLIENTS = 16


def database_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def saver_and_store_flow(
    saver: AsyncSQLAlchemySaver, store: AsyncSQLAlchemyStore, n: int
) -> None:
    config: Any = {"configurable": {"thread_id": f"t{n}", "checkpoint_ns": ""}}
    previous = None
    for step in range(3):
        checkpoint, versions = make_checkpoint(saver, step, previous, {"n": n, "step": step})
        config = await saver.aput(config, checkpoint, {"step": step}, versions)
        await saver.aput_writes(config, [("out", step)], f"task-{step}")
        previous = checkpoint
        await store.aput(("bouncer", f"c{n}"), f"k{step}", {"n": n, "step": step})
    got = await saver.aget_tuple({"configurable": {"thread_id": f"t{n}", "checkpoint_ns": ""}})
    assert got is not None and got.checkpoint["channel_values"]["payload"] == {"n": n, "step": 2}
    assert got.pending_writes == [("task-2", "out", 2)]
    assert len([c async for c in saver.alist({"configurable": {"thread_id": f"t{n}"}})]) == 3
    items = await store.asearch(("bouncer", f"c{n}"), filter={"step": {"$gte": 1}})
    assert sorted(i.key for i in items) == ["k1", "k2"]
    assert await store.alist_namespaces(prefix=("bouncer", f"c{n}")) == [("bouncer", f"c{n}")]
    await store.abatch([PutOp(("bouncer", f"c{n}"), "k0", None)])
    assert await store.aget(("bouncer", f"c{n}"), "k0") is None
    await saver.adelete_thread(f"t{n}")


@pytest.fixture
async def bounced_url(pgbouncer: PgBouncer, cluster_db: str) -> AsyncIterator[str]:
    yield pgbouncer.url(database_of(cluster_db))


async def test_saver_and_store_work_through_pgbouncer_with_the_switch(bounced_url: str) -> None:
    engine = create_engine(bounced_url, pgbouncer=True, pool_size=CLIENTS, max_overflow=0)
    try:
        saver, store = AsyncSQLAlchemySaver(engine), AsyncSQLAlchemyStore(engine)
        await asyncio.wait_for(
            asyncio.gather(*(saver_and_store_flow(saver, store, n) for n in range(CLIENTS))), 120
        )
        # Twice: the second round reuses pooled client connections on shuffled server ones.
        await asyncio.wait_for(
            asyncio.gather(*(saver_and_store_flow(saver, store, n) for n in range(CLIENTS))), 120
        )
    finally:
        await engine.dispose()


async def test_without_the_switch_pgbouncer_breaks_prepared_statements(bounced_url: str) -> None:
    """Justifies the switch: the same workload on a default engine fails."""
    engine = create_engine(bounced_url, pool_size=CLIENTS, max_overflow=0)
    failures: list[BaseException] = []
    try:
        saver, store = AsyncSQLAlchemySaver(engine), AsyncSQLAlchemyStore(engine)
        for _ in range(2):
            results = await asyncio.wait_for(
                asyncio.gather(
                    *(saver_and_store_flow(saver, store, n) for n in range(CLIENTS)),
                    return_exceptions=True,
                ),
                120,
            )
            failures += [r for r in results if isinstance(r, BaseException)]
    finally:
        await engine.dispose()
    assert failures, "the default engine worked through PgBouncer: is the switch still needed?"
    assert all(isinstance(f, DatabaseError) for f in failures), failures[:3]
    assert any("prepared statement" in str(f) for f in failures), failures[:3]


async def test_setup_through_pgbouncer_is_idempotent(bounced_url: str, cluster_db: str) -> None:
    """setup() (session-level advisory lock, version check) through the pooler, concurrently
    and repeatedly, leaves no advisory lock behind on a pooled server connection."""
    engine = create_engine(bounced_url, pgbouncer=True, pool_size=4, max_overflow=0)
    try:
        saver, store = AsyncSQLAlchemySaver(engine), AsyncSQLAlchemyStore(engine)
        for _ in range(3):
            await asyncio.wait_for(
                asyncio.gather(saver.setup(), store.setup(), saver.setup()), 60
            )
        assert await migrations.is_at_head(engine)
        await saver_and_store_flow(saver, store, 0)
    finally:
        await engine.dispose()
    direct = await asyncpg.connect(cluster_db)
    try:
        held = await direct.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
    finally:
        await direct.close()
    assert held == 0, "setup() left its migration lock held on a server connection"
