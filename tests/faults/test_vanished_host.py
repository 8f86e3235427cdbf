"""The server vanishes mid-statement without closing the connection (a dead network path, a
host that lost power): no FIN, no RST, just silence.

asyncpg cannot tell silence from a slow statement. Without a ``command_timeout`` a call waits
until the kernel declares the TCP connection dead (keepalive: about two hours by default), and
only then is it retried. With ``connect_args={"command_timeout": N}`` asyncpg gives up after N
seconds; the library treats that like a lost connection and retries the (idempotent) call on a
fresh one, so the caller sees a delay, not an error. Runs on the private cluster through the
proxy, which can go silent on every open connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from langgraph_sqlalchemy import AsyncSQLAlchemySaver
from langgraph_sqlalchemy.engine import create_engine

from .cluster import PrivateCluster
from .proxy import LostAckProxy
from .workload import make_checkpoint

CONFIG: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}


@pytest.fixture
async def proxied_url(
    cluster_db: str, lost_ack_proxy: LostAckProxy, private_cluster: PrivateCluster
) -> str:
    return private_cluster.url(cluster_db.rsplit("/", 1)[1], port=lost_ack_proxy.port)


@pytest.fixture
async def engine_with_timeout(proxied_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(proxied_url, connect_args={"command_timeout": 1.0})
    yield engine
    await engine.dispose()


async def test_command_timeout_turns_silence_into_a_retry(
    engine_with_timeout: AsyncEngine, lost_ack_proxy: LostAckProxy
) -> None:
    saver = AsyncSQLAlchemySaver(engine_with_timeout)
    assert await saver.aget_tuple(CONFIG) is None  # one pooled connection, through the proxy
    assert lost_ack_proxy.freeze_all() == 1
    checkpoint, versions = make_checkpoint(saver, 1, None, {"a": 1})
    started = time.monotonic()
    saved = await asyncio.wait_for(saver.aput(CONFIG, checkpoint, {}, versions), 30)
    waited = time.monotonic() - started
    assert 1.0 <= waited < 10, waited
    got = await saver.aget_tuple(saved)
    assert got is not None and got.checkpoint["id"] == checkpoint["id"]


async def test_without_command_timeout_silence_waits_until_the_connection_dies(
    proxied_url: str, lost_ack_proxy: LostAckProxy
) -> None:
    engine = create_engine(proxied_url)
    try:
        saver = AsyncSQLAlchemySaver(engine)
        assert await saver.aget_tuple(CONFIG) is None
        lost_ack_proxy.freeze_all()
        checkpoint, versions = make_checkpoint(saver, 1, None, {"a": 1})
        call = asyncio.ensure_future(saver.aput(CONFIG, checkpoint, {}, versions))
        await asyncio.sleep(2.0)
        assert not call.done(), "a silent server was noticed without any timeout?"
        # The kernel finally gives up on the connection (simulated: reset it). The call is
        # then retried on a fresh connection and succeeds.
        lost_ack_proxy.sever_all()
        saved = await asyncio.wait_for(call, 30)
        assert await saver.aget_tuple(saved) is not None
    finally:
        await engine.dispose()
