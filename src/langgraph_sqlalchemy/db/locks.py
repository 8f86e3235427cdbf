"""The advisory lock that serialises migrations and vector-layer builds across processes.

Taken by polling ``pg_try_advisory_lock`` on a connection with no open transaction, never with
a blocking ``pg_advisory_lock``: the waiting session would sit inside a transaction, and
``CREATE INDEX CONCURRENTLY`` in the session that holds the lock waits for every open
transaction to finish, so the two would wait for each other forever.
(https://www.postgresql.org/docs/current/sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY)
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["lock_key", "polled_advisory_lock"]


def lock_key(purpose: str, schema: str | None) -> int:
    """A stable lock key per purpose and schema: crc32 is the same in every process and Python
    version (``hash()`` is salted per process) and fits the bigint advisory-lock key space."""
    return zlib.crc32(f"langgraph_sqlalchemy.{purpose}:{schema or ''}".encode())


async def _try_lock(conn: AsyncConnection, key: int) -> bool:
    got = bool((await conn.execute(select(func.pg_try_advisory_lock(key)))).scalar_one())
    if conn.in_transaction():
        await conn.commit()  # no open transaction while we wait (see the module docstring)
    return got


@asynccontextmanager
async def polled_advisory_lock(
    conn: AsyncConnection,
    key: int,
    *,
    timeout: float,
    on_timeout: Callable[[float], Exception],
) -> AsyncIterator[None]:
    """Hold session advisory lock ``key`` on ``conn`` for the ``async with`` body.

    Polls with backoff (50 ms doubling to 1 s) until ``timeout`` seconds have passed, then
    raises ``on_timeout(timeout)``. Released on exit unless the connection died (the server
    releases a dead session's locks itself).
    """
    deadline = time.monotonic() + timeout
    delay = 0.05
    while not await _try_lock(conn, key):
        if time.monotonic() >= deadline:
            raise on_timeout(timeout)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)
    try:
        yield
    finally:
        if not conn.invalidated and not conn.closed:
            await conn.execute(select(func.pg_advisory_unlock(key)))
            if conn.in_transaction():
                await conn.commit()

