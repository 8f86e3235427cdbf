"""A saver bound to a host ``AsyncConnection`` works inside the host's transaction."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import Column, MetaData, Table, Text, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from checkpoint_factory import checkpoint
from langgraph_sqlalchemy import AsyncSQLAlchemySaver, DatabaseError
from langgraph_sqlalchemy.schema import get_tables

host_metadata = MetaData()
orders = Table("host_orders", host_metadata, Column("id", Text, primary_key=True))


def cfg(thread_id: str) -> Any:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


@pytest.fixture
async def host_engine(engine: AsyncEngine) -> AsyncEngine:
    async with engine.begin() as conn:
        await conn.run_sync(host_metadata.drop_all)
        await conn.run_sync(host_metadata.create_all)
    return engine


async def _rows(engine: AsyncEngine, thread_id: str) -> tuple[int, int, int]:
    t = get_tables(None)
    async with engine.connect() as conn:
        counts = []
        for table in (t.checkpoints, t.checkpoint_blobs, t.checkpoint_writes):
            stmt = select(func.count()).select_from(table).where(table.c.thread_id == thread_id)
            counts.append(int((await conn.execute(stmt)).scalar_one()))
    return counts[0], counts[1], counts[2]


async def _orders(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(orders.c.id))).scalars())


async def test_host_rollback_leaves_nothing(host_engine: AsyncEngine) -> None:
    thread = f"t-{uuid.uuid4()}"
    async with host_engine.connect() as conn, conn.begin() as tx:
        await conn.execute(insert(orders).values(id="order-1"))
        saver = AsyncSQLAlchemySaver(conn)
        stored = await saver.aput(cfg(thread), checkpoint({"cart": ["a"]}), {}, {"cart": 1})
        await saver.aput_writes(stored, [("cart", ["b"])], "task")
        # Inside the transaction the saver sees its own rows.
        tup = await saver.aget_tuple(stored)
        assert tup is not None and tup.pending_writes == [("task", "cart", ["b"])]
        await tx.rollback()
    assert await _rows(host_engine, thread) == (0, 0, 0)
    assert await _orders(host_engine) == []


async def test_host_commit_keeps_both(host_engine: AsyncEngine) -> None:
    thread = f"t-{uuid.uuid4()}"
    async with host_engine.connect() as conn, conn.begin():
        await conn.execute(insert(orders).values(id="order-2"))
        saver = AsyncSQLAlchemySaver(conn)
        stored = await saver.aput(cfg(thread), checkpoint({"cart": ["a"]}), {}, {"cart": 1})
        await saver.aput_writes(stored, [("cart", ["b"])], "task")
        # Not visible outside before the host commits.
        assert await _rows(host_engine, thread) == (0, 0, 0)
    assert await _rows(host_engine, thread) == (1, 1, 1)
    assert await _orders(host_engine) == ["order-2"]
    tup = await AsyncSQLAlchemySaver(host_engine).aget_tuple(cfg(thread))
    assert tup is not None and tup.checkpoint["channel_values"] == {"cart": ["a"]}


async def test_failed_call_leaves_host_transaction_usable(host_engine: AsyncEngine) -> None:
    thread = f"t-{uuid.uuid4()}"
    async with host_engine.connect() as conn, conn.begin():
        await conn.execute(insert(orders).values(id="order-3"))
        saver = AsyncSQLAlchemySaver(conn)
        # A statement the server rejects (its tables do not exist in that schema).
        broken = AsyncSQLAlchemySaver(conn, schema="no_such_schema")
        with pytest.raises(DatabaseError) as info:
            await broken.aput(cfg(thread), checkpoint(), {}, {})
        assert info.value.__cause__ is not None
        # The savepoint rolled back; the host's transaction and its earlier work survive.
        stored = await saver.aput(cfg(thread), checkpoint({"x": [1]}), {}, {"x": 1})
        await conn.execute(insert(orders).values(id="order-4"))
        assert (await saver.aget_tuple(stored)) is not None
    assert await _rows(host_engine, thread) == (1, 1, 0)
    assert sorted(await _orders(host_engine)) == ["order-3", "order-4"]


async def test_every_operation_inside_the_host_transaction(host_engine: AsyncEngine) -> None:
    thread = f"t-{uuid.uuid4()}"
    async with host_engine.connect() as conn, conn.begin() as tx:
        saver = AsyncSQLAlchemySaver(conn)
        await saver.setup()  # migrates on a connection of its own; a no-op at head
        parent = cfg(thread)
        for i in range(3):
            parent = await saver.aput(
                parent, checkpoint({"x": [i]}), {"run_id": f"r{i}"}, {"x": 1 + i}
            )
        await saver.acopy_thread(thread, thread + "-copy")
        await saver.adelete_for_runs(["r0"])
        await saver.aprune([thread + "-copy"])
        assert len([t async for t in saver.alist(cfg(thread))]) == 2
        assert len([t async for t in saver.alist(cfg(thread + "-copy"))]) == 1
        history = await saver.aget_delta_channel_history(config=parent, channels=["x"])
        assert history["x"]["writes"] == []
        await saver.adelete_thread(thread)
        assert await saver.aget_tuple(cfg(thread)) is None
        await tx.rollback()
    assert await _rows(host_engine, thread + "-copy") == (0, 0, 0)
