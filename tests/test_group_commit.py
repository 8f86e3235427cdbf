"""Group commit (``AsyncSQLAlchemySaver(engine, group_commit=True)``): concurrent puts and writes
of one kind that wait for a pooled connection go to the server together, through the
``AsyncConnection`` (listeners see them), and each caller still gets its own outcome."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

import pytest
from langgraph.checkpoint.base import Checkpoint
from langgraph.checkpoint.base.id import uuid6
from sqlalchemy import event, text

from langgraph_sqlalchemy import AsyncSQLAlchemySaver
from langgraph_sqlalchemy.engine import create_engine
from langgraph_sqlalchemy.errors import DatabaseError, MigrationError


def _checkpoint(values: dict[str, Any], versions: dict[str, Any] | None = None) -> Checkpoint:
    return Checkpoint(
        v=4,
        id=str(uuid6(clock_seq=-1)),
        ts=datetime.now(timezone.utc).isoformat(),
        channel_values=dict(values),
        channel_versions=versions if versions is not None else {k: 1 for k in values},
        versions_seen={},
        updated_channels=None,
    )


def _config(thread: str) -> Any:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}


class Executions:
    """What the engine's cursor-execute listener saw: (executemany, parameter sets)."""

    def __init__(self) -> None:
        self.seen: list[tuple[bool, int]] = []

    def __call__(
        self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "WITH")):
            self.seen.append((many, len(params) if many else 1))


async def _blocked_puts(saver: AsyncSQLAlchemySaver, calls: int) -> tuple[list[Any], Executions]:
    """``calls`` puts started while the pool's only connection is held, then released."""
    engine = saver.db.engine
    assert engine is not None
    executions = Executions()
    event.listen(engine.sync_engine, "before_cursor_execute", executions)
    holder = await engine.connect()  # the pool's one connection: every put must wait for it
    try:
        tasks = [
            asyncio.create_task(saver.aput(_config(f"gc-{i}"), _checkpoint({"n": i}), {}, {}))
            for i in range(calls)
        ]
        await asyncio.sleep(0.05)  # every put is queued behind the held connection
        assert not any(task.done() for task in tasks)
    finally:
        await holder.close()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    event.remove(engine.sync_engine, "before_cursor_execute", executions)
    return results, executions


@pytest.mark.parametrize("group_commit", [True, False])
async def test_waiting_puts_share_one_statement_only_with_group_commit(
    database_url: str, group_commit: bool
) -> None:
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        saver = AsyncSQLAlchemySaver(engine, group_commit=group_commit)
        results, executions = await _blocked_puts(saver, 8)
        assert not [r for r in results if isinstance(r, BaseException)]
        if group_commit:
            # One executemany with all eight (the first put may have gone alone).
            assert max(n for _, n in executions.seen) >= 7
            assert any(many for many, _ in executions.seen)
        else:
            assert executions.seen == [(False, 1)] * 8
        assert sum(n for _, n in executions.seen) == 8
        for i, stored in enumerate(results):
            tup = await saver.aget_tuple(stored)
            assert tup is not None and tup.checkpoint["channel_values"] == {"n": i}
        assert engine.sync_engine.pool.checkedout() == 0
    finally:
        await engine.dispose()


