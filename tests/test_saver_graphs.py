"""Real LangGraph graphs on AsyncSQLAlchemySaver behave exactly as on LangGraph's InMemorySaver.

Every scenario of ``tests/graphs.py`` (interrupts with a sibling's pending writes, Send fan-out,
subgraphs three levels deep, update_state with ``as_node``, a failing node fixed and resumed, a
thread longer than one ``alist`` page, forks from old checkpoints, DeltaChannel) runs once on the
reference ``InMemorySaver`` and once on our saver (on the engine and on a host connection): the
state after every call and the whole history of every checkpoint namespace must be the same,
ids and timestamps aside. Also: the sync graph API from a worker thread, ``acopy_thread`` of a
paused thread, values upstream cannot store, and 24 threads at once through one saver on a
10-connection pool.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from langgraph.types import StateSnapshot
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from graphs import (
    FLOATS,
    ODD_VALUES,
    SCENARIOS,
    Scenario,
    compile_scenario,
    exact,
    namespace_histories,
    normal_history,
    normal_snapshot,
    normalized_history,
    normalized_state,
    run_steps,
    thread_config,
)
from langgraph_sqlalchemy import AsyncSQLAlchemySaver
from langgraph_sqlalchemy.engine import create_engine
from langgraph_sqlalchemy.schema import get_tables

TABLES = get_tables(None)

# What each scenario must end with (so that two savers agreeing on nothing cannot pass).
FINAL_VALUES: dict[str, dict[str, Any]] = {
    "interrupt": {
        "steps": ["input", "start", "ask_name", "side_work", "ask_color", "done:ada:teal"],
        "name": "ada",
        "color": "teal",
    },
    "send": {
        "topics": ["extra"],
        "results": ["A", "B", "C", "D", "EXTRA"],
        "summary": "A+B+C+D+EXTRA",
    },
    "subgraph": {
        "log": [
            *["input", "parent:before"],
            *["input", "parent:before", "child:before"],
            *["input", "parent:before", "child:before", "grandchild:forty-two"],
            *["child:after:forty-two", "parent:after"],
        ],
        "answer": "forty-two",
    },
    "update_state": {"trail": ["input", "a(1)", "patched", "as-b", "c(4)"], "note": "edited"},
    "error": {"log": ["input", "steady(1)", "flaky", "end(3)"], "fixed": True},
    "long": {"n": 110, "seen": "visit@105+noted"},
    "fork": {"trail": ["input", "a(1)", "b(2)", "c(3)"], "note": "fork"},
}


@pytest.fixture
async def saver(engine: AsyncEngine) -> AsyncSQLAlchemySaver:
    # Made on the running loop, as an async app does: the loop the sync twins hand work to.
    return AsyncSQLAlchemySaver(engine)


@pytest.fixture(params=["engine", "host_connection"])
async def bound_saver(
    request: pytest.FixtureRequest, engine: AsyncEngine
) -> AsyncIterator[AsyncSQLAlchemySaver]:
    """The saver on the shared engine, and on a host connection (work in its transaction)."""
    if request.param == "engine":
        yield AsyncSQLAlchemySaver(engine)
        return
    async with engine.connect() as conn:
        yield AsyncSQLAlchemySaver(conn)


def _new_thread() -> str:
    return f"graphs-{uuid.uuid4().hex}"


async def _run_everything(
    scenario: Scenario, checkpointer: BaseCheckpointSaver[Any], thread_id: str
) -> dict[str, Any]:
    """Observations of one full run: state after each step and every namespace's history."""
    after_each_step = await run_steps(scenario, checkpointer, thread_id)
    graph = compile_scenario(scenario, checkpointer)
    return {
        "after_each_step": after_each_step,
        "histories": await namespace_histories(graph, checkpointer, thread_id),
    }


