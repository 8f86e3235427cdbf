"""Drop-in, exactly (issue 11): what upstream's ``AsyncPostgresStore`` accepts, ours accepts,
with the same effect, both run against one real database; where upstream raises for bad
input, ours raises the same type (or a subclass). Every exception to that is a named entry of
``differences.BEHAVIOUR``, demonstrated here against upstream, so an upstream release that
changes one of them fails this file.

The cases and the side-by-side tests on ``both`` run twice: async (``AsyncPostgresStore``
against ``AsyncSQLAlchemyStore``) and sync (``PostgresStore`` on a psycopg connection against
``SQLAlchemyStore``, each called through its sync methods from a worker thread, see
:mod:`sync_as_async`).

Also issue 14's store bullets: TTLs and sweep intervals out of range and lone surrogates are
an ``InvalidInputError`` with the reason, and nothing of the batch is written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from langchain_core.embeddings import Embeddings
from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchOp,
)
from langgraph.store.postgres import AsyncPostgresStore, PostgresStore
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from differences import BEHAVIOUR
from fake_embeddings import HashingEmbeddings
from langgraph_sqlalchemy import AsyncSQLAlchemyStore, InvalidInputError, SQLAlchemyStore
from langgraph_sqlalchemy.store.ttl import MAX_TTL_MINUTES
from sync_as_async import AsAsync

AnyStore = Any  # AsyncPostgresStore | AsyncSQLAlchemyStore, or a sync pair through AsAsync


@asynccontextmanager
async def upstream(url: str, **kwargs: Any) -> AsyncIterator[AsyncPostgresStore]:
    async with AsyncPostgresStore.from_conn_string(url, **kwargs) as store:
        yield store


@pytest.fixture(params=["async", "sync"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def both(
    flavor: str, engine: AsyncEngine, database_url: str
) -> AsyncIterator[dict[str, AnyStore]]:
    """Upstream's store and ours on the same (emptied) database."""
    if flavor == "async":
        async with upstream(database_url) as theirs:
            yield {"upstream": theirs, "ours": AsyncSQLAlchemyStore(engine)}
        return
    with (
        PostgresStore.from_conn_string(database_url) as theirs,
        SQLAlchemyStore.from_conn_string(database_url) as ours,
    ):
        try:
            yield {"upstream": AsAsync(theirs, theirs.conn), "ours": AsAsync(ours, database_url)}
        finally:
            theirs.stop_ttl_sweeper(5)


async def rows(engine: AsyncEngine) -> dict[tuple[str, str], tuple[Any, ...]]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT prefix, key, value, expires_at, ttl_minutes FROM store")
        )
        return {(r[0], r[1]): tuple(r[2:]) for r in result}


async def count(engine: AsyncEngine) -> int:
    return len(await rows(engine))


# --- the three cases of the issue ----------------------------------------------------------------


@pytest.mark.parametrize("side", ["upstream", "ours"])
async def test_put_of_none_deletes(both: dict[str, AnyStore], side: str) -> None:
    store = both[side]
    ns = ("none-put", side)
    await store.aput(ns, "k", {"v": 1})
    await store.aput(ns, "k", None)
    assert await store.aget(ns, "k") is None
    # As with PutOp(value=None): ttl and index mean nothing for a delete.
    await store.aput(ns, "k", {"v": 2})
    await store.aput(ns, "k", None, index=False, ttl=5)
    assert await store.aget(ns, "k") is None
    # A delete of a missing key is a no-op; an empty namespace is refused as upstream does.
    await store.aput(ns, "never", None)
    with pytest.raises(InvalidNamespaceError):
        await store.aput((), "k", None)


async def test_integers_beyond_64_bits_read_back_exactly(both: dict[str, AnyStore]) -> None:
    """JSONB keeps any integer exactly and upstream's json.loads returns it so; ours too (orjson
    alone would read 2**64 + 1 as a float), from get and search, whoever wrote the row."""
    value = {"big": 2**64 + 1, "neg": -(2**63) - 1, "huge": 10**30 + 7, "ok": 2**63, "f": 0.5}
    await both["upstream"].aput(("big", "theirs"), "k", value)
    await both["ours"].aput(("big", "ours"), "k", value)
    for side in ("upstream", "ours"):
        for written in ("theirs", "ours"):
            item = await both[side].aget(("big", written), "k")
            assert item is not None and item.value == value, (side, written)
            assert all(type(item.value[k]) is type(v) for k, v in value.items()), (side, written)
            found = await both[side].asearch(("big", written))
            assert [i.value for i in found] == [value], (side, written)
    # A long run of digits inside a string changes nothing.
    await both["ours"].aput(("big",), "s", {"s": "1" * 40, "n": 1})
    item = await both["ours"].aget(("big",), "s")
    assert item is not None and item.value == {"s": "1" * 40, "n": 1}


