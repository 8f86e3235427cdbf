"""Suite 2: the server crashes and comes back (``pg_ctl restart -m immediate``) while writers run,
and once stays down for a while (``pg_ctl stop`` ... ``start``).

An immediate restart kills every backend with no shutdown checkpoint, as a crash would; the
server replays its WAL before accepting connections again (clients meanwhile get "connection
refused" or 57P03 "the database system is starting up"). Callers must see no error, and every
acknowledged write must be there afterwards. Runs on a private cluster.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from langgraph_sqlalchemy import AsyncSQLAlchemySaver, AsyncSQLAlchemyStore
from langgraph_sqlalchemy.database import RetryPolicy
from langgraph_sqlalchemy.engine import create_engine
from langgraph_sqlalchemy.errors import DatabaseUnavailableError

from .cluster import PrivateCluster
from .conftest import duration
from .workload import Ledger, percentile, verify, writer

WRITERS = 4


async def run_with_restarts(
    cluster: PrivateCluster,
    url: str,
    seconds: float,
    restarts: int,
    caplog: pytest.LogCaptureFixture,
    *,
    downtime: float = 0.0,
) -> None:
    engine = create_engine(url, pool_size=WRITERS, max_overflow=WRITERS)
    saver = AsyncSQLAlchemySaver(engine)
    store = AsyncSQLAlchemyStore(engine)
    ledger = Ledger()
    stop = asyncio.Event()
    caplog.set_level(logging.WARNING, logger="langgraph_sqlalchemy")
    outages: list[float] = []
    try:
        tasks = [
            asyncio.ensure_future(writer(saver, store, ledger, f"writer-{i}", stop))
            for i in range(WRITERS)
        ]
        gap = seconds / (restarts + 1)
        for _ in range(restarts):
            await asyncio.sleep(gap)
            started = time.monotonic()
            if downtime:
                await asyncio.to_thread(cluster.stop, "immediate")
                await asyncio.sleep(downtime)
                await asyncio.to_thread(cluster.start_again)
            else:
                await asyncio.to_thread(cluster.restart, "immediate")
            outages.append(time.monotonic() - started)
        await asyncio.sleep(gap)
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        stop.set()
        await engine.dispose()

    retries = [r for r in caplog.records if "transient database error" in r.getMessage()]
    check_engine = create_engine(url)
    try:
        verdict = await verify(
            AsyncSQLAlchemySaver(check_engine), AsyncSQLAlchemyStore(check_engine), ledger
        )
    finally:
        await check_engine.dispose()
    report = (
        f"restarts: {seconds:.0f}s, {len(outages)} restarts (outages "
        f"{', '.join(f'{o:.2f}s' for o in outages)}), {ledger.ops} ops acknowledged, "
        f"{len(retries)} retries, {len(ledger.errors)} errors seen by callers, {verdict.lost} "
        f"acknowledged writes lost, {verdict.wrong} wrong, {verdict.extra_checkpoints} "
        f"unacknowledged checkpoints, latency p99 {percentile(ledger.latencies, 0.99):.2f}s max "
        f"{max(ledger.latencies, default=0):.2f}s"
    )
    print(report)
    assert retries, "no call was retried: the restarts did not hit the library"
    assert ledger.errors == [], f"{report}\nfirst errors: {ledger.errors[:3]!r}"
    assert verdict.lost == 0 and verdict.wrong == 0, f"{report}\n{verdict.problems[:10]}"
    assert verdict.extra_checkpoints == 0, report


async def test_writes_survive_immediate_restart(
    private_cluster: PrivateCluster,
    cluster_db: str,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await run_with_restarts(private_cluster, cluster_db, duration(4, 30, request), 1, caplog)


@pytest.mark.slow
async def test_writes_survive_repeated_restarts_30s(
    private_cluster: PrivateCluster,
    cluster_db: str,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await run_with_restarts(private_cluster, cluster_db, duration(4, 30, request), 5, caplog)


@pytest.mark.slow
async def test_writes_survive_a_3s_outage(
    private_cluster: PrivateCluster,
    cluster_db: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Down for 3 s: within the default retry budget (about 4.5 to 9 s of backoff)."""
    await run_with_restarts(private_cluster, cluster_db, 8, 1, caplog, downtime=3.0)


async def test_outage_longer_than_the_retry_budget_reaches_the_caller(
    private_cluster: PrivateCluster, cluster_db: str
) -> None:
    """Past the budget the caller gets DatabaseUnavailableError (chained to the driver's error),
    and the same saver works again once the server is back: the pool recovers by itself."""
    engine = create_engine(cluster_db)
    saver = AsyncSQLAlchemySaver(
        engine, retry=RetryPolicy(max_attempts=3, initial_backoff=0.05, max_backoff=0.1)
    )
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    try:
        assert await saver.aget_tuple(config) is None  # pool warmed up
        await asyncio.to_thread(private_cluster.stop, "immediate")
        try:
            with pytest.raises(DatabaseUnavailableError) as caught:
                await saver.aget_tuple(config)
        finally:
            await asyncio.to_thread(private_cluster.start_again)
        assert caught.value.__cause__ is not None
        assert "stayed unreachable" in str(caught.value)
        assert await saver.aget_tuple(config) is None
    finally:
        await engine.dispose()