async def _reference(scenario: Scenario) -> dict[str, Any]:
    return await _run_everything(scenario, InMemorySaver(), _new_thread())


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_history_matches_in_memory_saver(
    name: str, bound_saver: AsyncSQLAlchemySaver
) -> None:
    saver = bound_saver
    scenario = SCENARIOS[name]
    expected = await _reference(scenario)
    actual = await _run_everything(scenario, saver, _new_thread())

    assert actual["after_each_step"] == expected["after_each_step"]
    assert actual["histories"].keys() == expected["histories"].keys()
    for ns, history in expected["histories"].items():
        assert actual["histories"][ns] == history, f"history of namespace {ns!r} differs"
    final = actual["after_each_step"][-1]
    assert final["next"] == ()
    if name in FINAL_VALUES:
        assert final["values"] == FINAL_VALUES[name]
    assert len(actual["histories"][""]) >= len(scenario.steps) + 2


async def test_interrupt_waits_with_sibling_writes_and_resumes(
    saver: AsyncSQLAlchemySaver,
) -> None:
    scenario = SCENARIOS["interrupt"]
    thread_id = _new_thread()
    graph = compile_scenario(scenario, saver)
    config = thread_config(thread_id)

    await scenario.steps[0](graph, config)
    waiting = await graph.aget_state(config)
    assert waiting.next == ("ask_name",)
    assert [i.value for i in waiting.interrupts] == [
        {"question": "name?", "seen": ["input", "start"]}
    ]
    # The sibling that finished in the interrupted superstep is stored as a pending write and
    # is not run again on resume.
    latest = await saver.aget_tuple(config)
    assert latest is not None
    channels = sorted(w[1] for w in latest.pending_writes or [])
    assert channels == ["__interrupt__", "join:ask_name+side_work:ask_color", "steps"]

    await scenario.steps[1](graph, config)
    await scenario.steps[2](graph, config)
    final = await graph.aget_state(config)
    assert final.values == FINAL_VALUES["interrupt"]
    assert final.values["steps"].count("side_work") == 1


async def test_subgraph_checkpoints_live_in_their_namespaces(
    saver: AsyncSQLAlchemySaver, engine: AsyncEngine
) -> None:
    scenario = SCENARIOS["subgraph"]
    thread_id = _new_thread()
    graph = compile_scenario(scenario, saver)
    config = thread_config(thread_id)
    reference = await run_steps(scenario, InMemorySaver(), _new_thread(), 0, 1)

    await scenario.steps[0](graph, config)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(TABLES.checkpoints.c.checkpoint_ns, func.count())
                .where(TABLES.checkpoints.c.thread_id == thread_id)
                .group_by(TABLES.checkpoints.c.checkpoint_ns)
            )
        ).all()
        nested_writes = await conn.scalar(
            select(func.count())
            .select_from(TABLES.checkpoint_writes)
            .where(
                TABLES.checkpoint_writes.c.thread_id == thread_id,
                TABLES.checkpoint_writes.c.checkpoint_ns.contains("|grandchild:"),
            )
        )
    by_shape = {"|".join(p.split(":")[0] for p in ns.split("|")): n for ns, n in rows}
    assert by_shape == {"": 2 + 1, "child": 3, "child|grandchild": 2}
    assert nested_writes, "the grandchild's interrupt is a pending write in its own namespace"

    waiting = await graph.aget_state(config, subgraphs=True)
    assert await normalized_state(graph, config) == reference[0]
    child = waiting.tasks[0].state
    assert isinstance(child, StateSnapshot)
    grandchild = child.tasks[0].state
    assert isinstance(grandchild, StateSnapshot)
    assert grandchild.next == ("ask",)
    assert [i.value for i in grandchild.interrupts] == ["grandchild question"]
    assert grandchild.config["configurable"]["checkpoint_ns"].startswith("child:")

    # A subgraph's own state is readable with its namespace in the config.
    own = await graph.aget_state(grandchild.config)
    assert own.values == grandchild.values
    assert own.next == ("ask",)

    await scenario.steps[1](graph, config)
    assert (await graph.aget_state(config)).values == FINAL_VALUES["subgraph"]


