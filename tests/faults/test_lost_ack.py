"""Suite 3: the write commits, the acknowledgement never arrives.

Through :class:`~tests.faults.proxy.LostAckProxy`, each write below commits on the server and
then its connection is reset before the client hears the ``COMMIT`` (or, for a single
autocommit statement, its ``CommandComplete``/``ReadyForQuery``). The library cannot tell this
from a write that never happened, so it runs the write again. The state afterwards must be
exactly the state of one successful call: same rows, no duplicates, same values, and no error
for the caller. A control test shows the fault is real: with retries off the caller gets the
error although the row is there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from langgraph.checkpoint.base import ERROR
from langgraph.store.base import PutOp
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from langgraph_sqlalchemy import AsyncSQLAlchemySaver, AsyncSQLAlchemyStore
from langgraph_sqlalchemy.database import RetryPolicy
from langgraph_sqlalchemy.engine import create_engine
from langgraph_sqlalchemy.errors import DatabaseUnavailableError
from langgraph_sqlalchemy.schema import get_tables

from .cluster import PrivateCluster
from .proxy import LostAckProxy
from .workload import make_checkpoint

T = get_tables()


@pytest.fixture
async def direct(cluster_db: str) -> AsyncIterator[AsyncEngine]:
    """An engine straight to the server, to count rows without the proxy."""
    engine = create_engine(cluster_db)
    yield engine
    await engine.dispose()


@pytest.fixture
async def proxied(
    cluster_db: str, lost_ack_proxy: LostAckProxy, private_cluster: PrivateCluster
) -> AsyncIterator[AsyncEngine]:
    database = cluster_db.rsplit("/", 1)[1]
    engine = create_engine(private_cluster.url(database, port=lost_ack_proxy.port))
    yield engine
    await engine.dispose()


async def counts(engine: AsyncEngine) -> dict[str, int]:
    out: dict[str, int] = {}
    async with engine.connect() as conn:
        for table in (T.checkpoints, T.checkpoint_blobs, T.checkpoint_writes, T.store):
            result = await conn.execute(select(func.count()).select_from(table))
            out[table.name] = result.scalar_one()
    return out


def base_config(thread: str = "t") -> Any:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}


async def put_one(saver: AsyncSQLAlchemySaver, thread: str = "t", step: int = 1) -> Any:
    checkpoint, versions = make_checkpoint(saver, step, None, {"data": [step] * 10})
    return await saver.aput(base_config(thread), checkpoint, {"step": step}, versions)


async def test_aput_whose_commit_ack_is_lost(
    proxied: AsyncEngine, direct: AsyncEngine, lost_ack_proxy: LostAckProxy
) -> None:
    saver = AsyncSQLAlchemySaver(proxied)
    checkpoint, versions = make_checkpoint(saver, 1, None, {"data": list(range(10))})
    lost_ack_proxy.arm()
    saved = await saver.aput(base_config(), checkpoint, {"step": 1}, versions)
    assert len(lost_ack_proxy.cuts) == 1, "the proxy never cut: the test proved nothing"
    assert saved["configurable"]["checkpoint_id"] == checkpoint["id"]
    assert await counts(direct) == {
        "checkpoints": 1, "checkpoint_blobs": 1, "checkpoint_writes": 0, "store": 0
    }
    got = await AsyncSQLAlchemySaver(direct).aget_tuple(saved)
    assert got is not None
    assert got.checkpoint["channel_values"] == {"step": 1, "payload": {"data": list(range(10))}}
    assert got.metadata["step"] == 1


async def test_aput_writes_whose_ack_is_lost_keep_first_writes(
    proxied: AsyncEngine, direct: AsyncEngine, lost_ack_proxy: LostAckProxy
) -> None:
    saver = AsyncSQLAlchemySaver(proxied)
    saved = await put_one(saver)
    lost_ack_proxy.arm()
    await saver.aput_writes(saved, [("a", 1), ("b", {"x": "y"}), ("a", 2)], "task-1")
    assert len(lost_ack_proxy.cuts) == 1
    assert (await counts(direct))["checkpoint_writes"] == 3
    got = await AsyncSQLAlchemySaver(direct).aget_tuple(saved)
    assert got is not None
    assert got.pending_writes == [
        ("task-1", "a", 1), ("task-1", "b", {"x": "y"}), ("task-1", "a", 2)
    ]


async def test_special_writes_whose_ack_is_lost_upsert_once(
    proxied: AsyncEngine, direct: AsyncEngine, lost_ack_proxy: LostAckProxy
) -> None:
    saver = AsyncSQLAlchemySaver(proxied)
    saved = await put_one(saver)
    await saver.aput_writes(saved, [(ERROR, "first")], "task-1")
    lost_ack_proxy.arm()
    await saver.aput_writes(saved, [(ERROR, "second")], "task-1")
    assert len(lost_ack_proxy.cuts) == 1
    assert (await counts(direct))["checkpoint_writes"] == 1
    got = await AsyncSQLAlchemySaver(direct).aget_tuple(saved)
    assert got is not None and got.pending_writes == [("task-1", ERROR, "second")]


async def test_store_put_and_batch_whose_ack_is_lost(
    proxied: AsyncEngine, direct: AsyncEngine, lost_ack_proxy: LostAckProxy
) -> None:
    store = AsyncSQLAlchemyStore(proxied)
    lost_ack_proxy.arm()
    await store.aput(("docs", "a"), "k1", {"v": 1})
    assert len(lost_ack_proxy.cuts) == 1
    await store.aput(("docs", "a"), "k2", {"v": 2})
    lost_ack_proxy.arm()
    results = await store.abatch(
        [
            PutOp(("docs", "a"), "k1", None),  # delete
            PutOp(("docs", "a"), "k2", {"v": 22}),
            PutOp(("docs", "b"), "k3", {"v": 3}),
        ]
    )
    assert results == [None, None, None]
    assert len(lost_ack_proxy.cuts) == 2
    check = AsyncSQLAlchemyStore(direct)
    assert await check.aget(("docs", "a"), "k1") is None
    item2 = await check.aget(("docs", "a"), "k2")
    item3 = await check.aget(("docs", "b"), "k3")
    assert item2 is not None and item2.value == {"v": 22}
    assert item3 is not None and item3.value == {"v": 3}
    assert (await counts(direct))["store"] == 2


async def test_delete_and_copy_thread_whose_ack_is_lost(
    proxied: AsyncEngine, direct: AsyncEngine, lost_ack_proxy: LostAckProxy
) -> None:
    saver = AsyncSQLAlchemySaver(proxied)
    first = await put_one(saver, "src", 1)
    await saver.aput_writes(first, [("a", 1)], "task-1")
    checkpoint, versions = make_checkpoint(saver, 2, None, {"data": [2]})
    await saver.aput(first, checkpoint, {"step": 2}, versions)
    before = await counts(direct)
    lost_ack_proxy.arm()
    await saver.acopy_thread("src", "dst")
    assert len(lost_ack_proxy.cuts) == 1
    after = await counts(direct)
    assert after["checkpoints"] == 2 * before["checkpoints"]
    assert after["checkpoint_blobs"] == 2 * before["checkpoint_blobs"]
    assert after["checkpoint_writes"] == 2 * before["checkpoint_writes"]
    copied = [c async for c in AsyncSQLAlchemySaver(direct).alist(base_config("dst"))]
    assert [c.checkpoint["channel_values"]["step"] for c in copied] == [2, 1]
    lost_ack_proxy.arm()
    await saver.adelete_thread("src")
    assert len(lost_ack_proxy.cuts) == 2
    assert await counts(direct) == before | {"store": 0}


async def test_two_lost_acks_in_a_row_still_converge(
    proxied: AsyncEngine, direct: AsyncEngine, lost_ack_proxy: LostAckProxy
) -> None:
    saver = AsyncSQLAlchemySaver(proxied)
    lost_ack_proxy.arm(times=2)
    saved = await put_one(saver)
    # The retry's own ack is lost too; the third attempt finally hears back.
    assert len(lost_ack_proxy.cuts) == 2
    assert (await counts(direct))["checkpoints"] == 1
    assert await AsyncSQLAlchemySaver(direct).aget_tuple(saved) is not None


async def test_control_without_retries_the_caller_sees_the_lost_ack(
    proxied: AsyncEngine, direct: AsyncEngine, lost_ack_proxy: LostAckProxy
) -> None:
    """The fault is real: with one attempt the caller gets an error for a write that landed."""
    saver = AsyncSQLAlchemySaver(proxied, retry=RetryPolicy(max_attempts=1))
    lost_ack_proxy.arm()
    with pytest.raises(DatabaseUnavailableError) as caught:
        await put_one(saver)
    assert caught.value.__cause__ is not None
    assert len(lost_ack_proxy.cuts) == 1
    assert (await counts(direct))["checkpoints"] == 1