async def test_filters_on_datetimes_and_uuids_match_what_was_stored(
    both: dict[str, AnyStore],
) -> None:
    """A value holding a datetime or a UUID is stored as orjson writes it (ISO text); a filter
    given the same object matches it, by equality and in order, as upstream's plain equality
    does."""
    ours = both["ours"]
    when, later = dt.datetime(2024, 1, 1, 12, 30), dt.datetime(2025, 6, 1)
    who = uuid.UUID(int=1)
    await ours.aput(("dt",), "a", {"when": when, "who": who})
    await ours.aput(("dt",), "b", {"when": later, "who": uuid.UUID(int=2)})

    async def keys(side: str, filter: dict[str, Any]) -> list[str]:
        return sorted(i.key for i in await both[side].asearch(("dt",), filter=filter))

    assert await keys("ours", {"when": when}) == ["a"]
    assert await keys("ours", {"who": who}) == ["a"]
    assert await keys("ours", {"who": {"$eq": who}}) == ["a"]
    assert await keys("ours", {"who": {"$ne": who}}) == ["b"]
    assert await keys("ours", {"when": {"$gt": dt.datetime(2024, 6, 1)}}) == ["b"]
    assert await keys("ours", {"when": {"$lte": when}}) == ["a"]
    # Upstream's plain equality agrees on the rows ours wrote.
    assert await keys("upstream", {"when": when}) == ["a"]
    assert await keys("upstream", {"who": who}) == ["a"]


async def test_list_namespaces_are_accepted_and_results_are_tuples(
    both: dict[str, AnyStore], engine: AsyncEngine
) -> None:
    theirs, ours = both["upstream"], both["ours"]
    user = str(uuid.uuid4())
    await ours.aput(("users", user), "prefs", {"theme": "dark"})
    await ours.aput(("users", user, "notes"), "n1", {"text": "hello"})
    await ours.aput(("test",), "t", {"v": 1})
    for namespace in (["users", user], ("users", user)):
        mine = await ours.asearch(namespace)
        upstream_found = await theirs.asearch(namespace)
        assert [(i.namespace, i.key) for i in mine] == [
            (i.namespace, i.key) for i in upstream_found
        ]
        assert {i.key for i in mine} == {"prefs", "n1"}
        assert all(type(i.namespace) is tuple for i in mine)
    for store in (theirs, ours):
        assert [i.key for i in await store.asearch(["test"])] == ["t"]
    for prefix in (["users"], ("users",)):
        assert await ours.alist_namespaces(prefix=prefix) == await theirs.alist_namespaces(
            prefix=prefix
        )
    assert await ours.alist_namespaces(prefix=["users", "*"], suffix=["notes"]) == [
        ("users", user, "notes")
    ]
    # Beyond upstream (whose get/put/delete fail on a list): lists work in every call, also
    # when calls coalesce into one batch.
    await asyncio.gather(
        ours.aput(["lists", "a"], "k1", {"v": 1}), ours.aput(["lists", "a"], "k2", {"v": 2})
    )
    item = await ours.aget(["lists", "a"], "k1")
    assert item is not None and item.namespace == ("lists", "a")
    await ours.adelete(["lists", "a"], "k1")
    assert await ours.aget(("lists", "a"), "k1") is None
    results = await ours.abatch(
        [
            PutOp(["lists", "b"], "k", {"v": 3}),  # type: ignore[arg-type]
            GetOp(["lists", "a"], "k2"),  # type: ignore[arg-type]
            SearchOp(["lists"]),  # type: ignore[arg-type]
            ListNamespacesOp(match_conditions=(MatchCondition("prefix", ["lists"]),)),  # type: ignore[arg-type]
        ]
    )
    assert results[1] is not None and results[1].namespace == ("lists", "a")  # type: ignore[union-attr]
    assert results[3] == [("lists", "a")]  # reads do not see the batch's own put
    assert (("lists.b", "k")) in await rows(engine)


