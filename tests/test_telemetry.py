"""OpenTelemetry spans of the saver and the store, recorded with the SDK's in-memory exporter.

Every public operation is one CLIENT span named ``"<operation> <table>"`` with the attributes of
the database-client semantic conventions; failures carry ``error.type``, the SQLSTATE and an
ERROR status; retries and waits for a pooled connection are span events; identifiers appear
only on opt-in; spans nest under the caller's span (graph runs included) and ``alist``'s span
covers the iteration without changing the consumer's context. The last test runs the library
with OpenTelemetry not importable at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore, GetOp, ListNamespacesOp, PutOp, SearchOp
from langgraph.types import Command
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from typing_extensions import TypedDict

from checkpoint_factory import checkpoint
from graphs import build_interrupt_graph, build_subgraph_graph
from langgraph_sqlalchemy import (
    AsyncSQLAlchemySaver,
    AsyncSQLAlchemyStore,
    DatabaseError,
    InvalidInputError,
    telemetry,
)
from langgraph_sqlalchemy.db import OBSERVABLE_OPTION
from langgraph_sqlalchemy.engine import create_engine

SCOPE = "langgraph_sqlalchemy"


def cfg(thread_id: str, ns: str = "", checkpoint_id: str | None = None) -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ns}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


class Recorder:
    """The SDK pipeline of one test: a provider the library uses, its exporter and a tracer
    for the test's own (caller) spans."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("tests.caller")

    def ours(self) -> list[ReadableSpan]:
        """The library's finished spans, in the order they ended."""
        return [
            s
            for s in self.exporter.get_finished_spans()
            if s.instrumentation_scope is not None and s.instrumentation_scope.name == SCOPE
        ]

    def clear(self) -> None:
        self.exporter.clear()

    @contextlib.contextmanager
    def caller(self, name: str = "caller") -> Iterator[trace.Span]:
        with self.tracer.start_as_current_span(name) as span:
            yield span


@pytest.fixture
def spans() -> Iterator[Recorder]:
    recorder = Recorder()
    telemetry.use_tracer_provider(recorder.provider)
    try:
        yield recorder
    finally:
        telemetry.use_tracer_provider(None)
        telemetry.record_identifiers(False)
        recorder.provider.shutdown()


def database_of(engine: AsyncEngine) -> str:
    return engine.url.database or ""


def assert_client_span(
    span: ReadableSpan, operation: str, collection: str, engine: AsyncEngine
) -> None:
    """The semantic-convention shape of one successful operation span."""
    assert span.name == f"{operation} {collection}"
    assert span.kind is SpanKind.CLIENT
    attributes = dict(span.attributes or {})
    assert attributes["db.system.name"] == "postgresql"
    assert attributes["db.operation.name"] == operation
    assert attributes["db.collection.name"] == collection
    assert attributes["db.namespace"] == database_of(engine)
    if engine.url.host:
        assert attributes["server.address"] == engine.url.host
        assert attributes["server.port"] == (engine.url.port or 5432)
    else:  # a Unix-socket URL (the embedded server): no network peer to name
        assert "server.address" not in attributes
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in attributes


def children_of(spans: Sequence[ReadableSpan], parent: trace.Span) -> list[ReadableSpan]:
    context = parent.get_span_context()
    return [
        s
        for s in spans
        if s.parent is not None
        and s.parent.span_id == context.span_id
        and s.context is not None
        and s.context.trace_id == context.trace_id
    ]


def descends_from(
    span: ReadableSpan, ancestor: ReadableSpan, spans: Sequence[ReadableSpan]
) -> bool:
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    assert ancestor.context is not None
    current: ReadableSpan | None = span
    while current is not None and current.parent is not None:
        if current.parent.span_id == ancestor.context.span_id:
            return True
        current = by_id.get(current.parent.span_id)
    return False


def assert_one_operation(
    recorder: Recorder, caller: trace.Span, operation: str, collection: str, engine: AsyncEngine
) -> ReadableSpan:
    """The call made under ``caller`` produced exactly one operation span, a child of the
    caller, and nothing of ours outside it (no span in another trace, no sibling)."""
    ours = recorder.ours()
    top = children_of(ours, caller)
    assert [s.name for s in top] == [f"{operation} {collection}"], [
        (s.name, s.parent) for s in ours
    ]
    (span,) = top
    assert_client_span(span, operation, collection, engine)
    strays = [s.name for s in ours if s is not span and not descends_from(s, span, ours)]
    assert strays == [], f"spans outside the {span.name!r} span of the caller: {strays}"
    return span


