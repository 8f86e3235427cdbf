"""Suite 1: an idle reaper gone mad. Writers save checkpoints, writes and store items while another
session runs ``pg_terminate_backend`` on every other backend of the database every 150 ms.

Callers must see no error and every acknowledged write must be there afterwards. Runs on the
shared test server (embedded or ``TEST_DATABASE_URL``), in a database of its own.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from langgraph_sqlalchemy import AsyncSQLAlchemySaver, AsyncSQLAlchemyStore
from langgraph_sqlalchemy.database import RetryPolicy
from langgraph_sqlalchemy.engine import create_engine

from .conftest import BackendKiller, duration
from .workload import Ledger, percentile, verify, writer

WRITERS = 4
KILL_INTERVAL = 0.15


async def run_under_kills(url: str, seconds: float, caplog: pytest.LogCaptureFixture) -> None:
    engine = create_engine(url, pool_size=WRITERS, max_overflow=WRITERS)
    saver = AsyncSQLAlchemySaver(engine)
    store = AsyncSQLAlchemyStore(engine)
    ledger = Ledger()
    killer = BackendKiller(url, KILL_INTERVAL)
    stop = asyncio.Event()
    caplog.set_level(logging.WARNING, logger="langgraph_sqlalchemy")
    try:
        killer.start()
        tasks = [
            asyncio.ensure_future(writer(saver, store, ledger, f"writer-{i}", stop))
            for i in range(WRITERS)
        ]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)
        await killer.stop()
    finally:
        stop.set()
        await killer.stop()
        await engine.dispose()

    retries = [r for r in caplog.records if "transient database error" in r.getMessage()]
    check_engine = create_engine(url)
    try:
        verdict = await verify(
            AsyncSQLAlchemySaver(check_engine), AsyncSQLAlchemyStore(check_engine), ledger
        )
    finally:
        await check_engine.dispose()
    deepest = max((int(r.args[1]) for r in retries if isinstance(r.args, tuple)), default=0)
    causes: dict[str, int] = {}
    for r in retries:
        cause = str(r.args[4])[:60] if isinstance(r.args, tuple) else "?"
        causes[cause] = causes.get(cause, 0) + 1
    report = (
        f"kills: {seconds:.0f}s, {ledger.ops} ops acknowledged, {killer.kills} backends killed in "
        f"{killer.rounds} rounds, {len(retries)} retries (deepest: attempt {deepest + 1} of "
        f"{RetryPolicy().max_attempts}; causes {causes}), {len(ledger.errors)} errors seen by "
        f"callers, {verdict.lost} acknowledged writes lost, {verdict.wrong} wrong, "
        f"{verdict.extra_checkpoints} unacknowledged checkpoints, latency p50 "
        f"{percentile(ledger.latencies, 0.5) * 1000:.1f} ms p99 "
        f"{percentile(ledger.latencies, 0.99) * 1000:.1f} ms max "
        f"{max(ledger.latencies, default=0) * 1000:.0f} ms"
    )
    print(report)
    assert killer.kills > 0, "the killer never found a backend to kill: the test proved nothing"
    assert retries, "no call was ever retried: the kills did not hit the library"
    assert ledger.errors == [], f"{report}\nfirst errors: {ledger.errors[:3]!r}"
    assert verdict.lost == 0 and verdict.wrong == 0, f"{report}\n{verdict.problems[:10]}"
    # No caller saw an error, so every call was acknowledged: nothing may exist beyond the ledger.
    assert verdict.extra_checkpoints == 0, report
    assert ledger.ops >= 20, report


async def test_writes_survive_backend_kills(
    migrated_url: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    await run_under_kills(migrated_url, duration(5, 30, request), caplog)


@pytest.mark.slow
async def test_writes_survive_backend_kills_30s(
    migrated_url: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    await run_under_kills(migrated_url, duration(5, 30, request), caplog)
