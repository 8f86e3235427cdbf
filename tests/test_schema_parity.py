"""Our migrations against upstream's ``setup()``: the same tables, and adoption without data loss.

Upstream (``langgraph-checkpoint-postgres`` 3.2, on psycopg) builds one database, our Alembic
revisions build another, and the two are compared from the Postgres catalog. Then upstream
databases, both current and as left by upstream's earlier releases, are migrated by us with rows
in them, and upstream must keep working on the result.
"""

from __future__ import annotations

import math
import operator
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import psycopg
import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.postgres.base import MIGRATIONS as CHECKPOINT_MIGRATIONS
from langgraph.graph import END, START, StateGraph
from langgraph.store.postgres.aio import AsyncPostgresStore
from langgraph.store.postgres.base import MIGRATIONS as STORE_MIGRATIONS
from langgraph.types import Command, interrupt
from psycopg.rows import dict_row
from sqlalchemy.ext.asyncio import AsyncEngine
from typing_extensions import TypedDict

from langgraph_sqlalchemy import migrations
from langgraph_sqlalchemy.engine import create_engine
from schema_catalog import (
    VERSION_TABLE,
    Catalog,
    dump_tables,
    read_catalog,
    reference_catalog,
    tracking_versions,
)

DATA_TABLES = ["checkpoints", "checkpoint_blobs", "checkpoint_writes", "store"]
# Ours alone (retention, revision 0007): upstream never creates, reads or writes it.
ACTIVITY = "checkpoint_thread_activity"
TRACKING_TABLES = ["checkpoint_migrations", "store_migrations"]