# --- every saver operation --------------------------------------------------------------------


SaverCall = Callable[[AsyncSQLAlchemySaver], Awaitable[Any]]


async def _seed_thread(saver: AsyncSQLAlchemySaver, thread_id: str) -> RunnableConfig:
    """Two checkpoints (the second with a blob), and writes on the second."""
    first = await saver.aput(cfg(thread_id), checkpoint(), {"step": 0, "run_id": "run-1"}, {})
    values = checkpoint({"items": ["a", "b"]})
    second = await saver.aput(first, values, {"step": 1, "run_id": "run-1"}, {"items": 1})
    await saver.aput_writes(second, [("items", ["c"])], "task-1")
    return second


async def _alist(saver: AsyncSQLAlchemySaver) -> list[Any]:
    return [t async for t in saver.alist(cfg("seeded"))]


async def _aput(saver: AsyncSQLAlchemySaver) -> Any:
    values = checkpoint({"items": ["z"]})
    return await saver.aput(cfg("new-thread"), values, {"step": 0}, {"items": 1})


async def _aget_latest(saver: AsyncSQLAlchemySaver) -> Any:
    found = await saver.aget_tuple(cfg("seeded"))
    assert found is not None
    return found


SAVER_CALLS: list[tuple[str, str, SaverCall]] = [
    ("aget_tuple", "checkpoints", _aget_latest),
    ("alist", "checkpoints", _alist),
    ("aput", "checkpoints", _aput),
    (
        "aput_writes",
        "checkpoint_writes",
        lambda s: s.aput_writes(cfg("seeded", checkpoint_id=SEEDED["id"]), [("x", 1)], "t-2"),
    ),
    ("adelete_thread", "checkpoints", lambda s: s.adelete_thread("seeded")),
    ("adelete_for_runs", "checkpoints", lambda s: s.adelete_for_runs(["run-1"])),
    ("acopy_thread", "checkpoints", lambda s: s.acopy_thread("seeded", "copy")),
    ("aprune", "checkpoints", lambda s: s.aprune(["seeded"])),
    (
        "aget_delta_channel_history",
        "checkpoint_writes",
        lambda s: s.aget_delta_channel_history(
            config=cfg("seeded", checkpoint_id=SEEDED["id"]), channels=["items"]
        ),
    ),
    ("setup", "checkpoints", lambda s: s.setup()),
]
# The checkpoint id of the seeded thread's newest checkpoint (set by the test before a call).
SEEDED: dict[str, str] = {}


@pytest.mark.parametrize(
    ("operation", "collection", "call"),
    SAVER_CALLS,
    ids=[operation for operation, _, _ in SAVER_CALLS],
)
async def test_each_saver_operation_is_one_client_span(
    engine: AsyncEngine, spans: Recorder, operation: str, collection: str, call: SaverCall
) -> None:
    saver = AsyncSQLAlchemySaver(engine)
    seeded = await _seed_thread(saver, "seeded")
    SEEDED["id"] = seeded["configurable"]["checkpoint_id"]
    spans.clear()
    with spans.caller() as caller:
        await call(saver)
    assert_one_operation(spans, caller, operation, collection, engine)


async def test_sync_twins_from_a_worker_thread_nest_under_that_threads_span(
    engine: AsyncEngine, spans: Recorder
) -> None:
    saver = AsyncSQLAlchemySaver(engine)
    await _seed_thread(saver, "seeded")
    spans.clear()

    def worker() -> trace.Span:
        with spans.caller("worker") as caller:
            assert saver.get_tuple(cfg("seeded")) is not None
            assert len(list(saver.list(cfg("seeded")))) == 2
        return caller

    caller = await asyncio.to_thread(worker)
    names = sorted(s.name for s in children_of(spans.ours(), caller))
    assert names == ["aget_tuple checkpoints", "alist checkpoints"]
    assert len(spans.ours()) == 2


# --- every store operation ---------------------------------------------------------------------


StoreCall = Callable[[AsyncSQLAlchemyStore], Awaitable[Any]]


async def _search(store: AsyncSQLAlchemyStore) -> Any:
    found = await store.asearch(("users",), filter={"kind": "note"})
    assert [item.key for item in found] == ["seed"]
    return found


async def _get(store: AsyncSQLAlchemyStore) -> Any:
    item = await store.aget(("users", "ada"), "seed")
    assert item is not None and item.value == {"kind": "note"}
    return item