@pytest.mark.parametrize("side", ["upstream", "ours"])
async def test_ttl_config_changed_after_construction(
    both: dict[str, AnyStore], side: str, engine: AsyncEngine
) -> None:
    store = both[side]
    ns = ("ttl-live", side)
    await store.aput(ns, "expired", {"v": 0}, ttl=0.001)
    await store.aput(ns, "live", {"v": 1})
    await store.aput((*ns, "gone"), "expired", {"v": 0}, ttl=0.001)
    await asyncio.sleep(0.2)
    # No config: expired rows are still returned (and would be revived by a refresh).
    assert await store.aget(ns, "expired", refresh_ttl=False) is not None
    assert len(await store.asearch(ns, refresh_ttl=False)) == 3

    store.ttl_config = {"omit_expired": True}
    assert await store.aget(ns, "expired") is None
    assert [i.key for i in await store.asearch(ns, limit=10)] == ["live"]
    # Pagination counts only what is returned.
    assert [i.key for i in await store.asearch(ns, limit=1)] == ["live"]
    assert await store.asearch(ns, limit=1, offset=1) == []
    assert (*ns, "gone") not in await store.alist_namespaces(prefix=ns)

    # Changed in place, as the issue shows it.
    store.ttl_config["omit_expired"] = False
    assert await store.aget(ns, "expired", refresh_ttl=False) is not None
    store.ttl_config["omit_expired"] = True
    assert await store.aget(ns, "expired", refresh_ttl=False) is None

    # default_ttl and refresh_on_read are read at call time too.
    store.ttl_config["default_ttl"] = 7
    await store.aput(ns, "defaulted", {"v": 2})
    await store.aput(ns, "explicit-none", {"v": 3}, ttl=None)
    written = await rows(engine)
    prefix = ".".join(ns)
    assert written[(prefix, "defaulted")][2] == 7
    assert written[(prefix, "explicit-none")][2:] == (None,)
    assert written[(prefix, "explicit-none")][1] is None
    store.ttl_config["refresh_on_read"] = False
    before = (await rows(engine))[(prefix, "defaulted")][1]
    await asyncio.sleep(0.02)
    await store.aget(ns, "defaulted")
    assert (await rows(engine))[(prefix, "defaulted")][1] == before
    store.ttl_config["refresh_on_read"] = True
    await store.aget(ns, "defaulted")
    assert (await rows(engine))[(prefix, "defaulted")][1] > before
    store.ttl_config = None
    assert await store.aget(ns, "expired", refresh_ttl=False) is not None


# --- type variants: same effect on both ----------------------------------------------------------


async def test_ttl_variants_store_the_same_rows(
    both: dict[str, AnyStore], engine: AsyncEngine
) -> None:
    """int vs float minutes, None vs NotProvided (with and without a default_ttl)."""
    written: dict[str, dict[str, tuple[Any, ...]]] = {}
    for side, store in both.items():
        ns = ("ttl-variants", side)
        store.ttl_config = {"default_ttl": 3}
        await store.aput(ns, "int", {"v": 1}, ttl=5)
        await store.aput(ns, "float", {"v": 1}, ttl=5.0)
        await store.aput(ns, "fraction", {"v": 1}, ttl=0.5)
        await store.aput(ns, "none", {"v": 1}, ttl=None)
        await store.aput(ns, "default", {"v": 1})
        store.ttl_config = None
        await store.aput(ns, "unconfigured", {"v": 1})
        prefix = ".".join(ns)
        written[side] = {
            key: (row[2], row[1] is None)
            for (p, key), row in (await rows(engine)).items()
            if p == prefix
        }
    assert written["ours"] == written["upstream"]
    assert written["ours"] == {
        "int": (5, False),
        "float": (5, False),
        "fraction": (0.5, False),
        "none": (None, True),
        "default": (3, False),
        "unconfigured": (None, True),
    }


async def test_keys_and_refresh_flags_like_upstream(both: dict[str, AnyStore]) -> None:
    theirs, ours = both["upstream"], both["ours"]
    key = uuid.UUID(int=7)
    await theirs.aput(("keys",), key, {"by": "upstream"})
    await ours.aput(("keys",), 42, {"by": "ours"})
    # Each finds what the other stored, under the key's text.
    found = await ours.aget(("keys",), str(key))
    assert found is not None and found.value == {"by": "upstream"}
    found = await theirs.aget(("keys",), "42")
    assert found is not None and found.value == {"by": "ours"}
    # Ours also finds them by the int / UUID (upstream's get returns None for an int key).
    found = await ours.aget(("keys",), 42)
    assert found is not None and found.key == "42"
    assert await ours.aget(("keys",), key) is not None
    # A truthy refresh_ttl is a refresh, on both.
    for store in (theirs, ours):
        assert await store.aget(("keys",), "42", refresh_ttl="yes") is not None  # type: ignore[arg-type]
        assert await store.asearch(("keys",), refresh_ttl=1) != []  # type: ignore[arg-type]


