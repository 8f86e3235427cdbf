"""AsyncSQLAlchemyStore without vectors: ops, batch semantics, filters, namespaces, TTL,
connection modes and the sync twins. Runs on any PostgreSQL (no pgvector needed)."""

from __future__ import annotations

import asyncio
import gc
import uuid
import weakref
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from langgraph.store.base import (
    GetOp,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchOp,
)
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from langgraph_sqlalchemy import AsyncSQLAlchemyStore, VectorExtensionError, migrations
from langgraph_sqlalchemy.engine import create_engine
from langgraph_sqlalchemy.schema import get_tables
from langgraph_sqlalchemy.store import ensure_vector_layer

STORE = get_tables(None).store


@pytest.fixture
async def store(engine: AsyncEngine) -> AsyncIterator[AsyncSQLAlchemyStore]:
    s = AsyncSQLAlchemyStore(engine)
    yield s
    await s.stop_ttl_sweeper()


async def _row(engine: AsyncEngine, prefix: str, key: str) -> dict[str, object] | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    STORE,
                    (STORE.c.expires_at - STORE.c.updated_at).label("ttl_span"),
                    (STORE.c.expires_at - text("now()")).label("remaining"),
                ).where(STORE.c.prefix == prefix, STORE.c.key == key)
            )
        ).first()
    return dict(row._mapping) if row is not None else None


async def _expire(engine: AsyncEngine, prefix: str, key: str) -> None:
    """Move an item's expiry into the past (as if its TTL had run out)."""
    async with engine.begin() as conn:
        await conn.execute(
            STORE.update()
            .where(STORE.c.prefix == prefix, STORE.c.key == key)
            .values(expires_at=text("now() - interval '1 second'"))
        )


# --- basic operations -----------------------------------------------------------------------


async def test_put_get_update_delete(store: AsyncSQLAlchemyStore) -> None:
    assert await store.aget(("users", "u1"), "prefs") is None
    await store.aput(("users", "u1"), "prefs", {"theme": "dark", "n": [1, 2, {"x": None}]})
    item = await store.aget(("users", "u1"), "prefs")
    assert item is not None
    assert item.namespace == ("users", "u1")
    assert item.key == "prefs"
    assert item.value == {"theme": "dark", "n": [1, 2, {"x": None}]}
    assert item.created_at == item.updated_at
    assert item.created_at.tzinfo is not None

    await asyncio.sleep(0.01)
    await store.aput(("users", "u1"), "prefs", {"theme": "light"})
    updated = await store.aget(("users", "u1"), "prefs")
    assert updated is not None
    assert updated.value == {"theme": "light"}
    assert updated.created_at == item.created_at
    assert updated.updated_at > item.updated_at

    await store.adelete(("users", "u1"), "prefs")
    assert await store.aget(("users", "u1"), "prefs") is None
    await store.adelete(("users", "u1"), "prefs")  # deleting a missing item is fine


async def test_setup_is_idempotent(store: AsyncSQLAlchemyStore) -> None:
    await store.setup()
    await store.setup()
    await store.aput(("a",), "k", {"v": 1})
    assert (await store.aget(("a",), "k")) is not None


async def test_unicode_and_awkward_keys_round_trip(store: AsyncSQLAlchemyStore) -> None:
    ns = ("ünï", "日本語", "emoji🙂")
    value = {"text": "line1\nline2\t'\"\\", "big": 2**70, "neg": -0.5, "empty": {}}
    for key in ("", " ", "a.b", "%_\\", "'; DROP TABLE store; --"):
        await store.aput(ns, key, value)
        got = await store.aget(ns, key)
        assert got is not None and got.value == value and got.key == key


