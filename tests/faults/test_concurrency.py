"""Suite 5: many writers on the same rows, and several processes migrating one fresh database.

32 tasks extend their own checkpoint chains in one thread and race on the same task writes; 32
tasks put the same store keys in shuffled order (the textbook deadlock). No caller may see an
error (a deadlock the server breaks is retried), nothing may be lost, and every batch must stay
atomic. Runs on the shared test server (embedded or ``TEST_DATABASE_URL``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from langgraph.checkpoint.base import ERROR
from langgraph.store.base import PutOp
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from langgraph_sqlalchemy import AsyncSQLAlchemySaver, AsyncSQLAlchemyStore, migrations
from langgraph_sqlalchemy.engine import create_engine
from langgraph_sqlalchemy.schema import get_tables

from .workload import make_checkpoint

TASKS = 32
T = get_tables()


@pytest.fixture
async def wide_engine(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated_url, pool_size=TASKS, max_overflow=0)
    yield engine
    await engine.dispose()


async def test_32_tasks_extend_chains_in_one_thread(wide_engine: AsyncEngine) -> None:
    saver = AsyncSQLAlchemySaver(wide_engine)
    steps = 6
    expected: dict[str, str | None] = {}  # checkpoint id -> parent id

    async def chain(task: int) -> None:
        config: Any = {"configurable": {"thread_id": "shared", "checkpoint_ns": ""}}
        previous = None
        for step in range(steps):
            checkpoint, versions = make_checkpoint(saver, step, previous, {"task": task})
            parent = config["configurable"].get("checkpoint_id")
            config = await saver.aput(config, checkpoint, {"task": task, "step": step}, versions)
            expected[checkpoint["id"]] = parent
            previous = checkpoint
            await saver.aput_writes(config, [("out", task), ("log", step)], f"task-{task}")

    await asyncio.wait_for(asyncio.gather(*(chain(t) for t in range(TASKS))), 120)

    listed = [c async for c in saver.alist({"configurable": {"thread_id": "shared"}})]
    assert len(listed) == TASKS * steps == len(expected)
    ids = [c.checkpoint["id"] for c in listed]
    assert ids == sorted(ids, reverse=True), "alist is not newest first"
    for found in listed:
        parent_config = found.parent_config
        parent = parent_config["configurable"]["checkpoint_id"] if parent_config else None
        assert parent == expected[found.checkpoint["id"]]
        assert parent is None or parent in expected, "a parent that does not exist"
        task = found.metadata["task"]
        assert found.pending_writes == [
            (f"task-{task}", "out", task), (f"task-{task}", "log", found.metadata["step"])
        ]
    # Every chain is complete: following parents from each leaf reaches a root in `steps` hops.
    children = {p for p in expected.values() if p is not None}
    leaves = [c for c in expected if c not in children]
    assert len(leaves) == TASKS
    for leaf in leaves:
        hops, node = 0, leaf
        while node is not None:
            node, hops = expected[node], hops + 1
        assert hops == steps


async def test_32_tasks_race_on_the_same_task_writes(wide_engine: AsyncEngine) -> None:
    saver = AsyncSQLAlchemySaver(wide_engine)
    checkpoint, versions = make_checkpoint(saver, 0, None, {"x": 1})
    config = await saver.aput(
        {"configurable": {"thread_id": "race", "checkpoint_ns": ""}}, checkpoint, {}, versions
    )
    writes = [("a", 0), ("b", 0), ("c", 0)]

    async def regular(task: int) -> None:
        await saver.aput_writes(config, [(c, task) for c, _ in writes], "same-task")

    async def special(task: int) -> None:
        await saver.aput_writes(config, [(ERROR, task)], "error-task")

    await asyncio.wait_for(
        asyncio.gather(*(regular(t) for t in range(TASKS)), *(special(t) for t in range(TASKS))),
        120,
    )
    found = await saver.aget_tuple(config)
    assert found is not None
    same = [(c, v) for t, c, v in found.pending_writes or [] if t == "same-task"]
    assert [c for c, _ in same] == ["a", "b", "c"], "a lost or duplicated write row"
    # First wins, and one call's rows commit together: all three come from the same task.
    assert len({v for _, v in same}) == 1, f"rows of different calls mixed: {same}"
    errors = [v for t, c, v in found.pending_writes or [] if t == "error-task"]
    assert len(errors) == 1 and errors[0] in range(TASKS)


async def test_32_tasks_put_the_same_keys_in_shuffled_order(
    wide_engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="langgraph_sqlalchemy")
    store = AsyncSQLAlchemyStore(wide_engine)
    keys = [f"k{i:02d}" for i in range(20)]
    rounds = 2

    async def putter(task: int) -> None:
        rng = random.Random(task)
        for round_ in range(rounds):
            order = keys[:]
            rng.shuffle(order)
            await store.abatch(
                [PutOp(("hot",), k, {"task": task, "round": round_}) for k in order]
            )

    started = time.monotonic()
    # Sorted batches finish in about 2 s; unsorted ones deadlock in a pile that the server
    # breaks one victim per deadlock_timeout (1 s).
    await asyncio.wait_for(asyncio.gather(*(putter(t) for t in range(TASKS))), 60)
    elapsed = time.monotonic() - started
    deadlocks = [r for r in caplog.records if "40P01" in r.getMessage() or "deadlock" in
                 r.getMessage().lower()]
    items = await store.asearch(("hot",), limit=100)
    print(
        f"store race: {TASKS} tasks x {rounds} batches of {len(keys)} keys in {elapsed:.2f}s, "
        f"{len(deadlocks)} deadlocks retried, {len(items)} rows"
    )
    assert sorted(i.key for i in items) == keys
    # The batch that committed last wrote every key; a batch split across transactions (or a
    # half-applied one) would leave a mix of writers.
    assert len({(i.value["task"], i.value["round"]) for i in items}) == 1


SETUP_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, time
    from langgraph_sqlalchemy import AsyncSQLAlchemySaver, AsyncSQLAlchemyStore
    from langgraph_sqlalchemy.engine import create_engine

    async def main(url: str, start_at: float) -> None:
        engine = create_engine(url)
        try:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            await AsyncSQLAlchemySaver(engine).setup()
            await AsyncSQLAlchemyStore(engine).setup()
        finally:
            await engine.dispose()

    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
    """
)


@pytest.mark.parametrize("processes", [2, pytest.param(4, marks=pytest.mark.slow)])
async def test_processes_run_setup_at_once_on_a_fresh_database(
    fresh_database_url: str, processes: int
) -> None:
    start_at = time.time() + 3.0  # after every interpreter has imported the library
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", SETUP_SCRIPT, fresh_database_url, str(start_at),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    outputs = [await asyncio.wait_for(p.communicate(), 120) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()[-3000:]
    engine = create_engine(fresh_database_url)
    try:
        assert await migrations.is_at_head(engine)
        async with engine.connect() as conn:
            versions = (await conn.execute(select(T.checkpoint_migrations.c.v))).scalars().all()
            store_versions = (await conn.execute(select(T.store_migrations.c.v))).scalars().all()
            assert (await conn.execute(select(func.count()).select_from(T.store))).scalar() == 0
        assert sorted(versions) == list(range(len(versions))) and len(versions) == 10
        assert sorted(store_versions) == list(range(len(store_versions)))
        saver = AsyncSQLAlchemySaver(engine)
        checkpoint, new_versions = make_checkpoint(saver, 1, None, {"ok": True})
        saved = await saver.aput(
            {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, checkpoint, {}, new_versions
        )
        assert await saver.aget_tuple(saved) is not None
    finally:
        await engine.dispose()
