"""Where a sequential graph run's CPU goes, by library, for each implementation.

    python -m benchmarks.attribution                 # 150 profiled runs per implementation
    python -m benchmarks.attribution --runs 50

The 10-step graph of ``graph_sequential`` (:mod:`benchmarks.saver_workloads`) runs on ours,
ours traced (the ``before_cursor_execute`` listener and our spans, :mod:`benchmarks.tracing`),
upstream and the in-memory saver, each on the backend ``benchmarks.run`` builds, under
pyinstrument. Every sample's time goes to the library whose code was running (self time, by
the frame's file): SQLAlchemy (greenlet included), asyncpg, psycopg, the OpenTelemetry SDK,
LangGraph, its serializer, LangChain's messages, asyncio's loop, ours, and C builtins (which
cannot be told apart by caller). Time spent waiting on the loop for I/O is left out, so the
totals are the process's CPU per run. The profiler slows everything down by about the same
factor; compare shares and differences between columns, not these absolute times with
``benchmarks.run``'s.

Needs ``pip install pyinstrument``. Uses ``DATABASE_URL`` or the embedded server, like
``benchmarks.run``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections import Counter
from typing import Any

from . import backends as bk
from .harness import MEMORY, OURS, OURS_TRACED, UPSTREAM
from .saver_workloads import _input, build_chat_graph

# The first match of a frame's file path names its library (order matters: the serializer
# and upstream's saver live under langgraph/ too).
_LIBRARIES = (
    ("langgraph_sqlalchemy", "ours"),
    ("/sqlalchemy/", "SQLAlchemy"),
    ("greenlet", "SQLAlchemy"),
    ("/asyncpg/", "asyncpg"),
    ("/opentelemetry/", "OpenTelemetry SDK"),
    ("/psycopg_pool/", "psycopg"),
    ("/psycopg/", "psycopg"),
    ("/langgraph/checkpoint/serde", "LangGraph serializer"),
    ("/ormsgpack", "LangGraph serializer"),
    ("/langgraph/checkpoint/postgres", "upstream's saver"),
    ("/langgraph/store/postgres", "upstream's saver"),
    ("/langgraph/", "LangGraph"),
    ("/langchain_core/", "LangChain messages"),
    ("/pydantic", "LangChain messages"),
    ("/asyncio/", "asyncio loop"),
)


def library(path: str) -> str:
    for marker, name in _LIBRARIES:
        if marker in path:
            return name
    if not path or path.startswith("<built-in>"):
        return "C builtins"
    return "other Python"


def attribute(frame: Any, totals: Counter[str]) -> None:
    """Add each frame's self time (its time less its children's) to its library."""
    own = frame.time - sum(child.time for child in frame.children)
    if frame.is_synthetic:
        if frame.function == "[await]":
            own = 0.0  # waiting on the loop: I/O, not CPU
        path = getattr(frame.parent, "file_path", None) or ""
    else:
        path = frame.file_path or ""
    totals[library(path)] += own
    for child in frame.children:
        attribute(child, totals)


async def _runs(graph: Any, count: int) -> None:
    for _ in range(count):
        await graph.ainvoke(_input(), {"configurable": {"thread_id": uuid.uuid4().hex}})


async def profile(backend: bk.Backend, runs: int, interval: float) -> dict[str, Any]:
    from pyinstrument import Profiler

    graph = build_chat_graph().compile(checkpointer=backend.saver)
    if backend.activate is not None:
        backend.activate()
    try:
        await _runs(graph, 20)  # warm: prepared statements, pools, caches
        profiler = Profiler(interval=interval, async_mode="disabled")
        wall, cpu = time.perf_counter(), time.process_time()
        profiler.start()
        await _runs(graph, runs)
        profiler.stop()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        if backend.deactivate is not None:
            backend.deactivate()
    totals: Counter[str] = Counter()
    session = profiler.last_session
    assert session is not None
    root = session.root_frame()
    if root is not None:
        attribute(root, totals)
    return {
        "wall_ms": wall / runs * 1000,
        "cpu_ms": cpu / runs * 1000,
        "by_library_ms": {name: t / runs * 1000 for name, t in totals.most_common()},
    }


def report(results: dict[str, dict[str, Any]]) -> str:
    impls = list(results)
    names: list[str] = []
    for result in results.values():
        names += [n for n in result["by_library_ms"] if n not in names]
    lines = [
        "| library (CPU ms per run, under the profiler) | " + " | ".join(impls) + " |",
        "|---|" + "---|" * len(impls),
    ]
    for name in names:
        cells = []
        for impl in impls:
            value = results[impl]["by_library_ms"].get(name, 0.0)
            cells.append(f"{value:.2f}" if value >= 0.005 else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(
        "| **process CPU per run** | "
        + " | ".join(f"**{results[i]['cpu_ms']:.2f}**" for i in impls)
        + " |"
    )
    lines.append(
        "| wall per run | " + " | ".join(f"{results[i]['wall_ms']:.2f}" for i in impls) + " |"
    )
    return "\n".join(lines)


async def main(runs: int, interval: float) -> None:
    admin_url, where = bk.server_admin_url()
    print(f"server: {where}")
    made: list[bk.Backend] = []
    try:
        for impl in (OURS, OURS_TRACED, UPSTREAM):
            url = await bk.fresh_database(admin_url, impl)
            if impl == UPSTREAM:
                made.append(await bk.make_upstream(url, {}))
            else:
                missing = {"store": "not profiled here"}
                made.append(await bk.make_ours(url, {}, missing, traced=impl == OURS_TRACED))
        from langgraph.checkpoint.memory import InMemorySaver

        made.append(bk.Backend(MEMORY, saver=InMemorySaver()))
        results = {}
        for backend in made:
            results[backend.name] = await profile(backend, runs, interval)
        print(report(results))
    finally:
        for backend in made:
            await backend.close()
        for impl in (OURS, OURS_TRACED, UPSTREAM):
            await bk.drop_database(admin_url, impl)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=150, help="profiled runs per implementation")
    parser.add_argument("--interval", type=float, default=0.0002, help="sampling interval (s)")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.interval))
