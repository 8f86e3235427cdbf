"""OpenTelemetry across the sync boundary: a sync call made inside a caller's span produces
our operation span as a child of that span, though the work runs on another thread's loop.

Covered: ``SQLAlchemySaver`` under ``graph.invoke`` and ``get_state_history``, the async
saver's sync twins called from a worker thread, ``SQLAlchemyStore`` and the async store's sync
methods. Work that outlives the call that started it (the sync store's batching task, made
when it opens; its TTL sweeper) belongs to no caller's trace. Spans are collected with the
SDK's ``InMemorySpanExporter`` through ``telemetry.use_tracer_provider``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk (the otel extra)")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import Tracer

from graphs import build_linear_graph, thread_config
from langgraph_sqlalchemy import (
    AsyncSQLAlchemySaver,
    AsyncSQLAlchemyStore,
    SQLAlchemySaver,
    SQLAlchemyStore,
    telemetry,
)
from leaks import eventually

OURS = "langgraph_sqlalchemy"


class Spans:
    def __init__(self, exporter: InMemorySpanExporter, tracer: Tracer) -> None:
        self.exporter = exporter
        self.tracer = tracer

    def finished(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def named(self, name: str) -> ReadableSpan:
        (span,) = [s for s in self.finished() if s.name == name]
        return span

    def ours(self) -> list[ReadableSpan]:
        return [
            s
            for s in self.finished()
            if s.instrumentation_scope is not None and s.instrumentation_scope.name == OURS
        ]

    def children_of(self, parent: ReadableSpan) -> list[str]:
        """Names of our spans whose parent is ``parent`` (in its trace)."""
        assert parent.context is not None
        return sorted(
            s.name
            for s in self.ours()
            if s.parent is not None
            and s.parent.span_id == parent.context.span_id
            and s.context is not None
            and s.context.trace_id == parent.context.trace_id
        )


@pytest.fixture
def spans() -> Iterator[Spans]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.use_tracer_provider(provider)
    try:
        yield Spans(exporter, provider.get_tracer("the-application"))
    finally:
        telemetry.use_tracer_provider(None)
        provider.shutdown()


@pytest.fixture
def url(engine: AsyncEngine, database_url: str) -> str:
    return database_url


def _thread() -> str:
    return f"otel-{uuid.uuid4().hex}"


def test_graph_invoke_in_a_request_span_parents_the_saver_spans(url: str, spans: Spans) -> None:
    config = thread_config(_thread())
    with SQLAlchemySaver.from_conn_string(url) as saver:
        graph = build_linear_graph().compile(checkpointer=saver)
        with spans.tracer.start_as_current_span("request"):
            graph.invoke({"trail": []}, config)
        with spans.tracer.start_as_current_span("history"):
            assert len(list(graph.get_state_history(config))) == 5
        saver.get_tuple(config)  # no span around it: a trace of its own
    request, history = spans.named("request"), spans.named("history")
    under_request = spans.children_of(request)
    assert {"aget_tuple checkpoints", "aput checkpoints", "aput_writes checkpoint_writes"} <= set(
        under_request
    )
    assert under_request.count("aput checkpoints") == 5  # input, the first step, a, b, c
    assert spans.children_of(history) == ["alist checkpoints"]
    orphans = [s for s in spans.ours() if s.parent is None]
    assert [s.name for s in orphans] == ["aget_tuple checkpoints"]
    assert len(spans.ours()) == len(under_request) + 2


async def test_the_async_savers_sync_twins_from_a_worker_thread(
    engine: AsyncEngine, spans: Spans
) -> None:
    saver = AsyncSQLAlchemySaver(engine)
    await saver.aget_tuple(thread_config("bind-the-loop"))  # the loop its twins go to
    config = thread_config(_thread())

    def sync_request() -> None:
        with spans.tracer.start_as_current_span("request"):
            build_linear_graph().compile(checkpointer=saver).invoke({"trail": []}, config)
            assert len(list(saver.list(config))) == 5

    await asyncio.to_thread(sync_request)
    under_request = spans.children_of(spans.named("request"))
    assert under_request.count("aput checkpoints") == 5
    assert under_request.count("alist checkpoints") == 1
    assert "aget_tuple checkpoints" in under_request


def test_store_calls_are_children_and_its_own_work_is_nobodys(url: str, spans: Spans) -> None:
    with spans.tracer.start_as_current_span("startup"):
        store = SQLAlchemyStore(url, ttl={"sweep_interval_minutes": 0.001})
        sweeper = store.start_ttl_sweeper()
    try:
        with spans.tracer.start_as_current_span("request"):
            store.put(("otel",), "k", {"v": 1})
            assert store.get(("otel",), "k") is not None
            assert store.search(("otel",)) != []
        # The sweeper runs on, in traces of its own.
        eventually(
            lambda: any(s.name == "sweep_ttl store" for s in spans.ours()), "a sweep ran"
        )
    finally:
        store.close()
    assert sweeper.done()
    startup, request = spans.named("startup"), spans.named("request")
    assert spans.children_of(request) == ["aget store", "aput store", "asearch store"]
    # The batches those calls coalesced into run in the store's own task, yet their spans go
    # under the calls they serve; the sweeps are nobody's. Neither is under the span of the
    # startup that happened to create the store and start its sweeper.
    assert spans.children_of(startup) == []
    callers = {
        s.context.span_id
        for s in spans.ours()
        if s.context is not None and s.parent is not None
        and s.parent.span_id == request.context.span_id  # type: ignore[union-attr]
    }
    batches = [s for s in spans.ours() if s.name == "abatch store"]
    assert batches and all(s.parent is not None and s.parent.span_id in callers for s in batches)
    sweeps = [s for s in spans.ours() if s.name == "sweep_ttl store"]
    assert sweeps and all(s.parent is None for s in sweeps)


async def test_the_async_stores_sync_methods_from_a_worker_thread(
    engine: AsyncEngine, spans: Spans
) -> None:
    store = AsyncSQLAlchemyStore(engine)

    def sync_request() -> Any:
        with spans.tracer.start_as_current_span("request"):
            store.put(("otel",), "k", {"v": 1})
            return store.get(("otel",), "k")

    assert await asyncio.to_thread(sync_request) is not None
    assert spans.children_of(spans.named("request")) == ["aget store", "aput store"]