async def test_batch_reads_do_not_see_the_batch_writes(store: AsyncSQLAlchemyStore) -> None:
    ns = ("batch",)
    await store.aput(ns, "existing", {"v": "old"})
    results = await store.abatch(
        [
            PutOp(ns, "new", {"v": 1}),
            GetOp(ns, "new"),
            PutOp(ns, "existing", {"v": "new"}),
            GetOp(ns, "existing"),
            SearchOp(ns),
            ListNamespacesOp(),
        ]
    )
    assert results[0] is None and results[2] is None
    assert results[1] is None
    assert results[3] is not None and results[3].value == {"v": "old"}
    assert [i.key for i in results[4]] == ["existing"]
    assert results[5] == [("batch",)]
    assert (await store.aget(ns, "new")).value == {"v": 1}  # type: ignore[union-attr]
    assert (await store.aget(ns, "existing")).value == {"v": "new"}  # type: ignore[union-attr]


async def test_batch_last_put_wins(store: AsyncSQLAlchemyStore) -> None:
    ns = ("dup",)
    await store.abatch(
        [PutOp(ns, "k", {"v": 1}), PutOp(ns, "k", {"v": 2}), PutOp(ns, "k", {"v": 3})]
    )
    assert (await store.aget(ns, "k")).value == {"v": 3}  # type: ignore[union-attr]
    await store.abatch([PutOp(ns, "k", {"v": 4}), PutOp(ns, "k", None)])
    assert await store.aget(ns, "k") is None
    await store.abatch([PutOp(ns, "k", None), PutOp(ns, "k", {"v": 5})])
    assert (await store.aget(ns, "k")).value == {"v": 5}  # type: ignore[union-attr]


async def test_concurrent_calls_coalesce_into_one_batch(store: AsyncSQLAlchemyStore) -> None:
    calls: list[int] = []
    original = store.abatch

    async def counting(ops):  # type: ignore[no-untyped-def]
        ops = list(ops)
        calls.append(len(ops))
        return await original(ops)

    store.abatch = counting  # type: ignore[method-assign]
    await asyncio.gather(*(store.aput(("c",), f"k{i}", {"i": i}) for i in range(25)))
    assert sum(calls) == 25 and len(calls) < 5, calls
    calls.clear()
    items = await asyncio.gather(*(store.aget(("c",), f"k{i}") for i in range(25)))
    assert [it.value["i"] for it in items] == list(range(25))  # type: ignore[union-attr]
    assert len(calls) < 5, calls


# --- search and filters ---------------------------------------------------------------------


async def test_search_scope_is_whole_labels(store: AsyncSQLAlchemyStore) -> None:
    await store.aput(("foo",), "a", {"v": 1})
    await store.aput(("foo", "bar"), "b", {"v": 2})
    await store.aput(("foobar",), "c", {"v": 3})
    await store.aput(("fo",), "d", {"v": 4})
    assert sorted(i.key for i in await store.asearch(("foo",))) == ["a", "b"]
    assert [i.key for i in await store.asearch(("foo", "bar"))] == ["b"]
    assert [i.key for i in await store.asearch(("foo", "ba"))] == []
    assert sorted(i.key for i in await store.asearch(())) == ["a", "b", "c", "d"]


async def test_search_pagination_is_stable(store: AsyncSQLAlchemyStore) -> None:
    # One batch: every item shares one updated_at, so only the tie-break orders them.
    await store.abatch([PutOp(("p", str(i % 3)), f"k{i:02d}", {"i": i}) for i in range(20)])
    pages = [await store.asearch(("p",), limit=6, offset=o) for o in range(0, 24, 6)]
    keys = [i.key for page in pages for i in page]
    assert len(keys) == 20 and len(set(keys)) == 20
    assert [len(p) for p in pages] == [6, 6, 6, 2]
    assert all(i.score is None for page in pages for i in page)
    await store.aput(("p", "0"), "k05", {"i": 5, "touched": True})
    first = await store.asearch(("p",), limit=1)
    assert first[0].key == "k05"  # newest first


