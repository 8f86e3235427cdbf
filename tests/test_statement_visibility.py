"""Every statement the server runs for us is seen once by the host's listeners and logging.

A host that watches its engine (a tracer on ``before_cursor_execute``, an audit hook on
``before_execute``, ``echo`` or the ``sqlalchemy.engine`` logger) must see each statement the
library sends exactly once: not zero times (a statement sent around SQLAlchemy), not twice. The
server is the judge: a PostgreSQL cluster of this module's own, with ``pg_stat_statements``
loaded and every statement logged (JSON log, with each statement's query id), runs real graphs
(interrupts, resumes, subgraphs, Send fan-out, delta channels) and store calls, and the counts
on both sides are compared statement by statement.

A statement the server refuses is sent once too, on both paths: through SQLAlchemy on an
observed engine (where ``handle_error`` sees it once) and straight on the driver connection on a
plain engine (the shortcut of :meth:`Database.fetch`). The server's log (each ERROR with its
SQLSTATE) counts what reached it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore, GetOp, PutOp, SearchOp
from langgraph.types import Command
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.faults.cluster import PrivateCluster
from typing_extensions import TypedDict

from checkpoint_factory import checkpoint
from graphs import (
    build_delta_graph,
    build_interrupt_graph,
    build_map_reduce_graph,
    build_subgraph_graph,
)
from langgraph_sqlalchemy import (
    AsyncSQLAlchemySaver,
    AsyncSQLAlchemyStore,
    DatabaseError,
    migrations,
)
from langgraph_sqlalchemy.db import sqlstate, unobserved
from langgraph_sqlalchemy.engine import create_engine

# Statements that read or write our data tables (not the migration version tables, not the
# driver's and SQLAlchemy's catalog queries).
OUR_TABLES = re.compile(r"\b(checkpoints|checkpoint_blobs|checkpoint_writes|store|store_vectors)\b")
LOG_DIR = "log"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster(
        settings={
            "shared_preload_libraries": "pg_stat_statements",
            "compute_query_id": "on",
            "pg_stat_statements.track": "top",
            "pg_stat_statements.track_utility": "off",
            "pg_stat_statements.max": "10000",
            # Every statement the server executes, as JSON lines with the query id.
            "log_statement": "all",
            "logging_collector": "on",
            "log_destination": "jsonlog",
            "log_directory": LOG_DIR,
            "log_filename": "server.log",
            "log_rotation_age": "0",
            "log_rotation_size": "0",
        }
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


class ServerLog:
    """The cluster's JSON log, read from a starting point on."""

    def __init__(self, cluster: PrivateCluster) -> None:
        self.path = cluster.data / LOG_DIR / "server.json"
        self.start = self.path.stat().st_size if self.path.exists() else 0

    async def entries(self, admin_url: str, database: str) -> list[dict[str, Any]]:
        """The entries of ``database`` since the start, once a marker statement sent after
        everything else shows up (the log collector writes through a pipe, in order)."""
        marker = f"log marker {uuid.uuid4().hex}"
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute("SELECT $1::text", marker)
        finally:
            await conn.close()
        deadline = time.monotonic() + 30
        while True:
            lines = self._read()
            if any(marker in line for line in lines):
                break
            if time.monotonic() > deadline:
                raise AssertionError("the marker statement never reached the server log")
            await asyncio.sleep(0.05)
        entries = [json.loads(line) for line in lines if line.strip()]
        return [e for e in entries if e.get("dbname") == database]

    def _read(self) -> list[str]:
        with self.path.open("rb") as file:
            file.seek(self.start)
            data = file.read()
        complete = data[: data.rfind(b"\n") + 1]
        return complete.decode("utf-8", "replace").splitlines()


_EXECUTED = re.compile(r"^(?:execute [^:]*|statement): (.*)$", re.S)


