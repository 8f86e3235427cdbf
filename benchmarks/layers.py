"""What each layer between our code and the server costs, per statement.

    python -m benchmarks.layers              # ~1 min
    python -m benchmarks.layers --calls 5000

Two of the saver's own statements, with the values a graph sends: the checkpoint read of a
50-checkpoint thread's newest checkpoint (one row with its blobs and writes) and the put of a
checkpoint with one blob. Each runs many times through each stack below, one after another in
rotated order, on one connection pool of one engine; the table shows per statement the client's
CPU time (this process, every thread) and the wall time, medians of the rounds. "Held" rows reuse
one checked-out connection; the others check a connection out of the pool per statement, as a
saver call does.

Stacks, top to bottom:

- *driver, held*: ``asyncpg.Connection.fetch`` on a connection already out of the pool (the
  floor);
- *driver via raw_connection*: ``AsyncEngine.raw_connection()``, its ``driver_connection``,
  ``close()``: the shortcut ``Database.fetch`` takes when nothing observes the engine and its
  pool is a ``QueuePool`` with room for the connection;
- *driver via AsyncConnection*: ``engine.connect()`` at the engine's default isolation,
  ``get_raw_connection().driver_connection``, close: the shortcut on any other pool;
- *driver via AsyncConnection, AUTOCOMMIT*: the same on an AUTOCOMMIT connection;
- *exec_driver_sql*: ``engine.connect()`` (AUTOCOMMIT), ``exec_driver_sql`` of the statement
  compiled once, close: the observable path;
- *exec_driver_sql + listener*: the same with a no-op ``before_cursor_execute`` listener;
- *exec_driver_sql + listener + our span*: the same inside the saver's own OpenTelemetry span
  (``telemetry.traced``, the decorator on every saver method), recorded by the benchmarks'
  SDK ``TracerProvider`` with a ``BatchSpanProcessor`` (:mod:`benchmarks.tracing`): the
  statement of the "traced" column;
- *execute(Core)*: ``engine.connect()`` (AUTOCOMMIT), ``conn.execute(statement, params)``,
  close: what plain SQLAlchemy code does (compiled cache, cache key);
- *async with + execute(Core)*: the same inside ``async with engine.connect()`` (whose close
  runs in a task of its own);
- *engine.begin() + execute(Core)*: a transaction, BEGIN and COMMIT round trips around it;
- *connect + close only*: ``engine.connect()`` (AUTOCOMMIT) and close, no statement; and the
  same at the engine's default isolation level.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from langgraph_sqlalchemy import AsyncSQLAlchemySaver, migrations
from langgraph_sqlalchemy.checkpoint.repository import repository_for
from langgraph_sqlalchemy.db import BoundStatement, Database
from langgraph_sqlalchemy.engine import create_engine
from langgraph_sqlalchemy.telemetry import traced as traced_operation

from . import backends as bk
from . import tracing
from .saver_workloads import make_long_thread

Stack = Callable[[BoundStatement], Awaitable[Any]]


class _Spanned:
    """One statement per call inside the span every saver method opens."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.db = Database(engine)  # what the span's attributes are read from
        self.autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    @traced_operation("aget_tuple", "checkpoints")
    async def call(self, bound: BoundStatement) -> None:
        conn = await self.autocommit.connect()
        await bound.execute(conn)
        await conn.close()