async def test_update_state_and_history_filters_match(saver: AsyncSQLAlchemySaver) -> None:
    scenario = SCENARIOS["update_state"]
    memory = InMemorySaver()
    threads = {"memory": _new_thread(), "ours": _new_thread()}
    await run_steps(scenario, memory, threads["memory"])
    await run_steps(scenario, saver, threads["ours"])
    graphs = {
        "memory": compile_scenario(scenario, memory),
        "ours": compile_scenario(scenario, saver),
    }

    async def views(which: str) -> dict[str, Any]:
        graph, config = graphs[which], thread_config(threads[which])
        history = [s async for s in graph.aget_state_history(config)]
        middle: RunnableConfig = history[3].config
        return {
            "updates": normal_history(
                [s async for s in graph.aget_state_history(config, filter={"source": "update"})]
            ),
            "limit": normal_history([s async for s in graph.aget_state_history(config, limit=2)]),
            "before": normal_history(
                [s async for s in graph.aget_state_history(config, before=middle)]
            ),
            "at_middle": await normalized_state(graph, middle),
        }

    expected, actual = await views("memory"), await views("ours")
    assert actual == expected
    assert [s["metadata"]["step"] for s in actual["updates"]] == [3, 2]
    assert actual["updates"][0]["next"] == ("c",)  # as_node="b" moved the thread past "b"
    assert len(actual["limit"]) == 2


async def test_fork_from_an_old_checkpoint(saver: AsyncSQLAlchemySaver) -> None:
    scenario = SCENARIOS["fork"]
    thread_id = _new_thread()
    await run_steps(scenario, saver, thread_id)
    graph = compile_scenario(scenario, saver)
    history = await normalized_history(graph, thread_config(thread_id))

    # Three runs branch off the checkpoint before "b": the original, the replay, the edit.
    parents = [s["parent"] for s in history]
    branch_point = max(set(parents), key=parents.count)
    assert parents.count(branch_point) == 3
    assert history[branch_point]["next"] == ("b",)
    finals = [s["values"] for s in history if s["next"] == ()]
    assert finals == [
        {"trail": ["input", "a(1)", "b(2)", "c(3)"], "note": "fork"},
        {"trail": ["input", "a(1)", "b(2)", "c(3)"]},
        {"trail": ["input", "a(1)", "b(2)", "c(3)"]},
    ]
    reference = await _reference(scenario)
    assert history == reference["histories"][""]


async def test_values_upstream_cannot_store_round_trip(saver: AsyncSQLAlchemySaver) -> None:
    """NUL in strings and NaN/Infinity are stored losslessly (SPEC §4 deliberate difference)."""
    expected = await _reference(ODD_VALUES)
    actual = await _run_everything(ODD_VALUES, saver, _new_thread())
    assert exact(actual) == exact(expected)
    final = actual["after_each_step"][-1]["values"]
    assert final["text"] == "edited\x00again"
    assert final["number"] == float("-inf")
    assert math.isnan(final["numbers"][0])
    assert final["trail"] == ["first\x00"]


async def test_finite_floats_read_back_as_the_same_floats(saver: AsyncSQLAlchemySaver) -> None:
    """A float channel value reads back as that float: not an int, not with its sign lost."""
    expected = await _reference(FLOATS)
    actual = await _run_everything(FLOATS, saver, _new_thread())
    assert exact(expected["after_each_step"][-1]["values"]) == exact(
        {"plain": 1.5, "big": 1e16, "huge": 2.5e300, "negative_zero": -0.0, "tiny": 5e-324}
    )
    assert exact(actual["after_each_step"]) == exact(expected["after_each_step"])
    assert exact(actual["histories"]) == exact(expected["histories"])


SYNC_SCENARIOS = [
    name for name, s in SCENARIOS.items() if all(hasattr(step, "sync") for step in s.steps)
]


@pytest.mark.parametrize("name", SYNC_SCENARIOS)
async def test_sync_graph_api_from_a_worker_thread(name: str, saver: AsyncSQLAlchemySaver) -> None:
    """graph.invoke / update_state / get_state_history in a worker thread use the sync twins."""
    scenario = SCENARIOS[name]
    expected = await _reference(scenario)
    graph = compile_scenario(scenario, saver)
    config = thread_config(_new_thread())

    def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        observed = []
        for step in scenario.steps:
            step.sync(graph, config)  # type: ignore[attr-defined]
            observed.append(normal_snapshot(graph.get_state(config, subgraphs=True)))
        return observed, normal_history(list(graph.get_state_history(config)))

    after_each_step, history = await asyncio.to_thread(run)
    assert after_each_step == expected["after_each_step"]
    assert history == expected["histories"][""]