@asynccontextmanager
async def upstream_connection(url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    # The settings upstream's from_conn_string uses: its migrations include CREATE INDEX
    # CONCURRENTLY, which needs autocommit.
    conn = await psycopg.AsyncConnection.connect(
        url, autocommit=True, prepare_threshold=0, row_factory=dict_row
    )
    try:
        yield conn
    finally:
        await conn.close()


async def upstream_setup(url: str, *, index: dict[str, Any] | None = None) -> None:
    async with upstream_connection(url) as conn:
        await AsyncPostgresSaver(conn).setup()
        await AsyncPostgresStore(conn, index=index).setup()  # type: ignore[arg-type]


@asynccontextmanager
async def engine_for(url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def upstream_catalog(url: str, **kw: Any) -> Catalog:
    await upstream_setup(url, **kw)
    async with engine_for(url) as engine:
        return await read_catalog(engine)


# The deliberate differences: fractional TTLs (SPEC 5.6) and our index for search filters
# (revision 0006; SPEC 2 allows extra indexes).
OUR_DIFFERENCES = [
    "columns ('store', 'ttl_minutes'): ('double precision', True, None) != "
    "('integer', True, None)",
    "indexes store_value_idx: ('store', 'CREATE INDEX store_value_idx ON store USING gin "
    "(value jsonb_path_ops) WITH (fastupdate=off)', True) != None",
]


def assert_same_definition(catalog: Catalog, table: str, model: str) -> None:
    """``table`` is declared exactly like ``model`` (upstream's ``v INTEGER PRIMARY KEY``)."""

    def shape(name: str) -> tuple[object, ...]:
        cols = {c: v for (t, c), v in catalog.columns.items() if t == name}
        cons = [(k, d) for (t, _), (k, d) in catalog.constraints.items() if t == name]
        return cols, sorted(cons), catalog.constraints.get((name, f"{name}_pkey"))

    assert shape(table) == shape(model)
    assert shape(table)[2] is not None


# --- 1. schema parity ---------------------------------------------------------------------------


async def test_migrated_schema_equals_upstream_setup(
    new_database: Callable[[], Awaitable[str]],
) -> None:
    upstream = await upstream_catalog(await new_database())
    ours = await reference_catalog(new_database)

    # Ours has three tables upstream's index-less setup() lacks: our own version table,
    # vector_migrations, which upstream creates only once an index is configured (created
    # empty by us so the vector layer can be added later; upstream then runs its vector
    # migrations from 0), and checkpoint_thread_activity (retention, revision 0007), which
    # upstream never reads or writes. vector_migrations is declared exactly as upstream
    # declares it.
    assert ours.tables - upstream.tables == {VERSION_TABLE, "vector_migrations", ACTIVITY}
    assert upstream.tables <= ours.tables
    assert_same_definition(ours, "vector_migrations", "store_migrations")

    # The deliberate differences: fractional TTLs and the value index; upstream's own tables
    # are otherwise identical.
    assert ours.without_tables(VERSION_TABLE, "vector_migrations", ACTIVITY).differences(
        upstream
    ) == OUR_DIFFERENCES

    # Spot checks that the catalog comparison sees what it must (it would pass vacuously if
    # the snapshot read nothing).
    assert upstream.indexes["store_prefix_idx"][1] == (
        "CREATE INDEX store_prefix_idx ON store USING btree (prefix text_pattern_ops)"
    )
    assert upstream.indexes["idx_store_expires_at"][1].endswith(
        "WHERE (expires_at IS NOT NULL)"
    )
    assert upstream.constraints[("checkpoint_writes", "checkpoint_writes_pkey")] == (
        "p",
        "PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)",
    )
    assert upstream.columns[("checkpoints", "metadata")] == ("jsonb", False, "'{}'::jsonb")


async def test_tracking_rows_make_upstream_setup_a_no_op(empty_url: str) -> None:
    async with engine_for(empty_url) as engine:
        await migrations.upgrade(engine)
        before = await read_catalog(engine)
        assert await tracking_versions(engine, "checkpoint_migrations") == list(
            range(len(CHECKPOINT_MIGRATIONS))
        )
        assert await tracking_versions(engine, "store_migrations") == list(
            range(len(STORE_MIGRATIONS))
        )
        assert await tracking_versions(engine, "vector_migrations") == []

        await upstream_setup(empty_url)

        assert await read_catalog(engine) == before
        assert await tracking_versions(engine, "checkpoint_migrations") == list(range(10))
        assert await tracking_versions(engine, "store_migrations") == list(range(4))


def _fake_embed(texts: list[str]) -> list[list[float]]:
    return [[float(len(t)), 1.0, 0.5, 0.25] for t in texts]


@pytest.mark.vector
async def test_vector_tracking_table_equals_upstream_with_index(
    new_database: Callable[[], Awaitable[str]],
) -> None:
    """With an index configured upstream creates vector_migrations itself: same definition."""
    index = {"dims": 4, "embed": _fake_embed, "fields": ["text"]}
    upstream = await upstream_catalog(await new_database(), index=index)
    ours = await reference_catalog(new_database)
    assert ours.tables - upstream.tables == {VERSION_TABLE, ACTIVITY}
    assert upstream.tables - ours.tables == {"store_vectors"}
    assert ours.without_tables(VERSION_TABLE, ACTIVITY).differences(
        upstream.without_tables("store_vectors")
    ) == OUR_DIFFERENCES


VECTOR_CONFIGS = [
    # (upstream's index config minus embed, our ensure_vector_layer arguments)
    ({"dims": 4}, {"dims": 4}),
    (
        {"dims": 8, "distance_type": "l2",
         "ann_index_config": {"kind": "hnsw", "vector_type": "halfvec", "m": 8,
                              "ef_construction": 32}},
        {"dims": 8, "vector_type": "halfvec", "distance_type": "l2", "kind": "hnsw",
         "index_params": {"m": 8, "ef_construction": 32}},
    ),
    (
        {"dims": 3, "distance_type": "inner_product",
         "ann_index_config": {"kind": "ivfflat", "nlist": 10}},
        {"dims": 3, "distance_type": "inner_product", "kind": "ivfflat",
         "index_params": {"lists": 10}},
    ),
]
# Kind "flat" is not compared: upstream 3.2's async setup() raises "Invalid index_type for
# pgvector: flat" for it (it renders the index migration's parameters before checking the
# migration's condition).


@pytest.mark.vector
@pytest.mark.parametrize(("upstream_index", "ours"), VECTOR_CONFIGS)
async def test_vector_layer_equals_upstream(
    new_database: Callable[[], Awaitable[str]],
    upstream_index: dict[str, Any],
    ours: dict[str, Any],
) -> None:
    from langgraph_sqlalchemy.store.vector_layer import ensure_vector_layer

    upstream_url = await new_database()
    upstream = await upstream_catalog(
        upstream_url, index={**upstream_index, "embed": _fake_embed, "fields": ["text"]}
    )
    url = await new_database()
    async with engine_for(url) as engine:
        await migrations.upgrade(engine)
        await ensure_vector_layer(engine, **ours)
        mine = await read_catalog(engine)
        vector_rows = await tracking_versions(engine, "vector_migrations")
    async with engine_for(upstream_url) as engine:
        assert vector_rows == await tracking_versions(engine, "vector_migrations")
    assert mine.without_tables(VERSION_TABLE, ACTIVITY).differences(upstream) == (
        OUR_DIFFERENCES
    )
    vector_type = ours.get("vector_type", "vector")
    assert upstream.columns[("store_vectors", "embedding")][0] == f"{vector_type}({ours['dims']})"
    assert "store_vectors_embedding_idx" in upstream.indexes
    # Upstream's setup() afterwards finds its vector migrations done.
    await upstream_setup(url, index={**upstream_index, "embed": _fake_embed, "fields": ["text"]})
    async with engine_for(url) as engine:
        assert (await read_catalog(engine)) == mine


# --- 2. adoption of a database upstream created and filled ------------------------------------


class Flow(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    answer: str
    payload: dict[str, Any]


def _build_graph() -> StateGraph[Flow]:
    def start(state: Flow) -> Flow:
        return {"log": ["start"], "payload": {"nested": [1, 2, 3], "bytes": "x" * 50}}

    def ask(state: Flow) -> Flow:
        answer = interrupt({"question": "go on?"})
        return {"log": ["asked"], "answer": answer}

    def finish(state: Flow) -> Flow:
        return {"log": [f"finished with {state['answer']}"]}

    builder: StateGraph[Flow] = StateGraph(Flow)
    builder.add_node("start", start)
    builder.add_node("ask", ask)
    builder.add_node("finish", finish)
    builder.add_edge(START, "start")
    builder.add_edge("start", "ask")
    builder.add_edge("ask", "finish")
    builder.add_edge("finish", END)
    return builder


async def _fill_with_upstream(url: str) -> dict[str, Any]:
    """Upstream creates the schema and writes checkpoints (a real graph), writes and items."""
    async with upstream_connection(url) as conn:
        saver = AsyncPostgresSaver(conn)
        await saver.setup()
        graph = _build_graph().compile(checkpointer=saver)
        done: RunnableConfig = {"configurable": {"thread_id": "done"}}
        paused: RunnableConfig = {"configurable": {"thread_id": "paused"}}
        await graph.ainvoke({"log": ["in"]}, done)
        await graph.ainvoke(Command(resume="yes"), done)
        await graph.ainvoke({"log": ["in"]}, paused)  # left at the interrupt
        latest = await saver.aget_tuple(paused)
        assert latest is not None
        await saver.aput_writes(
            latest.config, [("log", ["direct"]), ("answer", "raw")], "task-x", "~path:1"
        )

        store = AsyncPostgresStore(conn, ttl={"default_ttl": 60, "refresh_on_read": True})
        await store.setup()
        await store.aput(("users", "a"), "k1", {"name": "Ann", "n": 1})
        await store.aput(("users", "a"), "k2", {"name": "Bob", "n": 2}, ttl=5)
        await store.aput(("users", "b", "c"), "k3", {"deep": {"x": [1, 2]}}, ttl=None)
        await store.aput(("other",), "k4", {"v": "text"})
        state = await graph.aget_state(paused)
        return {"paused_values": state.values, "paused_next": state.next}


async def test_adopts_current_upstream_database_with_data(
    new_database: Callable[[], Awaitable[str]],
) -> None:
    url = await new_database()
    seen = await _fill_with_upstream(url)
    fresh = await reference_catalog(new_database)

    async with engine_for(url) as engine:
        before = await dump_tables(engine, DATA_TABLES + TRACKING_TABLES)
        assert len(before["checkpoints"]) >= 6
        assert before["checkpoint_blobs"] and before["checkpoint_writes"]
        assert len(before["store"]) == 4
        assert any(row[-1] is not None for row in before["checkpoint_blobs"])
        assert any(row[-1] == "~path:1" for row in before["checkpoint_writes"])

        await migrations.upgrade(engine)

        assert await migrations.is_at_head(engine)
        after = await dump_tables(engine, DATA_TABLES + TRACKING_TABLES)
        # Rows compare as tuples, so ttl_minutes 5 (integer) equals 5.0 (double).
        assert after == before
        ttl_before = sorted(r[-1] for r in before["store"] if r[-1] is not None)
        ttl_after = sorted(r[-1] for r in after["store"] if r[-1] is not None)
        assert ttl_before == [5, 60, 60] and ttl_after == [5.0, 60.0, 60.0]
        assert all(isinstance(v, float) for v in ttl_after)
        assert (await read_catalog(engine)) == fresh

        # Upstream's setup() finds nothing to do and upstream keeps reading and writing.
        await upstream_setup(url)
        assert await dump_tables(engine, TRACKING_TABLES) == {
            k: before[k] for k in TRACKING_TABLES
        }
        assert (await read_catalog(engine)) == fresh

    async with upstream_connection(url) as conn:
        saver = AsyncPostgresSaver(conn)
        graph = _build_graph().compile(checkpointer=saver)
        paused: RunnableConfig = {"configurable": {"thread_id": "paused"}}
        state = await graph.aget_state(paused)
        assert state.values == seen["paused_values"]
        assert state.next == seen["paused_next"] == ("ask",)
        result = await graph.ainvoke(Command(resume="later"), paused)
        assert result["log"][-1] == "finished with later"

        store = AsyncPostgresStore(conn, ttl={"default_ttl": 60, "refresh_on_read": True})
        item = await store.aget(("users", "a"), "k2")
        assert item is not None and item.value == {"name": "Bob", "n": 2}
        await store.aput(("users", "a"), "k5", {"n": 5}, ttl=3)
        assert [i.key for i in await store.asearch(("users",), filter={"n": 5})] == ["k5"]
        refreshed = (
            await (
                await conn.execute(
                    "SELECT ttl_minutes, expires_at - updated_at AS left FROM store "
                    "WHERE key = 'k2'"
                )
            ).fetchone()
        )
        assert refreshed is not None and refreshed["ttl_minutes"] == 5.0
        assert math.isclose(refreshed["left"].total_seconds(), 300, abs_tol=5)


# --- adoption of upstream databases left at earlier migration versions --------------------------


async def _upstream_at(url: str, checkpoint_v: int, store_v: int) -> None:
    """The database upstream's setup() would have left when its lists ended at these versions."""
    async with upstream_connection(url) as conn:
        if checkpoint_v >= 0:
            for v, sql in enumerate(CHECKPOINT_MIGRATIONS[: checkpoint_v + 1]):
                await conn.execute(sql)
                await conn.execute("INSERT INTO checkpoint_migrations (v) VALUES (%s)", (v,))
        if store_v >= 0:
            # What upstream's store setup() runs before its list.
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS store_migrations (v INTEGER PRIMARY KEY)"
            )
            for v, sql in enumerate(STORE_MIGRATIONS[: store_v + 1]):
                await conn.execute(sql)
                await conn.execute("INSERT INTO store_migrations (v) VALUES (%s)", (v,))


async def _insert_old_rows(url: str, checkpoint_v: int, store_v: int) -> None:
    """Rows in the shape each old version allowed (no task_path, no TTL columns, ...)."""
    async with upstream_connection(url) as conn:
        if checkpoint_v >= 3:
            await conn.execute(
                "INSERT INTO checkpoints (thread_id, checkpoint_id, checkpoint) "
                "VALUES ('t', 'c1', '{\"v\": 1}')"
            )
            await conn.execute(
                "INSERT INTO checkpoint_blobs (thread_id, channel, version, type, blob) "
                "VALUES ('t', 'ch', '1', 'msgpack', '\\x0102')"
            )
            await conn.execute(
                "INSERT INTO checkpoint_writes "
                "(thread_id, checkpoint_id, task_id, idx, channel, type, blob) "
                "VALUES ('t', 'c1', 'task', 0, 'ch', 'msgpack', '\\x03')"
            )
        if store_v >= 0:
            await conn.execute(
                "INSERT INTO store (prefix, key, value) VALUES ('a.b', 'k', '{\"x\": 1}')"
            )
        if store_v >= 2:
            await conn.execute(
                "INSERT INTO store (prefix, key, value, expires_at, ttl_minutes) "
                "VALUES ('a', 'ttl', '{}', now() + interval '7 minutes', 7)"
            )


@pytest.mark.parametrize(
    ("checkpoint_v", "store_v"),
    [
        (3, 0),  # blob still NOT NULL, no thread indexes, no task_path; store without index
        (5, 1),  # blob nullable; store with its prefix index but no TTL columns
        (8, 2),  # thread indexes but no task_path; TTL columns but no expires_at index
        (9, -1),  # checkpoints current, store never set up
        (-1, 3),  # store current, checkpoints never set up
    ],
)
async def test_adopts_upstream_at_earlier_versions(
    new_database: Callable[[], Awaitable[str]], checkpoint_v: int, store_v: int
) -> None:
    url = await new_database()
    await _upstream_at(url, checkpoint_v, store_v)
    await _insert_old_rows(url, checkpoint_v, store_v)
    fresh = await reference_catalog(new_database)
    async with engine_for(url) as engine:
        old_store = (
            await dump_tables(engine, ["store"]) if store_v >= 0 else {"store": []}
        )

        await migrations.upgrade(engine)

        assert (await read_catalog(engine)).differences(fresh) == []
        assert await tracking_versions(engine, "checkpoint_migrations") == list(range(10))
        assert await tracking_versions(engine, "store_migrations") == list(range(4))
        rows = await dump_tables(engine, DATA_TABLES)
    if checkpoint_v >= 3:
        assert rows["checkpoints"] == [("t", "", "c1", None, None, {"v": 1}, {})]
        assert rows["checkpoint_blobs"] == [("t", "", "ch", "1", "msgpack", b"\x01\x02")]
        # Writes from before task_path existed get '' (sorted first, as upstream does).
        assert rows["checkpoint_writes"] == [
            ("t", "", "c1", "task", 0, "ch", "msgpack", b"\x03", "")
        ]
    # The store keeps every row; TTL columns appear empty where they did not exist.
    assert [r[:3] for r in rows["store"]] == [r[:3] for r in old_store["store"]]
    if store_v >= 2:
        ttl_row = next(r for r in rows["store"] if r[1] == "ttl")
        assert ttl_row[-1] == 7.0
    elif store_v >= 0:
        assert all(r[-2:] == (None, None) for r in rows["store"])

    # Upstream's setup() afterwards is a no-op.
    await upstream_setup(url)
    async with engine_for(url) as engine:
        assert (await read_catalog(engine)).differences(fresh) == []
        assert await tracking_versions(engine, "checkpoint_migrations") == list(range(10))


async def test_adoption_rebuilds_invalid_indexes_left_by_interrupted_builds(
    new_database: Callable[[], Awaitable[str]],
) -> None:
    """A CONCURRENTLY build that fails half-way leaves an INVALID index that IF NOT EXISTS would
    keep forever (never used by queries). Adoption must leave real, valid indexes."""
    url = await new_database()
    await _upstream_at(url, 5, 0)
    async with upstream_connection(url) as conn:
        for sql in (
            "INSERT INTO checkpoints (thread_id, checkpoint_id, checkpoint) "
            "VALUES ('t', 'c1', '{}'), ('t', 'c2', '{}')",
            "INSERT INTO store (prefix, key, value) VALUES ('p', 'a', '{}'), ('p', 'b', '{}')",
        ):
            await conn.execute(sql)
        # Builds that fail after creating the index entry: duplicates break UNIQUE.
        for sql in (
            "CREATE UNIQUE INDEX CONCURRENTLY checkpoints_thread_id_idx ON checkpoints (thread_id)",
            "CREATE UNIQUE INDEX CONCURRENTLY store_prefix_idx ON store (prefix)",
        ):
            with pytest.raises(psycopg.errors.UniqueViolation):
                await conn.execute(sql)
    fresh = await reference_catalog(new_database)
    async with engine_for(url) as engine:
        left = await read_catalog(engine)
        assert left.indexes["checkpoints_thread_id_idx"][2] is False
        assert left.indexes["store_prefix_idx"][2] is False

        await migrations.upgrade(engine)

        assert (await read_catalog(engine)).differences(fresh) == []
        rows = await dump_tables(engine, ["checkpoints", "store"])
        assert len(rows["checkpoints"]) == 2 and len(rows["store"]) == 2
