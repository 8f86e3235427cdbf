"""The saver's hot statements (checkpoint read, page, put, writes) run two ways: straight on a
pooled asyncpg connection when nobody watches the engine (``Database.fetch``), through SQLAlchemy
otherwise (``langgraph_sqlalchemy.checkpoint.precompiled``). Both must be indistinguishable to a
user."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from langgraph.checkpoint.base import Checkpoint
from langgraph.checkpoint.base.id import uuid6
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from langgraph_sqlalchemy import AsyncSQLAlchemySaver, database
from langgraph_sqlalchemy.checkpoint import precompiled
from langgraph_sqlalchemy.engine import create_engine
from langgraph_sqlalchemy.errors import DatabaseError


def _checkpoint(values: dict[str, Any], versions: dict[str, Any] | None = None) -> Checkpoint:
    return Checkpoint(
        v=1,
        id=str(uuid6(clock_seq=-1)),
        ts=datetime.now(timezone.utc).isoformat(),
        channel_values=dict(values),
        channel_versions=versions if versions is not None else {k: 1 for k in values},
        versions_seen={},
        updated_channels=None,
    )


async def _story(saver: AsyncSQLAlchemySaver, thread: str) -> list[Any]:
    """Puts, writes, a read by id, the newest, and a listing; what a user gets back."""
    config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    seen: list[Any] = []
    for i in range(3):
        values = {"n": i, "items": list(range(i + 1)), "text": f"step {i}"}
        config = await saver.aput(config, _checkpoint(values), {"step": i}, {"n": 1, "items": 1})
        await saver.aput_writes(config, [("items", [i]), ("n", i)], f"task-{i}")
        await saver.aput_writes(config, [("__error__", f"e{i}")], f"task-{i}")
    newest = await saver.aget_tuple({"configurable": {"thread_id": thread}})
    by_id = await saver.aget_tuple(config)
    listed = [t async for t in saver.alist({"configurable": {"thread_id": thread}})]
    for tup in [newest, by_id, *listed]:
        assert tup is not None
        seen.append(
            (
                tup.checkpoint["channel_values"],
                tup.metadata["step"],
                tup.pending_writes,
                tup.parent_config is not None,
            )
        )
    return seen


async def test_direct_and_instrumented_paths_give_the_same_results(engine: AsyncEngine) -> None:
    saver = AsyncSQLAlchemySaver(engine)
    direct_calls = 0
    original = precompiled._direct_driver
    original_pooled = database._fetch_on_pooled_driver

    def counting(sync: Any, options: Any) -> Any:
        nonlocal direct_calls
        driver = original(sync, options)
        direct_calls += driver is not None
        return driver

    async def counting_pooled(*args: Any) -> Any:
        nonlocal direct_calls
        rows = await original_pooled(*args)
        direct_calls += rows is not None
        return rows

    precompiled._direct_driver = counting
    database._fetch_on_pooled_driver = counting_pooled
    try:
        unwatched = await _story(saver, "t-direct")
        assert direct_calls > 0

        statements: list[str] = []

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        direct_calls = 0
        event.listen(engine.sync_engine, "before_cursor_execute", record)
        try:
            watched = await _story(saver, "t-watched")
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", record)
    finally:
        precompiled._direct_driver = original
        database._fetch_on_pooled_driver = original_pooled
    # A listener sees every statement: nothing bypasses it while it is attached.
    assert direct_calls == 0
    assert len(statements) == 3 * 3 + 3  # puts + two writes each, then two reads and a page
    assert watched == unwatched


async def test_error_on_the_direct_path_is_translated_and_the_saver_stays_usable(
    engine: AsyncEngine,
) -> None:
    saver = AsyncSQLAlchemySaver(engine)
    config: Any = {"configurable": {"thread_id": "t-bad", "checkpoint_ns": ""}}
    # JSONB cannot hold \u0000; a channel *name* with NUL reaches the server and is refused.
    bad = _checkpoint({}, versions={"a\x00b": 1})
    try:
        await saver.aput(config, bad, {}, {})
    except DatabaseError as exc:
        assert "22P05" in str(exc)
        assert exc.__cause__ is not None
    else:
        raise AssertionError("the server accepted a NUL in JSONB")
    stored = await saver.aput(config, _checkpoint({"x": 1}), {}, {"x": 1})
    tup = await saver.aget_tuple(stored)
    assert tup is not None and tup.checkpoint["channel_values"] == {"x": 1}


async def test_connections_killed_under_the_direct_path_are_replaced(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=3, max_overflow=0)
    try:
        saver = AsyncSQLAlchemySaver(engine)
        stored = await saver.aput(
            {"configurable": {"thread_id": "t-kill", "checkpoint_ns": ""}},
            _checkpoint({"x": 1}),
            {},
            {"x": 1},
        )
        # Check out every pooled connection at once so that all of them exist, then kill them
        # (only these: the session's other engines share the database).
        conns = [await engine.connect() for _ in range(3)]
        pid_query = text("SELECT pg_backend_pid()")
        pids = [(await conn.execute(pid_query)).scalar_one() for conn in conns]
        for conn in conns:
            await conn.close()
        killer = create_engine(database_url, pool_size=1, max_overflow=0)
        try:
            async with killer.connect() as conn:
                for pid in pids:
                    await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        finally:
            await killer.dispose()
        for _ in range(4):  # more calls than pooled connections: each dead one must be replaced
            tup = await saver.aget_tuple(stored)
            assert tup is not None and tup.checkpoint["channel_values"] == {"x": 1}
        await saver.aput_writes(stored, [("x", 2)], "task")
    finally:
        await engine.dispose()


async def test_connection_hooks_keep_the_saver_on_sqlalchemy_connections(
    database_url: str,
) -> None:
    """A host's ``engine_connect`` hook (session set-up per Connection) must still run for
    every call: the raw pooled-connection shortcut would skip it, so it is not taken."""
    engine = create_engine(database_url, pool_size=2, max_overflow=0)
    hooked = 0

    def on_connect(conn: Any) -> None:
        nonlocal hooked
        hooked += 1

    event.listen(engine.sync_engine, "engine_connect", on_connect)
    original_pooled = database._fetch_on_pooled_driver
    shortcuts = 0

    async def counting_pooled(*args: Any) -> Any:
        nonlocal shortcuts
        shortcuts += 1
        return await original_pooled(*args)

    database._fetch_on_pooled_driver = counting_pooled
    try:
        saver = AsyncSQLAlchemySaver(engine)
        stored = await saver.aput(
            {"configurable": {"thread_id": "t-hook", "checkpoint_ns": ""}},
            _checkpoint({"x": [1]}),
            {},
            {"x": 1},
        )
        await saver.aput_writes(stored, [("x", 2)], "task")
        tup = await saver.aget_tuple(stored)
        assert tup is not None and tup.checkpoint["channel_values"] == {"x": [1]}
        assert [w[1:] for w in tup.pending_writes] == [("x", 2)]
        assert len([t async for t in saver.alist(stored)]) == 1
        assert shortcuts == 0
        assert hooked >= 4  # put, writes, read and page each on a Connection of their own
    finally:
        database._fetch_on_pooled_driver = original_pooled
        await engine.dispose()


async def test_calls_beyond_the_pool_queue_share_connections_and_fail_alone(
    database_url: str,
) -> None:
    """More concurrent calls than pooled connections: the queued ones run on the connections
    already out (puts of one kind in shared round trips); a bad one among them fails alone, a
    cancelled one is skipped, and every connection is back in the pool when the calls return."""
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        saver = AsyncSQLAlchemySaver(engine)
        configs: list[Any] = [
            {"configurable": {"thread_id": f"t-queue-{i}", "checkpoint_ns": ""}} for i in range(30)
        ]
        bad_config: Any = {"configurable": {"thread_id": "t-queue-bad", "checkpoint_ns": ""}}
        calls = [
            saver.aput(c, _checkpoint({"x": i}), {"i": i}, {"x": 1}) for i, c in enumerate(configs)
        ]
        # Same statement as the others (no blobs); JSONB refuses the NUL in its channel name.
        calls.insert(15, saver.aput(bad_config, _checkpoint({}, versions={"a\x00b": 1}), {}, {}))
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert engine.sync_engine.pool.checkedout() == 0
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1
        assert isinstance(errors[0], DatabaseError) and "22P05" in str(errors[0])
        stored = [r for r in results if not isinstance(r, BaseException)]
        for i, config in enumerate(stored):
            tup = await saver.aget_tuple(config)
            assert tup is not None and tup.checkpoint["channel_values"] == {"x": i}
            assert tup.metadata["i"] == i
        assert await saver.aget_tuple(bad_config) is None

        tasks = [
            asyncio.create_task(saver.aput_writes(config, [("x", i)], "task"))
            for i, config in enumerate(stored)
        ]
        await asyncio.sleep(0)  # every call has started: one holds the connection, others queue
        tasks[5].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert engine.sync_engine.pool.checkedout() == 0
        for i, config in enumerate(stored):
            tup = await saver.aget_tuple(config)
            assert tup is not None
            writes = [w[1:] for w in tup.pending_writes]
            assert writes == [("x", i)] or (i == 5 and writes == [])
    finally:
        await engine.dispose()
