"""SQLAlchemyStore: the long-term memory store for sync code, driven as sync code drives it.

Test bodies run on the main thread with no event loop. Results are compared with LangGraph's
``InMemoryStore`` (the reference semantics); a graph reads and writes the store from its sync
nodes; eight threads share one store; the TTL sweeper runs on the store's loop and stops with
it; the async API works from other loops; nothing is left after exit (threads, connections).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import operator
import threading
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

import psycopg
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.store.base import BaseStore, GetOp, Item, PutOp, SearchOp
from langgraph.store.memory import InMemoryStore
from sqlalchemy.ext.asyncio import AsyncEngine
from typing_extensions import TypedDict

from fake_embeddings import HashingEmbeddings
from graphs import thread_config
from langgraph_sqlalchemy import InvalidInputError, SQLAlchemySaver, SQLAlchemyStore
from leaks import (
    application_name,
    assert_nothing_left,
    eventually,
    new_threads,
    server_connections,
    tagged,
)


@pytest.fixture
def url(engine: AsyncEngine, database_url: str) -> str:
    """The session database (migrated), its tables emptied by the ``engine`` fixture."""
    return database_url


@pytest.fixture
def store(url: str) -> Iterator[SQLAlchemyStore]:
    with SQLAlchemyStore.from_conn_string(url) as store:
        yield store


def _plain(result: Any) -> Any:
    """Results without timestamps (they differ between stores by construction)."""
    if isinstance(result, Item):
        return (result.namespace, result.key, result.value, getattr(result, "score", None))
    if isinstance(result, list):
        return [_plain(r) for r in result]
    return result


# --- the sync API against the reference store ---------------------------------------------------


def _script(store: BaseStore) -> list[Any]:
    """The same calls on any store; what they return."""
    seen: list[Any] = []
    store.put(("users", "ada"), "prefs", {"theme": "dark", "size": 10})
    store.put(("users", "ada"), "bio", {"text": "likes maths", "size": 9})
    store.put(("users", "bob"), "prefs", {"theme": "light", "size": 12})
    store.put(("users", "bob", "drafts"), "d1", {"text": "draft", "size": 1})
    seen.append(store.get(("users", "ada"), "prefs"))
    seen.append(store.get(("users", "ada"), "missing"))
    seen.append(sorted(_plain(store.search(("users",), limit=10))))
    seen.append(_plain(store.search(("users",), filter={"theme": "dark"})))
    seen.append(sorted(_plain(store.search(("users",), filter={"size": {"$gt": 9}}))))
    seen.append(store.list_namespaces(prefix=("users",)))
    seen.append(store.list_namespaces(max_depth=2))
    store.delete(("users", "bob"), "prefs")
    seen.append(store.get(("users", "bob"), "prefs"))
    seen.append(
        _plain(
            store.batch(
                [
                    PutOp(("batch",), "k", {"v": 1}),
                    GetOp(("batch",), "k"),  # reads run before the batch's writes
                    SearchOp(("users", "bob", "drafts"), limit=1),
                ]
            )
        )
    )
    seen.append(store.get(("batch",), "k"))
    return [_plain(x) for x in seen]


def test_sync_calls_match_in_memory_store(store: SQLAlchemyStore) -> None:
    expected = _script(InMemoryStore())
    assert _script(store) == expected
    assert expected[0] == (("users", "ada"), "prefs", {"theme": "dark", "size": 10}, None)


def test_bad_input_raises_and_the_store_stays_usable(store: SQLAlchemyStore) -> None:
    with pytest.raises(InvalidInputError):
        store.put(("a.b",), "k", {"v": 1})
    with pytest.raises(InvalidInputError):
        store.put(("ns",), "k", {"v": "nul\x00"})
    with pytest.raises(ValueError):
        store.list_namespaces(max_depth=0)
    store.put(("ns",), "k", {"v": 1})
    item = store.get(("ns",), "k")
    assert item is not None and item.value == {"v": 1}


def test_custom_deserializer_and_upstream_keywords(url: str) -> None:
    import json

    def loads(raw: bytes) -> dict[str, Any]:
        return {"decoded": json.loads(raw)}

    with SQLAlchemyStore.from_conn_string(
        url, pipeline=True, pool_config={"min_size": 1, "max_size": 2}, deserializer=loads
    ) as store:
        store.put(("d",), "k", {"v": 1})
        item = store.get(("d",), "k")
        assert item is not None and item.value == {"decoded": {"v": 1}}


def test_attributes_are_the_async_stores_and_schema_is_read_only(url: str) -> None:
    """ttl_config, index_config and embeddings have one value, the one the store doing the
    work reads at every call (drop-in behaviour: test_store_dropin.py[sync-...])."""
    with SQLAlchemyStore.from_conn_string(url, ttl={"default_ttl": 5}) as store:
        config = store.ttl_config
        assert config == {"default_ttl": 5}
        config["default_ttl"] = 7  # in place, as upstream's users change it
        assert store.ttl_config == {"default_ttl": 7}
        store.ttl_config = None
        assert store.ttl_config is None
        store.put(("attr",), "k", {"v": 1})
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT ttl_minutes FROM store WHERE key = 'k'").fetchone()
        assert row == (None,)  # no default ttl any more
        assert store.index_config is None and store.embeddings is None
        assert store.schema is None
        with pytest.raises(AttributeError):
            store.schema = "elsewhere"  # type: ignore[misc]


# --- a store in a graph -------------------------------------------------------------------------


class Chat(TypedDict, total=False):
    user: str
    said: Annotated[list[str], operator.add]
    remembered: list[str]


def _remember(state: Chat, *, store: BaseStore) -> dict[str, Any]:
    namespace = ("memories", state["user"])
    for text in state["said"]:
        store.put(namespace, uuid.uuid5(uuid.NAMESPACE_URL, text).hex, {"text": text})
    memories = sorted(item.value["text"] for item in store.search(namespace, limit=100))
    return {"remembered": memories}


def _memory_graph(saver: Any, store: BaseStore) -> Any:
    builder = StateGraph(Chat)
    builder.add_node("remember", _remember)
    builder.add_edge(START, "remember")
    return builder.compile(checkpointer=saver, store=store)


def test_a_sync_store_in_a_graph(url: str, store: SQLAlchemyStore) -> None:
    with SQLAlchemySaver.from_conn_string(url) as saver:
        graph = _memory_graph(saver, store)
        reference = _memory_graph(InMemorySaver(), InMemoryStore())
        for thread in ("first-chat", "second-chat"):
            for said in (["hi"], ["I like tea"]):
                got = graph.invoke({"user": "ada", "said": said}, thread_config(thread))
                expected = reference.invoke({"user": "ada", "said": said}, thread_config(thread))
                assert got == expected
        # Memories outlive threads: the second chat saw the first one's.
        assert got["remembered"] == ["I like tea", "hi"]
        assert graph.get_state(thread_config("second-chat")).values["said"] == ["hi", "I like tea"]

        async def from_another_loop() -> Any:
            return await graph.ainvoke({"user": "bob", "said": ["async"]}, thread_config("t3"))

        assert asyncio.run(from_another_loop())["remembered"] == ["async"]
    item = store.get(("memories", "bob"), uuid.uuid5(uuid.NAMESPACE_URL, "async").hex)
    assert item is not None and item.value == {"text": "async"}


# --- threads and what is left ------------------------------------------------------------------


def test_eight_threads_share_one_store_and_leave_nothing_behind(url: str) -> None:
    name = application_name()
    before = set(threading.enumerate())
    errors: list[BaseException] = []
    with SQLAlchemyStore.from_conn_string(
        url, pool_config={"max_size": 3}, **tagged(name)
    ) as store:
        start = threading.Barrier(8)

        def work(i: int) -> None:
            try:
                start.wait()
                for j in range(20):
                    store.put(("threads", str(i)), f"k{j}", {"i": i, "j": j})
                    item = store.get(("threads", str(i)), f"k{j}")
                    assert item is not None and item.value == {"i": i, "j": j}
                found = store.search(("threads", str(i)), filter={"j": {"$gte": 10}}, limit=50)
                assert sorted(x.value["j"] for x in found) == list(range(10, 20))
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=300)
        assert errors == []
        assert len(store.list_namespaces(prefix=("threads",))) == 8
        assert 1 <= server_connections(url, name) <= 3
    assert_nothing_left(url, name, before)


def test_close_and_garbage_collection_leave_nothing_behind(url: str) -> None:
    name = application_name()
    before = set(threading.enumerate())
    store = SQLAlchemyStore(url, **tagged(name))
    store.put(("gc",), "k", {"v": 1})
    assert new_threads(before) == ["SQLAlchemyStore-event-loop"]
    store.close()
    assert_nothing_left(url, name, before)
    store.close()  # idempotent
    with pytest.raises(RuntimeError, match=r"SQLAlchemyStore.get\(\).*closed"):
        store.get(("gc",), "k")
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(store.aget(("gc",), "k"))
    with pytest.raises(RuntimeError, match="SQLAlchemyStore is closed"), store:
        pass  # entering a closed store fails at once, not at its first call

    forgotten = SQLAlchemyStore(url, **tagged(name))
    forgotten.put(("gc",), "k2", {"v": 2})
    del forgotten
    gc.collect()
    assert_nothing_left(url, name, before)


# --- TTL ----------------------------------------------------------------------------------------


def test_ttl_sweeper_runs_on_the_store_loop_and_stops_with_it(url: str) -> None:
    name = application_name()
    before = set(threading.enumerate())
    # 0.001 minutes: expired 60 ms after the put; swept every 60 ms.
    ttl = {"default_ttl": 0.001, "sweep_interval_minutes": 0.001}
    with SQLAlchemyStore.from_conn_string(url, ttl=ttl, **tagged(name)) as store:
        assert store.ttl_config == ttl
        store.put(("ttl",), "by-hand", {"v": 1})
        swept = [0]

        def swept_by_hand() -> bool:
            swept[0] += store.sweep_ttl()
            return swept[0] == 1

        eventually(swept_by_hand, "the expired item swept by sweep_ttl()")

        future = store.start_ttl_sweeper()
        assert isinstance(future, concurrent.futures.Future) and not future.done()
        store.put(("ttl",), "by-sweeper", {"v": 2}, ttl=0.001)
        store.put(("ttl",), "kept", {"v": 3}, ttl=None)
        eventually(
            lambda: store.get(("ttl",), "by-sweeper", refresh_ttl=False) is None,
            "the expired item swept by the sweeper",
        )
        assert store.get(("ttl",), "kept") is not None
        # As upstream: cancelling the returned future stops the sweeper.
        assert future.cancel() or future.done()
        eventually(lambda: future.done(), "the sweeper future done")
        assert store.stop_ttl_sweeper(timeout=10)

        running = store.start_ttl_sweeper()
    # Closing stops a running sweeper: its future finishes, no thread remains.
    assert running.result(timeout=30) is None
    assert_nothing_left(url, name, before)


# --- the async API and the store's own loop -----------------------------------------------------


def test_async_methods_from_another_event_loop(store: SQLAlchemyStore) -> None:
    async def main() -> list[Any]:
        await store.aput(("a", "1"), "k", {"v": 1})
        await asyncio.gather(*(store.aput(("a", "2"), f"k{i}", {"v": i}) for i in range(10)))
        results = await asyncio.gather(
            store.aget(("a", "1"), "k"),
            store.asearch(("a",), filter={"v": {"$lt": 2}}, limit=20),
            store.alist_namespaces(prefix=("a",)),
            store.abatch([GetOp(("a", "2"), "k9")]),
        )
        await store.adelete(("a", "1"), "k")
        return [_plain(r) for r in results]

    one, found, namespaces, batch = asyncio.run(main())
    assert one == (("a", "1"), "k", {"v": 1}, None)
    assert sorted(found) == [
        (("a", "1"), "k", {"v": 1}, None),
        (("a", "2"), "k0", {"v": 0}, None),
        (("a", "2"), "k1", {"v": 1}, None),
    ]
    assert namespaces == [("a", "1"), ("a", "2")]
    assert batch == [(("a", "2"), "k9", {"v": 9}, None)]
    assert store.get(("a", "1"), "k") is None


def test_an_embedding_function_calling_the_store_synchronously_gets_a_clear_error(
    url: str, store: SQLAlchemyStore
) -> None:
    # An async embedding function runs on the store's loop, where a blocking call on the
    # store would wait for itself. (Sync functions run in the loop's executor and may call it.)
    holder: dict[str, SQLAlchemyStore] = {}

    async def embed(texts: list[str]) -> list[list[float]]:
        holder["store"].get(("x",), "y")
        return [[1.0, 0.0] for _ in texts]

    index = {"dims": 2, "embed": embed, "fields": ["text"]}
    # (No vector layer in this database: the put fails before any statement.)
    with SQLAlchemyStore.from_conn_string(url, index=index) as indexed:
        holder["store"] = indexed
        with pytest.raises(asyncio.InvalidStateError, match="own event loop thread"):
            indexed.put(("x",), "k", {"text": "hello"})
        assert store.get(("x",), "k") is None  # nothing of that put was written
        assert indexed.sweep_ttl() == 0  # and the store is still usable


@pytest.mark.vector
def test_semantic_search_on_a_fresh_database(empty_url: str) -> None:
    name = application_name()
    before = set(threading.enumerate())
    index = {"dims": 64, "embed": HashingEmbeddings(64), "fields": ["text"]}
    with SQLAlchemyStore.from_conn_string(empty_url, index=index, **tagged(name)) as store:
        store.setup()  # tables and the pgvector layer
        store.setup()  # idempotent
        store.put(("docs",), "tea", {"text": "green tea and black tea"})
        store.put(("docs",), "maths", {"text": "algebra and geometry"})
        hits = store.search(("docs",), query="black tea", limit=2)
        assert [h.key for h in hits] == ["tea", "maths"]
        assert hits[0].score is not None and hits[0].score > (hits[1].score or 0)
    # The embedding model ran in the loop's executor threads; they are gone too.
    assert_nothing_left(empty_url, name, before)