STORE_CALLS: list[tuple[str, StoreCall]] = [
    ("aget", _get),
    ("aput", lambda s: s.aput(("users", "ada"), "k2", {"kind": "other"})),
    ("adelete", lambda s: s.adelete(("users", "ada"), "seed")),
    ("asearch", _search),
    ("alist_namespaces", lambda s: s.alist_namespaces(prefix=("users",))),
    ("sweep_ttl", lambda s: s.sweep_ttl()),
    ("setup", lambda s: s.setup()),
]


@pytest.mark.parametrize(
    ("operation", "call"), STORE_CALLS, ids=[operation for operation, _ in STORE_CALLS]
)
async def test_each_store_operation_is_one_client_span(
    engine: AsyncEngine, spans: Recorder, operation: str, call: StoreCall
) -> None:
    """A store call is one span under the caller; the batch it runs in (the store coalesces
    concurrent calls into one ``abatch`` in a background task) must not surface as a span of
    another trace."""
    store = AsyncSQLAlchemyStore(engine)
    await store.aput(("users", "ada"), "seed", {"kind": "note"})
    spans.clear()
    with spans.caller() as caller:
        await call(store)
    assert_one_operation(spans, caller, operation, "store", engine)


async def test_abatch_called_directly_is_one_span(engine: AsyncEngine, spans: Recorder) -> None:
    store = AsyncSQLAlchemyStore(engine)
    ops = [
        PutOp(("users", "ada"), "k", {"kind": "note"}),
        GetOp(("users", "ada"), "k"),
        SearchOp(("users",)),
        ListNamespacesOp(),
    ]
    with spans.caller() as caller:
        results = await store.abatch(ops)
    assert results[0] is None and results[1] is None  # reads see the state before the writes
    span = assert_one_operation(spans, caller, "abatch", "store", engine)
    assert [s.name for s in spans.ours()] == [span.name]


# --- failures ----------------------------------------------------------------------------------


def assert_failed(span: ReadableSpan, error_type: str, sqlstate: str | None) -> None:
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == error_type
    if sqlstate is None:
        assert "db.response.status_code" not in attributes
    else:
        assert attributes["db.response.status_code"] == sqlstate
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description
    exceptions = [e for e in span.events if e.name == "exception"]
    assert len(exceptions) == 1
    assert (exceptions[0].attributes or {})["exception.type"].endswith(error_type)


@pytest.mark.parametrize("path", ["shortcut", "observable"])
async def test_a_failing_statement_marks_the_span(
    database_url: str, engine: AsyncEngine, spans: Recorder, path: str
) -> None:
    """JSONB cannot hold U+0000 in a key: the server refuses the put with 22P05."""
    options = {OBSERVABLE_OPTION: True} if path == "observable" else {}
    own = create_engine(database_url, execution_options=options)
    try:
        saver = AsyncSQLAlchemySaver(own)
        bad = checkpoint()
        bad["channel_versions"] = {"a\x00b": 1}
        with spans.caller() as caller, pytest.raises(DatabaseError, match="22P05"):
            await saver.aput(cfg("nul"), bad, {}, {})
        (span,) = children_of(spans.ours(), caller)
        assert span.name == "aput checkpoints"
        assert_failed(span, "DatabaseError", "22P05")
        assert await saver.aget_tuple(cfg("nul")) is None  # nothing half-written
    finally:
        await own.dispose()


async def test_bad_input_marks_the_span_without_a_sqlstate(
    engine: AsyncEngine, spans: Recorder
) -> None:
    saver = AsyncSQLAlchemySaver(engine)
    with spans.caller() as caller, pytest.raises(InvalidInputError):
        await saver.aget_tuple({"configurable": {"checkpoint_ns": ""}})  # no thread_id
    (span,) = children_of(spans.ours(), caller)
    assert_failed(span, "MissingKeyError", None)  # an InvalidInputError and a KeyError


async def test_a_failing_store_call_marks_its_span(engine: AsyncEngine, spans: Recorder) -> None:
    """A key too large for the primary-key btree: PostgreSQL's 54000, refused as bad input."""
    store = AsyncSQLAlchemyStore(engine)
    huge_key = secrets.token_urlsafe(6000)  # incompressible: the index row stays too large
    with spans.caller() as caller, pytest.raises(InvalidInputError, match="size limit"):
        await store.aput(("users",), huge_key, {"x": 1})
    span = assert_failed_operation(spans, caller, "aput")
    assert_failed(span, "InvalidInputError", "54000")
    assert await store.asearch(("users",)) == []


