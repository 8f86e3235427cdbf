"""Suite 7: hostile strings everywhere a caller can put one.

Hypothesis draws strings rich in what breaks naive SQL and LIKE patterns (NUL, quotes, ``%``,
``_``, ``\\``, ``*``, ``$``, dots, newlines, comment markers, any unicode) and uses them as
thread ids, checkpoint namespaces, metadata keys and values, store namespace labels, keys, filter
keys and filter values. Each input is either stored and read back exactly, or refused with a
``ValueError`` (``InvalidInputError`` is one) having written nothing. Reads never cross into a
neighbouring thread or namespace: the store is compared, operation by operation, with LangGraph's
reference ``InMemoryStore`` on the same data, decoys included. A batch holding one bad put writes
nothing at all. Runs on the shared test server (embedded or ``TEST_DATABASE_URL``).

``FAULTS_EXAMPLES`` sets the number of examples per property (default 25; 400 under -m slow).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from langgraph.store.base import GetOp, PutOp
from langgraph.store.memory import InMemoryStore
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from langgraph_sqlalchemy import AsyncSQLAlchemySaver, AsyncSQLAlchemyStore
from langgraph_sqlalchemy.schema import get_tables

from .workload import make_checkpoint

T = get_tables()

NASTY = ["\x00", "'", '"', "%", "_", "\\", ".", "*", "$", "\n", "-- ", ";", "/*", "?", "$1",
         "%s", "[", "]", "^", "(", "|", ",", " ", "é", "😀", "\u202e", "\ufeff"]
hostile = st.lists(
    st.one_of(st.sampled_from(NASTY), st.characters(codec="utf-8")), max_size=10
).map("".join)
label = hostile.filter(bool)


def examples(default: int) -> int:
    return int(os.environ.get("FAULTS_EXAMPLES", default))


PROPERTY = settings(
    max_examples=examples(25),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PROPERTY_SLOW = settings(
    max_examples=examples(400),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


async def empty_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for table in (T.checkpoint_writes, T.checkpoint_blobs, T.checkpoints, T.store):
            await conn.execute(delete(table))


async def row_count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


# --- saver -------------------------------------------------------------------------------------


async def check_saver_ids(
    engine: AsyncEngine, thread: str, ns: str, meta_key: str, meta_value: str
) -> None:
    assume(meta_key.replace("\x00", "") != "fixed")
    await empty_tables(engine)
    saver = AsyncSQLAlchemySaver(engine)
    checkpoint, versions = make_checkpoint(saver, 1, None, {"note": meta_value})
    config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
    metadata: Any = {meta_key: meta_value, "fixed": 1}
    try:
        saved = await saver.aput(config, checkpoint, metadata, versions)
    except ValueError:
        assert await row_count(engine, T.checkpoints) == 0, "refused, yet written"
        assert await row_count(engine, T.checkpoint_blobs) == 0, "refused, yet blobs written"
        return
    assert saved["configurable"] == {
        "thread_id": thread, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]
    }
    # Decoys: neighbouring threads and namespaces whose ids a LIKE or a bad escape would mix up.
    for decoy_thread, decoy_ns in {
        (thread + "x", ns), ("%", ns), ("_" * max(1, len(thread)), ns), (thread, ns + "x"),
        (thread, "%"), (thread.upper() if thread.upper() != thread else thread + "X", ns),
    }:
        if (decoy_thread, decoy_ns) == (thread, ns) or "\x00" in decoy_thread + decoy_ns:
            continue
        decoy, dv = make_checkpoint(saver, 2, None, {"note": "decoy"})
        await saver.aput(
            {"configurable": {"thread_id": decoy_thread, "checkpoint_ns": decoy_ns}},
            decoy, {"fixed": 2}, dv,
        )
    got = await saver.aget_tuple(config)  # newest of (thread, ns)
    assert got is not None
    assert got.checkpoint["id"] == checkpoint["id"]
    assert got.config["configurable"]["thread_id"] == thread
    assert got.config["configurable"]["checkpoint_ns"] == ns
    assert got.checkpoint["channel_values"]["payload"] == {"note": meta_value}
    # NUL is stripped from metadata strings, keys included (SPEC 4); the rest round-trips.
    assert got.metadata.get(meta_key.replace("\x00", "")) == meta_value.replace("\x00", "")
    listed = [c async for c in saver.alist(config)]
    assert [c.checkpoint["id"] for c in listed] == [checkpoint["id"]]
    all_ns = [c async for c in saver.alist({"configurable": {"thread_id": thread}})]
    assert {c.config["configurable"]["thread_id"] for c in all_ns} == {thread}
    if "\x00" not in meta_key + meta_value:
        by_meta = [c async for c in saver.alist(None, filter={meta_key: meta_value})]
        assert checkpoint["id"] in [c.checkpoint["id"] for c in by_meta]
        for c in by_meta:
            assert c.metadata.get(meta_key) == meta_value


@PROPERTY
@given(thread=hostile, ns=hostile, meta_key=hostile, meta_value=hostile)
async def test_hostile_thread_ids_namespaces_and_metadata(
    engine: AsyncEngine, thread: str, ns: str, meta_key: str, meta_value: str
) -> None:
    await check_saver_ids(engine, thread, ns, meta_key, meta_value)


@pytest.mark.slow
@PROPERTY_SLOW
@given(thread=hostile, ns=hostile, meta_key=hostile, meta_value=hostile)
async def test_hostile_thread_ids_namespaces_and_metadata_many(
    engine: AsyncEngine, thread: str, ns: str, meta_key: str, meta_value: str
) -> None:
    await check_saver_ids(engine, thread, ns, meta_key, meta_value)


# --- store -------------------------------------------------------------------------------------


def keys_of(items: Any) -> set[tuple[tuple[str, ...], str]]:
    return {(i.namespace, i.key) for i in items}


async def check_store(
    engine: AsyncEngine,
    labels: list[str],
    key: str,
    filter_key: str,
    filter_value: str,
) -> None:
    assume(filter_key != "n")
    await empty_tables(engine)
    store = AsyncSQLAlchemyStore(engine)
    reference = InMemoryStore()
    namespace = ("root", *labels)
    value = {filter_key: filter_value, "n": 1}
    try:
        reference.put(namespace, key, value)
        reference_ok = True
    except ValueError:
        reference_ok = False
    try:
        await store.aput(namespace, key, value)
    except ValueError:
        # Refused: fine where the reference refuses too, and for what PostgreSQL cannot hold
        # (NUL in a key or a JSON string); never a silent partial write.
        assert await row_count(engine, T.store) == 0, "refused, yet written"
        if reference_ok:
            assert "\x00" in key + filter_key + filter_value, (
                f"refused input the reference accepts: {namespace!r} {key!r} {value!r}"
            )
        return
    assert reference_ok, f"accepted input the reference refuses: {namespace!r}"
    item = await store.aget(namespace, key)
    assert item is not None and item.value == value and item.namespace == namespace
    assert item.key == key

    # Decoys next to the item: sibling labels, LIKE metacharacters, a deeper and a shallower path.
    last = namespace[-1]
    decoys = {
        (*namespace[:-1], last + "x"),
        (*namespace[:-1], "%"),
        (*namespace[:-1], "_" * len(last)),
        (*namespace, "child"),
        namespace[:-1] if len(namespace) > 1 else ("rootx",),
        ("rootx", *labels),
    }
    decoy_puts = [
        PutOp(decoy_ns, decoy_key, {filter_key: filter_value + "x", "n": 2})
        for decoy_ns in decoys
        for decoy_key in {key, key + "x", "%"}
        if (decoy_ns, decoy_key) != (namespace, key)
    ]
    await store.abatch(decoy_puts)
    reference.batch(decoy_puts)

    item = await store.aget(namespace, key)
    assert item is not None and item.value == value, "a decoy overwrote the item"
    for prefix in {namespace, namespace[:1], namespace[:2]}:
        ours = await store.asearch(prefix, limit=1000)
        theirs = reference.search(prefix, limit=1000)
        assert keys_of(ours) == keys_of(theirs), f"search under {prefix!r}"
        theirs = reference.search(prefix, filter={filter_key: filter_value}, limit=1000)
        try:
            ours = await store.asearch(prefix, filter={filter_key: filter_value}, limit=1000)
        except ValueError:
            # A filter JSONB cannot express (NUL) is refused; it could match nothing stored.
            assert "\x00" in filter_key + filter_value
        else:
            assert keys_of(ours) == keys_of(theirs), f"filtered search under {prefix!r}"
        assert await store.alist_namespaces(prefix=prefix, limit=1000) == (
            reference.list_namespaces(prefix=prefix, limit=1000)
        ), f"list_namespaces under {prefix!r}"
    assert await store.alist_namespaces(suffix=namespace[-1:], limit=1000) == (
        reference.list_namespaces(suffix=namespace[-1:], limit=1000)
    )

    # A batch with one bad put writes nothing, and the store stays usable.
    before = await row_count(engine, T.store)
    with pytest.raises(ValueError):
        await store.abatch(
            [
                PutOp(("batch", "ok"), key, {"fine": filter_value}),
                PutOp(("batch", "bad"), key, {"nan": float("nan")}),
            ]
        )
    assert await row_count(engine, T.store) == before, "half of a refused batch was written"
    assert await store.abatch([GetOp(namespace, key)]) == [item]


@PROPERTY
@given(
    labels=st.lists(label, min_size=1, max_size=3),
    key=hostile.filter(bool),
    filter_key=hostile,
    filter_value=hostile,
)
async def test_hostile_store_namespaces_keys_and_filters(
    engine: AsyncEngine, labels: list[str], key: str, filter_key: str, filter_value: str
) -> None:
    await check_store(engine, labels, key, filter_key, filter_value)


@pytest.mark.slow
@PROPERTY_SLOW
@given(
    labels=st.lists(label, min_size=1, max_size=3),
    key=hostile.filter(bool),
    filter_key=hostile,
    filter_value=hostile,
)
async def test_hostile_store_namespaces_keys_and_filters_many(
    engine: AsyncEngine, labels: list[str], key: str, filter_key: str, filter_value: str
) -> None:
    await check_store(engine, labels, key, filter_key, filter_value)
