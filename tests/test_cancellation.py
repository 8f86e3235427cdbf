"""A call cancelled while its statement runs leaves the pool, the saver and the store usable.

The saver's single-statement calls go straight to a pooled asyncpg connection (see
``Database.fetch``). A call cancelled there leaves a connection whose statement is still on the
server; whatever handles that (asyncpg cancels the query, the connection is discarded, the pool's
pre-ping replaces it), the next calls must not see "another operation is in progress", and the
cancelled write must be all or nothing. The statement is held on a row lock by another
transaction, the task is cancelled, and then every pooled connection is put to work.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from checkpoint_factory import checkpoint
from langgraph_sqlalchemy import AsyncSQLAlchemySaver, AsyncSQLAlchemyStore
from langgraph_sqlalchemy.schema import get_tables


def cfg(thread_id: str) -> Any:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


async def _blocked_until_cancelled(engine: AsyncEngine, call: Any, blocker: Any) -> None:
    """Run ``call`` while ``blocker`` (a statement on another connection, in a transaction)
    holds the row it needs; cancel it once it is waiting, then release the row."""
    async with engine.connect() as locker:
        await locker.execute(blocker)  # the transaction begins here and holds the row
        task = asyncio.create_task(call())
        for _ in range(100):  # until the call's statement waits on the lock
            await asyncio.sleep(0.02)
            waiting = (
                await locker.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                    )
                )
            ).scalar_one()
            if waiting:
                break
        else:
            pytest.fail("the call never waited on the lock")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await locker.rollback()


async def test_cancelled_saver_call_does_not_poison_the_pool(engine: AsyncEngine) -> None:
    saver = AsyncSQLAlchemySaver(engine)
    thread = f"cancel-{uuid.uuid4()}"
    cp = checkpoint({"a": 1})
    t = get_tables(None)
    # An uncommitted row with the same primary key: the saver's INSERT waits for it.
    blocker = insert(t.checkpoints).values(
        thread_id=thread, checkpoint_ns="", checkpoint_id=cp["id"], checkpoint={}
    )
    await _blocked_until_cancelled(
        engine,
        lambda: saver.aput(cfg(thread), cp, {"source": "input", "step": -1}, {"a": 1}),
        blocker,
    )

    # Every pooled connection (10 + 10 overflow) works; a busy one would raise here.
    async def one(i: int) -> None:
        config = await saver.aput(
            cfg(f"{thread}-{i}"), checkpoint({"i": i}), {"source": "loop", "step": i}, {"i": 1}
        )
        found = await saver.aget_tuple(config)
        assert found is not None and found.checkpoint["channel_values"] == {"i": i}

    await asyncio.gather(*(one(i) for i in range(40)))

    # The cancelled write is all or nothing: the server may finish it once the row is free.
    await asyncio.sleep(0.2)
    got = await saver.aget_tuple(cfg(thread))
    assert got is None or got.checkpoint["channel_values"] == {"a": 1}


async def test_cancelled_store_search_does_not_poison_the_pool(engine: AsyncEngine) -> None:
    """The store's calls join a shared batch task (``AsyncBatchedBaseStore``): cancelling a
    caller abandons its result, the batch's statement runs on, and nothing breaks."""
    store = AsyncSQLAlchemyStore(engine, ttl={"default_ttl": 5})
    await store.aput(("c",), "k", {"v": 1})
    t = get_tables(None)
    # A lone search refreshes the TTL of what it returns, in its one statement: the row lock
    # held by this UPDATE makes it wait.
    blocker = (
        t.store.update().where(t.store.c.key == "k").values(ttl_minutes=t.store.c.ttl_minutes)
    )
    await _blocked_until_cancelled(engine, lambda: store.asearch(("c",)), blocker)

    async def one(i: int) -> None:
        await store.aput(("c", str(i)), "k", {"v": i})
        [item] = await store.asearch(("c", str(i)))
        assert item.value == {"v": i}

    await asyncio.gather(*(one(i) for i in range(40)))
    async with engine.connect() as conn:
        values = (await conn.execute(select(t.store.c.value).where(t.store.c.key == "k"))).all()
    assert len(values) == 41