def assert_failed_operation(recorder: Recorder, caller: trace.Span, operation: str) -> ReadableSpan:
    top = children_of(recorder.ours(), caller)
    assert [s.name for s in top] == [f"{operation} store"]
    return top[0]


# --- identifiers only on opt-in ----------------------------------------------------------------

IDENTIFIER_KEYS = ("langgraph.thread_id", "langgraph.checkpoint_ns", "langgraph.store.namespace")


async def _identified_calls(saver: AsyncSQLAlchemySaver, store: AsyncSQLAlchemyStore) -> None:
    stored = await saver.aput(cfg("thread-7", "ns-1"), checkpoint(), {}, {})
    await saver.aget_tuple(stored)
    _ = [t async for t in saver.alist(cfg("thread-7", "ns-1"))]
    await saver.aput_writes(stored, [("x", 1)], "task")
    await saver.acopy_thread("thread-7", "thread-8")
    await saver.adelete_thread("thread-8")
    await store.aput(("users", "ada"), "k", {"v": 1})
    await store.aget(("users", "ada"), "k")
    await store.asearch(("users",))
    await store.adelete(("users", "ada"), "k")


async def test_identifiers_are_recorded_only_after_opting_in(
    engine: AsyncEngine, spans: Recorder
) -> None:
    saver, store = AsyncSQLAlchemySaver(engine), AsyncSQLAlchemyStore(engine)
    await _identified_calls(saver, store)
    leaked = {
        (s.name, key)
        for s in spans.ours()
        for key in (s.attributes or {})
        if key in IDENTIFIER_KEYS
    }
    assert leaked == set()

    spans.clear()
    telemetry.record_identifiers(True)
    await _identified_calls(saver, store)
    seen = {
        s.name: {k: v for k, v in (s.attributes or {}).items() if k in IDENTIFIER_KEYS}
        for s in spans.ours()
        if s.name != "abatch store"
    }
    thread = {"langgraph.thread_id": "thread-7", "langgraph.checkpoint_ns": "ns-1"}
    assert seen == {
        "aput checkpoints": thread,
        "aget_tuple checkpoints": thread,
        "alist checkpoints": thread,
        "aput_writes checkpoint_writes": thread,
        "acopy_thread checkpoints": {"langgraph.thread_id": "thread-7"},
        "adelete_thread checkpoints": {"langgraph.thread_id": "thread-8"},
        "aput store": {"langgraph.store.namespace": "users.ada"},
        "aget store": {"langgraph.store.namespace": "users.ada"},
        "asearch store": {"langgraph.store.namespace": "users"},
        "adelete store": {"langgraph.store.namespace": "users.ada"},
    }

    spans.clear()
    telemetry.record_identifiers(False)
    await saver.aget_tuple(cfg("thread-7", "ns-1"))
    assert all(k not in IDENTIFIER_KEYS for s in spans.ours() for k in (s.attributes or {}))


# --- retries and pool waits as span events -----------------------------------------------------


