"""SQLAlchemySaver: the checkpoint saver for sync code, driven as sync code drives it.

Every test body runs on the main thread with no event loop, as a script, a Flask view or a
Streamlit app does: real graphs through ``invoke``/``stream``/``get_state``/
``get_state_history``/``update_state`` (every scenario of ``tests/graphs.py``, compared with
LangGraph's ``InMemorySaver``), eight threads sharing one saver, the async API from other event
loops, and what is left after exit: no thread (``threading.enumerate``) and no server connection
(``pg_stat_activity``).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.types import Command, Interrupt
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from checkpoint_factory import checkpoint
from graphs import (
    SCENARIOS,
    build_interrupt_graph,
    build_linear_graph,
    build_map_reduce_graph,
    compile_scenario,
    namespace_histories,
    namespace_histories_sync,
    run_steps,
    run_steps_sync,
    thread_config,
)
from langgraph_sqlalchemy import (
    AsyncSQLAlchemySaver,
    InvalidInputError,
    SQLAlchemySaver,
    SQLAlchemyStore,
)
from langgraph_sqlalchemy.engine import create_engine
from leaks import (
    application_name,
    assert_nothing_left,
    eventually,
    new_threads,
    server_connections,
    tagged,
)


@pytest.fixture
def url(engine: AsyncEngine, database_url: str) -> str:
    """The session database (migrated), its tables emptied by the ``engine`` fixture."""
    return database_url


@pytest.fixture
def saver(url: str) -> Iterator[SQLAlchemySaver]:
    with SQLAlchemySaver.from_conn_string(url) as saver:
        yield saver


def _thread() -> str:
    return f"sync-{uuid.uuid4().hex}"


def _everything(scenario_name: str, checkpointer: Any, thread_id: str) -> dict[str, Any]:
    scenario = SCENARIOS[scenario_name]
    after_each_step = run_steps_sync(scenario, checkpointer, thread_id)
    graph = compile_scenario(scenario, checkpointer)
    return {
        "after_each_step": after_each_step,
        "histories": namespace_histories_sync(graph, checkpointer, thread_id),
    }


def _plain(value: Any) -> Any:
    """Stream chunks without interrupt ids (derived from time-based task ids)."""
    if isinstance(value, Interrupt):
        return ("interrupt", _plain(value.value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --- real graphs, driven synchronously ------------------------------------------------------------


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_graphs_driven_synchronously_match_in_memory_saver(
    name: str, saver: SQLAlchemySaver
) -> None:
    reference = _everything(name, InMemorySaver(), _thread())
    actual = _everything(name, saver, _thread())
    assert actual == reference
    assert reference["after_each_step"][-1]["values"]  # the comparison is about something


def test_interrupt_and_resume_with_invoke_and_stream(saver: SQLAlchemySaver) -> None:
    graph = build_interrupt_graph().compile(checkpointer=saver)
    config = thread_config(_thread())

    first = graph.invoke({"steps": ["input"]}, config)
    assert [i.value for i in first["__interrupt__"]] == [
        {"question": "name?", "seen": ["input", "start"]}
    ]
    state = graph.get_state(config)
    assert state.next == ("ask_name",)
    assert [i.value for i in state.interrupts] == [
        {"question": "name?", "seen": ["input", "start"]}
    ]

    # Resuming through stream, compared chunk by chunk with the reference saver.
    reference_graph = build_interrupt_graph().compile(checkpointer=InMemorySaver())
    reference_config = thread_config(_thread())
    reference_graph.invoke({"steps": ["input"]}, reference_config)
    for resume in ("ada", "teal"):
        chunks = graph.stream(Command(resume=resume), config, stream_mode=["updates", "values"])
        expected = reference_graph.stream(
            Command(resume=resume), reference_config, stream_mode=["updates", "values"]
        )
        assert _plain(list(chunks)) == _plain(list(expected))

    final = graph.get_state(config)
    assert final.next == ()
    assert final.values["steps"][-1] == "done:ada:teal"
    history = list(graph.get_state_history(config))
    assert len(history) == len(list(saver.list(config))) == 6
    assert [s.config["configurable"]["checkpoint_id"] for s in history] == sorted(
        (s.config["configurable"]["checkpoint_id"] for s in history), reverse=True
    )


def test_send_fan_out_and_subgraph_state(saver: SQLAlchemySaver) -> None:
    graph = build_map_reduce_graph().compile(checkpointer=saver)
    config = thread_config(_thread())
    assert graph.invoke({"topics": ["b", " a"]}, config)["summary"] == "A+B"

    family = compile_scenario(SCENARIOS["subgraph"], saver)
    config = thread_config(_thread())
    family.invoke({"log": ["input"]}, config)
    child = family.get_state(config, subgraphs=True).tasks[0].state
    assert child is not None and not isinstance(child, dict)
    grandchild = child.tasks[0].state
    assert grandchild is not None and not isinstance(grandchild, dict)
    assert [i.value for i in grandchild.interrupts] == ["grandchild question"]
    # Each subgraph level checkpoints in a namespace of its own, all listed for the thread.
    namespaces = {t.config["configurable"]["checkpoint_ns"] for t in saver.list(config)}
    assert len(namespaces) == 3
    assert family.invoke(Command(resume="42"), config)["answer"] == "42"


def test_update_state_and_time_travel(saver: SQLAlchemySaver) -> None:
    graph = build_linear_graph().compile(checkpointer=saver)
    config = thread_config(_thread())
    graph.invoke({"trail": ["input"]}, config, interrupt_before=["b"])
    graph.update_state(config, {"note": "edited"})
    assert graph.invoke(None, config) == {
        "trail": ["input", "a(1)", "b(2)", "c(3)"],
        "note": "edited",
    }
    first = next(s for s in graph.get_state_history(config) if s.next == ("a",))
    replayed = graph.invoke(None, first.config)
    assert replayed["trail"] == ["input", "a(1)", "b(2)", "c(3)"]


# --- threads ----------------------------------------------------------------------------------


def test_eight_threads_share_one_saver_and_leave_nothing_behind(url: str) -> None:
    reference = {
        name: _everything(name, InMemorySaver(), _thread()) for name in ("interrupt", "send")
    }
    name = application_name()
    before = set(threading.enumerate())
    results: dict[int, dict[str, Any]] = {}
    errors: list[BaseException] = []
    # A pool smaller than the number of threads: calls queue for connections.
    with SQLAlchemySaver.from_conn_string(
        url, pool_config={"max_size": 3}, **tagged(name)
    ) as saver:
        start = threading.Barrier(8)

        def work(i: int) -> None:
            try:
                start.wait()
                scenario = ("interrupt", "send")[i % 2]
                results[i] = {"scenario": scenario, **_everything(scenario, saver, _thread())}
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=300)
        assert errors == []
        assert sorted(results) == list(range(8))
        for observed in results.values():
            scenario = observed.pop("scenario")
            assert observed == reference[scenario]
        connections = server_connections(url, name)
        assert 1 <= connections <= 3
    assert_nothing_left(url, name, before)


def test_many_threads_calling_the_saver_directly(saver: SQLAlchemySaver) -> None:
    thread_id = _thread()

    def write(i: int) -> None:
        parent: RunnableConfig = {
            "configurable": {"thread_id": thread_id, "checkpoint_ns": f"n{i}"}
        }
        for _ in range(5):
            cp = checkpoint({"i": i})
            parent = saver.put(parent, cp, {"step": i}, {})  # type: ignore[typeddict-item]
            saver.put_writes(parent, [("out", [i])], f"task-{i}")

    workers = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    listed = list(saver.list(thread_config(thread_id)))
    assert len(listed) == 40
    for i in range(8):
        tip = saver.get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": f"n{i}"}})
        assert tip is not None
        assert tip.checkpoint["channel_values"] == {"i": i}
        assert tip.pending_writes == [(f"task-{i}", "out", [i])]


# --- lifetime ---------------------------------------------------------------------------------


def test_close_stops_the_thread_and_closes_every_connection(url: str) -> None:
    name = application_name()
    before = set(threading.enumerate())
    saver = SQLAlchemySaver(url, **tagged(name))
    graph = build_linear_graph().compile(checkpointer=saver)
    graph.invoke({"trail": []}, thread_config(_thread()))
    assert new_threads(before) == ["SQLAlchemySaver-event-loop"]
    assert server_connections(url, name) >= 1
    saver.close()
    assert_nothing_left(url, name, before)
    saver.close()  # idempotent

    with pytest.raises(RuntimeError, match=r"SQLAlchemySaver.get_tuple\(\).*closed"):
        saver.get_tuple(thread_config(_thread()))
    with pytest.raises(RuntimeError, match="closed"):
        next(iter(saver.list(None)))
    with pytest.raises(RuntimeError, match="closed"):
        graph.invoke({"trail": []}, thread_config(_thread()))

    async def from_a_loop() -> None:
        await saver.aget_tuple(thread_config(_thread()))

    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(from_a_loop())
    with pytest.raises(RuntimeError, match="SQLAlchemySaver is closed"), saver:
        pass  # entering a closed saver fails at once, not at its first call


def test_a_saver_nobody_holds_is_closed_by_the_garbage_collector(url: str) -> None:
    name = application_name()
    before = set(threading.enumerate())
    # compile() may hand the graph a clone of the saver (with_allowlist); the clone alone
    # keeps the engine and the loop thread alive.
    graph = build_linear_graph().compile(checkpointer=SQLAlchemySaver(url, **tagged(name)))
    clone = SQLAlchemySaver(url, **tagged(name)).with_allowlist([("tests", "Marker")])
    gc.collect()
    config = thread_config(_thread())
    assert graph.invoke({"trail": []}, config)["trail"] == ["a(0)", "b(1)", "c(2)"]
    assert clone.get_tuple(config) is not None
    del graph, clone
    gc.collect()
    assert_nothing_left(url, name, before)


_FORGETFUL_SCRIPT = """
import atexit, threading