FILTER_DATA = {
    "int10": {
        "n": 10,
        "s": "10",
        "tag": "x",
        "nested": {"a": 1, "b": {"c": "deep"}},
        "arr": [1, 2],
    },
    "int9": {"n": 9, "s": "9", "tag": "y", "nested": {"a": 2}, "arr": [1, 2, 3]},
    "float9_5": {"n": 9.5, "s": "abc", "tag": None, "arr": []},
    "strn": {"n": "11", "s": "ABC", "flag": True},
    "bool": {"n": True, "flag": False, "nested": {"a": 1}},
    "missing": {"other": 1},
}

FILTER_CASES = [
    ({"n": 10}, {"int10"}),
    ({"n": 10.0}, {"int10"}),  # 10 and 10.0 are one JSON number
    ({"n": "11"}, {"strn"}),  # typed: the string, not a number
    ({"n": True}, {"bool"}),  # typed: true is not 1
    ({"tag": None}, {"float9_5", "strn", "bool", "missing"}),  # null or missing
    ({"nested": {"a": 1}}, {"int10", "bool"}),  # objects match on the given keys
    ({"nested": {"b": {"c": "deep"}}}, {"int10"}),
    ({"nested": {}}, {"int10", "int9", "bool"}),
    ({"arr": [1, 2]}, {"int10"}),  # lists match exactly
    ({"arr": []}, {"float9_5"}),
    ({"n": {"$eq": 9}}, {"int9"}),
    ({"n": {"$ne": 9}}, {"int10", "float9_5", "strn", "bool", "missing"}),  # missing matches
    ({"tag": {"$ne": None}}, {"int10", "int9"}),
    ({"n": {"$gt": 9}}, {"int10", "float9_5"}),  # numbers as numbers (10 > 9), strings never
    ({"n": {"$gte": 9.5}}, {"int10", "float9_5"}),
    ({"n": {"$lt": 10}}, {"int9", "float9_5"}),
    ({"n": {"$lte": 9}}, {"int9"}),
    ({"n": {"$gt": 9, "$lt": 10}}, {"float9_5"}),
    ({"s": {"$gt": "9"}}, {"float9_5", "strn"}),  # "abc", "ABC" > "9" (code points)
    ({"s": {"$lt": "9"}}, {"int10"}),  # "10" < "9" as strings
    ({"s": {"$gte": "a"}}, {"float9_5"}),
    ({"nested": {"a": {"$gte": 2}}}, {"int9"}),  # operators work at any depth
    ({"n": 10, "tag": "x"}, {"int10"}),
    ({"n": 10, "tag": "y"}, set()),
    ({"flag": False}, {"bool"}),
]


@pytest.mark.parametrize(
    ("filter", "expected"), FILTER_CASES, ids=[str(f) for f, _ in FILTER_CASES]
)
async def test_filters(store: AsyncSQLAlchemyStore, filter: dict, expected: set[str]) -> None:  # type: ignore[type-arg]
    await store.abatch([PutOp(("f",), key, value) for key, value in FILTER_DATA.items()])
    found = {i.key for i in await store.asearch(("f",), filter=filter, limit=100)}
    assert found == expected


async def test_unknown_filter_operator_is_a_value_error(store: AsyncSQLAlchemyStore) -> None:
    await store.aput(("f",), "k", {"n": 1})
    for bad in ({"n": {"$regex": "x"}}, {"n": {"$gt": 1, "other": 2}}, {"n": {"$in": [1]}}):
        with pytest.raises(ValueError, match="unsupported filter operator"):
            await store.asearch(("f",), filter=bad)
    with pytest.raises(ValueError, match="number or a string"):
        await store.asearch(("f",), filter={"n": {"$gt": [1]}})
    assert len(await store.asearch(("f",), filter={"n": 1})) == 1


# --- list_namespaces ------------------------------------------------------------------------

