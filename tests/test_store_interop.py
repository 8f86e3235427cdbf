"""One database, two libraries: our store and upstream's ``AsyncPostgresStore`` (psycopg).

SPEC §2: a database can be used by upstream and by us alternately, with no copy. Items,
TTL columns and vectors written by either one are read, found and deleted by the other; our
``setup()`` adopts a database upstream's ``setup()`` built (every vector type and index kind)
without touching its data, and upstream keeps working on it afterwards; upstream's ``setup()``
is a no-op on a database ours built.

Upstream's vector layer is built with its *sync* ``PostgresStore.setup()``: the async
``AsyncPostgresStore.setup()`` of 3.2.x ignores the migration condition that skips the ANN
index for kind ``"flat"`` and fails with "Invalid index_type for pgvector: flat".
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from langgraph.store.base import SearchItem
from langgraph.store.postgres import AsyncPostgresStore, PostgresStore
from sqlalchemy.ext.asyncio import AsyncEngine

from fake_embeddings import HashingEmbeddings
from langgraph_sqlalchemy import AsyncSQLAlchemyStore, SchemaMismatchError

DIMS = 16
NS = ("interop", "docs")
TEXTS = {
    "u1": "red apple tree",
    "u2": "blue sky",
    "u3": "fast red car",
    "o1": "slow blue boat",
    "o2": "green apple",
    "o3": "red sky at night",
}
QUERIES = ("red apple", "blue boat", "night sky")


def index_config(
    vector_type: str = "vector", kind: str = "hnsw", dims: int = DIMS
) -> dict[str, Any]:
    return {
        "dims": dims,
        "embed": HashingEmbeddings(dims),
        "fields": ["text"],
        "distance_type": "cosine",
        "ann_index_config": {"kind": kind, "vector_type": vector_type},
    }


@asynccontextmanager
async def upstream(
    url: str, index: Mapping[str, Any] | None = None, ttl: Mapping[str, Any] | None = None
) -> AsyncIterator[AsyncPostgresStore]:
    async with AsyncPostgresStore.from_conn_string(url, index=index, ttl=ttl) as store:  # type: ignore[arg-type]
        yield store


async def upstream_setup(url: str, index: Mapping[str, Any] | None = None) -> None:
    def run() -> None:
        with PostgresStore.from_conn_string(url, index=index) as store:  # type: ignore[arg-type]
            store.setup()

    await asyncio.to_thread(run)


@asynccontextmanager
async def ours(
    url: str, index: Mapping[str, Any] | None = None, ttl: Mapping[str, Any] | None = None
) -> AsyncIterator[AsyncSQLAlchemyStore]:
    async with AsyncSQLAlchemyStore.from_conn_string(url, index=index, ttl=ttl) as store:
        yield store


def catalog(url: str) -> dict[str, Any]:
    """What the two setups leave in the database, to compare before and after."""

    def fetch(conn: psycopg.Connection[Any], sql: str) -> Any:
        row = conn.execute(sql).fetchone()
        return row[0] if row else None

    with psycopg.connect(url) as conn:
        tables = {
            name
            for name in ("store_migrations", "vector_migrations", "store_vectors")
            if fetch(conn, f"SELECT to_regclass('{name}') IS NOT NULL")
        }
        found: dict[str, Any] = {"tables": sorted(tables)}
        for name in ("store_migrations", "vector_migrations"):
            if name in tables:
                found[name] = fetch(conn, f"SELECT array_agg(v ORDER BY v) FROM {name}")
        found["ttl_minutes"] = fetch(
            conn,
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'store'::regclass AND attname = 'ttl_minutes'",
        )
        if "store_vectors" in tables:
            found["embedding"] = fetch(
                conn,
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = 'store_vectors'::regclass AND attname = 'embedding'",
            )
            found["vector_indexes"] = fetch(
                conn,
                "SELECT array_agg(indexdef ORDER BY indexname) FROM pg_indexes"
                " WHERE tablename = 'store_vectors'",
            )
    return found


def store_rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT prefix, key, value, created_at, updated_at, expires_at, ttl_minutes"
            " FROM store ORDER BY prefix, key"
        ).fetchall()


def vector_rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT prefix, key, field_name, embedding::text FROM store_vectors"
            " ORDER BY prefix, key, field_name"
        ).fetchall()


def by_key(results: list[SearchItem]) -> dict[str, float | None]:
    return {item.key: item.score for item in results}


def assert_same_ranking(a: list[SearchItem], b: list[SearchItem], tolerance: float) -> None:
    """Same items with the same scores, in score order (equal scores may swap)."""
    assert set(by_key(a)) == set(by_key(b)), (by_key(a), by_key(b))
    scores_b = by_key(b)
    for item in a:
        assert item.score is not None and scores_b[item.key] is not None
        assert item.score == pytest.approx(scores_b[item.key], abs=tolerance), item.key
    for x, y in zip(a, b, strict=True):
        assert x.score == pytest.approx(y.score, abs=tolerance), (by_key(a), by_key(b))


# --- plain items and TTL (both servers) -----------------------------------------------------------


async def test_items_and_ttl_written_by_either_are_read_by_the_other(
    engine: AsyncEngine, database_url: str
) -> None:
    before = catalog(database_url)
    # Upstream's setup() on a database our migrations built changes nothing.
    await upstream_setup(database_url)
    assert catalog(database_url) == before

    mine = AsyncSQLAlchemyStore(engine)
    async with upstream(database_url) as theirs:
        await theirs.aput(NS, "u1", {"text": "from upstream", "n": 1, "tag": "up"})
        await theirs.aput(NS, "u2", {"text": "upstream, with ttl", "n": 2, "tag": "up"}, ttl=5)
        await theirs.aput(("interop", "other"), "u3", {"nested": {"a": [1, 2]}, "tag": "up"})
        await mine.aput(NS, "o1", {"text": "from ours", "n": 3, "tag": "ours"})
        await mine.aput(NS, "o2", {"text": "ours, with ttl", "n": 4, "tag": "ours"}, ttl=0.5)

        # Every item, read through either library, is the same item.
        for namespace, key in [
            (NS, "u1"),
            (NS, "u2"),
            (("interop", "other"), "u3"),
            (NS, "o1"),
            (NS, "o2"),
        ]:
            a = await mine.aget(namespace, key, refresh_ttl=False)
            b = await theirs.aget(namespace, key, refresh_ttl=False)
            assert a is not None and b is not None, (namespace, key)
            assert (a.namespace, a.key, a.value) == (b.namespace, b.key, b.value)
            assert (a.created_at, a.updated_at) == (b.created_at, b.updated_at)

        # Search and filters across the two writers.
        found = await mine.asearch(("interop",), filter={"tag": "up"}, limit=10)
        assert {item.key for item in found} == {"u1", "u2", "u3"}
        found = await mine.asearch(NS, filter={"n": {"$gte": 2}}, limit=10)
        assert {item.key for item in found} == {"u2", "o1", "o2"}
        found = await theirs.asearch(NS, filter={"tag": {"$eq": "ours"}}, limit=10)
        assert {item.key for item in found} == {"o1", "o2"}
        assert await mine.alist_namespaces(prefix=("interop",)) == [
            ("interop", "docs"),
            ("interop", "other"),
        ]
        assert await theirs.alist_namespaces(prefix=("interop",)) == [
            ("interop", "docs"),
            ("interop", "other"),
        ]

        # TTL columns: each library reads and refreshes what the other wrote.
        rows = {row[1]: row for row in store_rows(database_url)}
        assert rows["u2"][6] == 5 and rows["u2"][5] - rows["u2"][4] == pytest.approx(
            dt.timedelta(minutes=5), abs=dt.timedelta(seconds=5)
        )
        assert rows["o2"][6] == 0.5 and rows["o2"][5] - rows["o2"][4] == pytest.approx(
            dt.timedelta(seconds=30), abs=dt.timedelta(seconds=5)
        )
        assert rows["u1"][5] is None and rows["u1"][6] is None
        await asyncio.sleep(0.05)
        await theirs.aget(NS, "o2", refresh_ttl=True)
        await mine.aget(NS, "u2", refresh_ttl=True)
        refreshed = {row[1]: row for row in store_rows(database_url)}
        assert refreshed["o2"][5] > rows["o2"][5]
        assert refreshed["u2"][5] > rows["u2"][5]
        with psycopg.connect(database_url) as conn:
            now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        # Upstream's refresh of our 0.5-minute TTL keeps it at 30 seconds (not 0, not 1 minute).
        assert refreshed["o2"][5] - now == pytest.approx(
            dt.timedelta(seconds=30), abs=dt.timedelta(seconds=5)
        )

        # Expired items: each library's sweeper removes what the other wrote.
        await theirs.aput(NS, "u-expiring", {"tag": "gone"}, ttl=0.001)
        await mine.aput(NS, "o-expiring", {"tag": "gone"}, ttl=0.001)
        await asyncio.sleep(0.2)
        assert await mine.sweep_ttl() == 2
        assert await theirs.aget(NS, "u-expiring") is None
        await mine.aput(NS, "o-expiring", {"tag": "gone"}, ttl=0.001)
        await asyncio.sleep(0.2)
        assert await theirs.sweep_ttl() == 1
        assert await mine.aget(NS, "o-expiring") is None

        # Deletes across.
        await theirs.adelete(NS, "o1")
        await mine.adelete(NS, "u1")
        assert await mine.aget(NS, "o1") is None
        assert await theirs.aget(NS, "u1") is None
        assert {item.key for item in await theirs.asearch(NS, limit=10)} == {"u2", "o2"}


async def test_our_setup_adopts_a_database_upstream_built(fresh_database_url: str) -> None:
    url = fresh_database_url
    await upstream_setup(url)
    async with upstream(url) as theirs:
        await theirs.aput(NS, "u1", {"text": "kept", "n": 1})
        await theirs.aput(NS, "u2", {"text": "kept, with ttl", "n": 2}, ttl=3)
    rows_before = store_rows(url)

    async with ours(url) as mine:
        await mine.setup()
        await mine.setup()  # idempotent
        assert store_rows(url) == rows_before
        item = await mine.aget(NS, "u2", refresh_ttl=False)
        assert item is not None and item.value == {"text": "kept, with ttl", "n": 2}
        await mine.aput(NS, "o1", {"text": "fractional ttl", "n": 3}, ttl=0.1)

    after_ours = catalog(url)
    await upstream_setup(url)  # a no-op now
    assert catalog(url) == after_ours
    async with upstream(url) as theirs:
        await theirs.aput(NS, "u3", {"text": "after our setup", "n": 4}, ttl=2)
        assert (await theirs.aget(NS, "o1")) is not None
        found = await theirs.asearch(NS, filter={"n": {"$eq": 3}})
        assert [item.key for item in found] == ["o1"]
        assert {item.key for item in await theirs.asearch(NS, limit=10)} == {
            "u1",
            "u2",
            "u3",
            "o1",
        }
    rows = {row[1]: row for row in store_rows(url)}
    assert rows["o1"][6] == 0.1  # our fractional TTL survives as written
    assert rows["u3"][6] == 2


# --- vectors (pgvector) ---------------------------------------------------------------------------


@pytest.mark.vector
async def test_vectors_written_by_either_are_found_by_the_other(
    engine: AsyncEngine, database_url: str
) -> None:
    index = index_config()
    await upstream_setup(database_url, index)
    built = catalog(database_url)
    mine = AsyncSQLAlchemyStore(engine, index=index)
    await mine.setup()
    assert catalog(database_url) == built

    async with upstream(database_url, index) as theirs:
        for key in ("u1", "u2", "u3"):
            await theirs.aput(NS, key, {"text": TEXTS[key], "tag": "up"})
        for key in ("o1", "o2", "o3"):
            await mine.aput(NS, key, {"text": TEXTS[key], "tag": "ours"})
        # The same texts embed to the same vectors, whoever wrote them.
        stored = {row[1]: row[3] for row in vector_rows(database_url)}
        assert set(stored) == set(TEXTS)
        embedder = HashingEmbeddings(DIMS)
        for key, text in TEXTS.items():
            assert [float(x) for x in stored[key].strip("[]").split(",")] == (
                embedder.embed_query(text)
            ), key

        for key in TEXTS:
            a = await mine.aget(NS, key)
            b = await theirs.aget(NS, key)
            assert a is not None and b is not None and a.value == b.value

        for query in QUERIES:
            a = await mine.asearch(NS, query=query, limit=10)
            b = await theirs.asearch(NS, query=query, limit=10)
            assert len(a) == len(TEXTS)
            assert_same_ranking(a, b, tolerance=1e-4)
            for tag, keys in (("up", {"u1", "u2", "u3"}), ("ours", {"o1", "o2", "o3"})):
                a = await mine.asearch(NS, query=query, filter={"tag": tag}, limit=10)
                b = await theirs.asearch(NS, query=query, filter={"tag": tag}, limit=10)
                assert set(by_key(a)) == keys
                assert_same_ranking(a, b, tolerance=1e-4)

        # A delete by either removes the item's vectors too.
        await theirs.adelete(NS, "o1")
        await mine.adelete(NS, "u1")
        assert {row[1] for row in vector_rows(database_url)} == set(TEXTS) - {"o1", "u1"}
        remaining = await mine.asearch(NS, query=QUERIES[0], limit=10)
        assert set(by_key(remaining)) == set(TEXTS) - {"o1", "u1"}


@pytest.mark.vector
async def test_upstream_setup_is_a_no_op_on_our_vector_layer(fresh_database_url: str) -> None:
    url = fresh_database_url
    index = index_config(vector_type="halfvec", kind="hnsw")
    async with ours(url, index) as mine:
        await mine.setup()
        for key in ("o1", "o2", "o3"):
            await mine.aput(NS, key, {"text": TEXTS[key]})
    built = catalog(url)
    assert built["embedding"] == f"halfvec({DIMS})"
    await upstream_setup(url, index)
    assert catalog(url) == built
    async with upstream(url, index) as theirs:
        results = await theirs.asearch(NS, query="slow boat", limit=10)
        assert set(by_key(results)) == {"o1", "o2", "o3"}
        assert results[0].key == "o1"


@pytest.mark.vector
@pytest.mark.parametrize("kind", ["hnsw", "ivfflat", "flat"])
@pytest.mark.parametrize("vector_type", ["vector", "halfvec"])
async def test_our_setup_adopts_upstream_vector_layers(
    fresh_database_url: str, vector_type: str, kind: str
) -> None:
    url = fresh_database_url
    index = index_config(vector_type=vector_type, kind=kind)
    tolerance = 1e-4 if vector_type == "vector" else 1e-2
    await upstream_setup(url, index)
    async with upstream(url, index) as theirs:
        for key in ("u1", "u2", "u3"):
            await theirs.aput(NS, key, {"text": TEXTS[key], "tag": key})
    built = catalog(url)
    assert built["embedding"] == f"{vector_type}({DIMS})"
    rows = store_rows(url)
    vectors = vector_rows(url)

    async with ours(url, index) as mine:
        await mine.setup()
        # Adopted as it was: no data change, no schema change (but the deliberate one, SPEC
        # §5.6: fractional TTLs).
        built["ttl_minutes"] = "double precision"
        assert catalog(url) == built
        assert store_rows(url) == rows
        assert vector_rows(url) == vectors
        for key in ("u1", "u2", "u3"):
            item = await mine.aget(NS, key)
            assert item is not None and item.value == {"text": TEXTS[key], "tag": key}
        found = await mine.asearch(NS, query="red apple", limit=10)
        assert set(by_key(found)) == {"u1", "u2", "u3"}
        assert found[0].key == "u1"
        only = await mine.asearch(NS, query="red apple", filter={"tag": "u3"}, limit=10)
        assert [item.key for item in only] == ["u3"]
        for key in ("o1", "o2", "o3"):
            await mine.aput(NS, key, {"text": TEXTS[key], "tag": key})
        ranked_by_ours = await mine.asearch(NS, query="blue boat", limit=10)

    # Upstream keeps working on the database after our setup: reads, writes, searches.
    await upstream_setup(url, index)
    assert catalog(url) == built
    async with upstream(url, index) as theirs:
        await theirs.aput(NS, "u4", {"text": "blue boat", "tag": "u4"})
        item = await theirs.aget(NS, "o1")
        assert item is not None and item.value == {"text": TEXTS["o1"], "tag": "o1"}
        if kind != "ivfflat":
            # (Upstream searches ivfflat with pgvector's default of one probe, so on an index
            # built on an empty table its recall is upstream's own business.)
            ranked_by_theirs = await theirs.asearch(NS, query="blue boat", limit=10)
            assert ranked_by_theirs[0].key == "u4"
            assert_same_ranking(ranked_by_theirs[1:], ranked_by_ours, tolerance=tolerance)
    async with ours(url, index) as mine:
        found = await mine.asearch(NS, query="blue boat", limit=10)
        assert set(by_key(found)) == set(TEXTS) | {"u4"}
        assert found[0].key == "u4"
        assert found[0].score == pytest.approx(1.0, abs=tolerance)


@pytest.mark.vector
async def test_setup_refuses_a_vector_table_of_other_dimensions(fresh_database_url: str) -> None:
    url = fresh_database_url
    await upstream_setup(url, index_config(dims=12))
    async with upstream(url, index_config(dims=12)) as theirs:
        await theirs.aput(NS, "u1", {"text": "twelve dims"})
    built = catalog(url)
    rows = store_rows(url)

    async with ours(url, index_config(dims=20)) as mine:
        with pytest.raises(SchemaMismatchError) as raised:
            await mine.setup()
    message = str(raised.value)
    assert "12" in message and "20" in message, message
    # Nothing of the vector layer or the data changed on the way to the error (the base
    # migrations did run: SPEC §5.6's fractional ttl_minutes).
    built["ttl_minutes"] = "double precision"
    assert catalog(url) == built
    assert store_rows(url) == rows
    async with ours(url, index_config(dims=12)) as mine:
        await mine.setup()
        assert [item.key for item in await mine.asearch(NS, query="twelve dims")] == ["u1"]


@pytest.mark.vector
async def test_setup_refuses_a_vector_table_of_another_type(fresh_database_url: str) -> None:
    url = fresh_database_url
    await upstream_setup(url, index_config(vector_type="vector", dims=12))
    async with ours(url, index_config(vector_type="halfvec", dims=12)) as mine:
        with pytest.raises(SchemaMismatchError) as raised:
            await mine.setup()
    message = str(raised.value)
    assert "vector(12)" in message and "halfvec(12)" in message, message
    assert catalog(url)["embedding"] == "vector(12)"