# --- bad input: the same exception types, or a listed difference ---------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    call: Callable[[AnyStore], Awaitable[Any]]
    # None: both behave alike (both succeed, or ours raises a subclass of upstream's type).
    difference: str | None = None
    # The difference between the sync classes, where it is not the same: upstream's sync
    # PostgresStore goes through BaseStore's sync methods, which str() every key.
    sync_difference: str | Literal["same"] | None = "same"

    def difference_in(self, flavor: str) -> str | None:
        if flavor == "sync" and self.sync_difference != "same":
            return self.sync_difference
        return self.difference


def _put(ns: Any, key: Any, value: Any, **kw: Any) -> Callable[[AnyStore], Awaitable[Any]]:
    return lambda store: store.aput(ns, key, value, **kw)


SERVER = "store: bad input upstream's server rejects"

CASES: list[Case] = [
    Case("label with a period", _put(("a.b",), "k", {"v": 1})),
    Case("label not a str", _put(("a", 1), "k", {"v": 1})),
    Case("empty label", _put(("a", ""), "k", {"v": 1})),
    Case("NUL in a label", _put(("a\x00",), "k", {"v": 1})),
    Case("empty namespace", _put((), "k", {"v": 1})),
    Case("reserved root label", _put(("langgraph",), "k", {"v": 1})),
    Case("namespace None in get", lambda s: s.aget(None, "k")),
    Case("namespace None in search", lambda s: s.asearch(None)),
    Case("lone surrogate in a label", _put(("x\ud800",), "k", {"v": 1})),
    Case("lone surrogate in a key", _put(("x",), "k\ud800", {"v": 1})),
    Case("value a list of ints", _put(("x",), "list", [1, 2])),
    Case("value a str", _put(("x",), "str", "text")),
    Case("value an int", _put(("x",), "int", 5)),
    Case("value not JSON (set)", _put(("x",), "set", {"s": {1, 2}})),
    Case("value not JSON (object)", _put(("x",), "obj", {"o": object()})),
    Case("unknown filter operator", lambda s: s.asearch(("x",), filter={"a": {"$nope": 1}})),
    Case("bad default_ttl at put", lambda s: _put_with_ttl_config(s, {"default_ttl": "abc"})),
    Case("ttl of an object", _put(("x",), "to", {"v": 1}, ttl=object())),
    Case("ttl of a list", _put(("x",), "tl", {"v": 1}, ttl=[5])),
    Case(
        "filter on a datetime", lambda s: s.asearch(("x",), filter={"d": dt.datetime(2020, 1, 1)})
    ),
    Case(
        "filter $eq on a UUID",
        lambda s: s.asearch(("x",), filter={"u": {"$eq": uuid.UUID(int=1)}}),
        "store: filter operands with datetime, UUID",
    ),
    Case("$gt on a date", lambda s: s.asearch(("x",), filter={"d": {"$gt": dt.date(2020, 1, 1)}})),
    # Accepted by ours, refused by upstream.
    Case(
        "list namespace in put",
        _put(["x", "list"], "k", {"v": 1}),
        "store: list namespaces in get, put and delete",
    ),
    Case(
        "list namespace in get",
        lambda s: s.aget(["x", "list"], "k"),
        "store: list namespaces in get, put and delete",
    ),
    Case(
        "int key in delete",
        lambda s: s.adelete(("x",), 5),
        "store: int and UUID keys are str() everywhere",
        sync_difference=None,
    ),
    Case(
        "value with a datetime",
        _put(("x",), "dt", {"d": dt.datetime(2020, 1, 1)}),
        "store: values with datetime, UUID, dataclass",
    ),
    # Refused by ours, accepted (with another effect) by upstream.
    Case("str namespace in put", _put("abc", "k", {"v": 1}), "store: str namespace refused"),
    Case("str namespace in search", lambda s: s.asearch("abc"), "store: str namespace refused"),
    Case("float key", _put(("x",), 1.5, {"v": 1}), "store: other non-str keys refused"),
    Case("bytes key", _put(("x",), b"kk", {"v": 1}), "store: other non-str keys refused"),
    Case(
        "value a list of pairs", _put(("x",), "pairs", [("a", 1)]), "store: values must be mappings"
    ),
    Case(
        "ttl as a str",
        _put(("x",), "ts", {"v": 1}, ttl="5"),
        "store: ttl is a number of minutes from 0 to 1e9",
    ),
    Case(
        "ttl True",
        _put(("x",), "tb", {"v": 1}, ttl=True),
        "store: ttl is a number of minutes from 0 to 1e9",
    ),
    Case(
        "negative ttl",
        _put(("x",), "tn", {"v": 1}, ttl=-1),
        "store: ttl is a number of minutes from 0 to 1e9",
    ),
    Case(
        "float limit",
        lambda s: s.asearch(("x",), limit=1.5),
        "store: limit, offset and max_depth are ints",
    ),
    Case(
        "limit None",
        lambda s: s.asearch(("x",), limit=None),
        "store: limit, offset and max_depth are ints",
    ),
    Case(
        "max_depth 0",
        lambda s: s.alist_namespaces(max_depth=0),
        "store: limit, offset and max_depth are ints",
    ),
    Case(
        "unknown op", lambda s: s.abatch([object()]), "store: unknown ops and match types refused"
    ),
    Case(
        "unknown match type",
        lambda s: s.abatch(
            [ListNamespacesOp(match_conditions=(MatchCondition("infix", ("x",)),))]  # type: ignore[arg-type]
        ),
        "store: unknown ops and match types refused",
    ),
    Case(
        "filter a list",
        lambda s: s.asearch(("x",), filter=[("a", 1)]),
        "store: filter that is not a dict",
    ),
    Case(
        "lone surrogate in a filter",
        lambda s: s.asearch(("x",), filter={"a": "\ud800"}),
        "store: lone surrogate in a filter",
    ),
    Case(
        "misspelt TTLConfig key",
        lambda s: _construct(s, ttl={"defualt_ttl": 5}),
        "store: unknown TTLConfig keys refused",
    ),
    Case(
        "NaN sweep interval",
        lambda s: _sweeper(s, float("nan")),
        "store: sweep interval must be finite",
    ),
    Case(
        "int filter key",
        lambda s: s.asearch(("x",), filter={1: 1}),
        "store: filter keys are strings",
    ),
    Case(
        "$gt None",
        lambda s: s.asearch(("x",), filter={"a": {"$gt": None}}),
        "store: ordering operators take numbers and strings",
    ),
    Case(
        "$lte a dict",
        lambda s: s.asearch(("x",), filter={"a": {"$lte": {"x": 0}}}),
        "store: ordering operators take numbers and strings",
    ),
    # Upstream's server (through psycopg) refuses these; ours refuses them before sending.
    Case("NaN ttl", _put(("x",), "tnan", {"v": 1}, ttl=float("nan")), SERVER),
    Case("infinite ttl", _put(("x",), "tinf", {"v": 1}, ttl=math.inf), SERVER),
    Case("ttl of 1e15 minutes", _put(("x",), "t15", {"v": 1}, ttl=1e15), SERVER),
    Case("NaN in a value", _put(("x",), "vnan", {"a": math.nan}), SERVER),
    Case("NUL in a value", _put(("x",), "vnul", {"a": "a\x00"}), SERVER),
    Case("lone surrogate in a value", _put(("x",), "vsur", {"a": "a\ud800"}), SERVER),
    Case("NUL in a key", _put(("x",), "k\x00", {"v": 1}), SERVER),
    Case(
        "None key",
        _put(("x",), None, {"v": 1}),
        SERVER,
        sync_difference="store: other non-str keys refused",
    ),
    Case("negative limit", lambda s: s.asearch(("x",), limit=-1), SERVER),
    Case("negative offset", lambda s: s.asearch(("x",), offset=-1), SERVER),
    Case("negative listing limit", lambda s: s.alist_namespaces(limit=-1), SERVER),
]