NAMESPACES = [
    ("a", "b", "c"),
    ("a", "b", "d"),
    ("a", "e"),
    ("a-c",),
    ("B",),
    ("x", "b", "c"),
    ("x", "y", "z", "c"),
]


async def _fill_namespaces(store: AsyncSQLAlchemyStore) -> None:
    await store.abatch(
        [PutOp(ns, "k", {"v": 1}) for ns in NAMESPACES] + [PutOp(("a", "e"), "k2", {})]
    )


async def test_list_namespaces_sorted_like_tuples(store: AsyncSQLAlchemyStore) -> None:
    await _fill_namespaces(store)
    # Python tuple order (code points, label by label), whatever the database collation.
    assert await store.alist_namespaces() == sorted(NAMESPACES)
    assert await store.alist_namespaces(limit=2, offset=1) == sorted(NAMESPACES)[1:3]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"prefix": ("a",)}, [("a", "b", "c"), ("a", "b", "d"), ("a", "e")]),
        ({"prefix": ("a", "b")}, [("a", "b", "c"), ("a", "b", "d")]),
        ({"prefix": ("a", "*", "c")}, [("a", "b", "c")]),
        ({"prefix": ("*", "b")}, [("a", "b", "c"), ("a", "b", "d"), ("x", "b", "c")]),
        ({"suffix": ("c",)}, [("a", "b", "c"), ("x", "b", "c"), ("x", "y", "z", "c")]),
        ({"suffix": ("b", "*")}, [("a", "b", "c"), ("a", "b", "d"), ("x", "b", "c")]),
        ({"prefix": ("x",), "suffix": ("c",)}, [("x", "b", "c"), ("x", "y", "z", "c")]),
        ({"prefix": ("*", "*", "*", "*")}, [("x", "y", "z", "c")]),
        ({"max_depth": 1}, [("B",), ("a",), ("a-c",), ("x",)]),
        ({"max_depth": 2, "prefix": ("a",)}, [("a", "b"), ("a", "e")]),
        ({"max_depth": 2, "suffix": ("c",)}, [("a", "b"), ("x", "b"), ("x", "y")]),
        ({"max_depth": 2, "limit": 2, "offset": 1}, [("a", "b"), ("a", "e")]),
        ({"prefix": ("a", "b", "c", "d")}, []),
        ({"prefix": ("a-",)}, []),
    ],
)
async def test_list_namespaces_conditions(
    store: AsyncSQLAlchemyStore,
    kwargs: dict,
    expected: list[tuple[str, ...]],  # type: ignore[type-arg]
) -> None:
    await _fill_namespaces(store)
    assert await store.alist_namespaces(**kwargs) == expected


async def test_list_namespaces_max_depth_below_one_is_an_error(store: AsyncSQLAlchemyStore) -> None:
    for depth in (0, -1):
        with pytest.raises(ValueError, match="max_depth"):
            await store.alist_namespaces(max_depth=depth)


# --- TTL ------------------------------------------------------------------------------------


async def test_fractional_ttl_is_exact(engine: AsyncEngine) -> None:
    store = AsyncSQLAlchemyStore(engine, ttl={"default_ttl": 0.05})
    await store.aput(("t",), "default", {"v": 1})
    await store.aput(("t",), "explicit", {"v": 1}, ttl=0.1)
    await store.aput(("t",), "none", {"v": 1}, ttl=None)
    default = await _row(engine, "t", "default")
    explicit = await _row(engine, "t", "explicit")
    none = await _row(engine, "t", "none")
    assert default is not None and explicit is not None and none is not None
    assert default["ttl_minutes"] == 0.05 and default["ttl_span"] == timedelta(seconds=3)
    assert explicit["ttl_minutes"] == 0.1 and explicit["ttl_span"] == timedelta(seconds=6)
    assert none["expires_at"] is None and none["ttl_minutes"] is None
    assert await store.aget(("t",), "default") is not None  # not expired on arrival