# Registered first, so it runs last: after the library's own exit hooks.
atexit.register(lambda: print("left at exit:", sorted(
    t.name for t in threading.enumerate() if t is not threading.main_thread())))

import os, sys, uuid
sys.path.insert(0, {tests!r})
from graphs import build_linear_graph
from langgraph_sqlalchemy import SQLAlchemySaver, SQLAlchemyStore

saver = SQLAlchemySaver(os.environ["DATABASE_URL"])
store = SQLAlchemyStore(os.environ["DATABASE_URL"], ttl={{"sweep_interval_minutes": 1}})
store.start_ttl_sweeper()
graph = build_linear_graph().compile(checkpointer=saver, store=store)
print(graph.invoke({{"trail": []}}, {{"configurable": {{"thread_id": uuid.uuid4().hex}}}})["trail"])
"""


def test_a_script_that_never_closes_exits_and_closes_at_exit(url: str, tmp_path: Path) -> None:
    script = tmp_path / "forgetful.py"
    script.write_text(_FORGETFUL_SCRIPT.format(tests=str(Path(__file__).parent)))
    proc = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["['a(0)', 'b(1)', 'c(2)']", "left at exit: []"]
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr


@dataclasses.dataclass
class Marker:
    label: str


def test_with_allowlist_gives_a_clone_with_its_own_serializer_on_the_same_engine(
    url: str,
) -> None:
    # Strict msgpack: only allowlisted types come back as themselves. compile() hands the
    # graph such a clone when LANGGRAPH_STRICT_MSGPACK is on.
    strict = JsonPlusSerializer(allowed_msgpack_modules=None)
    with SQLAlchemySaver.from_conn_string(url, serde=strict) as saver:
        clone = saver.with_allowlist([(Marker.__module__, "Marker")])
        assert isinstance(clone, SQLAlchemySaver) and clone is not saver
        config: RunnableConfig = {"configurable": {"thread_id": _thread(), "checkpoint_ns": ""}}
        cp = checkpoint({"m": Marker("x")})
        stored = clone.put(config, cp, {}, cp["channel_versions"])  # type: ignore[typeddict-item]
        by_clone = clone.get_tuple(stored)
        by_saver = saver.get_tuple(stored)
        assert by_clone is not None and by_saver is not None
        assert by_clone.checkpoint["channel_values"]["m"] == Marker("x")
        assert not isinstance(by_saver.checkpoint["channel_values"]["m"], Marker)
    with pytest.raises(RuntimeError, match="closed"):
        clone.get_tuple(stored)  # one engine, one loop thread: closed with the saver


def test_a_forked_child_gets_a_clear_error(saver: SQLAlchemySaver) -> None:
    config = thread_config(_thread())
    build_linear_graph().compile(checkpointer=saver).invoke({"trail": []}, config)
    context = multiprocessing.get_context("fork")
    parent_end, child_end = context.Pipe()

    def in_child() -> None:
        try:
            saver.get_tuple(config)
        except RuntimeError as exc:
            child_end.send(str(exc))
        else:
            child_end.send("no error")
        saver.close()  # must return at once: the loop thread is the parent's
        child_end.send("closed")

    with warnings.catch_warnings():
        # Python 3.12+ warns when a process with threads forks: that is the point here.
        warnings.simplefilter("ignore", DeprecationWarning)
        child = context.Process(target=in_child)
        child.start()
    assert parent_end.poll(60)
    message = parent_end.recv()
    assert "before a fork" in message and "in each process" in message
    assert parent_end.poll(60) and parent_end.recv() == "closed"
    child.join(60)
    assert child.exitcode == 0
    assert saver.get_tuple(config) is not None  # the parent's saver is untouched


# --- the async API of the sync class ---------------------------------------------------------


def test_ainvoke_from_another_event_loop(saver: SQLAlchemySaver) -> None:
    scenario = SCENARIOS["subgraph"]

    async def main() -> tuple[Any, Any]:
        thread_id = _thread()
        steps = await run_steps(scenario, saver, thread_id)
        graph = compile_scenario(scenario, saver)
        histories = await namespace_histories(graph, saver, thread_id)
        # An abandoned alist releases what it holds; the saver keeps working.
        async for _ in saver.alist(None):
            break
        return steps, histories

    async def reference() -> tuple[Any, Any]:
        memory, thread_id = InMemorySaver(), _thread()
        steps = await run_steps(scenario, memory, thread_id)
        graph = compile_scenario(scenario, memory)
        return steps, await namespace_histories(graph, memory, thread_id)

    assert asyncio.run(main()) == asyncio.run(reference())
    # and again on a second loop: nothing of the first one is kept
    assert asyncio.run(main()) == asyncio.run(reference())


async def test_inside_a_running_event_loop_as_in_a_notebook(saver: SQLAlchemySaver) -> None:
    # Jupyter runs cells on its own event loop: sync calls block it a moment, async ones await.
    graph = build_interrupt_graph().compile(checkpointer=saver)
    config = thread_config(_thread())
    graph.invoke({"steps": ["input"]}, config)
    await graph.ainvoke(Command(resume="ada"), config)
    graph.invoke(Command(resume="teal"), config)
    state = await graph.aget_state(config)
    assert state.values["steps"][-1] == "done:ada:teal"
    assert len([s async for s in graph.aget_state_history(config)]) == 6


def test_cancelling_an_awaited_call_cancels_it_on_the_saver_loop(url: str) -> None:
    name = application_name()
    thread_id = _thread()
    cp = checkpoint({"a": 1})
    config: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    saver = SQLAlchemySaver(url, **tagged(name))
    closer = threading.Thread(target=saver.close)
    with psycopg.connect(url) as locker:
        # An uncommitted row with the same primary key: the saver's INSERT waits for it.
        locker.execute(
            "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, checkpoint) "
            "VALUES (%s, '', %s, '{}')",
            (thread_id, cp["id"]),
        )

        async def main() -> None:
            task = asyncio.ensure_future(saver.aput(config, cp, {}, {"a": 1}))  # type: ignore[typeddict-item]
            for _ in range(500):  # until the call's statement waits on the lock
                if _waiting_on_a_lock(url, name):
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail("the call never waited on the lock")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        # Still holding the row: had the call gone on waiting on the saver's loop, close()
        # (which waits for calls in progress) could not finish.
        closer.start()
        closer.join(timeout=60)
        assert not closer.is_alive()
        locker.rollback()
    closer.join()
    eventually(lambda: server_connections(url, name) == 0, "the saver's connections closed")


def test_ctrl_c_while_a_sync_call_waits_cancels_the_call(url: str) -> None:
    assert threading.current_thread() is threading.main_thread()

    class CtrlC(Exception):
        """Raised by the SIGINT handler (not KeyboardInterrupt, which would end pytest)."""

    def on_sigint(signum: int, frame: Any) -> None:
        raise CtrlC

    name = application_name()
    thread_id = _thread()
    cp = checkpoint({"a": 1})
    config: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    saver = SQLAlchemySaver(url, **tagged(name))
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with psycopg.connect(url) as locker:
            locker.execute(
                "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, checkpoint) "
                "VALUES (%s, '', %s, '{}')",
                (thread_id, cp["id"]),
            )

            def press_ctrl_c() -> None:
                try:
                    eventually(lambda: _waiting_on_a_lock(url, name), "the put waits")
                finally:
                    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

            presser = threading.Thread(target=press_ctrl_c)
            presser.start()
            with pytest.raises(CtrlC):
                saver.put(config, cp, {}, {"a": 1})  # type: ignore[typeddict-item]
            presser.join()
            # The row is still locked: close() can finish only if the put was cancelled.
            closer = threading.Thread(target=saver.close)
            closer.start()
            closer.join(timeout=60)
            assert not closer.is_alive()
            locker.rollback()
    finally:
        signal.signal(signal.SIGINT, previous)


# --- keywords of the async saver, passed through --------------------------------------------


@pytest.mark.parametrize("group_commit", [True, False], ids=["group_commit", "default"])
def test_group_commit_reaches_the_saver_that_does_the_work(url: str, group_commit: bool) -> None:
    """With group_commit=True, writes that wait for the one pooled connection go out together
    as one executemany; without it, one statement each. Deterministic: the only connection is
    held by a put waiting on a row lock until every write has been handed to the saver."""
    writers = 8
    serialized = threading.Semaphore(0)

    class Counting(JsonPlusSerializer):
        # aput_writes serializes and then joins its group (or waits for the pool) in one step
        # of the loop: once a value is serialized, its statement is queued before the row
        # lock's release can reach the loop.
        def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
            try:
                return super().dumps_typed(obj)
            finally:
                if isinstance(obj, str) and obj.startswith("grouped-"):
                    serialized.release()

    sent: list[int] = []  # parameter sets per INSERT INTO checkpoint_writes

    def on_execute(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        if "INSERT INTO checkpoint_writes" in statement:
            executemany = args[-1]
            sent.append(len(params) if executemany else 1)

    name = application_name()
    thread_id = _thread()
    cp = checkpoint({"a": 1})
    config: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    sqlalchemy.event.listen(sqlalchemy.Engine, "before_cursor_execute", on_execute)
    try:
        with (
            SQLAlchemySaver.from_conn_string(
                url,
                serde=Counting(),
                group_commit=group_commit,
                pool_config={"max_size": 1},
                **tagged(name),
            ) as saver,
            psycopg.connect(url) as locker,
        ):
            locker.execute(
                "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, checkpoint) "
                "VALUES (%s, '', %s, '{}')",
                (thread_id, cp["id"]),
            )
            holder = threading.Thread(
                target=saver.put, args=(config, cp, {}, {"a": 1})
            )
            holder.start()
            eventually(lambda: _waiting_on_a_lock(url, name), "the put holds the connection")
            target: RunnableConfig = {
                "configurable": {**config["configurable"], "checkpoint_id": cp["id"]}
            }
            threads = [
                threading.Thread(
                    target=saver.put_writes, args=(target, [("c", f"grouped-{i}")], f"task-{i}")
                )
                for i in range(writers)
            ]
            for thread in threads:
                thread.start()
            for _ in range(writers):
                assert serialized.acquire(timeout=60)
            locker.rollback()
            for thread in [holder, *threads]:
                thread.join(timeout=60)
                assert not thread.is_alive()
            stored = saver.get_tuple(target)
            assert stored is not None and len(stored.pending_writes) == writers
    finally:
        sqlalchemy.event.remove(sqlalchemy.Engine, "before_cursor_execute", on_execute)
    assert sent == ([writers] if group_commit else [1] * writers)


# --- what the caller's thread carries into the call --------------------------------------------

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RecordingContext(JsonPlusSerializer):
    """A serializer noting the REQUEST_ID it runs under (on the saver's loop thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        self.seen.append(("dumps", REQUEST_ID.get()))
        return super().dumps_typed(obj)

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        self.seen.append(("loads", REQUEST_ID.get()))
        return super().loads_typed(data)


def test_calls_run_in_the_callers_context(url: str) -> None:
    """Context variables of the calling thread (an OpenTelemetry span, a request id) are set
    while its call runs on the saver's loop, for each thread its own, listings included."""
    serde = RecordingContext()
    with SQLAlchemySaver.from_conn_string(url, serde=serde) as saver:
        thread_id = _thread()

        def request(request_id: str) -> None:
            REQUEST_ID.set(request_id)
            config: RunnableConfig = {
                "configurable": {"thread_id": f"{thread_id}-{request_id}", "checkpoint_ns": ""}
            }
            cp = checkpoint({"blob": [request_id]})
            saver.put(config, cp, {}, cp["channel_versions"])
            assert [t.checkpoint["id"] for t in saver.list(config)] == [cp["id"]]

        workers = [threading.Thread(target=request, args=(f"r{i}",)) for i in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert sorted(serde.seen) == sorted(
            [("dumps", f"r{i}") for i in range(4)] + [("loads", f"r{i}") for i in range(4)]
        )
        # Nothing leaks from one call into the next: this thread never set it.
        serde.seen.clear()
        assert saver.get_tuple({"configurable": {"thread_id": f"{thread_id}-r0"}}) is not None
        assert serde.seen == [("loads", "-")]


async def test_the_async_savers_sync_twins_run_in_the_callers_context(
    engine: AsyncEngine,
) -> None:
    serde = RecordingContext()
    saver = AsyncSQLAlchemySaver(engine, serde=serde)
    await saver.aget_tuple(thread_config("bind-the-loop"))
    config: RunnableConfig = {"configurable": {"thread_id": _thread(), "checkpoint_ns": ""}}
    cp = checkpoint({"blob": ["x"]})

    def in_a_worker_thread() -> None:
        REQUEST_ID.set("from-a-thread")
        saver.put(config, cp, {}, cp["channel_versions"])
        assert len(list(saver.list(config))) == 1

    await asyncio.to_thread(in_a_worker_thread)
    assert serde.seen == [("dumps", "from-a-thread"), ("loads", "from-a-thread")]


def test_serde_is_read_at_every_call(url: str) -> None:
    """As upstream's: a serializer assigned after construction serializes the next put."""
    with SQLAlchemySaver.from_conn_string(url) as saver:
        replacement = RecordingContext()
        saver.serde = replacement
        config: RunnableConfig = {"configurable": {"thread_id": _thread(), "checkpoint_ns": ""}}
        cp = checkpoint({"blob": ["x"]})
        stored = saver.put(config, cp, {}, cp["channel_versions"])
        assert replacement.seen == [("dumps", "-")]
        found = saver.get_tuple(stored)
        assert found is not None and found.checkpoint["channel_values"] == {"blob": ["x"]}
        assert replacement.seen == [("dumps", "-"), ("loads", "-")]


def test_schema_is_read_only(url: str) -> None:
    with SQLAlchemySaver.from_conn_string(url, schema=None) as saver:
        assert saver.schema is None
        with pytest.raises(AttributeError):
            saver.schema = "elsewhere"  # type: ignore[misc]


def _waiting_on_a_lock(url: str, name: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = %s AND wait_event_type = 'Lock'",
            (name,),
        ).fetchone()
    return row is not None and row[0] > 0


# --- the saver's own API ----------------------------------------------------------------------


def test_list_pages_through_a_long_history_lazily(saver: SQLAlchemySaver) -> None:
    thread_id = _thread()
    parent: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    for _ in range(150):
        cp = checkpoint()
        parent = saver.put(parent, cp, {}, {})  # type: ignore[typeddict-item]
    listing = saver.list(thread_config(thread_id))
    first = next(listing)
    # A checkpoint older than all the others, written while the listing is on its first
    # page: a listing that had fetched the whole history up front would not see it.
    oldest: Checkpoint = {**checkpoint(), "id": "0-oldest"}  # type: ignore[typeddict-item]
    root: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    saver.put(root, oldest, {}, {})  # type: ignore[typeddict-item]
    rest = list(listing)
    assert first.config["configurable"]["checkpoint_id"] == parent["configurable"]["checkpoint_id"]
    assert len(rest) == 150
    assert rest[-1].checkpoint["id"] == "0-oldest"
    # An abandoned listing leaves the saver usable.
    for _ in saver.list(thread_config(thread_id)):
        break
    assert len(list(saver.list(thread_config(thread_id), limit=3))) == 3


def test_maintenance_methods(saver: SQLAlchemySaver) -> None:
    graph = build_linear_graph().compile(checkpointer=saver)
    source, target = _thread(), _thread()
    for run in ("run-1", "run-2"):
        graph.invoke({"trail": []}, {"configurable": {"thread_id": source, "run_id": run}})
    history = list(saver.list(thread_config(source)))
    assert len(history) == 10

    saver.copy_thread(source, target)
    copied = list(saver.list(thread_config(target)))
    assert [t.checkpoint["id"] for t in copied] == [t.checkpoint["id"] for t in history]

    assert history[0].metadata["run_id"] == "run-2"
    saver.delete_for_runs(["run-2"])
    assert len(list(saver.list(thread_config(source)))) == 5

    saver.prune([target], strategy="keep_latest")
    assert len(list(saver.list(thread_config(target)))) == 1

    saver.delete_thread(target)
    assert list(saver.list(thread_config(target))) == []
    assert saver.get_delta_channel_history(config=thread_config(source), channels=[]) == {}

    async def async_twins() -> None:
        await saver.acopy_thread(source, target)
        await saver.aprune([target], strategy="delete")
        assert await saver.aget_tuple(thread_config(target)) is None
        await saver.adelete_thread(source)

    asyncio.run(async_twins())
    assert list(saver.list(None)) == []


def test_bad_input_raises_and_the_saver_stays_usable(saver: SQLAlchemySaver) -> None:
    with pytest.raises(InvalidInputError):
        saver.put({"configurable": {"thread_id": "t"}}, checkpoint(), {}, {})  # type: ignore[typeddict-item]
    with pytest.raises(InvalidInputError):
        list(saver.list(None, limit="3"))  # type: ignore[arg-type]
    config = thread_config(_thread())
    build_linear_graph().compile(checkpointer=saver).invoke({"trail": []}, config)
    assert saver.get_tuple(config) is not None


def test_setup_on_an_empty_database_in_a_schema(empty_url: str) -> None:
    with SQLAlchemySaver.from_conn_string(empty_url, schema="graphs") as saver:
        saver.setup()
        saver.setup()  # idempotent
        config = thread_config(_thread())
        build_linear_graph().compile(checkpointer=saver).invoke({"trail": []}, config)
        assert len(list(saver.list(config))) == 5
    with psycopg.connect(empty_url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'graphs'"
        ).fetchall()
    assert {"checkpoints", "checkpoint_blobs", "checkpoint_writes"} <= {t[0] for t in tables}


def test_upstream_keywords_and_url_forms(url: str) -> None:
    asyncpg_url = make_url(url).set(drivername="postgresql+asyncpg")
    with SQLAlchemySaver.from_conn_string(
        asyncpg_url,
        pipeline=True,  # upstream's; nothing to pipeline here
        serde=JsonPlusSerializer(),
        pool_config={"min_size": 1, "max_size": 2},
    ) as saver:
        config = thread_config(_thread())
        build_linear_graph().compile(checkpointer=saver).invoke({"trail": []}, config)
        assert saver.get_tuple(config) is not None
    before = set(threading.enumerate())
    with pytest.raises(InvalidInputError, match="PostgreSQL URL"):
        SQLAlchemySaver("mysql://user@host/db")
    with pytest.raises(TypeError, match="sere"):  # a typo reaches create_async_engine
        SQLAlchemySaver(url, sere=JsonPlusSerializer())
    assert new_threads(before) == []  # a failed open leaves no loop thread behind


def test_a_serde_calling_the_saver_from_its_own_loop_gets_a_clear_error(url: str) -> None:
    # The saver runs its serializer on its loop thread; a blocking call from there would
    # wait for itself forever.
    holder: dict[str, SQLAlchemySaver] = {}

    class Reentrant(JsonPlusSerializer):
        def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
            holder["saver"].get_tuple(thread_config("other"))
            return super().dumps_typed(obj)

    with SQLAlchemySaver.from_conn_string(url, serde=Reentrant()) as saver:
        holder["saver"] = saver
        config = thread_config(_thread())
        with pytest.raises(InvalidInputError, match="own event loop thread") as caught:
            build_map_reduce_graph().compile(checkpointer=saver).invoke({"topics": ["a"]}, config)
        assert isinstance(caught.value.__cause__, asyncio.InvalidStateError)
        assert saver.get_tuple(thread_config(_thread())) is None


# --- what it refuses ------------------------------------------------------------------------


def test_engines_and_connections_are_type_errors(url: str, engine: AsyncEngine) -> None:
    before = set(threading.enumerate())
    sync_engine = sqlalchemy.create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    try:
        for cls in (SQLAlchemySaver, SQLAlchemyStore):
            with pytest.raises(TypeError, match=rf"{cls.__name__}\.from_conn_string\(url\)"):
                cls(sync_engine)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match=rf"Async{cls.__name__}\(engine\)"):
                cls(engine)  # type: ignore[arg-type]
            with psycopg.connect(url) as conn, pytest.raises(TypeError, match="database URL"):
                cls(conn)  # type: ignore[arg-type]
            with (
                pytest.raises(TypeError, match="database URL"),
                cls.from_conn_string(sync_engine),  # type: ignore[arg-type]
            ):
                pass
    finally:
        sync_engine.dispose()
    assert new_threads(before) == []


def test_the_async_saver_without_a_loop_points_to_the_sync_class(database_url: str) -> None:
    engine = create_engine(database_url)
    saver = AsyncSQLAlchemySaver(engine)
    with pytest.raises(asyncio.InvalidStateError, match=r"no event loop.*SQLAlchemySaver"):
        saver.get_tuple(thread_config("t"))