# Demonstrated by their own tests above / below rather than by a case.
DEMONSTRATED_ELSEWHERE = {
    "store: index= str is one path": "test_index_arguments_and_attributes_read_per_call",
    "store: start_ttl_sweeper without a TTLConfig sweeps": "test_sweeper_without_ttl_config",
}


async def _put_with_ttl_config(store: AnyStore, config: dict[str, Any]) -> None:
    store.ttl_config = config
    try:
        await store.aput(("x",), "with-config", {"v": 1})
    finally:
        store.ttl_config = None


async def _construct(store: AnyStore, **kwargs: Any) -> None:
    if isinstance(store, AsAsync):
        await asyncio.to_thread(store.remake, **kwargs)
    else:
        type(store)(store.conn, **kwargs)


async def _sweeper(store: AnyStore, interval: float) -> None:
    store.ttl_config = {"sweep_interval_minutes": 60}
    try:
        await store.start_ttl_sweeper(interval)
    finally:
        await store.stop_ttl_sweeper(1)
        store.ttl_config = None


async def _outcome(call: Callable[[AnyStore], Awaitable[Any]], store: AnyStore) -> Exception | None:
    try:
        await call(store)
    except Exception as exc:
        return exc
    return None


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_bad_input_raises_upstreams_exception_type(
    both: dict[str, AnyStore], flavor: str, case: Case
) -> None:
    theirs = await _outcome(case.call, both["upstream"])
    ours = await _outcome(case.call, both["ours"])
    alike = (theirs is None and ours is None) or (
        theirs is not None and ours is not None and isinstance(ours, type(theirs))
    )
    difference = case.difference_in(flavor)
    if difference is None:
        assert alike, f"upstream: {theirs!r}; ours: {ours!r}"
        if ours is not None:
            assert isinstance(ours, ValueError), repr(ours)
        return
    assert difference in BEHAVIOUR
    assert not alike, f"no longer a difference: upstream {theirs!r}, ours {ours!r}"
    if difference == SERVER:
        assert theirs is not None and type(theirs).__module__.startswith("psycopg"), theirs
        assert isinstance(ours, InvalidInputError), repr(ours)
    if ours is not None:
        # Ours refuses with a reason, as a ValueError.
        assert isinstance(ours, InvalidInputError), repr(ours)