@pytest.mark.parametrize("name", ["interrupt", "subgraph", "error", "delta"])
async def test_copied_thread_continues_like_the_original(
    name: str, saver: AsyncSQLAlchemySaver
) -> None:
    """acopy_thread mid-run (every namespace, pending writes, delta ancestry), then both go on."""
    scenario = SCENARIOS[name]
    # Resumable scenarios are copied while paused; the delta thread is copied when finished
    # and both copies run its last step once more.
    cut = scenario.resume_at if scenario.resume_at is not None else len(scenario.steps)
    original, copy = _new_thread(), _new_thread()
    await run_steps(scenario, saver, original, 0, cut)
    await saver.acopy_thread(original, copy)

    graph = compile_scenario(scenario, saver)
    assert await namespace_histories(graph, saver, copy) == await namespace_histories(
        graph, saver, original
    )
    rest = scenario.steps[cut:] or scenario.steps[-1:]
    after = {}
    for thread_id in (original, copy):
        after[thread_id] = []
        for step in rest:
            await step(graph, thread_config(thread_id))
            after[thread_id].append(await normalized_state(graph, thread_config(thread_id)))
    assert after[copy] == after[original]
    assert after[copy][-1]["next"] == ()
    assert await namespace_histories(graph, saver, copy) == await namespace_histories(
        graph, saver, original
    )


def _delta_view(history: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for channel, entry in history.items():
        seed = entry.get("seed", "<absent>")
        out[channel] = {
            "writes": [(w[1], w[2]) for w in entry["writes"]],
            "seed": ("snapshot", seed.value) if isinstance(seed, _DeltaSnapshot) else seed,
        }
    return out


async def test_delta_channel_history_matches(bound_saver: AsyncSQLAlchemySaver) -> None:
    saver = bound_saver
    scenario = SCENARIOS["delta"]
    memory = InMemorySaver()
    threads = {"memory": _new_thread(), "ours": _new_thread()}
    await run_steps(scenario, memory, threads["memory"])
    await run_steps(scenario, saver, threads["ours"])

    async def per_checkpoint(checkpointer: BaseCheckpointSaver[Any], thread_id: str) -> list[Any]:
        # Other calls made while an alist is being consumed (upstream's saver deadlocks here,
        # its lock being held by the open alist).
        out = []
        async for tup in checkpointer.alist(thread_config(thread_id)):
            out.append(
                _delta_view(
                    await checkpointer.aget_delta_channel_history(
                        config=tup.config, channels=["items", "rounds"]
                    )
                )
            )
        return out

    expected = await per_checkpoint(memory, threads["memory"])
    actual = await asyncio.wait_for(per_checkpoint(saver, threads["ours"]), timeout=60)
    assert actual == expected
    # The scenario exercises both sides of the contract: snapshots and replayed deltas.
    assert any(v["items"]["seed"][0] == "snapshot" for v in actual if v["items"]["seed"])
    assert any(len(v["items"]["writes"]) >= 4 for v in actual)
    graph = compile_scenario(scenario, saver)
    final = await graph.aget_state(thread_config(threads["ours"]))
    assert len(final.values["items"]) == 40
    assert final.values["items"][-4:] == ["r9:36", "add90", "add91", "add92"]


async def test_concurrent_threads_through_one_saver_on_a_small_pool(database_url: str) -> None:
    """24 threads at once through one saver whose engine has 10 connections and no overflow."""
    names = list(SCENARIOS)
    references = {name: await _reference(SCENARIOS[name]) for name in names}
    small_engine = create_engine(database_url, pool_size=10, max_overflow=0)
    try:
        saver = AsyncSQLAlchemySaver(small_engine)
        threads = [(names[i % len(names)], f"concurrent-{i}-{uuid.uuid4().hex}") for i in range(24)]
        results = await asyncio.gather(
            *(_run_everything(SCENARIOS[name], saver, thread) for name, thread in threads),
            return_exceptions=True,
        )
    finally:
        await small_engine.dispose()
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    for (name, thread), result in zip(threads, results, strict=True):
        assert result == references[name], f"thread {thread} ({name}) differs from InMemorySaver"