async def _terminate_other_backends(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        killed = (
            await conn.execute(
                text(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                    "FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                )
            )
        ).scalar_one()
        await conn.commit()
    return int(killed)


@pytest.mark.parametrize("path", ["shortcut", "observable"])
async def test_a_retry_is_an_event_on_the_operation_span(
    own_database: str, spans: Recorder, path: str
) -> None:
    options = {OBSERVABLE_OPTION: True} if path == "observable" else {}
    own = create_engine(own_database, pool_size=1, max_overflow=0, execution_options=options)
    killer = create_engine(own_database)
    try:
        saver = AsyncSQLAlchemySaver(own)
        stored = await saver.aput(cfg("retry"), checkpoint(), {}, {})  # the pooled connection
        assert await _terminate_other_backends(killer) == 1
        spans.clear()
        with spans.caller() as caller:
            found = await saver.aget_tuple(stored)
        assert found is not None
        span = assert_one_operation(spans, caller, "aget_tuple", "checkpoints", own)
        retries = [e for e in span.events if e.name == "db.client.retry"]
        assert len(retries) == 1, [e.name for e in span.events]
        attributes = dict(retries[0].attributes or {})
        assert attributes["attempt"] == 1
        assert attributes["error.type"]
        assert isinstance(attributes["delay_s"], float) and attributes["delay_s"] >= 0
    finally:
        await own.dispose()
        await killer.dispose()


async def test_waiting_for_a_pooled_connection_is_an_event(
    database_url: str, spans: Recorder
) -> None:
    own = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        saver = AsyncSQLAlchemySaver(own)
        await saver.aget_tuple(cfg("wait"))  # the pool's one connection now exists
        spans.clear()
        with spans.caller() as caller:
            async with own.connect() as held:
                await held.execute(text("SELECT 1"))
                call = asyncio.ensure_future(saver.aget_tuple(cfg("wait")))
                await asyncio.sleep(0.2)
                assert not call.done()  # queued behind the held connection
            assert await call is None
        span = assert_one_operation(spans, caller, "aget_tuple", "checkpoints", own)
        waits = [e for e in span.events if e.name == "db.client.connection.wait"]
        assert len(waits) == 1
        assert (waits[0].attributes or {})["db.client.connection.wait_time"] > 0
    finally:
        await own.dispose()


# --- graph runs nest under the caller ----------------------------------------------------------


async def test_spans_of_graph_runs_nest_under_the_callers_span(
    engine: AsyncEngine, spans: Recorder
) -> None:
    saver = AsyncSQLAlchemySaver(engine)
    interrupting = build_interrupt_graph().compile(checkpointer=saver)
    family = build_subgraph_graph().compile(checkpointer=saver)
    with spans.caller() as caller:
        config: RunnableConfig = {"configurable": {"thread_id": "g1"}}
        await interrupting.ainvoke({"steps": []}, config)
        await interrupting.ainvoke(Command(resume="Ada"), config)
        done = await interrupting.ainvoke(Command(resume="blue"), config)
        assert done["steps"][-1] == "done:Ada:blue"
        sub: RunnableConfig = {"configurable": {"thread_id": "g2"}}
        await family.ainvoke({"log": []}, sub)
        await family.ainvoke(Command(resume="42"), sub)
        history = [s async for s in family.aget_state_history(sub)]
        assert history
    ours = spans.ours()
    assert ours
    assert children_of(ours, caller) == ours, {s.name for s in ours if s.parent is None}
    names = {s.name for s in ours}
    assert {"aget_tuple checkpoints", "aput checkpoints", "aput_writes checkpoint_writes"} <= names
    assert "alist checkpoints" in names


class Remembered(TypedDict, total=False):
    note: str
    recalled: str


async def _remember(state: Remembered, *, store: BaseStore) -> dict[str, Any]:
    await store.aput(("notes",), "last", {"text": state["note"]})
    item = await store.aget(("notes",), "last")
    assert item is not None
    return {"recalled": item.value["text"]}


async def test_store_spans_of_a_graph_run_nest_under_the_callers_span(
    engine: AsyncEngine, spans: Recorder
) -> None:
    saver, store = AsyncSQLAlchemySaver(engine), AsyncSQLAlchemyStore(engine)
    builder = StateGraph(Remembered)
    builder.add_node("remember", _remember)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", END)
    graph = builder.compile(checkpointer=saver, store=store)
    with spans.caller() as caller:
        out = await graph.ainvoke({"note": "hi"}, {"configurable": {"thread_id": "mem"}})
    assert out["recalled"] == "hi"
    ours = spans.ours()
    context = caller.get_span_context()
    elsewhere = [s.name for s in ours if s.context.trace_id != context.trace_id]
    assert elsewhere == [], f"spans in another trace than the caller's: {elsewhere}"
    top = {s.name for s in children_of(ours, caller)}
    assert {"aput store", "aget store", "aput checkpoints"} <= top


# --- alist: one span over the iteration, the consumer's context untouched ---------------------


def ids(span: trace.Span) -> tuple[int, int]:
    context = span.get_span_context()
    return context.trace_id, context.span_id


@pytest.fixture
async def observed_engine(database_url: str) -> AsyncIterator[tuple[AsyncEngine, list[Any]]]:
    """An engine whose statements record the span current when each was sent."""
    own = create_engine(database_url)
    seen: list[Any] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM checkpoints" in statement:
            seen.append(ids(trace.get_current_span()))

    event.listen(own.sync_engine, "before_cursor_execute", record)
    yield own, seen
    event.remove(own.sync_engine, "before_cursor_execute", record)
    await own.dispose()


async def test_alist_span_covers_the_iteration_and_leaves_the_consumer_alone(
    observed_engine: tuple[AsyncEngine, list[Any]], spans: Recorder
) -> None:
    own, statements = observed_engine
    saver = AsyncSQLAlchemySaver(own)
    config = cfg(f"long-{uuid.uuid4().hex[:6]}")
    for _ in range(150):  # two pages
        config = await saver.aput(config, checkpoint(), {}, {})
    spans.clear()
    statements.clear()
    consumer_contexts = []
    with spans.caller() as caller:
        async for _ in saver.alist(cfg(config["configurable"]["thread_id"])):
            consumer_contexts.append(ids(trace.get_current_span()))
            with spans.tracer.start_as_current_span("consumer work"):
                await asyncio.sleep(0)
    assert len(consumer_contexts) == 150
    assert set(consumer_contexts) == {ids(caller)}
    (listing,) = [s for s in spans.ours() if s.name == "alist checkpoints"]
    assert listing.parent is not None
    assert listing.parent.span_id == caller.get_span_context().span_id
    # Both pages were fetched with the alist span current; nothing else of ours ran.
    assert len(statements) == 2
    assert listing.context is not None
    assert set(statements) == {(listing.context.trace_id, listing.context.span_id)}
    assert [s.name for s in spans.ours()] == ["alist checkpoints"]
    consumer = [s for s in spans.exporter.get_finished_spans() if s.name == "consumer work"]
    assert len(consumer) == 150
    assert {s.parent.span_id for s in consumer if s.parent} == {caller.get_span_context().span_id}
    # The span ends after the last row was handed out, not at the first page.
    assert listing.end_time is not None and listing.start_time is not None
    assert listing.end_time >= max(s.end_time or 0 for s in consumer)
    assert listing.start_time <= min(s.start_time or 0 for s in consumer)


async def test_alist_closed_early_ends_its_span(engine: AsyncEngine, spans: Recorder) -> None:
    saver = AsyncSQLAlchemySaver(engine)
    config = cfg("early")
    for _ in range(3):
        config = await saver.aput(config, checkpoint(), {}, {})
    spans.clear()
    with spans.caller() as caller:
        async with contextlib.aclosing(saver.alist(cfg("early"))) as listing:
            async for _ in listing:
                break
        assert trace.get_current_span() is caller
    (span,) = spans.ours()
    assert span.name == "alist checkpoints"
    assert span.status.status_code is StatusCode.UNSET


async def test_a_failing_alist_is_recorded_once(engine: AsyncEngine, spans: Recorder) -> None:
    saver = AsyncSQLAlchemySaver(engine)
    with spans.caller() as caller, pytest.raises(InvalidInputError):
        async for _ in saver.alist(cfg("t"), limit="many"):  # type: ignore[arg-type]
            pass
    (failed,) = children_of(spans.ours(), caller)
    assert failed.name == "alist checkpoints"
    assert_failed(failed, "InvalidInputError", None)


# --- without OpenTelemetry installed ---------------------------------------------------------


def test_everything_works_without_opentelemetry(database_url: str) -> None:
    """``opentelemetry`` made unimportable before the library loads (as if the ``otel`` extra
    were not installed): the decorators leave the methods as they are and calls work."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from importlib.abc import MetaPathFinder

        class NoOpenTelemetry(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, NoOpenTelemetry())

        from langgraph_sqlalchemy import AsyncSQLAlchemySaver, AsyncSQLAlchemyStore, telemetry
        from langgraph_sqlalchemy.engine import create_engine

        async def main(url):
            telemetry.record_identifiers(True)
            telemetry.use_tracer_provider(None)
            telemetry.record_event("db.client.retry", {"attempt": 1})
            with telemetry.operation_span(None, "op", "table") as span:
                assert span is None
            for method in (AsyncSQLAlchemySaver.aget_tuple, AsyncSQLAlchemySaver.alist,
                           AsyncSQLAlchemyStore.abatch):
                assert not hasattr(method, "__wrapped__"), method
            engine = create_engine(url)
            try:
                saver = AsyncSQLAlchemySaver(engine)
                config = {"configurable": {"thread_id": "no-otel", "checkpoint_ns": ""}}
                assert await saver.aget_tuple(config) is None
                store = AsyncSQLAlchemyStore(engine)
                await store.aput(("no-otel",), "k", {"v": 1})
                assert (await store.aget(("no-otel",), "k")).value == {"v": 1}
                await store.adelete(("no-otel",), "k")
                assert [t async for t in saver.alist(config)] == []
            finally:
                await engine.dispose()
            assert not any(m.startswith("opentelemetry") for m in sys.modules)
            print("ok")

        asyncio.run(main(sys.argv[1]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, database_url],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"