def executed(entries: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(statement text, query id) of each statement execution the server logged."""
    found = []
    for entry in entries:
        match = _EXECUTED.match(entry.get("message", ""))
        if match:
            found.append((match.group(1), int(entry.get("query_id", 0))))
    return found


class Watcher:
    """Listeners of every statement-level event, and the ``sqlalchemy.engine`` log."""

    KINDS = ("before_execute", "before_cursor_execute", "after_cursor_execute", "after_execute")

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine.sync_engine
        self.counts: dict[str, Counter[str]] = {kind: Counter() for kind in self.KINDS}
        self.logged: Counter[str] = Counter()
        self.errors: list[tuple[str | None, str | None]] = []
        # before_execute / after_execute name no SQL text (a Core statement, or the string of
        # exec_driver_sql): they are paired with the cursor execution on the same connection.
        self._pending: defaultdict[int, int] = defaultdict(int)
        self._last: dict[int, str] = {}
        self._handler = _Collect(self.logged)

    def before_execute(self, conn: Any, *args: Any) -> None:
        self._pending[id(conn)] += 1

    def before_cursor_execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.counts["before_cursor_execute"][statement] += 1
        self.counts["before_execute"][statement] += self._pending.pop(id(conn), 0)

    def after_cursor_execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.counts["after_cursor_execute"][statement] += 1
        self._last[id(conn)] = statement

    def after_execute(self, conn: Any, *args: Any) -> None:
        statement = self._last.pop(id(conn), None)
        if statement is not None:
            self.counts["after_execute"][statement] += 1

    def handle_error(self, context: ExceptionContext) -> None:
        self.errors.append((context.statement, sqlstate(context.original_exception)))

    @contextlib.contextmanager
    def watching(self) -> Iterator[Watcher]:
        listeners = [(kind, getattr(self, kind)) for kind in (*self.KINDS, "handle_error")]
        for kind, fn in listeners:
            event.listen(self.engine, kind, fn)
        engine_logger = logging.getLogger("sqlalchemy.engine")
        level = engine_logger.level
        engine_logger.setLevel(logging.INFO)
        engine_logger.addHandler(self._handler)
        try:
            yield self
        finally:
            engine_logger.removeHandler(self._handler)
            engine_logger.setLevel(level)
            for kind, fn in listeners:
                event.remove(self.engine, kind, fn)


class _Collect(logging.Handler):
    def __init__(self, into: Counter[str]) -> None:
        super().__init__(logging.INFO)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into[record.getMessage()] += 1


@contextlib.asynccontextmanager
async def new_database(cluster: PrivateCluster) -> AsyncIterator[str]:
    """A migrated database of its own on the cluster, dropped afterwards."""
    name = f"lgsa_vis_{os.urandom(6).hex()}"
    admin = await asyncpg.connect(cluster.url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')  # generated hex name, not input
    finally:
        await admin.close()
    try:
        engine = create_engine(cluster.url(name))
        try:
            await migrations.upgrade(engine)
        finally:
            await engine.dispose()
        yield name
    finally:
        admin = await asyncpg.connect(cluster.url())
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def database(cluster: PrivateCluster) -> AsyncIterator[str]:
    async with new_database(cluster) as name:
        yield name


async def reset_statement_statistics(cluster: PrivateCluster) -> None:
    conn = await asyncpg.connect(cluster.url())
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute("SELECT pg_stat_statements_reset()")
    finally:
        await conn.close()


async def statement_statistics(
    cluster: PrivateCluster, database: str
) -> dict[int, tuple[str, int]]:
    """query id -> (normalized text, calls) of ``database``'s statements."""
    conn = await asyncpg.connect(cluster.url())
    try:
        rows = await conn.fetch(
            "SELECT queryid, query, calls FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)",
            database,
        )
    finally:
        await conn.close()
    return {int(r["queryid"]): (r["query"], int(r["calls"])) for r in rows}


# --- the workload ------------------------------------------------------------------------------


class Noted(TypedDict, total=False):
    note: str
    recalled: list[str]


async def _note_and_recall(state: Noted, *, store: BaseStore) -> dict[str, Any]:
    await store.aput(("notes", "graph"), state["note"], {"text": state["note"]})
    found = await store.asearch(("notes",), filter={"text": state["note"]})
    return {"recalled": [item.key for item in found]}


def _store_graph() -> StateGraph[Any, Any, Any, Any]:
    builder = StateGraph(Noted)
    builder.add_node("note", _note_and_recall)
    builder.add_edge(START, "note")
    builder.add_edge("note", END)
    return builder


def thread(name: str) -> RunnableConfig:
    return {"configurable": {"thread_id": name}}


async def workload(engine: AsyncEngine) -> None:
    """Real graphs and store calls: every kind of statement the library sends."""
    saver = AsyncSQLAlchemySaver(engine)
    store = AsyncSQLAlchemyStore(engine, ttl={"default_ttl": 60, "refresh_on_read": True})

    interrupting = build_interrupt_graph().compile(checkpointer=saver)
    await interrupting.ainvoke({"steps": []}, thread("hitl"))
    await interrupting.ainvoke(Command(resume="Ada"), thread("hitl"))
    done = await interrupting.ainvoke(Command(resume="teal"), thread("hitl"))
    assert done["steps"][-1] == "done:Ada:teal"

    family = build_subgraph_graph().compile(checkpointer=saver)
    await family.ainvoke({"log": []}, thread("family"))
    state = await family.aget_state(thread("family"), subgraphs=True)
    assert state.tasks
    await family.ainvoke(Command(resume="42"), thread("family"))
    history = [s async for s in family.aget_state_history(thread("family"))]
    assert len(history) > 3

    fan_out = build_map_reduce_graph().compile(checkpointer=saver)
    result = await fan_out.ainvoke({"topics": ["a", "b", "c"]}, thread("fan"))
    assert result["summary"] == "A+B+C"

    delta = build_delta_graph().compile(checkpointer=saver)
    await delta.ainvoke({"items": [], "rounds": 0}, thread("delta"))
    assert (await delta.aget_state(thread("delta"))).values["items"]

    with_store = _store_graph().compile(checkpointer=saver, store=store)
    out = await with_store.ainvoke({"note": "n1"}, thread("noted"))
    assert out["recalled"] == ["n1"]

    # Maintenance calls.
    listed = [t async for t in saver.alist(None, filter={"source": "loop"}, limit=5)]
    assert listed
    await saver.acopy_thread("hitl", "hitl-copy")
    await saver.aprune(["hitl-copy"])
    await saver.adelete_thread("hitl-copy")
    await saver.adelete_for_runs(["no-such-run"])

    # The store directly: single statements, coalesced concurrent calls, and a mixed batch in
    # one transaction.
    await store.aput(("users", "ada"), "profile", {"name": "Ada", "lang": "en"})
    await asyncio.gather(*(store.aget(("users", "ada"), "profile") for _ in range(5)))
    assert await store.asearch(("users",), filter={"lang": "en"}, limit=3)
    assert await store.alist_namespaces(prefix=("users",))
    await store.abatch(
        [
            GetOp(("users", "ada"), "profile"),
            SearchOp(("users",), limit=2),
            PutOp(("users", "bob"), "profile", {"name": "Bob"}),
        ]
    )
    await store.adelete(("users", "bob"), "profile")
    await store.sweep_ttl()


@dataclass
class Observed:
    """What the server and the host saw of one workload run."""

    server: Counter[str]  # statement text -> executions the server logged
    query_ids: dict[str, int]  # statement text -> its query id
    statistics: dict[int, tuple[str, int]]  # pg_stat_statements: query id -> (query, calls)
    watcher: Watcher

    def host(self, counts: Counter[str]) -> Counter[str]:
        return Counter({t: n for t, n in counts.items() if OUR_TABLES.search(t)})


@pytest.fixture(scope="module")
async def observed(cluster: PrivateCluster) -> AsyncIterator[Observed]:
    """The workload once, on an engine with every statement listener and INFO logging."""
    async with new_database(cluster) as database:
        engine = create_engine(cluster.url(database))
        watcher = Watcher(engine)
        try:
            with watcher.watching():
                assert not unobserved(engine.sync_engine)
                await reset_statement_statistics(cluster)
                log = ServerLog(cluster)
                await workload(engine)
        finally:
            await engine.dispose()
        runs = [(t, q) for t, q in executed(await log.entries(cluster.url(), database))]
        ours = [(t, q) for t, q in runs if OUR_TABLES.search(t)]
        yield Observed(
            server=Counter(t for t, _ in ours),
            query_ids=dict(ours),
            statistics=await statement_statistics(cluster, database),
            watcher=watcher,
        )


def test_the_workload_sends_every_kind_of_statement(observed: Observed) -> None:
    texts = list(observed.server)
    assert sum(observed.server.values()) >= 100
    for start in (
        "INSERT INTO checkpoints",
        "WITH inserted_blobs AS",  # a put with blobs
        "INSERT INTO checkpoint_writes",
        "SELECT checkpoints.thread_id",  # reads by id, latest, list pages
        "WITH RECURSIVE walk",  # delta channel history
        "INSERT INTO store",
        "DELETE FROM store",
        "SELECT prefixes.prefix",  # list_namespaces
    ):
        assert any(t.startswith(start) for t in texts), start


@pytest.mark.parametrize("kind", ["before_cursor_execute", "after_cursor_execute"])
def test_cursor_events_see_each_statement_once(observed: Observed, kind: str) -> None:
    seen = observed.host(observed.watcher.counts[kind])
    assert seen == observed.server, _diff(seen, observed.server)


@pytest.mark.parametrize("kind", ["before_execute", "after_execute"])
def test_execute_events_see_each_statement_once(observed: Observed, kind: str) -> None:
    seen = observed.host(observed.watcher.counts[kind])
    assert seen == observed.server, (
        f"{kind} and the server disagree (statement, {kind} calls, server executions): "
        f"{_diff(seen, observed.server)}"
    )


def test_the_engine_log_shows_each_statement_once(observed: Observed) -> None:
    logged = observed.host(observed.watcher.logged)
    assert logged == observed.server, _diff(logged, observed.server)


def test_no_error_was_reported(observed: Observed) -> None:
    assert observed.watcher.errors == []


def test_pg_stat_statements_counts_what_the_listeners_saw(observed: Observed) -> None:
    """pg_stat_statements counts by query id (statements that normalize alike share one)."""
    seen = observed.host(observed.watcher.counts["before_cursor_execute"])
    expected: Counter[int] = Counter()
    for text, n in seen.items():
        qid = observed.query_ids.get(text, 0)
        assert qid != 0, f"the server logged no query id for {text[:80]!r}"
        expected[qid] += n
    counted = Counter(
        {
            qid: calls
            for qid, (query, calls) in observed.statistics.items()
            if OUR_TABLES.search(query)
        }
    )
    assert counted == expected, _diff(counted, expected)


def _diff(left: Counter[Any], right: Counter[Any]) -> list[tuple[str, int, int]]:
    keys = set(left) | set(right)
    return [
        (str(k)[:120], left.get(k, 0), right.get(k, 0))
        for k in keys
        if left.get(k, 0) != right.get(k, 0)
    ]


# --- a statement the server refuses is sent once ----------------------------------------------

UNTRANSLATABLE_CHARACTER = "22P05"


@pytest.mark.parametrize("path", ["observed", "shortcut"])
async def test_a_failing_statement_reaches_the_server_once(
    cluster: PrivateCluster, database: str, path: str
) -> None:
    engine = create_engine(cluster.url(database))
    watcher = Watcher(engine)
    bad = checkpoint()
    bad["channel_versions"] = {"a\x00b": 1}  # JSONB cannot hold U+0000
    try:
        saver = AsyncSQLAlchemySaver(engine)
        assert await saver.aget_tuple(thread("warm")) is None  # pooled and prepared
        log = ServerLog(cluster)
        with watcher.watching() if path == "observed" else contextlib.nullcontext():
            assert unobserved(engine.sync_engine) is (path == "shortcut")
            with pytest.raises(DatabaseError, match=UNTRANSLATABLE_CHARACTER):
                await saver.aput(
                    {"configurable": {"thread_id": "nul", "checkpoint_ns": ""}}, bad, {}, {}
                )
        # The saver stays usable, and nothing was written.
        assert await saver.aget_tuple({"configurable": {"thread_id": "nul"}}) is None
    finally:
        await engine.dispose()
    entries = await log.entries(cluster.url(), database)
    refused = [e for e in entries if e.get("state_code") == UNTRANSLATABLE_CHARACTER]
    assert len(refused) == 1, [e.get("message") for e in refused]
    assert "checkpoints" in refused[0].get("statement", "")
    if path == "observed":
        assert [code for _, code in watcher.errors] == [UNTRANSLATABLE_CHARACTER]
        assert watcher.errors[0][0] == refused[0]["statement"]