def test_every_store_difference_is_demonstrated() -> None:
    demonstrated = {
        c.difference_in(flavor) for c in CASES for flavor in ("async", "sync")
    } - {None} | set(DEMONSTRATED_ELSEWHERE)
    assert demonstrated == {k for k in BEHAVIOUR if k.startswith("store:")}


async def test_sweeper_without_ttl_config(both: dict[str, AnyStore], engine: AsyncEngine) -> None:
    theirs, ours = both["upstream"], both["ours"]
    await theirs.aput(("sweep",), "k", {"v": 1}, ttl=0.0001)
    task = await theirs.start_ttl_sweeper(0.001)
    await asyncio.wait_for(task, 5)  # upstream: a no-op task that ends at once
    await asyncio.sleep(0.3)  # five of its intervals
    assert await count(engine) == 1  # never swept
    assert await theirs.stop_ttl_sweeper(1)
    task = await ours.start_ttl_sweeper(0.002)
    try:
        for _ in range(100):
            if await count(engine) == 0:
                break
            await asyncio.sleep(0.05)
        assert await count(engine) == 0
    finally:
        assert await ours.stop_ttl_sweeper(5)
    await asyncio.wait_for(task, 5)  # finished when the sweeper stopped


# --- issue 14: out-of-range TTLs and lone surrogates; nothing written ----------------------------


@pytest.fixture
async def ours(engine: AsyncEngine) -> AsyncSQLAlchemyStore:
    return AsyncSQLAlchemyStore(engine)


@pytest.mark.parametrize(
    "ttl",
    [math.nan, math.inf, -math.inf, 1e15, 1e308, MAX_TTL_MINUTES + 1, 10**400, -0.5],
    ids=repr,
)
async def test_ttl_out_of_range_writes_nothing(
    ours: AsyncSQLAlchemyStore, engine: AsyncEngine, ttl: Any
) -> None:
    with pytest.raises(InvalidInputError, match="minutes from 0 to 1,000,000,000") as raised:
        await ours.aput(("t",), "k", {"v": 1}, ttl=ttl)
    assert repr(ttl) in str(raised.value)
    with pytest.raises(InvalidInputError, match="ttl"):
        await ours.abatch([PutOp(("t",), "good", {"v": 1}), PutOp(("t",), "k", {"v": 1}, ttl=ttl)])
    with pytest.raises(InvalidInputError, match="default_ttl"):
        AsyncSQLAlchemyStore(engine, ttl={"default_ttl": ttl})
    ours.ttl_config = {"default_ttl": ttl}  # set after construction: refused at the call
    with pytest.raises(InvalidInputError, match="default_ttl"):
        await ours.aput(("t",), "k", {"v": 1})
    assert await count(engine) == 0