def stacks(engine: AsyncEngine, traced: AsyncEngine) -> dict[str, Callable[[], Any]]:
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    traced_autocommit = traced.execution_options(isolation_level="AUTOCOMMIT")

    def on_driver(bound: BoundStatement) -> Callable[[int], Awaitable[None]]:
        sql, values = bound.driver_form(engine.dialect) or ("", ())

        async def run(calls: int) -> None:
            conn = await autocommit.connect()
            driver: Any = (await conn.get_raw_connection()).driver_connection
            try:
                for _ in range(calls):
                    await driver.fetch(sql, *values)
            finally:
                await conn.close()

        return run

    def via_raw_connection(bound: BoundStatement) -> Callable[[int], Awaitable[None]]:
        sql, values = bound.driver_form(engine.dialect) or ("", ())

        async def run(calls: int) -> None:
            for _ in range(calls):
                raw = await engine.raw_connection()
                driver: Any = raw.driver_connection
                await driver.fetch(sql, *values)
                raw.close()

        return run

    def via_connection(bound: BoundStatement, target: AsyncEngine) -> Any:
        sql, values = bound.driver_form(engine.dialect) or ("", ())

        async def run(calls: int) -> None:
            for _ in range(calls):
                conn = await target.connect()
                driver: Any = (await conn.get_raw_connection()).driver_connection
                await driver.fetch(sql, *values)
                await conn.close()

        return run

    def exec_driver(bound: BoundStatement, target: AsyncEngine) -> Any:
        async def run(calls: int) -> None:
            for _ in range(calls):
                conn = await target.connect()
                await bound.execute(conn)
                await conn.close()

        return run

    async def execute_core(conn: AsyncConnection, statement: Any, params: Any) -> None:
        result = await conn.execute(statement, params)
        if result.returns_rows:
            result.all()

    def core_on_connection(bound: BoundStatement) -> Any:
        statement, params = bound.statement.statement, dict(bound.params)

        async def run(calls: int) -> None:
            for _ in range(calls):
                conn = await autocommit.connect()
                await execute_core(conn, statement, params)
                await conn.close()

        return run

    def core_in_context(
        bound: BoundStatement, open_: Callable[[], AbstractAsyncContextManager[AsyncConnection]]
    ) -> Any:
        """``async with open_() as conn``: ``engine.connect()`` or ``engine.begin()``."""
        statement, params = bound.statement.statement, dict(bound.params)

        async def run(calls: int) -> None:
            for _ in range(calls):
                async with open_() as conn:
                    await execute_core(conn, statement, params)

        return run

    spanned = _Spanned(traced)

    def exec_driver_in_span(bound: BoundStatement) -> Any:
        async def run(calls: int) -> None:
            tracing.activate()  # spans are recorded during this stack's turns only
            try:
                for _ in range(calls):
                    await spanned.call(bound)
            finally:
                tracing.deactivate()

        return run

    def connect_only(target: AsyncEngine) -> Any:
        async def run(calls: int) -> None:
            for _ in range(calls):
                conn = await target.connect()
                await conn.close()

        return run

    return {
        "driver, held": on_driver,
        "driver via raw_connection (our shortcut)": via_raw_connection,
        "driver via AsyncConnection (the shortcut, other pools)": lambda b: via_connection(
            b, engine
        ),
        "driver via AsyncConnection, AUTOCOMMIT": lambda b: via_connection(b, autocommit),
        "exec_driver_sql (our observable path)": lambda b: exec_driver(b, autocommit),
        "exec_driver_sql + listener": lambda b: exec_driver(b, traced_autocommit),
        "exec_driver_sql + listener + our span": exec_driver_in_span,
        "execute(Core)": core_on_connection,
        "async with + execute(Core)": lambda b: core_in_context(b, autocommit.connect),
        "engine.begin() + execute(Core)": lambda b: core_in_context(b, engine.begin),
        "connect + close only": lambda b: connect_only(autocommit),
        "connect + close only, default isolation": lambda b: connect_only(engine),
    }


async def measure(
    runners: dict[str, Callable[[int], Awaitable[None]]], calls: int, rounds: int
) -> dict[str, tuple[float, float]]:
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runners}
    names = list(runners)
    for round_no in range(-1, rounds):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            cpu, wall = time.process_time(), time.perf_counter()
            await runners[name](calls)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            if round_no >= 0:
                samples[name].append((cpu / calls, wall / calls))
    return {
        name: (
            statistics.median(s[0] for s in values),
            statistics.median(s[1] for s in values),
        )
        for name, values in samples.items()
    }


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.layers", description=__doc__)
    parser.add_argument("--calls", type=int, default=2000, help="statements per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    admin_url, where = bk.server_admin_url()
    url = await bk.fresh_database(admin_url, "layers")
    engine = create_engine(url, pool_size=4, max_overflow=0)
    traced = create_engine(url, pool_size=4, max_overflow=0)
    event.listen(traced.sync_engine, "before_cursor_execute", lambda *a: None)
    try:
        await migrations.upgrade(engine)
        backend = bk.Backend("ours", url=url, saver=AsyncSQLAlchemySaver(engine))
        thread = await make_long_thread(backend, 50)
        repository = repository_for(None)
        read = repository.select_checkpoint_tuple(thread, "", None)
        put = repository.upsert_checkpoint(
            thread_id="layers-put",
            checkpoint_ns="",
            checkpoint_id="1ef-layers",
            parent_checkpoint_id=None,
            checkpoint_json='{"v": 4, "id": "1ef-layers", "channel_values": {}}',
            metadata_json='{"step": 1}',
            blobs=[("messages", "00000000000000000000000000000001.5", "msgpack", b"x" * 600)],
        )
        table = stacks(engine, traced)
        print(f"server: {where}; {args.calls} statements x {args.rounds} rounds per stack")
        print()
        print("| stack | read: CPU µs | read: wall µs | put: CPU µs | put: wall µs |")
        print("|---|---|---|---|---|")
        read_runs = {name: build(read) for name, build in table.items()}
        put_runs = {name: build(put) for name, build in table.items()}
        reads = await measure(read_runs, args.calls, args.rounds)
        puts = await measure(put_runs, args.calls, args.rounds)
        for name in table:
            r, p = reads[name], puts[name]
            print(
                f"| {name} | {r[0] * 1e6:.0f} | {r[1] * 1e6:.0f} | "
                f"{p[0] * 1e6:.0f} | {p[1] * 1e6:.0f} |"
            )
    finally:
        await engine.dispose()
        await traced.dispose()
        await bk.drop_database(admin_url, "layers")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
