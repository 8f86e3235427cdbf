"""Thread retention (issue 13): ``AsyncSQLAlchemySaver(ttl=...)``, ``asweep_ttl``, the sweeper.

Everything runs on the real server: threads are written by real graphs or ``aput``, aged by
moving their clocks back (see :mod:`retention_helpers`), swept, and what is left is read back
from the tables. Races are staged with real transactions holding the locks a write holds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.types import Command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from graphs import build_delta_graph, build_linear_graph, build_subgraph_graph
from langgraph_sqlalchemy import AsyncSQLAlchemySaver, InvalidInputError, migrations
from langgraph_sqlalchemy.checkpoint.retention import (
    MAX_TTL_MINUTES,
    RetentionPolicy,
    parse_ttl_config,
    plan_sweep,
    sweep_threads,
)
from langgraph_sqlalchemy.engine import create_engine
from retention_helpers import (
    LONG_AGO,
    activity_of,
    age,
    backdate,
    checkpoint,
    rows_by_thread,
    rows_of,
    write_thread,
    write_threads,
)

DAY = 24 * 60.0
TTL = {"strategy": "delete", "default_ttl": 30 * DAY, "sweep_interval_minutes": 60}
WHOLE = {
    "checkpoints": 3,
    "checkpoint_blobs": 3,
    "checkpoint_writes": 3,
    "checkpoint_thread_activity": 1,
}
GONE = dict.fromkeys(WHOLE, 0)


def run(thread_id: str, **configurable: Any) -> Any:
    return {"configurable": {"thread_id": thread_id, **configurable}}


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ttl", "message"),
    [
        ({"default_ttl": -1}, "default_ttl"),
        ({"default_ttl": math.nan}, "default_ttl"),
        ({"default_ttl": math.inf}, "default_ttl"),
        ({"default_ttl": "30d"}, "default_ttl"),
        ({"default_ttl": True}, "default_ttl"),
        ({"default_ttl": MAX_TTL_MINUTES * 2}, "1,900 years"),
        ({"strategy": "archive"}, "strategy"),
        ({"strategy": None}, "strategy"),
        ({"sweep_interval_minutes": 0}, "sweep_interval_minutes"),
        ({"sweep_interval_minutes": math.nan}, "sweep_interval_minutes"),
        ({"sweep_interval_minutes": "hourly"}, "sweep_interval_minutes"),
        ({"sweep_interval_minutes": 1e12}, "at most 1,000,000,000"),
        ({"sweep_limit": 0}, "sweep_limit"),
        ({"sweep_limit": 2.5}, "sweep_limit"),
        ({"default_tll": 60}, "unknown"),
        ("delete", "dict"),
    ],
)
def test_bad_ttl_config_is_a_clear_value_error_at_construction(
    engine: AsyncEngine, ttl: Any, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message) as caught:
        AsyncSQLAlchemySaver(engine, ttl=ttl)
    assert isinstance(caught.value, ValueError)


async def test_from_conn_string_refuses_a_bad_ttl_before_making_an_engine(
    database_url: str,
) -> None:
    with pytest.raises(ValueError, match="strategy"):
        async with AsyncSQLAlchemySaver.from_conn_string(database_url, ttl={"strategy": "x"}):
            pass


def test_good_ttl_configs_are_accepted(engine: AsyncEngine) -> None:
    saver = AsyncSQLAlchemySaver(engine, ttl=TTL)
    assert saver.ttl_config == TTL
    assert AsyncSQLAlchemySaver(engine, ttl={}).ttl_config == {}
    AsyncSQLAlchemySaver(engine, ttl={"strategy": "keep_latest", "default_ttl": 0.5})
    AsyncSQLAlchemySaver(engine, ttl={"default_ttl": None, "sweep_limit": 1000})
    # The store's bounds, and its number types: Decimal and Fraction are numbers of minutes too.
    AsyncSQLAlchemySaver(
        engine,
        ttl={"default_ttl": Decimal("90.5"), "sweep_interval_minutes": Fraction(1, 2)},
    )


async def test_the_longest_ttl_reaches_the_server_without_overflow(engine: AsyncEngine) -> None:
    # now() minus a billion minutes is in the year 126: still a timestamptz, so a sweep with
    # the longest TTL there is keeps a thread last written in 2020 and fails on nothing.
    saver = AsyncSQLAlchemySaver(engine, ttl={"default_ttl": MAX_TTL_MINUTES})
    await write_thread(saver, "ancient", checkpoint_ttl=MAX_TTL_MINUTES)
    await write_thread(saver, "by-default")
    await age(engine)
    assert await saver.asweep_ttl() == 0
    assert (await rows_of(engine, "ancient")) == WHOLE
    assert (await rows_of(engine, "by-default")) == WHOLE


@pytest.mark.parametrize("bad", [-5, math.nan, math.inf, "1h", [1], MAX_TTL_MINUTES + 1])
async def test_bad_per_thread_ttl_is_refused_before_anything_is_written(
    engine: AsyncEngine, bad: Any
) -> None:
    saver = AsyncSQLAlchemySaver(engine, ttl=TTL)
    with pytest.raises(InvalidInputError, match="checkpoint_ttl"):
        await saver.aput(
            {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_ttl": bad}},
            checkpoint({"a": [1]}),
            {},
            {"a": "1"},
        )
    with pytest.raises(InvalidInputError, match="checkpoint_ttl"):
        await saver.aput_writes(
            run("t", checkpoint_ns="", checkpoint_id="c", checkpoint_ttl=bad),
            [("a", 1)],
            "task",
        )
    assert await rows_of(engine, "t") == GONE
    # The saver is still usable.
    await write_thread(saver, "t", 1)
    assert (await rows_of(engine, "t"))["checkpoints"] == 1


async def test_bad_sweep_arguments(engine: AsyncEngine) -> None:
    saver = AsyncSQLAlchemySaver(engine, ttl=TTL)
    await write_thread(saver, "kept")
    await age(engine)
    for bad in (0, -1):
        with pytest.raises(InvalidInputError, match="batch_size"):
            await saver.asweep_ttl(batch_size=bad)
        # The function under it refuses too, rather than sweep nothing or fail on the server.
        with pytest.raises(InvalidInputError, match="batch_size"):
            await sweep_threads(saver.db, saver.repository, RetentionPolicy(), batch_size=bad)
    assert await rows_of(engine, "kept") == WHOLE
    with pytest.raises(ValueError, match="sweep_interval_minutes"):
        await saver.start_ttl_sweeper(-1)


# --- activity tracking -------------------------------------------------------------------------


async def test_one_activity_row_per_thread_across_subgraph_namespaces(
    engine: AsyncEngine,
) -> None:
    saver = AsyncSQLAlchemySaver(engine)
    graph = build_subgraph_graph().compile(checkpointer=saver)
    await graph.ainvoke({"log": []}, run("family"))
    async with engine.connect() as conn:
        namespaces = set(
            (
                await conn.execute(
                    text(
                        "SELECT DISTINCT checkpoint_ns FROM checkpoints "
                        "WHERE thread_id = 'family'"
                    )
                )
            ).scalars()
        )
    first = await activity_of(engine, "family")
    assert len(namespaces) >= 3  # root, child, grandchild
    assert (await rows_of(engine, "family"))["checkpoint_thread_activity"] == 1
    assert first is not None and first.ttl_minutes is None and first.swept_at is None

    # Resuming a minute later (from another replica) writes again: the same row moves forward.
    await backdate(engine, "family")
    other = build_subgraph_graph().compile(checkpointer=AsyncSQLAlchemySaver(engine))
    await other.ainvoke(Command(resume="yes"), run("family"))
    second = await activity_of(engine, "family")
    assert second.last_activity > first.last_activity
    assert (await rows_of(engine, "family"))["checkpoint_thread_activity"] == 1


async def test_writes_alone_touch_the_thread(engine: AsyncEngine) -> None:
    saver = AsyncSQLAlchemySaver(engine)
    await saver.aput_writes(
        run("w", checkpoint_ns="", checkpoint_id="c1"), [("a", 1)], "task"
    )
    assert (await rows_of(engine, "w"))["checkpoint_thread_activity"] == 1
    await backdate(engine, "w")
    before = await activity_of(engine, "w")
    await AsyncSQLAlchemySaver(engine).aput_writes(
        run("w", checkpoint_ns="", checkpoint_id="c1"), [("__error__", "boom")], "task"
    )
    assert (await activity_of(engine, "w")).last_activity > before.last_activity


async def test_a_saver_touches_a_thread_once_per_half_second(engine: AsyncEngine) -> None:
    """Writes right after one that touched the thread go without the touch (the server would
    find the row recent anyway); half a second later, or with a new TTL, they touch again."""
    saver = AsyncSQLAlchemySaver(engine)
    await write_thread(saver, "often", 1)
    await backdate(engine, "often", 5)  # the server would rewrite it: the saver does not ask
    first = await activity_of(engine, "often")
    await write_thread(saver, "often", 2)
    assert await activity_of(engine, "often") == first
    await write_thread(saver, "often", 1, checkpoint_ttl=3)
    assert (await activity_of(engine, "often")).ttl_minutes == 3.0
    await backdate(engine, "often", 5)
    stale = await activity_of(engine, "often")
    await asyncio.sleep(0.6)
    await write_thread(saver, "often", 1)
    assert (await activity_of(engine, "often")).last_activity > stale.last_activity


async def test_writes_within_a_second_leave_the_row_as_it_is(engine: AsyncEngine) -> None:
    """The resolution of last_activity: a burst of writes (a graph run) costs one row version,
    not one per write; a TTL change is recorded at once all the same."""
    saver = AsyncSQLAlchemySaver(engine)

    async def version() -> Any:
        async with engine.connect() as conn:
            return (
                await conn.execute(
                    text(
                        "SELECT xmin::text, last_activity, ttl_minutes "
                        "FROM checkpoint_thread_activity WHERE thread_id = 'burst'"
                    )
                )
            ).one()

    await write_thread(saver, "burst", 1)
    first = await version()
    await write_thread(saver, "burst", 3)
    assert await version() == first
    await write_thread(saver, "burst", 1, checkpoint_ttl=7)
    changed = await version()
    assert changed.ttl_minutes == 7.0 and changed.xmin != first.xmin


async def test_per_thread_ttl_from_the_run_config(engine: AsyncEngine) -> None:
    saver = AsyncSQLAlchemySaver(engine)
    graph = build_linear_graph().compile(checkpointer=saver)
    await graph.ainvoke({"trail": []}, run("short", checkpoint_ttl=5))
    assert (await activity_of(engine, "short")).ttl_minutes == 5.0
    # A run without the key keeps the thread's TTL ...
    await graph.ainvoke({"trail": []}, run("short"))
    assert (await activity_of(engine, "short")).ttl_minutes == 5.0
    # ... one with another value replaces it, fractions included ...
    await graph.ainvoke({"trail": []}, run("short", checkpoint_ttl=0.25))
    assert (await activity_of(engine, "short")).ttl_minutes == 0.25
    # ... and None hands it back to the default.
    await graph.ainvoke({"trail": []}, run("short", checkpoint_ttl=None))
    assert (await activity_of(engine, "short")).ttl_minutes is None


async def test_tracking_off_writes_no_activity_and_the_sweep_still_finds_the_thread(
    engine: AsyncEngine,
) -> None:
    saver = AsyncSQLAlchemySaver(engine, ttl=TTL, track_activity=False)
    await write_thread(saver, "quiet", ts=LONG_AGO)
    await write_thread(saver, "recent")
    assert (await rows_of(engine, "quiet"))["checkpoint_thread_activity"] == 0
    assert await saver.asweep_ttl() == 1
    assert await rows_of(engine, "quiet") == GONE
    assert (await rows_of(engine, "recent"))["checkpoints"] == 3


async def test_a_copied_thread_is_a_fresh_write_with_the_sources_ttl(
    engine: AsyncEngine,
) -> None:
    saver = AsyncSQLAlchemySaver(engine, ttl=TTL)
    await write_thread(saver, "original", ts=LONG_AGO, checkpoint_ttl=90)
    await age(engine, ["original"])
    await saver.acopy_thread("original", "copy")
    await saver.acopy_thread("nothing-here", "empty-copy")

    copied = await activity_of(engine, "copy")
    assert copied is not None and copied.ttl_minutes == 90.0
    assert copied.last_activity > (await activity_of(engine, "original")).last_activity
    assert await activity_of(engine, "empty-copy") is None  # nothing copied, nothing recorded
    # The copy's checkpoints carry the original's old ts; the copy lives by its own write.
    assert await saver.asweep_ttl() == 1
    assert await rows_of(engine, "original") == GONE
    assert await rows_of(engine, "copy") == WHOLE
    # A target that had its own TTL keeps it.
    await write_thread(saver, "kept", checkpoint_ttl=5)
    await saver.acopy_thread("copy", "kept")
    assert (await activity_of(engine, "kept")).ttl_minutes == 5.0
    # Tracking off: the copy records nothing, as no other write does.
    quiet = AsyncSQLAlchemySaver(engine, ttl=TTL, track_activity=False)
    await quiet.acopy_thread("copy", "quiet-copy")
    assert await activity_of(engine, "quiet-copy") is None


# --- the delete strategy -------------------------------------------------------------------------


async def test_delete_removes_expired_threads_whole_and_keeps_the_rest(
    engine: AsyncEngine,
) -> None:
    saver = AsyncSQLAlchemySaver(engine, ttl=TTL)
    graph = build_subgraph_graph().compile(checkpointer=saver)
    await graph.ainvoke({"log": []}, run("old-family"))
    await graph.ainvoke({"log": []}, run("new-family"))
    await write_threads(saver, ["old-1", "old-2", "new-1"])
    await age(engine, ["old-family", "old-1", "old-2"])

    assert await saver.asweep_ttl() == 3

    left = await rows_by_thread(engine)
    assert set(left) == {"new-family", "new-1"}
    assert left["new-1"] == WHOLE
    state = await graph.aget_state(run("new-family"))
    assert state.next == ("child",)  # still paused at the grandchild's question
    # Nothing left to do: a second sweep removes nothing.
    assert await saver.asweep_ttl() == 0


async def test_per_thread_ttl_overrides_the_default(engine: AsyncEngine) -> None:
    saver = AsyncSQLAlchemySaver(engine, ttl={"default_ttl": 10.0})
    await write_thread(saver, "one-minute", checkpoint_ttl=1)
    await write_thread(saver, "ten-years", checkpoint_ttl=10 * 365 * DAY)
    await write_thread(saver, "default")
    async with engine.begin() as conn:
        # Written two minutes ago (checkpoint ts likewise, as LangGraph would have set it).
        await conn.execute(
            text(
                "UPDATE checkpoint_thread_activity SET last_activity = now() - interval '2 min'"
            )
        )
        await conn.execute(
            text(
                "UPDATE checkpoints SET checkpoint = jsonb_set(checkpoint, '{ts}', to_jsonb("
                "to_char((now() - interval '2 min') AT TIME ZONE 'UTC', "
                "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')))"
            )
        )
    assert await saver.asweep_ttl() == 1
    assert set(await rows_by_thread(engine)) == {"ten-years", "default"}
    await age(engine)  # 2020: past ten minutes, not past ten years
    assert await saver.asweep_ttl() == 1
    assert set(await rows_by_thread(engine)) == {"ten-years"}


async def test_without_a_default_only_threads_with_their_own_ttl_expire(
    engine: AsyncEngine,
) -> None:
    saver = AsyncSQLAlchemySaver(engine)  # no ttl config at all
    await write_thread(saver, "mortal", checkpoint_ttl=60)
    await write_thread(saver, "immortal")
    await age(engine)
    assert await saver.asweep_ttl() == 1
    assert set(await rows_by_thread(engine)) == {"immortal"}


async def test_sweep_limit_caps_one_sweep(engine: AsyncEngine) -> None:
    saver = AsyncSQLAlchemySaver(engine, ttl={**TTL, "sweep_limit": 3})
    await write_threads(saver, [f"t{i}" for i in range(7)])
    await age(engine)
    assert await saver.asweep_ttl(batch_size=2) == 3
    assert await saver.asweep_ttl(batch_size=2) == 3
    assert await saver.asweep_ttl(batch_size=2) == 1
    assert await rows_by_thread(engine) == {}


async def test_the_plan_is_what_the_sweep_then_does_within_sweep_limit(
    engine: AsyncEngine,
) -> None:
    """plan_sweep (the CLI's dry run) takes the threads in the sweep's order, as many as
    sweep_limit lets one sweep examine, including those it examines and keeps."""
    ttl = {**TTL, "sweep_limit": 3}
    policy = parse_ttl_config(ttl)
    assert policy is not None
    saver = AsyncSQLAlchemySaver(engine, ttl=ttl)
    await write_threads(saver, ["t0", "t0-fresh", "t2", "t3", "t4"])
    # Untracked (upstream-like): the sweep first gives it a row, then takes it in id order.
    await write_thread(AsyncSQLAlchemySaver(engine, track_activity=False), "t1", ts=LONG_AGO)
    await age(engine)
    async with engine.begin() as conn:
        # Due by its row, but written since by its checkpoints: examined and kept.
        await conn.execute(
            text(
                "UPDATE checkpoints SET checkpoint = jsonb_set(checkpoint, '{ts}', "
                "to_jsonb(CAST(:ts AS text))) WHERE thread_id = 't0-fresh'"
            ),
            {"ts": "2999-01-01T00:00:00+00:00"},
        )

    plan = await plan_sweep(saver.db, saver.repository, policy)
    assert (plan.threads, plan.expired, plan.left_alone) == (["t0", "t1"], 5, [])
    assert await saver.asweep_ttl(batch_size=2) == 2
    assert set(await rows_by_thread(engine)) == {"t0-fresh", "t2", "t3", "t4"}

    plan = await plan_sweep(saver.db, saver.repository, policy)
    assert (plan.threads, plan.expired) == (["t2", "t3"], 3)
    assert await saver.asweep_ttl(batch_size=2) == 2
    assert set(await rows_by_thread(engine)) == {"t0-fresh", "t4"}


async def test_progress_reports_every_batch(engine: AsyncEngine) -> None:
    saver = AsyncSQLAlchemySaver(engine, ttl=TTL)
    await write_threads(saver, [f"t{i}" for i in range(5)])
    await age(engine)
    seen: list[tuple[int, int]] = []

    async def progress(examined: int, due: int) -> None:
        seen.append((examined, due))

    assert await saver.asweep_ttl(batch_size=2, progress=progress) == 5
    assert seen == [(2, 5), (4, 5), (5, 5)]


async def test_orphan_activity_rows_go_without_counting(engine: AsyncEngine) -> None:
    saver = AsyncSQLAlchemySaver(engine, ttl=TTL)
    await write_thread(saver, "deleted")
    await saver.adelete_thread("deleted")  # leaves the activity row behind
    await age(engine)
    assert await _expired(saver) == []  # the dry run does not count it either
    assert await saver.asweep_ttl() == 0
    assert await rows_of(engine, "deleted") == GONE


# --- upstream's threads: no activity row, their checkpoints' ts decides -------------------------


async def test_threads_only_upstream_wrote_are_found_by_their_timestamps(
    engine: AsyncEngine, database_url: str
) -> None:
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, prepare_threshold=0
    ) as conn:
        upstream = AsyncPostgresSaver(conn)
        await write_thread(upstream, "upstream-old", ts=LONG_AGO)
        await write_thread(upstream, "upstream-new")
    assert (await rows_of(engine, "upstream-old"))["checkpoint_thread_activity"] == 0

    saver = AsyncSQLAlchemySaver(engine, ttl=TTL)
    dry = await _expired(saver)
    assert dry == ["upstream-old"]
    assert await saver.asweep_ttl() == 1
    assert await rows_of(engine, "upstream-old") == GONE
    left = await rows_of(engine, "upstream-new")
    assert left["checkpoints"] == 3
    # Adopted, marked "never written here"; its checkpoints keep it, and move it forward.
    row = await activity_of(engine, "upstream-new")
    assert row is not None and row.last_activity.year > 2020
    assert await saver.asweep_ttl() == 0

    # Upstream keeps working on the database, and our writes to its thread are recorded.
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, prepare_threshold=0
    ) as conn:
        upstream = AsyncPostgresSaver(conn)
        assert len([t async for t in upstream.alist(run("upstream-new"))]) == 3
        await write_thread(upstream, "upstream-more", 1)
    await write_thread(saver, "upstream-new", 1)
    assert (await activity_of(engine, "upstream-new")).last_activity.year > 2020


async def test_a_thread_both_wrote_lives_by_the_later_write(
    engine: AsyncEngine, database_url: str
) -> None:
    saver = AsyncSQLAlchemySaver(engine, ttl=TTL)
    await write_thread(saver, "shared", ts=LONG_AGO)
    await write_thread(saver, "ours-only", ts=LONG_AGO)
    await age(engine)
    # Upstream writes to the shared thread now: our activity row knows nothing of it.
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, prepare_threshold=0
    ) as conn:
        latest = await AsyncPostgresSaver(conn).aget_tuple(run("shared", checkpoint_ns=""))
        assert latest is not None
        await AsyncPostgresSaver(conn).aput(
            latest.config, checkpoint({"step": 9}), {"step": 9}, {}
        )
    assert await _expired(saver) == ["ours-only"]
    assert await saver.asweep_ttl() == 1
    assert (await rows_of(engine, "shared"))["checkpoints"] == 4
    # Once upstream's write is old too, the thread goes.
    await age(engine)
    assert await saver.asweep_ttl() == 1
    assert await rows_by_thread(engine) == {}


async def _expired(saver: AsyncSQLAlchemySaver) -> list[str]:
    from langgraph_sqlalchemy.checkpoint.retention import RetentionPolicy, expired_threads

    policy = RetentionPolicy(default_ttl=saver.ttl_config.get("default_ttl"))  # type: ignore[union-attr]
    return await expired_threads(saver.db, saver.repository, policy)


# --- keep_latest -------------------------------------------------------------------------------


async def test_keep_latest_prunes_once_and_the_graph_carries_on(engine: AsyncEngine) -> None:
    saver = AsyncSQLAlchemySaver(engine, ttl={"strategy": "keep_latest", "default_ttl": DAY})
    graph = build_linear_graph().compile(checkpointer=saver)
    await graph.ainvoke({"trail": []}, run("long"))
    await graph.ainvoke({"trail": []}, run("long"))
    await graph.ainvoke({"trail": []}, run("fresh"))
    before = await graph.aget_state(run("long"))
    await age(engine, ["long"])

    assert await saver.asweep_ttl() == 1
    assert (await rows_of(engine, "long"))["checkpoints"] == 1
    assert (await rows_of(engine, "fresh"))["checkpoints"] > 1
    assert (await graph.aget_state(run("long"))).values == before.values
    row = await activity_of(engine, "long")
    assert row.swept_at is not None
    # Pruned threads are not pruned again every sweep ...
    assert await saver.asweep_ttl() == 0
    # ... and the thread goes on from where it was.
    out = await graph.ainvoke({"trail": []}, run("long"))
    assert out["trail"][: len(before.values["trail"])] == before.values["trail"]


async def test_keep_latest_counts_only_the_threads_it_pruned(engine: AsyncEngine) -> None:
    """A thread already down to its newest checkpoint is marked swept (not due again for a
    TTL) but not counted, at the first sweep or any later one; neither is an activity row
    whose thread was deleted."""
    ttl = {"strategy": "keep_latest", "default_ttl": DAY}
    policy = parse_ttl_config(ttl)
    assert policy is not None
    saver = AsyncSQLAlchemySaver(engine, ttl=ttl)
    await write_thread(saver, "long")
    await write_thread(saver, "single", 1)
    await write_thread(saver, "deleted")
    await saver.adelete_thread("deleted")
    await age(engine)
    single = await rows_of(engine, "single")

    assert (await plan_sweep(saver.db, saver.repository, policy)).threads == ["long"]
    assert await saver.asweep_ttl() == 1
    assert (await rows_of(engine, "long"))["checkpoints"] == 1
    assert await rows_of(engine, "single") == single
    assert (await activity_of(engine, "single")).swept_at is not None
    assert await saver.asweep_ttl() == 0  # not due again yet

    # A TTL later both are due again, and there is nothing left to prune in either.
    await age(engine)
    assert (await plan_sweep(saver.db, saver.repository, policy)).threads == []
    assert await saver.asweep_ttl() == 0
    assert (await rows_of(engine, "long"))["checkpoints"] == 1
    assert await rows_of(engine, "single") == single


async def put_in_open_transaction(conn: AsyncConnection, thread: str) -> None:
    """A new checkpoint of ``thread`` put in a transaction begun on ``conn`` and left open
    (the caller commits it)."""
    await conn.begin()
    writer = AsyncSQLAlchemySaver(conn)
    latest = await writer.aget_tuple(run(thread, checkpoint_ns=""))
    assert latest is not None
    await writer.aput(latest.config, checkpoint({"step": 3}), {"step": 3}, {})


async def test_keep_latest_passes_by_a_thread_being_written_without_counting_it(
    engine: AsyncEngine,
) -> None:
    sweeper = AsyncSQLAlchemySaver(engine, ttl={"strategy": "keep_latest", "default_ttl": DAY})
    await write_threads(sweeper, ["busy", "idle"])
    await age(engine)
    async with engine.connect() as conn:
        await put_in_open_transaction(conn, "busy")

        assert await asyncio.wait_for(sweeper.asweep_ttl(), 30) == 1

        assert (await rows_of(engine, "idle"))["checkpoints"] == 1
        await conn.commit()
    assert (await rows_of(engine, "busy"))["checkpoints"] == 4
    assert await sweeper.asweep_ttl() == 0  # and it is fresh now


async def test_keep_latest_leaves_delta_channel_threads_alone(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    saver = AsyncSQLAlchemySaver(engine, ttl={"strategy": "keep_latest", "default_ttl": DAY})
    graph = build_delta_graph().compile(checkpointer=saver)
    await graph.ainvoke({"items": [], "rounds": 0}, run("delta"))
    await write_thread(saver, "plain")
    checkpoints = (await rows_of(engine, "delta"))["checkpoints"]
    await age(engine)
    caplog.set_level(logging.WARNING, logger="langgraph_sqlalchemy")
    policy = parse_ttl_config(saver.ttl_config)
    assert policy is not None
    plan = await plan_sweep(saver.db, saver.repository, policy)
    assert (plan.threads, plan.left_alone, plan.expired) == (["plain"], ["delta"], 1)

    assert await saver.asweep_ttl() == 1
    assert (await rows_of(engine, "delta"))["checkpoints"] == checkpoints
    assert (await rows_of(engine, "plain"))["checkpoints"] == 1
    assert any("DeltaChannel" in r.getMessage() and "delta" in r.getMessage()
               for r in caplog.records)
    # Refused once per TTL, not once per sweep.
    caplog.clear()
    assert await saver.asweep_ttl() == 0
    assert not any("DeltaChannel" in r.getMessage() for r in caplog.records)


# --- races -------------------------------------------------------------------------------------


async def test_a_write_in_flight_keeps_its_thread(engine: AsyncEngine) -> None:
    """The write's transaction holds the thread's activity row until it commits: the sweep
    passes the thread by instead of deleting it under the write (and does not wait)."""
    sweeper = AsyncSQLAlchemySaver(engine, ttl=TTL)
    await write_threads(sweeper, ["busy", "idle"])
    await age(engine)
    async with engine.connect() as conn:
        await put_in_open_transaction(conn, "busy")

        assert await asyncio.wait_for(sweeper.asweep_ttl(), 30) == 1

        assert await rows_of(engine, "idle") == GONE
        await conn.commit()
    left = await rows_of(engine, "busy")
    assert left["checkpoints"] == 4 and left["checkpoint_blobs"] == 3
    assert left["checkpoint_writes"] == 3
    assert await sweeper.asweep_ttl() == 0  # and it is fresh now


async def test_a_write_never_waits_for_a_sweep_holding_its_thread(engine: AsyncEngine) -> None:
    """While a sweep holds a thread's row (deleting it), a write to that thread goes through
    at once; the write lands after the deletion, so the thread starts again from it."""
    saver = AsyncSQLAlchemySaver(engine)
    stored = await write_thread(saver, "contested")
    async with engine.connect() as conn:
        await conn.begin()
        await conn.execute(
            text(
                "SELECT 1 FROM checkpoint_thread_activity WHERE thread_id = 'contested' "
                "FOR UPDATE"
            )
        )
        await asyncio.wait_for(
            saver.aput(stored, checkpoint({"step": 3}), {"step": 3}, {}), 30
        )
        await asyncio.wait_for(
            saver.aput_writes(
                {"configurable": {**stored["configurable"]}}, [("items", [3])], "late"
            ),
            30,
        )
        await conn.rollback()
    assert (await rows_of(engine, "contested"))["checkpoints"] == 4


async def test_a_thread_written_while_the_sweep_runs_survives_whole(engine: AsyncEngine) -> None:
    saver = AsyncSQLAlchemySaver(engine, ttl=TTL)
    graph = build_linear_graph().compile(checkpointer=saver)
    names = [f"t{i}" for i in range(6)]
    for name in names:
        await graph.ainvoke({"trail": []}, run(name))
    history = len([t async for t in saver.alist(run("t5"))])
    before = (await graph.aget_state(run("t5"))).values["trail"]
    await age(engine)
    resumed = False

    async def progress(examined: int, due: int) -> None:
        # After the first batch, a user comes back to the thread the sweep would take last.
        nonlocal resumed
        if not resumed:
            resumed = True
            await graph.ainvoke({"trail": []}, run("t5"))

    assert await saver.asweep_ttl(batch_size=2, progress=progress) == 5
    assert set(await rows_by_thread(engine)) == {"t5"}
    assert len([t async for t in saver.alist(run("t5"))]) == 2 * history
    assert (await graph.aget_state(run("t5"))).values["trail"][: len(before)] == before


# --- the background sweeper and the sync twin ----------------------------------------------------


async def test_background_sweeper_removes_threads_as_they_expire(engine: AsyncEngine) -> None:
    saver = AsyncSQLAlchemySaver(engine, ttl=TTL)
    await write_thread(saver, "soon")
    await age(engine)
    task = await saver.start_ttl_sweeper(0.01)  # every 0.6 s
    assert await saver.start_ttl_sweeper(0.01) is task
    try:
        for _ in range(200):
            if await rows_of(engine, "soon") == GONE:
                break
            await asyncio.sleep(0.1)
        assert await rows_of(engine, "soon") == GONE
    finally:
        assert await saver.stop_ttl_sweeper(timeout=30)
    assert task.done()


async def test_sweeper_survives_a_failing_sweep(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    saver = AsyncSQLAlchemySaver(engine, ttl=TTL, schema="no_such_schema")
    caplog.set_level(logging.ERROR, logger="langgraph_sqlalchemy")
    task = await saver.start_ttl_sweeper(0.005)
    try:
        for _ in range(200):
            if any("checkpoint TTL sweep failed" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.05)
        assert any("checkpoint TTL sweep failed" in r.getMessage() for r in caplog.records)
        assert not task.done()
    finally:
        assert await saver.stop_ttl_sweeper(timeout=30)


async def test_from_conn_string_stops_its_sweeper(database_url: str) -> None:
    async with AsyncSQLAlchemySaver.from_conn_string(database_url, ttl=TTL) as saver:
        task = await saver.start_ttl_sweeper()
    assert task.done()


async def test_sync_sweep_from_a_worker_thread(engine: AsyncEngine) -> None:
    saver = AsyncSQLAlchemySaver(engine, ttl=TTL)
    await write_threads(saver, ["a", "b"])
    await age(engine)
    assert await asyncio.to_thread(saver.sweep_ttl) == 2
    with pytest.raises(asyncio.InvalidStateError, match="asweep_ttl"):
        saver.sweep_ttl()


async def test_host_connection_saver_sweeps_inside_the_host_transaction(
    engine: AsyncEngine,
) -> None:
    await write_threads(AsyncSQLAlchemySaver(engine), ["x", "y"])
    await age(engine)
    async with engine.connect() as conn:
        await conn.begin()
        saver = AsyncSQLAlchemySaver(conn, ttl={"strategy": "keep_latest", "default_ttl": 1})
        assert await saver.asweep_ttl() == 2
        await conn.rollback()  # the host decides: nothing happened
    assert (await rows_of(engine, "x"))["checkpoints"] == 3


# --- several processes ---------------------------------------------------------------------------

WORKER = Path(__file__).with_name("retention_worker.py")


def _worker(
    url: str, batch_size: int, pause: float = 0.0, *, wait: bool = False
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), url, str(batch_size), str(pause)]
        + (["wait"] if wait else []),
        stdin=subprocess.PIPE if wait else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=WORKER.parent,
    )


async def _finish(worker: subprocess.Popen[str]) -> list[str]:
    out, err = await asyncio.to_thread(worker.communicate, timeout=120)
    assert worker.returncode == 0, err
    return out.splitlines()


async def test_two_sweepers_in_two_processes_never_take_a_thread_twice(
    new_database: Any,
) -> None:
    url = await new_database()
    engine = create_engine(url)
    try:
        await migrations.upgrade(engine)
        threads = [f"thread-{i:03}" for i in range(300)]
        await write_threads(AsyncSQLAlchemySaver(engine), threads)
        await write_thread(AsyncSQLAlchemySaver(engine), "alive")
        await age(engine, threads)

        # Both sweeps start together (each worker waits, connected, for the start line) and
        # pause between batches, so that neither can finish before the other has begun.
        workers = [_worker(url, 7, 0.005, wait=True) for _ in range(2)]
        for worker in workers:
            assert worker.stdout is not None
            assert (await asyncio.to_thread(worker.stdout.readline)).strip() == "ready"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [await _finish(w) for w in workers]

        removed = [int(lines[-1].split()[1]) for lines in outputs]
        assert sum(removed) == len(threads), removed
        assert all(n > 0 for n in removed), removed  # both took part
        assert set(await rows_by_thread(engine)) == {"alive"}
    finally:
        await engine.dispose()


async def test_a_sweep_killed_halfway_leaves_whole_threads_only(new_database: Any) -> None:
    url = await new_database()
    engine = create_engine(url)
    try:
        await migrations.upgrade(engine)
        threads = [f"thread-{i:03}" for i in range(200)]
        await write_threads(AsyncSQLAlchemySaver(engine), threads)
        await age(engine)

        worker = _worker(url, 5, pause=0.01)
        assert worker.stdout is not None
        for _ in range(3):  # a few batches in, then mid-way through another
            line = await asyncio.to_thread(worker.stdout.readline)
            assert line.startswith("progress"), line
        os.kill(worker.pid, signal.SIGKILL)
        await asyncio.to_thread(worker.wait, 30)

        left = await rows_by_thread(engine)
        assert 0 < len(left) < len(threads)
        assert all(rows == WHOLE for rows in left.values()), {
            t: rows for t, rows in left.items() if rows != WHOLE
        }
        # The next sweep finishes the job.
        assert await AsyncSQLAlchemySaver(engine, ttl=TTL).asweep_ttl() == len(left)
        assert await rows_by_thread(engine) == {}
    finally:
        await engine.dispose()