async def test_largest_ttl_is_stored_and_refreshed(
    ours: AsyncSQLAlchemyStore, engine: AsyncEngine
) -> None:
    await ours.aput(("t",), "max", {"v": 1}, ttl=MAX_TTL_MINUTES)
    await ours.aput(("t",), "zero", {"v": 1}, ttl=0)
    item = await ours.aget(("t",), "max", refresh_ttl=True)
    assert item is not None
    written = await rows(engine)
    expires_at, minutes = written[("t", "max")][1:]
    assert minutes == MAX_TTL_MINUTES
    assert expires_at - dt.datetime.now(dt.timezone.utc) > dt.timedelta(days=365 * 1900)
    assert written[("t", "zero")][2] == 0


@pytest.mark.parametrize("interval", [math.nan, math.inf, 0.0, -1, 1e308, "5"], ids=repr)
async def test_bad_sweep_interval(
    ours: AsyncSQLAlchemyStore, engine: AsyncEngine, interval: Any
) -> None:
    with pytest.raises(InvalidInputError, match="sweep_interval_minutes"):
        AsyncSQLAlchemyStore(engine, ttl={"sweep_interval_minutes": interval})
    if interval:  # 0 means "the default", as upstream's `or` reads it
        with pytest.raises(InvalidInputError, match="sweep_interval_minutes"):
            await ours.start_ttl_sweeper(interval)
    ours.ttl_config = {"sweep_interval_minutes": interval}
    if interval:
        with pytest.raises(InvalidInputError, match="sweep_interval_minutes"):
            await ours.start_ttl_sweeper()
    assert await ours.stop_ttl_sweeper()


SURROGATE_PUTS: list[tuple[str, tuple[str, ...], str, dict[str, Any], str]] = [
    ("label", ("ok", "bad\udc80"), "k", {"v": 1}, r"label 'bad\\udc80'"),
    ("key", ("ok",), "k\ud800", {"v": 1}, r"key 'k\\ud800'"),
    ("string value", ("ok",), "k", {"a": [{"b": "x\ud800y"}]}, r"the string at a\[0\]\.b"),
    ("key in a value", ("ok",), "k", {"a": {"\udfff": 1}}, r"the key '\\udfff' at a"),
]


@pytest.mark.parametrize(
    ("namespace", "key", "value", "where"),
    [case[1:] for case in SURROGATE_PUTS],
    ids=[case[0] for case in SURROGATE_PUTS],
)
async def test_lone_surrogates_are_refused_and_nothing_is_written(
    ours: AsyncSQLAlchemyStore,
    engine: AsyncEngine,
    namespace: tuple[str, ...],
    key: str,
    value: dict[str, Any],
    where: str,
) -> None:
    with pytest.raises(InvalidInputError, match=where) as raised:
        await ours.aput(namespace, key, value)
    assert "lone surrogate" in str(raised.value) and "not valid UTF-8" in str(raised.value)
    assert isinstance(raised.value, UnicodeEncodeError)  # what upstream's driver raises
    with pytest.raises(UnicodeEncodeError):
        await ours.abatch(
            [PutOp(("ok",), "good", {"v": 1}), PutOp(namespace, key, value), GetOp(("ok",), "k")]
        )
    with pytest.raises(UnicodeEncodeError):  # the same text as a filter value (or scope)
        await ours.asearch(namespace, filter={**value, "probe": key})
    assert await count(engine) == 0
    await ours.aput(("ok",), "after", {"v": 1})
    assert await ours.aget(("ok",), "after") is not None


async def test_bad_input_does_not_fail_coalesced_callers(
    ours: AsyncSQLAlchemyStore, engine: AsyncEngine
) -> None:
    results = await asyncio.gather(
        ours.aput(("c",), "good", {"v": 1}),
        ours.aput(("c",), "bad", {"v": 1}, ttl=1e15),
        ours.aput(("c",), "k\ud800", {"v": 1}),
        ours.aput(["c", "list"], "fine", {"v": 2}),
        return_exceptions=True,
    )
    assert results[0] is None and results[3] is None
    assert isinstance(results[1], InvalidInputError)
    assert isinstance(results[2], UnicodeEncodeError)
    assert set(await rows(engine)) == {("c", "good"), ("c.list", "fine")}


# --- other public attributes upstream reads per call ---------------------------------------------


async def test_fixed_attributes_refuse_assignment(ours: AsyncSQLAlchemyStore) -> None:
    assert ours.conn is ours.db.bind
    assert ours.loop is asyncio.get_running_loop()
    with pytest.raises(AttributeError):
        ours.conn = None  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ours.schema = "elsewhere"  # type: ignore[misc]


# --- vector search: index arguments and index attributes read per call ---------------------------

DIMS = 16


