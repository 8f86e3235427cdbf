"""LangGraph's checkpointer conformance suite (langgraph-checkpoint-conformance) on our saver.

Every capability the suite knows must be detected and pass: put, put_writes, get_tuple, list,
delete_thread, delete_for_runs, copy_thread, prune. Upstream's AsyncPostgresSaver is run through
the same suite for comparison (it implements neither delete_for_runs nor copy_thread).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.checkpoint.conformance.initializer import RegisteredCheckpointer
from langgraph.checkpoint.conformance.report import CapabilityReport
from langgraph.checkpoint.conformance.validate import validate
from sqlalchemy.ext.asyncio import AsyncEngine

from langgraph_sqlalchemy import AsyncSQLAlchemySaver


def _summary(report: CapabilityReport) -> dict[str, tuple[bool | None, int, int]]:
    return {
        name: (result.passed, result.tests_passed, result.tests_failed)
        for name, result in sorted(report.results.items())
    }


async def test_every_capability_passes(engine: AsyncEngine) -> None:
    async def factory() -> AsyncIterator[AsyncSQLAlchemySaver]:
        yield AsyncSQLAlchemySaver(engine)

    report = await validate(RegisteredCheckpointer(name="AsyncSQLAlchemySaver", factory=factory))
    report.print_report()
    failures = {name: r.failures for name, r in report.results.items() if r.failures}
    assert not failures, failures
    assert set(report.results) == {c.value for c in ALL_CAPABILITIES}
    for name, result in report.results.items():
        assert result.detected, f"{name} not detected"
        assert result.passed is True, f"{name}: {result}"
        assert result.tests_passed > 0
    assert report.conformance_level() == "FULL"
    passed = sum(1 for r in report.results.values() if r.passed is True)
    print(f"\nAsyncSQLAlchemySaver: {passed} of {len(ALL_CAPABILITIES)} capabilities pass")
    assert passed == len(ALL_CAPABILITIES) == 8


async def test_same_suite_on_a_host_connection(engine: AsyncEngine) -> None:
    """The suite again with the saver joined to a host transaction (rolled back at the end)."""
    async with engine.connect() as conn:
        await conn.begin()

        async def factory() -> AsyncIterator[AsyncSQLAlchemySaver]:
            yield AsyncSQLAlchemySaver(conn)

        report = await validate(RegisteredCheckpointer(name="host connection", factory=factory))
        await conn.rollback()
    failures = {name: r.failures for name, r in report.results.items() if r.failures}
    assert not failures, failures
    assert report.conformance_level() == "FULL"


async def test_upstream_for_comparison(engine: AsyncEngine, database_url: str) -> None:
    """Informative: how upstream's AsyncPostgresSaver fares on the same suite and tables."""
    psycopg = pytest.importorskip("psycopg")
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row

    conn = await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, prepare_threshold=0, row_factory=dict_row
    )
    try:

        async def factory() -> AsyncIterator[AsyncPostgresSaver]:
            yield AsyncPostgresSaver(conn)

        report = await validate(RegisteredCheckpointer(name="AsyncPostgresSaver", factory=factory))
    finally:
        await conn.close()
    report.print_report()
    summary = _summary(report)
    passed = sum(1 for passed, _, _ in summary.values() if passed is True)
    print(f"\nupstream AsyncPostgresSaver 3.2: {passed} of 8 capabilities pass: {summary}")
    # Upstream implements neither delete_for_runs nor copy_thread.
    assert report.results["delete_for_runs"].detected is False
    assert report.results["copy_thread"].detected is False
