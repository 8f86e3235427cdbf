"""Run every workload on every implementation in one process and print the comparison.

    python -m benchmarks.run                 # full sizes (6-15 min on 2 cores, by load)
    python -m benchmarks.run --quick         # small sizes, a smoke test (< 2 min)
    python -m benchmarks.run --only alist,vector_search --rounds 3

Uses ``DATABASE_URL`` (any PostgreSQL with pgvector; the user must be allowed to create
databases) or, without it, starts the embedded PostgreSQL in ``.pgdata-bench``. Each
implementation gets a fresh database ``lgsa_bench_<impl>_<run tag>`` on that server, dropped at
the end (``--keep-databases`` leaves them for EXPLAIN ANALYZE).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from . import backends as bk
from .harness import (
    IMPL_LABELS,
    MEMORY,
    OURS,
    OURS_TRACED,
    PLAIN_SQL,
    UPSTREAM,
    WorkloadResult,
    machine_info,
    markdown_table,
    run_workload,
    write_json,
)
from .saver_workloads import GetTuple, GraphConcurrent, GraphSequential, ListHistory
from .store_workloads import (
    Documents,
    ListNamespaces,
    StoreFilteredSearch,
    StoreGet,
    StorePuts,
    VectorData,
    VectorSearch,
    make_index_config,
)
from .vectors import TableEmbeddings

DEFAULT_JSON = os.path.join(os.path.dirname(__file__), "results", "latest.json")


@dataclass(frozen=True)
class Sizes:
    rounds: int
    vector_rounds: int
    sequential_runs: int
    concurrent_runs: int
    get_tuple_calls: int
    list_checkpoints: int
    documents: int
    get_calls: int
    search_calls: int
    namespaces: int
    namespace_calls: int
    vectors: int
    queries: int


FULL = Sizes(
    rounds=5,
    vector_rounds=3,
    sequential_runs=20,
    concurrent_runs=48,
    get_tuple_calls=200,
    list_checkpoints=1000,
    documents=5000,
    get_calls=500,
    search_calls=200,
    namespaces=1000,
    namespace_calls=20,
    vectors=100_000,
    queries=50,
)
QUICK = Sizes(
    rounds=2,
    vector_rounds=2,
    sequential_runs=5,
    concurrent_runs=24,
    get_tuple_calls=50,
    list_checkpoints=100,
    documents=300,
    get_calls=50,
    search_calls=30,
    namespaces=100,
    namespace_calls=5,
    vectors=3_000,
    queries=10,
)


def build_workloads(sizes: Sizes, embedder: TableEmbeddings) -> list[tuple[Any, int]]:
    docs = Documents(sizes.documents, embedder)
    vectors = VectorData(sizes.vectors, sizes.queries, embedder)
    return [
        (GraphSequential(sizes.sequential_runs), sizes.rounds),
        (GraphConcurrent(sizes.concurrent_runs), sizes.rounds),
        (GraphConcurrent(sizes.concurrent_runs, group_commit=False), sizes.rounds),
        (GetTuple(sizes.get_tuple_calls), sizes.rounds),
        (ListHistory(sizes.list_checkpoints), sizes.rounds),
        (StorePuts(docs), sizes.rounds),
        (StoreGet(docs, sizes.get_calls), sizes.rounds),
        (StoreFilteredSearch(docs, sizes.search_calls), sizes.rounds),
        (ListNamespaces(sizes.namespaces, sizes.namespace_calls), sizes.rounds),
        # InMemoryStore searches by brute force in Python (~1 s per query at 100k items): it
        # is no floor there, and it would dominate the run, so it only joins the quick run.
        (VectorSearch(vectors, include_memory=sizes.vectors <= 20_000), sizes.vector_rounds),
    ]


def _git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=os.path.dirname(__file__),
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            cwd=os.path.dirname(__file__),
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except Exception:
        return None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--only", help="comma-separated workload names")
    parser.add_argument("--rounds", type=int, help="measured rounds per workload")
    parser.add_argument("--json", default=DEFAULT_JSON, help=f"output (default {DEFAULT_JSON})")
    parser.add_argument("--keep-databases", action="store_true")
    args = parser.parse_args(argv)

    sizes = QUICK if args.quick else FULL
    embedder = TableEmbeddings(dims=64)
    workloads = build_workloads(sizes, embedder)
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        unknown = wanted - {w.name for w, _ in workloads}
        if unknown:
            parser.error(
                f"unknown workloads {sorted(unknown)}; have {[w.name for w, _ in workloads]}"
            )
        workloads = [(w, r) for w, r in workloads if w.name in wanted]

    started = time.perf_counter()
    load_before = os.getloadavg()
    log(f"load average before: {load_before}")
    admin_url, server_desc = bk.server_admin_url()
    facts = await bk.server_facts(admin_url)
    log(f"server: {server_desc}, PostgreSQL {facts['server_version']}")
    if not facts["pgvector_available"]:
        log("this server has no pgvector: the store workloads need it")
        return 2

    index = make_index_config(embedder)
    skipped: dict[str, str] = {}
    missing = bk.ours_missing()
    for part, why in missing.items():
        skipped[f"ours.{part}"] = why
        log(f"our {part} does not import, its workloads run without it: {why}")
    backends: dict[str, bk.Backend] = {}
    try:
        backends[OURS] = await bk.make_ours(
            await bk.fresh_database(admin_url, OURS), index, missing
        )
        if any(OURS_TRACED in w.impls for w, _ in workloads):
            backends[OURS_TRACED] = await bk.make_ours(
                await bk.fresh_database(admin_url, OURS_TRACED), index, missing, traced=True
            )
        backends[UPSTREAM] = await bk.make_upstream(
            await bk.fresh_database(admin_url, UPSTREAM), index
        )
        backends[MEMORY] = bk.make_memory(index)
        if any(PLAIN_SQL in w.impls for w, _ in workloads):
            backends[PLAIN_SQL] = await bk.make_plain_sql(
                await bk.fresh_database(admin_url, PLAIN_SQL), index, ours_ok="store" not in missing
            )

        for backend in backends.values():
            if backend.url is not None:
                log(f"{backend.name}: {backend.url}")
        results: list[WorkloadResult] = []
        for workload, rounds in workloads:
            log(f"== {workload.name}: {workload.description}")
            result = await run_workload(workload, backends, rounds=args.rounds or rounds, log=log)
            results.append(result)
            log(f"   done in {result.seconds:.1f}s")
    finally:
        for backend in backends.values():
            await backend.close()
        if not args.keep_databases:
            for impl in backends:
                if impl != MEMORY:
                    await bk.drop_database(admin_url, impl)

    load_after = os.getloadavg()
    table = markdown_table(results)
    print(table)
    print()
    print(
        f"Medians of {args.rounds or sizes.rounds} interleaved rounds (vector search: "
        f"{args.rounds or sizes.vector_rounds}) after one warm-up round; ratio = upstream / "
        "ours on time or memory (> 1: ours faster or smaller). "
        f"Server: {server_desc}, PostgreSQL {facts['server_version']}. "
        f"Load average (1/5/15 min) before {_load(load_before)}, after {_load(load_after)}; "
        f"{os.cpu_count()} CPUs; total {time.perf_counter() - started:.0f}s."
    )
    payload = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git": _git_revision(),
        "mode": "quick" if args.quick else "full",
        "sizes": sizes.__dict__,
        "server": {"source": server_desc, **facts},
        "machine": machine_info(),
        "load_before": load_before,
        "load_after": load_after,
        "implementations": {k: v for k, v in IMPL_LABELS.items() if k in backends},
        "skipped": skipped,
        "seconds": round(time.perf_counter() - started, 1),
        "workloads": {r.name: r.to_json() for r in results},
        "table_markdown": table,
    }
    write_json(args.json, payload)
    log(f"wrote {args.json}")
    return 0


def _load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
