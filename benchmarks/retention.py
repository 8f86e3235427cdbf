"""Thread retention (issue 13): what activity tracking costs the graph, and a big sweep under load.

    python -m benchmarks.retention                      # full: 100k expired threads
    python -m benchmarks.retention --threads 20000      # a smaller sweep
    python -m benchmarks.retention --quick              # smoke test (< 1 min)

1. **Tracking overhead.** The sequential and the 48-concurrent graph workloads of
   :mod:`benchmarks.saver_workloads` on two savers over one database, each on an engine of its
   own (pool of 10): ``tracked`` (the default: put and put-writes carry the activity touch) and
   ``untracked`` (``track_activity=False``: the statements as before revision 0007). Interleaved
   rounds; the cost is tracked / untracked time, as the median of the per-round ratios (each
   round runs the two back to back, order alternating) and as the ratio of the medians; the
   issue's target is at most 1.05. For information, the same for bare ``aput`` +
   ``aput_writes`` pairs on new threads (every put records a new thread: the worst case).
2. **Sweep under load.** ``--threads`` expired threads of 10 checkpoints each (copies of a real
   thread a graph wrote, with its blobs and writes, last written in 2020) are swept by one saver
   on an engine of its own (another replica) while graph runs keep going on the tracked saver.
   Reported: threads/s, how each sweep batch took, and the graph runs' and single writes'
   latencies before and during the sweep. The issue's bar: no write stalls longer than one
   sweep batch.

Uses ``DATABASE_URL`` or the embedded PostgreSQL in ``.pgdata-bench`` (see benchmarks/README.md),
in a fresh database of its own, dropped at the end (``--keep-database`` keeps it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langgraph.checkpoint.base import empty_checkpoint
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from langgraph_sqlalchemy import AsyncSQLAlchemySaver, migrations
from langgraph_sqlalchemy.engine import create_engine

from . import backends as bk
from .harness import (
    Metric,
    WorkloadResult,
    machine_info,
    milliseconds,
    run_workload,
    write_json,
)
from .saver_workloads import GraphConcurrent, GraphSequential, _input, build_chat_graph

TRACKED = "tracked"
UNTRACKED = "untracked"
DEFAULT_JSON = os.path.join(os.path.dirname(__file__), "results", "retention.json")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class TimedSaver(AsyncSQLAlchemySaver):
    """Records how long each ``aput`` / ``aput_writes`` took while ``samples`` is a list."""

    samples: list[float] | None = None

    async def aput(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await super().aput(*args, **kwargs)
        finally:
            if self.samples is not None:
                self.samples.append(time.perf_counter() - start)

    async def aput_writes(self, *args: Any, **kwargs: Any) -> None:
        start = time.perf_counter()
        try:
            await super().aput_writes(*args, **kwargs)
        finally:
            if self.samples is not None:
                self.samples.append(time.perf_counter() - start)


# --- 1. tracking overhead ---------------------------------------------------------------------


@dataclass
class PutPairs:
    """``calls`` times ``aput`` + ``aput_writes``, one after another, each pair on a thread of
    its own: every put records a new thread (the touch's costliest form, an insert), its
    writes follow within the half second a saver does not touch a thread again. The
    statements without a graph around them: the worst case the graph workloads dilute."""

    calls: int
    needs: str = "saver"
    name: str = "put_pairs"
    impls: Sequence[str] = (TRACKED, UNTRACKED)
    metrics = (Metric("time", "aput + aput_writes", "ms", milliseconds, 3),)
    targets = ()

    @property
    def description(self) -> str:
        return f"{self.calls} x (aput + aput_writes), a new thread each, sequential"

    async def prepare(self, backend: bk.Backend) -> None:
        pass

    async def measure(self, backend: bk.Backend) -> dict[str, float]:
        saver = backend.saver
        start = time.perf_counter()
        for step in range(self.calls):
            config: Any = {"configurable": {"thread_id": uuid.uuid4().hex, "checkpoint_ns": ""}}
            cp = empty_checkpoint()
            cp["channel_values"] = {"step": step, "items": [step, "x" * 200]}
            versions = {"step": f"{step + 1:032}.1", "items": f"{step + 1:032}.1"}
            cp["channel_versions"] = dict(versions)
            config = await saver.aput(config, cp, {"step": step}, versions)
            await saver.aput_writes(config, [("items", [step])], f"task-{step}")
        return {"time": (time.perf_counter() - start) / self.calls}


def _paired(result: WorkloadResult) -> dict[str, float]:
    """Per round, tracked / untracked (adjacent in time, order alternating): the median and
    quartiles of those ratios, robust to a slow spell of a shared machine."""
    times = result.samples["time"]
    pairs = sorted(t / u for t, u in zip(times[TRACKED], times[UNTRACKED], strict=True))
    quartiles = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else [pairs[0]] * 3
    return {"median": statistics.median(pairs), "q1": quartiles[0], "q3": quartiles[2]}


async def tracking_overhead(
    url: str, *, sequential_runs: int, concurrent_runs: int, put_pairs: int, rounds: int
) -> dict[str, Any]:
    engines = [create_engine(url, pool_size=bk.POOL_SIZE, max_overflow=0) for _ in range(2)]
    try:
        savers = {
            TRACKED: bk.Backend(TRACKED, url=url, saver=AsyncSQLAlchemySaver(engines[0])),
            UNTRACKED: bk.Backend(
                UNTRACKED, url=url, saver=AsyncSQLAlchemySaver(engines[1], track_activity=False)
            ),
        }
        out: dict[str, Any] = {}
        workloads: list[Any] = [
            GraphSequential(sequential_runs, impls=(TRACKED, UNTRACKED)),
            GraphConcurrent(concurrent_runs, impls=(TRACKED, UNTRACKED)),
            PutPairs(put_pairs),
        ]
        for workload in workloads:
            log(f"== {workload.name}: {workload.description}, tracked vs untracked")
            result = await run_workload(workload, savers, rounds=rounds, log=log)
            tracked = result.median("time", TRACKED)
            untracked = result.median("time", UNTRACKED)
            assert tracked is not None and untracked is not None
            paired = _paired(result)
            out[workload.name] = {
                "description": workload.description,
                "rounds": rounds,
                "tracked_per_s": 1 / tracked,
                "untracked_per_s": 1 / untracked,
                "ratio_of_medians": tracked / untracked,  # time per op, tracked / untracked
                "paired_ratio": paired,
                "target": workload.name != "put_pairs",
                "samples": result.samples["time"],
            }
            log(
                f"   cost (time per op, tracked / untracked): ratio of medians "
                f"{tracked / untracked:.3f}, paired median {paired['median']:.3f} "
                f"(IQR {paired['q1']:.3f}-{paired['q3']:.3f})"
            )
        return out
    finally:
        for engine in engines:
            await engine.dispose()


# --- 2. a sweep under load -----------------------------------------------------------------------


async def seed_expired_threads(engine: AsyncEngine, threads: int, *, chunk: int = 5000) -> str:
    """``threads`` copies of one real 10-checkpoint thread, all last written on 2020-01-01."""
    saver = AsyncSQLAlchemySaver(engine)
    template = f"template-{uuid.uuid4().hex[:8]}"
    # 8 nodes: the input checkpoint, START's, one per node: 10 checkpoints.
    graph = build_chat_graph(steps=8).compile(checkpointer=saver)
    await graph.ainvoke(_input(), {"configurable": {"thread_id": template}}, durability="sync")
    copies = {
        "checkpoints": (
            "thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, "
            "metadata",
            "checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, "
            "jsonb_set(checkpoint, '{ts}', '\"2020-01-01T00:00:00+00:00\"'), metadata",
        ),
        "checkpoint_blobs": (
            "thread_id, checkpoint_ns, channel, version, type, blob",
            "checkpoint_ns, channel, version, type, blob",
        ),
        "checkpoint_writes": (
            "thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path",
            "checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path",
        ),
    }
    started = time.perf_counter()
    for first in range(0, threads, chunk):
        last = min(first + chunk, threads)
        async with engine.begin() as conn:
            # Bulk loading with generate_series: a benchmark fixture, values bound.
            for table, (columns, select_list) in copies.items():
                await conn.execute(
                    text(
                        f"INSERT INTO {table} ({columns}) "
                        f"SELECT 'expired-' || lpad(g::text, 7, '0'), {select_list} "
                        f"FROM {table} CROSS JOIN generate_series(:first, :last - 1) AS g "
                        "WHERE thread_id = :template"
                    ),
                    {"first": first, "last": last, "template": template},
                )
            await conn.execute(
                text(
                    "INSERT INTO checkpoint_thread_activity (thread_id, last_activity) "
                    "SELECT 'expired-' || lpad(g::text, 7, '0'), '2020-01-01' "
                    "FROM generate_series(:first, :last - 1) AS g"
                ),
                {"first": first, "last": last},
            )
        log(f"   seeded {last:,}/{threads:,} threads ({time.perf_counter() - started:.0f}s)")
    await saver.adelete_thread(template)
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE"))
        counts = {
            table: (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            for table in (*copies, "checkpoint_thread_activity")
        }
    log(f"   rows: {counts}")
    return template


@dataclass
class Load:
    """Graph runs going on in ``workers`` loops until stopped; latencies per phase."""

    saver: TimedSaver
    workers: int
    runs: dict[str, list[float]] = field(default_factory=dict)
    writes: dict[str, list[float]] = field(default_factory=dict)
    phase: str = "warmup"
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.runs.setdefault(phase, [])
        self.saver.samples = self.writes.setdefault(phase, [])

    async def _loop(self) -> None:
        graph = build_chat_graph().compile(checkpointer=self.saver)
        while not self._stop.is_set():
            phase = self.phase
            start = time.perf_counter()
            await graph.ainvoke(_input(), {"configurable": {"thread_id": uuid.uuid4().hex}})
            if phase == self.phase:
                self.runs[phase].append(time.perf_counter() - start)

    def start(self) -> None:
        self.set_phase("warmup")
        self._tasks = [asyncio.ensure_future(self._loop()) for _ in range(self.workers)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


LOAD_APPLICATION = "lgsa-bench-load"
SWEEP_APPLICATION = "lgsa-bench-sweep"
# pg_stat_activity's Lock waits that are not on a row, a transaction or a table another
# session holds: relation extension (growing a file) and its page-level sibling.
_STORAGE_WAITS = frozenset({"extend", "page"})


@dataclass
class LockWaits:
    """Samples ``pg_stat_activity`` every ``interval`` seconds for the graph load's backends
    waiting on a lock (``wait_event_type = 'Lock'``: a row or transaction lock another
    session holds, which is how a sweep could stall a write), per phase.

    Wall latencies on a small machine mostly measure CPU scheduling (the longest write before
    the sweep starts is often longer than a sweep batch too); this measures what the sweep
    could cause: a write waiting for the sweep's locks, told apart by the blocking session's
    ``application_name``. Sampling sees waits longer than about one interval.
    """

    engine: AsyncEngine
    interval: float = 0.005
    samples: dict[str, int] = field(default_factory=dict)
    waiting: dict[str, int] = field(default_factory=dict)
    longest: dict[str, float] = field(default_factory=dict)
    events: dict[tuple[str, str], int] = field(default_factory=dict)
    on_sweep: dict[str, int] = field(default_factory=dict)
    longest_on_sweep: dict[str, float] = field(default_factory=dict)
    phase: str = "warmup"
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def set_phase(self, phase: str) -> None:
        self.phase = phase

    async def _run(self) -> None:
        since: dict[int, float] = {}  # backend pid -> when it was first seen waiting
        since_sweep: dict[int, float] = {}  # the same, for waits on the sweep's session
        async with self.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            while not self._stop.is_set():
                phase = self.phase
                rows = (
                    await conn.execute(
                        text(
                            "SELECT a.pid, a.wait_event || ' on ' || coalesce(("
                            "SELECT b.application_name FROM pg_stat_activity b "
                            "WHERE b.pid = ANY(pg_blocking_pids(a.pid)) LIMIT 1), '?') "
                            "FROM pg_stat_activity a "
                            "WHERE a.application_name = :app AND a.wait_event_type = 'Lock'"
                        ),
                        {"app": LOAD_APPLICATION},
                    )
                ).all()
                now = time.perf_counter()
                for _, event in rows:
                    key = (phase, event)
                    self.events[key] = self.events.get(key, 0) + 1
                # Waits to extend a table or index file ("extend"), which concurrent inserts
                # have with or without a sweep, are not waits on what another session locked.
                pids = {pid for pid, event in rows if event.split()[0] not in _STORAGE_WAITS}
                on_sweep = {pid for pid, event in rows if event.endswith(SWEEP_APPLICATION)}
                self.samples[phase] = self.samples.get(phase, 0) + 1
                self.waiting[phase] = self.waiting.get(phase, 0) + len(pids)
                self.on_sweep[phase] = self.on_sweep.get(phase, 0) + len(on_sweep)
                for waits, started, longest in (
                    (pids, since, self.longest),
                    (on_sweep, since_sweep, self.longest_on_sweep),
                ):
                    for pid in waits:
                        first = started.setdefault(pid, now)
                        # Seen waiting from ``first`` to now: at least that long, plus up to
                        # one interval on either side that sampling cannot see.
                        longest[phase] = max(longest.get(phase, 0.0), now - first)
                    for pid in list(started):
                        if pid not in waits:
                            del started[pid]
                await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    def summary(self, phase: str) -> dict[str, Any]:
        return {
            "by_wait_event": {e: n for (p, e), n in sorted(self.events.items()) if p == phase},
            "samples": self.samples.get(phase, 0),
            "backends_waiting": self.waiting.get(phase, 0),
            "longest_seen_ms": self.longest.get(phase, 0.0) * 1000,
            "waiting_on_sweep": self.on_sweep.get(phase, 0),
            "longest_on_sweep_ms": self.longest_on_sweep.get(phase, 0.0) * 1000,
            "interval_ms": self.interval * 1000,
        }


def _summary(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    return {
        "n": len(values),
        "p50_ms": statistics.median(values) * 1000,
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "max_ms": max(values) * 1000,
    }


async def sweep_under_load(
    url: str, *, threads: int, batch_size: int, workers: int, baseline_seconds: float
) -> dict[str, Any]:
    load_engine = create_engine(
        url,
        pool_size=bk.POOL_SIZE,
        max_overflow=0,
        connect_args={"server_settings": {"application_name": LOAD_APPLICATION}},
    )
    sweep_engine = create_engine(
        url,
        pool_size=2,
        max_overflow=0,
        connect_args={"server_settings": {"application_name": SWEEP_APPLICATION}},
    )
    watch_engine = create_engine(url, pool_size=1, max_overflow=0)
    locks = LockWaits(watch_engine)
    try:
        log(f"== sweep: seeding {threads:,} expired threads of 10 checkpoints")
        await seed_expired_threads(load_engine, threads)
        load = Load(TimedSaver(load_engine), workers)
        load.start()
        locks.start()
        await asyncio.sleep(2.0)
        load.set_phase("before")
        locks.set_phase("before")
        log(f"   graph load alone ({workers} loops) for {baseline_seconds:.0f}s")
        await asyncio.sleep(baseline_seconds)

        sweeper = AsyncSQLAlchemySaver(
            sweep_engine, ttl={"strategy": "delete", "default_ttl": 30 * 24 * 60}
        )
        batches: list[float] = []
        last = time.perf_counter()

        def progress(examined: int, due: int) -> None:
            nonlocal last
            now = time.perf_counter()
            batches.append(now - last)
            last = now
            if len(batches) % 50 == 0:
                log(f"   swept {examined:,}/{due:,}")

        load.set_phase("during")
        locks.set_phase("during")
        started = last = time.perf_counter()
        removed = await sweeper.asweep_ttl(batch_size=batch_size, progress=progress)
        seconds = time.perf_counter() - started
        load.set_phase("after")
        locks.set_phase("after")
        await load.stop()
        await locks.stop()
        # The first "batch" includes the sweep's set-up (adoption scan, count).
        setup = batches.pop(0) if len(batches) > 1 else 0.0
        result = {
            "threads": threads,
            "removed": removed,
            "batch_size": batch_size,
            "sweep_seconds": seconds,
            "threads_per_second": removed / seconds if seconds else None,
            "first_batch_with_setup_ms": setup * 1000,
            "batch": _summary(batches),
            "graph_runs_before": _summary(load.runs.get("before", [])),
            "graph_runs_during": _summary(load.runs.get("during", [])),
            "writes_before": _summary(load.writes.get("before", [])),
            "writes_during": _summary(load.writes.get("during", [])),
            "graph_runs_per_s_before": len(load.runs.get("before", [])) / baseline_seconds,
            "graph_runs_per_s_during": len(load.runs.get("during", [])) / seconds,
            "lock_waits_before": locks.summary("before"),
            "lock_waits_during": locks.summary("during"),
            "workers": workers,
        }
        async with sweep_engine.connect() as conn:
            left = (
                await conn.execute(
                    text("SELECT count(*) FROM checkpoints WHERE thread_id LIKE 'expired-%'")
                )
            ).scalar_one()
        result["expired_checkpoints_left"] = left
        return result
    finally:
        await locks.stop()
        await load_engine.dispose()
        await sweep_engine.dispose()
        await watch_engine.dispose()


def _events(summary: dict[str, Any]) -> str:
    found = summary.get("by_wait_event") or {}
    return ", ".join(f"{event} {count}" for event, count in found.items()) or "none"


def _report(overhead: dict[str, Any], sweep: dict[str, Any] | None) -> str:
    lines = [
        "| workload | tracked (/s) | untracked (/s) | cost: ratio of medians | cost: paired "
        "median (IQR) | target <= 1.05 |",
        "|---|---|---|---|---|---|",
    ]
    for row in overhead.values():
        paired = row["paired_ratio"]
        met = ("yes" if paired["median"] <= 1.05 else "**no**") if row["target"] else "(info)"
        lines.append(
            f"| {row['description']} | {row['tracked_per_s']:.1f} | "
            f"{row['untracked_per_s']:.1f} | {row['ratio_of_medians']:.3f} | "
            f"{paired['median']:.3f} ({paired['q1']:.3f}-{paired['q3']:.3f}) | {met} |"
        )
    if sweep is not None:
        b, wb, wd = sweep["batch"], sweep["writes_before"], sweep["writes_during"]
        rb, rd = sweep["graph_runs_before"], sweep["graph_runs_during"]
        lines += [
            "",
            f"Sweep of {sweep['threads']:,} expired threads (10 checkpoints each), "
            f"batch {sweep['batch_size']}, under {sweep['workers']} graph loops: "
            f"{sweep['removed']:,} removed in {sweep['sweep_seconds']:.1f}s = "
            f"**{sweep['threads_per_second']:,.0f} threads/s**; batches p50 "
            f"{b.get('p50_ms', 0):.0f} ms, max {b.get('max_ms', 0):.0f} ms.",
            "",
            "| | before the sweep | during the sweep |",
            "|---|---|---|",
            f"| graph runs/s | {sweep['graph_runs_per_s_before']:.1f} | "
            f"{sweep['graph_runs_per_s_during']:.1f} |",
            f"| graph run p50 / p99 (ms) | {rb.get('p50_ms', 0):.0f} / {rb.get('p99_ms', 0):.0f} "
            f"| {rd.get('p50_ms', 0):.0f} / {rd.get('p99_ms', 0):.0f} |",
            f"| single write p50 / p99 / max (ms) | {wb.get('p50_ms', 0):.1f} / "
            f"{wb.get('p99_ms', 0):.1f} / {wb.get('max_ms', 0):.0f} | {wd.get('p50_ms', 0):.1f} / "
            f"{wd.get('p99_ms', 0):.1f} / {wd.get('max_ms', 0):.0f} |",
        ]
        lb, ld = sweep.get("lock_waits_before", {}), sweep.get("lock_waits_during", {})
        if ld:
            lines += [
                f"| graph backends seen waiting on a row, transaction or table lock (samples "
                f"every {ld['interval_ms']:.0f} ms) | {lb.get('backends_waiting', 0)} in "
                f"{lb.get('samples', 0):,} | {ld['backends_waiting']} in {ld['samples']:,} |",
                f"| every Lock wait seen, by wait event and the blocker's application_name "
                f"| {_events(lb)} | {_events(ld)} |",
                f"| longest lock wait seen (ms) | {lb.get('longest_seen_ms', 0):.0f} | "
                f"{ld['longest_seen_ms']:.0f} |",
                f"| of them waiting on the sweep's session; longest (ms) | "
                f"{lb.get('waiting_on_sweep', 0)}; {lb.get('longest_on_sweep_ms', 0):.0f} | "
                f"{ld['waiting_on_sweep']}; {ld['longest_on_sweep_ms']:.0f} |",
                "",
                f"Graph writes seen waiting on the sweep: {ld['waiting_on_sweep']} times, longest "
                f"{ld['longest_on_sweep_ms']:.0f} ms, against the longest batch "
                f"{b.get('max_ms', 0):.0f} ms: "
                + (
                    "no write waited on the sweep longer than one batch."
                    if ld["longest_on_sweep_ms"] <= b.get("max_ms", 0)
                    else "**a write waited on the sweep longer than a batch.**"
                ),
            ]
        lines += [
            "",
            f"Longest write during the sweep {wd.get('max_ms', 0):.0f} ms (before it: "
            f"{wb.get('max_ms', 0):.0f} ms) vs longest batch {b.get('max_ms', 0):.0f} ms: "
            "wall time, which on a small machine is mostly CPU scheduling of the load, the "
            "sweep and the server sharing its cores.",
        ]
    return "\n".join(lines)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retention", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--rounds", type=int, help="measured rounds of the overhead workloads")
    parser.add_argument("--threads", type=int, help="expired threads to sweep (default 100000)")
    parser.add_argument("--batch-size", type=int, default=200, help="threads per sweep batch")
    parser.add_argument("--workers", type=int, default=8, help="graph loops during the sweep")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--json", default=DEFAULT_JSON)
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 25)
    threads = args.threads or (2_000 if args.quick else 100_000)

    admin_url, server_desc = bk.server_admin_url()
    facts = await bk.server_facts(admin_url)
    log(f"server: {server_desc}, PostgreSQL {facts['server_version']}; load {os.getloadavg()}")
    url = await bk.fresh_database(admin_url, "retention")
    started = time.perf_counter()
    load_before = os.getloadavg()
    try:
        engine = create_engine(url)
        try:
            await migrations.upgrade(engine)
        finally:
            await engine.dispose()
        overhead = {}
        if not args.skip_overhead:
            overhead = await tracking_overhead(
                url,
                sequential_runs=5 if args.quick else 20,
                concurrent_runs=48,
                put_pairs=50 if args.quick else 200,
                rounds=rounds,
            )
        sweep = None
        if not args.skip_sweep:
            sweep = await sweep_under_load(
                url,
                threads=threads,
                batch_size=args.batch_size,
                workers=args.workers,
                baseline_seconds=3 if args.quick else 15,
            )
    finally:
        if not args.keep_database:
            await bk.drop_database(admin_url, "retention")
    report = _report(overhead, sweep)
    print(report)
    print(
        f"\nServer: {server_desc}, PostgreSQL {facts['server_version']}; {os.cpu_count()} CPUs; "
        f"load average before {load_before}, after {os.getloadavg()}; "
        f"total {time.perf_counter() - started:.0f}s."
    )
    write_json(
        args.json,
        {
            "machine": machine_info(),
            "server": {"source": server_desc, **facts},
            "overhead": overhead,
            "sweep": sweep,
            "report_markdown": report,
        },
    )
    log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