async def test_reads_refresh_ttl(engine: AsyncEngine) -> None:
    store = AsyncSQLAlchemyStore(engine, ttl={"default_ttl": 0.05})
    await store.abatch([PutOp(("t",), k, {"v": k}, ttl=0.05) for k in ("g", "s", "no")])
    before = {k: (await _row(engine, "t", k))["expires_at"] for k in ("g", "s", "no")}  # type: ignore[index]
    await asyncio.sleep(0.05)
    await store.aget(("t",), "g")
    await store.asearch(("t",), filter={"v": "s"})
    await store.aget(("t",), "no", refresh_ttl=False)
    await store.asearch(("t",), filter={"v": "no"}, refresh_ttl=False)
    after = {k: (await _row(engine, "t", k)) for k in ("g", "s", "no")}
    assert after["g"]["expires_at"] > before["g"]  # type: ignore[index]
    assert after["s"]["expires_at"] > before["s"]  # type: ignore[index]
    assert after["no"]["expires_at"] == before["no"]  # type: ignore[index]
    # A refresh restarts the full fractional TTL from now.
    assert timedelta(seconds=2.9) < after["g"]["remaining"] <= timedelta(seconds=3)  # type: ignore[index,operator]


async def test_refresh_on_read_false_by_config(engine: AsyncEngine) -> None:
    store = AsyncSQLAlchemyStore(engine, ttl={"default_ttl": 1, "refresh_on_read": False})
    await store.aput(("t",), "k", {"v": 1})
    before = (await _row(engine, "t", "k"))["expires_at"]  # type: ignore[index]
    await asyncio.sleep(0.02)
    await store.aget(("t",), "k")
    await store.asearch(("t",))
    assert (await _row(engine, "t", "k"))["expires_at"] == before  # type: ignore[index]
    await store.aget(("t",), "k", refresh_ttl=True)
    assert (await _row(engine, "t", "k"))["expires_at"] > before  # type: ignore[index]


async def test_omit_expired_hides_and_never_revives(engine: AsyncEngine) -> None:
    store = AsyncSQLAlchemyStore(engine, ttl={"default_ttl": 10, "omit_expired": True})
    await store.abatch(
        [PutOp(("o", "x"), "dead", {"v": 1}, ttl=10), PutOp(("o",), "live", {"v": 2}, ttl=10)]
    )
    await _expire(engine, "o.x", "dead")
    assert await store.aget(("o", "x"), "dead") is None
    assert [i.key for i in await store.asearch(("o",))] == ["live"]
    assert await store.alist_namespaces() == [("o",)]
    row = await _row(engine, "o.x", "dead")
    assert row is not None and row["remaining"] < timedelta(0)  # type: ignore[operator]
    # Without omit_expired an expired-but-unswept item is still served (upstream behaviour)
    # and a read refresh revives it.
    plain = AsyncSQLAlchemyStore(engine, ttl={"default_ttl": 10})
    assert await plain.aget(("o", "x"), "dead") is not None
    assert (await _row(engine, "o.x", "dead"))["remaining"] > timedelta(minutes=9)  # type: ignore[index,operator]


async def test_sweep_ttl_counts_deleted(engine: AsyncEngine) -> None:
    store = AsyncSQLAlchemyStore(engine, ttl={"default_ttl": 10})
    await store.abatch([PutOp(("s",), f"k{i}", {"i": i}, ttl=10) for i in range(5)])
    await store.aput(("s",), "forever", {"v": 1}, ttl=None)
    for i in range(3):
        await _expire(engine, "s", f"k{i}")
    assert await store.sweep_ttl() == 3
    assert await store.sweep_ttl() == 0
    assert sorted(i.key for i in await store.asearch(("s",))) == ["forever", "k3", "k4"]