async def test_a_bad_member_fails_alone_and_the_others_are_stored(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        saver = AsyncSQLAlchemySaver(engine, group_commit=True)
        holder = await engine.connect()
        try:
            good = [
                asyncio.create_task(
                    saver.aput(_config(f"gc-ok-{i}"), _checkpoint({"n": i}), {}, {})
                )
                for i in range(5)
            ]
            # The same statement kind; JSONB refuses the NUL in this channel name (22P05).
            bad = asyncio.create_task(
                saver.aput(_config("gc-bad"), _checkpoint({}, versions={"a\x00b": 1}), {}, {})
            )
            await asyncio.sleep(0.05)
        finally:
            await holder.close()
        stored = await asyncio.gather(*good)
        with pytest.raises(DatabaseError, match="22P05"):
            await bad
        for i, config in enumerate(stored):
            tup = await saver.aget_tuple(config)
            assert tup is not None and tup.checkpoint["channel_values"] == {"n": i}
        assert await saver.aget_tuple(_config("gc-bad")) is None
    finally:
        await engine.dispose()


async def test_a_cancelled_member_leaves_the_others_and_the_pool_intact(
    database_url: str,
) -> None:
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        saver = AsyncSQLAlchemySaver(engine, group_commit=True)
        holder = await engine.connect()
        try:
            tasks = [
                asyncio.create_task(
                    saver.aput(_config(f"gc-cancel-{i}"), _checkpoint({"n": i}), {}, {})
                )
                for i in range(6)
            ]
            await asyncio.sleep(0.05)
            tasks[2].cancel()
        finally:
            await holder.close()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[2], asyncio.CancelledError)
        for i, result in enumerate(results):
            if i != 2:
                tup = await saver.aget_tuple(result)
                assert tup is not None and tup.checkpoint["channel_values"] == {"n": i}
        assert engine.sync_engine.pool.checkedout() == 0
        async with engine.connect() as conn:  # the pool's connection is healthy
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()


async def test_writes_do_not_group_where_a_group_would_change_what_runs(
    own_database: str,
) -> None:
    """A group sends SQL compiled once through ``exec_driver_sql``: it would ignore a
    ``schema_translate_map`` (the writes would land in the untranslated tables) and fire no
    ``before_execute`` / ``after_execute``. With either, every put runs on its own, where
    the map applies and those listeners see it."""
    base = create_engine(own_database, pool_size=1, max_overflow=0)
    try:
        async with base.begin() as conn:
            await conn.execute(text("CREATE SCHEMA tenant"))
        await AsyncSQLAlchemySaver(base).setup()
        await AsyncSQLAlchemySaver(base, schema="tenant").setup()
        tenant = base.execution_options(schema_translate_map={None: "tenant"})
        saver = AsyncSQLAlchemySaver(tenant, group_commit=True)
        results, executions = await _blocked_puts(saver, 6)
        assert not [r for r in results if isinstance(r, BaseException)]
        assert executions.seen == [(False, 1)] * 6
        async with base.connect() as conn:
            public = (await conn.execute(text("SELECT count(*) FROM public.checkpoints"))).scalar()
            mapped = (await conn.execute(text("SELECT count(*) FROM tenant.checkpoints"))).scalar()
        assert (public, mapped) == (0, 6)

        watched = AsyncSQLAlchemySaver(base, group_commit=True)
        seen: list[str] = []
        event.listen(base.sync_engine, "before_execute", lambda *a: seen.append("x"))
        results, executions = await _blocked_puts(watched, 6)
        assert not [r for r in results if isinstance(r, BaseException)]
        assert executions.seen == [(False, 1)] * 6
        assert len(seen) == 6  # each put once (no other statement ran meanwhile)
    finally:
        await base.dispose()


async def test_setup_through_a_schema_translate_map_says_how(own_database: str) -> None:
    """The revisions' SQL names tables as text, which the map does not reach: setup() on a
    mapped engine is refused with the way out, and once the schema is set up on the base
    engine, setup() through the mapped one is a no-op."""
    base = create_engine(own_database)
    try:
        async with base.begin() as conn:
            await conn.execute(text("CREATE SCHEMA tenant"))
        tenant = base.execution_options(schema_translate_map={None: "tenant"})
        with pytest.raises(MigrationError, match=r"schema_translate_map.*schema='NAME'"):
            await AsyncSQLAlchemySaver(tenant).setup()
        await AsyncSQLAlchemySaver(base, schema="tenant").setup()
        saver = AsyncSQLAlchemySaver(tenant)
        await saver.setup()  # at head: nothing to run
        stored = await saver.aput(_config("mapped"), _checkpoint({"n": 1}), {}, {})
        assert await saver.aget_tuple(stored) is not None
    finally:
        await base.dispose()