class Negated(Embeddings):
    """Another embedder: HashingEmbeddings' vectors, negated."""

    def __init__(self) -> None:
        self.base = HashingEmbeddings(DIMS)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[-x for x in v] for v in self.base.embed_documents(texts)]

    def embed_query(self, text: str) -> list[float]:
        return [-x for x in self.base.embed_query(text)]


def index_config(fields: Any) -> dict[str, Any]:
    return {"dims": DIMS, "embed": HashingEmbeddings(DIMS), "fields": fields}


async def vectors(engine: AsyncEngine) -> dict[tuple[str, str, str], list[float]]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT prefix, key, field_name, embedding::text FROM store_vectors")
        )
        return {(r[0], r[1], r[2]): [float(x) for x in r[3].strip("[]").split(",")] for r in result}


@asynccontextmanager
async def indexed_pair(
    flavor: str, engine: AsyncEngine, url: str, fields: Any
) -> AsyncIterator[dict[str, AnyStore]]:
    """Upstream's store and ours, both with ``index_config(fields)``."""
    if flavor == "async":
        async with upstream(url, index=index_config(fields)) as theirs:
            yield {
                "upstream": theirs,
                "ours": AsyncSQLAlchemyStore(engine, index=index_config(fields)),
            }
        return
    with (
        PostgresStore.from_conn_string(url, index=index_config(fields)) as theirs,
        SQLAlchemyStore.from_conn_string(url, index=index_config(fields)) as ours,
    ):
        yield {"upstream": AsAsync(theirs, theirs.conn), "ours": AsAsync(ours, url)}


@pytest.mark.vector
@pytest.mark.parametrize("flavor", ["async", "sync"])
async def test_index_arguments_and_attributes_read_per_call(
    engine: AsyncEngine, database_url: str, flavor: str
) -> None:
    await AsyncSQLAlchemyStore(engine, index=index_config(["text"])).setup()
    embed = HashingEmbeddings(DIMS)
    doc = {"text": "red apple", "other": "blue sky"}
    async with indexed_pair(flavor, engine, database_url, "text") as stores:
        for side, store in stores.items():
            # Store-level fields as a str: the field, on both.
            await store.aput((side,), "fields-str", doc)
            # Op-level paths as a tuple: a sequence of paths, on both.
            await store.aput((side,), "index-tuple", doc, index=("other",))
            # Op-level path as a str: one path here; upstream iterates its characters.
            await store.aput((side,), "index-str", doc, index="other")
        found = await vectors(engine)
        for side in stores:
            assert found[(side, "fields-str", "text")] == embed.embed_query("red apple")
            assert found[(side, "index-tuple", "other")] == embed.embed_query("blue sky")
        assert found[("ours", "index-str", "other")] == embed.embed_query("blue sky")
        assert not any(k[:2] == ("upstream", "index-str") for k in found)
        assert "store: index= str is one path" in BEHAVIOUR

        for side, store in stores.items():
            # A new embedder, assigned after construction, embeds the next puts and queries.
            store.embeddings = Negated()
            await store.aput((side,), "negated", doc)
            assert found != (found := await vectors(engine))
            assert found[(side, "negated", "text")] == [-x for x in embed.embed_query("red apple")]
            hits = await store.asearch((side,), query="red apple", limit=1)
            assert hits[0].key == "negated" and hits[0].score == pytest.approx(1.0, abs=1e-4)

            # index_config = None: puts embed nothing, a query is a plain search (no score).
            store.index_config = None
            await store.aput((side,), "unindexed", {"text": "green"})
            assert not any(k[:2] == (side, "unindexed") for k in await vectors(engine))
            plain = await store.asearch((side,), query="green", limit=20)
            assert {i.key for i in plain} >= {"unindexed", "negated"}
            assert all(i.score is None for i in plain)

        # Ours also notices an in-place change of index_config (and a new one assigned).
        ours = stores["ours"]
        ours.index_config = index_config(["other"])
        await ours.aput(("ours",), "reconfigured", doc)
        assert ("ours", "reconfigured", "other") in await vectors(engine)
        ours.index_config["fields"] = ["text"]
        await ours.aput(("ours",), "in-place", doc)
        assert ("ours", "in-place", "text") in await vectors(engine)
        ours.embeddings = None
        with pytest.raises(InvalidInputError, match="embeddings is None"):
            await ours.aput(("ours",), "no-embedder", doc)
        with pytest.raises(TypeError, match="query must be a string"):
            await ours.asearch(("ours",), query=5)  # type: ignore[arg-type]