async def test_ttl_sweeper_runs_and_stops(engine: AsyncEngine) -> None:
    store = AsyncSQLAlchemyStore(engine, ttl={"default_ttl": 10, "sweep_interval_minutes": 1})
    await store.aput(("w",), "k", {"v": 1})
    await _expire(engine, "w", "k")
    task = await store.start_ttl_sweeper(sweep_interval_minutes=0.005)  # every 0.3 s
    assert await store.start_ttl_sweeper() is task  # already running: the same task
    for _ in range(50):
        if await _row(engine, "w", "k") is None:
            break
        await asyncio.sleep(0.1)
    assert await _row(engine, "w", "k") is None
    assert await store.stop_ttl_sweeper(timeout=5) is True
    assert task.done()
    assert await store.stop_ttl_sweeper() is True


async def test_real_expiry_with_fractional_ttl(engine: AsyncEngine) -> None:
    store = AsyncSQLAlchemyStore(engine, ttl={"omit_expired": True})
    await store.aput(("r",), "k", {"v": 1}, ttl=0.01)  # 0.6 s
    assert await store.aget(("r",), "k", refresh_ttl=False) is not None
    await asyncio.sleep(0.8)
    assert await store.aget(("r",), "k") is None
    assert await store.sweep_ttl() == 1


# --- connection modes, schema, sync twins ---------------------------------------------------


async def test_schema_option_places_tables_in_that_schema(engine: AsyncEngine) -> None:
    schema = f"lgsa_{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))  # generated name, not input
    try:
        store = AsyncSQLAlchemyStore(engine, schema=schema)
        await store.setup()
        await store.aput(("in", "schema"), "k", {"v": 1})
        assert (await store.aget(("in", "schema"), "k")).value == {"v": 1}  # type: ignore[union-attr]
        assert await store.alist_namespaces() == [("in", "schema")]
        assert await _row(engine, "in.schema", "k") is None  # not in the default schema
        async with engine.connect() as conn:
            n = (
                await conn.execute(select(text("count(*)")).select_from(get_tables(schema).store))
            ).scalar_one()
        assert n == 1
        default_store = AsyncSQLAlchemyStore(engine)
        assert await default_store.aget(("in", "schema"), "k") is None
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


