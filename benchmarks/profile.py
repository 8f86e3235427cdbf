"""Profile one workload on one implementation: where the time goes, and what SQL it sends.

    python -m benchmarks.profile aget_tuple                  # pyinstrument tree, ours
    python -m benchmarks.profile aget_tuple --impl upstream
    python -m benchmarks.profile store_aget --trace          # statements per round, by text
    python -m benchmarks.profile vector_search --explain     # EXPLAIN (ANALYZE, BUFFERS) of each

Needs ``pip install pyinstrument`` (only for the tree). Same sizes as ``benchmarks.run``
(``--quick`` for the small ones); the database ``lgsa_bench_<impl>_<run tag>`` is dropped at
the end unless ``--keep-database``.

``--trace`` records every statement the implementation sends during the measured rounds: for
ours through SQLAlchemy's ``before_cursor_execute`` event, for upstream by wrapping psycopg's
``AsyncCursor.execute``. ``--explain`` replays each distinct statement, with the parameters of
its first call, under ``EXPLAIN (ANALYZE, BUFFERS)`` inside a transaction that is rolled back.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from typing import Any

from . import backends as bk
from .harness import MEMORY, OURS, PLAIN_SQL, UPSTREAM
from .run import FULL, QUICK, build_workloads
from .store_workloads import make_index_config
from .vectors import TableEmbeddings

Statement = tuple[str, Any]


class StatementLog:
    def __init__(self) -> None:
        self.enabled = False
        self.calls: list[Statement] = []

    def record(self, sql: str, params: Any) -> None:
        if self.enabled:
            self.calls.append((sql, params))


def trace_ours(backend: bk.Backend, log: StatementLog) -> None:
    from sqlalchemy import event

    engine = (backend.saver or backend.store).db.bind  # the AsyncEngine the classes share
    if not hasattr(engine, "sync_engine"):
        raise RuntimeError("cannot find our engine to trace")

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        log.record(statement, parameters)


def trace_upstream(log: StatementLog) -> None:
    import psycopg

    original = psycopg.AsyncCursor.execute
    original_many = psycopg.AsyncCursor.executemany

    async def execute(self: Any, query: Any, params: Any = None, **kw: Any) -> Any:
        log.record(query if isinstance(query, str) else repr(query), params)
        return await original(self, query, params, **kw)

    async def executemany(self: Any, query: Any, params_seq: Any, **kw: Any) -> Any:
        params_seq = list(params_seq)
        for params in params_seq:
            log.record(query if isinstance(query, str) else repr(query), params)
        return await original_many(self, query, params_seq, **kw)

    psycopg.AsyncCursor.execute = execute  # type: ignore[method-assign]
    psycopg.AsyncCursor.executemany = executemany  # type: ignore[method-assign]


async def explain_ours(
    backend: bk.Backend, sql: str, params: Any, settings: Statement | None
) -> str:
    engine = (backend.saver or backend.store).db.bind
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        tx = driver.transaction()
        await tx.start()
        try:
            if settings is not None:
                # The session settings the call made before this statement (set_config(...,
                # is_local => true): hnsw.ef_search, iterative_scan), replayed in this transaction.
                await driver.fetch(settings[0], *(settings[1] or ()))
            rows = await driver.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *(params or ()))
        finally:
            await tx.rollback()
    return "\n".join(r[0] for r in rows)


async def explain_upstream(url: str, sql: str, params: Any) -> str:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url) as conn:
        async with conn.cursor() as cur:
            await cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            rows = await cur.fetchall()
        await conn.rollback()
    return "\n".join(r[0] for r in rows)


def _short(params: Any) -> str:
    text = repr(params)
    return text if len(text) < 300 else text[:300] + "..."


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("workload")
    parser.add_argument("--impl", default=OURS, choices=[OURS, UPSTREAM, MEMORY])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trace", action="store_true", help="count statements")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE each statement")
    parser.add_argument("--no-profile", action="store_true", help="skip pyinstrument")
    parser.add_argument("--interval", type=float, default=0.0005)
    parser.add_argument("--show-all", action="store_true", help="do not hide library frames")
    parser.add_argument("--keep-database", action="store_true", help="leave it for psql")
    args = parser.parse_args(argv)

    embedder = TableEmbeddings(dims=64)
    workloads = {w.name: w for w, _ in build_workloads(QUICK if args.quick else FULL, embedder)}
    workload = workloads[args.workload]
    index = make_index_config(embedder)
    admin_url, _ = bk.server_admin_url()
    if args.impl == OURS:
        backend = await bk.make_ours(
            await bk.fresh_database(admin_url, OURS), index, bk.ours_missing()
        )
    elif args.impl == UPSTREAM:
        backend = await bk.make_upstream(await bk.fresh_database(admin_url, UPSTREAM), index)
    else:
        backend = bk.make_memory(index)
    log = StatementLog()
    if args.trace or args.explain:
        if args.impl == OURS:
            trace_ours(backend, log)
        elif args.impl == UPSTREAM:
            trace_upstream(log)
    try:
        if args.keep_database:
            print(f"database (kept): {backend.url}", file=sys.stderr)
        if PLAIN_SQL in workload.impls and args.impl == PLAIN_SQL:
            raise SystemExit("profile the plain-SQL floor by reading its SQL instead")
        await workload.prepare(backend)
        await workload.measure(backend)  # warm-up: caches, prepared statements
        profiler = None
        if not args.no_profile:
            from pyinstrument import Profiler

            # "disabled": sample the whole thread, including tasks started before the profiler
            # (the store's batching task), not only the awaiting coroutine.
            profiler = Profiler(interval=args.interval, async_mode="disabled")
            profiler.start()
        log.enabled = True
        started = time.perf_counter()
        for _ in range(args.rounds):
            values = await workload.measure(backend)
        elapsed = time.perf_counter() - started
        log.enabled = False
        if profiler is not None:
            profiler.stop()
            print(profiler.output_text(unicode=True, color=False, show_all=args.show_all))
        print(f"{args.rounds} rounds in {elapsed:.2f}s; last round: {values}")
        if log.calls:
            counts = Counter(sql for sql, _ in log.calls)
            print(
                f"\n{len(log.calls)} statements in {args.rounds} rounds "
                f"({len(log.calls) / args.rounds:.1f} per round), {len(counts)} distinct:"
            )
            first = {}
            for sql, params in log.calls:
                first.setdefault(sql, params)
            for sql, n in counts.most_common():
                print(f"\n--- {n}x ---\n{sql.strip()[:1500]}")
                print(f"first params: {_short(first[sql])}")
        if args.explain:
            seen: set[str] = set()
            settings: Statement | None = None
            for sql, params in log.calls:
                head = sql.strip().upper()
                if head.startswith("SELECT SET_CONFIG"):
                    settings = (sql, params)
                    continue
                if sql in seen or head.startswith(("BEGIN", "COMMIT", "SET", "RESET")):
                    continue
                seen.add(sql)
                if args.impl == OURS:
                    plan = await explain_ours(backend, sql, params, settings)
                    if settings is not None:
                        print(f"\n(settings replayed first: {_short(settings[1])})")
                else:
                    assert backend.url is not None
                    plan = await explain_upstream(backend.url, sql, params)
                print(f"\n=== EXPLAIN ANALYZE ===\n{sql.strip()[:800]}\n--\n{plan}")
    finally:
        await backend.close()
        if backend.url is not None and not args.keep_database:
            await bk.drop_database(admin_url, args.impl)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
