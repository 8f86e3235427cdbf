"""A checkpoint TTL sweep while every other backend of the database is killed every 50 ms.

The sweep must finish without an error (lost connections are retried like any call), remove
every expired thread whole and nothing else. A batch whose COMMIT landed just before its
connection died is retried and finds its threads gone, so the count may come out lower than
the threads removed; the tables are what is checked.
"""

from __future__ import annotations

import logging

import pytest

from langgraph_sqlalchemy import AsyncSQLAlchemySaver
from langgraph_sqlalchemy.engine import create_engine
from retention_helpers import age, rows_by_thread, write_thread, write_threads

from .conftest import BackendKiller

WHOLE = {
    "checkpoints": 3,
    "checkpoint_blobs": 3,
    "checkpoint_writes": 3,
    "checkpoint_thread_activity": 1,
}


async def test_sweep_rides_out_killed_connections(
    migrated_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(migrated_url, pool_size=2, max_overflow=0)
    killer = BackendKiller(migrated_url, 0.05)
    caplog.set_level(logging.WARNING, logger="langgraph_sqlalchemy")
    try:
        saver = AsyncSQLAlchemySaver(engine, ttl={"strategy": "delete", "default_ttl": 60})
        expired = [f"expired-{i:03}" for i in range(300)]
        await write_threads(saver, expired)
        await write_thread(saver, "alive")
        await age(engine, expired)

        killer.start()
        removed = await saver.asweep_ttl(batch_size=3)
        await killer.stop()

        retries = [r for r in caplog.records if "transient database error" in r.getMessage()]
        assert killer.kills > 0 and retries, "the kills never hit the sweep: proved nothing"
        assert 0 < removed <= len(expired)
        # The killer's last round may have terminated connections idle in the pool; the check
        # reads through a fresh engine so that it sees the tables, not a dead socket.
        check_engine = create_engine(migrated_url)
        try:
            left = await rows_by_thread(check_engine)
        finally:
            await check_engine.dispose()
        assert left == {"alive": WHOLE}
    finally:
        await killer.stop()
        await engine.dispose()
