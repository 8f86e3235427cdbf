"""Checkpoint-saver workloads: real LangGraph graphs, and the two reads a graph run makes.

The graphs are ordinary ``StateGraph``s with the ``add_messages`` reducer and LangChain message
objects, so checkpoints carry what an agent's do (message lists go to ``checkpoint_blobs`` via
the serializer, counters stay inline) and every run goes through LangGraph's own checkpointing
path (default durability), not a hand-rolled sequence of ``aput`` calls.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import operator
import time
import tracemalloc
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from .backends import Backend
from .harness import (
    MEMORY,
    OURS,
    OURS_TRACED,
    UPSTREAM,
    Metric,
    Target,
    WorkloadResult,
    mebibytes,
    milliseconds,
    per_second,
)

SAVER_IMPLS = (OURS, OURS_TRACED, UPSTREAM, MEMORY)

# ~250 characters: the size of a short assistant turn.
_FILLER = (
    "The quarterly numbers look consistent with the forecast; the two outliers come from the "
    "late invoices in the northern region, which were booked in the following period. I will "
    "draft the summary and flag the invoices for review."
)


class ChatState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def build_chat_graph(steps: int = 10) -> StateGraph[Any, Any, Any, Any]:
    """``steps`` nodes in a chain; each appends one assistant message."""
    builder = StateGraph(ChatState)

    def make_step(i: int) -> Any:
        def step(state: ChatState) -> dict[str, Any]:
            return {"messages": [AIMessage(content=f"step {i}: {_FILLER}")]}

        return step

    previous = START
    for i in range(steps):
        name = f"step_{i}"
        builder.add_node(name, make_step(i))
        builder.add_edge(previous, name)
        previous = name
    builder.add_edge(previous, END)
    return builder


def _last_twenty(left: list[AnyMessage], right: list[AnyMessage]) -> list[AnyMessage]:
    # A sliding window, as agents that trim their context keep: every step still writes a new
    # blob version, but a 1,000-step thread does not grow quadratically.
    return (left + right)[-20:]


class LoopState(TypedDict):
    messages: Annotated[list[AnyMessage], _last_twenty]
    count: Annotated[int, operator.add]
    target: int


def build_loop_graph() -> StateGraph[Any, Any, Any, Any]:
    """One node that loops until ``count`` reaches ``target``: one checkpoint per step."""
    builder = StateGraph(LoopState)

    def step(state: LoopState) -> dict[str, Any]:
        return {"messages": [AIMessage(content=f"turn {state['count']}: {_FILLER}")], "count": 1}

    def route(state: LoopState) -> str:
        return END if state["count"] >= state["target"] else "step"

    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", route)
    return builder


def _run_config(thread_id: str, **extra: Any) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}, **extra}


def _input() -> dict[str, Any]:
    return {"messages": [HumanMessage(content="Summarise the quarterly numbers, please.")]}


async def make_long_thread(backend: Backend, checkpoints: int) -> str:
    """A thread with exactly ``checkpoints`` checkpoints, written by a real graph run."""
    graph = build_loop_graph().compile(checkpointer=backend.saver)
    thread_id = f"long-{checkpoints}-{uuid.uuid4().hex[:8]}"
    # The input checkpoint (step -1) plus one per superstep: START's, then one per loop turn.
    turns = checkpoints - 2
    await graph.ainvoke(
        {**_input(), "count": 0, "target": turns},
        _run_config(thread_id, recursion_limit=checkpoints + 10),
        durability="sync",
    )
    count = 0
    async for _ in backend.saver.alist({"configurable": {"thread_id": thread_id}}):
        count += 1
    if count != checkpoints:
        raise RuntimeError(f"{backend.name}: built {count} checkpoints, wanted {checkpoints}")
    return thread_id


def _faster(metric: str, factor: float, impl: str = OURS) -> Any:
    def check(result: WorkloadResult) -> bool | None:
        ratio = result.ratio(metric, UPSTREAM, impl)
        return None if ratio is None else ratio >= factor

    return check


@dataclass
class GraphSequential:
    runs: int
    needs: str = "saver"
    name: str = "graph_sequential"
    impls: Sequence[str] = SAVER_IMPLS

    @property
    def description(self) -> str:
        return f"10-step StateGraph, {self.runs} runs one after another (new thread each)"

    metrics = (Metric("time", "10-step graph runs, sequential", "runs/s", per_second, 1),)
    targets = (
        Target(">= 1.5x upstream", "time", _faster("time", 1.5)),
        Target("traced >= 1.5x", "time", _faster("time", 1.5, OURS_TRACED)),
    )

    async def prepare(self, backend: Backend) -> None:
        graph = build_chat_graph().compile(checkpointer=backend.saver)
        backend.state["chat_graph"] = graph
        out = await graph.ainvoke(_input(), _run_config(f"check-{uuid.uuid4().hex}"))
        if len(out["messages"]) != 11:
            raise RuntimeError(f"{backend.name}: graph produced {len(out['messages'])} messages")

    async def measure(self, backend: Backend) -> dict[str, float]:
        graph = backend.state["chat_graph"]
        start = time.perf_counter()
        for _ in range(self.runs):
            await graph.ainvoke(_input(), _run_config(uuid.uuid4().hex))
        return {"time": (time.perf_counter() - start) / self.runs}


@dataclass
class GraphConcurrent:
    """``group_commit``: our saver as configured for many runs per process
    (``AsyncSQLAlchemySaver(engine, group_commit=True)``); else its defaults."""

    runs: int
    group_commit: bool = True
    needs: str = "saver"
    impls: Sequence[str] = SAVER_IMPLS

    @property
    def name(self) -> str:
        return "graph_concurrent" if self.group_commit else "graph_concurrent_default"

    @property
    def description(self) -> str:
        config = "group_commit=True" if self.group_commit else "default configuration"
        return (
            f"10-step StateGraph, {self.runs} runs at once through one saver (pool of 10; "
            f"ours with {config})"
        )

    @property
    def metrics(self) -> tuple[Metric, ...]:
        config = "group commit" if self.group_commit else "defaults"
        return (
            Metric(
                "time",
                f"10-step graph runs, {self.runs} at once, {config}",
                "runs/s",
                per_second,
                1,
            ),
        )

    @property
    def targets(self) -> tuple[Target, ...]:
        if not self.group_commit:
            return ()
        return (
            Target(">= 2.5x upstream", "time", _faster("time", 2.5)),
            Target("traced >= 2.5x", "time", _faster("time", 2.5, OURS_TRACED)),
        )

    async def prepare(self, backend: Backend) -> None:
        saver = backend.saver
        if self.group_commit and backend.name in (OURS, OURS_TRACED):
            from langgraph_sqlalchemy import AsyncSQLAlchemySaver

            saver = AsyncSQLAlchemySaver(backend.saver.db.engine, group_commit=True)
        backend.state[self.name] = build_chat_graph().compile(checkpointer=saver)

    async def measure(self, backend: Backend) -> dict[str, float]:
        graph = backend.state[self.name]
        start = time.perf_counter()
        outs = await asyncio.gather(
            *(graph.ainvoke(_input(), _run_config(uuid.uuid4().hex)) for _ in range(self.runs))
        )
        elapsed = time.perf_counter() - start
        if any(len(out["messages"]) != 11 for out in outs):
            raise RuntimeError(f"{backend.name}: a concurrent run lost messages")
        return {"time": elapsed / self.runs}


@dataclass
class GetTuple:
    calls: int
    checkpoints: int = 50
    needs: str = "saver"
    name: str = "aget_tuple"
    impls: Sequence[str] = SAVER_IMPLS

    @property
    def description(self) -> str:
        return f"aget_tuple (latest) on a {self.checkpoints}-checkpoint thread, {self.calls} calls"

    @property
    def metrics(self) -> tuple[Metric, ...]:
        label = f"aget_tuple, {self.checkpoints}-checkpoint thread"
        return (Metric("time", label, "ms", milliseconds, 3),)

    targets = (
        Target(">= 1.5x faster", "time", _faster("time", 1.5)),
        Target("traced >= 1.5x", "time", _faster("time", 1.5, OURS_TRACED)),
    )

    async def prepare(self, backend: Backend) -> None:
        backend.state["get_thread"] = await make_long_thread(backend, self.checkpoints)

    async def measure(self, backend: Backend) -> dict[str, float]:
        config = {"configurable": {"thread_id": backend.state["get_thread"], "checkpoint_ns": ""}}
        saver = backend.saver
        start = time.perf_counter()
        for _ in range(self.calls):
            found = await saver.aget_tuple(config)
        elapsed = time.perf_counter() - start
        if found is None or len(found.checkpoint["channel_values"]["messages"]) != 20:
            raise RuntimeError(f"{backend.name}: aget_tuple returned {found!r:.200}")
        return {"time": elapsed / self.calls}


class _MallInfo2(ctypes.Structure):
    _fields_: ClassVar = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _malloc_in_use() -> Callable[[], int] | None:
    """Bytes currently allocated through glibc's malloc (heap + mmapped blocks), or None.

    tracemalloc sees only Python's allocator. A driver that keeps the whole result set in C
    (psycopg holds libpq's PGresult and converts rows as they are iterated) is invisible to
    it, so the alist workload also samples malloc's own count after every item. Python's small
    objects live in pymalloc arenas, which this does not count; the two numbers complement.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2

    def in_use() -> int:
        info = mallinfo2()
        return int(info.uordblks + info.hblkhd)

    return in_use


@dataclass
class ListHistory:
    checkpoints: int
    needs: str = "saver"
    name: str = "alist"
    impls: Sequence[str] = SAVER_IMPLS

    @property
    def description(self) -> str:
        return (
            f"alist of a whole {self.checkpoints}-checkpoint thread (consumer keeps nothing); "
            "memory pass separate from the timed pass"
        )

    @property
    def metrics(self) -> tuple[Metric, ...]:
        return (
            Metric("time", f"alist, {self.checkpoints:,}-checkpoint thread", "ms", milliseconds, 1),
            Metric("peak_python", "alist peak Python memory (tracemalloc)", "MiB", mebibytes, 2),
            Metric("peak_malloc", "alist peak C heap growth (malloc)", "MiB", mebibytes, 2),
        )

    @staticmethod
    def _half_memory(result: WorkloadResult) -> bool | None:
        ratio = result.ratio("peak_python", OURS, UPSTREAM)
        return None if ratio is None else ratio <= 0.5

    targets = (
        Target(">= 1.5x faster", "time", _faster("time", 1.5)),
        Target("<= 0.5x upstream's peak", "peak_python", _half_memory),
    )

    async def prepare(self, backend: Backend) -> None:
        backend.state["list_thread"] = await make_long_thread(backend, self.checkpoints)

    async def _consume(self, backend: Backend, sample: Callable[[], int] | None = None) -> int:
        count = 0
        config = {"configurable": {"thread_id": backend.state["list_thread"]}}
        async for item in backend.saver.alist(config):
            count += 1
            del item
            if sample is not None:
                sample()
        return count

    async def measure(self, backend: Backend) -> dict[str, float]:
        start = time.perf_counter()
        count = await self._consume(backend)
        elapsed = time.perf_counter() - start
        if count != self.checkpoints:
            raise RuntimeError(f"{backend.name}: alist gave {count} checkpoints")
        # The peaks are deterministic (same rows, same code path): two measured samples are
        # enough, and the memory passes are slow (tracemalloc), so later rounds time only.
        passes = backend.state["alist_memory_passes"] = (
            backend.state.get("alist_memory_passes", 0) + 1
        )
        if passes == 1 or passes > 3:  # the first call is the discarded warm-up round
            return {"time": elapsed}
        tracemalloc.start()
        try:
            await self._consume(backend)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        values = {"time": elapsed, "peak_python": float(peak)}
        in_use = _malloc_in_use()
        if in_use is not None:
            gc.collect()
            baseline = in_use()
            high = baseline

            def sample() -> int:
                nonlocal high
                high = max(high, in_use())
                return high

            await self._consume(backend, sample)
            values["peak_malloc"] = float(high - baseline)
        return values