async def test_host_connection_joins_host_transaction(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.begin()
        store = AsyncSQLAlchemyStore(conn)
        await store.aput(("host",), "rolled", {"v": 1})
        assert (await store.aget(("host",), "rolled")) is not None
        await conn.rollback()
    assert await _row(engine, "host", "rolled") is None

    async with engine.connect() as conn:
        await conn.begin()
        store = AsyncSQLAlchemyStore(conn)
        await asyncio.gather(*(store.aput(("host",), f"k{i}", {"i": i}) for i in range(5)))
        # A failing call does not poison the host's transaction (it ran in a savepoint).
        with pytest.raises(ValueError):
            await store.asearch(("host",), filter={"i": {"$bogus": 1}})
        assert len(await store.asearch(("host",))) == 5
        await conn.commit()
    assert await _row(engine, "host", "k4") is not None


async def test_sync_twins_from_a_thread(store: AsyncSQLAlchemyStore) -> None:
    def work() -> tuple[object, ...]:
        store.put(("sync",), "k", {"v": 1})
        got = store.get(("sync",), "k")
        found = store.search(("sync",))
        listed = store.list_namespaces()
        [batched] = store.batch([GetOp(("sync",), "k")])
        assert batched == got
        store.delete(("sync",), "k")
        return got, found, listed, store.get(("sync",), "k")

    got, found, listed, gone = await asyncio.to_thread(work)
    assert got.value == {"v": 1}  # type: ignore[attr-defined]
    assert [i.key for i in found] == ["k"]  # type: ignore[attr-defined]
    assert listed == [("sync",)]
    assert gone is None


async def test_sync_call_on_the_event_loop_is_refused(store: AsyncSQLAlchemyStore) -> None:
    with pytest.raises(asyncio.InvalidStateError, match="aget"):
        store.get(("x",), "k")
    with pytest.raises(asyncio.InvalidStateError):
        store.put(("x",), "k", {"v": 1})


async def test_from_conn_string(database_url: str, engine: AsyncEngine) -> None:
    del engine  # tables emptied
    async with AsyncSQLAlchemyStore.from_conn_string(
        database_url, ttl={"default_ttl": 5}, pool_config={"max_size": 2}
    ) as store:
        await store.aput(("fcs",), "k", {"v": 1})
        assert (await store.aget(("fcs",), "k")).value == {"v": 1}  # type: ignore[union-attr]
        await store.start_ttl_sweeper()
    assert not store._sweeper.running  # stopped on exit


async def test_custom_deserializer(engine: AsyncEngine) -> None:
    seen: list[bytes] = []

    def loads(raw: bytes) -> dict[str, object]:
        seen.append(raw)
        import json

        return {"decoded": json.loads(raw)}

    store = AsyncSQLAlchemyStore(engine, deserializer=loads)
    await store.aput(("d",), "k", {"v": 1})
    item = await store.aget(("d",), "k")
    assert item is not None and item.value == {"decoded": {"v": 1}}
    assert seen and isinstance(seen[0], bytes)


async def test_list_namespaces_through_match_condition_ops(store: AsyncSQLAlchemyStore) -> None:
    await _fill_namespaces(store)
    [result] = await store.abatch(
        [
            ListNamespacesOp(
                match_conditions=(
                    MatchCondition("prefix", ("a",)),
                    MatchCondition("suffix", ("d",)),
                ),
            )
        ]
    )
    assert result == [("a", "b", "d")]


async def test_setup_without_pgvector_rights_names_the_fix(
    pg_server: Any, fresh_database_url: str
) -> None:
    """On a server without pgvector (or as a role that may not create extensions),
    setup() with an index fails with VectorExtensionError saying what to do."""
    role = f"lgsa_noext_{uuid.uuid4().hex[:8]}"  # generated, not input
    admin = create_engine(fresh_database_url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        await migrations.upgrade(admin)
        async with admin.begin() as conn:
            # A run-time role after the owner migrated (SPEC 6): it can read, not create.
            await conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
        url = make_url(fresh_database_url).set(username=role, password=None)
        limited = create_engine(url)
        try:
            store = AsyncSQLAlchemyStore(
                limited, index={"dims": 2, "embed": lambda texts: [[1.0, 0.0] for _ in texts]}
            )
            with pytest.raises(VectorExtensionError, match="CREATE EXTENSION vector") as info:
                await ensure_vector_layer(limited, dims=2)
            assert info.value.__cause__ is not None
            with pytest.raises(VectorExtensionError):
                await store.setup()
        finally:
            await limited.dispose()
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}"))
        await admin.dispose()
        admin = create_engine(pg_server.admin_url)
        try:
            async with admin.begin() as conn:
                await conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
        finally:
            await admin.dispose()


async def test_a_dropped_store_is_freed_at_once(engine: AsyncEngine) -> None:
    """No reference cycle holds a store for the cycle collector (whose pass is where
    LangGraph's batching base class destroys the store's pending batch task, "Task was
    destroyed but it is pending!"): it is freed by its reference count, with its TTL sweeper
    started and stopped or never started."""
    for sweeper in (False, True):
        store = AsyncSQLAlchemyStore(engine, ttl={"default_ttl": 1, "sweep_interval_minutes": 1})
        await store.aput(("drop",), "k", {"v": 1})
        assert await store.aget(("drop",), "k") is not None
        if sweeper:
            await store.start_ttl_sweeper()
            assert await store.stop_ttl_sweeper(5)
        alive = weakref.ref(store)
        gc.disable()
        try:
            del store
            assert alive() is None  # no collection needed
        finally:
            gc.enable()
        await asyncio.sleep(0)
